//! `quire-testnet bench`: an open-loop load against a fresh local testnet, reporting committed
//! transactions per second and submit-to-commit latency.
//!
//! Two workloads: `transfer` (pre-signed transfers that every replica verifies and executes) and
//! `raw` (opaque payloads of `--tx-size` bytes that are ordered and committed but not executed —
//! the workload other BFT systems report, for comparison on equal terms). Load is open-loop: the
//! generator sends at the offered rate whatever the replicas do, so a slow system shows up as
//! latency and a backlog, not as a politely lower offered rate.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use quire_chain::genesis::Protocol;
use quire_chain::{Keypair, Transaction, Transfer, TxId};
use quire_client::Client;
use quire_node::config::ParamsFile;
use quire_wire::rpc::{Request, Response};

use crate::follow::Follower;
use crate::generate::Plan;
use crate::ops::{self, Testnet};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Transfer,
    Raw,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Send to the current primary (what a client that knows the view does).
    Primary,
    /// Spread over every replica (backups forward to the primary).
    All,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Offered load, transactions per second.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    #[arg(long, value_enum, default_value_t = Workload::Transfer)]
    pub workload: Workload,
    /// Payload size of the raw workload, in bytes.
    #[arg(long, default_value_t = 512)]
    pub tx_size: usize,
    /// Sending accounts for the transfer workload.
    #[arg(long, default_value_t = 512)]
    pub accounts: usize,
    /// Batch size B (transactions per block at most).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Pipeline depth W (sequence numbers in flight).
    #[arg(long)]
    pub pipeline: Option<u64>,
    #[arg(long, value_enum, default_value_t = Target::Primary)]
    pub target: Target,
    /// Where to write the JSON result (default: DIR/bench/result-<time>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave the benchmark testnet running afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub nodes: usize,
    pub workload: Workload,
    pub tx_size: usize,
    pub offered_rate: u64,
    pub duration_s: f64,
    pub submitted: u64,
    pub refused: u64,
    pub committed: u64,
    pub committed_tps: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub view_changes: u64,
    pub blocks: u64,
    pub mean_batch: f64,
}

impl BenchResult {
    pub fn json(&self) -> String {
        format!(
            "{{\n  \"nodes\": {},\n  \"workload\": \"{}\",\n  \"tx_size\": {},\n  \"offered_rate\": {},\n  \"duration_s\": {:.3},\n  \"submitted\": {},\n  \"refused\": {},\n  \"committed\": {},\n  \"committed_tps\": {:.1},\n  \"latency_p50_ms\": {:.2},\n  \"latency_p99_ms\": {:.2},\n  \"latency_max_ms\": {:.2},\n  \"view_changes\": {},\n  \"blocks\": {},\n  \"mean_batch\": {:.1}\n}}\n",
            self.nodes,
            match self.workload {
                Workload::Transfer => "transfer",
                Workload::Raw => "raw",
            },
            self.tx_size,
            self.offered_rate,
            self.duration_s,
            self.submitted,
            self.refused,
            self.committed,
            self.committed_tps,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.view_changes,
            self.blocks,
            self.mean_batch
        )
    }

    pub fn summary(&self) -> String {
        format!(
            "{} nodes, {} workload{}: offered {} tx/s for {:.0} s; committed {:.0} tx/s; latency p50 {:.1} ms, p99 {:.1} ms; {} view changes; {} blocks, {:.0} tx/block",
            self.nodes,
            match self.workload {
                Workload::Transfer => "transfer",
                Workload::Raw => "raw",
            },
            if self.workload == Workload::Raw {
                format!(" ({} B payloads)", self.tx_size)
            } else {
                String::new()
            },
            self.offered_rate,
            self.duration_s,
            self.committed_tps,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.view_changes,
            self.blocks,
            self.mean_batch
        )
    }
}

fn validate(args: &BenchArgs) -> Result<()> {
    if args.rate == 0 || args.rate > 1_000_000 {
        bail!("--rate must be between 1 and 1000000 transactions per second");
    }
    if args.duration == 0 || args.duration > 3600 {
        bail!("--duration must be between 1 and 3600 seconds");
    }
    if args.tx_size == 0 || args.tx_size > quire_chain::tx::RAW_PAYLOAD_MAX {
        bail!(
            "--tx-size must be between 1 and {} bytes",
            quire_chain::tx::RAW_PAYLOAD_MAX
        );
    }
    if args.accounts == 0 || args.accounts > 100_000 {
        bail!("--accounts must be between 1 and 100000");
    }
    Ok(())
}

