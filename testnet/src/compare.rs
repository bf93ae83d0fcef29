//! `quire-testnet compare`: the same load (rate, duration, n) on a PBFT testnet and then on a
//! proof-of-work testnet, on the same code, and a report folder (`report.md`) with the
//! measurements side by side: committed tx/s, submit→final latency (PBFT: certified commit; PoW:
//! k = 1, 3, 6), stale blocks against `1 − e^(−d/T)`, reorg depths, transactions orphaned and
//! re-included, hashes per committed transaction, messages and bytes per committed block; plots
//! (`latency.svg`, `committed.svg`) and, with `--attack`, the [`attack`] section and `attack.svg`.

pub mod attack;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use quire_chain::genesis::ConsensusMode;
use quire_chain::pow::PowParams;
use quire_chain::{Hash, Transaction, Transfer, TxId};
use quire_client::Client;
use quire_node::config::PowFile;
use quire_wire::rpc::{BlockRef, Request, Response};

use crate::bench::{self, BenchArgs, Target, Workload};
use crate::generate::Plan;
use crate::ops::{self, Testnet};

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Offered load, transfers per second (the same for both).
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Sending accounts.
    #[arg(long, default_value_t = 64)]
    pub accounts: usize,
    /// Proof of work: each miner's hash rate.
    #[arg(long, default_value_t = quire_chain::pow::params::DEFAULT_HASHES_PER_S)]
    pub hash_rate: u64,
    /// Proof of work: target block interval.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// The report folder (default: DIR/compare/<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also: PBFT with f equivocators and PoW with a 30% double-spender (k = 1 and k = 6), then
    /// a partition and a heal on each.
    #[arg(long)]
    pub attack: bool,
    /// With --attack: double-spend races per k.
    #[arg(long, default_value_t = 1)]
    pub attack_trials: usize,
}

/// Sums of a counter over every replica's `/metrics` (labelled series included).
fn metric_sum(texts: &[String], name: &str) -> f64 {
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every replica's `/metrics` text (empty for one that does not answer).
fn metrics(net: &Testnet) -> Vec<String> {
    metrics_of(net, 0..net.n())
}

/// The `/metrics` texts of `replicas`.
fn metrics_of(net: &Testnet, replicas: impl Iterator<Item = u32>) -> Vec<String> {
    replicas
        .map(|i| net.http(i, "GET", "/metrics").unwrap_or_default())
        .collect()
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i.min(values.len() - 1)]
}

struct PbftSide {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    blocks: u64,
    frames_per_block: f64,
    bytes_per_block: f64,
}

struct PowSide {
    committed: u64,
    tps: f64,
    latency_ms: BTreeMap<u64, (f64, f64)>,
    /// Every measured latency at k, sorted.
    latency_samples_ms: BTreeMap<u64, Vec<f64>>,
    /// (seconds since the load started, transfers of the load on the final chain by then).
    committed_over_time: Vec<(f64, f64)>,
    /// (seconds since the load started, replica 1's height).
    height_over_time: Vec<(f64, f64)>,
    duration_s: f64,
    blocks: u64,
    stale_rate: f64,
    interval_ms: f64,
    delay_ms: f64,
    reorg_depths: BTreeMap<String, f64>,
    returned: f64,
    reincluded: f64,
    reversed: f64,
    hashes_per_tx: f64,
    frames_per_block: f64,
    bytes_per_block: f64,
}

