//! `bench --sweep`: offered rate against committed rate and latency, the figure every BFT paper
//! shows. Rates rise on one testnet (each point drains before the next) until the system
//! saturates; the knee is the highest offered rate whose p99 stays under the bound while at least
//! 95% of it commits. With `--overload`, 2×, 4× and 6× the knee follow: back-pressure should keep
//! the committed rate near the knee there, with no view change.
//!
//! The report folder holds `sweep.json` (every point, messages and bytes per block by kind),
//! `sweep.md` (the table) and `sweep.svg` (latency against committed throughput).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{Bench, BenchArgs, BenchResult, Point, now_s, tx_size, write_file};

/// Points whose committed rate falls below this share of the offered one end the rising phase.
const SATURATED: f64 = 0.8;
/// The knee must commit at least this share of what is offered.
const KNEE_COMMITTED: f64 = 0.95;

/// The default rates: doubling from `--rate / 4`, then steps of 25% past 8 points, up to 64×.
pub(crate) fn rates(args: &BenchArgs) -> Vec<u64> {
    if !args.rates.is_empty() {
        return args.rates.clone();
    }
    let mut out = Vec::new();
    let mut r = (args.rate / 4).max(100);
    while r <= args.rate.saturating_mul(16) {
        out.push(r);
        r = if out.len() < 4 { r * 2 } else { r + r / 4 };
    }
    out
}

pub(crate) fn knee(points: &[Point], p99_bound_ms: f64) -> Option<&Point> {
    points
        .iter()
        .filter(|p| {
            p.latency_p99_ms <= p99_bound_ms
                && p.committed_tps >= KNEE_COMMITTED * p.offered_rate as f64
        })
        .max_by_key(|p| p.offered_rate)
}

pub async fn run(
    bench: &mut Bench,
    args: &BenchArgs,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<BenchResult> {
    let mut points = Vec::new();
    let mut saturated = 0;
    for rate in rates(args) {
        let p = bench.point(rate, args.duration, args.target, out).await?;
        writeln!(out, "{}", line(&p))?;
        saturated = if p.committed_tps < SATURATED * rate as f64 {
            saturated + 1
        } else {
            0
        };
        points.push(p);
        if saturated >= 2 {
            break;
        }
    }
    let knee_rate = knee(&points, args.knee_p99_ms).map(|p| p.offered_rate);
    let mut overload = Vec::new();
    if let (true, Some(k)) = (args.overload, knee_rate) {
        for factor in [2, 4, 6] {
            let p = bench
                .point(k * factor, args.duration, args.target, out)
                .await?;
            writeln!(out, "overload {factor}x: {}", line(&p))?;
            overload.push((factor, p));
        }
    }
    let folder = match &args.out {
        Some(p) => p.clone(),
        None => dir.join("bench").join(format!(
            "sweep-{}-n{}-{}",
            args.workload.name(),
            args.nodes,
            now_s()
        )),
    };
    std::fs::create_dir_all(&folder)?;
    write_file(
        &folder.join("sweep.json"),
        &json(args, &points, &overload, knee_rate),
    )?;
    write_file(
        &folder.join("sweep.md"),
        &markdown(args, &points, &overload, knee_rate),
    )?;
    plot(&folder.join("sweep.svg"), args, &points, knee_rate)?;
    writeln!(
        out,
        "knee: {} (p99 ≤ {} ms); report in {}",
        knee_rate.map_or("none".to_string(), |k| format!("{k} tx/s offered")),
        args.knee_p99_ms,
        folder.display()
    )?;
    let best = knee(&points, args.knee_p99_ms)
        .or(points.last())
        .cloned()
        .unwrap_or_default();
    Ok(BenchResult {
        nodes: args.nodes,
        workload: args.workload,
        tx_size: tx_size(args),
        point: best,
    })
}

fn line(p: &Point) -> String {
    format!(
        "offered {:>7} committed {:>8.0} tx/s  p50 {:>7.1} ms  p99 {:>7.1} ms{}  refused {:>7}  views +{} ({})  {:.0} tx/block  load {}",
        p.offered_rate,
        p.committed_tps,
        p.latency_p50_ms,
        p.latency_p99_ms,
        p.decided_p50_ms
            .map(|d| format!("  decided p50 {d:>6.1} ms"))
            .unwrap_or_default(),
        p.refused,
        p.view_changes,
        p.view_change_causes(),
        p.mean_batch,
        p.load_average
    )
}

fn json(
    args: &BenchArgs,
    points: &[Point],
    overload: &[(u64, Point)],
    knee: Option<u64>,
) -> String {
    let pts: Vec<String> = points.iter().map(|p| format!("    {}", p.json())).collect();
    let over: Vec<String> = overload
        .iter()
        .map(|(f, p)| format!("    {{\"factor\": {f}, \"point\": {}}}", p.json()))
        .collect();
    format!(
        "{{\n  \"nodes\": {},\n  \"workload\": \"{}\",\n  \"tx_size\": {},\n  \"duration_s\": {},\n  \"knee_p99_ms\": {},\n  \"knee_offered_rate\": {},\n  \"normal_case_messages_expected\": {},\n  \"points\": [\n{}\n  ],\n  \"overload\": [\n{}\n  ]\n}}\n",
        args.nodes,
        args.workload.name(),
        tx_size(args),
        args.duration,
        args.knee_p99_ms,
        knee.map_or("null".to_string(), |k| k.to_string()),
        2 * args.nodes * args.nodes.saturating_sub(1),
        pts.join(",\n"),
        over.join(",\n")
    )
}

fn markdown(
    args: &BenchArgs,
    points: &[Point],
    overload: &[(u64, Point)],
    knee: Option<u64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Sweep: {} workload, n = {}, {} s per point\n\nKnee (highest offered rate with p99 ≤ {} ms and ≥ 95% committed): **{}**.\n\nNormal-case messages per block expected: 2n(n−1) = {}.\n",
        args.workload.name(),
        args.nodes,
        args.duration,
        args.knee_p99_ms,
        knee.map_or("none".to_string(), |k| format!("{k} tx/s")),
        2 * args.nodes * args.nodes.saturating_sub(1)
    );
    let _ = writeln!(
        s,
        "| offered tx/s | committed tx/s | p50 ms | p99 ms | decided p50 / p99 ms | refused | view changes | started by (summed over replicas) | tx/block | PP+P+C msgs/block | bytes/block | load average |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let row = |s: &mut String, label: String, p: &Point| {
        let bytes: f64 = p.bytes_per_block.values().sum();
        let _ = writeln!(
            s,
            "| {label} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {} |",
            p.committed_tps,
            p.latency_p50_ms,
            p.latency_p99_ms,
            match (p.decided_p50_ms, p.decided_p99_ms) {
                (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1}"),
                _ => "—".to_string(),
            },
            p.refused,
            p.view_changes,
            p.view_change_causes(),
            p.mean_batch,
            p.normal_case_messages(),
            bytes,
            p.load_average
        );
    };
    for p in points {
        row(&mut s, p.offered_rate.to_string(), p);
    }
    for (f, p) in overload {
        row(&mut s, format!("{} ({f}× knee)", p.offered_rate), p);
    }
    s
}

