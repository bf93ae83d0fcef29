//! What executing a block costs on one core, without signatures (their verdicts are given, as a
//! replica's verification pool gives them): applying transfers to the ledger, and the state
//! tree's new root. Prints figures; run with
//! `cargo run --release -p quire-chain --example execution_cost [ACCOUNTS] [TX_PER_BLOCK] [BLOCKS]`.

use std::time::Instant;

use quire_chain::ledger::{Account, Ledger};
use quire_chain::tx::SignedTransfer;
use quire_chain::{Hash, Keypair, Transaction, Transfer};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (accounts, per_block, blocks) = (arg(1, 512), arg(2, 100), arg(3, 2000));
    let chain_id = Hash([7; 32]);
    let keys: Vec<Keypair> = (0..accounts).map(|_| Keypair::generate()).collect();
    let mut ledger = Ledger::new(
        chain_id,
        keys.iter().map(|k| {
            (
                k.address(),
                Account {
                    balance: u64::MAX / 4,
                    nonce: 0,
                },
            )
        }),
    );
    ledger.state_root();
    // Round robin, one unit to the next account: the benchmark's transfer workload.
    let mut nonces = vec![0u64; accounts];
    let mut made = 0usize;
    let signature = {
        let t = Transfer {
            from: keys[0].address(),
            to: keys[0].address(),
            amount: 1,
            nonce: 0,
        };
        match t.sign(&keys[0], &chain_id) {
            Transaction::Transfer(t) => t.signature,
            Transaction::Raw(_) => unreachable!("a signed transfer"),
        }
    };
    let block_txs: Vec<Vec<Transaction>> = (0..blocks)
        .map(|_| {
            (0..per_block)
                .map(|_| {
                    let from = made % accounts;
                    made += 1;
                    let nonce = nonces[from];
                    nonces[from] += 1;
                    Transaction::Transfer(SignedTransfer::new(
                        Transfer {
                            from: keys[from].address(),
                            to: keys[(from + 1) % accounts].address(),
                            amount: 1,
                            nonce,
                        },
                        signature,
                    ))
                })
                .collect()
        })
        .collect();
    let ok = vec![true; per_block];
    let (mut apply_s, mut root_s) = (0.0, 0.0);
    let mut applied = 0usize;
    for txs in &block_txs {
        let t0 = Instant::now();
        let (outcomes, _) = ledger.apply(txs, &ok);
        let t1 = Instant::now();
        std::hint::black_box(ledger.state_root());
        let t2 = Instant::now();
        apply_s += (t1 - t0).as_secs_f64();
        root_s += (t2 - t1).as_secs_f64();
        applied += outcomes
            .iter()
            .filter(|o| matches!(o, quire_chain::tx::Outcome::Applied))
            .count();
    }
    let t0 = Instant::now();
    let copy = std::hint::black_box(ledger.clone());
    let clone_s = t0.elapsed().as_secs_f64();
    drop(copy);
    let n = (blocks * per_block) as f64;
    println!(
        "{accounts} accounts, {per_block} transfers a block, {blocks} blocks ({applied} applied): \
         apply {:.2} µs a transfer, state root {:.2} µs a transfer, {:.1} µs a block in all; \
         copying the ledger {:.2} ms",
        apply_s / n * 1e6,
        root_s / n * 1e6,
        (apply_s + root_s) / blocks as f64 * 1e6,
        clone_s * 1e3
    );
}
