//! The first thing a user does, as a test: a 4-replica testnet of real processes over QUIC with
//! RocksDB; a thousand transfers; a backup killed with SIGKILL and restarted; the primary killed.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test
#![allow(clippy::needless_range_loop)] // accounts are indexed alongside their keys

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use quire_chain::TxId;
use support::Net;

const ACCOUNTS: usize = 10;
const PER_ACCOUNT: u64 = 100;

/// Each account sends PER_ACCOUNT transfers of amount 1..=PER_ACCOUNT to the next account, with
/// nonces `first..first + PER_ACCOUNT`.
fn round(net: &Net, first_nonce: u64) -> Vec<quire_chain::Transaction> {
    let mut txs = Vec::new();
    for k in 0..PER_ACCOUNT {
        for a in 0..ACCOUNTS {
            txs.push(net.transfer(a, (a + 1) % ACCOUNTS, 1 + (k % 7), first_nonce + k));
        }
    }
    txs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_testnet_commits_transfers_survives_crashes_and_replaces_its_primary() {
    let net = support::start("e2e", 4, ACCOUNTS).await;
    let mut start_balances = Vec::new();
    for a in 0..ACCOUNTS {
        start_balances.push(
            net.client
                .account(net.address(a))
                .await
                .unwrap()
                .account
                .balance,
        );
    }
    let first_nonces: Vec<u64> = {
        let mut v = Vec::new();
        for a in 0..ACCOUNTS {
            v.push(net.nonce(a).await);
        }
        v
    };
    assert!(
        first_nonces[1..].iter().all(|n| *n == 0),
        "{first_nonces:?}"
    );

    // 1,000 transfers through the client library. (Account 0 already sent the first transfer
    // of `up`, so its nonces start after it.)
    let mut txs = Vec::new();
    for k in 0..PER_ACCOUNT {
        for a in 0..ACCOUNTS {
            let nonce = first_nonces[a] + k;
            txs.push(net.transfer(a, (a + 1) % ACCOUNTS, 1 + (k % 7), nonce));
        }
    }
    assert_eq!(txs.len(), 1000);
    net.submit(&txs).await;
    for a in 0..ACCOUNTS {
        let want = first_nonces[a] + PER_ACCOUNT;
        net.wait_for(
            "all 1,000 transfers to commit",
            Duration::from_secs(120),
            || async { net.nonce(a).await >= want },
        )
        .await;
    }

    // Every one committed exactly once, and all chains identical.
    let height = net.assert_chains_identical(&[0, 1, 2, 3]).await;
    let chain = net.chain(0).await;
    assert_eq!(chain.len() as u64, height);
    let mut seen: BTreeMap<TxId, usize> = BTreeMap::new();
    for block in &chain {
        for tx in &block.txs {
            *seen.entry(tx.id()).or_default() += 1;
        }
    }
    for tx in &txs {
        assert_eq!(
            seen.get(&tx.id()),
            Some(&1),
            "transaction {} committed {:?} times",
            tx.id(),
            seen.get(&tx.id())
        );
    }
    // A follower that asks for ids only gets each block's ids, checkable against its header, and
    // nothing for a block not committed by the deadline.
    for block in chain.iter().rev().take(3) {
        let asked = quire_wire::rpc::Request::WaitBlockIds {
            height: block.header.height,
            wait_ms: 100,
        };
        let quire_wire::rpc::Response::BlockIds {
            header: Some(header),
            ids,
            attestation: Some(_),
        } = net.client.call(1, &asked).await.unwrap()
        else {
            panic!("no ids for block {}", block.header.height);
        };
        assert_eq!(header, block.header);
        assert_eq!(ids, block.txs.iter().map(|tx| tx.id()).collect::<Vec<_>>());
        let leaves: Vec<quire_chain::Hash> = ids.iter().map(|id| id.0).collect();
        assert_eq!(quire_chain::merkle::root(&leaves), header.tx_root);
    }
    let beyond = quire_wire::rpc::Request::WaitBlockIds {
        height: height + 1_000,
        wait_ms: 100,
    };
    assert!(matches!(
        net.client.call(1, &beyond).await.unwrap(),
        quire_wire::rpc::Response::BlockIds {
            header: None,
            attestation: None,
            ..
        }
    ));

    // Balances as expected: in the ring every account sent and received the same amounts.
    for (a, start) in start_balances.iter().enumerate() {
        let b = net
            .client
            .account(net.address(a))
            .await
            .unwrap()
            .account
            .balance;
        assert_eq!(b, *start, "account {a}");
    }

    // Prepared reports (PBFT's tentative execution point): a transfer submitted now is reported
    // by every replica under one (height, view, digest, parent), prepared or already committed,
    // and the block that commits there holds exactly the reported batch under that certificate.
    let next = net.transfer(0, 1, 1, net.nonce(0).await);
    let asked = quire_wire::rpc::Request::WaitPrepared {
        height: height + 1,
        wait_ms: 5_000,
    };
    let ask = |i: u32| net.client.call(i, &asked);
    let (a, b, c, d, ()) = tokio::join!(ask(0), ask(1), ask(2), ask(3), async {
        net.submit(std::slice::from_ref(&next)).await
    });
    let mut reports = Vec::new();
    for answer in [a, b, c, d] {
        match answer.unwrap() {
            quire_wire::rpc::Response::Prepared(Some(p)) => reports.push(p),
            other => panic!("no prepared report for height {}: {other:?}", height + 1),
        }
    }
    assert!(reports.iter().all(|p| p.key() == reports[0].key()));
    assert_eq!(reports[0].ids, vec![next.id()]);
    assert_eq!(reports[0].parent, chain.last().unwrap().header.hash());
    net.wait_for(
        "the transfer to commit",
        Duration::from_secs(30),
        || async { net.height(0).await > Some(height) },
    )
    .await;
    let block = net.chain(0).await.swap_remove(height as usize);
    assert_eq!(block.header.height, height + 1);
    assert_eq!(
        block.txs.iter().map(|tx| tx.id()).collect::<Vec<_>>(),
        reports[0].ids
    );
    let cert = block.certificate.unwrap().statement;
    assert_eq!(
        (cert.view, cert.digest),
        (reports[0].view, reports[0].digest)
    );
    let committed = quire_wire::rpc::Request::WaitPrepared {
        height: height + 1,
        wait_ms: 100,
    };
    match net.client.call(2, &committed).await.unwrap() {
        quire_wire::rpc::Response::Prepared(Some(p)) => {
            assert!(p.committed);
            assert_eq!(p.key(), reports[0].key());
        }
        other => panic!("no report for a committed block: {other:?}"),
    }

    // Kill -9 a backup, keep submitting, restart it: it catches up.
    let primary = (net.view().await % 4) as u32;
    let backup = (primary + 1) % 4;
    net.tn.kill(backup).unwrap();
    let txs = round(&net, first_nonces[1] + PER_ACCOUNT);
    let txs: Vec<_> = txs
        .into_iter()
        .enumerate()
        .filter_map(|(i, tx)| (i % ACCOUNTS != 0).then_some(tx))
        .collect();
    net.submit(&txs).await;
    for a in 1..ACCOUNTS {
        let want = first_nonces[a] + 2 * PER_ACCOUNT;
        net.wait_for(
            "transfers while a backup is down",
            Duration::from_secs(120),
            || async { net.nonce(a).await >= want },
        )
        .await;
    }
    net.tn.start(backup).unwrap();
    net.assert_chains_identical(&[0, 1, 2, 3]).await;

    // Kill the primary: a view change happens and transfers keep committing.
    let view_before = net.view().await;
    let primary = (view_before % 4) as u32;
    net.tn.kill(primary).unwrap();
    let sender = (1..ACCOUNTS).find(|a| *a as u32 != primary).unwrap_or(1);
    let nonce = net.nonce(sender).await;
    let more: Vec<_> = (0..20)
        .map(|k| net.transfer(sender, 0, 1, nonce + k))
        .collect();
    net.submit(&more).await;
    net.wait_for(
        "transfers after the primary died",
        Duration::from_secs(120),
        || async {
            // The client re-submits everywhere if the first replica was the dead primary's backlog.
            let _ = net.client.submit_everywhere(&more).await;
            net.nonce(sender).await >= nonce + 20
        },
    )
    .await;
    let live: Vec<u32> = (0..4).filter(|i| *i != primary).collect();
    assert!(
        net.view().await > view_before,
        "no view change after the primary died"
    );
    net.assert_chains_identical(&live).await;
}
