//! The driver: one thread that feeds the consensus core and carries out what it asks, in the one
//! order that keeps a replica honest across crashes — **persist, then send**. Events that arrive
//! together are stepped together and their writes go to disk in one synced RocksDB batch (group
//! commit); only then do their messages leave.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quire_chain::block::Executed;
use quire_chain::smt::SmtProof;
use quire_chain::store::Store;
use quire_chain::{Account, Address, Header, ReplicaId, Transaction, TxId};
use quire_consensus::exec::{self, Outbox};
use quire_consensus::message::{Kind, StableCheckpoint};
use quire_consensus::{Actor, Admission, Behaviour, Input, Output, Reject, Verified, Verifier};
use quire_rocks::RocksStore;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, ReplicaState};

/// Where the driver's messages go: the transport, behind a narrow interface.
pub trait Transport: Send + Sync {
    fn send(&self, to: ReplicaId, frame: Arc<Vec<u8>>);
    fn broadcast(&self, frame: Arc<Vec<u8>>);
    /// Whether frames to `to` are dropped by fault injection (they are not counted as sent to
    /// it, so the message matrix shows a partition).
    fn is_blocked(&self, _to: ReplicaId) -> bool {
        false
    }
}

/// The transport as the executor's outbox, counting what leaves by kind; block requests go to
/// the block server's thread.
struct CountingOutbox<'a> {
    transport: &'a dyn Transport,
    metrics: &'a Metrics,
    me: ReplicaId,
    n: u32,
    blocks: Option<&'a crate::block_server::Requests>,
    block_credits: &'a crate::verify_pool::BlockCredits,
}

impl CountingOutbox<'_> {
    fn count_to(&self, to: ReplicaId, kind: Kind) {
        if !self.transport.is_blocked(to) {
            self.metrics.sent_to(to, kind);
        }
    }
}

impl Outbox for CountingOutbox<'_> {
    fn send(&mut self, to: ReplicaId, kind: Option<Kind>, frame: Arc<Vec<u8>>) {
        if let Some(kind) = kind {
            self.metrics.sent(kind, 1, frame.len());
            self.count_to(to, kind);
        }
        if kind == Some(Kind::FetchBlocks) {
            self.block_credits.asked(to);
        }
        self.transport.send(to, frame);
    }

    fn broadcast(&mut self, kind: Option<Kind>, frame: Arc<Vec<u8>>) {
        if let Some(kind) = kind {
            let peers = u64::from(self.n.saturating_sub(1));
            self.metrics.sent(kind, peers, frame.len());
            for to in (0..self.n).filter(|p| *p != self.me) {
                self.count_to(to, kind);
            }
        }
        self.transport.broadcast(frame);
    }

    fn serve_blocks(&mut self, to: ReplicaId, from: u64, to_height: u64) -> bool {
        let Some(blocks) = self.blocks else {
            return false;
        };
        if !blocks.offer(crate::block_server::Request {
            to,
            from,
            to_height,
        }) {
            self.metrics.ingress_dropped(to, "block_server_busy");
        }
        true
    }
}

#[allow(clippy::large_enum_variant)] // events pass through a queue one by one; boxing adds allocations
pub enum Event {
    /// A message from an authenticated replica, verified by the pool (`verify_pool`).
    Verified {
        from: ReplicaId,
        verified: Verified,
    },
    /// A replica's frame that failed verification: counted, and its sender blamed.
    Rejected {
        from: ReplicaId,
        reject: Reject,
    },
    /// Client transactions whose signatures the RPC layer checked; the mempool's answer to
    /// each goes back on `reply`.
    Requests {
        txs: Vec<Transaction>,
        received: Instant,
        reply: oneshot::Sender<Vec<Admission>>,
    },
    /// Which of these client transactions the mempool would certainly refuse now (asked
    /// before their signatures are checked, under overload: `rpc_server::submit`).
    Screen {
        txs: Vec<Transaction>,
        reply: oneshot::Sender<Vec<Option<quire_consensus::mempool::Refusal>>>,
    },
    /// An account proof against the current head.
    Account {
        address: Address,
        reply: oneshot::Sender<(Header, Account, SmtProof)>,
    },
    /// Is this transaction waiting here?
    Pending {
        id: TxId,
        reply: oneshot::Sender<bool>,
    },
    /// Switch behaviour; `colluders` are the replicas a faulty one conspires with.
    SetBehaviour {
        behaviour: Behaviour,
        colluders: std::collections::BTreeSet<ReplicaId>,
    },
    /// Proof of work only (a PBFT driver ignores them).
    Pow(crate::pow::PowEvent),
    Shutdown,
}