/// Signs the whole load up front (in parallel), so signing costs nothing during the run.
fn prepare_load(args: &BenchArgs, net: &Testnet) -> Result<Vec<Transaction>> {
    let total = (args.rate * args.duration) as usize;
    if args.workload == Workload::Raw {
        let run: u64 = rand::random();
        return Ok((0..total as u64)
            .map(|i| {
                let mut payload = vec![0u8; args.tx_size];
                let tag = [run.to_be_bytes(), i.to_be_bytes()].concat();
                let n = tag.len().min(payload.len());
                payload[..n].copy_from_slice(&tag[..n]);
                Transaction::raw(payload)
            })
            .collect());
    }
    let keys: Vec<Keypair> = (0..args.accounts)
        .map(|i| net.account_key(i))
        .collect::<Result<_>>()?;
    let chain_id = net.network.chain_id();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = total.div_ceil(threads);
    let parts: Vec<Vec<Transaction>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let keys = &keys;
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(total))
                        .map(|i| {
                            let from = i % keys.len();
                            let to = (from + 1) % keys.len();
                            Transfer {
                                from: keys[from].address(),
                                to: keys[to].address(),
                                amount: 1,
                                // Account 0 sent `up`'s first transfer.
                                nonce: (i / keys.len()) as u64 + u64::from(from == 0),
                            }
                            .sign(&keys[from], &chain_id)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    Ok(parts.into_iter().flatten().collect())
}

struct Tally {
    sent_at: HashMap<TxId, Instant>,
    latencies_ms: Vec<f64>,
    committed_in_window: u64,
    blocks: u64,
    block_txs: u64,
    submitted: u64,
    refused: u64,
}

async fn views(client: &Client, n: u32) -> u64 {
    let mut max = 0;
    for i in 0..n {
        if let Ok(Response::Status(s)) = client.call(i, &Request::Status).await {
            max = max.max(s.view);
        }
    }
    max
}

/// Follows the chain at one replica and times every benchmark transaction it sees committed.
async fn follow(
    client: Arc<Client>,
    tally: Arc<Mutex<Tally>>,
    replica: u32,
    start: Instant,
    window: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut follower = Follower::from_head(client, vec![replica], Duration::from_millis(250)).await;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(block) = follower.next_block().await else {
            continue;
        };
        let now = Instant::now();
        if let Ok(mut t) = tally.lock() {
            t.blocks += 1;
            t.block_txs += block.txs.len() as u64;
            for tx in &block.txs {
                if let Some(at) = t.sent_at.remove(&tx.id()) {
                    t.latencies_ms
                        .push(now.duration_since(at).as_secs_f64() * 1000.0);
                    if now.duration_since(start) <= window {
                        t.committed_in_window += 1;
                    }
                }
            }
        }
    }
}

/// The `p` quantile (0..=1) of sorted samples, by nearest rank; 0 when there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn progress(out: &mut dyn Write, elapsed: Duration, total: Duration, t: &Tally) {
    let width = 30;
    let done =
        ((elapsed.as_secs_f64() / total.as_secs_f64()) * width as f64).min(width as f64) as usize;
    let tps = t.committed_in_window as f64 / elapsed.as_secs_f64().max(0.001);
    let _ = write!(
        out,
        "\r[{}{}] {:>3}/{} s  submitted {:>8}  committed {:>8}  {:>7.0} tx/s ",
        "#".repeat(done),
        " ".repeat(width - done),
        elapsed.as_secs(),
        total.as_secs(),
        t.submitted,
        t.committed_in_window,
        tps
    );
    let _ = out.flush();
}

pub async fn run(dir: &Path, args: &BenchArgs, out: &mut dyn Write) -> Result<BenchResult> {
    validate(args)?;
    let run_dir = dir
        .join("bench")
        .join(format!("run-{}", std::process::id()));
    let plan = Plan {
        nodes: args.nodes,
        accounts: if args.workload == Workload::Transfer {
            args.accounts
        } else {
            2
        },
        base_port: 0,
        protocol: Protocol {
            raw_payloads: args.workload == Workload::Raw,
            batch_txs_max: args.batch.map_or(Protocol::default().batch_txs_max, |b| {
                u32::try_from(b).unwrap_or(u32::MAX)
            }),
            ..Protocol::default()
        },
        log: "warn".into(),
        params: ParamsFile {
            batch_txs_max: args.batch,
            pipeline_depth: args.pipeline,
            mempool_max: Some(1_000_000),
            ..ParamsFile::default()
        },
        ..Plan::default()
    };
    writeln!(
        out,
        "starting a {}-replica benchmark testnet in {}",
        args.nodes,
        run_dir.display()
    )?;
    let net = ops::up(&run_dir, &plan, &mut std::io::sink()).await?;
    let result = measure(&net, args, out).await;
    if !args.keep {
        net.stop_all()?;
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    let result = result?;
    let path = match &args.out {
        Some(p) => p.clone(),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            dir.join("bench").join(format!("result-{secs}.json"))
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, result.json())
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        out,
        "{}\nresult written to {}",
        result.summary(),
        path.display()
    )?;
    Ok(result)
}

