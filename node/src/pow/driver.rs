//! The proof-of-work driver: one thread that owns the replica's [`PowChain`], feeds it blocks
//! from peers and from its miner, makes every head change durable (one synced RocksDB batch)
//! before it announces anything, keeps the mempool in step with the head, and hands the miner a
//! fresh template when the head or the mempool changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quire_chain::codec::{Decode, Encode};
use quire_chain::pow::{Change, Mempool, PowChain, PowError, Received};
use quire_chain::store::{Store, StoreError};
use quire_chain::{Block, Hash, ReplicaId, TxId};
use quire_rocks::RocksStore;

use super::double_spend::{Decision, Ended, Order, Race};
use super::message::{BLOCKS_PER_REPLY_MAX, PowMessage, TXS_MAX};
use super::miner::Miner;
use super::{PowBehaviour, PowEvent};
use crate::driver::{Event, Shared, Transport};
use crate::metrics::ReplicaState;
use quire_consensus::Admission;
use quire_consensus::mempool::Refusal as MempoolRefusal;

/// What the HTTP layer reads: this mode's metrics and the recent block tree
/// (`GET /admin/pow/tree`), rendered by the driver.
#[derive(Default)]
pub struct PowShared {
    pub metrics: Mutex<String>,
    pub tree: Mutex<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const TIP_EVERY: Duration = Duration::from_millis(1000);
const TEMPLATE_EVERY: Duration = Duration::from_millis(250);
const FETCH_EVERY: Duration = Duration::from_millis(200);
const LATENCY_TRACKED_MAX: usize = 500_000;

/// Eyal & Sirer's selfish pool, by heights: its unpublished blocks and the public chain's
/// height as it knows it.
#[derive(Default)]
struct Selfish {
    unpublished: Vec<Block>,
    branch_len: u64,
}

/// The `double-spend` behaviour: waiting for the payment, racing, or done.
#[derive(Default)]
enum DoubleSpend {
    #[default]
    Off,
    Armed(Box<Order>),
    Racing(Box<Race>),
    Done(Ended),
}

#[derive(Default)]
struct Counters {
    mined: u64,
    double_spend_races: u64,
    double_spend_released: u64,
    double_spend_given_up: u64,
    withheld: u64,
    frames_refused: BTreeMap<&'static str, u64>,
    false_work_claims: u64,
    blocks_served: u64,
}

pub struct PowDriver {
    id: ReplicaId,
    chain: PowChain,
    store: Arc<RocksStore>,
    mempool: Mempool,
    transport: Arc<dyn Transport>,
    shared: Arc<Shared>,
    pow_shared: Arc<PowShared>,
    miner: Arc<Miner>,
    behaviour: PowBehaviour,
    selfish: Selfish,
    double_spend: DoubleSpend,
    /// The public chain's height, as far as this replica knows: what others mined or it published.
    public_height: u64,
    template_dirty: bool,
    template_at: Instant,
    tip_at: Instant,
    fetched_at: HashMap<ReplicaId, Instant>,
    submitted_at: HashMap<TxId, Instant>,
    counters: Counters,
    published: Instant,
    mempool_max: usize,
    relay_buffer: Vec<quire_chain::Transaction>,
}

impl PowDriver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ReplicaId,
        chain: PowChain,
        store: Arc<RocksStore>,
        transport: Arc<dyn Transport>,
        shared: Arc<Shared>,
        pow_shared: Arc<PowShared>,
        miner: Arc<Miner>,
        mempool_max: usize,
    ) -> PowDriver {
        let public_height = chain.head().height;
        PowDriver {
            id,
            chain,
            store,
            mempool: Mempool::new(mempool_max),
            transport,
            shared,
            pow_shared,
            miner,
            behaviour: PowBehaviour::Honest,
            selfish: Selfish::default(),
            double_spend: DoubleSpend::Off,
            public_height,
            template_dirty: true,
            template_at: Instant::now(),
            tip_at: Instant::now(),
            fetched_at: HashMap::new(),
            submitted_at: HashMap::new(),
            counters: Counters::default(),
            published: Instant::now(),
            mempool_max,
            relay_buffer: Vec::new(),
        }
    }

    /// Runs until Shutdown or until every sender is gone. A failed write stops the replica.
    pub fn run(mut self, events: Receiver<Event>) -> Result<(), StoreError> {
        self.publish();
        loop {
            match events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Shutdown) => break,
                Ok(e) => self.handle(e)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for _ in 0..256 {
                match events.try_recv() {
                    Ok(Event::Shutdown) => {
                        self.miner.stop();
                        return Ok(());
                    }
                    Ok(e) => self.handle(e)?,
                    Err(_) => break,
                }
            }
            self.housekeeping();
        }
        self.miner.stop();
        Ok(())
    }

    fn housekeeping(&mut self) {
        self.flush_relay();
        if self.template_dirty && self.template_at.elapsed() >= TEMPLATE_EVERY
            || self.template_at.elapsed() >= Duration::from_secs(2)
        {
            self.refresh_template();
        }
        if self.tip_at.elapsed() >= TIP_EVERY {
            self.tip_at = Instant::now();
            if self.behaviour == PowBehaviour::Honest
                || self.behaviour == PowBehaviour::DoubleSpend && !self.racing()
            {
                let head = *self.chain.head();
                let work = work_hash(self.chain.head_work());
                let tip = PowMessage::Tip {
                    height: head.height,
                    hash: head.hash(),
                    work,
                };
                self.transport.broadcast(Arc::new(tip.to_bytes()));
            }
        }
        if self.published.elapsed() >= Duration::from_millis(200) {
            self.publish();
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), StoreError> {
        match event {
            Event::Pow(PowEvent::Frame { from, bytes }) => match PowMessage::from_bytes(&bytes) {
                Ok(message) => self.on_message(from, message)?,
                Err(e) => {
                    tracing::debug!(from, error = %e, "dropped a malformed frame");
                    *self.counters.frames_refused.entry("malformed").or_default() += 1;
                }
            },
            Event::Requests {
                txs,
                received,
                reply,
            } => {
                let mut answers = Vec::with_capacity(txs.len());
                for tx in txs {
                    let answer = self.admit(tx.clone(), received);
                    if answer.is_ok() {
                        self.relay(tx);
                    }
                    answers.push(answer);
                }
                let _ = reply.send(answers);
            }
            Event::Verified { .. } | Event::Rejected { .. } => {}
            // Never under pressure here (nothing sets it): nothing is screened out.
            Event::Screen { txs, reply } => {
                let _ = reply.send(vec![None; txs.len()]);
            }
            Event::Account { address, reply } => {
                let head = *self.chain.head();
                let (account, proof) = self.chain.ledger_mut().prove(&address);
                let _ = reply.send((head, account, proof));
            }
            Event::Pending { id, reply } => {
                let _ = reply.send(self.mempool.contains(&id));
            }
            Event::SetBehaviour { behaviour, .. } => {
                tracing::warn!(
                    behaviour = behaviour.name(),
                    "a PBFT behaviour on a proof-of-work replica: ignored"
                );
            }
            Event::Pow(PowEvent::SetBehaviour(b)) => {
                tracing::warn!(behaviour = b.name(), "behaviour switched");
                if self.behaviour == PowBehaviour::SelfishMine && b != PowBehaviour::SelfishMine {
                    self.publish_up_to(u64::MAX);
                }
                self.end_race(false)?;
                self.double_spend = DoubleSpend::Off;
                self.behaviour = b;
                self.publish();
            }
            Event::Pow(PowEvent::DoubleSpend(order)) => self.arm(*order)?,
            Event::Pow(PowEvent::SetHashRate(rate)) => {
                tracing::warn!(rate, "hash rate set");
                self.miner.set_rate(rate);
            }
            Event::Pow(PowEvent::Mined(block)) => self.on_mined(*block)?,
            Event::Shutdown => {}
        }
        Ok(())
    }

    /// The mempool's truthful answer to one client transaction.
    fn admit(&mut self, tx: quire_chain::Transaction, received: Instant) -> Admission {
        let id = tx.id();
        if self.mempool.contains(&id) {
            return Err(MempoolRefusal::Duplicate);
        }
        if let Some(t) = tx.as_transfer() {
            let next = self.chain.ledger().account(&t.transfer.from).nonce;
            if t.transfer.nonce < next {
                return Err(MempoolRefusal::StaleNonce { expected: next });
            }
        }
        if self.mempool.len() >= self.mempool_max {
            return Err(MempoolRefusal::Full);
        }
        let nonce = tx.as_transfer().map(|t| t.transfer.nonce);
        let payment = self.is_payment(&tx);
        if !self.mempool.insert(self.chain.ledger(), tx) {
            // Another transfer already waits with this sender and nonce: this one is its
            // conflict, and the nonce is taken.
            return Err(MempoolRefusal::StaleNonce {
                expected: nonce.map_or(0, |n| n + 1),
            });
        }
        self.template_dirty = true;
        if self.submitted_at.len() < LATENCY_TRACKED_MAX {
            self.submitted_at.entry(id).or_insert(received);
        }
        if payment {
            self.start_race(id);
        }
        Ok(())
    }

    /// Client transactions admitted here go to every peer, so whoever mines next holds them.
    fn relay(&mut self, tx: quire_chain::Transaction) {
        if self.relay_buffer.len() < TXS_MAX {
            self.relay_buffer.push(tx);
        }
    }

    fn flush_relay(&mut self) {
        if self.relay_buffer.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.relay_buffer);
        self.transport
            .broadcast(Arc::new(PowMessage::Txs(txs).to_bytes()));
    }

    /// Transactions relayed by a peer: checked like a client's (strict signature, the genesis's
    /// payload rule, not stale), then into the mempool; what fails is counted and dropped.
    fn on_relayed(&mut self, txs: Vec<quire_chain::Transaction>) {
        let chain_id = self.chain.rules().chain_id;
        let raw_allowed = self.chain.rules().protocol.raw_payloads;
        for tx in txs {
            let ok = (raw_allowed || tx.as_transfer().is_some())
                && self.chain.verdicts().verify(&tx, &chain_id);
            if !ok {
                *self
                    .counters
                    .frames_refused
                    .entry("relayed_invalid_tx")
                    .or_default() += 1;
                continue;
            }
            let id = tx.id();
            let payment = self.is_payment(&tx);
            if self.mempool.len() < self.mempool_max && self.mempool.insert(self.chain.ledger(), tx)
            {
                self.template_dirty = true;
                if payment {
                    self.start_race(id);
                }
            }
        }
    }

    fn on_message(&mut self, from: ReplicaId, message: PowMessage) -> Result<(), StoreError> {
        match message {
            PowMessage::Block(block) => {
                self.on_block(from, *block)?;
            }
            PowMessage::Blocks(blocks) => {
                let full = blocks.len() >= BLOCKS_PER_REPLY_MAX;
                let mut orphaned = false;
                for block in blocks {
                    orphaned |= self.on_block(from, block)?;
                }
                if full || orphaned {
                    self.fetch_from(from, true);
                }
            }
            PowMessage::GetBlocks(_) if self.racing() => {
                // The private branch is the main chain here: serving it would publish it.
                let reply = PowMessage::Blocks(Vec::new());
                self.transport.send(from, Arc::new(reply.to_bytes()));
            }
            PowMessage::GetBlocks(locator) => {
                let blocks =
                    self.chain
                        .blocks_after(&*self.store, &locator, BLOCKS_PER_REPLY_MAX)?;
                self.counters.blocks_served += blocks.len() as u64;
                let reply = PowMessage::Blocks(blocks);
                self.transport.send(from, Arc::new(reply.to_bytes()));
            }
            PowMessage::Txs(txs) => self.on_relayed(txs),
            PowMessage::Tip { hash, .. } if self.race().is_some_and(|r| r.is_held(&hash)) => {}
            PowMessage::Tip { hash, work, .. } => {
                let claimed = num_bigint::BigUint::from_bytes_be(&work.0);
                match self.chain.work(&hash) {
                    Some(actual) => {
                        if claimed > *actual {
                            // It announced more work than its headers carry.
                            self.counters.false_work_claims += 1;
                        }
                    }
                    None => {
                        if claimed > *self.chain.head_work() {
                            self.fetch_from(from, false);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks `peer` for the blocks after our locator (at most every FETCH_EVERY unless `now`).
    fn fetch_from(&mut self, peer: ReplicaId, now: bool) {
        let due = self
            .fetched_at
            .get(&peer)
            .is_none_or(|at| at.elapsed() >= FETCH_EVERY);
        if !due && !now {
            return;
        }
        self.fetched_at.insert(peer, Instant::now());
        let request = PowMessage::GetBlocks(self.chain.locator());
        self.transport.send(peer, Arc::new(request.to_bytes()));
    }

    /// A block from a peer. Returns whether it was an orphan.
    fn on_block(&mut self, from: ReplicaId, block: Block) -> Result<bool, StoreError> {
        let block = match self.filter_public(from, block)? {
            Some(b) => b,
            None => return Ok(false),
        };
        let height = block.header.height;
        match self.receive(block)? {
            Some(Received::Orphan { .. }) => {
                self.fetch_from(from, false);
                Ok(true)
            }
            Some(Received::NewHead(_)) | Some(Received::Side) => {
                self.on_public_block(height);
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Receives a block through the chain and carries out a head change. `None`: refused.
    fn receive(&mut self, block: Block) -> Result<Option<Received>, StoreError> {
        match self.chain.receive(&*self.store, block, now_ms()) {
            Ok(received) => {
                match &received {
                    Received::NewHead(change) => self.apply(change)?,
                    Received::ReorgRefused { depth } => {
                        tracing::error!(depth, "a reorg deeper than the undo depth was refused");
                    }
                    _ => {}
                }
                Ok(Some(received))
            }
            Err(PowError::Refused(e)) => {
                tracing::debug!(reason = e.name(), "refused a block");
                Ok(None)
            }
            Err(PowError::Store(e)) => Err(e),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        }
    }

    /// Persists a head change, then brings the mempool and the miner up to date.
    fn apply(&mut self, change: &Change) -> Result<(), StoreError> {
        self.store.write_pow(&change.write)?;
        // RPC requests waiting for a block (WaitBlock) see the new head once it is durable.
        self.shared.height.send_replace(change.new_head.height);
        let now = Instant::now();
        let mut included = HashSet::new();
        for block in &change.applied {
            self.shared.metrics.block(block.txs.len());
            for tx in &block.txs {
                let id = tx.id();
                included.insert(id);
                if let Some(at) = self.submitted_at.remove(&id) {
                    self.shared
                        .metrics
                        .commit_latency(now.duration_since(at).as_secs_f64());
                }
            }
        }
        for tx in &change.returned {
            self.mempool.insert(self.chain.ledger(), tx.clone());
        }
        self.mempool.prune(self.chain.ledger(), &included);
        if change.depth() > 0 {
            tracing::info!(
                depth = change.depth(),
                old = change.old_head.height,
                new = change.new_head.height,
                returned = change.returned.len(),
                reversed = change.reversed.len(),
                "reorganised"
            );
        }
        self.template_dirty = true;
        self.refresh_template();
        Ok(())
    }

    fn on_mined(&mut self, block: Block) -> Result<(), StoreError> {
        let head_before = self.chain.head().height;
        if block.header.parent_hash != self.chain.head().hash() {
            // Mined on a head that has moved since: stale before it was born.
            self.refresh_template();
            return Ok(());
        }
        self.counters.mined += 1;
        if self.receive(block.clone())?.is_none() {
            return Ok(());
        }
        match self.behaviour {
            PowBehaviour::Honest => {
                self.public_height = self.public_height.max(block.header.height);
                self.broadcast_block(&block);
            }
            PowBehaviour::Withhold => self.counters.withheld += 1,
            PowBehaviour::DoubleSpend => match &mut self.double_spend {
                DoubleSpend::Racing(race) => {
                    race.on_private(block);
                    self.decide()?;
                }
                _ => {
                    self.public_height = self.public_height.max(block.header.height);
                    self.broadcast_block(&block);
                }
            },
            PowBehaviour::SelfishMine => {
                let lead_before = head_before as i64 - self.public_height as i64;
                self.selfish.unpublished.push(block);
                self.selfish.branch_len += 1;
                if lead_before == 0 && self.selfish.branch_len == 2 {
                    self.publish_up_to(u64::MAX);
                    self.selfish.branch_len = 0;
                }
            }
        }
        Ok(())
    }

    /// Eyal & Sirer's reaction to a block of the public chain.
    fn on_public_block(&mut self, height: u64) {
        if height <= self.public_height {
            return;
        }
        let lead_before = self.chain.head().height as i64 - self.public_height as i64;
        self.public_height = height;
        if self.behaviour != PowBehaviour::SelfishMine {
            return;
        }
        match lead_before {
            i64::MIN..=0 => {
                self.selfish.unpublished.clear();
                self.selfish.branch_len = 0;
            }
            1 => self.publish_up_to(height),
            2 => {
                self.publish_up_to(u64::MAX);
                self.selfish.branch_len = 0;
            }
            _ => self.publish_up_to(height),
        }
    }

    fn publish_up_to(&mut self, height: u64) {
        let at = self
            .selfish
            .unpublished
            .iter()
            .position(|b| b.header.height > height)
            .unwrap_or(self.selfish.unpublished.len());
        let rest = self.selfish.unpublished.split_off(at);
        let out = std::mem::replace(&mut self.selfish.unpublished, rest);
        for block in out {
            self.public_height = self.public_height.max(block.header.height);
            self.broadcast_block(&block);
        }
    }

    fn racing(&self) -> bool {
        matches!(self.double_spend, DoubleSpend::Racing(_))
    }

    fn race(&self) -> Option<&Race> {
        match &self.double_spend {
            DoubleSpend::Racing(race) => Some(race),
            _ => None,
        }
    }

    fn is_payment(&self, tx: &quire_chain::Transaction) -> bool {
        matches!(&self.double_spend, DoubleSpend::Armed(order) if order.is_payment(tx))
    }

    /// `double-spend`: from now on, the first transfer that conflicts with the order's starts
    /// the race (one already waiting here starts it at once).
    fn arm(&mut self, order: Order) -> Result<(), StoreError> {
        self.end_race(false)?;
        if self.behaviour == PowBehaviour::SelfishMine {
            self.publish_up_to(u64::MAX);
        }
        self.behaviour = PowBehaviour::DoubleSpend;
        let waiting = self
            .mempool
            .candidates(self.chain.ledger(), usize::MAX)
            .into_iter()
            .find(|t| order.is_payment(t))
            .map(|t| t.id());
        tracing::warn!(
            confirmations = order.confirmations,
            give_up_behind = order.give_up_behind,
            conflict = %order.conflict.id(),
            "double-spend armed: waiting for the payment"
        );
        self.double_spend = DoubleSpend::Armed(Box::new(order));
        if let Some(id) = waiting {
            self.start_race(id);
        }
        self.publish();
        Ok(())
    }

    /// The payment is out: fork at the head, with the conflicting transfer in the first
    /// private block — if it applies there (else there is nothing to race for).
    fn start_race(&mut self, payment: TxId) {
        let DoubleSpend::Armed(order) = std::mem::take(&mut self.double_spend) else {
            return;
        };
        let head = *self.chain.head();
        let chain_id = self.chain.rules().chain_id;
        let ok = self.chain.verdicts().verify(&order.conflict, &chain_id);
        let mut trial = self.chain.ledger().clone();
        let (outcomes, _) = trial.apply(std::slice::from_ref(&order.conflict), &[ok]);
        if let Some(quire_chain::tx::Outcome::Rejected(why)) = outcomes.first() {
            tracing::warn!(
                reason = ?why,
                height = head.height,
                "double-spend: the conflicting transfer does not apply at the head; not racing"
            );
            self.counters.double_spend_given_up += 1;
            self.double_spend = DoubleSpend::Done(Ended {
                released: false,
                private_blocks: 0,
                public_blocks: 0,
                payment_confirmations: 0,
            });
            return;
        }
        self.counters.double_spend_races += 1;
        tracing::warn!(
            height = head.height,
            payment = %payment,
            "double-spend: the payment is out; mining a private branch"
        );
        let fork_work = self.chain.head_work().clone();
        self.double_spend =
            DoubleSpend::Racing(Box::new(Race::new(*order, payment, &head, fork_work)));
        self.refresh_template();
    }

    /// The double-spender's input filter. Armed, a block holding the payment starts the race
    /// from its parent; racing, public blocks above the fork are held back from this replica's
    /// chain (so its miner stays on the private branch) and counted in the race. `None`: held.
    fn filter_public(
        &mut self,
        from: ReplicaId,
        block: Block,
    ) -> Result<Option<Block>, StoreError> {
        let payment = match &self.double_spend {
            DoubleSpend::Armed(order) => block.txs.iter().find(|t| order.is_payment(t)),
            _ => None,
        };
        if let Some(payment) = payment.map(|t| t.id()) {
            if block.header.parent_hash == self.chain.head().hash() {
                self.start_race(payment);
            } else {
                tracing::warn!(
                    "double-spend: the payment was mined on a chain this replica does not follow; too late"
                );
                self.double_spend = DoubleSpend::Done(Ended {
                    released: false,
                    private_blocks: 0,
                    public_blocks: 0,
                    payment_confirmations: 0,
                });
            }
        }
        let hash = block.hash();
        if !self.racing() || self.chain.tree().contains(&hash) {
            return Ok(Some(block));
        }
        if let Err(e) = self.chain.rules().check_alone(&block, &hash, now_ms()) {
            *self.counters.frames_refused.entry(e.name()).or_default() += 1;
            return Ok(None);
        }
        let chain = &self.chain;
        let known = |h: &Hash| Some((chain.header(h)?.height, chain.work(h)?.clone()));
        let linked = match &mut self.double_spend {
            DoubleSpend::Racing(race) => race.on_public(block, &known),
            _ => true,
        };
        if !linked {
            self.fetch_from(from, false);
        }
        self.decide()?;
        Ok(None)
    }

    fn decide(&mut self) -> Result<(), StoreError> {
        match self.race().map(Race::decide) {
            Some(Decision::Release) => self.end_race(true),
            Some(Decision::GiveUp) => self.end_race(false),
            Some(Decision::Hold) | None => Ok(()),
        }
    }

    /// Ends a race: publishes the private branch (`release`) or abandons it, then hands the
    /// held public blocks to the chain, which follows the most work as usual.
    fn end_race(&mut self, release: bool) -> Result<(), StoreError> {
        if !self.racing() {
            return Ok(());
        }
        let DoubleSpend::Racing(race) = std::mem::take(&mut self.double_spend) else {
            return Ok(());
        };
        let view = race.public_view();
        let ended = Ended {
            released: release,
            private_blocks: race.private_blocks(),
            public_blocks: view.height.saturating_sub(race.fork_height),
            payment_confirmations: view.payment_confirmations,
        };
        let fork_height = race.fork_height;
        let (private, held) = race.into_blocks();
        if release {
            self.counters.double_spend_released += 1;
            for block in &private {
                self.public_height = self.public_height.max(block.header.height);
                self.broadcast_block(block);
            }
        } else {
            self.counters.double_spend_given_up += 1;
        }
        tracing::warn!(
            released = release,
            fork_height,
            private_blocks = ended.private_blocks,
            public_blocks = ended.public_blocks,
            payment_confirmations = ended.payment_confirmations,
            "double-spend: race over"
        );
        self.double_spend = DoubleSpend::Done(ended);
        for block in held {
            let height = block.header.height;
            if let Some(Received::NewHead(_) | Received::Side) = self.receive(block)? {
                self.on_public_block(height);
            }
        }
        self.refresh_template();
        self.publish();
        Ok(())
    }

    fn broadcast_block(&self, block: &Block) {
        let message = PowMessage::Block(Box::new(block.clone()));
        self.transport.broadcast(Arc::new(message.to_bytes()));
    }

    fn refresh_template(&mut self) {
        self.template_dirty = false;
        self.template_at = Instant::now();
        let max = self.chain.rules().protocol.batch_txs_max as usize;
        let mut candidates = self.mempool.candidates(self.chain.ledger(), max);
        if let Some(race) = self.race() {
            // The conflicting transfer first (once on the branch, it no longer applies and is
            // skipped); never the payment.
            let payment = race.payment;
            candidates.retain(|t| t.id() != payment);
            candidates.insert(0, race.order.conflict.clone());
        }
        let template = self.chain.template(&candidates, self.id, now_ms());
        self.miner.set_job(Some(template));
    }

    fn publish(&mut self) {
        self.published = Instant::now();
        let head = *self.chain.head();
        self.shared.metrics.set_replica(ReplicaState {
            view: 0,
            changing_view: false,
            height: head.height,
            stable_checkpoint: 0,
            mempool: self.mempool.len() as u64,
            admission_limit: 0,
            primary: head.proposer,
            behaviour: self.behaviour.name().to_string(),
            stats: Default::default(),
            commit_ticks: 0,
            batch_timeout_ticks: 0,
            describe: format!(
                "pow height {} work {} tree {} orphans {}{}",
                head.height,
                self.chain.head_work(),
                self.chain.tree().len(),
                self.chain.orphans().len(),
                self.describe_double_spend()
            ),
        });
        if let Ok(mut h) = self.shared.head_hash.lock() {
            *h = head.hash();
        }
        if let Ok(mut m) = self.pow_shared.metrics.lock() {
            *m = self.render_metrics();
        }
        let tree = super::admin::render_tree(&self.chain, super::admin::TREE_WINDOW);
        if let Ok(mut t) = self.pow_shared.tree.lock() {
            *t = tree;
        }
    }

    fn describe_double_spend(&self) -> String {
        match &self.double_spend {
            DoubleSpend::Off => String::new(),
            DoubleSpend::Armed(_) => " double-spend armed".into(),
            DoubleSpend::Racing(race) => {
                let view = race.public_view();
                format!(
                    " double-spend racing from {}: private {} public tip {} payment confirmations {}",
                    race.fork_height,
                    race.private_blocks(),
                    view.height,
                    view.payment_confirmations
                )
            }
            DoubleSpend::Done(e) => format!(
                " double-spend {} (private {} public {})",
                if e.released { "released" } else { "given up" },
                e.private_blocks,
                e.public_blocks
            ),
        }
    }

    fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let s = &self.chain.stats;
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let head = self.chain.head().height;
        line(
            "quire_pow_height",
            "gauge",
            "Height of the main chain's head.",
            head.to_string(),
        );
        line(
            "quire_pow_head_work",
            "gauge",
            "Cumulative work of the head (expected hashes).",
            self.chain.head_work().to_string(),
        );
        line(
            "quire_pow_blocks_mined_total",
            "counter",
            "Blocks this replica's miner sealed.",
            self.counters.mined.to_string(),
        );
        line(
            "quire_pow_blocks_withheld_total",
            "counter",
            "Mined blocks never published (withhold).",
            self.counters.withheld.to_string(),
        );
        line(
            "quire_pow_blocks_connected_total",
            "counter",
            "Valid blocks linked into the block tree.",
            s.blocks_connected.to_string(),
        );
        line(
            "quire_pow_stale_blocks",
            "gauge",
            "Valid blocks linked but not on the main chain.",
            s.blocks_connected.saturating_sub(head).to_string(),
        );
        line(
            "quire_pow_reorgs_total",
            "counter",
            "Reorganisations (at least one block rolled back).",
            s.reorgs.to_string(),
        );
        line(
            "quire_pow_reorg_depth_max",
            "gauge",
            "Deepest reorganisation.",
            s.reorg_depth_max.to_string(),
        );
        line(
            "quire_pow_reorgs_refused_total",
            "counter",
            "Reorganisations deeper than the undo depth, refused.",
            s.reorgs_refused.to_string(),
        );
        line(
            "quire_pow_txs_returned_total",
            "counter",
            "Transactions of abandoned blocks returned to the mempool.",
            s.txs_returned.to_string(),
        );
        line(
            "quire_pow_txs_reincluded_total",
            "counter",
            "Transactions of abandoned blocks the new branch also holds.",
            s.txs_reincluded.to_string(),
        );
        line(
            "quire_pow_txs_reversed_total",
            "counter",
            "Transactions of abandoned blocks whose nonce the new branch spent otherwise.",
            s.txs_reversed.to_string(),
        );
        line(
            "quire_pow_orphans",
            "gauge",
            "Blocks waiting for their parent.",
            self.chain.orphans().len().to_string(),
        );
        line(
            "quire_pow_orphans_evicted_total",
            "counter",
            "Orphans pushed out of the bounded pool.",
            self.chain.orphans().evicted.to_string(),
        );
        line(
            "quire_pow_hashes_total",
            "counter",
            "Header hashes the miner computed.",
            self.miner.hashes().to_string(),
        );
        line(
            "quire_pow_hash_rate",
            "gauge",
            "The miner's set rate (hashes per second).",
            self.miner.rate().to_string(),
        );
        line(
            "quire_pow_false_work_claims_total",
            "counter",
            "Tips announcing more work than their headers carry.",
            self.counters.false_work_claims.to_string(),
        );
        line(
            "quire_pow_blocks_served_total",
            "counter",
            "Blocks sent to peers that asked.",
            self.counters.blocks_served.to_string(),
        );
        line(
            "quire_pow_double_spend_races_total",
            "counter",
            "Double-spend races started (the payment seen, a private branch begun).",
            self.counters.double_spend_races.to_string(),
        );
        line(
            "quire_pow_double_spend_released_total",
            "counter",
            "Double-spend private branches released with more work than the public chain.",
            self.counters.double_spend_released.to_string(),
        );
        line(
            "quire_pow_double_spend_given_up_total",
            "counter",
            "Double-spend races abandoned (too far behind, or nothing to race for).",
            self.counters.double_spend_given_up.to_string(),
        );
        line(
            "quire_pow_double_spend_private_blocks",
            "gauge",
            "Blocks of the double-spend private branch not yet published.",
            self.race().map_or(0, Race::private_blocks).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP quire_pow_reorg_depth Reorganisations by depth.\n# TYPE quire_pow_reorg_depth counter"
        );
        for (depth, count) in &s.reorg_depths {
            let _ = writeln!(out, "quire_pow_reorg_depth{{depth=\"{depth}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP quire_pow_blocks_refused_total Blocks refused, by reason.\n# TYPE quire_pow_blocks_refused_total counter"
        );
        for (reason, count) in &s.rejected {
            let _ = writeln!(
                out,
                "quire_pow_blocks_refused_total{{reason=\"{reason}\"}} {count}"
            );
        }
        for (reason, count) in &self.counters.frames_refused {
            let _ = writeln!(
                out,
                "quire_pow_blocks_refused_total{{reason=\"{reason}\"}} {count}"
            );
        }
        out
    }
}

/// Work as 32 big-endian bytes (saturating), for the Tip announcement.
fn work_hash(work: &num_bigint::BigUint) -> Hash {
    let bytes = work.to_bytes_be();
    let mut out = [0u8; 32];
    if bytes.len() > 32 {
        return Hash([0xff; 32]);
    }
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    Hash(out)
}
