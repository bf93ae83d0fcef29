//! Judging a run and writing its report folder: the verdict, the timeline of views and heights,
//! throughput and latency over time (CSV and an SVG plot), the safety check, and who was caught
//! misbehaving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::run::Record;
use super::spec::{Action, Plan, Safety};
use crate::bench::percentile;
use crate::check::Finding;
use crate::plot::{Figure, Marker, Panel, Series};

/// A disruption and how the load fared while it lasted.
#[derive(Debug, Clone)]
pub struct Interval {
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
    pub tps: f64,
    pub baseline_tps: f64,
    /// Seconds from the start of the disruption until a transfer submitted after it commits.
    pub recovery_s: Option<f64>,
}

impl Interval {
    pub fn drop_percent(&self) -> f64 {
        if self.baseline_tps <= 0.0 {
            return 0.0;
        }
        (100.0 * (1.0 - self.tps / self.baseline_tps)).max(0.0)
    }
}

#[derive(Debug, Clone)]
pub struct Judgement {
    pub pass: bool,
    pub safety_held: bool,
    pub expected: Safety,
    /// Liveness after each step: (time, step, seconds until a new transfer committed).
    pub liveness: Vec<(f64, String, Option<f64>)>,
    pub intervals: Vec<Interval>,
    pub reasons: Vec<String>,
    pub committed: usize,
}

impl Judgement {
    pub fn verdict(&self) -> String {
        let safety = match (self.expected, self.safety_held) {
            (Safety::Holds, true) => "safety held",
            (Safety::Holds, false) => "SAFETY VIOLATED",
            (Safety::Violated, false) => {
                "safety violated, as expected with more than f faulty replicas; the checker caught it"
            }
            (Safety::Violated, true) => "safety held although a violation was expected",
        };
        format!(
            "{}: {safety}; {}",
            if self.pass { "PASS" } else { "FAIL" },
            if self.reasons.is_empty() {
                "liveness within bounds".to_string()
            } else {
                self.reasons.join("; ")
            }
        )
    }

    pub fn max_recovery_s(&self) -> Option<f64> {
        self.liveness
            .iter()
            .filter_map(|(_, _, s)| *s)
            .reduce(f64::max)
    }
}

/// Seconds from `t` until a transfer submitted at or after `t` committed.
fn resumed_after(record: &Record, t: f64) -> Option<f64> {
    record
        .commits
        .iter()
        .filter(|c| c.submitted_s >= t)
        .map(|c| c.committed_s - t)
        .reduce(f64::min)
}

fn tps(record: &Record, from: f64, to: f64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let n = record
        .commits
        .iter()
        .filter(|c| c.committed_s >= from && c.committed_s < to)
        .count();
    n as f64 / (to - from)
}

fn ends(start: &Action, other: &Action) -> bool {
    match (start, other) {
        (Action::Byzantine { replica, .. }, Action::Honest(r)) => replica == r,
        (
            Action::Byzantine { replica, .. },
            Action::Byzantine {
                replica: r,
                behaviour,
                ..
            },
        ) => replica == r && behaviour.is_honest(),
        (Action::Kill(a), Action::Restart(b)) => a == b,
        (Action::Pause(a), Action::Resume(b)) => a == b,
        (Action::Partition(_) | Action::Delay { .. }, Action::Heal) => true,
        (
            Action::Delay { replica, .. },
            Action::Delay {
                replica: r, ms: 0, ..
            },
        ) => replica == r,
        _ => false,
    }
}