/// One line of the plot: its name, colour, and the value it draws of each point (`None`: the
/// point did not measure it).
type Line = (&'static str, RGBColor, fn(&Point) -> Option<f64>);

fn plot(path: &Path, args: &BenchArgs, points: &[Point], knee: Option<u64>) -> Result<()> {
    let max_x = points.iter().map(|p| p.committed_tps).fold(1.0, f64::max) * 1.1;
    let max_y = points.iter().map(|p| p.latency_p99_ms).fold(10.0, f64::max) * 1.5;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("plot: {e}");
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Latency vs throughput: {} workload, n = {}{}",
                args.workload.name(),
                args.nodes,
                knee.map_or(String::new(), |k| format!(", knee {k} tx/s offered"))
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_x, (0.5f64..max_y).log_scale())
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("committed transactions per second")
        .y_desc("submit-to-commit (and to decided) latency (ms)")
        .draw()
        .map_err(draw)?;
    let series: [Line; 3] = [
        ("p50", BLUE, |p| Some(p.latency_p50_ms)),
        ("p99", RED, |p| Some(p.latency_p99_ms)),
        ("decided p50", GREEN, |p| p.decided_p50_ms),
    ];
    for (name, color, value) in series {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| Some((p.committed_tps, value(p)?.max(0.5))))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(draw)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(draw)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(offered: u64, committed: f64, p99: f64) -> Point {
        Point {
            offered_rate: offered,
            committed_tps: committed,
            latency_p99_ms: p99,
            ..Point::default()
        }
    }

    /// The plot draws the latency to decided only for points that measured it.
    #[test]
    fn the_plot_has_a_decided_line_only_when_measured() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: BenchArgs,
        }
        let args = Cli::parse_from(["bench"]).args;
        let dir = std::env::temp_dir().join(format!("quire-sweep-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut points = vec![point(1000, 1000.0, 5.0), point(2000, 1990.0, 12.0)];
        plot(&dir.join("without.svg"), &args, &points, Some(2000)).unwrap();
        for p in &mut points {
            p.decided_p50_ms = Some(2.0);
            p.decided_p99_ms = Some(4.0);
        }
        plot(&dir.join("with.svg"), &args, &points, Some(2000)).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(!read("without.svg").contains("decided p50"));
        assert!(read("with.svg").contains("decided p50"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The knee is the highest rate that both commits nearly all it is offered and keeps its
    /// p99 under the bound — not simply the highest throughput.
    #[test]
    fn the_knee_is_the_last_rate_within_both_bounds() {
        let points = [
            point(1000, 1000.0, 5.0),
            point(2000, 1990.0, 12.0),
            point(4000, 3950.0, 90.0),
            point(8000, 7000.0, 60.0),
            point(16000, 9000.0, 900.0),
        ];
        assert_eq!(knee(&points, 100.0).map(|p| p.offered_rate), Some(4000));
        assert_eq!(knee(&points, 10.0).map(|p| p.offered_rate), Some(1000));
        assert!(knee(&points, 1.0).is_none());
    }
}
