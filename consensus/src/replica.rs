//! The replica: PBFT's state and the `step` function that advances it.
//!
//! `step` takes one input — a verified message, client transactions, or a tick — and returns the
//! outputs it caused. **The caller must make every `Persist`, `PersistBatch` and `Commit` of a
//! step durable, in order, before any `Send`, `Broadcast` or `ServeBlocks` of that step leaves
//! the process.** That
//! is the whole persistence contract: the core never sends a vote it has not asked to persist.
//!
//! The protocol is split by concern: the normal case and execution in [`crate::normal`], view
//! changes in [`crate::change`], state transfer in [`crate::transfer`], the periodic work of a
//! tick here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use quire_chain::block::Executed;
use quire_chain::store::{BatchBody, ConsensusEntries, Store, StoreError};
use quire_chain::{Batch, Hash, Header, Keypair, Ledger, ReplicaId, Transaction};
use thiserror::Error;

use crate::checkpoint::CheckpointVotes;
use crate::config::{Params, ParamsError};
use crate::known::KnownGood;
use crate::log::{Slot, record as log_record};
use crate::mempool::Mempool;
use crate::message::{
    Body, FetchBlocks, Forward, Message, NewView, Proposal, Signed, StableCheckpoint, Status,
};
use crate::persist::{self, CorruptEntry, Op};
use crate::stats::{Drop, Stats, ViewChangeCause};
use crate::transfer::Fetch;
use crate::verify::{Reject, Verified, Verifier};

#[allow(clippy::large_enum_variant)] // one input at a time; boxing would only add allocations
pub enum Input {
    /// A message that passed [`Verifier::verify`].
    Message(Verified),
    /// Client transactions whose signatures the caller has checked.
    Requests(Vec<Transaction>),
    /// Time passes by one tick; `now_ms` is the wall (or virtual) clock, used only to stamp
    /// batches.
    Tick { now_ms: u64 },
}

#[derive(Debug, Clone)]
pub enum Output {
    /// Write (or delete) a consensus log entry.
    Persist(Op),
    /// Store the body of a batch accepted at a sequence number, with the entry that accepts it
    /// (the batch is not in the entry: see [`crate::persist`]).
    PersistBatch(BatchBody),
    /// Append an executed block, with its state changes, to the chain store.
    Commit(Box<Executed>),
    Send(ReplicaId, Message),
    Broadcast(Message),
    /// Send blocks `from..=to` from the chain store to a replica (see [`Replica::blocks_reply`]).
    ServeBlocks {
        to: ReplicaId,
        from: u64,
        to_height: u64,
    },
    /// Raw bytes, sent as they are. Only the `flood` behaviour emits these.
    SendRaw(ReplicaId, Vec<u8>),
}

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("bad parameters: {0}")]
    Params(#[from] ParamsError),
    #[error("{0}")]
    Corrupt(#[from] CorruptEntry),
    #[error("replica id {0} is not in the validator set")]
    NotAValidator(ReplicaId),
    #[error("this key is not the key of replica {0} in the genesis")]
    WrongKey(ReplicaId),
}

/// What a peer last told us about itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerStatus {
    pub status: Status,
}

/// What [`Replica::prepared_next`] reports: the next block's batch, prepared here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedNext {
    pub height: u64,
    /// The view of the prepared certificate, and the batch digest it certifies.
    pub view: u64,
    pub digest: Hash,
    /// The hash of the executed head the batch goes on top of.
    pub parent: Hash,
    pub batch: Arc<Batch>,
}

pub struct Replica {
    pub(crate) id: ReplicaId,
    pub(crate) key: Keypair,
    pub(crate) verifier: Verifier,
    pub(crate) params: Params,

    pub(crate) view: u64,
    /// Between sending a ViewChange for `view` and entering it with a NewView.
    pub(crate) changing: bool,
    /// Consecutive view changes without execution progress (the timeout doubles with each).
    pub(crate) view_change_streak: u32,
    /// When a quorum of replicas had asked for `view` (or beyond) while we are changing to it:
    /// only then does the view-change timer run (PBFT §4.5.2), so a replica cut off from the
    /// others waits at v+1 instead of racing through views alone.
    pub(crate) view_change_tick: Option<u64>,
    /// When our ViewChange goes out again while the view change lasts, and the gap before the
    /// next time (it doubles, up to the view timeout): links are reliable streams, so a resend
    /// is for a peer that reconnected, and resending every status interval made 16 replicas
    /// under load send each other their ViewChanges (batches and all) ten times a second.
    pub(crate) view_change_resend: (u64, u64),

