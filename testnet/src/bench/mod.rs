//! `quire-testnet bench`: open-loop load against a fresh local testnet, reporting committed
//! transactions per second, submit-to-commit latency, and the messages and bytes each block
//! cost.
//!
//! Two workloads: `transfer` (pre-signed transfers that every replica verifies and executes) and
//! `raw` (opaque payloads of `--tx-size` bytes that are ordered and committed but not executed —
//! the workload other BFT systems report, for comparison on equal terms). Load is open-loop
//! ([`point`]). Three modes:
//!
//! - one point (the default): `--rate` for `--duration` seconds;
//! - `--sweep`: increasing rates on one testnet, the knee (the highest rate whose p99 stays under
//!   `--knee-p99-ms` while nearly all of it commits), overload points beyond it with
//!   `--overload`, and a report folder with the latency-versus-throughput plot ([`sweep`]);
//! - `--catchup N`: how fast a replica restarted N blocks behind catches up ([`catchup`]).

mod catchup;
mod disk;
pub(crate) mod load;
mod point;
mod scrape;
mod sweep;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use quire_chain::Keypair;
use quire_chain::genesis::Protocol;
use quire_client::Client;
use quire_node::config::ParamsFile;
use quire_wire::rpc::{Request, Response};

pub use point::Point;

use crate::generate::Plan;
use crate::ops::{self, Testnet};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Transfer,
    Raw,
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Transfer => "transfer",
            Workload::Raw => "raw",
        }
    }
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
    /// Seconds of load (per point of a sweep).
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
    /// Batch size B (transactions per block at most; also the genesis's limit).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Pipeline depth W (sequence numbers in flight).
    #[arg(long)]
    pub pipeline: Option<u64>,
    /// While fewer blocks than this are in flight, a primary proposes what it has at once.
    #[arg(long)]
    pub eager_depth: Option<u64>,
    /// Otherwise a batch closes when full or when its oldest transaction waited half the recent
    /// commit time, at least this many ticks…
    #[arg(long)]
    pub batch_timeout_ticks: Option<u64>,
    /// …and at most this many (equal to `--batch-timeout-ticks`: a fixed timeout).
    #[arg(long)]
    pub batch_timeout_max_ticks: Option<u64>,
    /// The primary rotates every this many blocks (the genesis's `rotation_blocks`; 0: never).
    /// Each rotation drains the pipeline at a checkpoint; compare runs with and without it.
    #[arg(long)]
    pub rotation_blocks: Option<u64>,
    #[arg(long, value_enum, default_value_t = Target::Primary)]
    pub target: Target,
    /// Where to write the JSON result (default: DIR/bench/result-<time>.json), or the report
    /// folder of a sweep (default: DIR/bench/sweep-<workload>-n<N>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave the benchmark testnet running afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Measure increasing rates (`--rates`, or doubling from `--rate`) and find the knee.
    #[arg(long)]
    pub sweep: bool,
    /// The offered rates of a sweep, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// The knee is the highest rate whose p99 latency stays under this bound (ms).
    #[arg(long, default_value_t = 100.0)]
    pub knee_p99_ms: f64,
    /// After the sweep, offer 2, 4 and 6 times the knee.
    #[arg(long)]
    pub overload: bool,
    /// Measure how fast a replica restarted this many blocks behind catches up.
    #[arg(long)]
    pub catchup: Option<u64>,
    /// Each replica's mempool capacity (transactions).
    #[arg(long, default_value_t = 100_000)]
    pub mempool: usize,
    /// Threads verifying replica messages, per replica.
    #[arg(long, default_value_t = 1)]
    pub verify_threads: usize,
    /// Also time each transaction to *decided*: 2f+1 replicas report its batch prepared on top
    /// of their executed chain (`WaitPrepared`, PBFT's tentative execution), which proves it
    /// commits there one phase before the commit. Follows every replica, which costs each one
    /// request per block: off by default, so latencies to commit compare with earlier runs.
    #[arg(long)]
    pub decided: bool,
}