pub async fn run(dir: &Path, args: &CompareArgs, out: &mut dyn Write) -> Result<PathBuf> {
    if args.rate == 0 || args.duration == 0 || args.accounts == 0 {
        bail!("--rate, --duration and --accounts must be positive");
    }
    let folder = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        dir.join("compare").join(secs.to_string())
    });
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    writeln!(
        out,
        "PBFT: {} replicas, {} tx/s for {} s",
        args.nodes, args.rate, args.duration
    )?;
    let pbft = pbft_side(dir, args, out).await?;
    writeln!(
        out,
        "proof of work: {} replicas, {} tx/s for {} s",
        args.nodes, args.rate, args.duration
    )?;
    let pow = pow_side(dir, args, out).await?;
    let mut report = render(args, &pbft, &pow);
    write_svg(&folder, "latency.svg", &latency_figure(&pbft, &pow))?;
    write_svg(
        &folder,
        "committed.svg",
        &committed_figure(&pow, args.duration as f64),
    )?;
    if args.attack {
        let phases = attack::Phases::for_args(args);
        writeln!(
            out,
            "under attack: PBFT with f equivocators, then a partition"
        )?;
        let pbft_attack = attack::pbft(dir, args, phases).await?;
        writeln!(
            out,
            "under attack: proof of work with a 30% double-spender, then a partition"
        )?;
        let pow_attack = attack::pow(dir, args, phases, args.attack_trials).await?;
        report.push_str(&attack::render(&pbft_attack, &pow_attack, 10));
        write_svg(
            &folder,
            "attack.svg",
            &attack::figure(&pbft_attack, &pow_attack),
        )?;
    }
    let path = folder.join("report.md");
    std::fs::write(&path, &report).with_context(|| format!("cannot write {}", path.display()))?;
    write!(out, "{report}")?;
    writeln!(out, "report written to {}", path.display())?;
    Ok(folder)
}

async fn pbft_side(dir: &Path, args: &CompareArgs, out: &mut dyn Write) -> Result<PbftSide> {
    let bench_args = BenchArgs {
        nodes: args.nodes,
        rate: args.rate,
        duration: args.duration,
        workload: Workload::Transfer,
        tx_size: 512,
        accounts: args.accounts,
        batch: None,
        pipeline: None,
        eager_depth: None,
        batch_timeout_ticks: None,
        batch_timeout_max_ticks: None,
        rotation_blocks: None,
        target: Target::Primary,
        out: Some(dir.join("compare").join("pbft-bench.json")),
        keep: false,
        sweep: false,
        rates: Vec::new(),
        knee_p99_ms: 100.0,
        overload: false,
        catchup: None,
        mempool: 100_000,
        verify_threads: 1,
        decided: false,
    };
    let p = bench::run(dir, &bench_args, out).await?.point;
    Ok(PbftSide {
        tps: p.committed_tps,
        p50_ms: p.latency_p50_ms,
        p99_ms: p.latency_p99_ms,
        max_ms: p.latency_max_ms,
        blocks: p.blocks,
        frames_per_block: p.messages_per_block.values().sum(),
        bytes_per_block: p.bytes_per_block.values().sum(),
    })
}

/// The testnet a comparison runs on: `args`'s size and accounts (plus the faucet), quiet logs,
/// and for proof of work each miner at `args.hash_rate` with the genesis retargeted to it.
pub(crate) fn testnet_plan(args: &CompareArgs, consensus: ConsensusMode) -> Plan {
    let mut plan = Plan {
        nodes: args.nodes,
        accounts: args.accounts + 1,
        base_port: 0,
        log: "warn".into(),
        ..Plan::default()
    };
    plan.protocol.consensus = consensus;
    if consensus == ConsensusMode::Pow {
        plan.pow_node = PowFile {
            hashes_per_s: args.hash_rate,
            ..PowFile::default()
        };
        plan.pow = Some(PowParams::for_hash_rate(
            args.hash_rate.saturating_mul(args.nodes as u64),
            args.interval_ms,
        ));
    }
    plan
}

async fn pow_side(dir: &Path, args: &CompareArgs, out: &mut dyn Write) -> Result<PowSide> {
    let run_dir = dir
        .join("compare")
        .join(format!("pow-{}", std::process::id()));
    let plan = testnet_plan(args, ConsensusMode::Pow);
    let net = ops::up(&run_dir, &plan, &mut std::io::sink()).await?;
    let result = measure_pow(&net, args, out).await;
    net.stop_all()?;
    let _ = std::fs::remove_dir_all(&run_dir);
    result
}

