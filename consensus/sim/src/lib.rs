//! A deterministic simulator: whole clusters of real [`Replica`]s (through [`Actor`]s, so with
//! their Byzantine behaviours) and real in-memory chain stores, driven from one seed in virtual
//! time over a network that drops, duplicates, delays and partitions, with honest replicas
//! crashing and restarting from what they persisted. After every step a [`Checker`] judges the
//! honest replicas; at the end it checks that the cluster made progress after the network healed.
//!
//! Every message goes through the same encoding and [`Verifier`] as on a real network, so the
//! boundary is exercised too. The same seed gives the same run, byte for byte.

pub mod checker;
pub mod disk;
pub mod network;
pub mod pow;
pub mod rng;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quire_chain::genesis::Protocol;
use quire_chain::store::Store;
use quire_chain::testkit::TestNet;
use quire_chain::{Hash, ReplicaId, Transaction};

pub use checker::{Checker, Violation};
pub use disk::{CrashPoint, Disk, Trigger};
pub use network::Faults;
use network::{Network, Packet};
use quire_consensus::exec::{self, Outbox};
use quire_consensus::message::{Kind, Message};
use quire_consensus::{Actor, Behaviour, Durable, Input, Params, Pressure, Replica, Verifier};
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
    /// Sign and verify with ed25519 rather than simulated signatures
    /// (`quire_chain::sim_signatures`): ~10× slower, for runs that want the real curve too.
    pub real_signatures: bool,
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
                batch_timeout_max_ticks: 20,
                pipeline_depth: 4,
                eager_depth: 2,
                view_timeout_ticks: 60,
                view_timeout_max_ticks: 240,
                status_interval_ticks: 20,
                retransmit_ticks: 40,
                fetch_timeout_ticks: 40,
                mempool_max: 10_000,
            },
            trace: false,
            real_signatures: false,
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
    /// Faults that went off at a replica's disk (crashes around a write, refused writes), and
    /// of those, how many hit a write of several blocks.
    pub disk_faults: u64,
    pub multi_block_disk_faults: u64,
    pub trace: Vec<String>,
    pub trace_hash: Hash,
}

pub struct Sim {
    cfg: SimConfig,
    pub net: TestNet,
    verifier: Verifier,
    rng: Rng,
    pub actors: Vec<Option<Actor>>,
    pub stores: Vec<Disk>,
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
    trace: Vec<String>,
    trace_hasher: Vec<u8>,
    violation: Option<(u64, u64, Violation)>,
    /// Scripted isolation for scenario tests: these replicas hear and reach no one.
    pub isolated: BTreeSet<ReplicaId>,
    /// Scripted loss for scenario tests: no frame of these kinds arrives anywhere.
    pub lost_kinds: BTreeSet<Kind>,
    /// Replicas rebuilt after their chain diverged from a certified checkpoint, in order.
    pub rebuilt: Vec<ReplicaId>,
    /// Frames delivered (read or not), and their bytes, by (from, to, the kind they claim).
    delivered: BTreeMap<(ReplicaId, ReplicaId, Kind), (u64, u64)>,
    /// Faults that went off at a disk (and of those, in a write of several blocks).
    disk_faults: u64,
    multi_block_disk_faults: u64,
}

