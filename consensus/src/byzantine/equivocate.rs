//! Equivocation and double votes: an equivocating primary sends one batch to half the backups
//! and another to the rest; a double-voting replica votes for every digest of a slot; a colluding
//! backup sends each side the vote for the batch that side was told of.

use std::collections::BTreeSet;

use quire_chain::cert::CommitStatement;
use quire_chain::{Batch, Hash, ReplicaId};

use super::{Actor, Behaviour};
use crate::message::{Message, Prepare, Proposal, Signed, SlotVote};
use crate::replica::Output;

impl Actor {
    /// An equivocating backup working with an equivocating primary (it has colluders).
    pub(super) fn colluding_backup(&self) -> bool {
        self.behaviour == Behaviour::Equivocate
            && !self.colluders.is_empty()
            && !self.replica.is_primary()
    }

    /// Sends a vote only to the side whose PrePrepare carried its digest (and to colluders), so
    /// that each honest replica hears the accomplice vote for what it was told, first.
    /// Until both digests of the slot are known, the vote is held.
    pub(super) fn directed(&mut self, m: Message) -> Vec<Output> {
        let (view, seq, digest) = match &m {
            Message::Prepare(p) => (p.body.0.view, p.body.0.seq, p.body.0.digest),
            Message::Commit(c) => (c.body.view, c.body.seq, c.body.digest),
            _ => return vec![Output::Broadcast(m)],
        };
        let Some(digests) = self.seen.get(&(view, seq)).filter(|d| d.len() > 1) else {
            self.held.push(m);
            if self.held.len() > 4096 {
                self.held.remove(0);
            }
            return Vec::new();
        };
        let earliest = digests.iter().min_by_key(|(_, ts)| **ts).map(|(d, _)| *d);
        let (a, b) = self.sides();
        // Colluders (the primary among them) hear the vote for the original batch only: the
        // primary needs it to prepare, commit, and so hand out both sides' commits.
        let side: Vec<ReplicaId> = if earliest == Some(digest) {
            a
        } else {
            b.into_iter()
                .filter(|r| !self.colluders.contains(r))
                .collect()
        };
        side.into_iter()
            .map(|to| Output::Send(to, m.clone()))
            .collect()
    }

    /// Splits the honest replicas into two sides; colluders get both.
    pub(super) fn sides(&self) -> (Vec<ReplicaId>, Vec<ReplicaId>) {
        let honest: Vec<ReplicaId> = self
            .others()
            .into_iter()
            .filter(|r| !self.colluders.contains(r))
            .collect();
        let half = honest.len().div_ceil(2);
        let mut a = honest[..half].to_vec();
        let mut b = honest[half..].to_vec();
        a.extend(self.colluders.iter().filter(|r| **r != self.replica.id()));
        b.extend(self.colluders.iter().filter(|r| **r != self.replica.id()));
        (a, b)
    }

    pub(super) fn alternative(&self, batch: &Batch) -> Batch {
        let mut alt = batch.clone();
        alt.timestamp_ms = alt.timestamp_ms.wrapping_add(1);
        alt
    }

    pub(super) fn equivocate(&mut self, proposal: Signed<Proposal>, batch: Batch) -> Vec<Output> {
        let vote = proposal.body.0;
        let alt = self.alternative(&batch);
        let alt_vote = SlotVote {
            digest: alt.digest(),
            ..vote
        };
        let alt_proposal = self.sign(Proposal(alt_vote));
        self.seen.entry((vote.view, vote.seq)).or_default().extend([
            (vote.digest, batch.timestamp_ms),
            (alt_vote.digest, alt.timestamp_ms),
        ]);
        self.prune_seen();
        let (a, b) = self.sides();
        let mut out: Vec<Output> = a
            .into_iter()
            .map(|r| {
                Output::Send(
                    r,
                    Message::PrePrepare {
                        proposal: proposal.clone(),
                        batch: batch.clone(),
                    },
                )
            })
            .collect();
        out.extend(b.into_iter().map(|r| {
            Output::Send(
                r,
                Message::PrePrepare {
                    proposal: alt_proposal.clone(),
                    batch: alt.clone(),
                },
            )
        }));
        out
    }

    pub(super) fn split_commit(&mut self, c: CommitStatement) -> Vec<Output> {
        let digests = self.seen.get(&(c.view, c.seq)).cloned().unwrap_or_default();
        let other = digests.into_keys().find(|d| *d != c.digest);
        let (a, b) = self.sides();
        let mine = Message::Commit(self.sign(c));
        let mut out: Vec<Output> = a
            .into_iter()
            .map(|r| Output::Send(r, mine.clone()))
            .collect();
        let theirs = match other {
            Some(digest) => Message::Commit(self.sign(CommitStatement { digest, ..c })),
            None => mine,
        };
        out.extend(b.into_iter().map(|r| Output::Send(r, theirs.clone())));
        out
    }

    pub(super) fn double_vote(&mut self, m: Message) -> Vec<Message> {
        let (vote, commit) = match &m {
            Message::Prepare(p) => (p.body.0, false),
            Message::Commit(c) => (
                SlotVote {
                    view: c.body.view,
                    seq: c.body.seq,
                    digest: c.body.digest,
                },
                true,
            ),
            _ => return vec![m],
        };
        let mut digests: BTreeSet<Hash> = self
            .seen
            .get(&(vote.view, vote.seq))
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default();
        digests.remove(&vote.digest);
        if digests.is_empty() {
            // No rival digest known: invent one, so honest replicas see conflicting votes.
            let mut fake = [0u8; 32];
            fake[..8].copy_from_slice(&self.random().to_be_bytes());
            digests.insert(Hash(fake));
        }
        let mut out = vec![m];
        for digest in digests {
            let v = SlotVote { digest, ..vote };
            out.push(if commit {
                Message::Commit(self.sign(CommitStatement {
                    view: v.view,
                    seq: v.seq,
                    digest,
                }))
            } else {
                Message::Prepare(self.sign(Prepare(v)))
            });
        }
        out
    }
}
