//! A small driver over the simulator, so that scenario tests read as a few verbs: submit
//! transfers, isolate a replica, make the primary misbehave, run, check.

#![allow(dead_code)]

use quire_chain::testkit::TestNet;
use quire_consensus::{Behaviour, Durable, Params, Replica, Verifier};
use quire_sim::workload::Target;
use quire_sim::{Choice, Sim, SimConfig};

/// Replica `id` of `net` with `params`, on a fresh store (only the genesis), outside any
/// simulation: for tests that step one replica by hand.
pub fn fresh_replica(net: &TestNet, id: u32, params: Params) -> Replica {
    let durable = Durable::genesis(&net.genesis);
    Replica::recover(
        id,
        net.validator_keys[id as usize].clone(),
        Verifier::new(&net.genesis),
        params,
        durable,
    )
    .unwrap()
}

pub struct Cluster {
    pub sim: Sim,
    nonces: Vec<u64>,
    next_sender: usize,
}

impl Cluster {
    /// `n` honest replicas on a network that delivers everything in one tick; no background load.
    pub fn new(n: usize) -> Cluster {
        Self::with(n, |_| {})
    }

    pub fn with(n: usize, tweak: impl FnOnce(&mut SimConfig)) -> Cluster {
        let mut cfg = SimConfig::new(n, 0, Choice::One(Behaviour::Honest), 7).quiet();
        cfg.load_per_mille = 0;
        cfg.ticks = u64::MAX;
        cfg.heal_tick = u64::MAX;
        tweak(&mut cfg);
        let accounts = cfg.accounts;
        Cluster {
            sim: Sim::new(cfg),
            nonces: vec![0; accounts],
            next_sender: 0,
        }
    }

    /// Sends `count` valid transfers of 1 unit, round-robin over the accounts, to `target`.
    pub fn submit(&mut self, count: usize, target: Target) {
        let accounts = self.nonces.len();
        for _ in 0..count {
            let from = self.next_sender % accounts;
            self.next_sender += 1;
            let tx = self
                .sim
                .net
                .transfer(from, (from + 1) % accounts, 1, self.nonces[from]);
            self.nonces[from] += 1;
            self.sim.submit(target, tx);
        }
    }

    pub fn submit_to_all(&mut self, count: usize) {
        self.submit(count, Target::All);
    }

    pub fn run(&mut self, ticks: u64) {
        self.sim.run_for(ticks);
        self.sim.check_blame();
        if let Some((step, tick, v)) = self.sim.violation() {
            panic!("violation at step {step}, tick {tick}: {v}");
        }
    }

    pub fn isolate(&mut self, i: u32) {
        self.sim.isolated.insert(i);
    }

    pub fn heal(&mut self) {
        self.sim.isolated.clear();
    }

    pub fn crash(&mut self, i: u32) {
        self.sim.crash(i);
    }

    pub fn restart(&mut self, i: u32) {
        self.sim.restart(i);
    }

    pub fn make(&mut self, i: u32, behaviour: Behaviour) {
        self.sim.make_faulty(i, behaviour);
    }

    /// Makes `replicas` faulty with `behaviour`, working together.
    pub fn collude(&mut self, replicas: &[u32], behaviour: Behaviour) {
        for i in replicas {
            self.make(*i, behaviour);
            if let Some(a) = self.sim.actors[*i as usize].as_mut() {
                a.set_colluders(replicas.iter().copied().collect());
            }
        }
    }

    pub fn height(&self, i: u32) -> u64 {
        self.sim.replica(i).map_or(0, |r| r.last_executed())
    }

    pub fn view(&self, i: u32) -> u64 {
        self.sim.replica(i).map_or(0, |r| r.view())
    }

    pub fn honest(&self) -> Vec<u32> {
        (0..self.sim.actors.len() as u32)
            .filter(|i| self.sim.honest(*i))
            .collect()
    }

    /// Every honest replica has executed exactly `height` blocks.
    pub fn assert_all_at(&self, height: u64) {
        for i in self.honest() {
            assert_eq!(self.height(i), height, "replica {i}");
        }
    }

    /// The transfers submitted so far have all executed (each sender's nonce caught up).
    pub fn assert_all_executed(&self) {
        let ledger = self.sim.checker.ledger();
        for (a, nonce) in self.nonces.iter().enumerate() {
            let address = self.sim.net.account_keys[a].address();
            assert_eq!(ledger.account(&address).nonce, *nonce, "account {a}");
        }
    }

    /// The agreed chain's height.
    pub fn agreed_height(&self) -> u64 {
        self.sim.checker.height()
    }
}
