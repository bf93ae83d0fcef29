//! The normal case (PBFT §4.2) and checkpoints (§4.3): propose, accept a PrePrepare, prepare,
//! commit, execute in sequence order, checkpoint, collect garbage.

use std::sync::Arc;

use quire_chain::block::execute;
use quire_chain::cert::{Certificate, CheckpointStatement, CommitStatement};
use quire_chain::{Batch, Hash};

use crate::log::{self, Recorded};
use crate::message::{
    Message, Prepare, PreparedProof, Proposal, Signed, SlotVote, StableCheckpoint, Status,
};
use crate::persist;
use crate::replica::{Output, PeerStatus, Replica, Reply};
use crate::stats::{Drop, Misbehaviour};

impl Replica {
    /// As primary: propose batches while there is work, room in the pipeline and in the window.
    ///
    /// A batch closes when it is full, when its oldest transaction has waited the batch timeout
    /// (half the recent commit time, see [`crate::batch_timeout`]), or at once while fewer than
    /// `eager_depth` blocks are in flight: a lightly loaded network gains nothing from waiting
    /// (the next tick is up to a tick away), so a lone transaction is proposed the moment it
    /// arrives even if the previous block has not executed yet. Under load the pipeline is
    /// deeper than that and batches fill up while they wait.
    pub(crate) fn try_propose(&mut self) {
        // State transfer may have executed past what we proposed.
        self.next_seq = self.next_seq.max(self.head.height + 1);
        while self.is_primary() && !self.changing && self.fetch.is_none() {
            // Nothing past the rotation point (see `rotate_if_scheduled`).
            if self.rotation_due.is_some()
                || self.next_seq > self.next_rotation_point(self.head.height)
            {
                return;
            }
            let in_flight = self.next_seq.saturating_sub(self.head.height + 1);
            if in_flight >= self.params.pipeline_depth || !self.in_window(self.next_seq) {
                return;
            }
            let Some(oldest) = self.mempool.oldest_ready_tick(&self.ledger) else {
                return;
            };
            let batch_max = self.batch_txs_max();
            let full = self.mempool.queued() >= batch_max;
            let waited = self.tick.saturating_sub(oldest) >= self.batch_timeout_ticks();
            if !full && !waited && in_flight >= self.params.eager_depth {
                return;
            }
            let txs = self.mempool.take_batch(batch_max, &self.ledger);
            if txs.is_empty() {
                return;
            }
            self.propose(txs);
        }
    }

    fn propose(&mut self, txs: Vec<quire_chain::Transaction>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let batch = Batch {
            view: self.view,
            proposer: self.id,
            timestamp_ms: self.now_ms,
            txs,
        };
        let proposal = self.sign(Proposal(SlotVote {
            view: self.view,
            seq,
            digest: batch.digest(),
        }));
        let batch = Arc::new(batch);
        self.persist_accepted(&proposal, &batch);
        let tick = self.tick;
        let slot = self.slot_mut(seq);
        slot.pre_prepare = Some((proposal.clone(), batch.clone()));
        slot.touched_tick = tick;
        slot.resends = 0;
        slot.accepted_tick = tick;
        self.stats.batches_proposed += 1;
        self.out.push(Output::Broadcast(Message::PrePrepare {
            proposal,
            batch: Batch::clone(&batch),
        }));
        self.check_prepared(seq);
    }

    /// Checks that a slot vote is for the current view (or the next, kept briefly: votes of a new
    /// view can overtake its NewView) and inside the window.
    fn admit_vote(&mut self, vote: &SlotVote) -> bool {
        if vote.view < self.view {
            self.stats.drop(Drop::StaleView);
            return false;
        }
        if vote.view > self.view + 1 {
            self.stats.drop(Drop::FutureView);
            return false;
        }
        if !self.in_window(vote.seq) {
            self.stats.drop(Drop::OutOfWindow);
            return false;
        }
        if vote.seq <= self.head.height {
            self.stats.drop(Drop::Duplicate);
            return false;
        }
        true
    }

