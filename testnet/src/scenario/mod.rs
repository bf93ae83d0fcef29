//! `quire-testnet run SCENARIO.toml`: a scenario is one file — nodes, load, a timeline of
//! perturbations, expectations — and one command, ending in a verdict and a report folder.

pub mod report;
pub mod run;
pub mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub use report::Judgement;
pub use spec::Plan;

/// What a scenario run produced.
pub struct Outcome {
    pub judgement: Judgement,
    pub report_dir: PathBuf,
}

/// Runs `plan` with its testnet and report under `reports` (a new folder per run).
pub async fn run(plan: Plan, reports: &Path, keep: bool, out: &mut dyn Write) -> Result<Outcome> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report_dir = reports.join(format!("{}-{stamp}", plan.scenario.name));
    let mut runner = run::Runner::start(plan, &report_dir, out).await?;
    let record = runner.run(out).await;
    runner.shutdown(keep);
    let record = record?;
    let judgement = report::judge(&runner.plan, &record);
    report::write(&report_dir, &runner.plan, &record, &judgement)?;
    Ok(Outcome {
        judgement,
        report_dir,
    })
}
