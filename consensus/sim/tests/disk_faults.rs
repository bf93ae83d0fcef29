//! Faults at a replica's disk, around the executor's one durable write per step (PBFT.md,
//! trap 1): the process dies while the write is on its way (then the write is all there or not
//! there at all — the store is atomic), right after it, or halfway through the sends that follow;
//! or the disk refuses the write and the replica must stop. Whatever it was, a restarted replica
//! never contradicts what it may have sent, and the cluster goes on.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_chain::store::Store;
use quire_consensus::message::Kind;
use quire_sim::workload::Target;
use quire_sim::{Choice, CrashPoint, SimConfig, Trigger, run};
use support::Cluster;

/// Frames replica `i` has had delivered to the others, of every kind.
fn sent_by(c: &Cluster, i: u32) -> u64 {
    (0..4u32)
        .filter(|to| *to != i)
        .flat_map(|to| Kind::ALL.map(|k| c.sim.delivered(i, to, k).0))
        .sum()
}

/// A disk that refuses a write stops its replica: nothing of that step is sent, nothing after it
/// either, and the store holds what it held. Restarted (a new disk, say), it catches up.
#[test]
fn a_replica_whose_disk_refuses_a_write_stops_and_sends_nothing() {
    let mut c = Cluster::new(4);
    c.submit_to_all(8);
    c.run(100);
    let head = c.sim.stores[2].head();
    c.sim.inject(2, Trigger::NextWrite, CrashPoint::WriteFails);
    c.submit_to_all(8);
    c.run(30);
    assert!(
        c.sim.replica(2).is_none(),
        "replica 2 went on after a failed write"
    );
    let sent = sent_by(&c, 2);
    assert_eq!(c.sim.stores[2].head(), head);
    c.submit_to_all(8);
    c.run(300);
    assert_eq!(sent_by(&c, 2), sent, "a stopped replica sent something");
    c.assert_all_executed();
    c.restart(2);
    c.run(400);
    c.assert_all_at(c.height(0));
}

/// The process dies after its votes are durable and before they leave, again and again: after
/// each restart it sends what it had promised, never anything else (an honest replica accused of
/// a double vote fails the run), and every transfer executes.
#[test]
fn a_crash_between_the_write_and_the_sends_never_makes_a_replica_contradict_itself() {
    let mut c = Cluster::new(4);
    for round in 0..12 {
        let point = if round % 2 == 0 {
            CrashPoint::AfterWrite
        } else {
            CrashPoint::MidSends { frames: round % 3 }
        };
        let victim = 1 + round as u32 % 3;
        c.sim.inject(victim, Trigger::NextWrite, point);
        c.submit(4, Target::One(0));
        c.run(20);
        assert!(c.sim.replica(victim).is_none(), "round {round}: no crash");
        c.restart(victim);
        c.run(40);
    }
    c.run(400);
    c.assert_all_executed();
    c.assert_all_at(c.height(0));
}

/// A power cut loses the blocks a replica wrote since its last synced write (blocks alone are
/// not synced: they are derived from votes the log already holds durably). Whichever replica
/// loses power, again and again, it restarts below where it was, fetches back the blocks it lost
/// with their certificates, never commits a different block at a height it had, and the cluster
/// goes on. Power is cut only while some block is unsynced, so every cut loses something.
#[test]
fn a_power_cut_loses_only_unsynced_blocks_and_the_replica_fetches_them_back() {
    let mut c = Cluster::new(4);
    for i in 0..4 {
        c.sim.stores[i].model_power_cuts();
    }
    let (mut cuts, mut lost) = (0, 0);
    for round in 0..16u32 {
        let victim = round % 4;
        c.submit(6, Target::One(round % 4));
        for _ in 0..200 {
            c.run(1);
            if c.sim.stores[victim as usize].unsynced_blocks() > 0 {
                break;
            }
        }
        let before = c.sim.stores[victim as usize].head().height;
        let cut = c.sim.power_cut(victim);
        if cut > 0 {
            cuts += 1;
            lost += cut;
            assert_eq!(
                c.sim.stores[victim as usize].head().height,
                before - cut,
                "round {round}: the cut took the unsynced blocks"
            );
        }
        c.run(5);
        c.restart(victim);
        c.run(60);
        assert!(c.sim.violation().is_none(), "{:?}", c.sim.violation());
    }
    c.run(400);
    c.assert_all_executed();
    c.assert_all_at(c.height(0));
    assert!(c.sim.violation().is_none(), "{:?}", c.sim.violation());
    assert!(cuts >= 8, "only {cuts} of 16 cuts found an unsynced block");
    eprintln!("{cuts} power cuts lost {lost} blocks, all fetched back");
}

/// A crash in the middle of a write of many blocks (state transfer executes up to 64 in one
/// step) leaves none of them (or all of them, if the write made it): never a prefix, never a
/// head without its state. The replica restarts from what is there and catches up.
#[test]
fn a_crash_in_the_middle_of_a_multi_block_write_leaves_all_of_it_or_none() {
    for lands in [false, true] {
        let mut c = Cluster::with(4, |cfg| {
            cfg.params.batch_txs_max = 1;
            cfg.protocol.checkpoint_interval = 4;
            cfg.protocol.log_window = 8;
        });
        c.isolate(3);
        c.submit(40, Target::One(0));
        c.run(300);
        assert!(c.height(0) >= 40);
        let before = c.sim.stores[3].head();
        c.sim
            .inject(3, Trigger::MultiBlockWrite, CrashPoint::MidWrite { lands });
        c.heal();
        for _ in 0..300 {
            c.run(1);
            if c.sim.replica(3).is_none() {
                break;
            }
        }
        assert!(c.sim.replica(3).is_none(), "no multi-block write came");
        let after = c.sim.stores[3].head();
        if lands {
            assert!(after.height >= before.height + 2, "lands: {after:?}");
        } else {
            assert_eq!(after, before, "a write that did not land left something");
        }
        // The head is a complete block with its state: the store reopens as it is.
        c.restart(3);
        c.run(400);
        c.assert_all_at(c.height(0));
    }
}

/// Left to the seeds, disk faults hit honest replicas at random steps (more often at writes of
/// several blocks), and every run keeps every rule: agreement, validity, progress after the
/// network heals, no false blame.
#[test]
fn random_disk_faults_over_many_seeds_break_no_rule() {
    let (mut faults, mut multi) = (0, 0);
    for seed in 0..30 {
        let r = run(SimConfig::new(4, 1, Choice::Mixed, seed));
        if let Some((step, tick, v)) = &r.violation {
            panic!("seed {seed}: step {step}, tick {tick}: {v}");
        }
        faults += r.disk_faults;
        multi += r.multi_block_disk_faults;
    }
    assert!(faults >= 10, "{faults} disk faults in 30 seeds");
    assert!(multi >= 1, "no fault in a multi-block write in 30 seeds");
}
