//! The simulator itself: deterministic, and able to fail.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use quire_consensus::Behaviour;
use quire_sim::{Choice, SimConfig, Violation, run};

/// The same seed twice gives byte-identical traces.
#[test]
fn the_same_seed_gives_the_same_trace() {
    let cfg = || {
        let mut c = SimConfig::new(4, 1, Choice::Mixed, 42);
        c.trace = true;
        c.ticks = 1200;
        c.heal_tick = 700;
        c
    };
    let a = run(cfg());
    let b = run(cfg());
    assert!(a.trace.len() > 1000);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.trace_hash, b.trace_hash);
    let mut other = cfg();
    other.seed = 43;
    assert_ne!(run(other).trace_hash, a.trace_hash);
}

/// A cluster that cannot make progress after the network heals is reported: with two of four
/// replicas silent nothing can commit.
#[test]
fn lost_liveness_is_reported() {
    let mut cfg = SimConfig::new(4, 2, Choice::One(Behaviour::Silent), 3);
    cfg.ticks = 1000;
    cfg.heal_tick = 500;
    let r = run(cfg);
    assert!(
        matches!(r.violation, Some((_, _, Violation::NoProgress { .. }))),
        "{:?}",
        r.violation
    );
}
