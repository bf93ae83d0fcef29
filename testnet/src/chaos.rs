//! `quire-testnet chaos --seed S --minutes M`: a seeded random fault timeline, written out as a
//! scenario file (so a failing seed replays with `quire-testnet run`) and run under a steady load.
//!
//! The timeline is a string of single-replica faults separated by quiet gaps: kill then restart,
//! pause then resume (SIGSTOP/SIGCONT), isolate then heal, delay then heal, and Byzantine
//! toggles. One fault at a time, so never more than f = 1 replica is faulty or down at any
//! moment (n = 4); the Byzantine toggles all go to one replica the seed picks, the one replica
//! the safety check does not judge. The report says, for every fault, how long commits stopped.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use quire_consensus::Behaviour;
use quire_sim::rng::Rng;

use crate::scenario::Plan;
use crate::scenario::report::Judgement;
use crate::scenario::run::Record;
use crate::scenario::spec::Action;

/// What a chaos timeline is made of.
#[derive(Clone, Debug)]
pub struct ChaosPlan {
    pub seed: u64,
    pub nodes: usize,
    pub duration_s: u64,
    pub rate: u64,
    /// The longest a single fault may stop commits (the scenario's `stall_max_s`).
    pub stall_max_s: f64,
}

impl ChaosPlan {
    pub fn new(seed: u64, minutes: f64) -> ChaosPlan {
        ChaosPlan {
            seed,
            nodes: 4,
            duration_s: (minutes * 60.0).round().max(20.0) as u64,
            rate: 150,
            stall_max_s: 5.0,
        }
    }
}

/// Byzantine behaviours a chaos run toggles (every one but honest).
fn behaviours() -> Vec<Behaviour> {
    Behaviour::ALL
        .iter()
        .copied()
        .filter(|b| !b.is_honest())
        .collect()
}

/// Seconds between the end of one fault and the start of the next.
const GAP_S: (u64, u64) = (2, 6);
/// No fault starts this close to the end of the load (the last one needs time to end).
const TAIL_S: u64 = 12;

/// One fault: its start and end steps, as scenario TOML.
fn fault(rng: &mut Rng, plan: &ChaosPlan, byzantine: u32, at: f64) -> (String, f64) {
    let n = plan.nodes as u64;
    let replica = rng.below(n) as u32;
    let secs = |rng: &mut Rng, lo: u64, hi: u64| rng.between(lo * 10, hi * 10) as f64 / 10.0;
    let step = |at: f64, body: &str| format!("\n[[steps]]\nat = {at:.1}\n{body}\n");
    match rng.below(5) {
        0 => {
            let end = at + secs(rng, 2, 7);
            let text = step(at, &format!("action = \"kill\"\nreplica = {replica}"))
                + &step(end, &format!("action = \"restart\"\nreplica = {replica}"));
            (text, end)
        }
        1 => {
            let end = at + secs(rng, 1, 5);
            let text = step(at, &format!("action = \"pause\"\nreplica = {replica}"))
                + &step(end, &format!("action = \"resume\"\nreplica = {replica}"));
            (text, end)
        }
        2 => {
            let end = at + secs(rng, 2, 6);
            let others: Vec<String> = (0..plan.nodes as u32)
                .filter(|r| *r != replica)
                .map(|r| r.to_string())
                .collect();
            let text = step(
                at,
                &format!(
                    "action = \"partition\"\ngroups = [[{replica}], [{}]]",
                    others.join(", ")
                ),
            ) + &step(end, "action = \"heal\"");
            (text, end)
        }
        3 => {
            let end = at + secs(rng, 2, 6);
            let ms = rng.between(50, 400);
            let text = step(
                at,
                &format!("action = \"delay\"\nreplica = {replica}\nms = {ms}"),
            ) + &step(end, "action = \"heal\"");
            (text, end)
        }
        _ => {
            let end = at + secs(rng, 3, 8);
            let all = behaviours();
            let behaviour = all[rng.below(all.len() as u64) as usize];
            let text = step(
                at,
                &format!(
                    "action = \"byzantine\"\nreplica = {byzantine}\nbehaviour = \"{behaviour}\""
                ),
            ) + &step(end, &format!("action = \"honest\"\nreplica = {byzantine}"));
            (text, end)
        }
    }
}

/// The scenario file of a chaos run: the same seed gives the same file.
pub fn scenario(plan: &ChaosPlan) -> Result<String> {
    if plan.nodes != 4 {
        bail!("chaos timelines are made for 4 replicas (f = 1)");
    }
    if plan.duration_s < 20 {
        bail!("a chaos run lasts at least 20 seconds");
    }
    let mut rng = Rng::new(plan.seed);
    let byzantine = rng.below(plan.nodes as u64) as u32;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "name = \"chaos-{}\"\ndescription = \"Seeded random faults (seed {}, {} s): one replica at a time is killed, paused, isolated, delayed, or (replica {byzantine}) Byzantine. Replay with `quire-testnet run` on this file.\"\nnodes = {}\naccounts = 64\n\n[load]\nrate = {}\nduration = {}",
        plan.seed, plan.seed, plan.duration_s, plan.nodes, plan.rate, plan.duration_s
    );
    let mut at = rng.between(30, 50) as f64 / 10.0;
    while at + (TAIL_S as f64) < plan.duration_s as f64 {
        let (steps, end) = fault(&mut rng, plan, byzantine, at);
        text += &steps;
        at = end + rng.between(GAP_S.0 * 10, GAP_S.1 * 10) as f64 / 10.0;
    }
    let _ = write!(
        text,
        "\n[expect]\nsafety = \"holds\"\nrecover_within = 15\nstall_max_s = {}\n",
        plan.stall_max_s
    );
    Ok(text)
}

