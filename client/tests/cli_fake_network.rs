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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_evidence_does_not_verify_is_named_in_the_output_and_json() {
    use common::Lie;
    // Only the liar answers: the command fails, and the JSON error names it.
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
    let dir = write_network(&world, &fake.network);
    let run = quire(&dir, &["--json", "balance", "account-0"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("replica 0:"), "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let faults = value["faults"].as_array().unwrap();
    assert!(
        faults
            .iter()
            .any(|f| f["replica"] == 0 && f["kind"] == "bad_evidence"),
        "{value}"
    );
    fs::remove_dir_all(&dir).unwrap();

    // The liar's outcome is weighed (two replicas are silent) and set aside by name; the honest
    // answer is shown.
    let fake = fake_network(
        &world,
        [
            Role::Liar(Lie::WrongOutcome),
            Role::Honest,
            Role::Silent,
            Role::Silent,
        ],
    );
    let dir = write_network(&world, &fake.network);
    let tx = world.tx().to_string();
    let run = quire(&dir, &["--json", "tx", &tx]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("set aside: replica 0:"),
        "{}",
        run.stderr
    );
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(value["status"], "committed");
    assert_eq!(value["outcome"]["kind"], "applied");
    assert_eq!(value["set_aside"][0]["replica"], 0);
    assert_eq!(value["set_aside"][0]["kind"], "bad_evidence");
    fs::remove_dir_all(&dir).unwrap();
}