    /// `all_signed`: the verifier found every signature in `batch` valid (else they are looked
    /// up in what this replica knows, and checked if unknown).
    pub(crate) fn on_pre_prepare(
        &mut self,
        proposal: Signed<Proposal>,
        batch: Batch,
        all_signed: bool,
    ) {
        let vote = proposal.body.0;
        if self.changing {
            self.stats.drop(Drop::ChangingView);
            return;
        }
        if vote.view != self.view {
            self.stats.drop(if vote.view < self.view {
                Drop::StaleView
            } else {
                Drop::FutureView
            });
            return;
        }
        if !self.admit_vote(&vote) {
            return;
        }
        self.primary_tick = self.tick;
        // Checked first: a primary retransmits what it proposed, including batches a NewView
        // carried over from earlier views.
        if let Some((existing, _)) = &self.log.get(&vote.seq).and_then(|s| s.pre_prepare.clone())
            && existing.body.0.view == vote.view
        {
            if existing.body.0.digest == vote.digest {
                self.stats.drop(Drop::Duplicate);
            } else {
                self.stats.drop(Drop::Conflict);
                self.stats.blame(Misbehaviour::Equivocation, proposal.from);
            }
            return;
        }
        // A fresh proposal must be a batch of this view by this primary (the genesis's size and
        // payload rules were checked at the boundary).
        if batch.view != self.view || batch.proposer != proposal.from {
            self.stats.drop(Drop::BadBatch);
            self.stats.blame(Misbehaviour::InvalidBatch, proposal.from);
            return;
        }
        // No vote for a batch with a transfer whose signature fails: see `all_signed`.
        if !(all_signed || self.all_signed(&batch)) {
            self.stats.drop(Drop::BadBatch);
            self.stats.blame(Misbehaviour::InvalidBatch, proposal.from);
            return;
        }
        self.accept_pre_prepare(proposal, Arc::new(batch), true);
    }

    /// Accepts a PrePrepare of the current view (fresh, or from a NewView): persist it, then
    /// answer with a Prepare unless we are the primary. `signed`: every signature in `batch` was
    /// found valid (see [`crate::log::Slot::signed`]).
    pub(crate) fn accept_pre_prepare(
        &mut self,
        proposal: Signed<Proposal>,
        batch: Arc<Batch>,
        signed: bool,
    ) {
        let vote = proposal.body.0;
        self.persist_accepted(&proposal, &batch);
        let txs: Vec<&quire_chain::Transaction> = batch.txs.iter().collect();
        self.mempool.mark_proposed(&txs);
        let tick = self.tick;
        let slot = self.slot_mut(vote.seq);
        if signed {
            slot.signed = Some(batch.clone());
        }
        slot.pre_prepare = Some((proposal, batch));
        slot.touched_tick = tick;
        slot.resends = 0;
        slot.accepted_tick = tick;
        if !self.is_primary() {
            let prepare = self.sign(Prepare(vote));
            let id = self.id;
            log::record(
                &mut self.slot_mut(vote.seq).prepares,
                vote.view,
                id,
                vote.digest,
                prepare.signature,
            );
            self.out.push(Output::Broadcast(Message::Prepare(prepare)));
        }
        self.check_prepared(vote.seq);
        self.check_committed(vote.seq);
    }

    pub(crate) fn on_prepare(&mut self, m: Signed<Prepare>) {
        let vote = m.body.0;
        if !self.admit_vote(&vote) {
            return;
        }
        let slot = self.slot_mut(vote.seq);
        match log::record(
            &mut slot.prepares,
            vote.view,
            m.from,
            vote.digest,
            m.signature,
        ) {
            Recorded::New => {
                self.detect_equivocation(vote);
                self.check_prepared(vote.seq);
            }
            Recorded::Duplicate => self.stats.drop(Drop::Duplicate),
            Recorded::Conflict => {
                self.stats.drop(Drop::Conflict);
                self.stats.blame(Misbehaviour::DoubleVote, m.from);
            }
        }
    }

