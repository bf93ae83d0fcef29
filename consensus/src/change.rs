//! View change (PBFT §4.4): leave a view whose primary seems faulty, gather a quorum of
//! ViewChanges at the next primary, and enter the new view with its NewView.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quire_chain::{Batch, Hash};

use crate::message::{Message, NewView, Proposal, Signed, SlotVote, ViewChange};
use crate::persist;
use crate::replica::{Output, Replica, Reply};
use crate::stats::Drop;
use crate::stats::ViewChangeCause;
use crate::view_change;
use crate::view_changes::Inserted;

impl Replica {
    /// Stops taking part in the current view and asks to move to `target`.
    pub(crate) fn start_view_change(&mut self, target: u64, cause: ViewChangeCause) {
        if target <= self.view && (self.changing || target < self.view) {
            return;
        }
        *self.stats.view_change_causes.entry(cause).or_default() += 1;
        self.view = target;
        self.changing = true;
        // ViewChanges for views below the target can no longer start a view.
        self.view_changes.retain_from(target);
        // Whatever rotation was due, this view change is it.
        self.rotation_due = None;
        self.view_change_tick = None;
        self.view_change_streak += 1;
        self.stats.view_changes += 1;
        self.stats.view_change_streak_max = self
            .stats
            .view_change_streak_max
            .max(self.view_change_streak);
        let low = self.stable.seq;
        let mut batches: BTreeMap<Hash, Batch> = BTreeMap::new();
        let prepared = self
            .log
            .range(low + 1..)
            .filter_map(|(_, slot)| slot.prepared.as_ref())
            .map(|(proof, batch)| {
                // Null batches are known to everyone and never travel.
                if !batch.is_null() {
                    batches.insert(proof.slot().digest, (**batch).clone());
                }
                proof.clone()
            })
            .collect();
        let vc = self.sign(ViewChange {
            new_view: target,
            checkpoint: self.stable.clone(),
            prepared,
        });
        let batches: Vec<Batch> = batches.into_values().collect();
        self.persist(persist::view(target, true));
        self.persist(persist::view_change(&vc, &batches));
        self.view_changes.insert(vc.clone(), batches.clone());
        let gap = self.params.retransmit_ticks;
        self.view_change_resend = (self.tick.saturating_add(gap), gap);
        self.send_view_change(vc, batches);
        self.start_timer_on_quorum();
        self.try_new_view();
    }

    /// Sends our ViewChange to every peer, its batches to the new primary alone: only it
    /// re-proposes them, in a NewView that carries them to the others. The rest need the signed
    /// ViewChange only, to count who asks for which view and to check the NewView's plan. Sent
    /// to everyone, the batches made a view change at 16 replicas under load cost each replica
    /// 15 × 8.5 MB a ViewChange (36 prepared batches of 470 payloads of 512 bytes), 2.8 GB in
    /// 15 s with its resends: the view change meant to restore progress took the box instead.
    pub(crate) fn send_view_change(&mut self, vc: Signed<ViewChange>, batches: Vec<Batch>) {
        let primary = self.verifier.validators.primary(vc.body.new_view);
        for peer in self.peers() {
            let batches = if peer == primary {
                batches.clone()
            } else {
                Vec::new()
            };
            self.out.push(Output::Send(
                peer,
                Message::ViewChange {
                    view_change: vc.clone(),
                    batches,
                },
            ));
        }
    }

    /// Starts the view-change timer once a quorum asks for our target view or a later one.
    fn start_timer_on_quorum(&mut self) {
        if !self.changing || self.view_change_tick.is_some() {
            return;
        }
        let asking = self.view_changes.asking_at_least(self.view);
        if asking >= self.quorum() {
            self.view_change_tick = Some(self.tick);
        }
    }