pub fn judge(plan: &Plan, record: &Record) -> Judgement {
    let load_end = plan.scenario.load.duration as f64;
    let bound = plan.scenario.expect.recover_within;
    let check = record.check.as_ref();
    let disagreement = check.is_some_and(|c| c.first_disagreement().is_some());
    let safety_held = check.is_some_and(|c| c.ok());
    let mut reasons = Vec::new();
    match plan.scenario.expect.safety {
        Safety::Holds if !safety_held => reasons.push("the safety check failed".to_string()),
        Safety::Violated if !disagreement => {
            reasons.push("expected the checker to find a disagreement; it found none".to_string())
        }
        _ => {}
    }
    for e in &record.step_errors {
        reasons.push(format!("step failed: {e}"));
    }
    // Liveness: after every step outside a partition, new transfers commit within the bound.
    let mut liveness = Vec::new();
    let mut partitioned = false;
    for (t, action) in &plan.steps {
        match action {
            Action::Partition(_) => partitioned = true,
            Action::Heal => partitioned = false,
            _ => {}
        }
        if partitioned {
            continue;
        }
        let after = resumed_after(record, *t);
        if plan.scenario.expect.safety == Safety::Holds && after.is_none_or(|s| s > bound) {
            reasons.push(format!(
                "no transfer committed within {bound} s after '{}' at {t:.1} s",
                action.label()
            ));
        }
        liveness.push((*t, action.label(), after));
    }
    if record.commits.is_empty() && plan.scenario.load.rate > 0 {
        reasons.push("no transfer committed at all".into());
    }
    let first_step = plan.steps.first().map_or(load_end, |(t, _)| *t).max(1.0);
    let baseline = tps(record, 0.0, first_step);
    let mut intervals = Vec::new();
    for (i, (start, action)) in plan.steps.iter().enumerate() {
        if !action.disrupts() {
            continue;
        }
        let end = plan.steps[i + 1..]
            .iter()
            .find(|(_, a)| ends(action, a))
            .map_or(load_end, |(t, _)| *t);
        // From the start of the disruption until a transfer submitted after it commits: for a
        // partition that leaves no quorum that is after the heal; for one that leaves a quorum
        // (or any other fault within f), it is how long the protocol took to route around it.
        let recovery = resumed_after(record, *start);
        intervals.push(Interval {
            label: action.label(),
            start_s: *start,
            end_s: end,
            tps: tps(record, *start, end),
            baseline_tps: baseline,
            recovery_s: recovery,
        });
    }
    Judgement {
        pass: reasons.is_empty(),
        safety_held,
        expected: plan.scenario.expect.safety,
        liveness,
        intervals,
        reasons,
        committed: record.commits.len(),
    }
}

/// Per second: committed transfers and latency percentiles.
fn per_second(record: &Record) -> BTreeMap<u64, (usize, f64, f64)> {
    let mut buckets: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for c in &record.commits {
        buckets
            .entry(c.committed_s.max(0.0) as u64)
            .or_default()
            .push((c.committed_s - c.submitted_s) * 1000.0);
    }
    buckets
        .into_iter()
        .map(|(s, mut l)| {
            l.sort_by(|a, b| a.total_cmp(b));
            (s, (l.len(), percentile(&l, 0.5), percentile(&l, 0.99)))
        })
        .collect()
}

fn figure(plan: &Plan, record: &Record) -> Figure {
    let seconds = per_second(record);
    let mut heights: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    let mut views: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for s in &record.samples {
        if let Some((view, height, _)) = s.state {
            heights
                .entry(s.replica)
                .or_default()
                .push((s.t_s, height as f64));
            views
                .entry(s.replica)
                .or_default()
                .push((s.t_s, view as f64));
        }
    }
    let name = |r: &u32| {
        if plan.malicious.contains(r) {
            format!("replica {r} (faulty)")
        } else {
            format!("replica {r}")
        }
    };
    Figure {
        title: format!("scenario {}", plan.scenario.name),
        duration_s: record.duration_s,
        panels: vec![
            Panel {
                title: "committed transfers per second".into(),
                y_label: "tx/s".into(),
                series: vec![Series {
                    name: "committed".into(),
                    points: seconds
                        .iter()
                        .map(|(s, (n, _, _))| (*s as f64 + 0.5, *n as f64))
                        .collect(),
                }],
            },
            Panel {
                title: "submit-to-commit latency".into(),
                y_label: "ms".into(),
                series: vec![
                    Series {
                        name: "p50".into(),
                        points: seconds
                            .iter()
                            .map(|(s, (_, p, _))| (*s as f64 + 0.5, *p))
                            .collect(),
                    },
                    Series {
                        name: "p99".into(),
                        points: seconds
                            .iter()
                            .map(|(s, (_, _, p))| (*s as f64 + 0.5, *p))
                            .collect(),
                    },
                ],
            },
            Panel {
                title: "executed height per replica".into(),
                y_label: "height".into(),
                series: heights
                    .iter()
                    .map(|(r, p)| Series {
                        name: name(r),
                        points: p.clone(),
                    })
                    .collect(),
            },
            Panel {
                title: "view per replica".into(),
                y_label: "view".into(),
                series: views
                    .iter()
                    .map(|(r, p)| Series {
                        name: name(r),
                        points: p.clone(),
                    })
                    .collect(),
            },
        ],
        markers: record
            .steps
            .iter()
            .map(|(t, label)| Marker {
                t_s: *t,
                label: label.clone(),
            })
            .collect(),
    }
}

