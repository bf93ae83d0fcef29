//! Proof of work with real processes: a 4-replica PoW testnet (QUIC, RocksDB, real sha256
//! mining) commits transfers to k confirmations as the client verifies them itself; a replica
//! is killed and restarted and catches up; `check` passes. And PoW commands are refused on a
//! PBFT testnet with a clear error.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use quire_chain::genesis::ConsensusMode;
use quire_chain::pow::PowParams;
use quire_node::config::PowFile;
use quire_testnet::generate::Plan;
use quire_testnet::pow;

const K: u32 = 3;

fn plan() -> Plan {
    let mut plan = Plan {
        nodes: 4,
        accounts: 4,
        base_port: 0,
        pow_node: PowFile {
            hashes_per_s: 20_000,
            ..PowFile::default()
        },
        ..Plan::default()
    };
    plan.protocol.consensus = ConsensusMode::Pow;
    plan.pow = Some(PowParams {
        confirmations: K,
        ..PowParams::for_hash_rate(4 * 20_000, 500)
    });
    plan
}

/// Sends one transfer from each account (nonce `nonce`) and waits until the client finds each
/// `k` deep on the most-work chain it verified; records them as final for `check`.
async fn transfers_to_k(net: &support::Net, nonce: u64, live: &[usize]) {
    let txs: Vec<_> = live
        .iter()
        .map(|a| net.transfer(*a, (*a + 1) % 4, 10 + *a as u64, nonce))
        .collect();
    net.submit(&txs).await;
    for tx in &txs {
        let found = net
            .client
            .pow_wait_final(tx.id(), None, Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("transfer {} not final: {e}", tx.id()));
        assert!(found.confirmations >= K as u64 && found.is_final());
        pow::record_final(&net.tn, &found).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pow_testnet_commits_to_k_confirmations_and_a_restarted_replica_catches_up() {
    let net = support::start_with("pow", plan()).await;
    assert!(pow::is_pow(&net.tn));
    // Account 0 spent nonce 0 in `up`'s first transfer.
    transfers_to_k(&net, 1, &[0]).await;
    transfers_to_k(&net, 0, &[1, 2, 3]).await;

    net.tn.kill(2).unwrap();
    transfers_to_k(&net, 2, &[0]).await;
    let before = net.height(0).await.unwrap();
    net.tn.start(2).unwrap();
    net.wait_for("replica 2 to catch up", Duration::from_secs(60), || async {
        let h2 = net.height(2).await.unwrap_or(0);
        let h0 = net.height(0).await.unwrap_or(u64::MAX);
        h2 > before && h2 + 1 >= h0
    })
    .await;
    transfers_to_k(&net, 1, &[1, 2, 3]).await;

    let report = pow::check(&net.tn, &Default::default()).await.unwrap();
    eprintln!("{}", report.render());
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.finals_checked, 8);
    assert!(report.agreed_up_to >= 8);
}

/// A PoW command on a PBFT testnet, or a PBFT behaviour on a PoW one, gets a clear error from
/// the tool before any replica is asked (the replica's own refusal is tested in
/// `node/src/pow/admin.rs`). No processes: the testnet's files are enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pow_commands_are_refused_on_a_pbft_testnet() {
    let dir = support::temp_dir("pow-on-pbft");
    let layout = quire_testnet::layout::Layout::new(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    quire_testnet::generate::generate(
        &layout,
        &Plan {
            nodes: 4,
            accounts: 2,
            base_port: 0,
            ..Plan::default()
        },
    )
    .unwrap();
    let net = quire_testnet::ops::Testnet::open(&dir).unwrap();
    assert!(!pow::is_pow(&net));
    let err = pow::hashpower(&net, 0, 1000).unwrap_err().to_string();
    assert!(
        err.contains("needs a pow testnet") && err.contains("runs pbft"),
        "{err}"
    );
    let err = pow::set_behaviour(&net, 0, "selfish-mine")
        .unwrap_err()
        .to_string();
    assert!(err.contains("runs pbft"), "{err}");
    let err = pow::check(&net, &Default::default()).await.err().unwrap();
    assert!(err.to_string().contains("runs pbft"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