/// What the RPC layer may read without asking the driver.
#[derive(Default)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// The watermarks the verification pool filters stale messages with.
    pub watermarks: Arc<crate::verify_pool::Published>,
    pub stable: Mutex<Option<StableCheckpoint>>,
    /// The committed height, for RPC requests waiting for a block.
    pub height: tokio::sync::watch::Sender<u64>,
    /// The batch after the committed head when it is prepared here (durably: published after
    /// the round's write), for RPC requests waiting for one (`Request::WaitPrepared`).
    pub prepared: tokio::sync::watch::Sender<Option<quire_consensus::PreparedNext>>,
    /// Transactions in the mempool after the last round, so client RPC can refuse a Submit the
    /// mempool could not take before spending a signature check on it.
    pub mempool_len: std::sync::atomic::AtomicU64,
    /// Of those, the ones that did not arrive early (`Replica::mempool_in_order`): what the
    /// admission limit counts.
    pub mempool_in_order: std::sync::atomic::AtomicU64,
    /// Whether the mempool refused early transfers after the last round: client RPC then asks
    /// the driver which transactions it would refuse before checking their signatures.
    pub mempool_pressure: std::sync::atomic::AtomicBool,
    /// How many transactions client RPC may let the mempool hold: a few seconds of what this
    /// network executes (`crate::drain`); 0 until the driver has measured.
    pub admission_limit: std::sync::atomic::AtomicU64,
    pub head_hash: Mutex<quire_chain::Hash>,
    /// Block replies asked for: they bypass the verification pool's per-peer budget.
    pub block_credits: Arc<crate::verify_pool::BlockCredits>,
}

pub struct Driver {
    actor: Actor,
    verifier: Verifier,
    store: Arc<RocksStore>,
    transport: Arc<dyn Transport>,
    shared: Arc<Shared>,
    tick: Duration,
    /// The network's genesis (a diverged replica starts over from it).
    genesis: quire_chain::Genesis,
    /// Where block requests go; without one (tests), the driver serves them itself.
    blocks: Option<crate::block_server::Requests>,
    /// When each client transaction reached this replica (for commit latency).
    submitted_at: HashMap<TxId, Instant>,
    published: Instant,
    /// When in-flight sequence numbers reached each phase.
    phases: crate::metrics::phases::PhaseClock,
    /// The view and whether a view change was under way, after the last round (logged when
    /// either changes: view changes are what a fault run is read by).
    view_seen: (u64, bool),
    /// What this network executes a second under a backlog: client RPC's admission limit.
    drain: crate::drain::Drain,
}

