//! The new-view computation (PBFT §4.4), shared by the new primary that builds a NewView and the
//! backups that check it: both derive O from V with this one function, so a primary that drops a
//! prepared batch or invents one is caught (PBFT.md trap 3).

use std::collections::BTreeMap;

use quire_chain::{Batch, Hash};

use crate::message::{PreparedProof, StableCheckpoint, ViewChange};

/// What a NewView must contain, given the view changes it is based on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewViewPlan {
    /// The highest stable checkpoint in V: min-s.
    pub checkpoint: StableCheckpoint,
    /// `(seq, digest)` for every seq in (min-s, max-s]: the digest of the prepared proof with the
    /// highest view for that seq, or the null batch's digest where none prepared (trap 5).
    pub proposals: Vec<(u64, Hash)>,
}

pub fn plan(view_changes: &[&ViewChange]) -> NewViewPlan {
    let checkpoint = view_changes
        .iter()
        .map(|vc| &vc.checkpoint)
        .max_by_key(|c| c.seq)
        .cloned()
        .unwrap_or(StableCheckpoint {
            seq: 0,
            block_hash: Hash::ZERO,
            certificate: None,
        });
    let min_s = checkpoint.seq;
    // For each seq above min-s, the prepared proof from the highest view (trap 4).
    let mut best: BTreeMap<u64, &PreparedProof> = BTreeMap::new();
    for proof in view_changes.iter().flat_map(|vc| vc.prepared.iter()) {
        let slot = proof.slot();
        if slot.seq <= min_s {
            continue;
        }
        let better = best
            .get(&slot.seq)
            .is_none_or(|b| b.slot().view < slot.view);
        if better {
            best.insert(slot.seq, proof);
        }
    }
    let max_s = best.keys().next_back().copied().unwrap_or(min_s);
    let null = Batch::null().digest();
    let proposals = (min_s + 1..=max_s)
        .map(|seq| (seq, best.get(&seq).map_or(null, |p| p.slot().digest)))
        .collect();
    NewViewPlan {
        checkpoint,
        proposals,
    }
}
