//! Scenario files: a testnet, a load, and a timeline of perturbations, as data.
//!
//! ```toml
//! name = "equivocating-primary"
//! description = "The primary sends different batches to different backups."
//! nodes = 4
//!
//! [load]
//! rate = 100          # transfers per second, offered
//! duration = 30       # seconds
//!
//! [[steps]]
//! at = 8              # seconds after the load starts
//! action = "byzantine"
//! replica = 0
//! behaviour = "equivocate"
//!
//! [[steps]]
//! at = 20
//! action = "honest"
//! replica = 0
//!
//! [expect]
//! safety = "holds"    # or "violated": more than f faulty, the checker must catch the fork
//! recover_within = 15 # seconds: after each step, transfers commit again within this
//! throughput_ratio_min = 0.8 # optional: tx/s during each disruption ≥ 0.8 × the same window
//!                            # of the run without it (`quire-testnet run --baseline`)
//! rss_mib_max = 512   # optional: every honest replica's resident memory stays below this
//! stall_max_s = 5     # optional: no disruption stops commits for longer than this
//! ```
//!
//! Actions: `byzantine` (replica, behaviour, optional colluders), `honest` (replica), `kill`,
//! `restart`, `pause`, `resume` (replica), `partition` (groups), `heal`, `delay` (replica, ms,
//! optional to).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use quire_consensus::Behaviour;
use serde::Deserialize;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub nodes: usize,
    #[serde(default = "default_accounts")]
    pub accounts: usize,
    pub load: Load,
    #[serde(default)]
    pub steps: Vec<Step>,
    pub expect: Expect,
}

fn default_accounts() -> usize {
    32
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub rate: u64,
    pub duration: u64,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub at: f64,
    pub action: String,
    pub replica: Option<u32>,
    pub behaviour: Option<String>,
    #[serde(default)]
    pub colluders: Vec<u32>,
    pub groups: Option<Vec<Vec<u32>>>,
    pub ms: Option<u64>,
    pub to: Option<u32>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Safety {
    Holds,
    Violated,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub safety: Safety,
    #[serde(default = "default_recover")]
    pub recover_within: f64,
    /// Committed transfers per second during each Byzantine disruption, as a share of the same
    /// window in the run without the attacks, must be at least this (judged when there is such
    /// a baseline run: `quire-testnet run --baseline`).
    #[serde(default)]
    pub throughput_ratio_min: Option<f64>,
    /// Every honest replica's resident memory stays below this many MiB for the whole run.
    #[serde(default)]
    pub rss_mib_max: Option<u64>,
    /// No disruption stops commits for longer than this many seconds.
    #[serde(default)]
    pub stall_max_s: Option<f64>,
}

fn default_recover() -> f64 {
    15.0
}

/// A step, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Byzantine {
        replica: u32,
        behaviour: Behaviour,
        colluders: Vec<u32>,
    },
    Honest(u32),
    Kill(u32),
    Restart(u32),
    Pause(u32),
    Resume(u32),
    Partition(Vec<Vec<u32>>),
    Heal,
    Delay {
        replica: u32,
        ms: u64,
        to: Option<u32>,
    },
}

