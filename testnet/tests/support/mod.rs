//! Real testnets for tests: `quire-node` processes over QUIC with RocksDB, in a temporary
//! directory with free ports, stopped when the test ends.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use quire_chain::genesis::ConsensusMode;
use quire_chain::pow::PowParams;
use quire_chain::{Address, Block, Hash, Keypair, Transaction, Transfer};
use quire_client::Client;
use quire_node::config::PowFile;
use quire_testnet::generate::Plan;
use quire_testnet::ops::{self, Testnet};
use quire_wire::rpc::{BlockRef, Request, Response};

/// The sum of the `/metrics` samples whose line starts with `name` (a series, or a family with
/// its labels cut short).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A 4-replica proof-of-work testnet that finds a block about every half second (four miners at
/// 20k hashes/s), final at `k` confirmations.
pub fn pow_plan(k: u32) -> Plan {
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
        confirmations: k,
        ..PowParams::for_hash_rate(4 * 20_000, 500)
    });
    plan
}

pub struct Net {
    pub tn: Testnet,
    pub client: Client,
    pub keys: Vec<Keypair>,
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.tn.stop_all();
        if std::env::var_os("QUIRE_KEEP_TESTNET").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "quire-it-{label}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub async fn start(label: &str, nodes: usize, accounts: usize) -> Net {
    start_with(
        label,
        Plan {
            nodes,
            accounts,
            base_port: 0,
            ..Plan::default()
        },
    )
    .await
}

pub async fn start_with(label: &str, plan: Plan) -> Net {
    start_at(temp_dir(label), plan).await
}

/// A testnet in `dir` (removed, with everything in it, when the test ends).
pub async fn start_at(dir: PathBuf, plan: Plan) -> Net {
    let tn = ops::up(&dir, &plan, &mut std::io::sink())
        .await
        .unwrap_or_else(|e| panic!("testnet did not come up in {}: {e:#}", dir.display()));
    let client = Client::new(tn.network.clone()).expect("client");
    let keys = (0..plan.accounts)
        .map(|i| tn.account_key(i).expect("account key"))
        .collect();
    Net {
        tn,
        client,
        keys,
        dir,
    }
}

impl Net {
    pub fn address(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    /// Signs a transfer locally with an explicit nonce.
    pub fn transfer(&self, from: usize, to: usize, amount: u64, nonce: u64) -> Transaction {
        Transfer {
            from: self.address(from),
            to: self.address(to),
            amount,
            nonce,
        }
        .sign(&self.keys[from], &self.tn.network.chain_id())
    }

    /// Submits through the client library (fail-over included), in chunks.
    pub async fn submit(&self, txs: &[Transaction]) {
        for chunk in txs.chunks(100) {
            let mut tries = 0;
            loop {
                match self.client.submit(chunk).await {
                    Ok(_) => break,
                    Err(e) if tries < 20 => {
                        tries += 1;
                        eprintln!("submit failed ({e}), retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => panic!("cannot submit: {e}"),
                }
            }
        }
    }

    /// A replica's view of itself (unverified; for test bookkeeping).
    pub async fn status(&self, i: u32) -> Option<quire_wire::rpc::NodeStatus> {
        match self.client.call(i, &Request::Status).await {
            Ok(Response::Status(s)) => Some(s),
            _ => None,
        }
    }

    pub async fn view(&self) -> u64 {
        let mut views = Vec::new();
        for i in 0..self.tn.n() {
            if let Some(s) = self.status(i).await {
                views.push(s.view);
            }
        }
        views.into_iter().max().unwrap_or(0)
    }

    pub async fn height(&self, i: u32) -> Option<u64> {
        self.status(i).await.map(|s| s.height)
    }

    /// Proven nonce of account `a`.
    pub async fn nonce(&self, a: usize) -> u64 {
        self.client
            .account(self.address(a))
            .await
            .map(|p| p.account.nonce)
            .unwrap_or(0)
    }

    /// Waits until `done` holds, re-checking every 200 ms, up to `limit`.
    pub async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !done().await {
            if start.elapsed() > limit {
                let mut report = String::new();
                for i in 0..self.tn.n() {
                    report += &format!("\n  replica {i}: {:?}", self.status(i).await);
                }
                panic!("timed out after {limit:?} waiting for {what}{report}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every block of replica `i`, from 1 to its head.
    pub async fn chain(&self, i: u32) -> Vec<Block> {
        let head = self.height(i).await.unwrap_or(0);
        let mut blocks = Vec::new();
        for h in 1..=head {
            match self
                .client
                .call(i, &Request::Block(BlockRef::Height(h)))
                .await
            {
                Ok(Response::Block { block: Some(b), .. }) => blocks.push(b),
                other => panic!("replica {i} block {h}: {other:?}"),
            }
        }
        blocks
    }

    /// Header hashes of replica `i` up to `to`.
    pub async fn hashes(&self, i: u32, to: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut from = 1;
        while from <= to {
            let count = (to - from + 1).min(512);
            match self.client.call(i, &Request::Headers { from, count }).await {
                Ok(Response::Headers(hs)) if !hs.is_empty() => {
                    from += hs.len() as u64;
                    out.extend(hs.iter().map(|(h, _)| h.hash()));
                }
                other => panic!("replica {i} headers from {from}: {other:?}"),
            }
        }
        out
    }

    /// Waits until every listed replica's status says it is at `height` or above. A client
    /// proves a commit once f+1 replicas attest it, and a replica's status is published every
    /// 50 ms: right after a proven commit, the statuses can still show the height before it.
    pub async fn wait_heights(&self, replicas: &[u32], height: u64) {
        self.wait_for(
            &format!("replicas {replicas:?} at height {height}"),
            Duration::from_secs(30),
            || async {
                let mut all = true;
                for i in replicas {
                    all &= self.height(*i).await.is_some_and(|h| h >= height);
                }
                all
            },
        )
        .await;
    }

    /// Waits until every listed replica is at the same height, then checks their chains are
    /// identical block by block.
    pub async fn assert_chains_identical(&self, replicas: &[u32]) -> u64 {
        let start = Instant::now();
        let height = loop {
            let mut heights = Vec::new();
            for i in replicas {
                heights.push(self.height(*i).await);
            }
            if let Some(Some(h)) = heights.first()
                && heights.iter().all(|x| *x == Some(*h))
            {
                break *h;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("replicas {replicas:?} never reached the same height: {heights:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let reference = self.hashes(replicas[0], height).await;
        for i in &replicas[1..] {
            assert_eq!(
                self.hashes(*i, height).await,
                reference,
                "replica {i} differs from {}",
                replicas[0]
            );
        }
        height
    }
}

/// A binary of the workspace (`quire`, `quire-testnet`): `$QUIRE_BIN_DIR/NAME`, else next to the
/// test executable's directory, where cargo puts the workspace's binaries.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("QUIRE_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("the test executable");
    let dir = exe.parent().expect("a directory");
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "cannot find the {name} binary next to {}: run `cargo build --workspace --bins` first",
        dir.display()
    );
}

/// What one run of a command printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs the `quire` CLI on this testnet's network file (off the async runtime).
pub async fn quire(net: &Net, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all: Vec<String> = vec![
        "--network".into(),
        net.tn.layout.network().display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bin = binary("quire");
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = std::process::Command::new(bin)
            .args(&all)
            .envs(env)
            .output()
            .expect("quire runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    })
    .await
    .expect("the command thread")
}
