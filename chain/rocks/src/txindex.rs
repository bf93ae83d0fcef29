//! The transaction index of a PBFT chain — tx id → (height, position) — kept as derived data.
//!
//! Every committed transaction adds an entry under a random key. Inserted one by one into
//! RocksDB's memtable, each entry searched a skiplist of ~10^5 keys: measured, the largest single
//! cost of a replica under load. So entries go to an in-memory map as blocks are written (a hash
//! insert), and when the map is full a background thread writes it, sorted, to a table file of
//! its own and has RocksDB take the file in whole (no write-ahead log, no memtable, no flush).
//! The file carries the height it indexes up to, so the index always says how far it goes.
//!
//! Nothing here is needed to stay correct across a crash: the blocks are. A crash loses the
//! entries not yet flushed, and opening the store indexes the blocks above the flushed height
//! again from their bodies ([`TxIndex::open`]). Lookups read the map, then the batch being
//! written, then RocksDB.
//!
//! Proof-of-work chains (whose reorgs delete entries) keep writing their index directly.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use std::path::Path;

use rocksdb::{DB, IngestExternalFileOptions, Options, SstFileWriter};

use quire_chain::store::TxLocation;
use quire_chain::tx::TxId;

/// Entries the in-memory map holds before it is written out (about 8 MiB of map).
pub(crate) const HOT_MAX: usize = 1 << 17;
/// How many times [`HOT_MAX`] the map may grow to while the writer is still busy with the
/// previous one, before adding waits for it.
const HOT_SLACK: usize = 4;
/// The key under which the flushed index records the height it covers (ids are 32 bytes).
pub(crate) const INDEXED_HEIGHT: &[u8] = b"indexed-height";

type Entries = HashMap<[u8; 32], TxLocation>;

#[derive(Default)]
struct State {
    /// Entries of blocks not yet handed to the writer.
    hot: Entries,
    /// The highest block whose entries are all in `hot` or below.
    hot_height: u64,
    /// Entries being written, with the height they cover; still looked up until flushed.
    sealed: Option<(Arc<Entries>, u64)>,
    /// The writer's last failure (the index is then behind; the next open catches up).
    failed: Option<String>,
    stop: bool,
}

pub(crate) struct TxIndex {
    shared: Arc<(Mutex<State>, Condvar)>,
    writer: Option<JoinHandle<()>>,
    /// [`HOT_MAX`], smaller in tests.
    hot_max: usize,
}