impl Action {
    pub fn label(&self) -> String {
        match self {
            Action::Byzantine {
                replica, behaviour, ..
            } => format!("replica {replica} {behaviour}"),
            Action::Honest(r) => format!("replica {r} honest"),
            Action::Kill(r) => format!("kill {r}"),
            Action::Restart(r) => format!("restart {r}"),
            Action::Pause(r) => format!("pause {r}"),
            Action::Resume(r) => format!("resume {r}"),
            Action::Partition(g) => {
                let g: Vec<String> = g
                    .iter()
                    .map(|x| {
                        x.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                format!("partition {}", g.join(" / "))
            }
            Action::Heal => "heal".into(),
            Action::Delay { replica, ms, .. } => format!("delay {replica} by {ms} ms"),
        }
    }

    /// Whether the step starts a disruption (as opposed to ending one).
    pub fn disrupts(&self) -> bool {
        !matches!(
            self,
            Action::Honest(_) | Action::Restart(_) | Action::Resume(_) | Action::Heal
        ) && !matches!(self, Action::Byzantine { behaviour, .. } if behaviour.is_honest())
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub steps: Vec<(f64, Action)>,
    /// Replicas made faulty at some point.
    pub malicious: BTreeSet<u32>,
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        Plan::parse(&text).with_context(|| format!("scenario {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Plan> {
        let scenario: Scenario = toml::from_str(text).context("not a valid scenario file")?;
        let n = scenario.nodes;
        if n == 0 || n > 32 {
            bail!("nodes must be between 1 and 32, got {n}");
        }
        if scenario.accounts == 0 || scenario.accounts > 10_000 {
            bail!("accounts must be between 1 and 10000");
        }
        if scenario.load.duration < 5 || scenario.load.duration > 3600 {
            bail!("load.duration must be between 5 and 3600 seconds");
        }
        if scenario.load.rate > 20_000 {
            bail!("load.rate must be at most 20000 transfers per second");
        }
        if !(scenario.expect.recover_within > 0.0 && scenario.expect.recover_within <= 600.0) {
            bail!("expect.recover_within must be between 0 and 600 seconds");
        }
        if let Some(r) = scenario.expect.throughput_ratio_min
            && !(r > 0.0 && r <= 2.0)
        {
            bail!("expect.throughput_ratio_min must be above 0 and at most 2, got {r}");
        }
        if let Some(m) = scenario.expect.stall_max_s
            && !(m > 0.0 && m <= 600.0)
        {
            bail!("expect.stall_max_s must be above 0 and at most 600 seconds, got {m}");
        }
        if let Some(m) = scenario.expect.rss_mib_max
            && !(16..=1 << 20).contains(&m)
        {
            bail!("expect.rss_mib_max must be between 16 and 1048576 MiB, got {m}");
        }
        let mut steps = Vec::new();
        let mut last = 0.0f64;
        for (i, step) in scenario.steps.iter().enumerate() {
            let at = step.at;
            if !at.is_finite() || at < 0.0 {
                bail!("step {}: `at` must be a number of seconds ≥ 0", i + 1);
            }
            if at < last {
                bail!(
                    "steps out of order: step {} is at {at} s, after a step at {last} s",
                    i + 1
                );
            }
            if at >= scenario.load.duration as f64 {
                bail!(
                    "step {} at {at} s is after the load ends ({} s)",
                    i + 1,
                    scenario.load.duration
                );
            }
            last = at;
            let action =
                action(step, n).with_context(|| format!("step {} ({})", i + 1, step.action))?;
            steps.push((at, action));
        }
        let malicious: BTreeSet<u32> = steps
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Byzantine {
                    replica, behaviour, ..
                } if !behaviour.is_honest() => Some(*replica),
                _ => None,
            })
            .collect();
        let f = malicious.len();
        if n < 3 * f + 1 && scenario.expect.safety != Safety::Violated {
            bail!(
                "{f} malicious replicas need at least {} replicas (n ≥ 3f + 1), this scenario has {n}; \
                 to watch safety break on purpose, set expect.safety = \"violated\"",
                3 * f + 1
            );
        }
        Ok(Plan {
            scenario,
            steps,
            malicious,
        })
    }
}

impl Plan {
    /// The same scenario without its Byzantine steps (crashes, pauses, partitions and delays
    /// stay): the run its attacks are measured against.
    pub fn without_attacks(&self) -> Plan {
        let mut scenario = self.scenario.clone();
        scenario.name = format!("{}-baseline", scenario.name);
        scenario
            .steps
            .retain(|s| s.action != "byzantine" && s.action != "honest");
        scenario.expect.throughput_ratio_min = None;
        let steps = self
            .steps
            .iter()
            .filter(|(_, a)| !matches!(a, Action::Byzantine { .. } | Action::Honest(_)))
            .cloned()
            .collect();
        Plan {
            scenario,
            steps,
            malicious: BTreeSet::new(),
        }
    }
}

fn replica(step: &Step, n: usize) -> Result<u32> {
    let r = step.replica.context("needs `replica`")?;
    check_index(r, n)?;
    Ok(r)
}

fn check_index(r: u32, n: usize) -> Result<()> {
    if r as usize >= n {
        bail!("replica {r} is out of range (the scenario has replicas 0..{n})");
    }
    Ok(())
}

fn action(step: &Step, n: usize) -> Result<Action> {
    Ok(match step.action.as_str() {
        "byzantine" => {
            let name = step.behaviour.as_deref().context("needs `behaviour`")?;
            let behaviour = Behaviour::parse(name).map_err(anyhow::Error::msg)?;
            for c in &step.colluders {
                check_index(*c, n)?;
            }
            Action::Byzantine {
                replica: replica(step, n)?,
                behaviour,
                colluders: step.colluders.clone(),
            }
        }
        "honest" => Action::Honest(replica(step, n)?),
        "kill" => Action::Kill(replica(step, n)?),
        "restart" => Action::Restart(replica(step, n)?),
        "pause" => Action::Pause(replica(step, n)?),
        "resume" => Action::Resume(replica(step, n)?),
        "heal" => Action::Heal,
        "partition" => {
            let groups = step
                .groups
                .clone()
                .context("needs `groups`, e.g. [[0, 1], [2, 3]]")?;
            if groups.len() < 2 || groups.iter().any(|g| g.is_empty()) {
                bail!("needs at least two non-empty groups");
            }
            for g in &groups {
                for r in g {
                    check_index(*r, n)?;
                }
            }
            Action::Partition(groups)
        }
        "delay" => {
            let to = step.to;
            if let Some(t) = to {
                check_index(t, n)?;
            }
            let ms = step.ms.context("needs `ms`")?;
            if ms > 60_000 {
                bail!("ms must be at most 60000");
            }
            Action::Delay {
                replica: replica(step, n)?,
                ms,
                to,
            }
        }
        other => bail!(
            "unknown action '{other}' (known: byzantine, honest, kill, restart, pause, resume, partition, heal, delay)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(steps: &str, nodes: usize, safety: &str) -> Result<Plan> {
        Plan::parse(&format!(
            "name = \"t\"\nnodes = {nodes}\n[load]\nrate = 10\nduration = 30\n{steps}\n[expect]\nsafety = \"{safety}\"\n"
        ))
    }

    fn err(steps: &str, nodes: usize, safety: &str) -> String {
        format!(
            "{:#}",
            with(steps, nodes, safety)
                .err()
                .unwrap_or_else(|| panic!("should fail"))
        )
    }

    #[test]
    fn a_valid_scenario_parses() {
        let p = with(
            "[[steps]]\nat = 5\naction = \"byzantine\"\nreplica = 0\nbehaviour = \"equivocate\"\n[[steps]]\nat = 9\naction = \"partition\"\ngroups = [[0, 1], [2, 3]]\n",
            4,
            "holds",
        )
        .unwrap();
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.malicious.len(), 1);
    }

    #[test]
    fn bad_scenarios_are_refused_before_anything_starts() {
        let e = err(
            "[[steps]]\nat = 5\naction = \"byzantine\"\nreplica = 0\nbehaviour = \"sneaky\"\n",
            4,
            "holds",
        );
        assert!(e.contains("unknown behaviour 'sneaky'"), "{e}");
        let e = err(
            "[[steps]]\nat = 5\naction = \"kill\"\nreplica = 4\n",
            4,
            "holds",
        );
        assert!(e.contains("out of range"), "{e}");
        let e = err(
            "[[steps]]\nat = 9\naction = \"heal\"\n[[steps]]\nat = 5\naction = \"heal\"\n",
            4,
            "holds",
        );
        assert!(e.contains("out of order"), "{e}");
        let e = err(
            "[[steps]]\nat = 5\naction = \"byzantine\"\nreplica = 0\nbehaviour = \"silent\"\n[[steps]]\nat = 6\naction = \"byzantine\"\nreplica = 1\nbehaviour = \"silent\"\n",
            4,
            "holds",
        );
        assert!(e.contains("n ≥ 3f + 1"), "{e}");
        let e = err("[[steps]]\nat = 5\naction = \"explode\"\n", 4, "holds");
        assert!(e.contains("unknown action"), "{e}");
        let e = err("[[steps]]\nat = 50\naction = \"heal\"\n", 4, "holds");
        assert!(e.contains("after the load ends"), "{e}");
        assert!(with("bogus = 1", 4, "holds").is_err());
    }

    #[test]
    fn more_than_f_is_allowed_when_the_break_is_expected() {
        let p = with(
            "[[steps]]\nat = 5\naction = \"byzantine\"\nreplica = 0\nbehaviour = \"equivocate\"\ncolluders = [0, 1]\n[[steps]]\nat = 5\naction = \"byzantine\"\nreplica = 1\nbehaviour = \"equivocate\"\ncolluders = [0, 1]\n",
            4,
            "violated",
        )
        .unwrap();
        assert_eq!(p.malicious.len(), 2);
    }
}