    /// f+1 replicas preparing a digest other than the PrePrepare we accepted in the same view and
    /// slot include an honest one, who saw a PrePrepare for it signed by the same primary: the
    /// primary sent two. Blame it (once per slot).
    fn detect_equivocation(&mut self, vote: SlotVote) {
        let weak = self.verifier.validators.weak_quorum();
        let primary = self.verifier.validators.primary(vote.view);
        let Some(slot) = self.log.get(&vote.seq) else {
            return;
        };
        let accepted = slot
            .pre_prepare
            .as_ref()
            .map(|(pp, _)| pp.body.0)
            .filter(|a| a.view == vote.view && a.digest != vote.digest);
        if slot.blamed || accepted.is_none() {
            return;
        }
        if log::matching(&slot.prepares, vote.view, &vote.digest, Some(primary)).len() >= weak {
            self.slot_mut(vote.seq).blamed = true;
            self.stats.blame(Misbehaviour::Equivocation, primary);
        }
    }

    pub(crate) fn on_commit(&mut self, m: Signed<CommitStatement>) {
        let c = m.body;
        let vote = SlotVote {
            view: c.view,
            seq: c.seq,
            digest: c.digest,
        };
        if !self.admit_vote(&vote) {
            return;
        }
        let slot = self.slot_mut(c.seq);
        match log::record(&mut slot.commits, c.view, m.from, c.digest, m.signature) {
            Recorded::New => self.check_committed(c.seq),
            Recorded::Duplicate => self.stats.drop(Drop::Duplicate),
            Recorded::Conflict => {
                self.stats.drop(Drop::Conflict);
                self.stats.blame(Misbehaviour::DoubleVote, m.from);
            }
        }
    }

    /// *prepared*(v, s, d): the accepted PrePrepare and a quorum minus one matching Prepares from
    /// distinct backups. Then persist the certificate and send Commit.
    pub(crate) fn check_prepared(&mut self, seq: u64) {
        if self.changing {
            return;
        }
        let (view, quorum, primary) = (self.view, self.quorum(), self.primary());
        let Some(slot) = self.log.get(&seq) else {
            return;
        };
        if slot.commit_sent_view == Some(view) {
            return;
        }
        let Some((proposal, batch)) = slot.pre_prepare.clone() else {
            return;
        };
        let vote = proposal.body.0;
        if vote.view != view {
            return;
        }
        let prepares = log::matching(&slot.prepares, view, &vote.digest, Some(primary));
        if prepares.len() + 1 < quorum {
            return;
        }
        let proof = PreparedProof {
            proposal,
            prepares: prepares
                .iter()
                .map(|(replica, signature)| quire_chain::cert::Vote {
                    replica: *replica,
                    signature: *signature,
                })
                .collect(),
        };
        self.persist(persist::prepared(&proof));
        let commit = self.sign(CommitStatement {
            view,
            seq,
            digest: vote.digest,
        });
        let (id, tick) = (self.id, self.tick);
        let slot = self.slot_mut(seq);
        slot.prepared = Some((proof, batch));
        slot.commit_sent_view = Some(view);
        slot.touched_tick = tick;
        log::record(&mut slot.commits, view, id, vote.digest, commit.signature);
        self.out.push(Output::Broadcast(Message::Commit(commit)));
        self.check_committed(seq);
    }

    /// Decided: a quorum of Commits for (v, s, d) and the batch with digest d. A quorum of
    /// Commits proves the decision whatever this replica's own state, as a block's certificate
    /// does in state transfer.
    pub(crate) fn check_committed(&mut self, seq: u64) {
        let quorum = self.quorum();
        let Some(slot) = self.log.get(&seq) else {
            return;
        };
        if slot.committed.is_some() {
            return;
        }
        let groups: std::collections::BTreeSet<(u64, Hash)> = slot
            .commits
            .iter()
            .map(|((v, _), (d, _))| (*v, *d))
            .collect();
        for (view, digest) in groups {
            let votes = log::matching(&slot.commits, view, &digest, None);
            if votes.len() < quorum {
                continue;
            }
            let Some(batch) = slot.batch(&digest) else {
                continue;
            };
            let statement = CommitStatement { view, seq, digest };
            let cert = Certificate::from_votes(statement, &votes);
            self.slot_mut(seq).committed = Some((batch, cert));
            self.try_execute();
            return;
        }
    }

