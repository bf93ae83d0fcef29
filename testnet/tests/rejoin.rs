//! PBFT.md trap 11 on real processes: a replica cut off for a few seconds times out and moves to
//! the next view alone. After the heal it must vote again — its signature in new commit
//! certificates — within the bound of the scheduled rotation: `rotation_blocks` blocks (40 here), rounded up to a checkpoint,
//! and one view change. Without the rotation it would sit out until the next natural view change,
//! and the cluster would run with no spare fault.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::time::{Duration, Instant};

use quire_chain::genesis::Protocol;
use quire_testnet::generate::Plan;
use quire_wire::rpc::{BlockRef, Request, Response};

const ROTATION_BLOCKS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_partitioned_alone_votes_again_within_a_rotation() {
    let net = support::start_with(
        "rejoin",
        Plan {
            nodes: 4,
            accounts: 4,
            base_port: 0,
            protocol: Protocol {
                rotation_blocks: ROTATION_BLOCKS,
                ..Protocol::default()
            },
            ..Plan::default()
        },
    )
    .await;
    let mut nonce = [0u64; 4];
    let mut send = |net: &support::Net, count: usize| {
        let txs: Vec<_> = (0..count)
            .map(|i| {
                let a = i % 4;
                nonce[a] += 1;
                net.transfer(a, (a + 1) % 4, 1, nonce[a] - 1)
            })
            .collect();
        txs
    };
    net.submit(&send(&net, 8)).await;
    // Past the start-up grace (three view timeouts), so silence counts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    net.tn.partition(&[vec![0, 1, 2]]).unwrap();
    net.wait_for(
        "replica 3 to leave view 0",
        Duration::from_secs(30),
        || async { net.status(3).await.is_some_and(|s| s.view > 0) },
    )
    .await;
    net.tn.heal().unwrap();
    let lone = net.status(3).await.unwrap();
    let others = net.status(0).await.unwrap();
    assert!(
        lone.changing_view,
        "replica 3 should be waiting in its view: {lone:?}"
    );
    assert!(lone.view > others.view, "{lone:?} vs {others:?}");
    let healed_at = others.height;
    let healed = Instant::now();

    // Steady load: a block every ~100 ms.
    let mut voted_at = None;
    let mut shown = Instant::now();
    while healed.elapsed() < Duration::from_secs(90) {
        if shown.elapsed() > Duration::from_secs(5) {
            shown = Instant::now();
            for i in 0..4 {
                let s = net.status(i).await;
                eprintln!(
                    "  {i}: {:?}",
                    s.map(|s| (s.view, s.changing_view, s.height))
                );
            }
        }
        // Straight to a replica of the majority: this test is about replica 3's votes, not
        // about how a client finds a replica that can order its transfer.
        let txs = send(&net, 2);
        let _ = net.client.call(0, &Request::Submit(txs)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let head = net.height(0).await.unwrap_or(0);
        if let Ok(Response::Block { block: Some(b), .. }) = net
            .client
            .call(0, &Request::Block(BlockRef::Height(head)))
            .await
            && b.certificate
                .as_ref()
                .is_some_and(|c| c.votes.iter().any(|v| v.replica == 3))
            && head > healed_at
        {
            voted_at = Some((head, healed.elapsed()));
            break;
        }
    }
    let (height, after) = voted_at.expect("replica 3 never voted again");
    eprintln!(
        "replica 3 voted again at height {height}, {} blocks and {:.1} s after the heal",
        height - healed_at,
        after.as_secs_f64()
    );
    // The bound: the next rotation point (the first checkpoint at or after a multiple of
    // ROTATION_BLOCKS: at most ROTATION_BLOCKS + K blocks away) plus a view change, and a few
    // blocks of slack for the view change's own proposals.
    let k = Protocol::default().checkpoint_interval;
    assert!(
        height - healed_at <= ROTATION_BLOCKS + k + 8,
        "voted again {} blocks after the heal",
        height - healed_at
    );
    net.assert_chains_identical(&[0, 1, 2, 3]).await;
}
