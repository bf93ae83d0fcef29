//! `replay`: old, validly signed view-change material and checkpoints, sent again and again.
//!
//! A signature stays valid for ever, so a receiver that checks every signature before noticing
//! that a message is stale pays in full each time: a NewView carries a quorum of ViewChanges,
//! each with a checkpoint certificate and up to a window of prepared proofs. The archive is what
//! the replica itself signed (its ViewChanges and Checkpoints), the NewViews it received (they
//! are relayable as signed by their primary), and a ViewChange for the view it is already in,
//! which a peer in that view answers with its whole NewView.

use std::collections::BTreeMap;

use quire_chain::cert::CheckpointStatement;
use quire_chain::{Batch, Hash};

use crate::message::{Kind, Message, Signed, ViewChange};
use crate::replica::{Input, Output, Replica};

/// Messages of each kind kept for replay; the oldest go first.
const KEPT_PER_KIND: usize = 8;

/// What identifies an archived message, so each is kept once: its kind and its view (or
/// checkpoint sequence number).
type Key = (Kind, u64);

#[derive(Default)]
pub(super) struct Archive {
    messages: BTreeMap<Key, Message>,
    cursor: usize,
    /// The view of the ViewChange last made for the view the replica was in.
    made: Option<u64>,
}

fn key(m: &Message) -> Option<Key> {
    let view = match m {
        Message::ViewChange { view_change, .. } => view_change.body.new_view,
        Message::NewView { new_view, .. } => new_view.body.view,
        Message::Checkpoint(c) => c.body.seq,
        _ => return None,
    };
    Some((m.kind(), view))
}

impl Archive {
    pub(super) fn clear(&mut self) {
        *self = Archive::default();
    }

    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    fn keep(&mut self, m: &Message) {
        let Some(k) = key(m) else { return };
        if self.messages.contains_key(&k) {
            return;
        }
        let kind = k.0;
        let same_kind: Vec<Key> = self
            .messages
            .range((kind, 0)..=(kind, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        if same_kind.len() >= KEPT_PER_KIND {
            self.messages.remove(&same_kind[0]);
        }
        self.messages.insert(k, m.clone());
    }

    /// Starts from what the replica holds: the NewView of its view, its own ViewChange if it is
    /// changing views, and its own vote in the stable checkpoint's certificate.
    pub(super) fn seed(&mut self, replica: &Replica) {
        if let Some((nv, batches)) = &replica.new_view {
            self.keep(&Message::NewView {
                new_view: nv.clone(),
                batches: batches.clone(),
            });
        }
        if let Some((vc, batches)) = replica.view_changes.latest(replica.id) {
            self.keep(&Message::ViewChange {
                view_change: vc.clone(),
                batches: batches.clone(),
            });
        }
        let stable = &replica.stable;
        let own_vote = stable
            .certificate
            .iter()
            .flat_map(|c| c.votes.iter())
            .find(|v| v.replica == replica.id);
        if let Some(vote) = own_vote {
            self.keep(&Message::Checkpoint(Signed {
                from: replica.id,
                body: CheckpointStatement {
                    seq: stable.seq,
                    block_hash: stable.block_hash,
                },
                signature: vote.signature,
            }));
        }
    }

    pub(super) fn observe_input(&mut self, input: &Input) {
        if let Input::Message(m) = input
            && let Message::NewView { .. } = m.message()
        {
            self.keep(m.message());
        }
    }

    /// What the replica signs and sends itself: ViewChanges, NewViews and Checkpoints.
    pub(super) fn observe_outputs(&mut self, outputs: &[Output], me: u32) {
        for o in outputs {
            if let Output::Broadcast(m) | Output::Send(_, m) = o
                && m.from() == me
            {
                self.keep(m);
            }
        }
    }

    /// One burst: the next `count` archived messages, to every peer.
    pub(super) fn burst(&mut self, replica: &Replica, count: usize) -> Vec<Output> {
        self.make_view_change(replica);
        let mut out = Vec::new();
        for _ in 0..count.min(self.messages.len()) {
            self.cursor %= self.messages.len();
            if let Some(m) = self.messages.values().nth(self.cursor) {
                out.push(Output::Broadcast(m.clone()));
            }
            self.cursor += 1;
        }
        out
    }

    /// A ViewChange for the view the replica is already in — valid (its prepared proofs are
    /// from earlier views), and stale for every peer that entered the view. Signed once per view.
    fn make_view_change(&mut self, replica: &Replica) {
        let view = replica.view;
        if replica.changing || self.made == Some(view) {
            return;
        }
        self.made = Some(view);
        let mut batches: BTreeMap<Hash, Batch> = BTreeMap::new();
        let prepared = replica
            .log
            .range(replica.stable.seq + 1..)
            .filter_map(|(_, slot)| slot.prepared.as_ref())
            .filter(|(proof, _)| proof.slot().view < view)
            .map(|(proof, batch)| {
                if !batch.is_null() {
                    batches.insert(proof.slot().digest, (**batch).clone());
                }
                proof.clone()
            })
            .collect();
        let view_change = replica.sign(ViewChange {
            new_view: view,
            checkpoint: replica.stable.clone(),
            prepared,
        });
        self.keep(&Message::ViewChange {
            view_change,
            batches: batches.into_values().collect(),
        });
    }
}
