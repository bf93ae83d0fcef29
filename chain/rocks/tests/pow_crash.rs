//! Crash safety of proof-of-work reorgs on RocksDB: a child process keeps switching its main
//! chain between two competing branches (each a double spend of the other), and is killed with
//! SIGKILL at arbitrary moments, so many kills land in the middle of a reorg. After every kill
//! the store must reopen with a consistent head: a chain that links and meets its targets, whose
//! stored state is exactly what executing it from the genesis gives, and with at least the work
//! the child last reported durable.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quire_chain::Block;
use quire_chain::pow::{Limits, PowChain, PowParams, Received, Retarget};
use quire_chain::store::{MemoryStore, Store};
use quire_chain::testkit::{TestNet, easy_pow, mine};
use quire_rocks::RocksStore;

const CHILD_ENV: &str = "QUIRE_POW_CRASH_CHILD_DIR";

fn net() -> TestNet {
    let pow = PowParams {
        retarget: Retarget::Fixed,
        ..easy_pow(2)
    };
    TestNet::with_pow(4, 8, 0, pow)
}

/// A miner in memory that starts from the replica's main chain.
fn miner(net: &TestNet, from: &dyn Store) -> (MemoryStore, PowChain) {
    let store = MemoryStore::new(&net.genesis);
    let mut chain = PowChain::open(&net.genesis, &store, Limits::default()).unwrap();
    for h in 1..=from.head().height {
        let block = from.block(h).unwrap().unwrap().block;
        if let Received::NewHead(c) = chain.receive(&store, block, u64::MAX / 2).unwrap() {
            store.write_pow(&c.write).unwrap();
        }
    }
    (store, chain)
}

fn mine_on(net: &TestNet, m: &mut (MemoryStore, PowChain), count: usize, salt: u64) -> Vec<Block> {
    (0..count)
        .map(|i| {
            let head = *m.1.head();
            let from = ((head.height + salt + i as u64) % 8) as usize;
            let nonce =
                m.1.ledger()
                    .account(&net.account_keys[from].address())
                    .nonce;
            let tx = net.transfer(from, (from + 1 + salt as usize) % 8, 1 + salt, nonce);
            let block = mine(&mut m.1, &[tx], (salt % 4) as u32, head.timestamp_ms + 1);
            if let Received::NewHead(c) = m.1.receive(&m.0, block.clone(), u64::MAX / 2).unwrap() {
                m.0.write_pow(&c.write).unwrap();
            }
            block
        })
        .collect()
}

/// Not a test on its own: the body of the child process the crash test spawns and kills.
#[test]
#[ignore = "run by a_killed_replica_recovers_a_consistent_head_mid_reorg"]
fn pow_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let net = net();
    let store = RocksStore::open(Path::new(&dir), &net.genesis).expect("child opens the store");
    let mut replica = PowChain::open(&net.genesis, &store, Limits::default()).unwrap();
    loop {
        let mut a = miner(&net, &store);
        let mut b = miner(&net, &store);
        // A mines 1, B 2, A 2 more, B 2 more, …: the lead swaps every time and the replica
        // reorgs one block deeper each time.
        for round in 0..12u64 {
            let (m, salt) = if round % 2 == 0 {
                (&mut a, 1)
            } else {
                (&mut b, 2)
            };
            let count = if round == 0 { 1 } else { 2 };
            for block in mine_on(&net, m, count, salt) {
                match replica.receive(&store, block, u64::MAX / 2).unwrap() {
                    Received::NewHead(change) => {
                        store.write_pow(&change.write).expect("child writes");
                        println!(
                            "head {} depth {} work {}",
                            change.new_head.height,
                            change.depth(),
                            replica.head_work()
                        );
                    }
                    Received::Side => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
}

#[test]
fn a_killed_replica_recovers_a_consistent_head_mid_reorg() {
    let net = net();
    let dir = std::env::temp_dir().join(format!("quire-pow-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut seed = 7u64;
    let mut reorgs_seen = 0u64;
    let mut last_height = 0;
    for round in 0..12 {
        let mut child = Command::new(&exe)
            .args([
                "pow_crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reported: Arc<Mutex<(num_bigint::BigUint, u64)>> = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let seen = reported.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let ["head", _, "depth", depth, "work", work] = parts[..] {
                    let mut s = seen.lock().unwrap();
                    s.0 = work.parse().unwrap();
                    s.1 += u64::from(depth.parse::<u64>().unwrap() > 0);
                }
            }
        });
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(200 + (seed >> 33) % 300));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let (work, reorgs) = reported.lock().unwrap().clone();
        reorgs_seen += reorgs;

        let store = RocksStore::open(&dir, &net.genesis)
            .unwrap_or_else(|e| panic!("round {round}: store does not reopen: {e}"));
        let replica = PowChain::open(&net.genesis, &store, Limits::default())
            .unwrap_or_else(|e| panic!("round {round}: chain does not reopen: {e}"));
        assert!(
            *replica.head_work() >= work,
            "round {round}: the child reported work {work} durable, the store has {}",
            replica.head_work()
        );
        // The stored state is exactly what the stored chain gives from the genesis.
        let (_, mut fresh) = miner(&net, &store);
        assert_eq!(fresh.head().hash(), store.head().hash());
        assert_eq!(fresh.ledger_mut().state_root(), store.head().state_root);
        let mut stored = store.ledger(net.chain_id()).unwrap();
        assert_eq!(stored.state_root(), store.head().state_root);
        assert_eq!(stored.total_supply(), net.genesis.total_supply());
        last_height = store.head().height;
    }
    eprintln!("pow crash test: head {last_height}, {reorgs_seen} reorgs reported across 12 kills");
    assert!(
        reorgs_seen > 12,
        "the child reorged only {reorgs_seen} times"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