    pub(crate) log: BTreeMap<u64, Slot>,
    pub(crate) stable: StableCheckpoint,
    pub(crate) checkpoints: CheckpointVotes,

    pub(crate) ledger: Ledger,
    pub(crate) head: Header,
    pub(crate) mempool: Mempool,
    /// Transactions whose signatures were checked on the way in (not again at execution).
    pub(crate) known_good: KnownGood,
    /// The next sequence number this replica proposes, when primary.
    pub(crate) next_seq: u64,

    /// The latest ViewChange of each replica (with its batches).
    pub(crate) view_changes: crate::view_changes::ViewChanges,
    /// The NewView that started the current view, to hand to replicas still in older views.
    pub(crate) new_view: Option<(Signed<NewView>, Vec<Batch>)>,
    pub(crate) peers: BTreeMap<ReplicaId, PeerStatus>,
    pub(crate) fetch: Option<Fetch>,
    /// No new state transfer before this tick (after one that found nothing).
    pub(crate) fetch_quiet_until: u64,
    /// Fetches that timed out, per peer asked: the peers that failed least are asked first.
    pub(crate) fetch_failures: BTreeMap<ReplicaId, u32>,

    pub(crate) tick: u64,
    pub(crate) now_ms: u64,
    /// Last tick the view started or a block executed.
    pub(crate) progress_tick: u64,
    /// The highest height a weak quorum of peers reported executing while it was above this
    /// replica's head, and the tick it was first reported: the network making progress that
    /// this replica has yet to catch up with (see `check_timers`).
    pub(crate) progress_ahead: (u64, u64),
    pub(crate) executed_tick: u64,
    /// When this replica last executed a block with room for more transactions: a primary that
    /// proposes such blocks while a ready transaction waits is leaving it out on purpose.
    pub(crate) room_tick: u64,
    /// How long this replica's blocks take to commit, and so how long a batch waits under load.
    pub(crate) batch_timeout: crate::batch_timeout::BatchTimeout,
    /// A rotation point executed in this view, waiting for its checkpoint to become stable.
    pub(crate) rotation_due: Option<u64>,
    /// Last tick the current primary was heard from.
    pub(crate) primary_tick: u64,
    pub(crate) view_start_tick: u64,

    pub(crate) stats: Stats,
    pub(crate) out: Vec<Output>,
    /// What the mempool said to each client transaction of the last `Input::Requests`.
    pub(crate) admissions: Vec<Admission>,
    /// When each peer was last sent a reply that costs more than its request (PBFT.md trap 12).
    pub(crate) replied: BTreeMap<(ReplicaId, Reply), u64>,
    /// Block requests that came within a tick of the last reply to their peer: served one per
    /// tick, in order, instead of dropped (at most `FETCH_PIPELINE` per peer, the latest).
    /// Dropped, an honest replica catching up on a fast link waited a fetch timeout every
    /// other round trip.
    pub(crate) deferred_fetch:
        BTreeMap<ReplicaId, std::collections::VecDeque<crate::message::FetchBlocks>>,
    /// Set when this replica's executed chain turned out to differ from a checkpoint a quorum
    /// certified: from then on it signs nothing and commits nothing, until it is rebuilt.
    pub(crate) diverged: Option<Divergence>,
}

/// This replica's block at `height` is not the one 2f+1 replicas certified: its state is wrong
/// (a corrupted store, a bug). It must not vote on anything until it has recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub height: u64,
    pub ours: quire_chain::Hash,
    pub certified: quire_chain::Hash,
}

/// Replies much larger than what asks for them, rate-limited per peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reply {
    /// The NewView of the current view, to a replica still in an older one.
    NewView,
    /// Blocks from the chain store, for state transfer.
    Blocks,
}

/// Whether the mempool took one client transaction, or why not.
pub type Admission = Result<(), crate::mempool::Refusal>;

/// What a replica starts from: its chain (head block and ledger) and its consensus log, with the
/// batches of the PrePrepares the log says it accepted.
pub struct Durable {
    pub head: Header,
    pub ledger: Ledger,
    pub consensus: ConsensusEntries,
    /// The bodies of accepted PrePrepares, by (seq, digest).
    pub batches: HashMap<(u64, Hash), Batch>,
}

impl Durable {
    /// Only the genesis: a replica that has persisted nothing.
    pub fn genesis(genesis: &quire_chain::Genesis) -> Durable {
        Durable {
            head: genesis.block().header,
            ledger: genesis.ledger(),
            consensus: Vec::new(),
            batches: HashMap::new(),
        }
    }