    pub(crate) fn on_view_change(&mut self, vc: Signed<ViewChange>, batches: Vec<Batch>) {
        let target = vc.body.new_view;
        let from = vc.from;
        if target < self.view || (target == self.view && !self.changing) {
            // It is behind; if we started this view, hand it the NewView.
            if target == self.view
                && self.new_view.is_some()
                && self.may_reply(from, Reply::NewView)
                && let Some((nv, nv_batches)) = self.new_view.clone()
            {
                // Every replica in the view answers a replica left behind: without the batches
                // its ViewChange says it prepared (it takes those from its log, as from the
                // primary's NewView), or each answer is the window of batches again.
                let held: BTreeSet<Hash> =
                    vc.body.prepared.iter().map(|p| p.slot().digest).collect();
                let batches = nv_batches
                    .into_iter()
                    .filter(|b| !held.contains(&b.digest()))
                    .collect();
                self.out.push(Output::Send(
                    from,
                    Message::NewView {
                        new_view: nv,
                        batches,
                    },
                ));
            }
            self.stats.drop(Drop::StaleView);
            return;
        }
        // The new primary re-proposes from the batches that came with the ViewChanges
        // (`send_view_change`); one without them is of no use to it. An honest replica always
        // sends them there, so this one is faulty or garbled: dropped, counted.
        if self.verifier.validators.primary(target) == self.id
            && batches.is_empty()
            && !vc
                .body
                .prepared
                .iter()
                .all(|p| p.slot().digest == Batch::null().digest())
        {
            self.stats.drop(Drop::MissingBatches);
            return;
        }
        // A few ViewChanges per replica are kept, for the lowest views (see `view_changes`), so
        // memory stays bounded whatever views a faulty replica claims.
        if self.view_changes.insert(vc, batches) != Inserted::Kept {
            self.stats.drop(Drop::Duplicate);
            return;
        }
        self.join_if_weak_quorum();
        self.start_timer_on_quorum();
        self.try_new_view();
    }

    /// The join rule (liveness, trap 7): f+1 replicas asking for views above ours include an
    /// honest one, so follow them to the smallest such view.
    fn join_if_weak_quorum(&mut self) {
        let above = self.view_changes.lowest_above(self.view, self.id);
        if above.len() >= self.verifier.validators.weak_quorum()
            && let Some(target) = above.iter().min().copied()
        {
            self.start_view_change(target, ViewChangeCause::Joined);
        }
    }

    /// As the new primary: with a quorum of ViewChanges, compute and send the NewView.
    fn try_new_view(&mut self) {
        if !self.changing || !self.is_primary() {
            return;
        }
        let view = self.view;
        let chosen: Vec<(Signed<ViewChange>, Vec<Batch>)> =
            self.view_changes.for_view(view).cloned().collect();
        if chosen.len() < self.quorum() {
            return;
        }
        let bodies: Vec<&ViewChange> = chosen.iter().map(|(vc, _)| &vc.body).collect();
        let plan = view_change::plan(&bodies);
        let known: BTreeMap<Hash, &Batch> = chosen
            .iter()
            .flat_map(|(_, b)| b.iter())
            .map(|b| (b.digest(), b))
            .collect();
        let null = Batch::null().digest();
        let mut batches: BTreeMap<Hash, Batch> = BTreeMap::new();
        let mut proposals = Vec::new();
        for (seq, digest) in &plan.proposals {
            if *digest != null {
                // Verification guarantees every prepared digest came with its batch.
                let Some(batch) = known.get(digest) else {
                    return;
                };
                batches.insert(*digest, (*batch).clone());
            }
            proposals.push(self.sign(Proposal(SlotVote {
                view,
                seq: *seq,
                digest: *digest,
            })));
        }
        let nv = self.sign(NewView {
            view,
            view_changes: chosen.into_iter().map(|(vc, _)| vc).collect(),
            proposals,
        });
        // A replica whose ViewChange is in the NewView holds the batch of every proof in it (it
        // prepared them): it is sent only the batches it lacks, and takes the rest from its log
        // (`complete_batches`). Sent whole to everyone, the window of batches went out fifteen
        // times per NewView at 16 replicas, most of it to replicas that had it.
        let held: BTreeMap<_, BTreeSet<Hash>> = nv
            .body
            .view_changes
            .iter()
            .map(|vc| {
                (
                    vc.from,
                    vc.body.prepared.iter().map(|p| p.slot().digest).collect(),
                )
            })
            .collect();
        for peer in self.peers() {
            let lacking = batches
                .iter()
                .filter(|(digest, _)| held.get(&peer).is_none_or(|h| !h.contains(*digest)))
                .map(|(_, b)| b.clone())
                .collect();
            self.out.push(Output::Send(
                peer,
                Message::NewView {
                    new_view: nv.clone(),
                    batches: lacking,
                },
            ));
        }
        let batches: Vec<Batch> = batches.into_values().collect();
        self.persist(persist::new_view(&nv, &batches));
        self.enter_new_view(nv, batches);
    }

    pub(crate) fn on_new_view(&mut self, nv: Signed<NewView>, batches: Vec<Batch>) {
        if nv.body.view < self.view || (nv.body.view == self.view && !self.changing) {
            self.stats.drop(Drop::StaleView);
            return;
        }
        // The boundary checked every ViewChange in it and recomputed its proposals.
        let Some(batches) = self.complete_batches(&nv, batches) else {
            self.stats.drop(Drop::MissingBatches);
            return;
        };
        self.persist(persist::new_view(&nv, &batches));
        self.enter_new_view(nv, batches);
    }