/// The replica a fault hits.
fn target(action: &Action) -> Option<u32> {
    match action {
        Action::Kill(r) | Action::Pause(r) => Some(*r),
        Action::Byzantine { replica, .. } | Action::Delay { replica, .. } => Some(*replica),
        Action::Partition(groups) => groups.iter().find(|g| g.len() == 1).map(|g| g[0]),
        _ => None,
    }
}

/// The primary just before `t`, by the views honest replicas reported.
fn primary_at(plan: &Plan, record: &Record, t: f64) -> Option<u32> {
    let n = plan.scenario.nodes as u64;
    record
        .samples
        .iter()
        .rev()
        .filter(|s| s.t_s <= t && !plan.malicious.contains(&s.replica))
        .filter_map(|s| s.state.map(|(view, _, changing)| (view, changing)))
        .find(|(_, changing)| !changing)
        .map(|(view, _)| (view % n) as u32)
}

/// How the views went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Views {
    /// The highest view any replica reached.
    pub highest: u64,
    /// Faults that hit the primary of the moment (each should cost about one view change).
    pub primary_faults: usize,
    /// Scheduled rotations the chain passed (one per `rotation_blocks`, docs/liveness.md):
    /// view changes every replica makes on purpose, not in answer to a fault.
    pub rotations: u64,
}

impl Views {
    /// View changes no fault and no rotation explains.
    pub fn unexplained(&self) -> u64 {
        self.highest
            .saturating_sub(self.rotations)
            .saturating_sub(self.primary_faults as u64)
    }
}

pub fn views(plan: &Plan, record: &Record) -> Views {
    let states = || record.samples.iter().filter_map(|s| s.state);
    let highest = states().map(|(v, _, _)| v).max().unwrap_or(0);
    let height = states().map(|(_, h, _)| h).max().unwrap_or(0);
    let every = quire_chain::genesis::Protocol::default().rotation_blocks;
    let rotations = height.checked_div(every).unwrap_or(0);
    let primary_faults = plan
        .steps
        .iter()
        .filter(|(_, a)| a.disrupts())
        .filter(|(t, a)| target(a).is_some() && target(a) == primary_at(plan, record, *t))
        .count();
    Views {
        highest,
        primary_faults,
        rotations,
    }
}

/// The per-fault table a chaos run prints: how long commits stopped, and when they came back.
pub fn table(judgement: &Judgement) -> String {
    let mut out = String::from(
        "   from (s)  fault                        commits stopped   recovered after\n",
    );
    for i in &judgement.intervals {
        let _ = writeln!(
            out,
            "   {:>7.1}  {:<28} {:>15}   {:>15}",
            i.start_s,
            i.label,
            format!("{:.1} s", i.stall_s),
            i.recovery_s
                .map_or("never".to_string(), |s| format!("{s:.1} s"))
        );
    }
    let worst = judgement
        .intervals
        .iter()
        .map(|i| i.stall_s)
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "   {} faults; the longest stop of commits: {worst:.1} s",
        judgement.intervals.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file replays: one seed, one timeline; and it is a valid scenario.
    #[test]
    fn a_chaos_seed_always_writes_the_same_valid_scenario() {
        let plan = ChaosPlan::new(7, 3.0);
        let a = scenario(&plan).unwrap();
        assert_eq!(a, scenario(&plan).unwrap());
        assert_ne!(a, scenario(&ChaosPlan::new(8, 3.0)).unwrap());
        let parsed = Plan::parse(&a).unwrap();
        assert!(parsed.steps.len() >= 20, "{} steps", parsed.steps.len());
        assert!(parsed.malicious.len() <= 1);
    }

    /// Never more than f = 1 replica faulty or down: every fault ends before the next begins.
    #[test]
    fn chaos_keeps_at_most_one_replica_faulty_at_a_time() {
        for seed in 0..50 {
            let plan = Plan::parse(&scenario(&ChaosPlan::new(seed, 10.0)).unwrap()).unwrap();
            let mut open: Option<&Action> = None;
            for (_, action) in &plan.steps {
                let starts = action.disrupts();
                match (open, starts) {
                    (None, true) => open = Some(action),
                    (Some(_), false) => open = None,
                    (Some(o), true) => panic!("seed {seed}: {action:?} while {o:?}"),
                    (None, false) => panic!("seed {seed}: {action:?} ends nothing"),
                }
            }
            assert!(open.is_none(), "seed {seed}: the last fault never ends");
        }
    }

    /// A view change is explained by a scheduled rotation or by a fault that hit the primary;
    /// what is left is what the chaos run judges ("views stay within a few of the primary
    /// faults"). Heights past whole rotation periods count one rotation each.
    #[test]
    fn rotations_and_primary_faults_explain_the_views() {
        use crate::scenario::run::Sample;
        let plan = Plan::parse(&scenario(&ChaosPlan::new(3, 1.0)).unwrap()).unwrap();
        let every = quire_chain::genesis::Protocol::default().rotation_blocks;
        let record = Record {
            samples: vec![
                Sample {
                    t_s: 0.0,
                    replica: 0,
                    state: Some((0, 1, false)),
                },
                Sample {
                    t_s: 59.0,
                    replica: 2,
                    state: Some((9, 3 * every + 5, false)),
                },
                Sample {
                    t_s: 59.0,
                    replica: 3,
                    state: None,
                },
            ],
            ..Record::default()
        };
        let v = views(&plan, &record);
        assert_eq!((v.highest, v.rotations), (9, 3));
        assert_eq!(v.unexplained(), 6 - v.primary_faults.min(6) as u64);
    }
}
