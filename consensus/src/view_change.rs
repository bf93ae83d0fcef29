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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Proposal, Signed, SlotVote};
    use quire_chain::Signature;

    fn proof(view: u64, seq: u64, digest: u8) -> PreparedProof {
        PreparedProof {
            proposal: Signed {
                from: 0,
                body: Proposal(SlotVote {
                    view,
                    seq,
                    digest: Hash([digest; 32]),
                }),
                signature: Signature([0; 64]),
            },
            prepares: Vec::new(),
        }
    }

    fn vc(stable: u64, prepared: Vec<PreparedProof>) -> ViewChange {
        ViewChange {
            new_view: 5,
            checkpoint: StableCheckpoint {
                seq: stable,
                block_hash: Hash([stable as u8; 32]),
                certificate: None,
            },
            prepared,
        }
    }

    /// Trap 4: two prepared certificates for one seq: the one from the highest view wins.
    #[test]
    fn the_prepared_certificate_from_the_highest_view_wins() {
        let a = vc(0, vec![proof(1, 1, 0xaa)]);
        let b = vc(0, vec![proof(3, 1, 0xbb)]);
        let c = vc(0, vec![proof(2, 1, 0xcc)]);
        let p = plan(&[&a, &b, &c]);
        assert_eq!(p.proposals, vec![(1, Hash([0xbb; 32]))]);
    }

    /// Trap 5: gaps between min-s and max-s are filled with null batches.
    #[test]
    fn gaps_are_filled_with_null_batches() {
        let a = vc(0, vec![proof(1, 3, 0xaa)]);
        let b = vc(0, vec![]);
        let p = plan(&[&a, &b]);
        let null = Batch::null().digest();
        assert_eq!(
            p.proposals,
            vec![(1, null), (2, null), (3, Hash([0xaa; 32]))]
        );
    }

    /// min-s is the highest stable checkpoint in V; certificates at or below it are done.
    #[test]
    fn the_highest_stable_checkpoint_starts_the_new_view() {
        let a = vc(8, vec![proof(1, 9, 0xaa)]);
        let b = vc(0, vec![proof(1, 2, 0xbb), proof(1, 9, 0xaa)]);
        let p = plan(&[&a, &b]);
        assert_eq!(p.checkpoint.seq, 8);
        assert_eq!(p.proposals, vec![(9, Hash([0xaa; 32]))]);
    }

    #[test]
    fn nothing_prepared_means_nothing_to_re_propose() {
        let a = vc(4, vec![]);
        assert!(plan(&[&a]).proposals.is_empty());
    }
}
