//! `bench --catchup N`: a replica is stopped, the others commit N blocks, and the replica is
//! restarted: how many blocks per second does it fetch, verify (every block's commit
//! certificate, every transaction's signature) and re-execute until it reaches the height the
//! others had when it came back?

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use quire_wire::rpc::{Request, Response};

use super::{Bench, BenchArgs, BenchResult, Point, now_s, tx_size, write_file};

async fn height(bench: &Bench, replica: u32) -> Option<u64> {
    match bench.client.call(replica, &Request::Status).await {
        Ok(Response::Status(s)) => Some(s.height),
        _ => None,
    }
}

pub async fn run(
    bench: &mut Bench,
    args: &BenchArgs,
    blocks: u64,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<BenchResult> {
    let n = bench.net.n();
    let lagging = n - 1;
    let from = height(bench, lagging).await.unwrap_or(0);
    bench.net.kill(lagging)?;
    let behind_from = height(bench, 0).await.unwrap_or(0);
    writeln!(
        out,
        "replica {lagging} stopped at height ~{behind_from}; committing {blocks} blocks without it"
    )?;
    // Load in one-second slices until the others are `blocks` ahead.
    let started = Instant::now();
    let mut last = behind_from;
    while last < behind_from + blocks {
        bench.point(args.rate, 1, args.target, out).await?;
        last = height(bench, 0).await.unwrap_or(last);
        writeln!(out, "height {last}")?;
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("no {blocks} blocks within 30 minutes (reached {last})");
        }
    }
    let target = last;
    writeln!(
        out,
        "restarting replica {lagging} {} blocks behind (target height {target})",
        target.saturating_sub(from)
    )?;
    let restarted = Instant::now();
    bench.net.start(lagging)?;
    let mut reached = 0;
    while restarted.elapsed() < Duration::from_secs(600) {
        if let Some(h) = height(bench, lagging).await {
            reached = h;
            if h >= target {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = restarted.elapsed().as_secs_f64();
    let fetched = reached.saturating_sub(from);
    let rate = fetched as f64 / seconds.max(1e-9);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let json = format!(
        "{{\n  \"nodes\": {n},\n  \"workload\": \"{}\",\n  \"blocks_behind\": {},\n  \"blocks_fetched\": {fetched},\n  \"seconds\": {seconds:.3},\n  \"blocks_per_s\": {rate:.0},\n  \"reached_target\": {},\n  \"load_average\": \"{}\"\n}}\n",
        args.workload.name(),
        target.saturating_sub(from),
        reached >= target,
        load.trim()
    );
    let path = args.out.clone().unwrap_or_else(|| {
        dir.join("bench")
            .join(format!("catchup-n{n}-{}.json", now_s()))
    });
    write_file(&path, &json)?;
    writeln!(
        out,
        "replica {lagging} caught up {fetched} blocks in {seconds:.2} s: {rate:.0} blocks/s (certificates and signatures verified, blocks re-executed); result in {}",
        path.display()
    )?;
    if reached < target {
        bail!("replica {lagging} reached only {reached} of {target} in 10 minutes");
    }
    Ok(BenchResult {
        nodes: args.nodes,
        workload: args.workload,
        tx_size: tx_size(args),
        point: Point::default(),
    })
}