async fn measure(net: &Testnet, args: &BenchArgs, out: &mut dyn Write) -> Result<BenchResult> {
    writeln!(out, "signing {} transactions...", args.rate * args.duration)?;
    let load = tokio::task::block_in_place(|| prepare_load(args, net))?;
    let client = Arc::new(Client::new(net.network.clone())?);
    let n = net.n();
    let view_before = views(&client, n).await;
    let tally = Arc::new(Mutex::new(Tally {
        sent_at: HashMap::with_capacity(load.len()),
        latencies_ms: Vec::with_capacity(load.len()),
        committed_in_window: 0,
        blocks: 0,
        block_txs: 0,
        submitted: 0,
        refused: 0,
    }));
    let window = Duration::from_secs(args.duration);
    let start = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Follow the chain at a replica that is not the first primary, to keep its load off it.
    let follower = tokio::spawn(follow(
        client.clone(),
        tally.clone(),
        1 % n,
        start,
        window,
        stop.clone(),
    ));
    let step = Duration::from_millis(10);
    let per_step = (args.rate as f64 * step.as_secs_f64()).max(1.0);
    let mut sent = 0usize;
    let mut owed = 0.0;
    let mut tick = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    let mut last_progress = Instant::now();
    while sent < load.len() {
        owed += per_step;
        let count = (owed as usize).min(load.len() - sent);
        owed -= count as f64;
        if count > 0 {
            let chunk: Vec<Transaction> = load[sent..sent + count].to_vec();
            sent += count;
            let target = match args.target {
                Target::Primary => (view_before % n as u64) as u32,
                Target::All => (tick % n as u64) as u32,
            };
            let now = Instant::now();
            if let Ok(mut t) = tally.lock() {
                for tx in &chunk {
                    t.sent_at.insert(tx.id(), now);
                }
                t.submitted += chunk.len() as u64;
            }
            let (client, tally) = (client.clone(), tally.clone());
            inflight.spawn(async move {
                let refused = match client.call(target, &Request::Submit(chunk)).await {
                    Ok(Response::Submitted(r)) => r.iter().filter(|x| x.is_err()).count() as u64,
                    Ok(_) | Err(_) => 0,
                };
                if let Ok(mut t) = tally.lock() {
                    t.refused += refused;
                }
            });
        }
        while inflight.try_join_next().is_some() {}
        tick += 1;
        if last_progress.elapsed() >= Duration::from_millis(500)
            && let Ok(t) = tally.lock()
        {
            progress(out, start.elapsed(), window, &t);
            last_progress = Instant::now();
        }
        let next = start + step * tick as u32;
        tokio::time::sleep_until(next.into()).await;
    }
    // Let the backlog drain (its latency counts, its throughput does not).
    let drain_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < drain_until {
        let pending = tally.lock().map(|t| t.sent_at.len()).unwrap_or(0);
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = follower.await;
    while inflight.join_next().await.is_some() {}
    writeln!(out)?;
    let view_after = views(&client, n).await;
    let t = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?;
    let mut lat = t.latencies_ms.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(BenchResult {
        nodes: args.nodes,
        workload: args.workload,
        // Raw: the payload size asked for; transfers: their encoded size.
        tx_size: if args.workload == Workload::Raw {
            args.tx_size
        } else {
            load.first().map_or(0, |tx| tx.encoded_len())
        },
        offered_rate: args.rate,
        duration_s: window.as_secs_f64(),
        submitted: t.submitted,
        refused: t.refused,
        committed: lat.len() as u64,
        committed_tps: t.committed_in_window as f64 / window.as_secs_f64(),
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        latency_max_ms: lat.last().copied().unwrap_or(0.0),
        view_changes: view_after.saturating_sub(view_before),
        blocks: t.blocks,
        mean_batch: t.block_txs as f64 / t.blocks.max(1) as f64,
    })
}
