//! State transfer: a replica that falls behind fetches certified blocks from its peers.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_sim::workload::Target;
use support::Cluster;

fn small_window(cfg: &mut quire_sim::SimConfig) {
    cfg.params.batch_txs_max = 1;
    cfg.protocol.checkpoint_interval = 4;
    cfg.protocol.log_window = 8;
}

/// A replica cut off while the others moved past its high watermark catches up by fetching and
/// re-executing certified blocks.
#[test]
fn a_replica_behind_the_low_watermark_catches_up_by_state_transfer() {
    let mut c = Cluster::with(4, small_window);
    c.isolate(3);
    c.submit(40, Target::One(0));
    c.run(300);
    assert_eq!(c.height(3), 0);
    assert!(c.height(0) >= 40);
    c.heal();
    c.run(300);
    c.assert_all_at(c.height(0));
    assert!(c.sim.replica(3).unwrap().stats().blocks_fetched >= 32);
}

/// A backup that crashes loses nothing it persisted; on restart it recovers its log and view
/// from its store and catches up with what it missed.
#[test]
fn a_restarted_backup_recovers_and_catches_up() {
    let mut c = Cluster::new(4);
    c.submit(20, Target::One(0));
    c.run(60);
    c.crash(2);
    c.submit(20, Target::One(0));
    c.run(100);
    c.restart(2);
    c.submit(5, Target::One(0));
    c.run(300);
    c.assert_all_executed();
    c.assert_all_at(c.height(0));
}
