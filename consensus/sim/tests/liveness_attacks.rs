//! The Byzantine behaviours that go for liveness rather than safety (PBFT.md, trap 12): each one
//! really sends what it claims to, with valid signatures, and the honest replicas go on
//! committing while it does.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_chain::Transaction;
use quire_consensus::message::{Kind, Message};
use quire_consensus::{Behaviour, Input, Output};
use support::Cluster;

/// Steps replica `i`'s actor by itself, tick after tick, until it sends messages that `wanted`
/// picks, and returns those. (The outputs are looked at, not carried out: for the others it is as
/// if those ticks had not happened.)
fn next_burst(c: &mut Cluster, i: u32, wanted: impl Fn(&Message) -> bool) -> Vec<Message> {
    let actor = c.sim.actors[i as usize].as_mut().unwrap();
    for t in 0..50 {
        let out = actor.step(Input::Tick {
            now_ms: 1_000_000 + t,
        });
        let picked: Vec<Message> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Broadcast(m) | Output::Send(_, m) if wanted(&m) => Some(m),
                _ => None,
            })
            .collect();
        if !picked.is_empty() {
            return picked;
        }
    }
    panic!("replica {i} sent nothing of the kind in 50 ticks");
}

/// Moves the cluster to view 1 (the primary cut off until the others replace it), with
/// transfers executed in both views; a checkpoint every 4 blocks.
fn after_a_view_change() -> Cluster {
    let mut c = Cluster::with(4, |cfg| {
        cfg.protocol.checkpoint_interval = 4;
        cfg.protocol.log_window = 16;
    });
    c.submit_to_all(12);
    c.run(100);
    c.isolate(0);
    c.submit_to_all(12);
    c.run(400);
    c.heal();
    c.run(200);
    assert!(c.view(1) >= 1, "no view change");
    c
}

/// forward-flood: Forwards of validly signed transactions that are already committed, plus
/// conflicting pairs and future nonces from a key nobody funded — and nothing stalls.
#[test]
fn forward_flood_sends_committed_conflicting_and_future_transactions() {
    let mut c = Cluster::new(4);
    c.make(2, Behaviour::ForwardFlood);
    c.submit_to_all(24);
    c.run(300);
    c.assert_all_executed();
    let accounts: Vec<_> = c.sim.net.account_keys.iter().map(|k| k.address()).collect();
    let out = next_burst(&mut c, 2, |m| {
        matches!(m, Message::Forward(f) if f.body.0.iter().any(|tx| {
            tx.as_transfer().is_some_and(|t| !accounts.contains(&t.transfer.from))
        }))
    });
    let Some(Message::Forward(f)) = out.first() else {
        panic!("no Forward: {out:?}");
    };
    let chain = c.sim.net.chain_id();
    let ledger = c.sim.checker.ledger();
    let mut committed = 0;
    let mut own = Vec::new();
    for tx in &f.body.0 {
        assert!(tx.verify_signature(&chain), "an invalid signature: {tx:?}");
        let Transaction::Transfer(t) = tx else {
            continue;
        };
        let from = t.transfer.from;
        if accounts.contains(&from) {
            if ledger.account(&from).nonce > t.transfer.nonce {
                committed += 1;
            }
        } else {
            assert_eq!(ledger.account(&from).balance, 0, "its own key is unfunded");
            own.push(t.transfer.nonce);
        }
    }
    assert!(committed > 0, "no committed transaction forwarded again");
    own.sort_unstable();
    assert!(own.windows(2).any(|w| w[0] == w[1]), "no conflicting pair");
    assert!(own.iter().any(|n| *n > 0), "no future nonce");
    // It goes on for a while; the honest replicas refuse what they have and keep executing.
    c.submit_to_all(24);
    c.run(400);
    c.assert_all_executed();
    let dropped: u64 = (0..2)
        .map(|i| {
            let r = c.sim.replica(i).unwrap();
            r.stats().drops.values().sum::<u64>()
        })
        .sum();
    assert!(dropped > 0);
}

/// replay: the NewView of the view, the replica's own ViewChanges (one for the view everyone is
/// already in among them) and its Checkpoints, sent again and again; all of it valid, all of
/// it stale, and the honest replicas keep executing.
#[test]
fn replay_sends_old_valid_view_changes_new_views_and_checkpoints() {
    let mut c = after_a_view_change();
    c.make(3, Behaviour::Replay);
    // A few blocks one after another: a checkpoint among them, which it signs and keeps.
    for _ in 0..5 {
        c.submit_to_all(3);
        c.run(40);
    }
    let mut kinds = std::collections::BTreeSet::new();
    let replayed = |m: &Message| {
        matches!(
            m,
            Message::NewView { .. } | Message::ViewChange { .. } | Message::Checkpoint(_)
        )
    };
    let archived = c.sim.actors[3].as_ref().unwrap().archived();
    assert!(archived >= 2, "{archived} messages archived");
    // Three bursts in a row (30 ticks on its own: less than a view timeout) go round the
    // archive once at least.
    for _ in 0..3 {
        for m in &next_burst(&mut c, 3, replayed) {
            if let Message::ViewChange { view_change, .. } = m {
                assert!(view_change.body.new_view <= c.view(3), "not a replay");
            }
            kinds.insert(m.kind());
        }
    }
    for kind in [Kind::NewView, Kind::ViewChange, Kind::Checkpoint] {
        assert!(kinds.contains(&kind), "no {kind:?} replayed: {kinds:?}");
    }
    c.submit_to_all(24);
    c.run(400);
    c.assert_all_executed();
    // What it replays reaches the honest replicas, and passes their boundary (it is all validly
    // signed): nobody blames it for anything.
    let (frames, _) = c.sim.delivered(3, 1, Kind::NewView);
    assert!(frames > 10, "{frames} NewViews replayed to replica 1");
    let blamed: u64 = c
        .sim
        .replica(1)
        .unwrap()
        .stats()
        .misbehaviour
        .values()
        .sum();
    assert_eq!(blamed, 0);
}

/// amplify: a Status claiming view 0 gets the whole NewView back, and FetchBlocks get blocks —
/// far more bytes than it sent, which it throws away unread; the honest replicas keep executing.
#[test]
fn amplify_gets_new_views_and_blocks_for_small_requests() {
    let mut c = after_a_view_change();
    c.make(3, Behaviour::Amplify);
    c.submit_to_all(24);
    c.run(600);
    c.assert_all_executed();
    let honest = [0u32, 1, 2];
    let (mut asked, mut answered) = (0, 0);
    for i in honest {
        for kind in [Kind::Status, Kind::FetchBlocks] {
            asked += c.sim.delivered(3, i, kind).1;
        }
        for kind in [Kind::NewView, Kind::Blocks] {
            answered += c.sim.delivered(i, 3, kind).1;
        }
    }
    assert!(
        c.sim.delivered(1, 3, Kind::NewView).0 > 0,
        "no NewView resent"
    );
    assert!(
        honest
            .iter()
            .any(|i| c.sim.delivered(*i, 3, Kind::Blocks).0 > 0),
        "no blocks served"
    );
    println!("amplify: {asked} bytes asked, {answered} bytes answered");
    assert!(asked > 0 && answered > 0);
}

/// slowloris attacks connections and bytes, which the simulator does not have: at the message
/// level a slowloris replica is honest, and it is treated as one.
#[test]
fn a_slowloris_replica_is_honest_at_the_message_level() {
    let mut c = Cluster::new(4);
    c.make(3, Behaviour::Slowloris);
    c.submit_to_all(24);
    c.run(400);
    c.assert_all_executed();
    c.assert_all_at(c.height(3));
}
