//! Quire's chain store on RocksDB, the durable implementation of [`quire_chain::store::Store`].
//! It is its own crate so that what does not open a store (the consensus core, the client, the
//! simulator) builds without RocksDB. Column families:
//!
//! | family      | key                  | value                          |
//! |-------------|----------------------|--------------------------------|
//! | `blocks`    | block hash (32)      | the block, its body apart (below) |
//! | `batches`   | seq (u64 BE), digest (32) | a batch body: `0 ‖ Batch`, or `1 ‖ Location` in the body log |
//! | `heights`   | height (u64 BE)      | block hash                     |
//! | `state`     | address (32)         | `Account` (balance, nonce)     |
//! | `txindex`   | tx id (32)           | height (u64 BE), index (u32 BE)|
//! | `txindex`   | `indexed-height`     | the height the index covers (PBFT) |
//! | `consensus` | consensus's own keys | consensus's own values         |
//! | `undo`      | block hash (32)      | `Undo` (proof of work only)    |
//! | `meta`      | `format`, `chain_id`, `head` | version, hash, height+hash |
//!
//! **A batch is written once** (see [`quire_chain::store`]): a PBFT block is kept in `blocks`
//! without its transactions (tag 1: header, certificate, outcomes), and its body is the batch
//! under `(height, batch digest)` in `batches`, written when the replica accepted it, before its
//! Prepare. A body of more than [`BODY_INLINE_MAX`] bytes is not in RocksDB at all but in the
//! body log (`bodies/`, [`bodies`]), written once; `batches` keeps where. A proof-of-work block
//! (and the genesis) is kept whole (tag 0).
//!
//! Under proof of work, `blocks` also keeps blocks that were rolled back off the main chain,
//! `heights` is the current main chain, and `undo` holds the undo record of each main-chain
//! block still within the replica's undo depth.
//!
//! Every write is one atomic `WriteBatch`, so a crash leaves the previous or the new state, never
//! a mix. A write that holds consensus entries (votes) is synced before it returns; one of blocks
//! alone is not, and the next synced write forces it to disk (see `RocksStore::write`). Opening
//! checks that the contents hang together and says what is wrong if they do not.

mod bodies;
mod txindex;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use quire_chain::block::{Batch, BlockRecord, Header};
use quire_chain::codec::{self, Decode, DecodeError, Encode, Reader};
use quire_chain::genesis::ConsensusMode;
use quire_chain::genesis::Genesis;
use quire_chain::hash::Hash;
use quire_chain::keys::Address;
use quire_chain::ledger::{Account, Ledger};
use quire_chain::pow::{Undo, meets_target};
use quire_chain::store::{
    ConsensusEntries, PowWrite, Store, StoreError, TxLocation, WriteSet, check_extends,
    check_pow_write, replaces_index_entry,
};
use quire_chain::tx::{Outcome, Rejection, TxId};

/// 2: PBFT blocks keep their body in `batches` (format 1 kept it in the block).
const FORMAT_VERSION: u32 = 2;
pub(crate) const CF_BLOCKS: &str = "blocks";
pub(crate) const CF_BATCHES: &str = "batches";
pub(crate) const CF_HEIGHTS: &str = "heights";
pub(crate) const CF_STATE: &str = "state";
const CF_TXINDEX: &str = "txindex";
const CF_CONSENSUS: &str = "consensus";
pub(crate) const CF_META: &str = "meta";
const CF_UNDO: &str = "undo";
/// Bodies up to this size stay in RocksDB (one synced write for a small batch); larger ones go to
/// the body log.
const BODY_INLINE_MAX: usize = 64 << 10;
/// The write-ahead logs' total size past which RocksDB flushes what holds the oldest one.
const WAL_TOTAL_MAX: u64 = 64 << 20;
const BODY_INLINE: u8 = 0;
const BODY_LOGGED: u8 = 1;
const FAMILIES: [&str; 8] = [
    CF_BLOCKS,
    CF_BATCHES,
    CF_HEIGHTS,
    CF_STATE,
    CF_TXINDEX,
    CF_CONSENSUS,
    CF_META,
    CF_UNDO,
];
const META_FORMAT: &[u8] = b"format";
const META_CHAIN_ID: &[u8] = b"chain_id";
pub(crate) const META_HEAD: &[u8] = b"head";
/// The height the account family is written up to (`state` is the state after that block); the
/// blocks above it are replayed at open. Absent: the head (stores written before this key).
pub(crate) const META_STATE_HEIGHT: &[u8] = b"state_height";
/// Account changes are kept in memory and written to the account family once every this many
/// blocks (or sooner, see [`PENDING_ACCOUNTS_MAX`]).
const STATE_WRITE_BLOCKS: u64 = 64;
/// At most this many changed accounts wait in memory.
const PENDING_ACCOUNTS_MAX: usize = 1 << 16;

