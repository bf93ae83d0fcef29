//! A deterministic simulator: whole clusters of real [`Replica`]s (through [`Actor`]s, so with
//! their Byzantine behaviours) and real in-memory chain stores, driven from one seed in virtual
//! time over a network that drops, duplicates, delays and partitions, with honest replicas
//! crashing and restarting from what they persisted. After every step a [`Checker`] judges the
//! honest replicas; at the end it checks that the cluster made progress after the network healed.
//!
//! Every message goes through the same encoding and [`Verifier`] as on a real network, so the
//! boundary is exercised too. The same seed gives the same run, byte for byte.

pub mod checker;
pub mod network;
pub mod pow;
pub mod rng;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quire_chain::genesis::Protocol;
use quire_chain::store::{MemoryStore, Store};
use quire_chain::testkit::TestNet;
use quire_chain::{Hash, ReplicaId, Transaction};

pub use checker::{Checker, Violation};
pub use network::Faults;
use network::{Network, Packet};
use quire_consensus::exec::{self, Outbox};
use quire_consensus::message::{Kind, Message};
use quire_consensus::{
    Actor, Behaviour, Durable, Input, Params, Reject, Replica, Verified, Verifier,
};
use rng::Rng;
use workload::{Target, Workload};

/// Which behaviour the faulty replicas get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    One(Behaviour),
    /// Each faulty replica draws a behaviour, and draws again now and then.
    Mixed,
}

impl Choice {
    pub fn parse(s: &str) -> Result<Choice, String> {
        if s == "mixed" {
            Ok(Choice::Mixed)
        } else {
            Behaviour::parse(s).map(Choice::One)
        }
    }

