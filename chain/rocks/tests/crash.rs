//! Crash safety of the RocksDB store: a child process commits blocks in a loop and is killed with
//! SIGKILL at arbitrary moments. After every kill the store must reopen with a head that is a
//! complete, verifying block, and no block the child reported as committed may be lost, whether
//! it was written with a synced consensus entry or alone, without a sync.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quire_chain::Batch;
use quire_chain::store::{Store, WriteSet};
use quire_chain::testkit::TestNet;
use quire_rocks::RocksStore;

const CHILD_ENV: &str = "QUIRE_CRASH_CHILD_DIR";

fn net() -> TestNet {
    TestNet::new(4, 8)
}

/// Not a test on its own: the body of the child process the crash test spawns and kills.
#[test]
#[ignore = "run by crash_test_sigkill_never_loses_a_committed_block"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let net = net();
    let store = RocksStore::open(Path::new(&dir), &net.genesis).expect("child opens the store");
    let mut ledger = store.ledger(net.chain_id()).expect("ledger");
    loop {
        let head = store.head();
        let mut txs: Vec<quire_chain::Transaction> = (0..20u64)
            .map(|i| {
                let from = ((head.height + i) % 8) as usize;
                let nonce = ledger.account(&net.account_keys[from].address()).nonce;
                // Each sender appears once per block, so its nonce is exactly the next one.
                net.transfer(from, (from + 1) % 8, 1 + i, nonce)
            })
            .take(8)
            .collect();
        let height = head.height + 1;
        // Every third block carries 70 KiB of payloads: its body goes to the body log.
        if height.is_multiple_of(3) {
            txs.extend((0..70u8).map(|i| quire_chain::Transaction::raw(vec![i; 1024])));
        }
        let batch = Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: head.height,
            txs,
        };
        // Every fourth block's batch is accepted first, in a synced write of its own, as a
        // replica accepts before it votes; the others bring their body with the block.
        if height.is_multiple_of(4) {
            let accepted = WriteSet {
                batches: vec![quire_chain::store::BatchBody {
                    seq: height,
                    digest: batch.digest(),
                    batch: std::sync::Arc::new(batch.clone()),
                }],
                consensus: vec![(b"acc".to_vec(), Some(height.to_be_bytes().to_vec()))],
                ..WriteSet::default()
            };
            store.write(&accepted).expect("child accepts");
        }
        let executed = net.certified_block(&mut ledger, &head, &batch);
        // Even heights come with a consensus entry (a synced write, as a vote's), odd ones alone
        // (a block by itself is written without a sync): a kill must lose neither.
        let consensus = if height.is_multiple_of(2) {
            vec![(b"last".to_vec(), Some(height.to_be_bytes().to_vec()))]
        } else {
            Vec::new()
        };
        let writes = WriteSet {
            blocks: vec![executed],
            consensus,
            ..WriteSet::default()
        };
        store.write(&writes).expect("child writes");
        println!("committed {height}");
    }
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn crash_test_sigkill_never_loses_a_committed_block() {
    let net = net();
    let dir = std::env::temp_dir().join(format!("quire-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut rng = SplitMix(42);
    let mut previous_head = 0;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
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
        let reported = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().unwrap();
        let seen = reported.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(h) = line.strip_prefix("committed ") {
                    seen.store(h.trim().parse().unwrap(), Ordering::SeqCst);
                }
            }
        });
        // Let it open the store and commit for a while, then kill it mid-whatever.
        std::thread::sleep(Duration::from_millis(150 + rng.next() % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let reported = reported.load(Ordering::SeqCst);

        let store = RocksStore::open(&dir, &net.genesis)
            .unwrap_or_else(|e| panic!("round {round}: store does not reopen: {e}"));
        let head = store.head();
        assert!(
            head.height >= reported,
            "round {round}: child reported block {reported} committed, store head is {}",
            head.height
        );
        assert!(
            head.height >= previous_head,
            "round {round}: head went backwards"
        );
        // Every block from genesis to the head is there, certified and linked, and the
        // transaction index (derived data, written behind the blocks) was rebuilt: every
        // transfer is found at its block.
        for h in 1..=head.height {
            let record = store.block(h).unwrap().unwrap();
            for tx in record
                .block
                .txs
                .iter()
                .filter(|tx| tx.as_transfer().is_some())
            {
                let at = store.tx_location(&tx.id()).unwrap();
                assert_eq!(
                    at.map(|at| at.height),
                    Some(h),
                    "round {round}: the index lost a transfer of block {h}"
                );
            }
            record
                .block
                .verify_certified(&net.chain_id(), &net.genesis.validators)
                .unwrap();
            assert_eq!(
                record.block.header.parent_hash,
                store.header(h - 1).unwrap().unwrap().hash()
            );
        }
        let mut ledger = store.ledger(net.chain_id()).unwrap();
        assert_eq!(ledger.state_root(), head.state_root);
        assert_eq!(ledger.total_supply(), net.genesis.total_supply());
        let entries: Vec<_> = store
            .consensus_entries()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.as_slice() == b"last")
            .collect();
        // The consensus entry is written in the same batch as its block: never one without the
        // other. The latest is that of the highest even height.
        let last_even = head.height - head.height % 2;
        if last_even == 0 {
            assert!(entries.is_empty());
        } else {
            assert_eq!(
                entries,
                vec![(b"last".to_vec(), last_even.to_be_bytes().to_vec())]
            );
        }
        previous_head = head.height;
    }
    eprintln!("crash test: {previous_head} blocks committed across 20 kills");
    assert!(
        previous_head > 20,
        "the child committed only {previous_head} blocks in 20 rounds"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