    /// Everything `store` holds for a restart. An accepted PrePrepare above both the head and the
    /// stable checkpoint whose batch is missing is corruption: the two are written in one atomic
    /// write, and the store keeps a body until its height has executed and the chain is twice
    /// the watermark window past it. At or below either, the slot is settled (executed, or below
    /// the checkpoint, which recovery ignores), and its batch may have been a proposal a view
    /// change replaced.
    pub fn read(store: &dyn Store, chain_id: Hash) -> Result<Durable, StoreError> {
        let head = store.head();
        let consensus = store.consensus_entries()?;
        let stable = persist::recover(&consensus)
            .ok()
            .and_then(|r| r.stable)
            .map_or(0, |s| s.seq);
        let settled = head.height.max(stable);
        let mut batches = HashMap::new();
        for (seq, digest) in persist::accepted_slots(&consensus) {
            match store.batch(seq, &digest)? {
                Some(batch) => {
                    batches.insert((seq, digest), batch);
                }
                None if seq > settled => {
                    return Err(StoreError::Corrupt(format!(
                        "the batch accepted at {seq} ({digest}) is missing"
                    )));
                }
                None => {}
            }
        }
        Ok(Durable {
            head,
            ledger: store.ledger(chain_id)?,
            consensus,
            batches,
        })
    }
}

impl Replica {
    /// Starts (or restarts) replica `id` from what it persisted.
    pub fn recover(
        id: ReplicaId,
        key: Keypair,
        verifier: Verifier,
        params: Params,
        durable: Durable,
    ) -> Result<Replica, ReplicaError> {
        params.validate(&verifier.protocol)?;
        let validator = verifier
            .validators
            .get(id)
            .ok_or(ReplicaError::NotAValidator(id))?;
        if validator.key != key.public() {
            return Err(ReplicaError::WrongKey(id));
        }
        let recovered = persist::recover(&durable.consensus)?;
        let genesis_checkpoint = StableCheckpoint {
            seq: 0,
            block_hash: verifier.genesis_hash,
            certificate: None,
        };
        let mut replica = Replica {
            id,
            key,
            mempool: Mempool::new(params.mempool_max),
            // Enough for the mempool and every batch in flight; beyond, a check is repeated.
            known_good: KnownGood::new(params.mempool_max.max(1 << 16)),
            verifier,
            params,
            view: recovered.view,
            changing: recovered.changing,
            view_change_streak: 0,
            view_change_tick: None,
            view_change_resend: (0, 0),
            log: BTreeMap::new(),
            stable: recovered.stable.unwrap_or(genesis_checkpoint),
            checkpoints: CheckpointVotes::default(),
            ledger: durable.ledger,
            head: durable.head,
            next_seq: 0,
            view_changes: Default::default(),
            new_view: recovered
                .new_view
                .filter(|(nv, _)| nv.body.view == recovered.view),
            peers: BTreeMap::new(),
            fetch: None,
            fetch_quiet_until: 0,
            fetch_failures: BTreeMap::new(),
            tick: 0,
            now_ms: 0,
            progress_tick: 0,
            progress_ahead: (0, 0),
            executed_tick: 0,
            room_tick: 0,
            batch_timeout: Default::default(),
            rotation_due: None,
            primary_tick: 0,
            view_start_tick: 0,
            stats: Stats::default(),
            out: Vec::new(),
            admissions: Vec::new(),
            replied: BTreeMap::new(),
            deferred_fetch: BTreeMap::new(),
            diverged: None,
        };
        let low = replica.stable.seq;
        let mut bodies = durable.batches;
        // An accepted PrePrepare whose batch is gone executed long ago (see `Durable::read`).
        let accepted: BTreeMap<u64, (Signed<Proposal>, Arc<Batch>)> = recovered
            .accepted
            .into_iter()
            .filter_map(|pp| {
                let vote = pp.body.0;
                let batch = bodies.remove(&(vote.seq, vote.digest))?;
                Some((vote.seq, (pp, Arc::new(batch))))
            })
            .collect();
        for proof in recovered.prepared {
            let slot = proof.slot();
            let Some((_, batch)) = accepted
                .get(&slot.seq)
                .filter(|(pp, _)| pp.body.0.digest == slot.digest)
            else {
                // Superseded by a later view's proposal of another digest (see persist::prepared).
                continue;
            };
            if slot.seq > low {
                let view = replica.view;
                let s = replica.slot_mut(slot.seq);
                if slot.view == view {
                    s.commit_sent_view = Some(slot.view);
                }
                s.prepared = Some((proof, batch.clone()));
            }
        }
        for (seq, (proposal, batch)) in accepted {
            if seq > low && proposal.body.0.view == replica.view {
                replica.slot_mut(seq).pre_prepare = Some((proposal, batch));
            }
        }
        if let Some((vc, batches)) = recovered.view_change
            && replica.changing
            && vc.body.new_view == replica.view
        {
            replica.view_changes.insert(vc, batches);
        }
        replica.next_seq = replica.first_free_seq();
        replica.restore_own_votes();
        Ok(replica)
    }

