//! Shipped scenarios played on the watched testnet: the scenario's load (through the
//! dashboard's load generator) and its timeline of perturbations, each step through
//! [`crate::scenario::run::apply`] like `quire-testnet run`. Unlike `run`, it starts no testnet
//! of its own and writes no report: the page is the report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::ops::Testnet;
use crate::scenario::Plan;

/// The scenarios of `testnet/scenarios/`, embedded so the dashboard needs no files beside it
/// (a test checks that none is missing).
pub const SHIPPED: &[(&str, &str)] = &[
    ("amplify", include_str!("../../scenarios/amplify.toml")),
    (
        "colluding-equivocation",
        include_str!("../../scenarios/colluding-equivocation.toml"),
    ),
    (
        "crash-restart-loop",
        include_str!("../../scenarios/crash-restart-loop.toml"),
    ),
    (
        "delay-votes",
        include_str!("../../scenarios/delay-votes.toml"),
    ),
    (
        "double-voting-backup",
        include_str!("../../scenarios/double-voting-backup.toml"),
    ),
    (
        "equivocating-primary",
        include_str!("../../scenarios/equivocating-primary.toml"),
    ),
    ("flood", include_str!("../../scenarios/flood.toml")),
    (
        "forward-flood",
        include_str!("../../scenarios/forward-flood.toml"),
    ),
    (
        "forged-signatures",
        include_str!("../../scenarios/forged-signatures.toml"),
    ),
    (
        "future-view",
        include_str!("../../scenarios/future-view.toml"),
    ),
    (
        "impersonate",
        include_str!("../../scenarios/impersonate.toml"),
    ),
    (
        "invalid-batch",
        include_str!("../../scenarios/invalid-batch.toml"),
    ),
    (
        "lying-view-change",
        include_str!("../../scenarios/lying-view-change.toml"),
    ),
    (
        "partition-and-heal",
        include_str!("../../scenarios/partition-and-heal.toml"),
    ),
    ("replay", include_str!("../../scenarios/replay.toml")),
    (
        "seven-replicas-two-faulty",
        include_str!("../../scenarios/seven-replicas-two-faulty.toml"),
    ),
    (
        "silent-primary",
        include_str!("../../scenarios/silent-primary.toml"),
    ),
    ("slowloris", include_str!("../../scenarios/slowloris.toml")),
    (
        "stale-view",
        include_str!("../../scenarios/stale-view.toml"),
    ),
];

/// The shipped scenario `name`, checked against the testnet it is to run on.
pub fn find(name: &str, n: u32) -> Result<Plan> {
    let Some((_, text)) = SHIPPED.iter().find(|(s, _)| *s == name) else {
        let names: Vec<&str> = SHIPPED.iter().map(|(s, _)| *s).collect();
        bail!("unknown scenario '{name}' (shipped: {})", names.join(", "));
    };
    let plan = Plan::parse(text)?;
    if plan.scenario.nodes as u32 != n {
        bail!(
            "scenario '{name}' is written for {} replicas and this testnet has {n}",
            plan.scenario.nodes
        );
    }
    Ok(plan)
}

/// Plays `plan`'s timeline on `net` (the caller runs the load); returns when its last step ran.
pub async fn play(net: Arc<Testnet>, plan: Plan) -> Result<()> {
    net.log_event(&format!("scenario {}", plan.scenario.name))?;
    let start = tokio::time::Instant::now();
    for (at, action) in plan.steps {
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        let net = net.clone();
        tokio::task::spawn_blocking(move || crate::scenario::run::apply(&net, action)).await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_file_is_shipped_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("scenarios folder")
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                Some(name.strip_suffix(".toml")?.to_string())
            })
            .collect();
        files.sort();
        let mut shipped: Vec<String> = SHIPPED.iter().map(|(s, _)| s.to_string()).collect();
        shipped.sort();
        assert_eq!(files, shipped);
        for (name, text) in SHIPPED {
            Plan::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        assert!(find("partition-and-heal", 4).is_ok());
        assert!(find("partition-and-heal", 7).is_err());
        assert!(find("nope", 4).is_err());
    }
}
