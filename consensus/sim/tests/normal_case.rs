//! Normal-case operation, Castro & Liskov §4.2: pre-prepare, prepare, commit, execute in order.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_sim::workload::Target;
use support::Cluster;

/// Transfers sent to the primary are ordered, committed and executed by every replica.
#[test]
fn normal_case_commits_transfers_at_every_replica() {
    let mut c = Cluster::new(4);
    c.submit(30, Target::One(0));
    c.run(100);
    c.assert_all_executed();
    let h = c.height(0);
    assert!(h >= 1);
    c.assert_all_at(h);
    assert!(
        (0..4).all(|i| c.view(i) == 0),
        "no view change on a quiet network"
    );
}

/// A backup that receives a request forwards it to the primary (§4.1).
#[test]
fn a_backup_forwards_requests_to_the_primary() {
    let mut c = Cluster::new(4);
    c.submit(10, Target::One(2));
    c.run(100);
    c.assert_all_executed();
}

/// Batches close at B transactions; with many requests waiting the primary fills them.
#[test]
fn batches_close_at_the_size_limit() {
    let mut c = Cluster::with(4, |cfg| cfg.params.batch_txs_max = 16);
    c.submit(100, Target::One(0));
    c.run(200);
    c.assert_all_executed();
    assert!(c.height(0) >= 7, "100 transfers in batches of at most 16");
    let store = &c.sim.stores[1];
    use quire_chain::store::Store;
    for h in 1..=store.head().height {
        let block = store.block(h).unwrap().unwrap().block;
        assert!(block.txs.len() <= 16);
    }
}

/// Pipelining: with one-tick network delay, several sequence numbers are in flight at once, so
/// blocks commit faster than one round trip each.
#[test]
fn pipelining_keeps_several_sequence_numbers_in_flight() {
    let mut c = Cluster::with(4, |cfg| {
        cfg.params.batch_txs_max = 1;
        cfg.params.batch_timeout_ticks = 1;
        cfg.params.pipeline_depth = 4;
    });
    c.submit(40, Target::One(0));
    c.run(40);
    // Without pipelining, 40 blocks of one transfer need at least 40 × 3 hops.
    c.assert_all_executed();
    assert_eq!(c.height(0), 40);
}

/// Replicas agree on every block and on the state after it.
#[test]
fn replicas_execute_identical_chains() {
    let mut c = Cluster::new(7);
    c.submit_to_all(50);
    c.run(150);
    c.assert_all_executed();
    use quire_chain::store::Store;
    let head = c.sim.stores[0].head();
    for s in &c.sim.stores {
        assert_eq!(s.head(), head);
    }
}

/// How many PrePrepares a primary broadcasts for a lone transaction arriving with `in_flight`
/// of its blocks proposed and not yet executed, before any tick passes.
fn proposed_at_once(eager_depth: u64, in_flight: usize) -> usize {
    use quire_chain::testkit::TestNet;
    use quire_consensus::message::Message;
    use quire_consensus::{Input, Output, Params};

    let net = TestNet::new(4, 4);
    let params = Params {
        eager_depth,
        ..Params::default()
    };
    let mut primary = support::fresh_replica(&net, 0, params);
    let proposals = |outputs: Vec<Output>| {
        outputs
            .iter()
            .filter(|o| matches!(o, Output::Broadcast(Message::PrePrepare { .. })))
            .count()
    };
    // Transactions from different accounts, each ready on its own.
    for i in 0..in_flight {
        let sent = proposals(primary.step(Input::Requests(vec![net.transfer(i, 3, 1, 0)])));
        assert_eq!(sent, 1, "block {} goes into a pipeline with room", i + 1);
    }
    let lone = net.transfer(in_flight, 3, 1, 0);
    proposals(primary.step(Input::Requests(vec![lone])))
}

