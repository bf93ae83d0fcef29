//! Durable storage of the chain, the ledger state and the consensus log.
//!
//! A [`WriteSet`] is everything one consensus step must make durable: executed blocks (with their
//! state changes), the bodies of batches the replica accepted, and consensus log entries.
//! [`Store::write`] applies it atomically and durably (one synced RocksDB write batch), so after
//! a crash either all of it is there or none of it is, and the head is always a complete block
//! whose state the store holds (the RocksDB store writes account changes every few dozen blocks
//! and replays the blocks above them at open, checked against the head's state root).
//!
//! **A batch is written once.** The body of a batch a replica accepts is stored by `(seq,
//! digest)` when it is accepted (before the Prepare that votes for it), and the block that
//! executes it at height `seq` is stored without its transactions: its body is the batch under
//! `(height, header.batch_digest())`. A block that arrives by state transfer brings its body,
//! which is stored the same way. Bodies of other digests at an executed height (proposals a
//! view change replaced) are deleted when the block is written.
//!
//! This crate holds the trait and its in-memory twin; the RocksDB implementation is the
//! `quire-rocks` crate, so that only what opens a store on disk builds RocksDB.

mod memory;

pub use memory::MemoryStore;

use thiserror::Error;

use crate::block::{Batch, BlockRecord, Executed, Header};
use crate::hash::Hash;
use crate::keys::Address;
use crate::ledger::{Account, Ledger};
use crate::pow::Undo;
use crate::tx::TxId;

/// Consensus log entries as stored: (key, value) in key order.
pub type ConsensusEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// One atomic, durable write.
#[derive(Default, Debug, Clone)]
pub struct WriteSet {
    /// Blocks in height order; the first extends the current head.
    pub blocks: Vec<Executed>,
    /// Bodies of batches accepted at a sequence number, kept until a block executes there.
    pub batches: Vec<BatchBody>,
    /// Consensus log entries to put (`Some`) or delete (`None`).
    pub consensus: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.consensus.is_empty() && self.batches.is_empty()
    }

    /// Whether the write must be forced to disk before it returns: it holds votes or what they
    /// vote for (consensus entries, accepted batches). Blocks alone need not be (see
    /// `quire_rocks::RocksStore::write`).
    pub fn must_sync(&self) -> bool {
        !self.consensus.is_empty() || !self.batches.is_empty()
    }
}

/// The body of a batch a replica accepted at `seq`, stored under `(seq, digest)`.
#[derive(Debug, Clone)]
pub struct BatchBody {
    pub seq: u64,
    /// `batch.digest()`, computed once by whoever accepted it.
    pub digest: Hash,
    pub batch: std::sync::Arc<Batch>,
}

/// One atomic, durable change of a proof-of-work replica's main chain: roll back to the fork
/// point, then extend it. A plain extension has no rollback; a reorg has both, in one synced
/// write, so a crash leaves the old head or the new one, never a mix.
#[derive(Default, Debug, Clone)]
pub struct PowWrite {
    /// Main-chain blocks to take off, from the head down.
    pub rollback: Vec<Rollback>,
    /// Blocks that extend the fork point, in height order, each with its undo record.
    pub blocks: Vec<(Executed, Undo)>,
    /// Undo records to delete: blocks now deeper than the replica keeps undo records for.
    pub prune: Vec<Hash>,
}

/// A main-chain block being rolled back: its header, its transactions (their index entries go)
/// and its undo record (its accounts go back).
#[derive(Debug, Clone)]
pub struct Rollback {
    pub header: Header,
    pub tx_ids: Vec<TxId>,
    pub undo: Undo,
}

/// Checks that `write` rolls `head` back one parent at a time and then extends what remains;
/// our own invariant, but a wrong write must not reach the disk.
pub fn check_pow_write(head: &Header, write: &PowWrite) -> Result<(), StoreError> {
    let (mut height, mut hash) = (head.height, head.hash());
    for r in &write.rollback {
        if r.header.hash() != hash || r.header.height == 0 {
            return Err(StoreError::NotExtending {
                height: r.header.height,
                head: height,
            });
        }
        (height, hash) = (r.header.height - 1, r.header.parent_hash);
    }
    for (executed, _) in &write.blocks {
        let h = &executed.record.block.header;
        if h.height != height + 1 || h.parent_hash != hash {
            return Err(StoreError::NotExtending {
                height: h.height,
                head: height,
            });
        }
        (height, hash) = (h.height, h.hash());
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("store belongs to another chain: chain id {found}, this genesis is {expected}")]
    Foreign { expected: Hash, found: Hash },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("block {height} does not extend the head at height {head}")]
    NotExtending { height: u64, head: u64 },
}

/// Where a transaction was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

pub trait Store: Send + Sync {
    /// The header of the last committed block.
    fn head(&self) -> Header;

    fn block(&self, height: u64) -> Result<Option<BlockRecord>, StoreError>;

    fn tx_location(&self, id: &TxId) -> Result<Option<TxLocation>, StoreError>;

    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError>;

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError>;

    fn consensus_entries(&self) -> Result<ConsensusEntries, StoreError>;

    /// The body of the batch with `digest` accepted (or executed) at `seq`, if stored.
    fn batch(&self, seq: u64, digest: &Hash) -> Result<Option<Batch>, StoreError>;

    /// Applies `writes` atomically and durably.
    fn write(&self, writes: &WriteSet) -> Result<(), StoreError>;

    /// Forgets the chain above the genesis block (blocks, the transaction index, the account
    /// state back to the genesis balances) and keeps the consensus log, atomically and durably:
    /// how a replica whose state diverged from a certified checkpoint starts over and fetches
    /// the chain again (its votes stay remembered, so it never contradicts them).
    fn reset_chain(&self, genesis: &crate::genesis::Genesis) -> Result<(), StoreError>;
    /// Proof of work: rolls back and extends the main chain atomically and durably.
    fn write_pow(&self, write: &PowWrite) -> Result<(), StoreError>;

    /// Proof of work: the undo record of main-chain block `hash`, if still kept.
    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError>;

    fn header(&self, height: u64) -> Result<Option<Header>, StoreError> {
        Ok(self.block(height)?.map(|r| r.block.header))
    }

    /// The ledger as of the head, rebuilt from the stored accounts.
    fn ledger(&self, chain_id: Hash) -> Result<Ledger, StoreError> {
        Ok(Ledger::new(chain_id, self.accounts()?))
    }
}

/// A transaction id can appear in several blocks (a replay is included and rejected). The index
/// points at the occurrence that took effect if there is one, else at the first.
pub fn replaces_index_entry(record: &BlockRecord, index: usize) -> bool {
    !matches!(
        record.outcomes.get(index),
        Some(crate::tx::Outcome::Rejected(_))
    )
}

/// Checks that `blocks` extend `head` one by one; our own invariant, but a wrong write must not
/// reach the disk.
pub fn check_extends(mut head: Header, blocks: &[Executed]) -> Result<(), StoreError> {
    for b in blocks {
        let h = &b.record.block.header;
        if h.height != head.height + 1 || h.parent_hash != head.hash() {
            return Err(StoreError::NotExtending {
                height: h.height,
                head: head.height,
            });
        }
        head = *h;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