    /// Executes decided batches strictly in sequence order.
    pub(crate) fn try_execute(&mut self) {
        loop {
            let next = self.head.height + 1;
            let Some(slot) = self.log.get(&next) else {
                break;
            };
            let Some((batch, cert)) = slot.committed.clone() else {
                break;
            };
            let checked = slot.signed.as_ref().is_some_and(|b| Arc::ptr_eq(b, &batch));
            if !(checked || self.all_signed(&batch)) {
                // Not the batch the quorum can have decided (see `all_signed`): forget this
                // content and fetch the block from replicas that executed it.
                self.stats.blame(Misbehaviour::InvalidBatch, batch.proposer);
                if let Some(slot) = self.log.get_mut(&next) {
                    slot.committed = None;
                    slot.pre_prepare = None;
                }
                self.start_fetch(next);
                break;
            }
            if let Some(slot) = self.log.get(&next)
                && slot.pre_prepare.is_some()
                && slot.accepted_tick >= self.view_start_tick
            {
                // Accepted in this view: how long the pipeline takes now.
                let took = self.tick.saturating_sub(slot.accepted_tick);
                self.batch_timeout.record(took);
            }
            self.execute_block(&batch, cert, None);
        }
        if self.is_primary() {
            self.try_propose();
        }
    }

    /// Whether every transfer in `batch` carries a valid signature. The digest PBFT agrees on
    /// covers transaction ids, and an id does not cover the signature: a faulty primary can give
    /// some replicas a batch and others the same batch with one signature broken, under one
    /// digest. Executed, the two would part ways (applied here, rejected there). So an honest
    /// replica votes for, and executes, only batches whose signatures all hold; then any two
    /// batches it can execute under one digest have the same ids, the same verdicts and the same
    /// outcomes.
    pub(crate) fn all_signed(&self, batch: &Batch) -> bool {
        self.known_good
            .verdicts(&self.ledger, &batch.txs)
            .into_iter()
            .all(|ok| ok)
    }

    /// Executes one decided batch on top of the head and emits its block for the store.
    /// `claimed` is the header a peer served with it in state transfer, to check against.
    pub(crate) fn execute_block(
        &mut self,
        batch: &Batch,
        cert: quire_chain::CommitCertificate,
        claimed: Option<(&quire_chain::Header, quire_chain::ReplicaId)>,
    ) {
        let decided_view = cert.statement.view;
        // Every signature holds: both callers execute only batches that pass `all_signed` (one
        // that does not is fetched again, or ends the reply), so no verdict needs looking up.
        let verdicts = vec![true; batch.txs.len()];
        let executed = execute(
            &mut self.ledger,
            &self.head,
            batch,
            Some(cert),
            Some(verdicts),
        );
        let header = executed.record.block.header;
        if let Some((claimed, from)) = claimed
            && *claimed != header
        {
            self.stats.blame(Misbehaviour::WrongHeader, from);
        }
        if header.height == self.stable.seq {
            // The checkpoint was certified before this replica got here.
            self.check_agreement(header.height, header.hash(), self.stable.block_hash);
        }
        self.head = header;
        self.mempool.executed(&batch.txs, &self.ledger, self.tick);
        self.stats.blocks_executed += 1;
        self.stats.txs_executed += batch.txs.len() as u64;
        if (batch.txs.len() as u64) < u64::from(self.verifier.protocol.batch_txs_max) {
            self.room_tick = self.tick;
        }
        self.progress_tick = self.tick;
        self.executed_tick = self.tick;
        self.view_change_streak = 0;
        self.out.push(Output::Commit(Box::new(executed)));
        if header
            .height
            .is_multiple_of(self.verifier.protocol.checkpoint_interval)
        {
            self.send_checkpoint(header.height, header.hash());
        }
        self.rotate_if_scheduled(header.height, decided_view, claimed.is_some());
    }

    /// The scheduled rotation (PBFT.md trap 11): after every `rotation_blocks`-th block, every
    /// replica that decided it in its current view moves to the next view, as if its timer had
    /// fired. They all do at the same block, so the view change completes at once; a replica
    /// that had moved to that view alone — a short partition, a spurious timeout — is in it
    /// again, and votes again. A replica that got the block by state transfer does not rotate (it
    /// is behind; the NewView reaches it through its Status).
    ///
    /// The rotation point is a checkpoint (the first at or after each multiple of
    /// `rotation_blocks`), the primary proposes nothing past it, and the view change starts once
    /// its checkpoint is stable: the ViewChanges then carry no prepared slot and no batch, and
    /// the NewView re-proposes nothing. Rotating at the executed block itself, under load, sent
    /// a window of full batches around in every ViewChange and NewView and stalled commits for
    /// seconds.
    fn rotate_if_scheduled(&mut self, height: u64, decided_view: u64, fetched: bool) {
        if !self.is_rotation_point(height) || fetched || self.changing {
            return;
        }
        if decided_view == self.view {
            self.rotation_due = Some(height);
            self.rotate_if_stable();
        }
    }