const TICK_MS: u64 = 10;
/// Chance (per 10,000 writing steps of an honest replica) of a fault at the write.
const CRASH_PER_10K: u64 = 4;
/// The same, for a write of several blocks.
const MULTI_BLOCK_CRASH_PER_10K: u64 = 400;

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        // The whole cluster runs in this thread, so the choice of signatures is the thread's.
        if cfg.real_signatures {
            quire_chain::sim_signatures::disable_for_this_thread();
        } else {
            quire_chain::sim_signatures::enable_for_this_thread();
        }
        let net = TestNet::with_protocol(cfg.nodes, cfg.accounts, cfg.seed, cfg.protocol);
        let genesis = &net.genesis;
        let verifier = Verifier::new(genesis);
        let mut rng = Rng::new(cfg.seed);
        let stores: Vec<Disk> = (0..cfg.nodes).map(|_| Disk::new(genesis)).collect();
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
            trace: Vec::new(),
            trace_hasher: Vec::new(),
            violation: None,
            isolated: BTreeSet::new(),
            lost_kinds: BTreeSet::new(),
            rebuilt: Vec::new(),
            delivered: BTreeMap::new(),
            disk_faults: 0,
            multi_block_disk_faults: 0,
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
        let durable =
            Durable::read(store, self.verifier.chain_id).expect("the memory store cannot fail");
        let replica = Replica::recover(
            i,
            self.net.validator_keys[i as usize].clone(),
            self.verifier.clone(),
            self.cfg.params.clone(),
            durable,
        )
        .expect("a replica recovers from its own store");
        let mut actor = Actor::new(replica, self.cfg.seed);
        actor.set_pressure(Pressure::SIM);
        actor
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

    /// Replica `i`'s machine loses power: its process dies and its disk loses what was written
    /// since the last synced write (see [`Disk::power_cut`]). Returns the blocks lost.
    pub fn power_cut(&mut self, i: ReplicaId) -> u64 {
        self.actors[i as usize] = None;
        let lost = self.stores[i as usize].power_cut();
        self.note(format!("t={} power cut {i}: {lost} blocks lost", self.tick));
        lost
    }

    pub fn restart(&mut self, i: ReplicaId) {
        let actor = self.start(i);
        self.checker.restarted(i, self.stores[i as usize].head());
        self.actors[i as usize] = Some(actor);
        self.restart_at[i as usize] = None;
        self.note(format!("t={} restart {i}", self.tick));
    }

    /// What this simulation runs with (tests read its parameters to state their bounds).
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn replica(&self, i: ReplicaId) -> Option<&Replica> {
        self.actors[i as usize].as_ref().map(|a| &a.replica)
    }

    pub fn violation(&self) -> Option<&(u64, u64, Violation)> {
        self.violation.as_ref()
    }

    fn note(&mut self, line: String) {
        self.hash_into_trace(&[line.as_bytes()]);
        if self.cfg.trace {
            self.trace.push(line);
        }
    }

    /// A frequent event (a delivery): `compact` goes into the trace hash, and the line is only
    /// spelled out (prefixed with the tick) when the trace is kept.
    fn event(&mut self, compact: &[&[u8]], line: impl FnOnce() -> String) {
        self.hash_into_trace(compact);
        if self.cfg.trace {
            let line = format!("t={} {}", self.tick, line());
            self.trace.push(line);
        }
    }

    fn hash_into_trace(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.trace_hasher.extend_from_slice(part);
        }
        self.trace_hasher.push(b'\n');
        if self.trace_hasher.len() > 1 << 16 {
            let h = Hash::tagged("quire/sim-trace", &[&self.trace_hasher]);
            self.trace_hasher = h.0.to_vec();
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
    /// send, then commit (here: judge the committed blocks). A fault armed on the replica's disk
    /// may cut the step short; the process then dies, and restarts later from its disk.
    fn carry_out(&mut self, i: ReplicaId, outputs: Vec<quire_consensus::Output>) {
        if self.actors[i as usize].is_none() {
            return;
        }
        let random = self.maybe_arm_crash(i, &outputs);
        let Some(actor) = self.actors[i as usize].as_ref() else {
            return;
        };
        let disk = &self.stores[i as usize];
        let mut outbox = SimOutbox {
            from: i,
            nodes: self.cfg.nodes as u32,
            network: &mut self.network,
            rng: &mut self.rng,
            tick: self.tick,
            disk,
            frames_left: None,
            frames_sent: 0,
        };
        let blocks = outputs
            .iter()
            .filter(|o| matches!(o, quire_consensus::Output::Commit(_)))
            .count();
        let result = exec::carry_out(&actor.replica, disk, &mut outbox, outputs);
        let frames_sent = outbox.frames_sent;
        match (result, disk.take_fired()) {
            (Ok(committed), None) => self.judge(i, &committed),
            (Ok(committed), Some((point, _))) => {
                self.judge(i, &committed);
                self.crashed_at(i, point, random, blocks);
            }
            (Err(_), Some((point, durable))) => {
                // The executor's contract: a write that did not return sends nothing.
                if frames_sent > 0 {
                    self.fail(Violation::SentWithoutWrite {
                        replica: i,
                        frames: frames_sent,
                    });
                }
                self.judge(i, &durable);
                self.crashed_at(i, point, random, blocks);
            }
            (Err(e), None) => self.fail(Violation::StorageFailed {
                replica: i,
                reason: e.to_string(),
            }),
        }
    }

    /// Judges blocks that became durable at replica `i`.
    fn judge(&mut self, i: ReplicaId, committed: &[quire_chain::block::Executed]) {
        for executed in committed {
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

    /// Now and then, before the network heals, a step of an honest replica meets a fault at its
    /// write (more often when the write holds several blocks: those steps are rare and deserve
    /// it). At most one replica is down at a time. Returns whether a fault was armed.
    fn maybe_arm_crash(&mut self, i: ReplicaId, outputs: &[quire_consensus::Output]) -> bool {
        use quire_consensus::Output;
        if !self.cfg.crashes
            || self.tick >= self.cfg.heal_tick
            || !self.honest(i)
            || self.actors.iter().any(Option::is_none)
            || self.stores[i as usize].is_armed()
        {
            return false;
        }
        let blocks = outputs
            .iter()
            .filter(|o| matches!(o, Output::Commit(_)))
            .count();
        let writes = blocks > 0
            || outputs
                .iter()
                .any(|o| matches!(o, Output::Persist(_) | Output::PersistBatch(_)));
        if !writes {
            return false;
        }
        let per_10k = if blocks >= 2 {
            MULTI_BLOCK_CRASH_PER_10K
        } else {
            CRASH_PER_10K
        };
        if self.rng.below(10_000) >= per_10k {
            return false;
        }
        let frames: usize = outputs
            .iter()
            .map(|o| match o {
                Output::Broadcast(_) => self.cfg.nodes.saturating_sub(1),
                Output::Persist(_) | Output::PersistBatch(_) | Output::Commit(_) => 0,
                _ => 1,
            })
            .sum();
        let point = match self.rng.below(5) {
            0 => CrashPoint::MidWrite { lands: false },
            1 => CrashPoint::MidWrite { lands: true },
            2 => CrashPoint::AfterWrite,
            3 => CrashPoint::MidSends {
                frames: self.rng.below(frames as u64 + 1) as usize,
            },
            _ => CrashPoint::WriteFails,
        };
        self.stores[i as usize].arm(Trigger::NextWrite, point);
        true
    }

    /// Ends replica `i`'s process after a fault at its disk; one the simulator chose restarts
    /// after a while (a scripted one waits for the test).
    fn crashed_at(&mut self, i: ReplicaId, point: CrashPoint, random: bool, blocks: usize) {
        self.note(format!(
            "t={} r{i} {point} ({blocks} blocks in the write)",
            self.tick
        ));
        self.disk_faults += 1;
        if blocks >= 2 {
            self.multi_block_disk_faults += 1;
        }
        self.crash(i);
        if random {
            self.restart_at[i as usize] = Some(self.tick + self.rng.between(30, 300));
        }
    }

    /// Arms a fault on replica `i`'s disk for the next write `trigger` matches (scenario tests).
    pub fn inject(&mut self, i: ReplicaId, trigger: Trigger, point: CrashPoint) {
        self.stores[i as usize].arm(trigger, point);
    }

    fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.note(format!("t={} VIOLATION {v}", self.tick));
            self.violation = Some((self.steps, self.tick, v));
        }
    }

    fn deliver(&mut self, p: Packet) {
        let (from, to) = (p.from, p.to);
        let Some(actor) = self.actors[to as usize].as_ref() else {
            return;
        };
        if self.network.cut(from, to)
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
        {
            return;
        }
        let claimed = Kind::of_frame(&p.frame.bytes);
        if claimed.is_some_and(|k| self.lost_kinds.contains(&k)) {
            return;
        }
        if let Some(kind) = claimed {
            let counted = self.delivered.entry((from, to, kind)).or_default();
            counted.0 += 1;
            counted.1 += p.frame.bytes.len() as u64;
        }
        if claimed.is_some_and(|k| actor.behaviour().discards(k)) {
            return;
        }
        let (id, verdict) = p.frame.checked(&self.verifier);
        match verdict {
            Ok(v) => {
                let (kind, id) = (v.message().kind(), *id);
                let m = v.message();
                let compact = [from as u8, to as u8, kind as u8];
                self.event(
                    &[&self.tick.to_be_bytes(), &compact, &id.to_be_bytes()],
                    || {
                        let detail = match m {
                            Message::PrePrepare { proposal, .. } => {
                                let s = proposal.body.0;
                                format!(" v{} s{} {}", s.view, s.seq, s.digest.short())
                            }
                            _ => String::new(),
                        };
                        format!("{from}->{to} {} {id:016x}{detail}", kind.name())
                    },
                );
                let v = v.clone();
                self.step(to, Input::Message(v));
            }
            Err(reject) => {
                let reject = *reject;
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
            disk_faults: self.disk_faults,
            multi_block_disk_faults: self.multi_block_disk_faults,
            trace_hash: Hash::tagged("quire/sim-trace", &[&self.trace_hasher]),
            trace: self.trace,
            violation: self.violation,
        }
    }

    /// Frames claiming `kind` delivered from `from` to `to` (read or not), and their bytes.
    pub fn delivered(&self, from: ReplicaId, to: ReplicaId, kind: Kind) -> (u64, u64) {
        self.delivered
            .get(&(from, to, kind))
            .copied()
            .unwrap_or_default()
    }

    /// Messages still in flight (for tests).
    pub fn in_flight(&self) -> usize {
        self.network.in_flight()
    }
}

/// The simulated network as the executor's outbox: every frame becomes a packet — until the
/// process dies halfway through its sends (a [`CrashPoint::MidSends`] on its disk).
struct SimOutbox<'a> {
    from: ReplicaId,
    nodes: u32,
    network: &'a mut Network,
    rng: &'a mut Rng,
    tick: u64,
    disk: &'a Disk,
    /// Frames that may still leave (known at the first send, when the write is done).
    frames_left: Option<usize>,
    frames_sent: usize,
}

impl SimOutbox<'_> {
    fn send_frame(&mut self, to: ReplicaId, frame: &Arc<network::Frame>) {
        let left = self
            .frames_left
            .get_or_insert_with(|| self.disk.frames_before_crash().unwrap_or(usize::MAX));
        if *left == 0 {
            return;
        }
        *left -= 1;
        self.frames_sent += 1;
        let packet = Packet {
            from: self.from,
            to,
            frame: frame.clone(),
        };
        self.network.send(self.rng, self.tick, packet);
    }
}

impl Outbox for SimOutbox<'_> {
    fn send(&mut self, to: ReplicaId, _: Option<Kind>, bytes: Arc<Vec<u8>>) {
        let frame = network::Frame::new(self.from, bytes);
        self.send_frame(to, &frame);
    }

    fn broadcast(&mut self, _: Option<Kind>, bytes: Arc<Vec<u8>>) {
        let from = self.from;
        let frame = network::Frame::new(from, bytes);
        for to in (0..self.nodes).filter(|to| *to != from) {
            self.send_frame(to, &frame);
        }
    }
}

/// Runs one seed of `cfg`.
pub fn run(cfg: SimConfig) -> Report {
    Sim::new(cfg).run()
}
