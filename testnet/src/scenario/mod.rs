//! `quire-testnet run SCENARIO.toml`: a scenario is one file — nodes, load, a timeline of
//! perturbations, expectations — and one command, ending in a verdict and a report folder.

pub mod report;
pub mod run;
pub mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub use report::{Baseline, Judgement};
pub use spec::Plan;

/// What a scenario run produced.
pub struct Outcome {
    pub judgement: Judgement,
    pub report_dir: PathBuf,
    pub record: run::Record,
}

impl Outcome {
    /// What this run committed, to measure another run against.
    pub fn baseline(&self) -> Baseline {
        Baseline {
            commits: self.record.commits.clone(),
        }
    }
}

/// Runs `plan` with its testnet and report under `reports` (a new folder per run).
pub async fn run(plan: Plan, reports: &Path, keep: bool, out: &mut dyn Write) -> Result<Outcome> {
    run_against(plan, reports, keep, None, out).await
}

/// Runs `plan`, measuring each disruption against `baseline`: what the same scenario committed
/// without its attacks (see [`Plan::without_attacks`]).
pub async fn run_against(
    plan: Plan,
    reports: &Path,
    keep: bool,
    baseline: Option<&Baseline>,
    out: &mut dyn Write,
) -> Result<Outcome> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let report_dir = reports.join(format!("{}-{stamp}", plan.scenario.name));
    let mut runner = run::Runner::start(plan, &report_dir, out).await?;
    let record = runner.run(out).await;
    runner.shutdown(keep);
    let record = record?;
    let judgement = report::judge(&runner.plan, &record, baseline);
    report::write(&report_dir, &runner.plan, &record, &judgement)?;
    Ok(Outcome {
        judgement,
        report_dir,
        record,
    })
}

/// Runs the scenario without its attacks first, then as it is, measured against the first run.
pub async fn run_with_baseline(
    plan: Plan,
    reports: &Path,
    keep: bool,
    out: &mut dyn Write,
) -> Result<Outcome> {
    let _ = writeln!(out, "baseline: the same scenario without its attacks");
    let twin = run_against(plan.without_attacks(), reports, false, None, out).await?;
    let baseline = twin.baseline();
    let _ = writeln!(
        out,
        "baseline: {} transfers committed; now the scenario",
        baseline.commits.len()
    );
    run_against(plan, reports, keep, Some(&baseline), out).await
}