    /// Starts the scheduled view change once the rotation point's checkpoint is stable.
    pub(crate) fn rotate_if_stable(&mut self) {
        if let Some(height) = self.rotation_due
            && self.stable.seq >= height
            && !self.changing
        {
            self.rotation_due = None;
            self.stats.rotations += 1;
            self.start_view_change(self.view + 1, crate::stats::ViewChangeCause::Rotation);
            // A rotation is not a view change that failed: it follows progress. Counted as one,
            // it doubled the timer of the rotated view, and a rotation into the view of a
            // replica that happened to be down waited 2 s instead of 1 s before moving on.
            self.view_change_streak = 0;
        }
    }

    /// Whether the primary rotates after height `h`: the first checkpoint at or after a
    /// multiple of `rotation_blocks`.
    pub(crate) fn is_rotation_point(&self, h: u64) -> bool {
        let every = self.verifier.protocol.rotation_blocks;
        let k = self.verifier.protocol.checkpoint_interval.max(1);
        if every == 0 || h == 0 || !h.is_multiple_of(k) {
            return false;
        }
        let multiple = (h / every) * every;
        multiple > 0 && multiple + k > h
    }

    /// The first rotation point above height `h` (`u64::MAX` when the primary never rotates).
    pub(crate) fn next_rotation_point(&self, h: u64) -> u64 {
        let every = self.verifier.protocol.rotation_blocks;
        let k = self.verifier.protocol.checkpoint_interval.max(1);
        if every == 0 {
            return u64::MAX;
        }
        let checkpoint_at_or_after = |m: u64| m.div_ceil(k).saturating_mul(k);
        let m = (h / every) * every;
        if m > 0 && checkpoint_at_or_after(m) > h {
            return checkpoint_at_or_after(m);
        }
        checkpoint_at_or_after(m.saturating_add(every))
    }

    fn send_checkpoint(&mut self, seq: u64, block_hash: Hash) {
        let m = self.sign(CheckpointStatement { seq, block_hash });
        self.record_checkpoint(seq, self.id, block_hash, m.signature);
        self.out.push(Output::Broadcast(Message::Checkpoint(m)));
    }

    pub(crate) fn on_checkpoint(&mut self, m: Signed<CheckpointStatement>) {
        let c = m.body;
        if c.seq <= self.stable.seq {
            self.stats.drop(Drop::Duplicate);
            return;
        }
        // Far-ahead checkpoints are not kept (memory stays bounded); status reports tell us when
        // we are behind.
        if !c
            .seq
            .is_multiple_of(self.verifier.protocol.checkpoint_interval)
            || c.seq > self.stable.seq + 4 * self.verifier.protocol.log_window
        {
            self.stats.drop(Drop::OutOfWindow);
            return;
        }
        self.record_checkpoint(c.seq, m.from, c.block_hash, m.signature);
    }

    fn record_checkpoint(
        &mut self,
        seq: u64,
        from: quire_chain::ReplicaId,
        block_hash: Hash,
        signature: quire_chain::Signature,
    ) {
        let quorum = self.quorum();
        match self
            .checkpoints
            .add(seq, from, block_hash, signature, quorum)
        {
            (Recorded::Conflict, _) => {
                self.stats.drop(Drop::Conflict);
                self.stats.blame(Misbehaviour::DoubleVote, from);
            }
            (_, Some(stable)) => {
                self.make_stable(stable);
                // The window moved: room to propose. (Not inside make_stable: entering a new
                // view must accept its re-proposals before proposing anything fresh.)
                if self.is_primary() {
                    self.try_propose();
                }
            }
            _ => {}
        }
    }

