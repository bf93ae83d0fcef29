//! The `quire` binary against fake replicas (three honest, one silent) through a real network
//! file: every command prints its verified result and exits 0.

// Tests may unwrap: a failure here is a failed test, not a user-facing error.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use common::{Role, World, assert_ok, fake_network, quire, write_network};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_its_verified_result() {
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [Role::Honest, Role::Honest, Role::Honest, Role::Silent],
    );
    let dir = write_network(&world, &fake.network);
    let balance = quire_chain::testkit::TEST_BALANCE - 5;

    let run = quire(&dir, &["balance", "account-0"]).await;
    assert_ok(
        &run,
        &[&format!("balance   {balance}"), "nonce     1", "height 1"],
    );

    let run = quire(&dir, &["--json", "balance", "account-0"]).await;
    assert_ok(&run, &[]);
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(value["balance"], balance);

    let tx = world.tx().to_string();
    let run = quire(&dir, &["tx", &tx]).await;
    assert_ok(&run, &["status    committed", "outcome   applied"]);

    let run = quire(&dir, &["block", "latest"]).await;
    assert_ok(
        &run,
        &[
            "height        1",
            "txs           1",
            "signed by replicas 0, 1, 2",
        ],
    );

    let run = quire(&dir, &["status"]).await;
    assert_ok(&run, &["honest", "unreachable"]);

    let run = quire(&dir, &["verify-chain"]).await;
    assert_ok(&run, &["chain verified from genesis to height 1"]);

    let run = quire(
        &dir,
        &[
            "transfer",
            "--from",
            "account-0",
            "--to",
            "account-1",
            "--amount",
            "3",
        ],
    )
    .await;
    assert_ok(&run, &["tx        ", "submitted to replica"]);

    fs::remove_dir_all(&dir).unwrap();
}
