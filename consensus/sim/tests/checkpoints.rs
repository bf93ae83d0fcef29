//! Checkpoints and garbage collection, Castro & Liskov §4.3.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_sim::workload::Target;
use support::Cluster;

fn small_window(cfg: &mut quire_sim::SimConfig) {
    cfg.params.batch_txs_max = 1;
    cfg.protocol.checkpoint_interval = 4;
    cfg.protocol.log_window = 8;
    cfg.params.pipeline_depth = 4;
}

/// Every K sequence numbers a quorum of checkpoints becomes stable and the log below it goes.
#[test]
fn checkpoints_become_stable_and_the_log_is_collected() {
    let mut c = Cluster::with(4, small_window);
    c.submit(30, Target::One(0));
    c.run(200);
    c.assert_all_executed();
    for i in 0..4 {
        let r = c.sim.replica(i).unwrap();
        assert_eq!(r.stable_checkpoint().seq, 28, "replica {i}");
        assert!(r.stable_checkpoint().certificate.is_some());
        assert!(r.log_len() <= 8, "replica {i} holds {} slots", r.log_len());
    }
}

/// The high watermark stops the primary: without stable checkpoints (two replicas cut off, so
/// no quorum) it proposes at most L sequence numbers past the low watermark.
#[test]
fn the_high_watermark_bounds_the_log() {
    let mut c = Cluster::with(4, small_window);
    c.isolate(2);
    c.isolate(3);
    c.submit(30, Target::One(0));
    c.run(100);
    let r = c.sim.replica(0).unwrap();
    assert_eq!(r.last_executed(), 0);
    assert!(r.log_len() <= 8, "log holds {} slots", r.log_len());
}
