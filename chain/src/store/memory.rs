//! The in-memory twin of the RocksDB store, for tests and the simulator. Writes are atomic like
//! the real store's; "durable" means they survive the replica (the simulator keeps the store when
//! it crashes a replica).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{PowWrite, Store, StoreError, TxLocation, WriteSet, check_extends, check_pow_write};
use crate::block::{Batch, BlockRecord, Header};
use crate::genesis::Genesis;
use crate::hash::Hash;
use crate::keys::Address;
use crate::ledger::Account;
use crate::pow::Undo;
use crate::tx::TxId;

#[derive(Clone, Default)]
struct Inner {
    blocks: Vec<BlockRecord>,
    tx_index: HashMap<TxId, TxLocation>,
    accounts: BTreeMap<Address, Account>,
    consensus: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batch bodies by (seq, digest), as the RocksDB store keeps them (see the module doc of
    /// [`super`]); blocks here also keep their transactions, which costs nothing in memory.
    batches: BTreeMap<(u64, Hash), Arc<Batch>>,
    /// Bodies at executed heights their block did not use, kept for as long as the RocksDB
    /// store keeps them (while the consensus log may name them: `keep_replaced` heights).
    replaced: BTreeMap<u64, Vec<Hash>>,
    keep_replaced: u64,
    undo: HashMap<Hash, Undo>,
}

impl Inner {
    /// The body of the block at `height` is the batch `digest` there; other bodies at that
    /// height were proposals a view change replaced, deleted once the chain is `keep_replaced`
    /// past them.
    fn keep_body(&mut self, height: u64, digest: Hash, body: impl FnOnce() -> Batch) {
        let others: Vec<Hash> = self
            .batches
            .range((height, Hash([0; 32]))..=(height, Hash([0xff; 32])))
            .map(|(k, _)| k.1)
            .filter(|d| *d != digest)
            .collect();
        if !others.is_empty() {
            self.replaced.insert(height, others);
        }
        self.batches
            .entry((height, digest))
            .or_insert_with(|| Arc::new(body()));
        let forget_to = height.saturating_sub(self.keep_replaced);
        let keep = self.replaced.split_off(&(forget_to + 1));
        for (seq, digests) in std::mem::replace(&mut self.replaced, keep) {
            for d in digests {
                self.batches.remove(&(seq, d));
            }
        }
    }
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new(genesis: &Genesis) -> MemoryStore {
        let inner = Inner {
            blocks: vec![BlockRecord {
                block: genesis.block(),
                outcomes: Vec::new(),
            }],
            accounts: genesis.accounts.iter().copied().collect(),
            keep_replaced: genesis.protocol.log_window.saturating_mul(2),
            ..Inner::default()
        };
        MemoryStore {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write (writes are built
        // fully before being swapped in), so a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Overwrites one account, as a corrupted disk might: for tests of what a replica does when
    /// its state is wrong.
    pub fn tamper_account(&self, address: Address, account: Account) {
        self.lock().accounts.insert(address, account);
    }

    /// A copy of everything stored, as a crashed replica's disk would be found.
    pub fn snapshot(&self) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(self.lock().clone()),
        }
    }
}

impl Store for MemoryStore {
    fn head(&self) -> Header {
        let inner = self.lock();
        inner
            .blocks
            .last()
            .map(|r| r.block.header)
            .expect("the memory store always holds the genesis block")
    }

    fn block(&self, height: u64) -> Result<Option<BlockRecord>, StoreError> {
        Ok(self.lock().blocks.get(height as usize).cloned())
    }

    fn tx_location(&self, id: &TxId) -> Result<Option<TxLocation>, StoreError> {
        Ok(self.lock().tx_index.get(id).copied())
    }

    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        Ok(self.lock().accounts.get(address).copied())
    }

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        Ok(self.lock().accounts.iter().map(|(a, b)| (*a, *b)).collect())
    }

