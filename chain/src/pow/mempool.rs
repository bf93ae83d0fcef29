//! The proof-of-work mempool: transfers waiting for a block, by sender and nonce, bounded in
//! count. A miner takes, per sender, the run of consecutive nonces from the sender's next one;
//! after each head change, what the new head spent is dropped and what an abandoned block held
//! comes back (unless the new branch spent its nonce).

use std::collections::{BTreeMap, HashSet};

use crate::keys::Address;
use crate::ledger::Ledger;
use crate::tx::{Transaction, TxId};

#[derive(Clone, Debug)]
pub struct Mempool {
    by_nonce: BTreeMap<(Address, u64), Transaction>,
    /// Raw payloads (benchmark networks only), in arrival order.
    raw: Vec<Transaction>,
    ids: HashSet<TxId>,
    max: usize,
}

impl Mempool {
    pub fn new(max: usize) -> Mempool {
        Mempool {
            by_nonce: BTreeMap::new(),
            raw: Vec::new(),
            ids: HashSet::new(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.ids.contains(id)
    }

    /// Adds a transaction whose signature was checked; false if full, known, stale, or a second
    /// transaction for a (sender, nonce) already waiting (the first one stays).
    pub fn insert(&mut self, ledger: &Ledger, tx: Transaction) -> bool {
        let id = tx.id();
        if self.ids.len() >= self.max || self.ids.contains(&id) {
            return false;
        }
        match tx.as_transfer() {
            None => self.raw.push(tx),
            Some(t) => {
                let key = (t.transfer.from, t.transfer.nonce);
                if t.transfer.nonce < ledger.account(&t.transfer.from).nonce
                    || self.by_nonce.contains_key(&key)
                {
                    return false;
                }
                self.by_nonce.insert(key, tx);
            }
        }
        self.ids.insert(id);
        true
    }

    /// Drops what `ledger` (the new head's state) has spent, and the raw payloads it holds.
    pub fn prune(&mut self, ledger: &Ledger, included: &HashSet<TxId>) {
        let ids = &mut self.ids;
        self.by_nonce.retain(|(from, nonce), tx| {
            let keep = *nonce >= ledger.account(from).nonce;
            if !keep {
                ids.remove(&tx.id());
            }
            keep
        });
        self.raw.retain(|tx| {
            let keep = !included.contains(&tx.id());
            if !keep {
                ids.remove(&tx.id());
            }
            keep
        });
    }

    /// Up to `max` transactions that can go in the next block on `ledger`'s state, in order.
    pub fn candidates(&self, ledger: &Ledger, max: usize) -> Vec<Transaction> {
        let mut out = Vec::new();
        let mut sender: Option<(Address, u64)> = None;
        for ((from, nonce), tx) in &self.by_nonce {
            if out.len() >= max {
                return out;
            }
            let next = match sender {
                Some((a, n)) if a == *from => n,
                _ => ledger.account(from).nonce,
            };
            if *nonce == next {
                out.push(tx.clone());
                sender = Some((*from, next + 1));
            } else {
                sender = Some((*from, u64::MAX));
            }
        }
        out.extend(self.raw.iter().take(max.saturating_sub(out.len())).cloned());
        out
    }
}