    pub fn name(&self) -> String {
        match self {
            Choice::Mixed => "mixed".into(),
            Choice::One(b) => b.name().into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub faulty: usize,
    pub behaviour: Choice,
    pub seed: u64,
    pub ticks: u64,
    /// Network faults, partitions and crashes stop at this tick; what follows must make progress.
    pub heal_tick: u64,
    pub faults: Faults,
    pub partitions: bool,
    pub crashes: bool,
    pub accounts: usize,
    /// Chance per account per tick (‰) of a new transfer.
    pub load_per_mille: u64,
    /// The genesis's rules (the same for every replica).
    pub protocol: Protocol,
    /// Every replica's local parameters.
    pub params: Params,
    /// Keep the full trace (for replay and determinism checks).
    pub trace: bool,
}

impl SimConfig {
    pub fn new(nodes: usize, faulty: usize, behaviour: Choice, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            faulty,
            behaviour,
            seed,
            ticks: 2400,
            heal_tick: 1400,
            faults: Faults {
                drop_per_mille: 20,
                duplicate_per_mille: 20,
                delay_min_ticks: 1,
                delay_max_ticks: 6,
            },
            partitions: true,
            crashes: true,
            accounts: 12,
            load_per_mille: 15,
            // Raw payloads are allowed so that the workload orders some (benchmark networks do);
            // `submit` refuses them, as client RPC does, when a scenario forbids them.
            protocol: Protocol {
                batch_txs_max: 64,
                raw_payloads: true,
                checkpoint_interval: 8,
                log_window: 32,
                // Often enough that every seed goes through scheduled rotations too.
                rotation_blocks: 48,
                ..Protocol::default()
            },
            params: Params {
                batch_txs_max: 64,
                batch_timeout_ticks: 5,
                pipeline_depth: 4,
                view_timeout_ticks: 60,
                view_timeout_max_ticks: 240,
                status_interval_ticks: 20,
                retransmit_ticks: 40,
                fetch_timeout_ticks: 40,
                mempool_max: 10_000,
            },
            trace: false,
        }
    }

    /// A network that never misbehaves: for scenario tests that script their own faults.
    pub fn quiet(mut self) -> SimConfig {
        self.faults = Faults {
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            delay_min_ticks: 1,
            delay_max_ticks: 1,
        };
        self.partitions = false;
        self.crashes = false;
        self
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    /// The first violation, with the step and tick it happened at.
    pub violation: Option<(u64, u64, Violation)>,
    /// Executed height of each honest replica at the end.
    pub heights: Vec<u64>,
    pub faulty: Vec<(ReplicaId, Behaviour)>,
    pub max_view: u64,
    pub view_changes: u64,
    /// The longest run of view changes without progress at any honest replica.
    pub view_change_streak_max: u32,
    pub txs_submitted: u64,
    pub messages: u64,
    pub dropped: u64,
    pub steps: u64,
    pub trace: Vec<String>,
    pub trace_hash: Hash,
}

pub struct Sim {
    cfg: SimConfig,
    pub net: TestNet,
    verifier: Verifier,
    rng: Rng,
    pub actors: Vec<Option<Actor>>,
    pub stores: Vec<MemoryStore>,
    honest: Vec<bool>,
    network: Network,
    pub checker: Checker,
    workload: Workload,
    pub tick: u64,
    steps: u64,
    restart_at: Vec<Option<u64>>,
    partition_until: Option<u64>,
    /// The height the cluster had when the network healed.
    healed_height: Option<u64>,
    verify_cache: BTreeMap<(Hash, ReplicaId), Result<Verified, Reject>>,
    trace: Vec<String>,
    trace_hasher: Vec<u8>,
    violation: Option<(u64, u64, Violation)>,
    /// Scripted isolation for scenario tests: these replicas hear and reach no one.
    pub isolated: BTreeSet<ReplicaId>,
    /// Replicas rebuilt after their chain diverged from a certified checkpoint, in order.
    pub rebuilt: Vec<ReplicaId>,
}

const TICK_MS: u64 = 10;

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let net = TestNet::with_protocol(cfg.nodes, cfg.accounts, cfg.seed, cfg.protocol);
        let genesis = &net.genesis;
        let verifier = Verifier::new(genesis);
        let mut rng = Rng::new(cfg.seed);
        let stores: Vec<MemoryStore> = (0..cfg.nodes).map(|_| MemoryStore::new(genesis)).collect();
        let mut ids: Vec<ReplicaId> = (0..cfg.nodes as u32).collect();
        rng.shuffle(&mut ids);
        let faulty: BTreeSet<ReplicaId> =
            ids[..cfg.faulty.min(cfg.nodes)].iter().copied().collect();
        let mut sim = Sim {
            checker: Checker::new(genesis),
            workload: Workload::new(cfg.accounts, cfg.load_per_mille),
            network: Network::new(cfg.faults.clone()),
            honest: (0..cfg.nodes as u32)
                .map(|i| !faulty.contains(&i))
                .collect(),
            actors: Vec::new(),
            stores,
            verifier,
            rng,
            net,
            tick: 0,
            steps: 0,
            restart_at: vec![None; cfg.nodes],
            partition_until: None,
            healed_height: None,
            verify_cache: BTreeMap::new(),
            trace: Vec::new(),
            trace_hasher: Vec::new(),
            violation: None,
            isolated: BTreeSet::new(),
            rebuilt: Vec::new(),
            cfg,
        };
        for i in 0..sim.cfg.nodes as u32 {
            let actor = sim.start(i);
            sim.actors.push(Some(actor));
        }
        for i in faulty.iter().copied() {
            let behaviour = sim.draw_behaviour();
            if let Some(a) = sim.actors[i as usize].as_mut() {
                a.set_behaviour(behaviour);
                a.set_colluders(faulty.clone());
            }
        }
        sim
    }

    fn draw_behaviour(&mut self) -> Behaviour {
        match self.cfg.behaviour {
            Choice::One(b) => b,
            Choice::Mixed => {
                let faulty: Vec<Behaviour> = Behaviour::ALL[1..].to_vec();
                self.rng.pick(&faulty).unwrap_or(Behaviour::Silent)
            }
        }
    }

    /// Starts (or restarts) replica `i` from its store.
    fn start(&self, i: ReplicaId) -> Actor {
        let store = &self.stores[i as usize];
        let durable = Durable {
            head: store.head(),
            ledger: store
                .ledger(self.verifier.chain_id)
                .expect("the memory store cannot fail"),
            consensus: store
                .consensus_entries()
                .expect("the memory store cannot fail"),
        };
        let replica = Replica::recover(
            i,
            self.net.validator_keys[i as usize].clone(),
            self.verifier.clone(),
            self.cfg.params.clone(),
            durable,
        )
        .expect("a replica recovers from its own store");
        Actor::new(replica, self.cfg.seed)
    }

    pub fn honest(&self, i: ReplicaId) -> bool {
        self.honest[i as usize]
    }

    /// Makes replica `i` faulty with `behaviour` from now on (scenario tests).
    pub fn make_faulty(&mut self, i: ReplicaId, behaviour: Behaviour) {
        self.honest[i as usize] = false;
        if let Some(a) = self.actors[i as usize].as_mut() {
            a.set_behaviour(behaviour);
        }
    }

    pub fn crash(&mut self, i: ReplicaId) {
        self.actors[i as usize] = None;
        self.note(format!("t={} crash {i}", self.tick));
    }