pub struct RocksStore {
    pub(crate) db: Arc<DB>,
    /// Where the store lives (RocksDB's files, and the body log in `bodies/`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) path: std::path::PathBuf,
    /// The durable head. Held only to read or replace it, never across a disk write, so readers
    /// (client RPC) never wait for an fsync.
    head: Mutex<Header>,
    /// Serialises writers: held across the whole synced write. It guards what is known of the
    /// stored bodies, so a block write finds its body, and the others at its height, without
    /// reading the family.
    writing: Mutex<Bodies>,
    /// How long a replaced body is kept after its height executed (see [`Bodies::replaced`]).
    keep_replaced: u64,
    /// The transaction index of a PBFT chain, written behind the blocks ([`txindex`]); `None`
    /// under proof of work, whose index is written with each block.
    index: Option<txindex::TxIndex>,
    /// Large batch bodies ([`bodies`]).
    bodies: bodies::BodyLog,
    /// Account changes of the blocks above the account family's height ([`PendingState`]).
    pending: Mutex<PendingState>,
}

/// The account state is derived data, like the transaction index: the blocks determine it. So a
/// block's account changes are not written with it: they wait here, and every
/// [`STATE_WRITE_BLOCKS`] blocks the latest value of each changed account goes to the account
/// family, with the height it is now written up to, in the same atomic write as a block. A
/// crash loses at most those blocks' changes, and opening the store replays them from the
/// blocks (checked against the head's state root). Writing each block's changes cost a
/// memtable update per account per block, ~4% of the machine under transfer load; with the
/// bench's 512 accounts, 64 blocks now write each account once.
#[derive(Default)]
struct PendingState {
    accounts: BTreeMap<Address, Account>,
    /// Blocks whose changes are in `accounts`.
    blocks: u64,
}

/// The bodies a writer must know about, by sequence number.
#[derive(Default)]
struct Bodies {
    /// Bodies above the head: each waits for its height to execute.
    above: BTreeMap<u64, Vec<Hash>>,
    /// Bodies at executed heights that their block did not use: proposals a view change
    /// replaced. The consensus log may still name one (an accepted PrePrepare is forgotten only
    /// once a checkpoint above it is stable, and a replica that starts its chain over after a
    /// divergence keeps its log), so each is deleted only when a block executes twice the
    /// watermark window above it, past any entry the log keeps.
    replaced: BTreeMap<u64, Vec<Hash>>,
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

impl RocksStore {
    /// Opens (or creates, with the genesis block) the store at `path` for the chain of `genesis`,
    /// and checks it: same chain, known format, a head that is a complete block whose hash,
    /// height index, certificate, parent link and state root all agree.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<RocksStore, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(1);
        opts.increase_parallelism(1);
        // One writer, synced batches, mostly hashes and signatures: compression buys nothing
        // but CPU, and larger memtables mean fewer flushes under load.
        opts.set_enable_pipelined_write(true);
        // Compactions run at the lowest CPU and I/O priority: they rewrite derived tables (the
        // write-ahead log and the body log hold everything first), and at full speed the first
        // compaction of the transaction index held every replica on this box back for a
        // second (latencies of 100–500 ms at 50k payloads/s, `bench --workload raw`). Flushes
        // keep their priority: memtables waiting on a starved flush would stall every write.
        let mut env = rocksdb::Env::new().map_err(engine)?;
        env.lower_thread_pool_cpu_priority();
        env.lower_thread_pool_io_priority();
        opts.set_env(&env);
        // Background writes go out a megabyte at a time and at most 24 MiB/s: a compaction that
        // wrote its 70 MB table at once and synced it at the end queued the disk behind it, and
        // every replica's synced votes waited there (stalls of 0.3–0.8 s at 40k payloads/s).
        opts.set_bytes_per_sync(1 << 20);
        opts.set_ratelimiter(24 << 20, 100_000, 10);
        // Families written a little with every block (heights, meta, the consensus log) fill
        // their memtables only after hundreds of thousands of blocks, and until they flush
        // every log file since is kept: 380 MB per replica after 1.5M transfers, all of it
        // replayed by a restart. Past this size RocksDB flushes the families that hold the
        // oldest log, so the logs stay small and a restart replays little.
        opts.set_max_total_wal_size(WAL_TOTAL_MAX);
        // One writer at a time (`writing_lock`), so concurrent memtable inserts buy nothing;
        // and the account family's in-place updates (below) require them off.
        opts.set_allow_concurrent_memtable_write(false);
        let families = FAMILIES.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_compression_type(rocksdb::DBCompressionType::None);
            // Account state: every transfer rewrites two accounts, and each put searches the
            // memtable's skiplist. A small memtable stays shallow and in cache, and flushing it
            // is cheap. Measured: 8% of a replica's driver under transfer load when the
            // skiplist held every version since the last flush; with in-place updates (below)
            // it holds each account once.
            cf.set_write_buffer_size(match *name {
                CF_STATE => 2 << 20,
                _ => 16 << 20,
            });
            if *name == CF_STATE {
                // An account's value has a fixed size, so a put on an account already in the
                // memtable overwrites its value there instead of adding a version: the skiplist
                // holds each account once and stays shallow. Lost with it: point-in-time reads
                // of this family, so reading it whole excludes writers (`accounts`); single
                // accounts are read under RocksDB's per-key lock.
                cf.set_inplace_update_support(true);
            }
            if *name == CF_TXINDEX {
                // Random keys arriving in sorted runs (see `txindex`), looked up rarely and one at
                // a time: size-tiered compaction merges runs of a like size, where levelled
                // compaction rewrote the whole next level for every few runs (measured: a fifth
                // of the box after a minute of raw load); a bloom filter keeps lookups to the
                // run that has the key.
                cf.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
                // Tables arrive whole (`txindex`), one per 2^17 transactions, and compactions
                // run at the lowest priority: a busy box may let them pile up for a while, and
                // a lookup checks each one's bloom filter, so more of them only slow the rare
                // lookup, while the default triggers (20, 36) would slow every write instead.
                cf.set_level_zero_slowdown_writes_trigger(256);
                cf.set_level_zero_stop_writes_trigger(512);
                txindex::set_table_format(&mut cf);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = Arc::new(DB::open_cf_descriptors(&opts, path, families).map_err(engine)?);
        let bodies = bodies::BodyLog::open(&path.join("bodies")).map_err(StoreError::Engine)?;
        let genesis_header = genesis.block().header;
        let mut store = RocksStore {
            db,
            path: path.to_path_buf(),
            head: Mutex::new(genesis_header),
            writing: Mutex::new(Bodies::default()),
            keep_replaced: genesis.protocol.log_window.saturating_mul(2),
            index: None,
            bodies,
            pending: Mutex::new(PendingState::default()),
        };
        match store.get(CF_META, META_CHAIN_ID)? {
            None => store.initialise(genesis)?,
            Some(found) => store.check(genesis, &found)?,
        }
        let bodies = store.known_bodies()?;
        *store.writing_lock() = bodies;
        if genesis.protocol.consensus != ConsensusMode::Pow {
            store.open_index(txindex::HOT_MAX)?;
        }
        Ok(store)
    }

