//! View changes, Castro & Liskov §4.4 and §4.5.2.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_chain::store::Store;
use quire_consensus::Behaviour;
use quire_sim::workload::Target;
use support::Cluster;

/// A ViewChange carries its prepared batches to the new primary alone: the others get the signed
/// ViewChange without them and take the batches from the NewView. (Sent to everyone, a window
/// of full batches went to every peer with every ViewChange and its resends: 2.8 GB from one
/// replica in 15 s at 16 replicas under load.) The view change still carries every batch over.
#[test]
fn a_view_changes_batches_travel_to_the_new_primary_alone() {
    use quire_consensus::message::Kind;
    let mut c = Cluster::new(4);
    c.submit(20, Target::One(0));
    c.run(3);
    c.isolate(0);
    c.run(600);
    // View 1's primary is replica 1; replica 3 is a backup there.
    let (to_primary, primary_bytes) = c.sim.delivered(2, 1, Kind::ViewChange);
    let (to_backup, backup_bytes) = c.sim.delivered(2, 3, Kind::ViewChange);
    assert!(
        to_primary >= 1 && to_backup >= 1,
        "{to_primary} / {to_backup}"
    );
    let per_primary = primary_bytes / to_primary;
    let per_backup = backup_bytes / to_backup;
    eprintln!("ViewChange to the new primary {per_primary} bytes, to a backup {per_backup}");
    // At least one prepared batch of transfers (each over 100 bytes) went to the primary only.
    assert!(
        per_primary > per_backup + 100,
        "to the primary {per_primary} bytes, to a backup {per_backup}"
    );
    c.heal();
    c.run(400);
    c.assert_all_executed();
    let h = c.height(1);
    c.assert_all_at(h);
}

/// A primary that sends nothing, not even heartbeats, is replaced by the idle timeout even when
/// there is no work.
#[test]
fn a_silent_primary_is_replaced_by_the_idle_timeout() {
    let mut c = Cluster::new(4);
    c.make(0, Behaviour::Silent);
    c.run(400);
    for i in c.honest() {
        assert!(c.view(i) >= 1, "replica {i} still in view 0");
        assert!(!c.sim.replica(i).unwrap().is_changing_view());
    }
    c.submit_to_all(10);
    c.run(200);
    c.assert_all_executed();
}

/// When the primary crashes, the backups' request timers expire, they move to the next view,
/// and transfers keep committing.
#[test]
fn a_crashed_primary_is_replaced_and_transfers_keep_committing() {
    let mut c = Cluster::new(4);
    c.submit_to_all(10);
    c.run(50);
    c.crash(0);
    c.submit_to_all(10);
    c.run(600);
    c.assert_all_executed();
    assert!(c.view(1) >= 1);
}

/// A primary that holds its messages back (slower than the timeout) is replaced; one that is
/// merely slow is not.
#[test]
fn a_primary_slower_than_the_timeout_is_replaced() {
    let mut c = Cluster::new(4);
    c.make(0, Behaviour::DelayVotes);
    c.submit_to_all(10);
    c.run(800);
    c.assert_all_executed();
}

/// Batches prepared in the old view survive the view change: the new primary re-proposes them
/// (from the prepared certificates in the ViewChanges) and every replica executes the same chain.
#[test]
fn prepared_batches_survive_a_view_change() {
    let mut c = Cluster::new(4);
    c.submit(20, Target::One(0));
    // Cut the primary off mid-flight: some batches are prepared, none may be lost.
    c.run(3);
    c.isolate(0);
    c.run(600);
    c.heal();
    c.run(400);
    c.assert_all_executed();
    let h = c.height(1);
    c.assert_all_at(h);
}

/// A view change while a backup lies in its ViewChange (hiding its prepared certificates) and
/// the primary crashed: the honest quorum still carries every prepared batch over.
#[test]
fn a_lying_view_change_cannot_lose_a_prepared_batch() {
    let mut c = Cluster::with(4, |cfg| cfg.params.batch_timeout_ticks = 1);
    c.make(3, Behaviour::LyingViewChange);
    c.submit_to_all(20);
    c.run(3);
    c.crash(0);
    c.run(800);
    c.restart(0);
    c.run(400);
    c.assert_all_executed();
}

