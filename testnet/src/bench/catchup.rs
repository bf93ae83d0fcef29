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

/// How long one poll of the restarted replica may take. A QUIC handshake sent before the
/// process listens is lost, and QUIC sends it again only after its first probe timeout (about
/// 1 s with the default initial RTT of 333 ms): polls without a bound of their own measured a
/// start-up of exactly 1.00 s however fast the replica came up. On loopback an answer takes
/// milliseconds; a poll that takes longer is dropped and the next one dials afresh. Only until
/// the first answer: then the replica is listening, and one busy catching up may take longer.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

async fn poll_height(bench: &Bench, replica: u32) -> Option<u64> {
    tokio::time::timeout(POLL_TIMEOUT, height(bench, replica))
        .await
        .ok()
        .flatten()
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
    // Load in slices until the others are `blocks` ahead. Each slice is sized from the blocks
    // per second of load the previous one made (a point costs seconds of its own: signing, the
    // wait for the last commits), so 20,000 blocks take minutes, not half an hour of 1 s slices.
    let started = Instant::now();
    let mut last = behind_from;
    let mut slice_s = 1;
    while last < behind_from + blocks {
        bench.point(args.rate, slice_s, args.target, out).await?;
        let now = height(bench, 0).await.unwrap_or(last);
        let made = now.saturating_sub(last);
        last = now;
        writeln!(out, "height {last}")?;
        let left = (behind_from + blocks).saturating_sub(last);
        slice_s = slice_length(left, made, slice_s);
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
    // The first answer above where it stopped: the process is up, its peers are connected and
    // blocks are arriving. The rate counts from there; the start-up before it is reported apart.
    let mut fetching: Option<(Instant, u64)> = None;
    let mut listening = false;
    // The longest the height stood still once blocks were arriving: a steady pipeline shows
    // the polling interval (tens of milliseconds; a replica busy catching up answers slowly),
    // a fetch that ended short of the top and waited for a timer shows hundreds.
    let mut last_advance: Option<(Instant, u64)> = None;
    let mut longest_pause = Duration::ZERO;
    // Every height polled, with the seconds since the restart: where a catch-up is slow (its
    // start, a pause, its end) shows in the JSON, not only in the averages.
    let mut heights: Vec<(f64, u64)> = Vec::new();
    while restarted.elapsed() < Duration::from_secs(600) {
        let answer = if listening {
            height(bench, lagging).await
        } else {
            poll_height(bench, lagging).await
        };
        if let Some(h) = answer {
            listening = true;
            reached = h;
            heights.push((restarted.elapsed().as_secs_f64(), h));
            if fetching.is_none() && h > from {
                fetching = Some((Instant::now(), h));
            }
            if fetching.is_some() && last_advance.is_none_or(|(_, last)| h > last) {
                let now = Instant::now();
                if let Some((at, _)) = last_advance {
                    longest_pause = longest_pause.max(now.duration_since(at));
                }
                last_advance = Some((now, h));
            }
            if h >= target {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = restarted.elapsed().as_secs_f64();
    let fetched = reached.saturating_sub(from);
    let (startup_s, rate) = match fetching {
        Some((at, h)) => {
            let span = at.elapsed().as_secs_f64();
            (
                at.duration_since(restarted).as_secs_f64(),
                reached.saturating_sub(h) as f64 / span.max(1e-9),
            )
        }
        None => (seconds, 0.0),
    };
    let overall = fetched as f64 / seconds.max(1e-9);
    let pause_ms = longest_pause.as_secs_f64() * 1000.0;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let heights = heights
        .iter()
        .map(|(t, h)| format!("[{t:.3}, {h}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let json = format!(
        "{{\n  \"nodes\": {n},\n  \"workload\": \"{}\",\n  \"blocks_behind\": {},\n  \"blocks_fetched\": {fetched},\n  \"seconds\": {seconds:.3},\n  \"blocks_per_s\": {rate:.0},\n  \"startup_s\": {startup_s:.3},\n  \"blocks_per_s_with_startup\": {overall:.0},\n  \"longest_pause_ms\": {pause_ms:.0},\n  \"reached_target\": {},\n  \"load_average\": \"{}\",\n  \"heights\": [{heights}]\n}}\n",
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
        "replica {lagging} caught up {fetched} blocks in {seconds:.2} s: {rate:.0} blocks/s once blocks arrived, after {startup_s:.2} s of start-up ({overall:.0} blocks/s with it; certificates and signatures verified, blocks re-executed); the height stood still for at most {pause_ms:.0} ms; result in {}",
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

/// The next load slice, in seconds: enough for the blocks `left` at the pace the last slice of
/// `last_s` seconds made `made`, within 1..=60 s (the height is checked between slices).
fn slice_length(left: u64, made: u64, last_s: u64) -> u64 {
    if made == 0 {
        return last_s.max(1);
    }
    let per_s = made as f64 / last_s.max(1) as f64;
    ((left as f64 / per_s).ceil() as u64).clamp(1, 60)
}

#[cfg(test)]
mod tests {
    use super::slice_length;

    #[test]
    fn slices_grow_to_what_is_left_within_bounds() {
        // 100 blocks in a 1 s slice, 20,000 left: the longest slice.
        assert_eq!(slice_length(20_000, 100, 1), 60);
        // 500 left at 100 a second: 5 s.
        assert_eq!(slice_length(500, 100, 1), 5);
        // Nearly there: at least one second.
        assert_eq!(slice_length(3, 1_000, 10), 1);
        // A slice that made nothing does not shrink the next one to zero.
        assert_eq!(slice_length(1_000, 0, 4), 4);
    }
}