    /// Starts the transaction index's writer and indexes again the blocks above what its
    /// flushed part covers (derived data a crash may have lost; see [`txindex`]).
    fn open_index(&mut self, hot_max: usize) -> Result<(), StoreError> {
        let indexed = match self.get(CF_TXINDEX, txindex::INDEXED_HEIGHT)? {
            None => 0,
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| corrupt("the transaction index's height is malformed"))?,
            ),
        };
        let head = self.head().height;
        let index = txindex::TxIndex::open(self.db.clone(), CF_TXINDEX, indexed.min(head), hot_max);
        self.index = Some(index);
        for height in indexed.saturating_add(1)..=head {
            let record = self
                .block(height)?
                .ok_or_else(|| corrupt(format!("block {height} is missing")))?;
            let mut entries = BTreeMap::new();
            self.index_entries(&record, &mut entries)?;
            if let Some(index) = &self.index {
                index.add(height, entries);
            }
        }
        Ok(())
    }

    /// Adds to `entries` (those of earlier blocks of the same write) the index entries of a
    /// block. A transaction twice in one block, or already in an earlier block: the occurrence
    /// that took effect wins, else the first (as in the memory store).
    fn index_entries(
        &self,
        record: &BlockRecord,
        entries: &mut BTreeMap<[u8; 32], TxLocation>,
    ) -> Result<(), StoreError> {
        let height = record.block.header.height;
        for (i, tx) in record.block.txs.iter().enumerate() {
            let id = tx.id();
            let takes = replaces_index_entry(record, i);
            if takes || (!entries.contains_key(&id.0.0) && self.tx_location(&id)?.is_none()) {
                let at = TxLocation {
                    height,
                    index: i as u32,
                };
                entries.insert(id.0.0, at);
            }
        }
        Ok(())
    }

    fn writing_lock(&self) -> MutexGuard<'_, Bodies> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bodies above the head, and the replaced ones still kept below it (read from the
    /// family once, at open).
    fn known_bodies(&self) -> Result<Bodies, StoreError> {
        let head = self.head().height;
        let mut bodies = Bodies::default();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_BATCHES)?);
        it.seek(head.saturating_sub(self.keep_replaced).to_be_bytes());
        while let Some(key) = it.key() {
            let (seq, digest) = parse_batch_key(key)
                .ok_or_else(|| corrupt(format!("batch key {} is malformed", hex::encode(key))))?;
            if seq > head {
                bodies.above.entry(seq).or_default().push(digest);
            } else if self.hash_at(seq)?.is_some()
                && self.header(seq)?.map(|h| h.batch_digest()) != Some(digest)
            {
                bodies.replaced.entry(seq).or_default().push(digest);
            }
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(bodies)
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| corrupt(format!("column family '{name}' is missing")))
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(engine)
    }

    fn head_lock(&self) -> MutexGuard<'_, Header> {
        self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn initialise(&self, genesis: &Genesis) -> Result<(), StoreError> {
        let block = genesis.block();
        let hash = block.hash();
        let mut batch = WriteBatch::default();
        let record = BlockRecord {
            block,
            outcomes: Vec::new(),
        };
        batch.put_cf(self.cf(CF_BLOCKS)?, hash.0, whole(&record));
        batch.put_cf(self.cf(CF_HEIGHTS)?, 0u64.to_be_bytes(), hash.0);
        for (address, account) in &genesis.accounts {
            batch.put_cf(self.cf(CF_STATE)?, address.0, account.to_bytes());
        }
        batch.put_cf(self.cf(CF_META)?, META_FORMAT, FORMAT_VERSION.to_be_bytes());
        batch.put_cf(self.cf(CF_META)?, META_CHAIN_ID, genesis.chain_id().0);
        batch.put_cf(self.cf(CF_META)?, META_HEAD, head_value(0, &hash));
        batch.put_cf(self.cf(CF_META)?, META_STATE_HEIGHT, 0u64.to_be_bytes());
        self.commit(batch)
    }

    fn check(&self, genesis: &Genesis, found_chain_id: &[u8]) -> Result<(), StoreError> {
        let found = <[u8; 32]>::try_from(found_chain_id)
            .map(Hash)
            .map_err(|_| corrupt("meta/chain_id is not 32 bytes"))?;
        if found != genesis.chain_id() {
            return Err(StoreError::Foreign {
                expected: genesis.chain_id(),
                found,
            });
        }
        let format = self
            .get(CF_META, META_FORMAT)?
            .ok_or_else(|| corrupt("meta/format is missing"))?;
        if format != FORMAT_VERSION.to_be_bytes() {
            return Err(corrupt(format!(
                "meta/format is {}, this build reads format {FORMAT_VERSION}",
                hex::encode(&format)
            )));
        }
        let head = self.check_head(genesis)?;
        *self.head_lock() = head;
        Ok(())
    }

    fn check_head(&self, genesis: &Genesis) -> Result<Header, StoreError> {
        let value = self
            .get(CF_META, META_HEAD)?
            .ok_or_else(|| corrupt("meta/head is missing"))?;
        let (height, hash) = parse_head(&value).ok_or_else(|| corrupt("meta/head is malformed"))?;
        let indexed = self.hash_at(height)?;
        if indexed != Some(hash) {
            return Err(corrupt(format!(
                "the height index at {height} does not point at the head block {hash}"
            )));
        }
        let record = self
            .record_by_hash(&hash)?
            .ok_or_else(|| corrupt(format!("head block {hash} (height {height}) is missing")))?;
        let header = record.block.header;
        if header.hash() != hash || header.height != height {
            return Err(corrupt(format!(
                "head block at height {height} does not hash to {hash}"
            )));
        }
        if height == 0 {
            if header != genesis.block().header {
                return Err(corrupt("block 0 is not this genesis"));
            }
        } else if genesis.protocol.consensus == ConsensusMode::Pow {
            // Work is the proof-of-work chain's only evidence; its links were checked on write.
            let sealed = header.pow.is_some_and(|s| meets_target(&hash, &s.target));
            if !sealed {
                return Err(corrupt(format!(
                    "head block {height} does not meet its proof-of-work target"
                )));
            }
            let parent = self.hash_at(height - 1)?;
            if parent != Some(header.parent_hash) {
                return Err(corrupt(format!(
                    "head block {height} does not link to block {}",
                    height - 1
                )));
            }
        } else {
            record
                .block
                .verify_certified(&genesis.chain_id(), &genesis.validators)
                .map_err(|e| corrupt(format!("head block: {e}")))?;
            let parent = self.hash_at(height - 1)?;
            if parent != Some(header.parent_hash) {
                return Err(corrupt(format!(
                    "head block {height} does not link to block {}",
                    height - 1
                )));
            }
        }
        let mut ledger = Ledger::new(genesis.chain_id(), self.accounts()?);
        let state_height = self.state_height()?.unwrap_or(height);
        if state_height > height {
            return Err(corrupt(format!(
                "the account state is written up to block {state_height}, above the head {height}"
            )));
        }
        let replayed = self.replay(&mut ledger, state_height, height)?;
        if ledger.state_root() != header.state_root {
            return Err(corrupt(format!(
                "the account state does not match the state root of head block {height}"
            )));
        }
        // The replayed changes wait to be written like any block's.
        *self.pending_lock() = replayed;
        Ok(header)
    }

    /// The height the account family is written up to, if recorded.
    fn state_height(&self) -> Result<Option<u64>, StoreError> {
        self.get(CF_META, META_STATE_HEIGHT)?
            .map(|v| {
                <[u8; 8]>::try_from(v.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt("meta/state_height is malformed"))
            })
            .transpose()
    }

    /// Applies blocks `from + 1 ..= to` to `ledger` (the state after block `from`), each as it
    /// executed: a transfer's signature verdict is what its recorded outcome says, and the
    /// outcomes must come out the same. Returns their account changes.
    fn replay(&self, ledger: &mut Ledger, from: u64, to: u64) -> Result<PendingState, StoreError> {
        let mut pending = PendingState::default();
        for height in from.saturating_add(1)..=to {
            let record = self
                .block(height)?
                .ok_or_else(|| corrupt(format!("block {height} is missing")))?;
            let txs = &record.block.txs;
            if record.outcomes.len() != txs.len() {
                return Err(corrupt(format!(
                    "block {height} has {} transactions and {} outcomes",
                    txs.len(),
                    record.outcomes.len()
                )));
            }
            let verdicts: Vec<bool> = record
                .outcomes
                .iter()
                .map(|o| !matches!(o, Outcome::Rejected(Rejection::BadSignature)))
                .collect();
            let (outcomes, changes) = ledger.apply(txs, &verdicts);
            if outcomes != record.outcomes {
                return Err(corrupt(format!(
                    "block {height} does not execute to its recorded outcomes"
                )));
            }
            pending.accounts.extend(changes);
            pending.blocks += 1;
        }
        Ok(pending)
    }

    fn pending_lock(&self) -> MutexGuard<'_, PendingState> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hash_at(&self, height: u64) -> Result<Option<Hash>, StoreError> {
        match self.get(CF_HEIGHTS, &height.to_be_bytes())? {
            None => Ok(None),
            Some(v) => <[u8; 32]>::try_from(v.as_slice())
                .map(|h| Some(Hash(h)))
                .map_err(|_| corrupt(format!("height index entry {height} is not a hash"))),
        }
    }

    pub(crate) fn record_by_hash(&self, hash: &Hash) -> Result<Option<BlockRecord>, StoreError> {
        let Some(bytes) = self.get(CF_BLOCKS, &hash.0)? else {
            return Ok(None);
        };
        match Kept::from_bytes(&bytes).map_err(|e| corrupt(format!("block {hash}: {e}")))? {
            Kept::Whole(record) => Ok(Some(record)),
            Kept::Apart(apart) => {
                let height = apart.header.height;
                let body = self
                    .body(height, &apart.header.batch_digest())?
                    .ok_or_else(|| {
                        corrupt(format!("the body of block {height} ({hash}) is missing"))
                    })?;
                Ok(Some(apart.with_body(body)))
            }
        }
    }

    fn body(&self, seq: u64, digest: &Hash) -> Result<Option<Batch>, StoreError> {
        let Some(value) = self.get(CF_BATCHES, &batch_key(seq, digest))? else {
            return Ok(None);
        };
        let bad = |why: String| corrupt(format!("batch body at {seq} ({digest}): {why}"));
        let logged;
        let bytes = match value.split_first() {
            Some((&BODY_INLINE, bytes)) => bytes,
            Some((&BODY_LOGGED, at)) => {
                let at = bodies::Location::from_bytes(at)
                    .ok_or_else(|| bad("a malformed location".into()))?;
                logged = self.bodies.read(at, seq, digest).map_err(bad)?;
                &logged
            }
            _ => return Err(bad("an unknown tag".into())),
        };
        Batch::from_bytes(bytes)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    /// The values `batches` keeps for `bodies` ((seq, digest, body) each): small bodies whole,
    /// large ones appended to the body log (forced to disk here, before RocksDB can refer to
    /// them) and kept by location.
    fn body_values(&self, bodies: &[(u64, Hash, Vec<u8>)]) -> Result<Vec<Vec<u8>>, StoreError> {
        let large: Vec<(u64, Hash, &[u8])> = bodies
            .iter()
            .filter(|(_, _, b)| b.len() > BODY_INLINE_MAX)
            .map(|(s, d, b)| (*s, *d, b.as_slice()))
            .collect();
        let mut locations = self
            .bodies
            .append(&large)
            .map_err(StoreError::Engine)?
            .into_iter();
        if !large.is_empty() {
            self.bodies.sync().map_err(StoreError::Engine)?;
        }
        bodies
            .iter()
            .map(|(_, _, body)| {
                if body.len() > BODY_INLINE_MAX {
                    let at = locations.next().ok_or_else(|| {
                        StoreError::Engine("the body log lost track of a body".into())
                    })?;
                    let mut v = vec![BODY_LOGGED];
                    v.extend_from_slice(&at.to_bytes());
                    Ok(v)
                } else {
                    let mut v = Vec::with_capacity(1 + body.len());
                    v.push(BODY_INLINE);
                    v.extend_from_slice(body);
                    Ok(v)
                }
            })
            .collect()
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.commit_with(batch, true)
    }

    /// Writes `batch` in one atomic step; `sync` forces the write-ahead log to disk before it
    /// returns. Without it the batch is in the log file (the kernel's page cache) when this
    /// returns, so a crash of the process loses nothing, and the next synced write forces it to
    /// disk with everything before it (RocksDB syncs every live log file on a synced write).
    fn commit_with(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts).map_err(engine)
    }
}