    pub fn restart(&mut self, i: ReplicaId) {
        let actor = self.start(i);
        self.checker.restarted(i, self.stores[i as usize].head());
        self.actors[i as usize] = Some(actor);
        self.restart_at[i as usize] = None;
        self.note(format!("t={} restart {i}", self.tick));
    }

    pub fn replica(&self, i: ReplicaId) -> Option<&Replica> {
        self.actors[i as usize].as_ref().map(|a| &a.replica)
    }

    pub fn violation(&self) -> Option<&(u64, u64, Violation)> {
        self.violation.as_ref()
    }

    fn note(&mut self, line: String) {
        self.trace_hasher.extend_from_slice(line.as_bytes());
        self.trace_hasher.push(b'\n');
        if self.trace_hasher.len() > 1 << 16 {
            let h = Hash::tagged("quire/sim-trace", &[&self.trace_hasher]);
            self.trace_hasher = h.0.to_vec();
        }
        if self.cfg.trace {
            self.trace.push(line);
        }
    }

    /// Sends client transactions to replicas, as a client would: the replica checks signatures
    /// at its boundary.
    pub fn submit(&mut self, target: Target, tx: Transaction) {
        let targets: Vec<ReplicaId> = match target {
            Target::One(i) => vec![i],
            Target::All => (0..self.cfg.nodes as u32).collect(),
        };
        if !tx.verify_signature(&self.verifier.chain_id)
            || self
                .verifier
                .raw_allowed(std::slice::from_ref(&tx))
                .is_err()
        {
            return;
        }
        for i in targets {
            if self.actors[i as usize].is_some() && !self.isolated.contains(&i) {
                self.step(i, Input::Requests(vec![tx.clone()]));
            }
        }
    }

    fn step(&mut self, i: ReplicaId, input: Input) {
        let Some(actor) = self.actors[i as usize].as_mut() else {
            return;
        };
        self.steps += 1;
        let blamed_before: u64 = actor.replica.stats().misbehaviour.values().sum();
        // What the step was fed, kept cheap: it is spelled out only if the step blames someone.
        let what = match &input {
            Input::Message(m) => Ok((m.message().kind(), m.message().from())),
            Input::Requests(_) => Err("requests"),
            Input::Tick { .. } => Err("tick"),
        };
        let outputs = actor.step(input);
        let blamed_after: u64 = actor.replica.stats().misbehaviour.values().sum();
        if blamed_after > blamed_before {
            let what = what.map_or_else(str::to_string, |(kind, from)| {
                format!("{kind:?} from {from}")
            });
            let detail = format!(
                "t={} r{i} blames after {what}: {:?} | {}",
                self.tick,
                actor.replica.stats().misbehaviour,
                actor.replica.describe()
            );
            self.note(detail);
        }
        self.carry_out(i, outputs);
        let diverged = self.actors[i as usize]
            .as_ref()
            .and_then(|a| a.replica.diverged());
        if let Some(d) = diverged {
            self.rebuild(i, d);
        }
    }

    /// What the node does with a replica whose chain differs from a certified checkpoint: it
    /// forgets its chain (keeping its votes) and starts again, catching up by state transfer.
    fn rebuild(&mut self, i: ReplicaId, d: quire_consensus::Divergence) {
        self.note(format!(
            "t={} r{i} diverged at {}: ours {} certified {}; rebuilding",
            self.tick,
            d.height,
            d.ours.short(),
            d.certified.short()
        ));
        self.rebuilt.push(i);
        if let Err(e) = self.stores[i as usize].reset_chain(&self.net.genesis) {
            self.fail(Violation::StorageFailed {
                replica: i,
                reason: e.to_string(),
            });
            return;
        }
        self.restart(i);
    }

    /// Carries out a step as the node's driver does, through the same executor: persist, then
    /// send, then commit (here: judge the committed blocks).
    fn carry_out(&mut self, i: ReplicaId, outputs: Vec<quire_consensus::Output>) {
        let Some(actor) = self.actors[i as usize].as_ref() else {
            return;
        };
        let mut outbox = SimOutbox {
            from: i,
            nodes: self.cfg.nodes as u32,
            network: &mut self.network,
            rng: &mut self.rng,
            tick: self.tick,
        };
        let committed = match exec::carry_out(
            &actor.replica,
            &self.stores[i as usize],
            &mut outbox,
            outputs,
        ) {
            Ok(committed) => committed,
            Err(e) => {
                self.fail(Violation::StorageFailed {
                    replica: i,
                    reason: e.to_string(),
                });
                return;
            }
        };
        for executed in &committed {
            let h = executed.record.block.header;
            self.note(format!(
                "t={} commit r{i} h{} {}",
                self.tick,
                h.height,
                h.hash().short()
            ));
            if self.honest[i as usize]
                && let Err(v) = self.checker.on_commit(i, executed)
            {
                self.fail(v);
            }
        }
    }

    fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.note(format!("t={} VIOLATION {v}", self.tick));
            self.violation = Some((self.steps, self.tick, v));
        }
    }

    fn deliver(&mut self, p: Packet) {
        let (from, to) = (p.from, p.to);
        if self.actors[to as usize].is_none()
            || self.network.cut(from, to)
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
        {
            return;
        }
        let key = (Hash::tagged("quire/sim-packet", &[&p.bytes]), from);
        let verdict = match self.verify_cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                let v = self.verifier.decode(&p.bytes, Some(from));
                if self.verify_cache.len() > 50_000 {
                    self.verify_cache.clear();
                }
                self.verify_cache.insert(key, v.clone());
                v
            }
        };
        match verdict {
            Ok(v) => {
                let detail = match v.message() {
                    Message::PrePrepare { proposal, .. } => {
                        let s = proposal.body.0;
                        format!(" v{} s{} {}", s.view, s.seq, s.digest.short())
                    }
                    _ => String::new(),
                };
                self.note(format!(
                    "t={} {from}->{to} {} {}{detail}",
                    self.tick,
                    v.message().kind().name(),
                    key.0.short()
                ));
                self.step(to, Input::Message(v));
            }
            Err(reject) => {
                self.note(format!(
                    "t={} {from}->{to} rejected {}",
                    self.tick,
                    reject.name()
                ));
                if let Some(a) = self.actors[to as usize].as_mut() {
                    a.replica.note_rejected(reject, Some(from));
                }
            }
        }
    }

    fn random_faults(&mut self) {
        let t = self.tick;
        for i in 0..self.cfg.nodes {
            if self.restart_at[i].is_some_and(|at| at <= t) {
                self.restart(i as u32);
            }
        }
        if self.partition_until.is_some_and(|u| u <= t) {
            self.network.heal();
            self.partition_until = None;
            self.note(format!("t={t} heal"));
        }
        if self.cfg.partitions && self.partition_until.is_none() && self.rng.chance(3) {
            let mut ids: Vec<ReplicaId> = (0..self.cfg.nodes as u32).collect();
            self.rng.shuffle(&mut ids);
            let size = self.rng.between(1, self.cfg.nodes as u64 - 1) as usize;
            let group: BTreeSet<ReplicaId> = ids[..size].iter().copied().collect();
            self.note(format!("t={t} partition {group:?}"));
            self.network.partition(group);
            self.partition_until = Some(t + self.rng.between(50, 400));
        }
        let crashed = self.actors.iter().filter(|a| a.is_none()).count();
        if self.cfg.crashes && crashed == 0 && self.rng.chance(2) {
            let honest: Vec<u32> = (0..self.cfg.nodes as u32)
                .filter(|i| self.honest(*i))
                .collect();
            if let Some(i) = self.rng.pick(&honest) {
                self.crash(i);
                self.restart_at[i as usize] = Some(t + self.rng.between(30, 300));
            }
        }
    }

    fn heal(&mut self) {
        self.network.faulty = false;
        self.network.heal();
        self.partition_until = None;
        for i in 0..self.cfg.nodes {
            if self.actors[i].is_none() {
                self.restart(i as u32);
            }
        }
        let height = (0..self.cfg.nodes as u32)
            .filter(|i| self.honest(*i))
            .map(|i| self.checker.head_of(i))
            .max()
            .unwrap_or(0);
        self.healed_height = Some(height);
        self.note(format!("t={} network healed at height {height}", self.tick));
    }

    /// Advances the simulation by one tick.
    pub fn advance(&mut self) {
        self.tick += 1;
        let t = self.tick;
        if t == self.cfg.heal_tick {
            self.heal();
        } else if t < self.cfg.heal_tick {
            self.random_faults();
        }
        if self.cfg.behaviour == Choice::Mixed && t.is_multiple_of(500) {
            for i in 0..self.cfg.nodes as u32 {
                if !self.honest(i) {
                    let b = self.draw_behaviour();
                    if let Some(a) = self.actors[i as usize].as_mut() {
                        a.set_behaviour(b);
                    }
                }
            }
        }
        let requests = self.workload.tick(
            &mut self.rng,
            t,
            &self.net,
            self.checker.ledger(),
            self.cfg.nodes as u32,
        );
        for (target, tx) in requests {
            self.submit(target, tx);
        }
        while let Some(p) = self.network.pop_due(t) {
            self.deliver(p);
        }
        for i in 0..self.cfg.nodes as u32 {
            self.step(
                i,
                Input::Tick {
                    now_ms: t * TICK_MS,
                },
            );
        }
    }

    /// Runs `ticks` more ticks (stopping early at a violation).
    pub fn run_for(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.advance();
            if self.violation.is_some() {
                return;
            }
        }
    }

    /// Runs the configured scenario to the end and judges it.
    pub fn run(mut self) -> Report {
        let ticks = self.cfg.ticks;
        self.run_for(ticks);
        if self.violation.is_none() {
            self.check_progress();
        }
        if self.violation.is_none() {
            self.check_blame();
        }
        self.report()
    }

    /// Misbehaviour counters are evidence: an honest replica must never accuse an honest one.
    pub fn check_blame(&mut self) {
        for i in 0..self.cfg.nodes as u32 {
            if !self.honest(i) {
                continue;
            }
            let Some(r) = self.replica(i) else { continue };
            let false_blame = r
                .stats()
                .misbehaviour
                .keys()
                .find(|(_, culprit)| self.honest(*culprit))
                .copied();
            if let Some((kind, culprit)) = false_blame {
                self.fail(Violation::FalseBlame {
                    accuser: i,
                    culprit,
                    kind: kind.name(),
                });
                return;
            }
        }
    }

    fn check_progress(&mut self) {
        let Some(healed) = self.healed_height else {
            return;
        };
        let needed = healed + 1;
        for i in 0..self.cfg.nodes as u32 {
            let height = self.checker.head_of(i);
            if self.honest(i) && height < needed {
                self.fail(Violation::NoProgress {
                    replica: i,
                    height,
                    needed,
                });
                return;
            }
        }
    }

    pub fn report(mut self) -> Report {
        if self.violation.is_some() {
            for i in 0..self.cfg.nodes {
                if let Some(a) = &self.actors[i] {
                    let line = format!("final {} [{}]", a.replica.describe(), a.behaviour());
                    self.note(line);
                }
            }
        }
        let honest: Vec<u32> = (0..self.cfg.nodes as u32)
            .filter(|i| self.honest(*i))
            .collect();
        let replicas: Vec<&Replica> = honest.iter().filter_map(|i| self.replica(*i)).collect();
        Report {
            seed: self.cfg.seed,
            heights: honest.iter().map(|i| self.checker.head_of(*i)).collect(),
            faulty: (0..self.cfg.nodes as u32)
                .filter(|i| !self.honest(*i))
                .map(|i| {
                    let b = self.actors[i as usize]
                        .as_ref()
                        .map_or(Behaviour::Silent, |a| a.behaviour());
                    (i, b)
                })
                .collect(),
            max_view: replicas.iter().map(|r| r.view()).max().unwrap_or(0),
            view_changes: replicas.iter().map(|r| r.stats().view_changes).sum(),
            view_change_streak_max: replicas
                .iter()
                .map(|r| r.stats().view_change_streak_max)
                .max()
                .unwrap_or(0),
            txs_submitted: self.workload.submitted,
            messages: self.network.sent,
            dropped: self.network.dropped,
            steps: self.steps,
            trace_hash: Hash::tagged("quire/sim-trace", &[&self.trace_hasher]),
            trace: self.trace,
            violation: self.violation,
        }
    }

    /// Messages still in flight (for tests).
    pub fn in_flight(&self) -> usize {
        self.network.in_flight()
    }
}

/// The simulated network as the executor's outbox: every frame becomes a packet.
struct SimOutbox<'a> {
    from: ReplicaId,
    nodes: u32,
    network: &'a mut Network,
    rng: &'a mut Rng,
    tick: u64,
}

impl Outbox for SimOutbox<'_> {
    fn send(&mut self, to: ReplicaId, _: Option<Kind>, bytes: Arc<Vec<u8>>) {
        let packet = Packet {
            from: self.from,
            to,
            bytes,
        };
        self.network.send(self.rng, self.tick, packet);
    }

    fn broadcast(&mut self, kind: Option<Kind>, bytes: Arc<Vec<u8>>) {
        let from = self.from;
        for to in (0..self.nodes).filter(|to| *to != from) {
            self.send(to, kind, bytes.clone());
        }
    }
}

/// Runs one seed of `cfg`.
pub fn run(cfg: SimConfig) -> Report {
    Sim::new(cfg).run()
}