impl TxIndex {
    /// Starts the writer for `db`'s family `family`; `indexed` is the height the flushed index
    /// covers (the caller indexes the blocks above it again with [`TxIndex::add`]).
    pub(crate) fn open(db: Arc<DB>, family: &'static str, indexed: u64, hot_max: usize) -> TxIndex {
        let shared = Arc::new((
            Mutex::new(State {
                hot_height: indexed,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let theirs = shared.clone();
        let writer = std::thread::Builder::new()
            .name("txindex".into())
            .spawn(move || write_loop(&db, family, &theirs))
            .ok();
        TxIndex {
            shared,
            writer,
            hot_max,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is maps and flags, whole after any panic of a holder.
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `id` not yet flushed, if any (`None`: ask RocksDB).
    pub(crate) fn get(&self, id: &TxId) -> Option<TxLocation> {
        let state = self.state();
        state
            .hot
            .get(&id.0.0)
            .or_else(|| state.sealed.as_ref().and_then(|(s, _)| s.get(&id.0.0)))
            .copied()
    }

    /// Adds the entries of the block at `height` (already durable), and hands a full map to
    /// the writer once it has taken in the previous one; only a map [`HOT_SLACK`] times full
    /// waits for that, so at most two maps are ever held, of bounded size.
    pub(crate) fn add(
        &self,
        height: u64,
        entries: impl IntoIterator<Item = ([u8; 32], TxLocation)>,
    ) {
        let mut state = self.state();
        state.hot.extend(entries);
        state.hot_height = state.hot_height.max(height);
        if state.hot.len() < self.hot_max || self.writer.is_none() {
            return;
        }
        // The writer still has the previous map (it runs at the lowest priority, and a busy box
        // may keep it waiting): this one grows meanwhile rather than hold the replica up, to a
        // bound.
        if state.sealed.is_some() && state.hot.len() < self.hot_max.saturating_mul(HOT_SLACK) {
            return;
        }
        while state.sealed.is_some() && !state.stop {
            state = self.shared.1.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let hot = std::mem::take(&mut state.hot);
        state.sealed = Some((Arc::new(hot), state.hot_height));
        self.shared.1.notify_all();
    }

    /// Forgets every entry not yet flushed (after waiting for the one being written), for a
    /// chain that starts over from `height`.
    pub(crate) fn reset(&self, height: u64) {
        let mut state = self.state();
        while state.sealed.is_some() && !state.stop {
            state = self.shared.1.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.hot.clear();
        state.hot_height = height;
    }

    /// Waits until the map handed to the writer, if any, is flushed.
    #[cfg(test)]
    pub(crate) fn wait_written(&self) {
        let mut state = self.state();
        while state.sealed.is_some() && !state.stop {
            state = self.shared.1.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The writer's last failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.state().failed.clone()
    }
}

impl Drop for TxIndex {
    fn drop(&mut self) {
        self.state().stop = true;
        self.shared.1.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Writes each sealed map, sorted, in one unlogged batch with the height it covers, and flushes.
fn write_loop(db: &DB, family: &'static str, shared: &(Mutex<State>, Condvar)) {
    let (lock, wake) = shared;
    loop {
        let (entries, height) = {
            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if state.stop {
                    return;
                }
                if let Some((entries, height)) = &state.sealed {
                    break (entries.clone(), *height);
                }
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = write_sorted(db, family, &entries, height);
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => state.failed = None,
            Err(e) => {
                // Kept in memory, so lookups still find them; the store's next write reports
                // the failure (a disk that fails here fails the replica's writes too).
                let mut back = Arc::unwrap_or_clone(entries);
                back.extend(state.hot.drain());
                state.hot = back;
                state.failed = Some(e);
            }
        }
        state.sealed = None;
        wake.notify_all();
    }
}

/// The table file a sealed map is written to before RocksDB takes it in (in the store's
/// directory: ingesting moves it, which needs the same file system).
const TABLE_FILE: &str = "txindex-ingest.sst";

/// Writes a sealed map, sorted, as a table file with the height it covers, and has RocksDB take
/// the file in whole. Inserted through RocksDB's write path instead (memtable inserts, then a
/// flush), 2^17 entries held the replica's own synced writes back, and with four replicas on
/// one box doing it at the same height the chain stalled for 100–500 ms every 2.6 s at 50k
/// payloads/s (measured, `bench --workload raw`). A table file is built off the write path, at
/// the lowest CPU priority, and taken in atomically (which holds the store's writes for a few
/// milliseconds); the height goes in the same file, so an index that has it has every entry it
/// covers.
fn write_sorted(db: &DB, family: &str, entries: &Entries, height: u64) -> Result<(), String> {
    let cf = db
        .cf_handle(family)
        .ok_or_else(|| format!("column family '{family}' is missing"))?;
    let path = db.path().join(TABLE_FILE);
    // A thread's priority is its own and cannot be raised back: the table is built on a thread
    // of its own, and this one (at normal priority) has it taken in, which briefly holds the
    // store's writes — a starved holder would hold them longer.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_priority();
                build_table(&path, entries, height)
            })
            .join()
            .unwrap_or_else(|_| Err("the index table builder panicked".into()))
    })?;
    let mut opts = IngestExternalFileOptions::default();
    opts.set_move_files(true);
    db.ingest_external_file_cf_opts(&cf, &opts, vec![&path])
        .map_err(|e| e.into_string())?;
    // Moved (linked) into the store; the name left behind is ours to remove.
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Sorted entries and the indexed height, in key order, into a new table file at `path`.
fn build_table(path: &Path, entries: &Entries, height: u64) -> Result<(), String> {
    let mut sorted: Vec<(&[u8; 32], &TxLocation)> = entries.iter().collect();
    sorted.sort_unstable_by_key(|(id, _)| **id);
    let mut options = Options::default();
    set_table_format(&mut options);
    let mut writer = SstFileWriter::create(&options);
    writer.open(path).map_err(|e| e.into_string())?;
    let mut height_written = false;
    for (id, at) in sorted {
        if !height_written && id.as_slice() > INDEXED_HEIGHT {
            writer
                .put(INDEXED_HEIGHT, height.to_be_bytes())
                .map_err(|e| e.into_string())?;
            height_written = true;
        }
        writer
            .put(id, location_value(at))
            .map_err(|e| e.into_string())?;
    }
    if !height_written {
        writer
            .put(INDEXED_HEIGHT, height.to_be_bytes())
            .map_err(|e| e.into_string())?;
    }
    writer.finish().map_err(|e| e.into_string())
}

/// This thread yields the CPU to every other (nice 19; per thread on Linux). Best effort: where
/// it is refused, the table is built at normal priority.
fn lower_priority() {
    let _ = rustix::process::setpriority_process(None, 19);
}

/// The index family's table format, for the family and the tables written for it alike: no
/// compression (random ids), a bloom filter per table so a lookup reads only the table that has
/// the key.
pub(crate) fn set_table_format(options: &mut Options) {
    options.set_compression_type(rocksdb::DBCompressionType::None);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    options.set_block_based_table_factory(&table);
}

pub(crate) fn location_value(at: &TxLocation) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&at.height.to_be_bytes());
    v[8..].copy_from_slice(&at.index.to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(h: u64) -> ([u8; 32], TxLocation) {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&h.to_be_bytes());
        (
            id,
            TxLocation {
                height: h,
                index: 0,
            },
        )
    }

    /// While the writer still has the previous map, adding does not wait (the replica's driver
    /// adds) until the map is `HOT_SLACK` times full; then it waits, and seals it whole.
    #[test]
    fn a_busy_writer_lets_the_map_grow_before_adding_waits() {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        shared.0.lock().unwrap().sealed = Some((Arc::new(Entries::new()), 0));
        let index = TxIndex {
            shared: shared.clone(),
            // A writer that never takes the sealed map: it stays busy until released below.
            writer: Some(std::thread::spawn(|| {})),
            hot_max: 2,
        };
        let index = Arc::new(index);
        let full = 2 * HOT_SLACK as u64;
        let (added, done) = std::sync::mpsc::channel();
        {
            let index = index.clone();
            std::thread::spawn(move || {
                for h in 1..full {
                    index.add(h, [entry(h)]);
                }
                let _ = added.send(());
            });
        }
        assert!(
            done.recv_timeout(Duration::from_secs(10)).is_ok(),
            "adding waited for the busy writer"
        );
        {
            let state = index.state();
            assert_eq!(state.hot.len() as u64, full - 1);
            assert_eq!(
                state.sealed.as_ref().map(|(s, h)| (s.len(), *h)),
                Some((0, 0))
            );
        }
        assert_eq!(
            index.get(&TxId(quire_chain::Hash(entry(3).0))),
            Some(entry(3).1)
        );
        let release = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                shared.0.lock().unwrap().sealed = None;
                shared.1.notify_all();
            })
        };
        index.add(full, [entry(full)]);
        release.join().unwrap();
        let state = index.state();
        assert!(state.hot.is_empty());
        let (sealed, height) = state.sealed.as_ref().unwrap();
        assert_eq!((sealed.len() as u64, *height), (full, full));
    }
}
