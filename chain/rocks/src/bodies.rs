//! The body log: large batch bodies, kept outside RocksDB in append-only segment files.
//!
//! A batch body stored in RocksDB reached the disk four times — its write-ahead log, its
//! memtable, the file a flush wrote it to — and was checksummed in software twice (Debian's
//! RocksDB is built without the CRC instruction): measured, a fifth of the box under sustained
//! raw load went to flushing bodies. Here a body is written once: appended to the current
//! segment, checksummed with the CPU's CRC32C instruction, and found again through the small
//! location RocksDB keeps for it under `(seq, digest)` (key-value separation, as in WiscKey).
//!
//! Record: `u32 len ‖ u32 crc32c(payload) ‖ payload`, payload = `u64 seq ‖ digest (32) ‖ batch`,
//! big-endian. Segments are `bodies/NNNNNNNN.log`, a new one past [`SEGMENT_BYTES`].
//!
//! **Durability.** The log is forced to disk ([`BodyLog::sync`]) before any RocksDB write that
//! points into it, synced or not: RocksDB never refers to a body that a crash could take away.
//! A crash can leave a torn record at the end of the last segment (a write under way when the
//! power went); nothing refers to it, and appending goes on after it. Records are found by
//! location and each is checked on its own, so the log is never scanned, and a damaged record
//! that something does refer to is reported, not cut away.
//!
//! Bodies of proposals that were replaced (a view change) stay in their segment, unreferenced:
//! rare, and bounded by the proposals a primary can make per view.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use quire_chain::hash::Hash;

/// A segment is closed (and a new one begun) once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// The largest record accepted back from disk (a batch is at most 2^16 payloads of 64 KiB, far
/// less in practice; the bound only keeps a corrupt length from asking for gigabytes).
const RECORD_BYTES_MAX: u32 = 1 << 30;
const HEADER_BYTES: usize = 8;
/// The fields before a body in a record's payload: `u64 seq ‖ digest`.
const FIELDS_BYTES: usize = 40;

