//! Transactions waiting to be proposed and executed.
//!
//! Every replica keeps the transactions it has heard of until they execute: the primary proposes
//! from it, a backup times it (a ready transaction that waits too long means a faulty primary) and
//! re-proposes from it once it becomes primary. A transfer is *ready* when its nonce is the
//! sender's next one, counting transfers already proposed; a transfer from the future is parked
//! until its predecessors execute, so nonce gaps neither block others nor trigger view changes.
//!
//! Every map here is ordered (no hashing with a per-process seed), so what a replica proposes
//! depends only on what it received, and a simulator seed replays byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use quire_chain::{Address, Ledger, Transaction, TxId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Queued,
    Proposed,
    Parked,
}

#[derive(Clone, Debug)]
struct Entry {
    tx: Transaction,
    order: u64,
    tick: u64,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Duplicate,
    Full,
}

#[derive(Clone, Debug)]
pub struct Mempool {
    max: usize,
    entries: BTreeMap<TxId, Entry>,
    /// Queued transactions by arrival order.
    queue: BTreeMap<u64, TxId>,
    /// Parked transfers by (sender, nonce).
    parked: BTreeMap<(Address, u64), TxId>,
    /// The sender's next nonce after the transfers this replica proposed.
    proposed_nonce: BTreeMap<Address, u64>,
    next_order: u64,
}

/// Parked transfers whose predecessors never arrive are dropped after this many ticks.
const PARKED_TTL_TICKS: u64 = 3000;