    /// The NewView's batches with those it left out (the ones our ViewChange in it says we
    /// prepared, `try_new_view`) taken from our log; `None` if a batch this replica still has to
    /// execute is in neither. An honest primary leaves out only what we hold, so `None` means a
    /// faulty one (or a log a checkpoint has cut since); the view-change timer then moves on as
    /// for a NewView that never came. What is persisted and relayed is the whole set.
    fn complete_batches(&self, nv: &Signed<NewView>, batches: Vec<Batch>) -> Option<Vec<Batch>> {
        let mut by_digest: BTreeMap<Hash, Batch> =
            batches.into_iter().map(|b| (b.digest(), b)).collect();
        let bodies: Vec<&ViewChange> = nv.body.view_changes.iter().map(|vc| &vc.body).collect();
        let low = view_change::plan(&bodies)
            .checkpoint
            .seq
            .max(self.stable.seq);
        let null = Batch::null().digest();
        for proposal in &nv.body.proposals {
            let vote = proposal.body.0;
            if vote.digest == null || by_digest.contains_key(&vote.digest) {
                continue;
            }
            let ours = self.log.values().find_map(|slot| {
                let prepared = slot.prepared.as_ref().map(|(p, b)| (p.slot().digest, b));
                let accepted = slot.pre_prepare.as_ref().map(|(p, b)| (p.body.0.digest, b));
                [prepared, accepted]
                    .into_iter()
                    .flatten()
                    .find(|(d, _)| *d == vote.digest)
                    .map(|(_, b)| (**b).clone())
            });
            match ours {
                Some(batch) => {
                    by_digest.insert(vote.digest, batch);
                }
                // Executed here, or below the checkpoint: not needed.
                None if vote.seq <= low || vote.seq <= self.head.height => {}
                None => return None,
            }
        }
        Some(by_digest.into_values().collect())
    }

    /// Enters the view a (verified) NewView starts: adopt its checkpoint, accept its proposals
    /// as this view's PrePrepares, and resume.
    fn enter_new_view(&mut self, nv: Signed<NewView>, batches: Vec<Batch>) {
        let view = nv.body.view;
        self.view = view;
        self.changing = false;
        // A rotation this replica was waiting for (its checkpoint not yet stable here) is the
        // view change the others completed: it is in the rotated view now. Kept, it fired later
        // and took this replica alone to the next view; as the new primary it also proposed
        // nothing while it waited (a chaos run: commits stopped for 5 s with one replica down).
        self.rotation_due = None;
        self.persist(persist::view(view, false));
        self.stats.new_views += 1;
        self.view_start_tick = self.tick;
        self.progress_tick = self.tick;
        self.primary_tick = self.tick;
        self.view_changes.retain_above(view);
        for slot in self.log.values_mut() {
            slot.prune_votes(view);
            if slot
                .pre_prepare
                .as_ref()
                .is_some_and(|(pp, _)| pp.body.0.view < view)
            {
                slot.pre_prepare = None;
            }
            slot.commit_sent_view = slot.commit_sent_view.filter(|v| *v >= view);
        }
        let bodies: Vec<&ViewChange> = nv.body.view_changes.iter().map(|vc| &vc.body).collect();
        let plan = view_change::plan(&bodies);
        self.make_stable(plan.checkpoint.clone());
        let by_digest: BTreeMap<Hash, Arc<Batch>> = batches
            .into_iter()
            .map(|b| (b.digest(), Arc::new(b)))
            .collect();
        let null = Arc::new(Batch::null());
        let mut kept = Vec::new();
        let null_digest = null.digest();
        for proposal in &nv.body.proposals {
            let vote = proposal.body.0;
            if vote.seq <= self.stable.seq {
                continue;
            }
            let batch = if vote.digest == null_digest {
                null.clone()
            } else {
                match by_digest.get(&vote.digest) {
                    Some(batch) => batch.clone(),
                    // Executed here already (`complete_batches` found every other one).
                    None => continue,
                }
            };
            kept.push(batch.clone());
            if vote.seq <= self.head.height {
                // Already executed here; the others will decide the same batch.
                continue;
            }
            // Not checked here: its signatures are looked up (or checked) before it executes.
            self.accept_pre_prepare(proposal.clone(), batch, false);
        }
        let kept_txs: Vec<&quire_chain::Transaction> =
            kept.iter().flat_map(|b| b.txs.iter()).collect();
        self.mempool.new_view(&kept_txs);
        self.new_view = Some((nv, by_digest.values().map(|b| (**b).clone()).collect()));
        self.next_seq = self.first_free_seq();
        if self.is_primary() {
            self.try_propose();
        }
    }
}
