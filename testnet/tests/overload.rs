//! Overload costs a client a retry, not a replica its CPU: once half the mempool's early share
//! is taken, submissions are screened, and a transfer that arrives ahead of its sender's next
//! nonce with no room left in the share is refused before its signature is checked. Real
//! processes, QUIC, RocksDB; the proof that nothing was checked is a bad signature answered
//! `MempoolFull` (a checked one is answered `BadSignature`), and the replica's count of the
//! client signatures it checked.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use quire_chain::Transaction;
use quire_node::config::ParamsFile;
use quire_testnet::generate::Plan;
use quire_wire::rpc::{Refusal, Request, Response};

/// The mempool of each replica: its early share is a quarter of it (`EARLY_SHARE`).
const MEMPOOL_MAX: usize = 40;
const EARLY_SHARE_TXS: u64 = 10;

fn forged(tx: Transaction) -> Transaction {
    let Transaction::Transfer(mut signed) = tx else {
        panic!("a transfer was asked for");
    };
    signed.signature.0[0] ^= 1;
    Transaction::Transfer(signed)
}

/// Client signatures the replica checked at admission, from its `/metrics`.
fn signatures_checked(net: &support::Net, replica: u32) -> u64 {
    let text = net.tn.http(replica, "GET", "/metrics").unwrap();
    support::metric(&text, "quire_client_signatures_checked_total ")
}

async fn submit(net: &support::Net, to: u32, txs: Vec<Transaction>) -> Vec<Result<(), Refusal>> {
    match net.client.call(to, &Request::Submit(txs)).await.unwrap() {
        Response::Submitted(answers) => answers.into_iter().map(|a| a.map(|_| ())).collect(),
        other => panic!("a submission answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_transfers_are_refused_before_their_signatures_are_checked_once_the_share_is_taken() {
    let net = support::start_with(
        "overload",
        Plan {
            nodes: 4,
            accounts: 3,
            base_port: 0,
            params: ParamsFile {
                mempool_max: Some(MEMPOOL_MAX),
                ..ParamsFile::default()
            },
            ..Plan::default()
        },
    )
    .await;
    let primary = (net.view().await % 4) as u32;
    let next = net.nonce(1).await;

    // Before the share is taken, a forged early transfer has its signature checked.
    let answers = submit(
        &net,
        primary,
        vec![forged(net.transfer(1, 2, 1, next + 50))],
    )
    .await;
    assert_eq!(answers, vec![Err(Refusal::BadSignature)]);

    // Sender 1's next transfer never comes: these wait, early. Six take more than half the
    // share.
    const HALF_AND_ONE: u64 = EARLY_SHARE_TXS / 2 + 1;
    let early: Vec<Transaction> = (1..=HALF_AND_ONE)
        .map(|k| net.transfer(1, 2, 1, next + k))
        .collect();
    let answers = submit(&net, primary, early).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    // From half the share on, submissions are screened before their signatures are checked:
    // of ten forged early transfers, the four the share still has room for are checked (and
    // refused for their signatures), the other six are refused unchecked. (Waiting for the
    // share to be full let whole submissions be checked only to be refused.)
    let room = EARLY_SHARE_TXS - HALF_AND_ONE;
    let checked_before = signatures_checked(&net, primary);
    let answers = submit(
        &net,
        primary,
        (1..=10)
            .map(|k| forged(net.transfer(1, 2, 1, next + HALF_AND_ONE + k)))
            .collect(),
    )
    .await;
    let mut expected = vec![Err(Refusal::BadSignature); room as usize];
    expected.resize(10, Err(Refusal::MempoolFull));
    assert_eq!(answers, expected);
    assert_eq!(signatures_checked(&net, primary) - checked_before, room);

    // These take the rest of the share.
    let early: Vec<Transaction> = (HALF_AND_ONE + 1..=EARLY_SHARE_TXS)
        .map(|k| net.transfer(1, 2, 1, next + k))
        .collect();
    let answers = submit(&net, primary, early).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    // Now an early transfer is refused as the mempool's, unchecked: even a forged one. The
    // driver publishes the pool's state before it answers, so the first try sees the share
    // taken.
    let answers = submit(
        &net,
        primary,
        vec![
            forged(net.transfer(1, 2, 1, next + EARLY_SHARE_TXS + 1)),
            net.transfer(2, 0, 1, 7),
        ],
    )
    .await;
    assert_eq!(
        answers,
        vec![Err(Refusal::MempoolFull), Err(Refusal::MempoolFull)]
    );
    // What is not early is still checked, and the mempool takes it.
    let ready = net.nonce(2).await;
    let answers = submit(
        &net,
        primary,
        vec![
            forged(net.transfer(2, 0, 1, ready)),
            net.transfer(2, 0, 1, ready),
            net.transfer(2, 0, 1, ready + 1),
        ],
    )
    .await;
    assert_eq!(
        answers,
        vec![Err(Refusal::BadSignature), Ok(()), Ok(())],
        "the second follows the first, so it is not early"
    );
    net.wait_for(
        "the ready transfers to commit",
        Duration::from_secs(30),
        || async { net.nonce(2).await >= ready + 2 },
    )
    .await;
}