/// The result of one-point benchmark, as printed and written as JSON.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub nodes: usize,
    pub workload: Workload,
    pub tx_size: usize,
    pub point: Point,
}

impl BenchResult {
    pub fn json(&self) -> String {
        format!(
            "{{\n  \"nodes\": {},\n  \"workload\": \"{}\",\n  \"tx_size\": {},\n  \"point\": {}\n}}\n",
            self.nodes,
            self.workload.name(),
            self.tx_size,
            self.point.json()
        )
    }

    pub fn summary(&self) -> String {
        let p = &self.point;
        format!(
            "{} nodes, {} workload{}: offered {} tx/s for {:.0} s; committed {:.0} tx/s; latency p50 {:.1} ms, p99 {:.1} ms{}; {} refused; {} view changes (started by: {}); {} blocks, {:.0} tx/block; {:.1} normal-case messages/block (2n(n-1) = {}); load average {}",
            self.nodes,
            self.workload.name(),
            if self.workload == Workload::Raw {
                format!(" ({} B payloads)", self.tx_size)
            } else {
                String::new()
            },
            p.offered_rate,
            p.duration_s,
            p.committed_tps,
            p.latency_p50_ms,
            p.latency_p99_ms,
            p.decided_summary()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            p.refused,
            p.view_changes,
            p.view_change_causes(),
            p.blocks,
            p.mean_batch,
            p.normal_case_messages(),
            2 * self.nodes * self.nodes.saturating_sub(1),
            p.load_average,
        )
    }
}