/// A lightly loaded primary proposes a lone transaction the moment it arrives while fewer than
/// `eager_depth` blocks are in flight (waiting for the next tick would add up to a tick to its
/// latency and gain nothing); past that it waits for the batch timeout, so batches grow under
/// load instead of blocks multiplying.
#[test]
fn a_primary_proposes_at_once_while_the_pipeline_is_shallow() {
    assert_eq!(proposed_at_once(2, 0), 1, "empty pipeline");
    assert_eq!(proposed_at_once(2, 1), 1, "one block in flight");
    assert_eq!(proposed_at_once(2, 2), 0, "two in flight: it waits");
    assert_eq!(
        proposed_at_once(1, 1),
        0,
        "eager_depth 1: only into an empty pipeline"
    );
    assert_eq!(proposed_at_once(3, 2), 1);
}

/// A slot that cannot commit (two of four replicas are down) has its votes sent again less and
/// less often: each resend doubles the wait before the next, up to the view timeout. A slot
/// slow because the cluster is overloaded, not because a message was lost, must not have its
/// whole batch sent to every peer at every status interval.
#[test]
fn a_stuck_slot_is_resent_less_and_less_often() {
    use quire_consensus::message::Kind;
    let ticks = 900;
    let mut c = Cluster::with(4, |cfg| {
        // Long enough that no view change starts during the window.
        cfg.params.view_timeout_ticks = 2000;
        cfg.params.view_timeout_max_ticks = 2000;
    });
    c.crash(2);
    c.crash(3);
    c.submit(1, Target::One(0));
    c.run(ticks);
    assert_eq!(c.height(0), 0, "no quorum: nothing commits");
    let sent = c.sim.delivered(0, 1, Kind::PrePrepare).0;
    let params = &c.sim.config().params;
    let every_status = ticks / params.status_interval_ticks;
    eprintln!(
        "{sent} PrePrepares in {ticks} ticks (one per status interval would be {every_status})"
    );
    // Sent at 0, then after 40, 80, 160, 320, ... ticks of silence.
    assert!(
        (2..=7).contains(&sent),
        "{sent} PrePrepares in {ticks} ticks"
    );
    c.restart(2);
    c.restart(3);
    c.run(1000);
    c.assert_all_executed();
}

/// Blocks a primary makes for a steady load (2 transfers a tick for 300 ticks) on a network that
/// takes 6 ticks per hop, so a block commits in about 18 ticks, with the batch timeout between
/// 1 tick and `max_ticks`.
fn blocks_for_steady_load(max_ticks: u64) -> u64 {
    let mut c = Cluster::with(4, |cfg| {
        cfg.faults.delay_min_ticks = 6;
        cfg.faults.delay_max_ticks = 6;
        cfg.params.batch_txs_max = 512;
        cfg.params.pipeline_depth = 16;
        cfg.params.eager_depth = 1;
        cfg.params.batch_timeout_ticks = 1;
        cfg.params.batch_timeout_max_ticks = max_ticks;
        cfg.protocol.rotation_blocks = 0;
        cfg.protocol.log_window = 64;
        cfg.protocol.checkpoint_interval = 16;
    });
    for _ in 0..300 {
        c.submit(2, Target::One(0));
        c.run(1);
    }
    c.run(200);
    c.assert_all_executed();
    c.height(0)
}

/// Under load a batch waits half the measured commit time, not a fixed tick: on a slow cluster a
/// fixed one-tick timeout makes a block per tick (each one 2n(n−1) signed messages), while the
/// adaptive timeout keeps about two blocks in flight and lets batches grow instead. The same
/// transfers commit either way.
#[test]
fn a_slow_cluster_gets_bigger_batches_not_more_blocks() {
    let fixed = blocks_for_steady_load(1);
    let adaptive = blocks_for_steady_load(20);
    assert!(
        fixed >= 250,
        "a block per tick with a fixed timeout: {fixed}"
    );
    assert!(
        adaptive * 4 <= fixed,
        "the timeout follows the commit time: {adaptive} blocks against {fixed}"
    );
}
