//! The page's buttons: each one parses its parameters, refuses what does not name a replica, a
//! behaviour or a partition of this testnet, and then calls the same [`Testnet`] operation as the
//! CLI command of the same name, so the two cannot disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use quire_consensus::Behaviour;

use crate::ops::{self, Testnet};

/// Why an action did nothing: the request was wrong (400), or the operation failed (500).
#[derive(Debug)]
pub enum ActionError {
    Bad(String),
    Failed(String),
}

type Params = BTreeMap<String, String>;

fn param<'a>(p: &'a Params, name: &str) -> Result<&'a str, ActionError> {
    p.get(name)
        .map(|s| s.trim())
        .ok_or_else(|| ActionError::Bad(format!("missing parameter `{name}`")))
}

fn replica(net: &Testnet, p: &Params) -> Result<u32, ActionError> {
    let text = param(p, "replica")?;
    let i: u32 = text
        .parse()
        .map_err(|_| ActionError::Bad(format!("'{text}' is not a replica index")))?;
    net.check_index(i)
        .map_err(|e| ActionError::Bad(e.to_string()))?;
    Ok(i)
}

/// `colluders=0,1` (optional): faulty replicas that receive both sides of an equivocation.
fn colluders(net: &Testnet, p: &Params) -> Result<Vec<u32>, ActionError> {
    let Some(text) = p.get("colluders") else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let c: u32 = s
                .parse()
                .map_err(|_| ActionError::Bad(format!("colluder '{s}' is not a replica index")))?;
            net.check_index(c)
                .map_err(|e| ActionError::Bad(e.to_string()))?;
            Ok(c)
        })
        .collect()
}

fn failed(e: anyhow::Error) -> ActionError {
    ActionError::Failed(format!("{e:#}"))
}

/// Runs action `name` (blocking: the operations speak plain HTTP to the replicas and wait for
/// processes). Returns what to show on the page.
pub fn run(net: &Arc<Testnet>, name: &str, p: &Params) -> Result<String, ActionError> {
    match name {
        "behaviour" => {
            let i = replica(net, p)?;
            let name = param(p, "name")?;
            if crate::pow::is_pow(net) {
                // Proof of work has its own behaviours; the CLI's `byzantine` does the same.
                if quire_node::pow::PowBehaviour::parse(name).is_none() {
                    return Err(ActionError::Bad(format!(
                        "unknown proof-of-work behaviour '{name}'"
                    )));
                }
                let b = crate::pow::set_behaviour(net, i, name).map_err(failed)?;
                return Ok(format!("replica {i} is now {}", b.name()));
            }
            let b = Behaviour::parse(name).map_err(ActionError::Bad)?;
            let colluders = colluders(net, p)?;
            net.set_behaviour_with(i, b, &colluders).map_err(failed)?;
            Ok(format!("replica {i} is now {b}"))
        }
        "kill" => {
            let i = replica(net, p)?;
            let was = net.kill(i).map_err(failed)?;
            Ok(if was {
                format!("killed replica {i}")
            } else {
                format!("replica {i} was not running")
            })
        }
        "restart" => {
            let i = replica(net, p)?;
            let pid = net.start(i).map_err(failed)?;
            Ok(format!("restarted replica {i} (pid {pid})"))
        }
        "pause" | "resume" => {
            let i = replica(net, p)?;
            net.pause(i, name == "pause").map_err(failed)?;
            Ok(format!("replica {i} {name}d"))
        }
        "partition" => {
            let groups = ops::parse_groups(param(p, "groups")?)
                .map_err(|e| ActionError::Bad(format!("{e:#}")))?;
            for i in groups.iter().flatten() {
                net.check_index(*i)
                    .map_err(|e| ActionError::Bad(e.to_string()))?;
            }
            net.partition(&groups).map_err(failed)?;
            Ok(format!("partitioned: {groups:?}"))
        }
        "heal" => {
            net.heal().map_err(failed)?;
            Ok("healed: no partitions, no delays".into())
        }
        "delay" => {
            let i = replica(net, p)?;
            let text = param(p, "ms")?;
            let ms: u64 = text
                .parse()
                .map_err(|_| ActionError::Bad(format!("'{text}' is not a whole number of ms")))?;
            if ms > 60_000 {
                return Err(ActionError::Bad("a delay is at most 60000 ms".into()));
            }
            net.delay(i, ms, None).map_err(failed)?;
            Ok(format!("replica {i} delays what it sends by {ms} ms"))
        }
        _ => Err(ActionError::Bad(format!("unknown action `{name}`"))),
    }
}

/// A load rate from the page: a whole number of transactions per second, 0 to stop.
pub fn load_rate(p: &Params) -> Result<u64, ActionError> {
    let text = param(p, "rate")?;
    let rate: u64 = text
        .parse()
        .map_err(|_| ActionError::Bad(format!("'{text}' is not a rate in tx/s")))?;
    if rate > super::load::RATE_MAX {
        return Err(ActionError::Bad(format!(
            "a rate is at most {} tx/s",
            super::load::RATE_MAX
        )));
    }
    Ok(rate)
}