async fn measure_pow(net: &Testnet, args: &CompareArgs, out: &mut dyn Write) -> Result<PowSide> {
    let client = Arc::new(Client::new(net.network.clone())?);
    let chain_id = net.network.genesis.chain_id();
    // Accounts 1.. (account 0 made `up`'s first transfer): sequential nonces from 0.
    let keys: Vec<_> = (1..=args.accounts)
        .map(|i| net.account_key(i))
        .collect::<Result<_>>()?;
    let total = (args.rate * args.duration) as usize;
    let load: Vec<Transaction> = (0..total)
        .map(|i| {
            let a = i % keys.len();
            let to = keys[(a + 1) % keys.len()].address();
            Transfer {
                from: keys[a].address(),
                to,
                amount: 1,
                nonce: (i / keys.len()) as u64,
            }
            .sign(&keys[a], &chain_id)
        })
        .collect();
    let metrics_before = metrics(net);
    // The one-way delay between replicas on this host: half a client round trip (a lower
    // bound on block propagation, which adds validation).
    let mut rtts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let _ = client.call(0, &Request::Status).await;
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let delay_ms = percentile(&mut rtts, 0.5) / 2.0;
    let start = Instant::now();
    let mut sent_at: HashMap<TxId, Instant> = HashMap::with_capacity(load.len());
    let mut seen: Vec<(Instant, u64, Hash)> = Vec::new();
    let step = Duration::from_millis(20);
    let per_step = (args.rate as f64 * step.as_secs_f64()).max(1.0);
    let (mut sent, mut owed) = (0usize, 0.0);
    let mut last_poll = Instant::now();
    while sent < load.len() {
        owed += per_step;
        let count = (owed as usize).min(load.len() - sent);
        owed -= count as f64;
        if count > 0 {
            let chunk = &load[sent..sent + count];
            let now = Instant::now();
            for tx in chunk {
                sent_at.insert(tx.id(), now);
            }
            let _ = client.submit(chunk).await;
            sent += count;
        }
        if last_poll.elapsed() >= Duration::from_millis(50) {
            last_poll = Instant::now();
            observe(&client, &mut seen).await;
        }
        let next = start + step.mul_f64((sent as f64 / per_step).ceil());
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let load_end = Instant::now();
    writeln!(
        out,
        "load sent; waiting for 6 confirmations of the last blocks"
    )?;
    let head_at_end = seen.last().map_or(0, |s| s.1);
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    while seen.last().map_or(0, |s| s.1) < head_at_end + 8 && Instant::now() < settle_deadline {
        observe(&client, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let final_chain = client.pow_headers(1 % net.n()).await?;
    let hashes: Vec<Hash> = final_chain.iter().map(|h| h.hash()).collect();
    let head = hashes.len().saturating_sub(1) as u64;
    // When each final-chain height was first seen (a later descendant's sighting bounds a
    // block that appeared and was buried between two polls).
    let mut seen_at: Vec<Option<Instant>> = vec![None; hashes.len()];
    for (t, height, hash) in &seen {
        if hashes.get(*height as usize) == Some(hash) {
            for slot in seen_at.iter_mut().take(*height as usize + 1).rev() {
                if slot.is_some() {
                    break;
                }
                *slot = Some(*t);
            }
        }
    }
    let mut latencies: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut committed_at: Vec<f64> = Vec::new();
    let mut committed = 0u64;
    let mut committed_in_window = 0u64;
    let first_height = seen.first().map_or(1, |s| s.1);
    for h in first_height..=head {
        let Ok(Response::Block {
            block: Some(block), ..
        }) = client
            .call(1 % net.n(), &Request::Block(BlockRef::Height(h)))
            .await
        else {
            continue;
        };
        for tx in &block.txs {
            let Some(at) = sent_at.get(&tx.id()) else {
                continue;
            };
            committed += 1;
            if let Some(Some(t)) = seen_at.get(h as usize) {
                committed_at.push(t.saturating_duration_since(start).as_secs_f64());
            }
            if seen_at
                .get(h as usize)
                .copied()
                .flatten()
                .is_some_and(|t| t <= load_end)
            {
                committed_in_window += 1;
            }
            for k in [1u64, 3, 6] {
                if let Some(Some(t)) = seen_at.get((h + k - 1) as usize) {
                    latencies
                        .entry(k)
                        .or_default()
                        .push(t.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    let after = metrics(net);
    let diff = |name: &str| metric_sum(&after, name) - metric_sum(&metrics_before, name);
    let blocks_in_run = head.saturating_sub(first_height.saturating_sub(1)).max(1);
    let connected = diff("quire_pow_blocks_connected_total") / args.nodes as f64;
    let interval_ms = final_chain
        .get(first_height as usize)
        .zip(final_chain.last())
        .map_or(f64::NAN, |(a, b)| {
            (b.timestamp_ms.saturating_sub(a.timestamp_ms)) as f64 / blocks_in_run as f64
        });
    let mut reorg_depths = BTreeMap::new();
    for text in &after {
        for l in text
            .lines()
            .filter(|l| l.starts_with("quire_pow_reorg_depth{"))
        {
            if let (Some(d), Some(v)) = (
                l.split('"').nth(1),
                l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
            ) {
                *reorg_depths.entry(d.to_string()).or_insert(0.0) += v;
            }
        }
    }
    let stale = (connected - blocks_in_run as f64).max(0.0);
    committed_at.sort_by(|a, b| a.total_cmp(b));
    let committed_over_time = committed_at
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, (i + 1) as f64))
        .collect();
    let height_over_time = seen
        .iter()
        .map(|(t, h, _)| (t.saturating_duration_since(start).as_secs_f64(), *h as f64))
        .collect();
    let latency_ms = latencies
        .iter_mut()
        .map(|(k, v)| (*k, (percentile(v, 0.5), percentile(v, 0.99))))
        .collect();
    Ok(PowSide {
        committed,
        tps: committed_in_window as f64 / args.duration as f64,
        latency_ms,
        latency_samples_ms: latencies,
        committed_over_time,
        height_over_time,
        duration_s: Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64(),
        blocks: blocks_in_run,
        stale_rate: stale / connected.max(1.0),
        interval_ms,
        delay_ms,
        reorg_depths,
        returned: diff("quire_pow_txs_returned_total"),
        reincluded: diff("quire_pow_txs_reincluded_total"),
        reversed: diff("quire_pow_txs_reversed_total"),
        hashes_per_tx: diff("quire_pow_hashes_total") / committed.max(1) as f64,
        frames_per_block: diff("quire_transport_frames_sent_total") / blocks_in_run as f64,
        bytes_per_block: diff("quire_transport_bytes_sent_total") / blocks_in_run as f64,
    })
}

fn write_svg(folder: &Path, name: &str, figure: &crate::plot::Figure) -> Result<()> {
    let path = folder.join(name);
    std::fs::write(&path, figure.to_svg())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A sorted sample as an empirical CDF: (value in seconds, fraction at or below), thinned to at
/// most ~400 points.
fn cdf_seconds(sorted_ms: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted_ms.len();
    let every = (n / 400).max(1);
    sorted_ms
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i + 1 == n)
        .map(|(i, v)| (v / 1000.0, (i + 1) as f64 / n as f64))
        .collect()
}

/// Submit→final latency as CDFs: PoW at k = 1, 3, 6 from every transfer; PBFT from the
/// benchmark's p50, p99 and maximum (it keeps a histogram, not the samples).
fn latency_figure(pbft: &PbftSide, pow: &PowSide) -> crate::plot::Figure {
    use crate::plot::{Figure, Panel, Series};
    let mut series = vec![Series {
        name: "PBFT, certified commit (p50, p99, max)".into(),
        points: vec![
            (0.0, 0.0),
            (pbft.p50_ms / 1000.0, 0.5),
            (pbft.p99_ms / 1000.0, 0.99),
            (pbft.max_ms / 1000.0, 1.0),
        ],
    }];
    for (k, v) in &pow.latency_samples_ms {
        series.push(Series {
            name: format!("PoW, k = {k}"),
            points: cdf_seconds(v),
        });
    }
    let longest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .fold(1.0, f64::max);
    Figure {
        title: "Submit → final latency (x: latency in seconds)".into(),
        duration_s: longest,
        panels: vec![Panel {
            title: "fraction of transfers final within x seconds".into(),
            y_label: "fraction".into(),
            series,
        }],
        markers: Vec::new(),
    }
}

/// Proof of work over the load: transfers on the final chain and the height, by when replica 1
/// first showed their block.
fn committed_figure(pow: &PowSide, load_s: f64) -> crate::plot::Figure {
    use crate::plot::{Figure, Panel, Series};
    Figure {
        title: "Proof of work: committed over time (from the start of the load)".into(),
        duration_s: pow.duration_s,
        panels: vec![
            Panel {
                title: "transfers of the load on the final chain".into(),
                y_label: "transfers".into(),
                series: vec![Series {
                    name: "committed (k = 1)".into(),
                    points: pow.committed_over_time.clone(),
                }],
            },
            Panel {
                title: "main-chain height at replica 1".into(),
                y_label: "height".into(),
                series: vec![Series {
                    name: "height".into(),
                    points: pow.height_over_time.clone(),
                }],
            },
        ],
        markers: vec![crate::plot::Marker {
            t_s: load_s,
            label: "load ends".into(),
        }],
    }
}

/// Records the head of replica 1 (height, hash) with the time it was seen.
async fn observe(client: &Client, seen: &mut Vec<(Instant, u64, Hash)>) {
    let replica = 1 % client.network().replicas.len().max(1) as u32;
    if let Ok(Response::Block { block: Some(b), .. }) = client
        .call(replica, &Request::Block(BlockRef::Latest))
        .await
    {
        let key = (b.header.height, b.hash());
        if seen.last().is_none_or(|(_, h, x)| (*h, *x) != key) {
            seen.push((Instant::now(), key.0, key.1));
        }
    }
}

fn render(args: &CompareArgs, pbft: &PbftSide, pow: &PowSide) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# PBFT versus proof of work\n\n`quire-testnet compare --nodes {} --rate {} --duration {} --accounts {} --hash-rate {} --interval-ms {}`\n\nThe same signed transfers, ledger, RocksDB store, QUIC mesh and client on both; one run after the other on this host.\n",
        args.nodes, args.rate, args.duration, args.accounts, args.hash_rate, args.interval_ms
    );
    let lat = |k: u64| {
        pow.latency_ms
            .get(&k)
            .map_or("—".to_string(), |(p50, p99)| {
                format!("{p50:.0} / {p99:.0}")
            })
    };
    let _ = writeln!(s, "| | PBFT | PoW |\n|---|---|---|");
    let _ = writeln!(
        s,
        "| committed tx/s (in the load window) | {:.1} | {:.1} |",
        pbft.tps, pow.tps
    );
    let _ = writeln!(
        s,
        "| submit → final, p50 / p99 ms | {:.0} / {:.0} (certified commit) | k=1: {} · k=3: {} · k=6: {} |",
        pbft.p50_ms,
        pbft.p99_ms,
        lat(1),
        lat(3),
        lat(6)
    );
    let _ = writeln!(
        s,
        "| blocks | {} | {} (mean interval {:.0} ms) |",
        pbft.blocks, pow.blocks, pow.interval_ms
    );
    let approx = 1.0 - (-pow.delay_ms / pow.interval_ms).exp();
    let _ = writeln!(
        s,
        "| stale-block rate | 0 (no forks by construction) | {:.4} (1 − e^(−d/T) = {:.4} for d = {:.2} ms, T = {:.0} ms) |",
        pow.stale_rate, approx, pow.delay_ms, pow.interval_ms
    );
    let depths: Vec<String> = pow
        .reorg_depths
        .iter()
        .map(|(d, c)| format!("{d}: {c:.0}"))
        .collect();
    let _ = writeln!(
        s,
        "| reorg depths (summed over replicas) | none | {} |",
        if depths.is_empty() {
            "none".to_string()
        } else {
            depths.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "| transactions orphaned → re-included / returned / reversed | 0 | {:.0} / {:.0} / {:.0} |",
        pow.reincluded, pow.returned, pow.reversed
    );
    let _ = writeln!(
        s,
        "| hashes per committed transaction | 0 | {:.0} |",
        pow.hashes_per_tx
    );
    let _ = writeln!(
        s,
        "| messages / bytes sent per committed block (all replicas) | {:.0} / {:.0} | {:.0} / {:.0} |",
        pbft.frames_per_block, pbft.bytes_per_block, pow.frames_per_block, pow.bytes_per_block
    );
    let _ = writeln!(
        s,
        "\nPoW committed {} of the submitted transfers on its final chain. d is half a client round trip to a replica (a lower bound on propagation). Latencies at k are from submission to the first sighting, at replica 1, of the block k − 1 above the transaction's block on the final chain.\n\nPlots: `latency.svg` (submit → final as CDFs, PBFT and PoW at k = 1, 3, 6), `committed.svg` (PoW: transfers committed and height over the run).",
        pow.committed
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The latency plot is a CDF per side and k from the measured samples (PBFT from its three
    /// percentiles), ending at 1; the committed plot marks the end of the load.
    #[test]
    fn the_compare_plots_are_built_from_the_measurements() {
        let cdf = cdf_seconds(&[100.0, 200.0, 300.0, 400.0]);
        assert_eq!(cdf, vec![(0.1, 0.25), (0.2, 0.5), (0.3, 0.75), (0.4, 1.0)]);
        let many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let thinned = cdf_seconds(&many);
        assert!(thinned.len() <= 401 && thinned.last() == Some(&(9.999, 1.0)));
        let pbft = PbftSide {
            tps: 99.0,
            p50_ms: 20.0,
            p99_ms: 900.0,
            max_ms: 1500.0,
            blocks: 10,
            frames_per_block: 26.0,
            bytes_per_block: 4000.0,
        };
        let pow = PowSide {
            committed: 3,
            tps: 0.1,
            latency_ms: BTreeMap::new(),
            latency_samples_ms: [(1, vec![900.0, 1200.0]), (6, vec![7000.0])].into(),
            committed_over_time: vec![(1.0, 1.0), (2.0, 3.0)],
            height_over_time: vec![(0.5, 1.0), (2.0, 2.0)],
            duration_s: 3.0,
            blocks: 2,
            stale_rate: 0.0,
            interval_ms: 1000.0,
            delay_ms: 0.1,
            reorg_depths: BTreeMap::new(),
            returned: 0.0,
            reincluded: 0.0,
            reversed: 0.0,
            hashes_per_tx: 1000.0,
            frames_per_block: 100.0,
            bytes_per_block: 5000.0,
        };
        let latency = latency_figure(&pbft, &pow);
        let names: Vec<&str> = latency.panels[0]
            .series
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "PBFT, certified commit (p50, p99, max)",
                "PoW, k = 1",
                "PoW, k = 6"
            ]
        );
        assert_eq!(latency.duration_s, 7.0);
        assert!(latency.to_svg().contains("PoW, k = 6"));
        let committed = committed_figure(&pow, 2.5);
        assert_eq!(committed.markers[0].t_s, 2.5);
        assert_eq!(
            committed.panels[0].series[0].points,
            pow.committed_over_time
        );
    }
}