fn validate(args: &BenchArgs) -> Result<()> {
    if args.rate == 0 || args.rate > 1_000_000 {
        bail!("--rate must be between 1 and 1000000 transactions per second");
    }
    if args.rates.iter().any(|r| *r == 0 || *r > 1_000_000) {
        bail!("--rates must each be between 1 and 1000000 transactions per second");
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
    if args.mempool == 0 {
        bail!("--mempool must be positive");
    }
    if !(args.knee_p99_ms.is_finite() && args.knee_p99_ms > 0.0) {
        bail!("--knee-p99-ms must be a positive number");
    }
    if args.catchup == Some(0) {
        bail!("--catchup needs a number of blocks");
    }
    if args.catchup.is_some() && args.nodes < 4 {
        bail!("--catchup needs at least 4 replicas (one restarts while the others commit)");
    }
    Ok(())
}

/// The `p` quantile (0..=1) of sorted samples, by nearest rank; 0 when there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The benchmark testnet's plan: fresh keys, the workload's accounts, the protocol rules the
/// run needs (raw payloads allowed for the raw workload; the batch limit).
fn plan(args: &BenchArgs) -> Plan {
    Plan {
        nodes: args.nodes,
        accounts: if args.workload == Workload::Transfer {
            args.accounts
        } else {
            2
        },
        base_port: 0,
        verify_threads: args.verify_threads,
        protocol: Protocol {
            raw_payloads: args.workload == Workload::Raw,
            batch_txs_max: args.batch.map_or(Protocol::default().batch_txs_max, |b| {
                u32::try_from(b).unwrap_or(u32::MAX)
            }),
            rotation_blocks: args
                .rotation_blocks
                .unwrap_or(Protocol::default().rotation_blocks),
            ..Protocol::default()
        },
        log: "warn".into(),
        params: ParamsFile {
            batch_txs_max: args.batch,
            pipeline_depth: args.pipeline,
            eager_depth: args.eager_depth,
            batch_timeout_ticks: args.batch_timeout_ticks,
            batch_timeout_max_ticks: args.batch_timeout_max_ticks,
            mempool_max: Some(args.mempool),
            ..ParamsFile::default()
        },
        ..Plan::default()
    }
}

/// What every mode starts from: the testnet, a client, and a load generator at the accounts'
/// current nonces.
pub(crate) struct Bench {
    pub net: Testnet,
    pub client: Arc<Client>,
    pub load: load::Load,
    /// Whether points time transactions to decided too (`--decided`).
    pub decided: bool,
}

/// Each account's next nonce by what replica 0 executed (0 for an account it cannot tell).
async fn executed_nonces(client: &Client, keys: &[Keypair]) -> Vec<u64> {
    let mut nonces = Vec::with_capacity(keys.len());
    for k in keys {
        let nonce = match client.call(0, &Request::Account(k.address())).await {
            Ok(Response::Account { account, .. }) => account.nonce,
            _ => 0,
        };
        nonces.push(nonce);
    }
    nonces
}

impl Bench {
    async fn start(run_dir: &Path, args: &BenchArgs) -> Result<Bench> {
        let net = ops::up(run_dir, &plan(args), &mut std::io::sink()).await?;
        let client = Arc::new(Client::new(net.network.clone())?);
        let keys: Vec<Keypair> = if args.workload == Workload::Transfer {
            (0..args.accounts)
                .map(|i| net.account_key(i))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let nonces = executed_nonces(&client, &keys).await;
        let load = load::Load::new(
            args.workload,
            args.tx_size,
            keys,
            net.network.chain_id(),
            nonces,
        );
        Ok(Bench {
            net,
            client,
            load,
            decided: args.decided,
        })
    }

    /// One point: `rate` for `duration_s`, the load signed before the clock starts.
    pub async fn point(
        &mut self,
        rate: u64,
        duration_s: u64,
        target: Target,
        out: &mut dyn Write,
    ) -> Result<Point> {
        let count = usize::try_from(rate.saturating_mul(duration_s))?;
        writeln!(
            out,
            "offering {rate} tx/s for {duration_s} s (signing {count})..."
        )?;
        if self.load.workload() == Workload::Transfer {
            // Each point starts from the executed nonces: transfers a point gave up on (still
            // refused when its drain ended) left gaps that every later transfer of the sender
            // would wait behind, and a sweep's later points committed nothing.
            let nonces = executed_nonces(&self.client, self.load.keys()).await;
            self.load.resync(nonces);
        }
        let load = tokio::task::block_in_place(|| self.load.make(count))?;
        let follow = point::Follow {
            decided: self.decided,
        };
        point::measure(
            &self.net,
            self.client.clone(),
            load,
            rate,
            target,
            follow,
            out,
        )
        .await
    }
}

pub async fn run(dir: &Path, args: &BenchArgs, out: &mut dyn Write) -> Result<BenchResult> {
    validate(args)?;
    let run_dir = dir
        .join("bench")
        .join(format!("run-{}", std::process::id()));
    writeln!(
        out,
        "starting a {}-replica benchmark testnet in {}",
        args.nodes,
        run_dir.display()
    )?;
    if let Some(free) = disk::free_bytes(dir)
        && let Some(warning) = disk::warning(dir, free, disk::estimate(args))
    {
        writeln!(out, "{warning}")?;
    }
    let mut bench = Bench::start(&run_dir, args).await?;
    let result = if let Some(blocks) = args.catchup {
        catchup::run(&mut bench, args, blocks, dir, out).await
    } else if args.sweep {
        sweep::run(&mut bench, args, dir, out).await
    } else {
        one_point(&mut bench, args, dir, out).await
    };
    if !args.keep {
        bench.net.stop_all()?;
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

async fn one_point(
    bench: &mut Bench,
    args: &BenchArgs,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<BenchResult> {
    let point = bench
        .point(args.rate, args.duration, args.target, out)
        .await?;
    let result = BenchResult {
        nodes: args.nodes,
        workload: args.workload,
        tx_size: tx_size(args),
        point,
    };
    let path = match &args.out {
        Some(p) => p.clone(),
        None => dir.join("bench").join(format!("result-{}.json", now_s())),
    };
    write_file(&path, &result.json())?;
    writeln!(
        out,
        "{}\nresult written to {}",
        result.summary(),
        path.display()
    )?;
    Ok(result)
}

/// Raw: the payload size asked for; transfers: their encoded size.
pub(crate) fn tx_size(args: &BenchArgs) -> usize {
    if args.workload == Workload::Raw {
        args.tx_size
    } else {
        quire_chain::tx::TRANSFER_ENCODED_LEN
    }
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
