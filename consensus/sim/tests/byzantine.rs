//! Every Byzantine behaviour, played by one replica (f = 1), against three honest ones: the
//! honest replicas agree, and keep executing transfers.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_consensus::{Behaviour, Misbehaviour};
use quire_sim::{Choice, Report, SimConfig, run};
use support::Cluster;

fn survive(faulty: u32, behaviour: Behaviour) -> Cluster {
    let mut c = Cluster::new(4);
    c.make(faulty, behaviour);
    for _ in 0..6 {
        c.submit_to_all(8);
        c.run(250);
    }
    c.run(800);
    c.assert_all_executed();
    c
}

#[test]
fn honest_replicas_survive_every_behaviour_of_a_faulty_primary() {
    for b in &Behaviour::ALL[1..] {
        survive(0, *b);
    }
}

#[test]
fn honest_replicas_survive_every_behaviour_of_a_faulty_backup() {
    for b in &Behaviour::ALL[1..] {
        survive(2, *b);
    }
}

/// Misbehaviour is detected and blamed on the culprit, so operators can see who did it.
#[test]
fn misbehaviour_is_counted_against_the_culprit() {
    let expectations = [
        (Behaviour::Equivocate, Misbehaviour::Equivocation, 0),
        (Behaviour::DoubleVote, Misbehaviour::DoubleVote, 2),
        (Behaviour::ForgeSignature, Misbehaviour::ForgedSignature, 2),
        (Behaviour::Impersonate, Misbehaviour::Impersonation, 2),
        (Behaviour::InvalidBatch, Misbehaviour::InvalidBatch, 0),
        (Behaviour::Flood, Misbehaviour::Junk, 2),
    ];
    for (behaviour, kind, culprit) in expectations {
        let mut c = Cluster::new(4);
        c.make(culprit, behaviour);
        c.submit_to_all(20);
        c.run(300);
        let blamed: u64 = c
            .honest()
            .iter()
            .filter_map(|i| c.sim.replica(*i))
            .map(|r| {
                r.stats()
                    .misbehaviour
                    .get(&(kind, culprit))
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        assert!(blamed > 0, "{behaviour}: no {kind:?} blamed on {culprit}");
    }
}

/// The attack step by step (f = 1 of 4, but two colluders): primary 0 sends one batch to
/// replica 2 and another to replica 3; accomplice 1 votes for each side's batch on that side. Each
/// honest replica sees a quorum — and they execute different blocks at the same height.
#[test]
fn two_colluders_split_the_honest_replicas() {
    let mut c = Cluster::new(4);
    c.collude(&[0, 1], Behaviour::Equivocate);
    c.submit(1, quire_sim::workload::Target::One(2));
    c.sim.run_for(100);
    let Some((_, _, violation)) = c.sim.violation() else {
        panic!("no fork")
    };
    assert!(
        matches!(violation, quire_sim::Violation::Agreement { height: 1, .. }),
        "{violation}"
    );
}

fn seeds(
    nodes: usize,
    faulty: usize,
    behaviour: Choice,
    range: std::ops::Range<u64>,
) -> Vec<Report> {
    range
        .map(|seed| run(SimConfig::new(nodes, faulty, behaviour, seed)))
        .collect()
}

/// With f+1 colluding equivocators (more than PBFT tolerates) the faulty primary splits the
/// honest replicas and its accomplice votes for both sides: the checker must catch the fork.
#[test]
fn the_checker_catches_a_fork_by_more_than_f_colluders() {
    let reports = seeds(4, 2, Choice::One(Behaviour::Equivocate), 0..20);
    let forks = reports
        .iter()
        .filter(|r| {
            matches!(
                r.violation,
                Some((_, _, quire_sim::Violation::Agreement { .. }))
            )
        })
        .count();
    assert!(forks > 0, "no seed of 20 found the fork");
}

/// Within the bound (f = 1 of 4) the same attack never forks, on a lossy, partitioning network
/// with crashes.
#[test]
fn mixed_faults_within_the_bound_never_fork_and_always_recover() {
    for r in seeds(4, 1, Choice::Mixed, 0..12) {
        assert!(r.violation.is_none(), "seed {}: {:?}", r.seed, r.violation);
    }
}

/// The batch digest covers transaction ids, not signatures: an invalid-batch primary that gives
/// some replicas a batch with one signature broken (same ids, same digest) must not split them.
/// Before honest replicas refused to vote for or execute such a batch, 44 of 200 seeds forked.
#[test]
fn a_broken_signature_under_the_same_digest_splits_no_one() {
    for r in seeds(4, 1, Choice::One(Behaviour::InvalidBatch), 0..60) {
        assert!(r.violation.is_none(), "seed {}: {:?}", r.seed, r.violation);
    }
}
