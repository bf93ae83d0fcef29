//! `quire-testnet sim-pow`: the simulator's proof-of-work experiments, printed as tables beside
//! their closed forms (docs/pow.md has the models and the tables).

use std::fmt::Write as _;

use anyhow::{Result, bail};
use clap::Args;
use quire_sim::pow::{double_spend, network, selfish};

#[derive(Args, Debug, Clone)]
pub struct PowSimArgs {
    /// double-spend, selfish or network.
    pub experiment: String,
    /// Trials per (q, z) for double-spend; blocks per alpha for selfish; blocks for network.
    #[arg(long)]
    pub trials: Option<u64>,
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
    /// network: propagation delay in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
}

pub fn run(args: &PowSimArgs) -> Result<String> {
    let mut out = String::new();
    match args.experiment.as_str() {
        "double-spend" => {
            let trials = args.trials.unwrap_or(20_000);
            if trials == 0 {
                bail!("--trials must be positive");
            }
            let _ = writeln!(
                out,
                "double spending, merchant waits z confirmations; attacker share q, one block pre-mined, gives up {} behind; {trials} trials per cell, seed {}",
                double_spend::GIVE_UP,
                args.seed
            );
            let _ = writeln!(
                out,
                "| q | z | measured | analytical (model) | 99% interval | Rosenfeld | Nakamoto | inside |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
            for q in [0.1, 0.2, 0.3] {
                for z in 1..=6 {
                    let r = double_spend::run(q, z, trials, args.seed);
                    let _ = writeln!(
                        out,
                        "| {q} | {z} | {:.5} | {:.5} | [{:.5}, {:.5}] | {:.5} | {:.5} | {} |",
                        r.measured(),
                        r.analytical,
                        r.interval.0,
                        r.interval.1,
                        r.rosenfeld,
                        r.nakamoto,
                        if r.inside() { "yes" } else { "NO" }
                    );
                }
            }
        }
        "selfish" => {
            let blocks = args.trials.unwrap_or(40_000);
            let _ = writeln!(
                out,
                "selfish mining, γ = 0, fixed difficulty, {blocks} blocks per α, seed {}",
                args.seed
            );
            let _ = writeln!(
                out,
                "| α | pool's share of the main chain | Eyal & Sirer | difference |"
            );
            let _ = writeln!(out, "|---|---|---|---|");
            for alpha in [0.2, 0.25, 0.33, 0.4] {
                let r = selfish::run(alpha, blocks, args.seed);
                let _ = writeln!(
                    out,
                    "| {alpha} | {:.4} | {:.4} | {:+.4} |",
                    r.share,
                    r.formula,
                    r.share - r.formula
                );
            }
        }
        "network" => {
            let blocks = args.trials.unwrap_or(5_000);
            let r = network::run(4, args.delay_ms, 1000, blocks, args.seed);
            let _ = writeln!(
                out,
                "4 equal miners, T = 1000 ms, d = {} ms, {} blocks: stale rate {:.4} (1 − e^(−d/T) = {:.4}), {} reorgs, deepest {}, agreed below the tip: {}",
                r.delay_ms,
                r.blocks_found,
                r.stale_rate,
                r.approximation,
                r.reorgs,
                r.reorg_depth_max,
                r.agreed
            );
        }
        other => bail!("unknown experiment '{other}': double-spend, selfish or network"),
    }
    Ok(out)
}
