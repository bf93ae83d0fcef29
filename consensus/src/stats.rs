//! Counters a replica keeps about what it dropped, whom it caught misbehaving, and its progress.

use std::collections::BTreeMap;

use quire_chain::ReplicaId;

use crate::verify::Reject;

/// Why the core dropped a verified message (state-dependent reasons; stateless ones are
/// [`Reject`]s, counted at the boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drop {
    /// For a view this replica has left.
    StaleView,
    /// For a view too far ahead to keep.
    FutureView,
    /// Normal-case traffic while this replica is changing views.
    ChangingView,
    /// A sequence number outside the watermarks.
    OutOfWindow,
    /// Already have it.
    Duplicate,
    /// A second PrePrepare or vote for another digest in the same view and slot.
    Conflict,
    /// A batch that breaks the proposal rules (size, view, proposer).
    BadBatch,
    /// A transaction refused by a full mempool.
    MempoolFull,
    /// A transaction whose nonce is already used.
    StaleTransaction,
    /// A transaction over its sender's limit (count, nonce distance or balance).
    SenderLimit,
    /// Blocks that do not continue this replica's chain.
    UnwantedBlocks,
    /// A request for an expensive reply (a NewView, blocks) from a peer that had one just now.
    RateLimited,
    /// A ViewChange for a view this replica is the primary of, without the batches it needs to
    /// re-propose (an honest replica sends them there).
    MissingBatches,
}

impl Drop {
    /// How a mempool refusal is counted.
    pub fn of_refusal(refusal: crate::mempool::Refusal) -> Drop {
        use crate::mempool::Refusal;
        match refusal {
            Refusal::Duplicate => Drop::Duplicate,
            Refusal::Full => Drop::MempoolFull,
            Refusal::StaleNonce { .. } => Drop::StaleTransaction,
            Refusal::SenderLimit { .. } | Refusal::Unfunded { .. } => Drop::SenderLimit,
        }
    }

    pub const ALL: [Drop; 13] = [
        Drop::StaleView,
        Drop::FutureView,
        Drop::ChangingView,
        Drop::OutOfWindow,
        Drop::Duplicate,
        Drop::Conflict,
        Drop::BadBatch,
        Drop::MempoolFull,
        Drop::StaleTransaction,
        Drop::SenderLimit,
        Drop::UnwantedBlocks,
        Drop::RateLimited,
        Drop::MissingBatches,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Drop::StaleView => "stale_view",
            Drop::FutureView => "future_view",
            Drop::ChangingView => "changing_view",
            Drop::OutOfWindow => "out_of_window",
            Drop::Duplicate => "duplicate",
            Drop::Conflict => "conflict",
            Drop::BadBatch => "bad_batch",
            Drop::MempoolFull => "mempool_full",
            Drop::StaleTransaction => "stale_transaction",
            Drop::SenderLimit => "sender_limit",
            Drop::UnwantedBlocks => "unwanted_blocks",
            Drop::RateLimited => "rate_limited",
            Drop::MissingBatches => "missing_batches",
        }
    }
}

/// Why a replica started a view change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViewChangeCause {
    /// The scheduled rotation (`rotation_blocks`), at a stable checkpoint.
    Rotation,
    /// Nothing heard from the primary (no heartbeat, no proposal) for a view timeout.
    Silent,
    /// Work waited a view timeout with no progress at all.
    Stalled,
    /// A request waited four view timeouts while blocks with room for it went through.
    Censored,
    /// f+1 replicas asked for a higher view (the join rule).
    Joined,
    /// The view change itself took longer than its timeout: on to the next view.
    Expired,
}

impl ViewChangeCause {
    pub const ALL: [ViewChangeCause; 6] = [
        ViewChangeCause::Rotation,
        ViewChangeCause::Silent,
        ViewChangeCause::Stalled,
        ViewChangeCause::Censored,
        ViewChangeCause::Joined,
        ViewChangeCause::Expired,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ViewChangeCause::Rotation => "rotation",
            ViewChangeCause::Silent => "silent",
            ViewChangeCause::Stalled => "stalled",
            ViewChangeCause::Censored => "censored",
            ViewChangeCause::Joined => "joined",
            ViewChangeCause::Expired => "expired",
        }
    }
}

/// Misbehaviour with a culprit: evidence that a replica is faulty, not just slow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Misbehaviour {
    /// Two PrePrepares for one (view, seq).
    Equivocation,
    /// Two Prepares or Commits for one (view, seq).
    DoubleVote,
    /// A message whose signature does not verify.
    ForgedSignature,
    /// A message claiming another replica as its sender.
    Impersonation,
    /// A proposed batch with transactions whose signatures do not verify, or breaking the rules.
    InvalidBatch,
    /// A ViewChange or NewView that does not check out (e.g. hides prepared certificates).
    InvalidViewChange,
    /// Bytes that are not a message.
    Junk,
    /// A header served in state transfer that re-execution contradicts.
    WrongHeader,
}

impl Misbehaviour {
    pub fn name(&self) -> &'static str {
        match self {
            Misbehaviour::Equivocation => "equivocation",
            Misbehaviour::DoubleVote => "double_vote",
            Misbehaviour::ForgedSignature => "forged_signature",
            Misbehaviour::Impersonation => "impersonation",
            Misbehaviour::InvalidBatch => "invalid_batch",
            Misbehaviour::InvalidViewChange => "invalid_view_change",
            Misbehaviour::Junk => "junk",
            Misbehaviour::WrongHeader => "wrong_header",
        }
    }

    /// What a boundary rejection says about the sender.
    pub fn of_reject(reject: Reject) -> Option<Misbehaviour> {
        Some(match reject {
            Reject::Malformed => Misbehaviour::Junk,
            Reject::Impersonation => Misbehaviour::Impersonation,
            Reject::BadSignature => Misbehaviour::ForgedSignature,
            Reject::BadViewChange
            | Reject::BadNewView
            | Reject::BadPreparedProof
            | Reject::BadCheckpointProof => Misbehaviour::InvalidViewChange,
            Reject::DigestMismatch
            | Reject::WrongPrimary
            | Reject::PrimaryPrepare
            | Reject::BadTransaction
            | Reject::BreaksProtocol => Misbehaviour::InvalidBatch,
            Reject::UnknownSender | Reject::BadBlock => return None,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub drops: BTreeMap<Drop, u64>,
    pub rejects: BTreeMap<Reject, u64>,
    pub misbehaviour: BTreeMap<(Misbehaviour, ReplicaId), u64>,
    /// View changes this replica started (timeouts, the join rule and rotations).
    pub view_changes: u64,
    /// Of those, scheduled rotations (`rotation_blocks`).
    pub rotations: u64,
    /// The same view changes by what started them.
    pub view_change_causes: BTreeMap<ViewChangeCause, u64>,
    /// Times this replica found its chain differs from a certified checkpoint.
    pub diverged: u64,
    /// New views this replica entered.
    pub new_views: u64,
    /// The most consecutive view changes without progress.
    pub view_change_streak_max: u32,
    pub blocks_executed: u64,
    pub txs_executed: u64,
    pub blocks_fetched: u64,
    pub batches_proposed: u64,
}

impl Stats {
    pub fn drop(&mut self, reason: Drop) {
        *self.drops.entry(reason).or_default() += 1;
    }

    pub fn reject(&mut self, reason: Reject) {
        *self.rejects.entry(reason).or_default() += 1;
    }

    pub fn blame(&mut self, kind: Misbehaviour, culprit: ReplicaId) {
        *self.misbehaviour.entry((kind, culprit)).or_default() += 1;
    }
}
