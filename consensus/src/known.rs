//! Transactions whose client signatures this replica has found valid, so that executing a block
//! does not check them again. A verdict depends only on the transaction (`quire_chain::sig`), so
//! remembering a `true` can never change an outcome; forgetting one only costs a check.
//!
//! Bounded: two generations of at most `generation_max` ids each; when the newer fills up, the
//! older is dropped. An id stays known for at least one full generation after it was learnt.

use std::collections::HashSet;
use std::hash::Hash;

use quire_chain::{Ledger, SignedId, Transaction};

/// A bounded set: two generations of at most `generation_max` keys each. When the newer fills
/// up it becomes the older, and the dropped older generation's table is emptied and filled
/// again: a set that grew from nothing rehashed every key it held at each doubling, once per
/// generation. The first generation still grows as keys arrive: sized for a whole generation at
/// once, its keys land all over the table and a replica's resident memory reached the bound the
/// `amplify` scenario allows within seconds.
#[derive(Clone, Debug)]
pub struct Generations<K> {
    newer: HashSet<K>,
    older: HashSet<K>,
    generation_max: usize,
}

impl<K: Hash + Eq> Generations<K> {
    pub fn new(generation_max: usize) -> Generations<K> {
        Generations {
            newer: HashSet::new(),
            older: HashSet::new(),
            generation_max: generation_max.max(1),
        }
    }

    pub fn insert(&mut self, key: K) {
        if self.newer.len() >= self.generation_max {
            let mut spare = std::mem::take(&mut self.older);
            spare.clear();
            self.older = std::mem::replace(&mut self.newer, spare);
        }
        self.newer.insert(key);
    }

    pub fn contains(&self, key: &K) -> bool {
        self.newer.contains(key) || self.older.contains(key)
    }

    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keyed by [`SignedId`]: the id with the signature (see there why not the id alone). Hashed
/// with the process's random keys: only looked up, never iterated.
#[derive(Clone, Debug)]
pub struct KnownGood {
    ids: Generations<SignedId>,
}

impl KnownGood {
    pub fn new(generation_max: usize) -> KnownGood {
        KnownGood {
            ids: Generations::new(generation_max),
        }
    }

    pub fn learn(&mut self, id: SignedId) {
        self.ids.insert(id);
    }

    pub fn contains(&self, id: &SignedId) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The signature verdict of each of `txs`, checking only the transfers not known good.
    pub fn verdicts(&self, ledger: &Ledger, txs: &[Transaction]) -> Vec<bool> {
        let known: Vec<bool> = txs
            .iter()
            .map(|tx| tx.signed_id().is_none_or(|k| self.contains(&k)))
            .collect();
        let unknown: Vec<Transaction> = txs
            .iter()
            .zip(&known)
            .filter(|(_, k)| !**k)
            .map(|(tx, _)| tx.clone())
            .collect();
        let mut checked = ledger.verify_signatures(&unknown).into_iter();
        known
            .into_iter()
            .map(|k| k || checked.next().unwrap_or(false))
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
        known.learn(good.signed_id().unwrap());
        assert_eq!(known.verdicts(&ledger, &txs), all_checked);
    }

    /// A copy of a known-good transfer with a forged signature has the same id: it must still be
    /// checked, or a replica that saw the genuine one would apply a transfer its peers reject.
    #[test]
    fn a_forged_copy_of_a_known_transfer_is_still_checked() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let genuine = net.transfer(0, 1, 5, 0);
        let mut forged = genuine.clone();
        if let Transaction::Transfer(t) = &mut forged {
            t.signature.0[40] ^= 1;
        }
        assert_eq!(forged.id(), genuine.id());
        let mut known = KnownGood::new(8);
        known.learn(genuine.signed_id().unwrap());
        assert_eq!(
            known.verdicts(&ledger, &[forged, genuine]),
            vec![false, true]
        );
    }

    #[test]
    fn it_stays_bounded_and_keeps_one_generation() {
        let mut known = KnownGood::new(4);
        let ids: Vec<SignedId> = (0..20u8)
            .map(|i| SignedId {
                id: quire_chain::TxId(quire_chain::Hash([i; 32])),
                signature: quire_chain::Signature([i; 64]),
            })
            .collect();
        for id in &ids {
            known.learn(*id);
        }
        assert!(known.len() <= 8);
        assert!(ids[16..].iter().all(|id| known.contains(id)));
        assert!(!known.contains(&ids[0]));
    }
}