/// A block as `blocks` keeps it: whole (tag 0), or apart from its body (tag 1), which is the
/// batch under `(height, header.batch_digest())` in `batches`.
enum Kept {
    Whole(BlockRecord),
    Apart(Apart),
}

struct Apart {
    header: Header,
    certificate: Option<quire_chain::CommitCertificate>,
    outcomes: Vec<quire_chain::tx::Outcome>,
}

impl Apart {
    fn with_body(self, body: Batch) -> BlockRecord {
        BlockRecord {
            block: quire_chain::Block {
                header: self.header,
                txs: body.txs,
                certificate: self.certificate,
            },
            outcomes: self.outcomes,
        }
    }
}

const KEPT_WHOLE: u8 = 0;
const KEPT_APART: u8 = 1;

fn whole(record: &BlockRecord) -> Vec<u8> {
    let mut out = vec![KEPT_WHOLE];
    record.encode(&mut out);
    out
}

fn apart(record: &BlockRecord) -> Vec<u8> {
    let mut out = vec![KEPT_APART];
    record.block.header.encode(&mut out);
    codec::put_option(&mut out, &record.block.certificate);
    codec::put_seq(&mut out, &record.outcomes);
    out
}

impl Kept {
    fn from_bytes(bytes: &[u8]) -> Result<Kept, DecodeError> {
        let mut r = Reader::new(bytes);
        let kept = match r.u8()? {
            KEPT_WHOLE => Kept::Whole(BlockRecord::decode(&mut r)?),
            KEPT_APART => Kept::Apart(Apart {
                header: Header::decode(&mut r)?,
                certificate: r.option()?,
                outcomes: r.seq("outcomes", quire_chain::block::BATCH_TXS_MAX)?,
            }),
            _ => {
                return Err(DecodeError::Invalid {
                    what: "stored block",
                    reason: "unknown tag",
                });
            }
        };
        r.finish()?;
        Ok(kept)
    }
}

