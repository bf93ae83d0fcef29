//! The `quire` binary against fake replicas (three honest, one silent) through a real network
//! file: every command prints its verified result and exits 0.

// Tests may unwrap: a failure here is a failed test, not a user-facing error.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Role, World, fake_network};
use quire_client::network::{AccountEntry, NetworkFile, ReplicaEntry};

/// Writes genesis, account keys and the network file for `network` into a fresh directory.
fn write_network(world: &World, network: &quire_client::Network) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "quire-cli-net-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::create_dir_all(dir.join("accounts")).unwrap();
    fs::write(dir.join("genesis.toml"), world.net.genesis.to_toml()).unwrap();
    let mut accounts = Vec::new();
    for (i, key) in world.net.account_keys.iter().enumerate() {
        let rel = format!("accounts/account-{i}.toml");
        key.write_file(&dir.join(&rel)).unwrap();
        accounts.push(AccountEntry {
            name: format!("account-{i}"),
            key: rel,
            address: key.address().to_string(),
        });
    }
    let file = NetworkFile {
        chain_id: world.net.chain_id().to_hex(),
        genesis: "genesis.toml".into(),
        replicas: network
            .replicas
            .iter()
            .map(|r| ReplicaEntry {
                id: r.id,
                public_key: r.key.to_hex(),
                quic: r.quic.to_string(),
                http: r.http.to_string(),
                pid_file: None,
            })
            .collect(),
        accounts,
    };
    fs::write(dir.join("network.toml"), toml::to_string(&file).unwrap()).unwrap();
    dir
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the CLI off the async runtime, so the fake replicas keep serving meanwhile.
async fn quire(dir: &Path, args: &[&str]) -> Run {
    let network = dir.join("network.toml");
    let mut all: Vec<String> = vec![
        "--network".into(),
        network.display().to_string(),
        "--timeout-ms".into(),
        "500".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_quire"))
            .args(&all)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    })
    .await
    .unwrap()
}

fn assert_ok(run: &Run, expect: &[&str]) {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    for e in expect {
        assert!(
            run.stdout.contains(e),
            "{e:?} missing from:\n{}",
            run.stdout
        );
    }
}

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