/// Where a body is: segment, offset of its record, length of the record's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub(crate) const BYTES: usize = 16;

    pub(crate) fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..4].copy_from_slice(&self.segment.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Location> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        Some(Location {
            segment: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            len: u32::from_be_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

struct Tail {
    file: File,
    segment: u32,
    len: u64,
    /// Bytes appended since the last sync (of this segment or of one closed since).
    dirty: bool,
}

pub(crate) struct BodyLog {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// Open segments for reading, shared by readers (`read_at` needs no lock).
    readers: Mutex<HashMap<u32, Arc<File>>>,
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.log"))
}

/// Opens (creating it) segment `segment` of `dir` for appending and reading.
fn open_segment(dir: &Path, segment: u32) -> Result<File, String> {
    let path = segment_path(dir, segment);
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl BodyLog {
    /// Opens the log in `dir` (creating it), to append after the end of its last segment.
    pub(crate) fn open(dir: &Path) -> Result<BodyLog, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut segments: Vec<u32> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        segments.sort_unstable();
        let segment = segments.last().copied().unwrap_or(1);
        let file = open_segment(dir, segment)?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", segment_path(dir, segment).display()))?
            .len();
        Ok(BodyLog {
            dir: dir.to_path_buf(),
            tail: Mutex::new(Tail {
                file,
                segment,
                len,
                dirty: false,
            }),
            readers: Mutex::new(HashMap::new()),
        })
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        // A writer that panicked left at worst unsynced bytes, which `sync` still covers.
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one record per body (all in one write) and says where each is. Not durable
    /// until [`BodyLog::sync`].
    pub(crate) fn append(&self, bodies: &[(u64, Hash, &[u8])]) -> Result<Vec<Location>, String> {
        let mut tail = self.tail();
        if tail.len >= SEGMENT_BYTES {
            self.next_segment(&mut tail)?;
        }
        let mut buffer = Vec::with_capacity(
            bodies
                .iter()
                .map(|(_, _, b)| HEADER_BYTES + FIELDS_BYTES + b.len())
                .sum(),
        );
        let mut locations = Vec::with_capacity(bodies.len());
        for (seq, digest, body) in bodies {
            let len = u32::try_from(FIELDS_BYTES + body.len())
                .ok()
                .filter(|l| *l <= RECORD_BYTES_MAX)
                .ok_or_else(|| format!("a body of {} bytes is too large", body.len()))?;
            let offset = tail.len + buffer.len() as u64;
            let mut crc = crc32c::crc32c(&seq.to_be_bytes());
            crc = crc32c::crc32c_append(crc, &digest.0);
            crc = crc32c::crc32c_append(crc, body);
            buffer.extend_from_slice(&len.to_be_bytes());
            buffer.extend_from_slice(&crc.to_be_bytes());
            buffer.extend_from_slice(&seq.to_be_bytes());
            buffer.extend_from_slice(&digest.0);
            buffer.extend_from_slice(body);
            locations.push(Location {
                segment: tail.segment,
                offset,
                len,
            });
        }
        if let Err(e) = tail.file.write_all(&buffer) {
            // Part of it may be there: go on from where the file really ends (the store's write
            // fails, and the replica stops). Nothing refers to the partial record.
            if let Ok(meta) = tail.file.metadata() {
                tail.len = meta.len();
            }
            return Err(format!("appending to body segment {}: {e}", tail.segment));
        }
        tail.len += buffer.len() as u64;
        tail.dirty = true;
        Ok(locations)
    }

    /// Forces what was appended to disk.
    pub(crate) fn sync(&self) -> Result<(), String> {
        let mut tail = self.tail();
        if tail.dirty {
            tail.file
                .sync_data()
                .map_err(|e| format!("syncing body segment {}: {e}", tail.segment))?;
            tail.dirty = false;
        }
        Ok(())
    }

    /// Closes the current segment (forced to disk first) and begins the next; the directory
    /// entry of the new one is made durable too.
    fn next_segment(&self, tail: &mut Tail) -> Result<(), String> {
        tail.file
            .sync_data()
            .map_err(|e| format!("syncing body segment {}: {e}", tail.segment))?;
        let segment = tail.segment + 1;
        let file = open_segment(&self.dir, segment)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        *tail = Tail {
            file,
            segment,
            len: 0,
            dirty: false,
        };
        Ok(())
    }

    fn reader(&self, segment: u32) -> Result<Arc<File>, String> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = readers.get(&segment) {
            return Ok(file.clone());
        }
        let path = segment_path(&self.dir, segment);
        let file = Arc::new(File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        readers.insert(segment, file.clone());
        Ok(file)
    }

    /// The body at `at`, which must be the one stored for `(seq, digest)`: its checksum, length
    /// and both fields are checked, so a damaged or misplaced record is an error, never
    /// another batch.
    pub(crate) fn read(&self, at: Location, seq: u64, digest: &Hash) -> Result<Vec<u8>, String> {
        // The location comes from disk too: a damaged one must not ask for gigabytes, nor for
        // a record too short to hold its own fields.
        if at.len < FIELDS_BYTES as u32 || at.len > RECORD_BYTES_MAX {
            return Err(format!(
                "a body location in segment {} at {} gives an impossible length {}",
                at.segment, at.offset, at.len
            ));
        }
        let file = self.reader(at.segment)?;
        let mut record = vec![0u8; HEADER_BYTES + at.len as usize];
        file.read_exact_at(&mut record, at.offset)
            .map_err(|e| format!("reading body segment {} at {}: {e}", at.segment, at.offset))?;
        let (header, payload) = record.split_at(HEADER_BYTES);
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len != at.len || crc32c::crc32c(payload) != crc {
            return Err(format!(
                "the body record in segment {} at {} is damaged",
                at.segment, at.offset
            ));
        }
        let (fields, body) = payload.split_at(FIELDS_BYTES);
        if fields[..8] != seq.to_be_bytes() || fields[8..] != digest.0 {
            return Err(format!(
                "the body record in segment {} at {} is not the batch at {seq} ({digest})",
                at.segment, at.offset
            ));
        }
        Ok(body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("quire-{label}-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn bodies_read_back_as_written_and_are_checked() {
        let dir = temp_dir("bodies");
        let log = BodyLog::open(&dir).unwrap();
        let a = vec![7u8; 5000];
        let b = vec![9u8; 20];
        let at = log
            .append(&[(3, Hash([1; 32]), &a), (4, Hash([2; 32]), &b)])
            .unwrap();
        log.sync().unwrap();
        assert_eq!(log.read(at[0], 3, &Hash([1; 32])).unwrap(), a);
        assert_eq!(log.read(at[1], 4, &Hash([2; 32])).unwrap(), b);
        // Asked under another (seq, digest): refused, never the wrong batch.
        assert!(log.read(at[0], 4, &Hash([1; 32])).is_err());
        assert!(log.read(at[0], 3, &Hash([2; 32])).is_err());
        // A flipped byte is caught.
        let path = segment_path(&dir, at[0].segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let reopened = BodyLog::open(&dir).unwrap();
        assert!(reopened.read(at[0], 3, &Hash([1; 32])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What a crash mid-append leaves — part of a record, which nothing refers to — stays, and
    /// appending goes on after it; the records before and after read back.
    #[test]
    fn appending_goes_on_after_a_torn_tail() {
        let dir = temp_dir("bodies-torn");
        let log = BodyLog::open(&dir).unwrap();
        let first = log.append(&[(1, Hash([1; 32]), &[1u8; 300])]).unwrap()[0];
        log.sync().unwrap();
        drop(log);
        let path = segment_path(&dir, first.segment);
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 1, 0, 9, 9, 9, 9, 1, 2, 3]).unwrap();
        drop(file);
        let log = BodyLog::open(&dir).unwrap();
        let second = log.append(&[(2, Hash([2; 32]), &[2u8; 300])]).unwrap()[0];
        assert_eq!(second.offset, whole + 11);
        assert_eq!(log.read(first, 1, &Hash([1; 32])).unwrap(), vec![1u8; 300]);
        assert_eq!(log.read(second, 2, &Hash([2; 32])).unwrap(), vec![2u8; 300]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_segment_is_followed_by_the_next() {
        let dir = temp_dir("bodies-roll");
        let log = BodyLog::open(&dir).unwrap();
        let body = vec![5u8; 1 << 20];
        let mut last = None;
        for seq in 0..70u64 {
            last = Some(log.append(&[(seq, Hash([3; 32]), &body)]).unwrap()[0]);
        }
        let last = last.unwrap();
        assert_eq!(last.segment, 2, "64 MiB per segment");
        drop(log);
        let log = BodyLog::open(&dir).unwrap();
        assert_eq!(log.read(last, 69, &Hash([3; 32])).unwrap(), body);
        let next = log.append(&[(70, Hash([3; 32]), &body)]).unwrap()[0];
        assert_eq!(next.segment, 2);
        assert_eq!(
            next.offset,
            last.offset + (HEADER_BYTES + 40 + body.len()) as u64
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A damaged location (it is read from RocksDB) is an error: neither a huge allocation nor
    /// a record too short for its own fields.
    #[test]
    fn an_impossible_location_is_an_error() {
        let dir = temp_dir("bodies-bad-location");
        let log = BodyLog::open(&dir).unwrap();
        let at = log.append(&[(1, Hash([1; 32]), &[7u8; 100])]).unwrap()[0];
        log.sync().unwrap();
        // Eight zero bytes read as a whole, checksummed record of length 0.
        let path = segment_path(&dir, at.segment);
        let end = std::fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0; HEADER_BYTES]).unwrap();
        let zeros = Location {
            segment: at.segment,
            offset: end,
            len: 0,
        };
        assert!(log.read(zeros, 1, &Hash([1; 32])).is_err());
        for len in [39, u32::MAX] {
            assert!(log.read(Location { len, ..at }, 1, &Hash([1; 32])).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn locations_round_trip() {
        let at = Location {
            segment: 7,
            offset: 1 << 40,
            len: 12345,
        };
        assert_eq!(Location::from_bytes(&at.to_bytes()), Some(at));
        assert_eq!(Location::from_bytes(&[0; 3]), None);
    }
}