/// Transactions whose latency is tracked at once; beyond that, new ones are not timed.
const LATENCY_TRACKED_MAX: usize = 500_000;
/// Events stepped between two disk writes at most.
const EVENTS_PER_ROUND: usize = 512;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Driver {
    pub fn new(
        actor: Actor,
        genesis: quire_chain::Genesis,
        store: Arc<RocksStore>,
        transport: Arc<dyn Transport>,
        shared: Arc<Shared>,
        tick: Duration,
    ) -> Driver {
        let verifier = actor.replica.verifier().clone();
        Driver {
            actor,
            verifier,
            store,
            transport,
            shared,
            tick,
            genesis,
            blocks: None,
            submitted_at: HashMap::new(),
            published: Instant::now(),
            phases: Default::default(),
            view_seen: (0, false),
            drain: Default::default(),
        }
    }

    /// Serves block requests on `server`'s thread instead of the driver's.
    pub fn with_block_server(mut self, server: crate::block_server::Requests) -> Driver {
        self.blocks = Some(server);
        self
    }

    /// Runs until a Shutdown event or until every sender is gone. A failed disk write stops
    /// the replica: it must not vote on what it could not make durable.
    pub fn run(mut self, events: Receiver<Event>) -> Result<(), quire_chain::store::StoreError> {
        let mut next_tick = Instant::now() + self.tick;
        self.publish();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut round = Vec::new();
            match events.recv_timeout(wait) {
                Ok(Event::Shutdown) => return Ok(()),
                Ok(e) => round.push(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            while round.len() < EVENTS_PER_ROUND {
                match events.try_recv() {
                    Ok(Event::Shutdown) => return Ok(()),
                    Ok(e) => round.push(e),
                    Err(_) => break,
                }
            }
            let mut outputs = Vec::new();
            for event in round {
                self.handle(event, &mut outputs);
            }
            let now = Instant::now();
            if now >= next_tick {
                outputs.extend(self.actor.step(Input::Tick { now_ms: now_ms() }));
                // After a long stall, do not replay every missed tick in a burst.
                next_tick = (next_tick + self.tick).max(now);
            }
            self.carry_out(outputs)?;
            self.publish_prepared();
            self.log_view_change();
            if let Some(d) = self.actor.replica.diverged() {
                self.rebuild(d)?;
            }
            self.shared.watermarks.set(self.actor.replica.watermarks());
            self.publish_mempool();
            if self.published.elapsed() >= Duration::from_millis(50) {
                self.publish();
            }
        }
    }

    fn handle(&mut self, event: Event, outputs: &mut Vec<Output>) {
        match event {
            Event::Verified { from: _, verified } => {
                self.shared.metrics.received(verified.message().kind());
                outputs.extend(self.actor.step(Input::Message(verified)));
            }
            Event::Rejected { from, reject } => {
                tracing::debug!(from, reason = reject.name(), "dropped a frame");
                self.shared.metrics.ingress_dropped(from, reject.name());
                self.actor.replica.note_rejected(reject, Some(from));
            }
            Event::Requests {
                txs,
                received,
                reply,
            } => {
                let count = txs.len();
                let ids: Vec<TxId> = txs.iter().map(|tx| tx.id()).collect();
                outputs.extend(self.actor.step(Input::Requests(txs)));
                let mut admissions = self.actor.replica.take_admissions();
                // A behaviour that kept the requests from the core answers as if it took them.
                admissions.resize(count, Ok(()));
                if self.submitted_at.len() < LATENCY_TRACKED_MAX {
                    for (id, admitted) in ids.iter().zip(&admissions) {
                        if admitted.is_ok() {
                            self.submitted_at.entry(*id).or_insert(received);
                        }
                    }
                }
                // Published before the answer: the answer gives back the submission's claim
                // on the pool's room (`pool_room`), and a size published only at the end of
                // the round (after its synced write) let other submissions claim the same
                // room meanwhile, have their signatures checked, and be refused as full.
                self.publish_mempool();
                let _ = reply.send(admissions);
            }
            Event::Screen { txs, reply } => {
                let _ = reply.send(self.actor.replica.screen(&txs));
            }
            Event::Account { address, reply } => {
                let (account, proof) = self.actor.replica.prove_account(&address);
                let _ = reply.send((*self.actor.replica.head(), account, proof));
            }
            Event::Pending { id, reply } => {
                let _ = reply.send(self.actor.replica.is_pending(&id));
            }
            Event::SetBehaviour {
                behaviour,
                colluders,
            } => {
                tracing::warn!(
                    behaviour = behaviour.name(),
                    ?colluders,
                    "behaviour switched"
                );
                self.actor.set_behaviour(behaviour);
                self.actor.set_colluders(colluders);
                self.publish();
            }
            Event::Pow(_) | Event::Shutdown => {}
        }
    }

    /// What the replica has prepared after its head, when that changed: after `carry_out`, so
    /// the prepared certificate it stands for is durable before anyone hears of it.
    fn publish_prepared(&self) {
        let next = self.actor.replica.prepared_next();
        let key = |p: &Option<quire_consensus::PreparedNext>| {
            p.as_ref().map(|p| (p.height, p.view, p.digest, p.parent))
        };
        self.shared.prepared.send_if_modified(|published| {
            if key(published) == key(&next) {
                return false;
            }
            *published = next;
            true
        });
    }

    /// The mempool's size and pressure, for client RPC's admission (`rpc_server::submit`).
    fn publish_mempool(&mut self) {
        let r = &self.actor.replica;
        let queued = r.mempool_len() as u64;
        // Backlogged means proposable work waiting: a pool of early transfers whose
        // predecessors never came measured a network that executes nothing as one that can do
        // nothing, and the limit fell to its floor.
        let in_order = r.mempool_in_order() as u64;
        let params = r.params();
        self.drain.observe(
            Instant::now(),
            r.stats().txs_executed,
            in_order,
            params.batch_txs_max as u64,
        );
        self.shared.admission_limit.store(
            self.drain.limit(params.mempool_max as u64),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.shared
            .mempool_len
            .store(queued, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .mempool_in_order
            .store(in_order, std::sync::atomic::Ordering::Relaxed);
        self.shared.mempool_pressure.store(
            self.actor.replica.mempool_under_pressure(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// One line per view change started and per view entered, with the height it happened
    /// at: a chaos run's stalls are read from these.
    fn log_view_change(&mut self) {
        let r = &self.actor.replica;
        let now = (r.view(), r.is_changing_view());
        if now == self.view_seen {
            return;
        }
        self.view_seen = now;
        let height = r.head().height;
        let stats = r.stats();
        if now.1 {
            tracing::info!(
                view = now.0,
                height,
                rotations = stats.rotations,
                "view change started"
            );
        } else {
            tracing::info!(view = now.0, primary = r.primary(), height, "entered view");
        }
    }

    /// Persist, then send, then commit: through the executor the simulator uses too.
    fn carry_out(&mut self, outputs: Vec<Output>) -> Result<(), quire_chain::store::StoreError> {
        let now = Instant::now();
        let executed = self
            .phases
            .round(&outputs, &self.actor.replica, &self.shared.metrics, now);
        let mut outbox = CountingOutbox {
            transport: self.transport.as_ref(),
            metrics: &self.shared.metrics,
            me: self.actor.replica.id(),
            n: self.verifier.validators.n() as u32,
            blocks: self.blocks.as_ref(),
            block_credits: &self.shared.block_credits,
        };
        let committed = exec::carry_out(&self.actor.replica, &*self.store, &mut outbox, outputs)?;
        self.phases
            .durable(executed.len(), &self.shared.metrics, now);
        self.committed(&committed);
        Ok(())
    }

    /// This replica's chain differs from a checkpoint 2f+1 replicas certified: its state is
    /// wrong (a corrupted disk, a bug). It has stopped signing; now it says so, forgets its chain
    /// (keeping its votes, so it never contradicts one) and starts again from the genesis,
    /// fetching and re-executing the certified chain from its peers.
    fn rebuild(
        &mut self,
        d: quire_consensus::Divergence,
    ) -> Result<(), quire_chain::store::StoreError> {
        tracing::error!(
            height = d.height,
            ours = %d.ours,
            certified = %d.certified,
            "DIVERGED: this replica's block differs from the one 2f+1 replicas certified; \
             it stops signing, discards its chain and recovers by state transfer"
        );
        self.shared.metrics.diverged(d.height, d.ours, d.certified);
        self.store.reset_chain(&self.genesis)?;
        self.shared.height.send_replace(0);
        let durable = quire_consensus::Durable::read(&*self.store, self.genesis.chain_id())?;
        self.actor.replica.restart_from(durable).map_err(|e| {
            quire_chain::store::StoreError::Corrupt(format!(
                "cannot restart the core after a divergence: {e}"
            ))
        })?;
        self.publish();
        Ok(())
    }

    fn committed(&mut self, blocks: &[Executed]) {
        if let Some(last) = blocks.last() {
            self.shared
                .height
                .send_replace(last.record.block.header.height);
        }
        let now = Instant::now();
        for executed in blocks {
            let block = &executed.record.block;
            self.shared.metrics.block(block.txs.len());
            for tx in &block.txs {
                if let Some(at) = self.submitted_at.remove(&tx.id()) {
                    self.shared
                        .metrics
                        .commit_latency(now.duration_since(at).as_secs_f64());
                }
            }
            tracing::debug!(
                height = block.header.height,
                txs = block.txs.len(),
                "committed"
            );
        }
    }

    fn publish(&mut self) {
        self.published = Instant::now();
        let r = &self.actor.replica;
        let (commit_ticks, batch_timeout_ticks) = r.batch_timing();
        self.shared.metrics.set_replica(ReplicaState {
            commit_ticks,
            batch_timeout_ticks,
            view: r.view(),
            changing_view: r.is_changing_view(),
            height: r.last_executed(),
            stable_checkpoint: r.stable_checkpoint().seq,
            mempool: r.mempool_len() as u64,
            admission_limit: self
                .shared
                .admission_limit
                .load(std::sync::atomic::Ordering::Relaxed),
            primary: r.primary(),
            behaviour: self.actor.behaviour().name().to_string(),
            stats: r.stats().clone(),
            describe: r.describe(),
        });
        if let Ok(mut s) = self.shared.stable.lock() {
            *s = Some(r.stable_checkpoint().clone());
        }
        if let Ok(mut h) = self.shared.head_hash.lock() {
            *h = r.head().hash();
        }
    }
}