/// The timeout doubles with each view change that brings no progress (so replicas with unequal
/// clocks eventually overlap in one view): with the primaries of views 0 and 1 both silent
/// (f = 2 of 7), the replicas pass through view 1 with a doubled timeout and settle in view 2.
#[test]
fn the_view_change_timeout_doubles_until_progress() {
    let mut c = Cluster::new(7);
    c.make(0, Behaviour::Silent);
    c.make(1, Behaviour::Silent);
    c.submit_to_all(10);
    c.run(1500);
    c.assert_all_executed();
    for i in c.honest() {
        let r = c.sim.replica(i).unwrap();
        assert_eq!(r.view(), 2, "replica {i}");
        assert!(r.stats().view_change_streak_max >= 2, "replica {i}");
    }
}

/// PBFT.md trap 11: a backup cut off long enough to time out moves to the next view alone and
/// must not rejoin by going back (its ViewChange may be in the next NewView's proof). The
/// scheduled rotation brings the others to its view: within `rotation_blocks` blocks of the heal
/// it votes again — its signature is in new commit certificates.
#[test]
fn a_replica_that_changed_views_alone_votes_again_after_the_next_rotation() {
    let mut c = Cluster::with(4, |cfg| cfg.protocol.rotation_blocks = 16);
    c.submit(4, Target::All);
    c.run(50);
    c.isolate(3);
    c.run(400);
    assert!(c.sim.replica(3).unwrap().is_changing_view());
    assert_eq!(c.view(3), 1);
    assert_eq!(c.view(0), 0, "the others stay in view 0");
    c.heal();
    let healed_at = c.height(0);
    // Still alone: nobody else wants view 1.
    c.submit(3, Target::All);
    c.run(100);
    assert!(c.sim.replica(3).unwrap().is_changing_view());
    // Load until the next rotation (one transfer a block here: small batches).
    for _ in 0..40 {
        c.submit(1, Target::All);
        c.run(20);
    }
    assert!(c.height(0) >= healed_at + 16);
    assert_eq!(c.view(0), c.view(3), "all in the rotated view");
    assert!(!c.sim.replica(3).unwrap().is_changing_view());
    let head = c.sim.stores[0].head().height;
    let signed_by_3 = (head.saturating_sub(10)..=head)
        .filter_map(|h| c.sim.stores[0].block(h).unwrap())
        .filter_map(|r| r.block.certificate)
        .any(|cert| cert.votes.iter().any(|v| v.replica == 3));
    assert!(
        signed_by_3,
        "replica 3's commits are in none of the last certificates"
    );
    c.assert_all_executed();
}

/// A scheduled rotation is not a view change that failed: rotating into the view of a replica
/// that is down moves on to the next view after one base timeout. (Counted as a failed one, it
/// doubled the rotated view's timer, and a chaos run's rotation into a restarting replica's view
/// waited 2 s instead of 1 s.)
#[test]
fn a_rotation_into_a_crashed_replicas_view_moves_on_after_one_base_timeout() {
    let timeout = 60;
    let mut c = Cluster::with(4, |cfg| {
        cfg.protocol.rotation_blocks = 16;
        cfg.params.view_timeout_ticks = timeout;
    });
    c.submit(4, Target::All);
    c.run(50);
    assert_eq!(c.view(0), 0);
    // Replica 1 leads view 1, the view the first rotation goes to.
    c.crash(1);
    let mut rotated_at = None;
    for _ in 0..200 {
        c.submit(1, Target::All);
        c.run(5);
        if c.view(0) >= 1 {
            rotated_at = Some(c.sim.tick);
            break;
        }
    }
    let rotated_at = rotated_at.expect("no rotation");
    assert_eq!(c.view(0), 1, "rotated into the crashed replica's view");
    let mut moved_on_at = None;
    for _ in 0..4 * timeout {
        c.run(1);
        if c.view(0) >= 2 && !c.sim.replica(0).unwrap().is_changing_view() {
            moved_on_at = Some(c.sim.tick);
            break;
        }
    }
    let waited = moved_on_at.expect("still waiting for view 1's NewView") - rotated_at;
    assert!(
        waited < timeout + timeout / 2,
        "view 2 after {waited} ticks; one base timeout is {timeout}"
    );
    c.submit(3, Target::All);
    c.run(200);
    c.assert_all_executed();
}