    /// After a restart, the votes this replica had sent in the current view are rebuilt from
    /// what it persisted (each PrePrepare it accepted stands for its Prepare, each prepared
    /// certificate for its Commit) and sent again: peers that missed them before the crash still
    /// get them, and the slot can commit without waiting for a view change. Ed25519 signatures
    /// are deterministic, so these are the very votes sent before, byte for byte — never a
    /// different vote for a (view, seq).
    fn restore_own_votes(&mut self) {
        if self.changing {
            return;
        }
        let (view, id, primary) = (self.view, self.id, self.primary());
        let mut resend = Vec::new();
        let seqs: Vec<u64> = self
            .log
            .range(self.head.height + 1..)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            let Some(slot) = self.log.get(&seq) else {
                continue;
            };
            let accepted = slot
                .pre_prepare
                .as_ref()
                .map(|(pp, _)| pp.body.0)
                .filter(|v| v.view == view);
            let committed_to = slot
                .prepared
                .as_ref()
                .map(|(p, _)| p.slot())
                .filter(|v| v.view == view && slot.commit_sent_view == Some(view));
            if let Some(vote) = accepted
                && id != primary
            {
                let prepare = self.sign(crate::message::Prepare(vote));
                let slot = self.slot_mut(seq);
                log_record(
                    &mut slot.prepares,
                    vote.view,
                    id,
                    vote.digest,
                    prepare.signature,
                );
                resend.push(Message::Prepare(prepare));
            }
            if let Some(vote) = committed_to {
                let commit = self.sign(quire_chain::cert::CommitStatement {
                    view: vote.view,
                    seq: vote.seq,
                    digest: vote.digest,
                });
                let slot = self.slot_mut(seq);
                log_record(
                    &mut slot.commits,
                    vote.view,
                    id,
                    vote.digest,
                    commit.signature,
                );
                resend.push(Message::Commit(commit));
            }
        }
        self.out.extend(resend.into_iter().map(Output::Broadcast));
    }

    /// Starts this replica again from `durable` (its chain rebuilt after a divergence, say):
    /// same identity, parameters and network, nothing else kept from memory.
    pub fn restart_from(&mut self, durable: Durable) -> Result<(), ReplicaError> {
        *self = Replica::recover(
            self.id,
            self.key.clone(),
            self.verifier.clone(),
            self.params.clone(),
            durable,
        )?;
        Ok(())
    }

    // ---- accessors ------------------------------------------------------------------------

    pub fn id(&self) -> ReplicaId {
        self.id
    }
    pub fn view(&self) -> u64 {
        self.view
    }
    pub fn is_changing_view(&self) -> bool {
        self.changing
    }
    pub fn head(&self) -> &Header {
        &self.head
    }
    /// Whether sequence number `seq` is decided here (a quorum of Commits, or already executed).
    /// The driver asks, to time how long a block waits between its phases.
    pub fn is_committed(&self, seq: u64) -> bool {
        seq <= self.head.height || self.log.get(&seq).is_some_and(|s| s.committed.is_some())
    }

    pub fn last_executed(&self) -> u64 {
        self.head.height
    }

    /// PBFT's tentative-execution point (Castro & Liskov, OSDI 1999, §5.1): the batch right
    /// after the executed head, when this replica holds a prepared certificate for it — durable
    /// once the step that made it has been carried out, which is when the driver asks. When
    /// 2f+1 replicas report the same (height, view, digest), the batch commits at that height
    /// whatever happens next: at least f+1 of them are honest, every view change hears from
    /// 2f+1 replicas and so from one of those, and the NewView must re-propose the prepared
    /// digest of the highest view (no other digest can prepare in that view). Its outcome is
    /// fixed too, as everything below it is executed. A client told so by 2f+1 replicas need not
    /// wait for the commit phase.
    pub fn prepared_next(&self) -> Option<PreparedNext> {
        let height = self.head.height + 1;
        let (proof, batch) = self.log.get(&height)?.prepared.as_ref()?;
        let vote = proof.slot();
        Some(PreparedNext {
            height,
            view: vote.view,
            digest: vote.digest,
            parent: self.head.hash(),
            batch: batch.clone(),
        })
    }
    pub fn stable_checkpoint(&self) -> &StableCheckpoint {
        &self.stable
    }
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    pub fn params(&self) -> &Params {
        &self.params
    }
    /// Every other validator.
    pub fn peers(&self) -> Vec<ReplicaId> {
        self.verifier
            .validators
            .ids()
            .filter(|id| *id != self.id)
            .collect()
    }
    pub fn is_primary(&self) -> bool {
        self.primary() == self.id
    }
    pub fn primary(&self) -> ReplicaId {
        self.verifier.validators.primary(self.view)
    }
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }
    /// The mempool's transactions that did not arrive early ([`crate::mempool::Mempool::in_order`]).
    pub fn mempool_in_order(&self) -> usize {
        self.mempool.in_order()
    }
    /// The smoothed ticks from PrePrepare to execution of recent blocks, and the batch timeout
    /// it gives now (see [`crate::batch_timeout`]).
    pub fn batch_timing(&self) -> (u64, u64) {
        (
            self.batch_timeout.commit_ticks(),
            self.batch_timeout_ticks(),
        )
    }
    /// How long a batch may wait now, within this replica's floor and ceiling.
    pub(crate) fn batch_timeout_ticks(&self) -> u64 {
        self.batch_timeout.ticks(
            self.params.batch_timeout_ticks,
            self.params.batch_timeout_max_ticks,
        )
    }
    /// Whether the mempool refuses early transfers now or soon: then a submission is worth
    /// screening before its signatures are checked ([`Replica::screen`]).
    pub fn mempool_under_pressure(&self) -> bool {
        self.mempool.early_is_half_taken()
    }
    /// What the mempool would certainly refuse of `txs`, admitting none
    /// ([`crate::mempool::Mempool::screen`]).
    pub fn screen(&self, txs: &[Transaction]) -> Vec<Option<crate::mempool::Refusal>> {
        self.mempool.screen(txs, &self.ledger)
    }
    /// Slots held in the log (bounded by the watermark window).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }
    pub fn tick_count(&self) -> u64 {
        self.tick
    }

    /// What a verifier may use to drop stale messages before checking them
    /// ([`crate::prefilter`]).
    pub fn watermarks(&self) -> crate::prefilter::Watermarks {
        crate::prefilter::Watermarks {
            view: self.view,
            stable_seq: self.stable.seq,
            height: self.head.height,
        }
    }

    /// A one-line summary of the protocol state, for logs and failure reports.
    pub fn describe(&self) -> String {
        let slots: Vec<String> = self
            .log
            .range(self.head.height + 1..)
            .take(6)
            .map(|(seq, s)| {
                let pp = s.pre_prepare.as_ref().map_or("-".to_string(), |(p, _)| {
                    format!("v{}:{}", p.body.0.view, p.body.0.digest.short())
                });
                let prepared = s.prepared.as_ref().map_or("-".to_string(), |(p, _)| {
                    format!("v{}:{}", p.slot().view, p.slot().digest.short())
                });
                let commits: Vec<String> = s
                    .commits
                    .iter()
                    .map(|((v, r), (d, _))| format!("{r}@v{v}:{}", &d.short()[..4]))
                    .collect();
                format!(
                    "[{seq} pp={pp} prep={prepared} sent={:?} commits={} done={}]",
                    s.commit_sent_view,
                    commits.join(","),
                    s.committed.is_some()
                )
            })
            .collect();
        format!(
            "r{}{} view={}{} height={} stable={} next_seq={} mempool={} fetch={:?} vcs={:?} {}",
            self.id,
            if self.diverged.is_some() {
                " DIVERGED"
            } else {
                ""
            },
            self.view,
            if self.changing { "(changing)" } else { "" },
            self.head.height,
            self.stable.seq,
            self.next_seq,
            self.mempool.len(),
            self.fetch.as_ref().map(|f| f.target),
            self.view_changes.summary(),
            slots.join(" ")
        )
    }

    /// An account at the head, with its proof against the head's state root.
    pub fn prove_account(
        &mut self,
        address: &quire_chain::Address,
    ) -> (quire_chain::Account, quire_chain::smt::SmtProof) {
        self.ledger.prove(address)
    }

    /// The mempool's answer to each transaction of the last `Input::Requests`, in order (empty
    /// if a behaviour kept the requests from the core).
    pub fn take_admissions(&mut self) -> Vec<Admission> {
        std::mem::take(&mut self.admissions)
    }

    /// Whether a transaction is waiting in this replica's mempool.
    pub fn is_pending(&self, id: &quire_chain::TxId) -> bool {
        self.mempool.contains(id)
    }

    /// Counts a message refused at the boundary, and blames its sender where that says something.
    pub fn note_rejected(&mut self, reason: Reject, culprit: Option<ReplicaId>) {
        self.stats.reject(reason);
        if let (Some(kind), Some(c)) = (crate::stats::Misbehaviour::of_reject(reason), culprit) {
            self.stats.blame(kind, c);
        }
    }

    // ---- the step function ----------------------------------------------------------------

    pub fn step(&mut self, input: Input) -> Vec<Output> {
        if self.diverged.is_some() {
            // Signs nothing, commits nothing: its state is wrong. The caller rebuilds it.
            return Vec::new();
        }
        match input {
            Input::Message(m) => {
                let all_signed = m.all_signed();
                let (message, good_txs) = m.into_parts();
                // A PrePrepare whose signatures all hold is accepted as checked and executed
                // without looking them up (`Slot::signed`). Remembering each of its transfers
                // and looking it up again before the vote and at execution cost every backup an
                // insert and three lookups in a table of 10^5 keys (3.8% of the box at 15k
                // transfers/s, 0.7% after). Only rarer paths (a NewView's re-proposals) check
                // signatures at execution, on this thread.
                let vouched = all_signed && matches!(message, Message::PrePrepare { .. });
                if !vouched {
                    for id in good_txs {
                        self.known_good.learn(id);
                    }
                }
                self.on_message(message, all_signed)
            }
            Input::Requests(txs) => self.on_requests(txs),
            Input::Tick { now_ms } => self.on_tick(now_ms),
        }
        if self.diverged.is_some() {
            self.out.clear();
        }
        std::mem::take(&mut self.out)
    }

    /// Whether this replica found its chain differs from a certified checkpoint (see
    /// [`Divergence`]); its caller should rebuild its chain by state transfer.
    pub fn diverged(&self) -> Option<Divergence> {
        self.diverged
    }

    /// Compares this replica's block hash at `height` with the one a quorum certified.
    pub(crate) fn check_agreement(
        &mut self,
        height: u64,
        ours: quire_chain::Hash,
        certified: quire_chain::Hash,
    ) {
        if ours != certified && self.diverged.is_none() {
            self.stats.diverged += 1;
            self.diverged = Some(Divergence {
                height,
                ours,
                certified,
            });
        }
    }

    /// `all_signed`: the verifier found every client signature in `message` valid
    /// ([`crate::Verified::all_signed`]), so they need not be looked up again.
    fn on_message(&mut self, message: Message, all_signed: bool) {
        match message {
            Message::PrePrepare { proposal, batch } => {
                self.on_pre_prepare(proposal, batch, all_signed)
            }
            Message::Prepare(m) => self.on_prepare(m),
            Message::Commit(m) => self.on_commit(m),
            Message::Checkpoint(m) => self.on_checkpoint(m),
            Message::ViewChange {
                view_change,
                batches,
            } => self.on_view_change(view_change, batches),
            Message::NewView { new_view, batches } => self.on_new_view(new_view, batches),
            Message::Status(m) => self.on_status(m),
            Message::Forward(m) => self.on_forward(m),
            Message::FetchBlocks(m) => self.on_fetch(m),
            Message::Blocks(m) => self.on_blocks(m, all_signed),
        }
    }

    fn on_requests(&mut self, txs: Vec<Transaction>) {
        let mut fresh = Vec::new();
        for tx in txs {
            // The caller checked the signature (Input::Requests).
            if let Some(k) = tx.signed_id() {
                self.known_good.learn(k);
            }
            let admitted = self.mempool.insert(tx.clone(), self.tick, &self.ledger);
            match admitted {
                Ok(()) => fresh.push(tx),
                Err(refusal) => self.stats.drop(Drop::of_refusal(refusal)),
            }
            self.admissions.push(admitted);
        }
        if fresh.is_empty() {
            return;
        }
        if self.is_primary() {
            self.try_propose();
            return;
        }
        // While changing views, `view` is the one being changed to: everyone gets them, its
        // primary included.
        self.mempool.forwarded(&fresh, self.view, self.tick);
        if !self.changing {
            let primary = self.primary();
            let forward = self.sign(Forward(fresh));
            self.out
                .push(Output::Send(primary, Message::Forward(forward)));
        } else {
            // Changing views, this replica does not know who will propose: it hands the
            // transactions to everyone, so they are not stuck here if it is changing alone.
            let forward = self.sign(Forward(fresh));
            self.out.push(Output::Broadcast(Message::Forward(forward)));
        }
    }

    fn on_forward(&mut self, m: Signed<Forward>) {
        // Forwarded transactions were signature-checked at the boundary.
        for tx in m.body.0 {
            if let Err(refusal) = self.mempool.insert(tx, self.tick, &self.ledger) {
                self.stats.drop(Drop::of_refusal(refusal));
            }
        }
        if self.is_primary() {
            self.try_propose();
        }
    }

    // ---- time -----------------------------------------------------------------------------

    /// The view-change timeout after `streak` fruitless view changes: doubles each time, capped.
    pub(crate) fn view_timeout(&self) -> u64 {
        let base = self.params.view_timeout_ticks;
        let doubled = base.saturating_mul(1u64 << self.view_change_streak.min(20));
        doubled.min(self.params.view_timeout_max_ticks.max(base))
    }

    fn on_tick(&mut self, now_ms: u64) {
        self.tick += 1;
        self.now_ms = now_ms;
        if self.is_primary() && !self.changing {
            self.try_propose();
        }
        if self.tick.is_multiple_of(self.params.status_interval_ticks) {
            self.periodic();
        }
        self.check_timers();
        self.check_fetch_timeout();
        self.serve_deferred_fetches();
    }

    /// Every status interval: report status (the primary's is its heartbeat), resend what seems
    /// lost, and catch up if a weak quorum of peers is ahead.
    fn periodic(&mut self) {
        let status = self.sign(Status {
            view: self.view,
            changing_view: self.changing,
            last_executed: self.head.height,
            stable_seq: self.stable.seq,
        });
        self.out.push(Output::Broadcast(Message::Status(status)));
        self.mempool.expire(self.tick);
        if self.changing {
            // Our ViewChange may have been lost (a peer reconnected); it is idempotent to send
            // again, and sent less often the longer the view change lasts.
            let (at, gap) = self.view_change_resend;
            if self.tick >= at
                && let Some((vc, batches)) = self.view_changes.latest(self.id).cloned()
            {
                let gap = gap
                    .saturating_mul(2)
                    .clamp(1, self.params.view_timeout_ticks.max(1));
                self.view_change_resend = (self.tick.saturating_add(gap), gap);
                self.send_view_change(vc, batches);
            }
        } else {
            self.retransmit_stuck_slots();
            self.reforward();
        }
        self.catch_up_if_behind();
    }

    fn reforward(&mut self) {
        if self.is_primary() {
            return;
        }
        let stale = self
            .mempool
            .stale_queued(self.tick, self.params.retransmit_ticks, 1024);
        if !stale.is_empty() {
            self.mempool.forwarded(&stale, self.view, self.tick);
            let primary = self.primary();
            let forward = self.sign(Forward(stale));
            self.out
                .push(Output::Send(primary, Message::Forward(forward)));
        }
    }

    fn check_timers(&mut self) {
        let timeout = self.view_timeout();
        if self.changing {
            if self
                .view_change_tick
                .is_some_and(|t| self.tick.saturating_sub(t) > timeout)
            {
                self.start_view_change(self.view + 1, ViewChangeCause::Expired);
            }
            return;
        }
        if self.is_primary() {
            return;
        }
        // Just (re)started: links to peers are still being (re)established, so silence says
        // nothing about the primary yet. (A view change started in error could not be taken
        // back: the replica would sit out the view until the others leave it too.)
        if self.tick < 3 * self.params.view_timeout_ticks {
            return;
        }
        // A primary that is never heard from (no heartbeat, no proposal) is replaced even when
        // there is no work: that is the idle timeout.
        let silent = self
            .tick
            .saturating_sub(self.primary_tick.max(self.view_start_tick));
        // Work that waits with no progress at all means a stalled primary: requests that are
        // ready, or proposed and not yet executed…
        let oldest = self.mempool.oldest_ready_tick(&self.ledger);
        let proposed = self
            .log
            .range(self.head.height + 1..)
            .filter(|(_, s)| s.pre_prepare.is_some() || s.prepared.is_some())
            .map(|(_, s)| s.accepted_tick)
            .min();
        let waiting_since = match (oldest, proposed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Progress counts wherever it happens: peers that report executing past this replica's
        // head (a weak quorum, so an honest one among them) show a primary at work, and this
        // replica the one behind; it catches up by state transfer. Blaming the primary for its
        // own lag, a replica a few blocks behind on a loaded box (its slots garbage-collected
        // under a checkpoint the others made stable, its fetch slower than the timeout) left
        // the view alone; at sixteen replicas on two cores they left one by one until f + 1 of
        // them took the rest into a view change.
        let progress = self.progress_tick.max(self.progress_ahead.1);
        let stalled =
            waiting_since.is_some_and(|t| self.tick.saturating_sub(t.max(progress)) > timeout);
        // …and one request handed to this primary that waits for long while blocks with room
        // for it go through means censorship. Behind a backlog of full blocks it is only waiting its turn: blaming the
        // primary for that turned overload into view changes, and view changes into collapse.
        let handed = self.mempool.oldest_ready_forwarded(&self.ledger, self.view);
        let censored = handed.is_some_and(|t| {
            let since = t.max(self.view_start_tick);
            self.tick.saturating_sub(since) > timeout.saturating_mul(4)
                && self.room_tick > since.saturating_add(timeout)
        });
        let cause = if silent > timeout {
            ViewChangeCause::Silent
        } else if stalled {
            ViewChangeCause::Stalled
        } else if censored {
            ViewChangeCause::Censored
        } else {
            return;
        };
        self.start_view_change(self.view + 1, cause);
    }

    // ---- helpers shared by the protocol modules ------------------------------------------

    pub(crate) fn sign<T: Body>(&self, body: T) -> Signed<T> {
        Signed::sign(body, self.id, &self.key, &self.verifier.chain_id)
    }

    pub(crate) fn persist(&mut self, op: Op) {
        self.out.push(Output::Persist(op));
    }

    /// Persists an accepted PrePrepare: its log entry, and its batch by (seq, digest).
    pub(crate) fn persist_accepted(&mut self, proposal: &Signed<Proposal>, batch: &Arc<Batch>) {
        self.persist(persist::accepted(proposal));
        self.out.push(Output::PersistBatch(BatchBody {
            seq: proposal.body.0.seq,
            digest: proposal.body.0.digest,
            batch: batch.clone(),
        }));
    }

    pub(crate) fn quorum(&self) -> usize {
        self.verifier.validators.quorum()
    }

    pub(crate) fn low_watermark(&self) -> u64 {
        self.stable.seq
    }

    pub(crate) fn in_window(&self, seq: u64) -> bool {
        seq > self.low_watermark()
            && seq <= self.low_watermark() + self.verifier.protocol.log_window
    }

    /// The most transactions this replica puts in a batch: its own setting, within the genesis's
    /// rule.
    pub(crate) fn batch_txs_max(&self) -> usize {
        self.params
            .batch_txs_max
            .min(self.verifier.protocol.batch_txs_max as usize)
    }

    pub(crate) fn slot_mut(&mut self, seq: u64) -> &mut Slot {
        self.log.entry(seq).or_default()
    }

    /// The first sequence number with no proposal in the current view above what is executed.
    pub(crate) fn first_free_seq(&self) -> u64 {
        let proposed = self
            .log
            .iter()
            .filter(|(_, s)| {
                s.pre_prepare
                    .as_ref()
                    .is_some_and(|(pp, _)| pp.body.0.view == self.view)
            })
            .map(|(seq, _)| *seq)
            .max()
            .unwrap_or(0);
        proposed.max(self.head.height).max(self.stable.seq) + 1
    }

    /// Whether `peer` may be sent another `reply` now: at most one NewView per two status
    /// intervals and one block reply per tick. Honest peers ask that often at most (a catching
    /// up replica asks for the next blocks when the last arrive); a faulty one asking faster gets
    /// no more. Counts the refusals.
    pub(crate) fn may_reply(&mut self, peer: ReplicaId, reply: Reply) -> bool {
        let gap = match reply {
            Reply::NewView => 2 * self.params.status_interval_ticks,
            Reply::Blocks => 1,
        };
        let tick = self.tick;
        // Bounded: one entry per (validator, kind).
        let last = self.replied.entry((peer, reply)).or_insert(0);
        if *last != 0 && tick.saturating_sub(*last) < gap {
            // A block request waits its turn (`deferred_fetch`); a NewView resend is dropped.
            if reply == Reply::NewView {
                self.stats.drop(Drop::RateLimited);
            }
            return false;
        }
        *last = tick.max(1);
        true
    }

    /// A reply to a FetchBlocks, built from blocks the caller read from its store.
    pub fn blocks_reply(&self, blocks: Vec<quire_chain::Block>) -> Message {
        Message::Blocks(self.sign(crate::message::Blocks(blocks)))
    }

    pub(crate) fn fetch_request(&self, from: u64, to: u64) -> Message {
        Message::FetchBlocks(self.sign(FetchBlocks { from, to }))
    }
}
