//! What checking client signatures costs on one core, by how many are checked together
//! (`quire_chain::keys::verify_many`, the rule of `quire_chain::sig`; above
//! `quire_chain::sig::BATCH_CHUNK` it splits them). Prints figures; run with
//! `cargo run --release -p quire-chain --example signature_cost [SIGNATURES] [ROUNDS] [SIZES…]`.
//! The sizes are measured in turn, round after round, and each one's fastest and median round
//! printed: on a shared machine the fastest is the cost, the median what a busy minute adds.

use std::time::Instant;

use quire_chain::{Address, Hash, Keypair, Signature};

fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(8192);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    let mut sizes: Vec<usize> = args.filter_map(|s| s.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 16, 64, 85, 128, 192, 256, 384, 512, 1024];
    }
    let chain_id = Hash([7; 32]);
    let keys: Vec<Keypair> = (0..512).map(|_| Keypair::generate()).collect();
    let items: Vec<(Vec<u8>, Signature, Address)> = (0..total)
        .map(|i| {
            let k = &keys[i % keys.len()];
            let msg = format!("transfer {i}").into_bytes();
            let sig = k.sign("quire/v1/example", &chain_id, &msg);
            let signed = quire_chain::keys::signing_bytes("quire/v1/example", &chain_id, &msg);
            (signed, sig, k.address())
        })
        .collect();
    let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for _ in 0..rounds {
        for (size, times) in sizes.iter().zip(per_round.iter_mut()) {
            let start = Instant::now();
            let mut good = 0usize;
            for chunk in items.chunks((*size).max(1)) {
                good += quire_chain::keys::verify_many(chunk)
                    .into_iter()
                    .filter(|ok| *ok)
                    .count();
            }
            assert_eq!(good, total, "every signature is good");
            times.push(start.elapsed().as_secs_f64() * 1e6 / total as f64);
        }
    }
    println!(
        "{:>6} {:>14} {:>14} {:>12}",
        "batch", "µs/sig fastest", "µs/sig median", "sigs/s"
    );
    for (size, mut times) in sizes.into_iter().zip(per_round) {
        times.sort_by(f64::total_cmp);
        let (fastest, median) = (times[0], times[times.len() / 2]);
        println!(
            "{size:>6} {fastest:>14.2} {median:>14.2} {:>12.0}",
            1e6 / fastest
        );
    }
}