    /// A checkpoint became stable: move the low watermark, collect garbage, and fetch the state
    /// if we are behind it.
    pub(crate) fn make_stable(&mut self, checkpoint: StableCheckpoint) {
        if checkpoint.seq <= self.stable.seq {
            return;
        }
        let seq = checkpoint.seq;
        if let Some(ours) = self.checkpoints.vote_of(seq, self.id) {
            self.check_agreement(seq, ours, checkpoint.block_hash);
        }
        self.persist(persist::stable(&checkpoint));
        let kept = self.log.split_off(&(seq + 1));
        let dropped = std::mem::replace(&mut self.log, kept);
        for old in dropped.keys() {
            for op in persist::forget_slot(*old) {
                self.persist(op);
            }
        }
        self.checkpoints.collect_garbage(seq);
        self.stable = checkpoint;
        if seq > self.head.height {
            self.start_fetch(seq);
        }
        self.next_seq = self.next_seq.max(seq + 1);
        self.rotate_if_stable();
    }

    /// Sends our votes again for slots that have waited too long to commit (lost messages).
    ///
    /// Each resend of a slot doubles its wait before the next, up to the view timeout: a slot
    /// waits long either because a message was lost (one resend fixes that) or because the
    /// cluster is overloaded, and resending every interval then (the primary's whole batch, to
    /// every peer) is what turned overload at 16 replicas into tens of megabytes per block.
    pub(crate) fn retransmit_stuck_slots(&mut self) {
        let (base, cap) = (
            self.params.retransmit_ticks,
            self.params
                .view_timeout_ticks
                .max(self.params.retransmit_ticks),
        );
        let wait = move |slot: &crate::log::Slot| {
            base.saturating_mul(1u64 << slot.resends.min(16)).min(cap)
        };
        let tick = self.tick;
        let due = move |slot: &crate::log::Slot| {
            slot.committed.is_none() && tick.saturating_sub(slot.touched_tick) >= wait(slot)
        };
        let mut resend = Vec::new();
        for (seq, slot) in self.log.range(self.head.height + 1..) {
            if !due(slot) {
                continue;
            }
            let Some((pp, batch)) = &slot.pre_prepare else {
                continue;
            };
            let vote = pp.body.0;
            if vote.view != self.view {
                continue;
            }
            if self.is_primary() {
                resend.push(Message::PrePrepare {
                    proposal: pp.clone(),
                    batch: (**batch).clone(),
                });
            } else if let Some((_, sig)) = slot.prepares.get(&(vote.view, self.id)) {
                resend.push(Message::Prepare(Signed {
                    from: self.id,
                    body: Prepare(vote),
                    signature: *sig,
                }));
            }
            if let Some((d, sig)) = slot.commits.get(&(vote.view, self.id)) {
                resend.push(Message::Commit(Signed {
                    from: self.id,
                    body: CommitStatement {
                        view: vote.view,
                        seq: *seq,
                        digest: *d,
                    },
                    signature: *sig,
                }));
            }
            if resend.len() >= 3 * self.params.pipeline_depth as usize {
                break;
            }
        }
        for slot in self.log.range_mut(self.head.height + 1..).map(|(_, s)| s) {
            if due(slot) {
                slot.touched_tick = tick;
                slot.resends = slot.resends.saturating_add(1);
            }
        }
        self.out.extend(resend.into_iter().map(Output::Broadcast));
    }

