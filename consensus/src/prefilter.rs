//! Cheap filters a verifier may apply before checking any signature: messages the core would
//! drop anyway, judged from a few monotone facts about the replica (its view, stable checkpoint
//! and executed height only ever grow). A filter that uses a slightly old snapshot of them drops
//! less, never more, than the core would: what is stale for an older state is stale for a newer
//! one.

use crate::message::Message;
use crate::stats::Drop;

/// What the verifier knows of the replica, published by the thread that runs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    pub view: u64,
    /// The stable checkpoint's sequence number (the low watermark).
    pub stable_seq: u64,
    /// The executed height.
    pub height: u64,
}

/// `Some(reason)` when the core would drop `message` in any state at least as new as `w`.
pub fn stale(message: &Message, w: &Watermarks) -> Option<Drop> {
    let vote = match message {
        Message::PrePrepare { proposal, .. } => proposal.body.0,
        Message::Prepare(m) => m.body.0,
        Message::Commit(m) => crate::message::SlotVote {
            view: m.body.view,
            seq: m.body.seq,
            digest: m.body.digest,
        },
        Message::Checkpoint(m) if m.body.seq <= w.stable_seq => return Some(Drop::Duplicate),
        _ => return None,
    };
    if vote.view < w.view {
        Some(Drop::StaleView)
    } else if vote.seq <= w.stable_seq {
        Some(Drop::OutOfWindow)
    } else if vote.seq <= w.height {
        Some(Drop::Duplicate)
    } else {
        None
    }
}