/// Seconds for people: milliseconds below one second.
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.1} s")
    }
}

fn markdown(plan: &Plan, record: &Record, j: &Judgement) -> String {
    let s = &plan.scenario;
    let mut md = String::new();
    let _ = writeln!(md, "# Scenario: {}\n\n{}\n", s.name, s.description);
    let _ = writeln!(md, "**Verdict: {}**\n", j.verdict());
    let _ = writeln!(
        md,
        "{} replicas; load {} transfers/s for {} s; {} submitted, {} committed. Faulty: {}.\n",
        s.nodes,
        s.load.rate,
        s.load.duration,
        record.submitted,
        record.commits.len(),
        if plan.malicious.is_empty() {
            "none".to_string()
        } else {
            format!("{:?}", plan.malicious)
        }
    );
    let _ = writeln!(
        md,
        "## Safety\n\n```\n{}```\n",
        record
            .check
            .as_ref()
            .map_or("not checked\n".into(), |c| c.render())
    );
    match record.check.as_ref().and_then(|c| c.first_disagreement()) {
        Some(Finding::Disagreement { height, hashes }) => {
            let _ = writeln!(md, "The honest replicas forked at height **{height}**:\n");
            for (r, h) in hashes {
                let _ = writeln!(md, "- replica {r}: block `{h}`");
            }
            let _ = writeln!(md);
        }
        Some(Finding::Diverged {
            replica,
            height,
            ours,
            certified,
        }) => {
            let _ = writeln!(
                md,
                "The honest replicas forked at height **{height}**: replica {replica} executed block `{ours}`, 2f+1 replicas certified `{certified}`. Replica {replica} found it at the checkpoint, stopped signing, discarded its chain and fetched the certified one, so the chains agree now — but it had executed, and answered clients about, blocks that are not the network's.\n"
            );
        }
        _ => {}
    }
    let _ = writeln!(
        md,
        "## Timeline\n\n| time (s) | step | new transfers committing again after |\n|---:|---|---:|"
    );
    for (t, label) in &record.steps {
        let after = j
            .liveness
            .iter()
            .find(|(lt, l, _)| (lt - t).abs() < 1.0 && l == label)
            .map_or("(partitioned)".to_string(), |(_, _, s)| {
                s.map_or("never".into(), seconds)
            });
        let _ = writeln!(md, "| {t:.1} | {label} | {after} |");
    }
    let _ = writeln!(
        md,
        "\n## Disruptions\n\n| disruption | from (s) | to (s) | tx/s during | tx/s before | drop | recovered after |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for i in &j.intervals {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0}% | {} |",
            i.label,
            i.start_s,
            i.end_s,
            i.tps,
            i.baseline_tps,
            i.drop_percent(),
            i.recovery_s.map_or("never".into(), seconds)
        );
    }
    let _ = writeln!(md, "\n## Views at the end\n");
    let last: BTreeMap<u32, Option<(u64, u64, bool)>> = record
        .samples
        .iter()
        .map(|s| (s.replica, s.state))
        .collect();
    for (r, st) in last {
        let _ = writeln!(
            md,
            "- replica {r}{}: {}",
            if plan.malicious.contains(&r) {
                " (faulty)"
            } else {
                ""
            },
            st.map_or("unreachable".into(), |(v, h, c)| format!(
                "view {v}{}, height {h}",
                if c { " (changing)" } else { "" }
            ))
        );
    }
    let _ = writeln!(
        md,
        "\n## Misbehaviour detected (as counted by each replica)\n"
    );
    for (r, lines) in &record.misbehaviour {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(md, "replica {r}:\n```\n{}\n```", lines.join("\n"));
    }
    let _ = writeln!(
        md,
        "\nFiles: `plot.svg`, `timeline.csv`, `throughput.csv`, `check.txt`, `verdict.txt`, `net/` (the testnet, with each replica's log)."
    );
    md
}