    pub(crate) fn on_status(&mut self, m: Signed<Status>) {
        let status = m.body;
        self.peers.insert(m.from, PeerStatus { status });
        let vouched = self.vouched_height();
        if vouched > self.head.height.max(self.progress_ahead.0) {
            self.progress_ahead = (vouched, self.tick);
        }
        // Far behind (a restart after a long outage): fetch at once rather than at the next
        // status interval, once a weak quorum says so (`catch_up_if_behind` checks).
        if status.stable_seq > self.head.height + self.verifier.protocol.log_window {
            self.catch_up_if_behind();
        }
        if m.from == self.primary() && status.view == self.view && !status.changing_view {
            self.primary_tick = self.tick;
        }
        // A replica in an older view missed the NewView: hand it over.
        if status.view < self.view
            && !self.changing
            && self.new_view.is_some()
            && self.may_reply(m.from, Reply::NewView)
            && let Some((nv, batches)) = self.new_view.clone()
        {
            self.out.push(Output::Send(
                m.from,
                Message::NewView {
                    new_view: nv,
                    batches,
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quire_chain::cert::CommitStatement;
    use quire_chain::store::MemoryStore;
    use quire_chain::testkit::TestNet;
    use quire_chain::{Batch, Transaction};

    use crate::message::{Message, Prepare, Proposal, Signed, SlotVote};
    use crate::replica::{Input, Output, Replica};
    use crate::verify::Verifier;

    /// Replica 1 hears `message` from its signer, through the verifier as the node does.
    fn hear(r: &mut Replica, net: &TestNet, message: Message) -> Vec<Output> {
        let from = message.from();
        let verified = Verifier::new(&net.genesis)
            .verify(message, Some(from))
            .expect("a well-formed message");
        r.step(Input::Message(verified))
    }

    /// Replica 1, with replica 0's proposal of `batch` at height 1 accepted, and Prepares from
    /// 2 and 3 and Commits from 0, 2 and 3 for its digest not yet heard.
    fn accepted(net: &TestNet, batch: &Batch) -> (Replica, SlotVote) {
        let mut r = crate::exec::tests::replica(net, &MemoryStore::new(&net.genesis));
        let vote = SlotVote {
            view: 0,
            seq: 1,
            digest: batch.digest(),
        };
        let key = |i: usize| &net.validator_keys[i];
        let proposal = Signed::sign(Proposal(vote), 0, key(0), &net.chain_id());
        hear(
            &mut r,
            net,
            Message::PrePrepare {
                proposal,
                batch: batch.clone(),
            },
        );
        (r, vote)
    }

    /// Prepares from 2 and 3 and Commits from 0, 2 and 3: the slot commits.
    fn decide(r: &mut Replica, net: &TestNet, vote: SlotVote) -> Vec<Output> {
        let key = |i: u32| &net.validator_keys[i as usize];
        let mut out = Vec::new();
        for i in [2, 3] {
            let prepare = Signed::sign(Prepare(vote), i, key(i), &net.chain_id());
            out.extend(hear(r, net, Message::Prepare(prepare)));
        }
        for i in [0, 2, 3] {
            let statement = CommitStatement {
                view: vote.view,
                seq: vote.seq,
                digest: vote.digest,
            };
            let commit = Signed::sign(statement, i, key(i), &net.chain_id());
            out.extend(hear(r, net, Message::Commit(commit)));
        }
        out
    }

    fn committed(out: &[Output]) -> usize {
        out.iter()
            .filter(|o| matches!(o, Output::Commit(_)))
            .count()
    }

    /// A proposal whose signatures the verifier found valid is accepted as checked, and the very
    /// same batch executes without its signatures being remembered or looked up. Other content
    /// under the same digest — a copy with a broken signature, which the digest does not cover —
    /// is checked at execution and not executed.
    #[test]
    fn only_the_very_batch_found_signed_executes_unchecked() {
        let net = TestNet::new(4, 3);
        let batch = Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 1,
            txs: vec![net.transfer(0, 1, 5, 0), net.transfer(1, 2, 3, 0)],
        };

        let (mut r, vote) = accepted(&net, &batch);
        let slot = &r.log[&1];
        let (_, held) = slot.pre_prepare.as_ref().expect("accepted");
        assert!(slot.signed.as_ref().is_some_and(|b| Arc::ptr_eq(b, held)));
        assert!(r.known_good.is_empty(), "nothing remembered");
        assert_eq!(committed(&decide(&mut r, &net, vote)), 1);
        assert_eq!(r.head.height, 1);

        // The same proposal accepted, then its content swapped for a forged copy (as content
        // from elsewhere — a NewView, a prepared proof — may be): same ids, same digest.
        let (mut r, vote) = accepted(&net, &batch);
        let mut forged = batch.clone();
        if let Transaction::Transfer(t) = &mut forged.txs[1] {
            t.signature.0[7] ^= 1;
        }
        assert_eq!(forged.digest(), vote.digest);
        if let Some(slot) = r.log.get_mut(&1)
            && let Some((_, held)) = slot.pre_prepare.as_mut()
        {
            *held = Arc::new(forged);
        }
        assert_eq!(committed(&decide(&mut r, &net, vote)), 0);
        assert_eq!(r.head.height, 0, "the forged copy is not executed");
    }
}
