//! The client's read and write paths over real QUIC against honest fake replicas (one of four
//! silent): each verified result must come out, and an unreachable replica must not stall it.

// Tests may unwrap: a failure here is a failed test, not a user-facing error.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Role, World, fake_network, options, unused_hash};
use quire_chain::tx::Outcome;
use quire_client::{Client, ClientError, TransferStep, TxState};
use quire_wire::rpc::BlockRef;

fn setup() -> (Arc<World>, common::FakeNet) {
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [Role::Honest, Role::Honest, Role::Honest, Role::Silent],
    );
    (world, fake)
}

#[tokio::test]
async fn tx_status_proves_a_commit_and_reports_unknown_transactions() {
    let (world, fake) = setup();
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let started = std::time::Instant::now();
    let report = client.tx_status(world.tx()).await.unwrap();
    let TxState::Committed(c) = report.state else {
        panic!("{:?}", report.state);
    };
    assert_eq!((c.height, c.index, c.outcome), (1, 0, Outcome::Applied));
    // Proven by the first answers in: the silent replica's timeout is not waited out.
    assert!(
        started.elapsed() < options().call_timeout,
        "{:?}",
        started.elapsed()
    );
    // An unknown transaction needs n - f answers: the silent replica is not waited out.
    let started = std::time::Instant::now();
    let report = client.tx_status(unused_hash()).await.unwrap();
    assert!(matches!(report.state, TxState::Unknown));
    assert_eq!(report.answered, vec![0, 1, 2]);
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert!(
        started.elapsed() < options().call_timeout,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn blocks_are_verified_at_any_height() {
    let (world, fake) = setup();
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    for _ in 0..4 {
        let latest = client.block(BlockRef::Latest).await.unwrap();
        assert_eq!(latest.block, world.record.block);
        assert!(latest.attesters.len() >= 2);
    }
    let genesis = client.block(BlockRef::Height(0)).await.unwrap();
    assert_eq!(genesis.block, world.net.genesis.block());
    let err = client.block(BlockRef::Height(9)).await.unwrap_err();
    assert!(matches!(err, ClientError::Unverified { .. }), "{err}");
}

#[tokio::test]
async fn the_chain_verifies_from_genesis() {
    let (world, fake) = setup();
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let report = client.verify_chain().await.unwrap();
    assert_eq!(report.height, 1);
    assert_eq!(report.head_hash, world.head().hash());
    assert_eq!(report.checkpoint, Some(1));
    assert_eq!(
        report.checkpoint_certificate,
        Some(world.checkpoint.clone())
    );
    assert!(report.attesters.len() >= 2);
}

#[tokio::test]
async fn status_lists_every_replica_and_the_silent_one_as_unreachable() {
    let (_world, fake) = setup();
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let all = client.status_all().await;
    assert_eq!(
        all.iter().map(|s| s.replica).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(all[..3].iter().all(|s| s.status.is_ok()));
    assert!(all[3].status.is_err());
}

#[tokio::test]
async fn a_transfer_reads_the_proven_nonce_and_is_accepted() {
    let (world, fake) = setup();
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let from = &world.net.account_keys[0];
    let to = world.net.account_keys[1].address();
    let receipt = client.transfer(from, to, 3, None).await.unwrap();
    // Account 0 sent one transfer in block 1, so its next nonce is 1.
    assert_eq!(receipt.nonce, 1);
    assert!(receipt.committed.is_none());
    // Sent to f+1 replicas at once; the first to accept is named.
    let TransferStep::Submitted {
        sent_to,
        accepted_by,
        ..
    } = &receipt.steps[0]
    else {
        panic!("{:?}", receipt.steps);
    };
    assert_eq!(sent_to.len(), 2, "{sent_to:?}");
    assert!(!accepted_by.is_empty() && accepted_by.iter().all(|r| sent_to.contains(r)));
    // The fakes never hold or commit it: the client notices it is dropped, submits the same
    // transaction again (the nonce makes that safe), and ends with a clear error.
    let mut pending = client.start_transfer(from, to, 3).await.unwrap();
    let err = client
        .finish_transfer(&mut pending, Duration::from_millis(1500))
        .await
        .unwrap_err();
    let ClientError::NotCommitted { resubmissions, .. } = &err else {
        panic!("{err}");
    };
    assert!(*resubmissions >= 1, "{err}");
    assert!(pending.steps.iter().any(|s| matches!(
        s,
        TransferStep::Resubmitted { dropped: true, tx, .. } if *tx == pending.id()
    )));
}
