//! The dashboard's load generator: transfers between the testnet's funded accounts at a chosen
//! rate, signed a tick ahead by the benchmark's [`Load`], submitted to the current primary's
//! neighbour set by the client's own failover. Nonces are read back from the chain every few
//! seconds, so transfers refused during a partition do not leave a gap that blocks the rest.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use quire_client::Client;
use quire_wire::rpc::{Request, Response};

use crate::bench::Workload;
use crate::bench::load::Load;
use crate::ops::Testnet;

/// Submissions per second are split into this many batches.
const TICKS_PER_S: u64 = 10;
/// How often the accounts' nonces are read back from replica 0 (or the next that answers).
const RESYNC_EVERY_TICKS: u64 = 50;
/// The highest rate the page may ask for: beyond it this box only measures its own signing.
pub const RATE_MAX: u64 = 5_000;

async fn nonces(client: &Client, net: &Testnet, accounts: usize) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(accounts);
    for i in 0..accounts {
        let address = net.account_key(i)?.address();
        let mut nonce = 0;
        for r in 0..net.n() {
            if let Ok(Response::Account { account, .. }) =
                client.call(r, &Request::Account(address)).await
            {
                nonce = account.nonce;
                break;
            }
        }
        out.push(nonce);
    }
    Ok(out)
}

/// Runs until the task is aborted (the page stops it or sets another rate).
pub async fn run(net: Arc<Testnet>, rate: u64) -> Result<()> {
    let client = Client::new(net.network.clone())?;
    let accounts = net.network.accounts.len();
    let keys = (0..accounts)
        .map(|i| net.account_key(i))
        .collect::<Result<Vec<_>>>()?;
    let per_tick = rate.div_ceil(TICKS_PER_S).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / TICKS_PER_S));
    let mut load: Option<Load> = None;
    for n in 0u64.. {
        tick.tick().await;
        if n % RESYNC_EVERY_TICKS == 0 || load.is_none() {
            let now = nonces(&client, &net, accounts).await?;
            load = Some(Load::new(
                Workload::Transfer,
                0,
                keys.clone(),
                net.network.chain_id(),
                now,
            ));
        }
        let Some(load) = load.as_mut() else { continue };
        let txs = load.make(per_tick)?;
        // Refusals (busy, partitioned) are the experiment's to show, not an error of the load.
        let _ = client.submit(&txs).await;
    }
    Ok(())
}
