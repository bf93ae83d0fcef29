//! Transactions whose client signatures this replica has found valid, so that executing a block
//! does not check them again. A verdict depends only on the transaction (`quire_chain::sig`), so
//! remembering a `true` can never change an outcome; forgetting one only costs a check.
//!
//! Bounded: two generations of at most `generation_max` ids each; when the newer fills up, the
//! older is dropped. An id stays known for at least one full generation after it was learnt.

use std::collections::BTreeSet;

use quire_chain::{Ledger, Transaction, TxId};

#[derive(Clone, Debug)]
pub struct KnownGood {
    newer: BTreeSet<TxId>,
    older: BTreeSet<TxId>,
    generation_max: usize,
}

impl KnownGood {
    pub fn new(generation_max: usize) -> KnownGood {
        KnownGood {
            newer: BTreeSet::new(),
            older: BTreeSet::new(),
            generation_max: generation_max.max(1),
        }
    }

    pub fn learn(&mut self, id: TxId) {
        if self.newer.len() >= self.generation_max {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(id);
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.newer.contains(id) || self.older.contains(id)
    }

    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The signature verdict of each of `txs`, checking only the transfers not known good.
    pub fn verdicts(&self, ledger: &Ledger, txs: &[Transaction]) -> Vec<bool> {
        let unknown: Vec<Transaction> = txs
            .iter()
            .filter(|tx| tx.as_transfer().is_some() && !self.contains(&tx.id()))
            .cloned()
            .collect();
        let mut checked = ledger.verify_signatures(&unknown).into_iter();
        txs.iter()
            .map(|tx| {
                tx.as_transfer().is_none()
                    || self.contains(&tx.id())
                    || checked.next().unwrap_or(false)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quire_chain::testkit::TestNet;

    /// What the set knows only saves work: the verdicts are those of checking every signature.
    #[test]
    fn verdicts_are_the_same_known_or_not() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let good = net.transfer(0, 1, 5, 0);
        let mut bad = net.transfer(1, 2, 5, 0);
        if let Transaction::Transfer(t) = &mut bad {
            t.signature.0[9] ^= 4;
        }
        let txs = vec![
            good.clone(),
            bad,
            Transaction::raw(vec![1]),
            net.transfer(2, 0, 1, 0),
        ];
        let fresh = KnownGood::new(8);
        let all_checked = fresh.verdicts(&ledger, &txs);
        assert_eq!(all_checked, vec![true, false, true, true]);
        let mut known = KnownGood::new(8);
        known.learn(good.id());
        assert_eq!(known.verdicts(&ledger, &txs), all_checked);
    }

    #[test]
    fn it_stays_bounded_and_keeps_one_generation() {
        let mut known = KnownGood::new(4);
        let ids: Vec<TxId> = (0..20u8)
            .map(|i| TxId(quire_chain::Hash([i; 32])))
            .collect();
        for id in &ids {
            known.learn(*id);
        }
        assert!(known.len() <= 8);
        assert!(ids[16..].iter().all(|id| known.contains(id)));
        assert!(!known.contains(&ids[0]));
    }
}