impl Mempool {
    pub fn new(max: usize) -> Mempool {
        Mempool {
            max,
            entries: BTreeMap::new(),
            queue: BTreeMap::new(),
            parked: BTreeMap::new(),
            proposed_nonce: BTreeMap::new(),
            next_order: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.entries.contains_key(id)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn insert(&mut self, tx: Transaction, tick: u64) -> Result<(), Refusal> {
        let id = tx.id();
        if self.entries.contains_key(&id) {
            return Err(Refusal::Duplicate);
        }
        if self.entries.len() >= self.max {
            return Err(Refusal::Full);
        }
        let order = self.next_order;
        self.next_order += 1;
        self.queue.insert(order, id);
        self.entries.insert(
            id,
            Entry {
                tx,
                order,
                tick,
                state: State::Queued,
            },
        );
        Ok(())
    }

    fn expected_nonce(&self, ledger: &Ledger, from: &Address) -> u64 {
        let executed = ledger.account(from).nonce;
        self.proposed_nonce
            .get(from)
            .map_or(executed, |n| (*n).max(executed))
    }

    fn remove(&mut self, id: &TxId) {
        self.detach(id);
        self.entries.remove(id);
    }

    /// Takes a transaction out of the queue or the parking lot, keeping its entry.
    fn detach(&mut self, id: &TxId) {
        if let Some(e) = self.entries.get(id) {
            match e.state {
                State::Queued => {
                    self.queue.remove(&e.order);
                }
                State::Parked => {
                    if let Some(t) = e.tx.as_transfer() {
                        self.parked.remove(&(t.transfer.from, t.transfer.nonce));
                    }
                }
                State::Proposed => {}
            }
        }
    }

    fn park(&mut self, id: TxId) {
        if let Some(e) = self.entries.get_mut(&id) {
            self.queue.remove(&e.order);
            e.state = State::Parked;
            if let Some(t) = e.tx.as_transfer() {
                self.parked.insert((t.transfer.from, t.transfer.nonce), id);
            }
        }
    }

    fn unpark(&mut self, from: Address, nonce: u64) {
        if let Some(id) = self.parked.remove(&(from, nonce))
            && let Some(e) = self.entries.get_mut(&id)
        {
            e.state = State::Queued;
            self.queue.insert(e.order, id);
        }
    }

    /// Sorts the head of the queue: drops stale transfers, parks future ones, and returns the id
    /// of the first ready transaction, if any.
    fn first_ready(&mut self, ledger: &Ledger) -> Option<TxId> {
        while let Some((_, id)) = self.queue.first_key_value() {
            let id = *id;
            let Some(entry) = self.entries.get(&id) else {
                self.queue.pop_first();
                continue;
            };
            let Some(t) = entry.tx.as_transfer() else {
                return Some(id);
            };
            let expected = self.expected_nonce(ledger, &t.transfer.from);
            match t.transfer.nonce.cmp(&expected) {
                std::cmp::Ordering::Equal => return Some(id),
                std::cmp::Ordering::Less => self.remove(&id),
                std::cmp::Ordering::Greater => self.park(id),
            }
        }
        None
    }

    /// Takes up to `max` ready transactions, in arrival order, and marks them proposed.
    pub fn take_batch(&mut self, max: usize, ledger: &Ledger) -> Vec<Transaction> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(id) = self.first_ready(ledger) else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&id) else {
                break;
            };
            self.queue.remove(&entry.order);
            entry.state = State::Proposed;
            let tx = entry.tx.clone();
            if let Some(t) = tx.as_transfer() {
                let (from, nonce) = (t.transfer.from, t.transfer.nonce);
                self.proposed_nonce.insert(from, nonce + 1);
                self.unpark(from, nonce + 1);
            }
            out.push(tx);
        }
        out
    }

    /// How many ticks ago the oldest ready transaction arrived.
    pub fn oldest_ready_tick(&mut self, ledger: &Ledger) -> Option<u64> {
        let id = self.first_ready(ledger)?;
        self.entries.get(&id).map(|e| e.tick)
    }

    /// Forgets executed transactions, and lets parked successors of their senders queue again.
    pub fn executed(&mut self, txs: &[Transaction], ledger: &Ledger) {
        let mut senders = BTreeSet::new();
        for tx in txs {
            self.remove(&tx.id());
            if let Some(t) = tx.as_transfer() {
                senders.insert(t.transfer.from);
            }
        }
        for from in senders {
            let next = ledger.account(&from).nonce;
            self.unpark(from, next);
        }
    }

    /// A new view began: only the batches it re-proposes (`kept`) are in flight; every other
    /// transaction this replica had proposed waits again, in its original order.
    pub fn new_view(&mut self, kept: &[&Transaction]) {
        self.proposed_nonce.clear();
        let kept_ids: BTreeSet<TxId> = kept.iter().map(|t| t.id()).collect();
        for (id, e) in self.entries.iter_mut() {
            if e.state == State::Proposed && !kept_ids.contains(id) {
                e.state = State::Queued;
                self.queue.insert(e.order, *id);
            }
        }
        self.mark_proposed(kept);
    }

    /// Transactions proposed by someone else (re-proposals of a new view) are in flight.
    pub fn mark_proposed(&mut self, txs: &[&Transaction]) {
        for tx in txs {
            let id = tx.id();
            if self.entries.contains_key(&id) {
                self.detach(&id);
                if let Some(e) = self.entries.get_mut(&id) {
                    e.state = State::Proposed;
                }
            }
            if let Some(t) = tx.as_transfer() {
                let next = self.proposed_nonce.entry(t.transfer.from).or_insert(0);
                *next = (*next).max(t.transfer.nonce + 1);
            }
        }
    }

    /// Up to `max` queued transactions that have waited at least `min_age_ticks`, oldest first:
    /// a backup passes them to the primary again in case the first forward was lost.
    pub fn stale_queued(&self, now_tick: u64, min_age_ticks: u64, max: usize) -> Vec<Transaction> {
        self.queue
            .values()
            .filter_map(|id| self.entries.get(id))
            .take_while(|e| now_tick.saturating_sub(e.tick) >= min_age_ticks)
            .take(max)
            .map(|e| e.tx.clone())
            .collect()
    }

    /// Drops parked transfers whose predecessors never came.
    pub fn expire(&mut self, now_tick: u64) {
        let old: Vec<TxId> = self
            .parked
            .values()
            .filter(|id| {
                self.entries
                    .get(id)
                    .is_some_and(|e| now_tick.saturating_sub(e.tick) > PARKED_TTL_TICKS)
            })
            .copied()
            .collect();
        for id in old {
            self.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quire_chain::testkit::TestNet;

    #[test]
    fn ready_transfers_come_out_in_order_and_future_ones_wait() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100);
        pool.insert(net.transfer(0, 1, 5, 1), 0).unwrap();
        pool.insert(net.transfer(1, 2, 5, 0), 0).unwrap();
        pool.insert(net.transfer(0, 1, 5, 0), 1).unwrap();
        assert_eq!(
            pool.insert(net.transfer(0, 1, 5, 0), 1),
            Err(Refusal::Duplicate)
        );
        let batch = pool.take_batch(10, &ledger);
        let nonces: Vec<(usize, u64)> = batch
            .iter()
            .map(|t| {
                let t = t.as_transfer().unwrap().transfer;
                (
                    net.account_keys
                        .iter()
                        .position(|k| k.address() == t.from)
                        .unwrap(),
                    t.nonce,
                )
            })
            .collect();
        // Sender 0's nonce 1 waits for its nonce 0, then follows it at once.
        assert_eq!(nonces, vec![(1, 0), (0, 0), (0, 1)]);
        assert!(pool.take_batch(10, &ledger).is_empty());
    }

    #[test]
    fn a_new_view_requeues_what_was_proposed_but_not_kept() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100);
        let a = net.transfer(0, 1, 5, 0);
        let b = net.transfer(1, 2, 5, 0);
        pool.insert(a.clone(), 0).unwrap();
        pool.insert(b.clone(), 0).unwrap();
        assert_eq!(pool.take_batch(10, &ledger).len(), 2);
        pool.new_view(&[&b]);
        assert_eq!(pool.take_batch(10, &ledger), vec![a]);
    }

    #[test]
    fn stale_transfers_are_dropped_and_the_pool_is_bounded() {
        let net = TestNet::new(4, 3);
        let mut ledger = net.genesis.ledger();
        let tx = net.transfer(0, 1, 5, 0);
        let ok = ledger.verify_signatures(std::slice::from_ref(&tx));
        ledger.apply(std::slice::from_ref(&tx), &ok);
        let mut pool = Mempool::new(2);
        pool.insert(tx, 0).unwrap();
        pool.insert(net.transfer(1, 0, 5, 0), 0).unwrap();
        assert_eq!(pool.insert(net.transfer(2, 0, 5, 0), 0), Err(Refusal::Full));
        assert_eq!(pool.take_batch(10, &ledger).len(), 1);
        assert_eq!(pool.len(), 1);
    }
}
