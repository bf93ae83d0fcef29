//! The message log: one slot per sequence number between the watermarks, holding the accepted
//! PrePrepare, the Prepare and Commit votes received, and what the slot has reached (prepared,
//! committed).

use std::collections::BTreeMap;
use std::sync::Arc;

use quire_chain::cert::CommitCertificate;
use quire_chain::{Batch, Hash, ReplicaId, Signature};

use crate::message::{PreparedProof, Proposal, Signed};

/// One replica's vote in a slot: the digest it voted for and its signature.
pub type VoteEntry = (Hash, Signature);

#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// The PrePrepare this replica accepted, in the latest view it accepted one.
    pub pre_prepare: Option<(Signed<Proposal>, Arc<Batch>)>,
    /// Prepare votes by (view, replica): the first vote of each replica in each view.
    pub prepares: BTreeMap<(u64, ReplicaId), VoteEntry>,
    /// Commit votes by (view, replica).
    pub commits: BTreeMap<(u64, ReplicaId), VoteEntry>,
    /// The prepared certificate from the highest view this replica prepared in.
    pub prepared: Option<(PreparedProof, Arc<Batch>)>,
    /// The view in which this replica sent its Commit, if it did.
    pub commit_sent_view: Option<u64>,
    /// Decided: the batch and a quorum of Commit votes for it.
    pub committed: Option<(Arc<Batch>, CommitCertificate)>,
    /// The last tick something happened in this slot, or its votes were resent (for
    /// retransmission).
    pub touched_tick: u64,
    /// How often this slot's votes were resent since its PrePrepare was accepted: each resend
    /// doubles the wait before the next (a slot slow because the cluster is overloaded, not
    /// because a message was lost, must not have its batch sent again every interval).
    pub resends: u32,
    /// When this replica accepted the slot's PrePrepare (for the view-change timer).
    pub accepted_tick: u64,
    /// Whether this slot already produced evidence against its primary.
    pub blamed: bool,
    /// A batch for this slot whose every client signature this replica found valid before it
    /// voted (a PrePrepare it checked). The very same batch (`Arc::ptr_eq`) is executed without
    /// looking its signatures up again; any other content for the slot is checked.
    pub signed: Option<Arc<Batch>>,
}

/// What recording a vote found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    New,
    Duplicate,
    /// The replica already voted for another digest in this view: evidence of a double vote.
    Conflict,
}

pub fn record(
    votes: &mut BTreeMap<(u64, ReplicaId), VoteEntry>,
    view: u64,
    from: ReplicaId,
    digest: Hash,
    signature: Signature,
) -> Recorded {
    match votes.get(&(view, from)) {
        Some((d, _)) if *d == digest => Recorded::Duplicate,
        Some(_) => Recorded::Conflict,
        None => {
            votes.insert((view, from), (digest, signature));
            Recorded::New
        }
    }
}

/// The votes for `digest` in `view`, by replica, leaving out `except` (the primary, for Prepares).
pub fn matching(
    votes: &BTreeMap<(u64, ReplicaId), VoteEntry>,
    view: u64,
    digest: &Hash,
    except: Option<ReplicaId>,
) -> BTreeMap<ReplicaId, Signature> {
    votes
        .range((view, 0)..=(view, ReplicaId::MAX))
        .filter(|((_, r), (d, _))| d == digest && Some(*r) != except)
        .map(|((_, r), (_, s))| (*r, *s))
        .collect()
}

impl Slot {
    /// The batch with `digest`, if this slot has seen it.
    pub fn batch(&self, digest: &Hash) -> Option<Arc<Batch>> {
        let from_pp = self
            .pre_prepare
            .as_ref()
            .filter(|(pp, _)| pp.body.0.digest == *digest)
            .map(|(_, b)| b.clone());
        from_pp.or_else(|| {
            self.prepared
                .as_ref()
                .filter(|(p, _)| p.slot().digest == *digest)
                .map(|(_, b)| b.clone())
        })
    }

    /// Forgets votes from views before `view` (prepared proofs and decisions stay).
    pub fn prune_votes(&mut self, view: u64) {
        self.prepares.retain(|(v, _), _| *v >= view);
        self.commits.retain(|(v, _), _| *v >= view);
    }
}