    fn consensus_entries(&self) -> Result<super::ConsensusEntries, StoreError> {
        Ok(self
            .lock()
            .consensus
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn batch(&self, seq: u64, digest: &Hash) -> Result<Option<Batch>, StoreError> {
        Ok(self
            .lock()
            .batches
            .get(&(seq, *digest))
            .map(|b| Batch::clone(b)))
    }

    fn reset_chain(&self, genesis: &Genesis) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.blocks = vec![BlockRecord {
            block: genesis.block(),
            outcomes: Vec::new(),
        }];
        inner.tx_index.clear();
        inner.accounts = genesis.accounts.iter().copied().collect();
        // The bodies stay, as in the RocksDB store: all are above the head now.
        inner.replaced.clear();
        Ok(())
    }

    fn write_pow(&self, write: &PowWrite) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let head = inner
            .blocks
            .last()
            .map(|r| r.block.header)
            .ok_or_else(|| StoreError::Corrupt("no genesis block".into()))?;
        check_pow_write(&head, write)?;
        for r in &write.rollback {
            inner.blocks.pop();
            for id in &r.tx_ids {
                inner.tx_index.remove(id);
            }
            for (address, account) in &r.undo.accounts {
                match account {
                    Some(a) => inner.accounts.insert(*address, *a),
                    None => inner.accounts.remove(address),
                };
            }
            inner.undo.remove(&r.header.hash());
        }
        for (executed, undo) in &write.blocks {
            let record = &executed.record;
            let height = record.block.header.height;
            for (index, tx) in record.block.txs.iter().enumerate() {
                let location = TxLocation {
                    height,
                    index: index as u32,
                };
                inner.tx_index.insert(tx.id(), location);
            }
            for (address, account) in &executed.changes {
                inner.accounts.insert(*address, *account);
            }
            inner.undo.insert(record.block.hash(), undo.clone());
            inner.blocks.push(record.clone());
        }
        for hash in &write.prune {
            inner.undo.remove(hash);
        }
        Ok(())
    }

    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError> {
        Ok(self.lock().undo.get(hash).cloned())
    }

    fn write(&self, writes: &WriteSet) -> Result<(), StoreError> {
        let head = self.head();
        check_extends(head, &writes.blocks)?;
        let mut inner = self.lock();
        // As in the RocksDB store: a body at or below the (new) head that is not the body of a
        // block of this write is a proposal for a height already executed; the log names it,
        // so it is kept as a replaced one (a chain reset puts its height above the head again).
        let new_head = writes
            .blocks
            .last()
            .map_or(head.height, |b| b.record.block.header.height);
        for body in &writes.batches {
            let executes_here = writes.blocks.iter().any(|b| {
                let h = &b.record.block.header;
                h.height == body.seq && h.batch_digest() == body.digest
            });
            inner
                .batches
                .insert((body.seq, body.digest), body.batch.clone());
            if body.seq <= new_head && !executes_here {
                let replaced = inner.replaced.entry(body.seq).or_default();
                if !replaced.contains(&body.digest) {
                    replaced.push(body.digest);
                }
            }
        }
        for executed in &writes.blocks {
            let height = executed.record.block.header.height;
            let record = &executed.record;
            inner.keep_body(height, record.block.header.batch_digest(), || {
                record.block.batch()
            });
            for (index, tx) in record.block.txs.iter().enumerate() {
                let id = tx.id();
                if super::replaces_index_entry(record, index) || !inner.tx_index.contains_key(&id) {
                    let location = TxLocation {
                        height,
                        index: index as u32,
                    };
                    inner.tx_index.insert(id, location);
                }
            }
            for (address, account) in &executed.changes {
                inner.accounts.insert(*address, *account);
            }
            inner.blocks.push(executed.record.clone());
        }
        for (key, value) in &writes.consensus {
            match value {
                Some(v) => inner.consensus.insert(key.clone(), v.clone()),
                None => inner.consensus.remove(key),
            };
        }
        Ok(())
    }
}