fn batch_key(seq: u64, digest: &Hash) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(&digest.0);
    key
}

fn parse_batch_key(key: &[u8]) -> Option<(u64, Hash)> {
    if key.len() != 40 {
        return None;
    }
    let seq = u64::from_be_bytes(key[..8].try_into().ok()?);
    Some((seq, Hash(key[8..].try_into().ok()?)))
}

fn head_value(height: u64, hash: &Hash) -> Vec<u8> {
    let mut v = height.to_be_bytes().to_vec();
    v.extend_from_slice(&hash.0);
    v
}

fn parse_head(value: &[u8]) -> Option<(u64, Hash)> {
    if value.len() != 40 {
        return None;
    }
    let height = u64::from_be_bytes(value[..8].try_into().ok()?);
    let hash = Hash(value[8..].try_into().ok()?);
    Some((height, hash))
}

impl Store for RocksStore {
    fn head(&self) -> Header {
        *self.head_lock()
    }

    fn block(&self, height: u64) -> Result<Option<BlockRecord>, StoreError> {
        match self.hash_at(height)? {
            None => Ok(None),
            Some(hash) => self.record_by_hash(&hash),
        }
    }

    fn tx_location(&self, id: &TxId) -> Result<Option<TxLocation>, StoreError> {
        if let Some(at) = self.index.as_ref().and_then(|index| index.get(id)) {
            return Ok(Some(at));
        }
        match self.get(CF_TXINDEX, &id.0.0)? {
            None => Ok(None),
            Some(v) if v.len() == 12 => Ok(Some(TxLocation {
                height: u64::from_be_bytes(v[..8].try_into().map_err(|_| corrupt("txindex"))?),
                index: u32::from_be_bytes(v[8..].try_into().map_err(|_| corrupt("txindex"))?),
            })),
            Some(_) => Err(corrupt(format!("tx index entry {} is malformed", id.0))),
        }
    }

    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        if let Some(account) = self.pending_lock().accounts.get(address) {
            return Ok(Some(*account));
        }
        match self.get(CF_STATE, &address.0)? {
            None => Ok(None),
            Some(v) => Account::from_bytes(&v)
                .map(Some)
                .map_err(|e| corrupt(format!("account {address}: {e}"))),
        }
    }

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        // The whole state as of one head: no write may land halfway through (the account family
        // updates in place, so an iterator over it is no snapshot). Read at start-up, before the
        // replica writes, so this waits for nothing in practice.
        let _writing = self.writing_lock();
        let mut out = BTreeMap::new();
        for item in self.db.iterator_cf(self.cf(CF_STATE)?, IteratorMode::Start) {
            let (key, value) = item.map_err(engine)?;
            let address = <[u8; 32]>::try_from(&key[..]).map(Address).map_err(|_| {
                corrupt(format!("state key {} is not an address", hex::encode(&key)))
            })?;
            let account = Account::from_bytes(&value)
                .map_err(|e| corrupt(format!("account {address}: {e}")))?;
            out.insert(address, account);
        }
        out.extend(&self.pending_lock().accounts);
        Ok(out.into_iter().collect())
    }

    fn consensus_entries(&self) -> Result<ConsensusEntries, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_CONSENSUS)?, IteratorMode::Start)
        {
            let (key, value) = item.map_err(engine)?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn batch(&self, seq: u64, digest: &Hash) -> Result<Option<Batch>, StoreError> {
        self.body(seq, digest)
    }

    fn reset_chain(&self, genesis: &Genesis) -> Result<(), StoreError> {
        let mut known = self.writing_lock();
        if let Some(index) = &self.index {
            index.reset(0);
        }
        let mut batch = WriteBatch::default();
        for family in [CF_BLOCKS, CF_HEIGHTS, CF_STATE, CF_TXINDEX] {
            let cf = self.cf(family)?;
            for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                let (key, _) = item.map_err(engine)?;
                batch.delete_cf(cf, key);
            }
        }
        let block = genesis.block();
        let hash = block.hash();
        let record = BlockRecord {
            block,
            outcomes: Vec::new(),
        };
        batch.put_cf(self.cf(CF_BLOCKS)?, hash.0, whole(&record));
        batch.put_cf(self.cf(CF_HEIGHTS)?, 0u64.to_be_bytes(), hash.0);
        for (address, account) in &genesis.accounts {
            batch.put_cf(self.cf(CF_STATE)?, address.0, account.to_bytes());
        }
        batch.put_cf(self.cf(CF_META)?, META_HEAD, head_value(0, &hash));
        batch.put_cf(self.cf(CF_META)?, META_STATE_HEIGHT, 0u64.to_be_bytes());
        self.commit(batch)?;
        *self.pending_lock() = PendingState::default();
        *self.head_lock() = record.block.header;
        // The bodies stay (the consensus log's accepted batches among them): all are above the
        // head now, and the chain fetched again finds its own and replaces the others.
        *known = self.known_bodies()?;
        Ok(())
    }

    fn write_pow(&self, write: &PowWrite) -> Result<(), StoreError> {
        // One writer at a time; readers keep seeing the old head until the new one is durable.
        let _writing = self.writing_lock();
        let head = *self.head_lock();
        check_pow_write(&head, write)?;
        let mut batch = WriteBatch::default();
        // A proof-of-work chain writes its accounts with each block (a reorg's undo records
        // apply to the state at the head): anything pending goes first, and later operations
        // in a batch win.
        for (address, account) in &self.pending_lock().accounts {
            batch.put_cf(self.cf(CF_STATE)?, address.0, account.to_bytes());
        }
        // The rollback's deletes come before the new branch's puts, which override them where
        // both touch a key.
        for r in &write.rollback {
            batch.delete_cf(self.cf(CF_HEIGHTS)?, r.header.height.to_be_bytes());
            for id in &r.tx_ids {
                batch.delete_cf(self.cf(CF_TXINDEX)?, id.0.0);
            }
            for (address, account) in &r.undo.accounts {
                match account {
                    Some(a) => batch.put_cf(self.cf(CF_STATE)?, address.0, a.to_bytes()),
                    None => batch.delete_cf(self.cf(CF_STATE)?, address.0),
                }
            }
            batch.delete_cf(self.cf(CF_UNDO)?, r.header.hash().0);
        }
        let mut new_head = match write.rollback.last() {
            None => head,
            Some(r) => {
                self.record_by_hash(&r.header.parent_hash)?
                    .ok_or_else(|| {
                        corrupt(format!("fork point {} is missing", r.header.parent_hash))
                    })?
                    .block
                    .header
            }
        };
        for (executed, undo) in &write.blocks {
            let record = &executed.record;
            let header = record.block.header;
            let hash = header.hash();
            batch.put_cf(self.cf(CF_BLOCKS)?, hash.0, whole(record));
            batch.put_cf(self.cf(CF_HEIGHTS)?, header.height.to_be_bytes(), hash.0);
            for (index, tx) in record.block.txs.iter().enumerate() {
                let mut v = header.height.to_be_bytes().to_vec();
                v.extend_from_slice(&(index as u32).to_be_bytes());
                batch.put_cf(self.cf(CF_TXINDEX)?, tx.id().0.0, v);
            }
            for (address, account) in &executed.changes {
                batch.put_cf(self.cf(CF_STATE)?, address.0, account.to_bytes());
            }
            batch.put_cf(self.cf(CF_UNDO)?, hash.0, undo.to_bytes());
            new_head = header;
        }
        for hash in &write.prune {
            batch.delete_cf(self.cf(CF_UNDO)?, hash.0);
        }
        batch.put_cf(
            self.cf(CF_META)?,
            META_HEAD,
            head_value(new_head.height, &new_head.hash()),
        );
        batch.put_cf(
            self.cf(CF_META)?,
            META_STATE_HEIGHT,
            new_head.height.to_be_bytes(),
        );
        self.commit(batch)?;
        *self.pending_lock() = PendingState::default();
        *self.head_lock() = new_head;
        Ok(())
    }

    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError> {
        match self.get(CF_UNDO, &hash.0)? {
            None => Ok(None),
            Some(bytes) => Undo::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| corrupt(format!("undo record {hash}: {e}"))),
        }
    }

    fn write(&self, writes: &WriteSet) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        // One writer at a time; readers keep seeing the old head until the new one is durable.
        let mut known = self.writing_lock();
        let head = *self.head_lock();
        check_extends(head, &writes.blocks)?;
        let new_head = writes.blocks.last().map_or(head, |b| b.record.block.header);
        let mut batch = WriteBatch::default();
        let bodies = self.cf(CF_BATCHES)?;
        // Bodies above the head are kept until their height executes; one at or below it that
        // is not the executed block's is kept as long as a replaced one.
        if let Some(failure) = self.index.as_ref().and_then(|i| i.failure()) {
            return Err(StoreError::Engine(format!(
                "writing the transaction index: {failure}"
            )));
        }
        let mut indexed = BTreeMap::new();
        let mut added: Vec<(u64, Hash)> = Vec::new();
        let mut replaced: Vec<(u64, Hash)> = Vec::new();
        // Bodies to store: (seq, digest, encoded batch).
        let mut new_bodies: Vec<(u64, Hash, Vec<u8>)> = Vec::new();
        for body in &writes.batches {
            let executes_here = writes.blocks.iter().any(|b| {
                let h = &b.record.block.header;
                h.height == body.seq && h.batch_digest() == body.digest
            });
            new_bodies.push((body.seq, body.digest, body.batch.to_bytes()));
            if body.seq > new_head.height || executes_here {
                added.push((body.seq, body.digest));
            } else {
                // A proposal for a height already executed: the log names it, and a chain
                // reset puts its height above the head again, so it is kept as a replaced one.
                replaced.push((body.seq, body.digest));
            }
        }
        for executed in &writes.blocks {
            let record = &executed.record;
            let header = record.block.header;
            let hash = header.hash();
            let digest = header.batch_digest();
            // The body: stored when the batch was accepted, or now (a block from state transfer,
            // or one whose body a power cut lost). The others at this height were replaced.
            // Every body above the head is in `known.above`, so this reads nothing.
            let stored = known
                .above
                .get(&header.height)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let here = stored.iter().chain(
                added
                    .iter()
                    .filter(|(s, _)| *s == header.height)
                    .map(|(_, d)| d),
            );
            let mut has_body = false;
            for d in here {
                if *d == digest {
                    has_body = true;
                } else {
                    replaced.push((header.height, *d));
                }
            }
            if !has_body {
                new_bodies.push((header.height, digest, record.block.batch().to_bytes()));
            }
            batch.put_cf(self.cf(CF_BLOCKS)?, hash.0, apart(record));
            batch.put_cf(self.cf(CF_HEIGHTS)?, header.height.to_be_bytes(), hash.0);
            self.index_entries(record, &mut indexed)?;
        }
        // The blocks' account changes wait in memory, or all pending ones are written now, the
        // latest value of each account once ([`PendingState`]).
        let changes: Vec<&(Address, Account)> =
            writes.blocks.iter().flat_map(|b| &b.changes).collect();
        let write_state = {
            let pending = self.pending_lock();
            let due = pending.blocks + writes.blocks.len() as u64 >= STATE_WRITE_BLOCKS
                || pending.accounts.len() + changes.len() > PENDING_ACCOUNTS_MAX;
            if due {
                // In a batch the later put of a key wins: the blocks' changes after the pending
                // ones, in height order.
                let state = self.cf(CF_STATE)?;
                let blocks = changes.iter().map(|change| (&change.0, &change.1));
                for (address, account) in pending.accounts.iter().chain(blocks) {
                    batch.put_cf(state, address.0, account.to_bytes());
                }
                batch.put_cf(
                    self.cf(CF_META)?,
                    META_STATE_HEIGHT,
                    new_head.height.to_be_bytes(),
                );
            }
            due
        };
        if !writes.blocks.is_empty() {
            batch.put_cf(
                self.cf(CF_META)?,
                META_HEAD,
                head_value(new_head.height, &new_head.hash()),
            );
        }
        for ((seq, digest, _), value) in new_bodies.iter().zip(self.body_values(&new_bodies)?) {
            batch.put_cf(bodies, batch_key(*seq, digest), value);
        }
        // Replaced bodies far enough below the new head that no log entry can name them.
        let forget_to = new_head.height.saturating_sub(self.keep_replaced);
        for (seq, digests) in known.replaced.range(..=forget_to) {
            for d in digests {
                batch.delete_cf(bodies, batch_key(*seq, d));
            }
        }
        if self.index.is_none() {
            // Without a derived index (a proof-of-work chain), entries go with their blocks.
            for (id, at) in std::mem::take(&mut indexed) {
                batch.put_cf(self.cf(CF_TXINDEX)?, id, txindex::location_value(&at));
            }
        }
        for (key, value) in &writes.consensus {
            match value {
                Some(v) => batch.put_cf(self.cf(CF_CONSENSUS)?, key, v),
                None => batch.delete_cf(self.cf(CF_CONSENSUS)?, key),
            }
        }
        // Votes, log entries and the batches they vote for are forced to disk before this
        // returns: a vote is sent only after it. Blocks alone are not. A block is derived from
        // what the log already holds durably at 2f+1 replicas (the batch, the prepare and
        // commit votes); losing the newest ones in a power cut leaves this replica where a
        // crash between its Commit vote and the block leaves it, and it fetches them back with
        // their certificates. A process crash loses nothing (the write is in the kernel's
        // cache), and the next vote's synced write forces every block before it to disk.
        self.commit_with(batch, writes.must_sync())?;
        {
            // Before the head moves: a reader that sees the new head sees its accounts.
            let mut pending = self.pending_lock();
            if write_state {
                *pending = PendingState::default();
            } else if !writes.blocks.is_empty() {
                pending
                    .accounts
                    .extend(changes.iter().map(|change| **change));
                pending.blocks += writes.blocks.len() as u64;
            }
        }
        *self.head_lock() = new_head;
        if let Some(index) = &self.index {
            index.add(new_head.height, indexed);
        }
        known.replaced = known.replaced.split_off(&(forget_to + 1));
        for (seq, digest) in replaced {
            known.replaced.entry(seq).or_default().push(digest);
        }
        for (seq, digest) in added {
            known.above.entry(seq).or_default().push(digest);
        }
        known.above = known.above.split_off(&(new_head.height + 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