pub fn write(dir: &Path, plan: &Plan, record: &Record, j: &Judgement) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let put = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))
    };
    put("verdict.txt", j.verdict() + "\n")?;
    put("report.md", markdown(plan, record, j))?;
    put("plot.svg", figure(plan, record).to_svg())?;
    put(
        "check.txt",
        record.check.as_ref().map_or(String::new(), |c| c.render()),
    )?;
    let mut csv = String::from("t_s,replica,view,height,changing_view\n");
    for s in &record.samples {
        match s.state {
            Some((v, h, c)) => {
                let _ = writeln!(csv, "{:.2},{},{v},{h},{}", s.t_s, s.replica, c as u8);
            }
            None => {
                let _ = writeln!(csv, "{:.2},{},,,", s.t_s, s.replica);
            }
        }
    }
    put("timeline.csv", csv)?;
    let mut csv = String::from("second,committed,latency_p50_ms,latency_p99_ms\n");
    for (s, (n, p50, p99)) in per_second(record) {
        let _ = writeln!(csv, "{s},{n},{p50:.1},{p99:.1}");
    }
    put("throughput.csv", csv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::run::Commit;

    fn plan() -> Plan {
        let text = "name = \"p\"\nnodes = 4\n[load]\nrate = 10\nduration = 30\n\
            [[steps]]\nat = 5\naction = \"partition\"\ngroups = [[0, 1], [2, 3]]\n\
            [[steps]]\nat = 10\naction = \"heal\"\n\
            [[steps]]\nat = 15\naction = \"partition\"\ngroups = [[0], [1, 2, 3]]\n\
            [[steps]]\nat = 20\naction = \"heal\"\n[expect]\nsafety = \"holds\"\n";
        match Plan::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("{e:#}"),
        }
    }

    fn commit(submitted_s: f64, committed_s: f64) -> Commit {
        Commit {
            submitted_s,
            committed_s,
        }
    }

    /// A partition without a quorum stops commits until the heal; one that leaves a quorum is
    /// routed around, and the report says how fast.
    #[test]
    fn recovery_is_timed_from_the_start_of_each_disruption() {
        let record = Record {
            commits: vec![
                commit(1.0, 1.1),
                commit(5.5, 10.3), // stuck in the first partition, commits after the heal
                commit(15.2, 16.0), // the quorum side goes on without replica 0
                commit(16.0, 16.1),
            ],
            ..Record::default()
        };
        let j = judge(&plan(), &record);
        let recovery: Vec<f64> = j.intervals.iter().filter_map(|i| i.recovery_s).collect();
        assert_eq!(recovery.len(), 2);
        assert!((recovery[0] - 5.3).abs() < 1e-9, "{recovery:?}");
        assert!((recovery[1] - 1.0).abs() < 1e-9, "{recovery:?}");
        assert_eq!(j.intervals[0].tps, 0.0);
        assert!(j.intervals[1].tps > 0.0);
    }
}
