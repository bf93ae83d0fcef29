//! A Byzantine replica answering over real QUIC must not make the client report its lie.
//!
//! Replica 0 lies, replicas 1 and 2 are honest, replica 3 does not answer at all. Whatever
//! replica the client starts from, it must return the honest answer (through fail-over) or an
//! error, never the liar's.

// Tests may unwrap: a failure here is a failed test, not a user-facing error.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Lie, Role, World, fake_network, options};
use quire_chain::tx::Outcome;
use quire_client::{Client, ClientError, TransferStep, TxState};

async fn balance_lie_is_never_returned(lie: Lie) {
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [Role::Liar(lie), Role::Honest, Role::Honest, Role::Silent],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let address = world.net.account_keys[0].address();
    let honest = world.ledger.clone().prove(&address).0;
    // Round-robin start: four calls start once from each replica, the liar included.
    for _ in 0..4 {
        match client.account(address).await {
            Ok(proven) => {
                assert_eq!(proven.account, honest);
                assert_eq!(proven.header, world.head());
                assert!(proven.attesters.len() >= 2 && !proven.attesters.contains(&3));
            }
            Err(e) => panic!("the honest answer was lost: {e}"),
        }
    }
}

#[tokio::test]
async fn a_wrong_balance_from_a_lying_replica_is_not_believed() {
    balance_lie_is_never_returned(Lie::WrongBalance).await;
}

#[tokio::test]
async fn a_forged_state_attested_only_by_the_liar_is_not_believed() {
    balance_lie_is_never_returned(Lie::ForgedHeader).await;
}

#[tokio::test]
async fn with_only_the_liar_reachable_the_client_reports_an_error() {
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::ForgedHeader),
            Role::Silent,
            Role::Silent,
            Role::Silent,
        ],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let err = client
        .account(world.net.account_keys[0].address())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Unverified { .. }), "{text}");
    assert!(
        text.contains("replica 0: only 1 distinct validators attest block 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_false_outcome_from_one_replica_is_outvoted() {
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::WrongOutcome),
            Role::Honest,
            Role::Honest,
            Role::Silent,
        ],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let report = client.tx_status(world.tx()).await.unwrap();
    let TxState::Committed(committed) = report.state else {
        panic!("not proven committed: {:?}", report.state);
    };
    assert_eq!(committed.outcome, Outcome::Applied);
    // The lie cannot be proven against the attested header's outcomes root; if the liar's
    // answer came in before the proof was complete, it is set aside by name.
    for fault in &report.faults {
        assert_eq!(fault.replica(), 0, "{fault}");
        assert!(fault.to_string().contains("outcome proof"), "{fault}");
    }
}

#[tokio::test]
async fn a_replica_whose_outcome_does_not_verify_is_named_and_skipped() {
    // The liar's answer is needed to reach f+1 attestations (two replicas are silent), so it is
    // always weighed: its header attestation is true and counts, its outcome is set aside.
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::WrongOutcome),
            Role::Honest,
            Role::Silent,
            Role::Silent,
        ],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let report = client.tx_status(world.tx()).await.unwrap();
    let TxState::Committed(committed) = report.state else {
        panic!("not proven committed: {:?}", report.state);
    };
    assert_eq!(committed.outcome, Outcome::Applied);
    let named: Vec<_> = report
        .faults
        .iter()
        .filter(|f| f.kind() == "bad_evidence")
        .collect();
    assert_eq!(named.len(), 1, "{:?}", report.faults);
    assert_eq!(named[0].replica(), 0);
}

#[tokio::test]
async fn a_lone_liar_cannot_make_a_commit() {
    // Only the liar has the transaction: its claim carries one validator's word, not f+1.
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::WrongOutcome),
            Role::Silent,
            Role::Silent,
            Role::Silent,
        ],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let report = client.tx_status(world.tx()).await.unwrap();
    assert!(
        matches!(report.state, TxState::Unknown),
        "{:?}",
        report.state
    );
    assert!(
        report
            .faults
            .iter()
            .any(|f| f.replica() == 0 && f.kind() == "bad_evidence"),
        "{:?}",
        report.faults
    );
}

#[tokio::test]
async fn replicas_that_only_claim_a_nonce_is_used_cannot_make_the_client_sign_again() {
    // Signing the transfer again with another nonce is safe only once the sender's proven state
    // shows the nonce used: a refusal is a claim, and here the proven nonce is still free.
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::StaleNonce),
            Role::Liar(Lie::StaleNonce),
            Role::Silent,
            Role::Silent,
        ],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let from = &world.net.account_keys[0];
    let to = world.net.account_keys[1].address();
    let err = client.start_transfer(from, to, 3).await.unwrap_err();
    let ClientError::Refused { refusals, .. } = &err else {
        panic!("{err}");
    };
    assert!(refusals.iter().all(|r| r.replica < 2), "{err}");
}

/// One replica reporting the client's transfer prepared, and then committed, is one report, not
/// a quorum: the transfer is never said to be decided, nor believed committed.
#[tokio::test]
async fn one_replica_saying_a_transfer_prepared_and_committed_decides_nothing() {
    let world = Arc::new(World::new());
    let from = &world.net.account_keys[0];
    let to = world.net.account_keys[1].address();
    // What the client will sign: account 0's next nonce is 1 (it sent one transfer in block 1).
    let tx = quire_chain::tx::Transfer {
        from: from.address(),
        to,
        amount: 3,
        nonce: 1,
    }
    .sign(from, &world.net.chain_id());
    world.watched.set(tx.id()).unwrap();
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::PreparedAlone),
            Role::Honest,
            Role::Honest,
            Role::Honest,
        ],
    );
    let client = Client::with_options(fake.network.clone(), options()).unwrap();
    let mut pending = client.start_transfer(from, to, 3).await.unwrap();
    assert_eq!(pending.id(), tx.id());
    let mut told = Vec::new();
    let err = client
        .finish_transfer_with(
            &mut pending,
            std::time::Duration::from_millis(1200),
            &mut |step| told.push(step.clone()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotCommitted { .. }), "{err}");
    assert!(
        world
            .reports_sent
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the liar was never asked: the test tests nothing"
    );
    assert!(pending.decided().is_none(), "{:?}", pending.steps);
    assert!(
        !told
            .iter()
            .any(|s| matches!(s, TransferStep::Decided { .. })),
        "{told:?}"
    );
}