/// A replica that flooded ViewChanges for far views and then turned honest counts again in the
/// next view change. Kept one per replica (the highest), its honest ViewChange for the next view
/// was dropped as older than its flood's, and with the primary down no NewView could form without
/// it: the view change passed through a second timeout (in a chaos run, with one more replica
/// paused, commits waited for the paused primary to return).
#[test]
fn a_replica_back_from_a_view_change_flood_counts_in_the_next_view_change() {
    let mut c = Cluster::new(4);
    c.submit_to_all(4);
    c.run(50);
    c.make(2, Behaviour::Flood);
    c.run(100);
    c.sim.actors[2]
        .as_mut()
        .unwrap()
        .set_behaviour(Behaviour::Honest);
    c.run(50);
    assert_eq!(c.view(1), 0);
    // The primary of view 0 crashes; view 1's primary (replica 1) needs replica 2's ViewChange.
    c.crash(0);
    c.submit(10, Target::One(1));
    c.run(600);
    for i in [1, 3] {
        assert_eq!(c.view(i), 1, "replica {i} went past view 1");
    }
    c.assert_all_executed();
}

/// Overload is not censorship: a backlog that takes many view timeouts to drain, behind full
/// blocks, changes no view (blaming the primary for the queue turned overload into collapse);
/// every transfer executes in order.
#[test]
fn a_backlog_behind_full_blocks_changes_no_view() {
    let mut c = Cluster::with(4, |cfg| {
        cfg.protocol.batch_txs_max = 2;
        cfg.params.batch_txs_max = 2;
        cfg.protocol.rotation_blocks = 0;
        cfg.accounts = 100;
    });
    c.submit_to_all(1200);
    // The quiet network's timeout: 60 ticks (SimConfig's params).
    c.run(60 * 5);
    assert!(
        c.agreed_height() < 600,
        "the backlog must outlast 4 view timeouts for this test to mean anything"
    );
    c.run(20_000);
    c.assert_all_executed();
    for i in c.honest() {
        assert_eq!(
            c.view(i),
            0,
            "replica {i} changed views under a mere backlog"
        );
    }
}

/// A primary that ignores what the backups forward is replaced: a transfer every backup handed
/// it waits four view timeouts while blocks with room go through (the client's trickle to the
/// primary), that is censorship, and the next primary proposes it. The backups blame the
/// primary for it only from the moment they handed it over.
#[test]
fn a_primary_that_ignores_forwarded_transactions_is_replaced() {
    use quire_consensus::ViewChangeCause;
    let mut c = Cluster::with(4, |cfg| {
        cfg.protocol.rotation_blocks = 0;
        cfg.accounts = 200;
    });
    c.make(0, Behaviour::Censor);
    // From an account the trickle below never reaches, to the backups only.
    let censored = c.sim.net.transfer(199, 0, 1, 0);
    for backup in 1..4 {
        c.sim.submit(Target::One(backup), censored.clone());
    }
    for _ in 0..40 {
        c.submit(1, Target::One(0));
        c.run(20);
    }
    for i in c.honest() {
        let r = c.sim.replica(i).unwrap();
        assert!(r.view() >= 1, "replica {i} still in view 0");
        assert!(
            r.stats()
                .view_change_causes
                .get(&ViewChangeCause::Censored)
                .is_some_and(|n| *n > 0),
            "replica {i} did not blame the censor: {:?}",
            r.stats().view_change_causes
        );
        let address = c.sim.net.account_keys[199].address();
        assert_eq!(r.ledger().account(&address).nonce, 1, "replica {i}");
    }
}

