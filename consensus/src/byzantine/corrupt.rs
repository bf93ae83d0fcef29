//! Messages altered on their way out: claimed by another sender, moved to another view, with a
//! corrupted batch, a lying view change, a broken signature.

use quire_chain::cert::CommitStatement;
use quire_chain::tx::Transaction;
use quire_chain::{Batch, ReplicaId};

use super::Actor;
use crate::message::{Message, NewView, Prepare, Proposal, SlotVote, ViewChange};

impl Actor {
    pub(super) fn impersonate(&mut self, m: Message) -> Vec<Message> {
        let others = self.others();
        if others.is_empty() {
            return vec![m];
        }
        let victim = others[(self.random() % others.len() as u64) as usize];
        let mut fake = m.clone();
        set_from(&mut fake, victim);
        vec![m, fake]
    }

    pub(super) fn shift_view(&mut self, m: Message, forward: bool) -> Message {
        let shift = |v: u64| {
            if forward { v + 5 } else { v.saturating_sub(1) }
        };
        match m {
            Message::Prepare(p) => {
                let v = SlotVote {
                    view: shift(p.body.0.view),
                    ..p.body.0
                };
                Message::Prepare(self.sign(Prepare(v)))
            }
            Message::Commit(c) => Message::Commit(self.sign(CommitStatement {
                view: shift(c.body.view),
                ..c.body
            })),
            Message::PrePrepare { proposal, batch } => {
                let v = SlotVote {
                    view: shift(proposal.body.0.view),
                    ..proposal.body.0
                };
                Message::PrePrepare {
                    proposal: self.sign(Proposal(v)),
                    batch,
                }
            }
            other => other,
        }
    }

    pub(super) fn corrupt_batch(&mut self, m: Message) -> Message {
        let Message::PrePrepare { proposal, batch } = m else {
            return m;
        };
        let mut bad = batch.clone();
        let at = batch.txs.iter().position(|t| t.as_transfer().is_some());
        if let Some((i, first)) = at.and_then(|i| Some((i, *batch.txs[i].as_transfer()?))) {
            if self.random().is_multiple_of(2) {
                // A replay of a transfer already in the batch (a double spend)…
                bad.txs.push(Transaction::Transfer(first));
                // …and a transfer whose signature does not verify.
                let mut forged = first;
                forged.transfer.amount = forged.transfer.amount.wrapping_add(1);
                bad.txs.push(Transaction::Transfer(forged));
            } else {
                // The honest replicas have seen this transfer, with its real signature; this copy
                // keeps its id and breaks only the signature. A verdict remembered by id alone
                // would let it through; it must be checked again and refused.
                let mut copy = first;
                copy.signature.0[0] ^= 1;
                bad.txs[i] = Transaction::Transfer(copy);
            }
        } else {
            return Message::PrePrepare { proposal, batch };
        }
        let v = SlotVote {
            digest: bad.digest(),
            ..proposal.body.0
        };
        Message::PrePrepare {
            proposal: self.sign(Proposal(v)),
            batch: bad,
        }
    }

    pub(super) fn lie_in_view_change(&mut self, m: Message) -> Message {
        match m {
            Message::ViewChange { view_change, .. } => {
                let vc = ViewChange {
                    prepared: Vec::new(),
                    ..view_change.body
                };
                Message::ViewChange {
                    view_change: self.sign(vc),
                    batches: Vec::new(),
                }
            }
            Message::NewView { new_view, .. } => {
                // Replace every re-proposal with a null batch: drops prepared certificates.
                let null = Batch::null().digest();
                let proposals = new_view
                    .body
                    .proposals
                    .iter()
                    .map(|p| {
                        self.sign(Proposal(SlotVote {
                            digest: null,
                            ..p.body.0
                        }))
                    })
                    .collect();
                let nv = NewView {
                    proposals,
                    ..new_view.body
                };
                Message::NewView {
                    new_view: self.sign(nv),
                    batches: Vec::new(),
                }
            }
            other => other,
        }
    }
}

pub(super) fn forge(mut m: Message) -> Message {
    let flip = |s: &mut quire_chain::Signature| s.0[0] ^= 0x55;
    match &mut m {
        Message::PrePrepare { proposal, .. } => flip(&mut proposal.signature),
        Message::Prepare(x) => flip(&mut x.signature),
        Message::Commit(x) => flip(&mut x.signature),
        Message::Checkpoint(x) => flip(&mut x.signature),
        Message::ViewChange { view_change, .. } => flip(&mut view_change.signature),
        Message::NewView { new_view, .. } => flip(&mut new_view.signature),
        Message::Status(x) => flip(&mut x.signature),
        Message::Forward(x) => flip(&mut x.signature),
        Message::FetchBlocks(x) => flip(&mut x.signature),
        Message::Blocks(x) => flip(&mut x.signature),
    }
    m
}

fn set_from(m: &mut Message, from: ReplicaId) {
    match m {
        Message::PrePrepare { proposal, .. } => proposal.from = from,
        Message::Prepare(x) => x.from = from,
        Message::Commit(x) => x.from = from,
        Message::Checkpoint(x) => x.from = from,
        Message::ViewChange { view_change, .. } => view_change.from = from,
        Message::NewView { new_view, .. } => new_view.from = from,
        Message::Status(x) => x.from = from,
        Message::Forward(x) => x.from = from,
        Message::FetchBlocks(x) => x.from = from,
        Message::Blocks(x) => x.from = from,
    }
}
