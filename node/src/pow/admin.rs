//! The admin API's proof-of-work requests: behaviours and the miner's hash rate.

use std::collections::BTreeMap;

use quire_chain::genesis::ConsensusMode;

use super::{PowBehaviour, PowEvent};
use crate::driver::Event;
use crate::http::HttpContext;
use crate::rpc_server::deliver;

/// `POST /admin/behaviour?name=…` on a proof-of-work replica.
pub async fn behaviour(ctx: &HttpContext, params: &BTreeMap<&str, &str>) -> Result<String, String> {
    let name = params.get("name").ok_or("missing ?name=")?;
    let behaviour = PowBehaviour::parse(name).ok_or_else(|| {
        let known: Vec<&str> = PowBehaviour::ALL.iter().map(|b| b.name()).collect();
        format!(
            "unknown proof-of-work behaviour '{name}' (this network runs proof of work: {})",
            known.join(", ")
        )
    })?;
    if !deliver(&ctx.events, Event::Pow(PowEvent::SetBehaviour(behaviour))).await {
        return Err("replica is shutting down".into());
    }
    Ok(format!("behaviour {}\n", behaviour.name()))
}

/// `POST /admin/hashpower?rate=…` (hashes per second).
pub async fn hashpower(ctx: &HttpContext, params: &BTreeMap<&str, &str>) -> Result<String, String> {
    if ctx.consensus != ConsensusMode::Pow {
        return Err("this replica runs PBFT: it has no miner and no hash rate".into());
    }
    let rate: u64 = params
        .get("rate")
        .ok_or("missing ?rate=")?
        .parse()
        .map_err(|_| "rate must be a whole number of hashes per second")?;
    if rate > 100_000_000 {
        return Err("rate must be at most 100000000 hashes per second".into());
    }
    if !deliver(&ctx.events, Event::Pow(PowEvent::SetHashRate(rate))).await {
        return Err("replica is shutting down".into());
    }
    Ok(format!("hash rate {rate}\n"))
}