/// A view change that cannot finish (two of four replicas are down, so no quorum forms) does
/// not flood: a replica's ViewChange goes out again less and less often, up to once per view
/// timeout, instead of at every status interval (at 16 replicas under load the resends, batches
/// and all, came to hundreds of megabytes per block). Once the others are back it completes.
#[test]
fn a_long_view_change_resends_its_view_change_less_and_less_often() {
    use quire_consensus::message::Kind;
    let mut c = Cluster::new(4);
    c.submit(4, Target::One(0));
    c.run(50);
    c.crash(0);
    c.crash(3);
    let before = c.sim.delivered(1, 2, Kind::ViewChange).0;
    let ticks = 3000;
    c.run(ticks);
    assert!(c.sim.replica(1).unwrap().is_changing_view());
    let sent = c.sim.delivered(1, 2, Kind::ViewChange).0 - before;
    let params = &c.sim.config().params;
    let every_status = ticks / params.status_interval_ticks;
    // New views (the timer doubles up to its cap) plus resends once per view timeout at most.
    let bound = ticks / params.view_timeout_max_ticks + 4 + ticks / params.view_timeout_ticks;
    eprintln!(
        "{sent} ViewChanges in {ticks} ticks (one per status interval would be {every_status})"
    );
    assert!(sent >= 2, "{sent} ViewChanges: it must still resend");
    assert!(
        sent <= bound,
        "{sent} ViewChanges in {ticks} ticks, bound {bound}"
    );
    c.restart(0);
    c.restart(3);
    c.run(3000);
    c.assert_all_executed();
}

/// PBFT's tentative execution (§5.1): a batch that 2f+1 replicas report prepared on top of their
/// executed head commits at that height, even when no Commit of its view ever arrives and the
/// primary that proposed it is gone. What a replica reports is what its durable prepared
/// certificate says, and only for the block after its head.
#[test]
fn a_batch_a_quorum_reports_prepared_commits_at_that_height() {
    use quire_consensus::Kind;
    let mut c = Cluster::with(4, |cfg| cfg.params.batch_timeout_ticks = 1);
    c.sim.lost_kinds.insert(Kind::Commit);
    c.submit(2, Target::One(0));
    c.run(1);
    c.submit(2, Target::One(0));
    c.run(20);
    let reports: Vec<_> = (0..4)
        .filter_map(|i| c.sim.replica(i).unwrap().prepared_next())
        .collect();
    assert_eq!(reports.len(), 4, "every replica prepared the first batch");
    assert!(reports.iter().all(|r| r.height == 1 && r.view == 0));
    assert!(reports.iter().all(|r| r.digest == reports[0].digest));
    assert!(
        reports
            .iter()
            .all(|r| r.parent == c.sim.net.genesis.block().header.hash())
    );
    // The second batch prepared too, but is not reported: the first is not executed yet.
    for i in 0..4 {
        assert_eq!(c.height(i), 0, "nothing commits without Commits");
        let log = c.sim.replica(i).unwrap();
        assert_eq!(log.prepared_next().map(|r| r.height), Some(1));
    }
    let ids: Vec<_> = reports[0].batch.txs.iter().map(|tx| tx.id()).collect();
    assert!(!ids.is_empty());

    c.crash(0);
    c.sim.lost_kinds.clear();
    c.run(800);
    for i in 1..4 {
        assert!(c.view(i) >= 1, "replica {i} moved past the crashed primary");
        let block = c.sim.stores[i as usize].block(1).unwrap().unwrap().block;
        let committed: Vec<_> = block.txs.iter().map(|tx| tx.id()).collect();
        assert_eq!(
            committed, ids,
            "replica {i} committed another batch at height 1"
        );
        let cert = block
            .certificate
            .expect("a decided block carries its certificate");
        assert_eq!(cert.statement.digest, reports[0].digest);
    }
}
