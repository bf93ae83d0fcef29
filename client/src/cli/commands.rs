//! Dispatch, and the commands that write: `keygen` and `transfer`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use quire_chain::tx::Outcome;
use quire_chain::{Address, Keypair};
use quire_client::{Client, Health, Network, Options, TransferStep};
use serde_json::{Value, json};

use super::args::{Cli, Command};
use super::error::CliError;
use super::input::{Context, load_key, parse_address, parse_amount};
use super::output::{Out, committed_json, committed_text, ids, outcome_text};
use super::reads;

/// How long `transfer --wait` waits without `--wait-secs`.
const WAIT_SECS_DEFAULT: u64 = 30;

pub fn run(cli: Cli) -> Result<(), CliError> {
    let mut ctx = Context::new(cli.network.as_deref());
    let out = Out { json: cli.json };
    let options = Options {
        call_timeout: Duration::from_millis(cli.timeout_ms),
        prefer: cli.via,
        ..Options::default()
    };
    match cli.command {
        Command::Keygen { out: path } => keygen(&out, path),
        Command::Transfer {
            from,
            to,
            amount,
            wait,
            wait_secs,
            confirmations,
        } => {
            // Check every input before touching the network.
            let amount = parse_amount(&amount)?;
            let to = parse_address(&mut ctx, &to)?;
            let key = load_key(&mut ctx, &from)?;
            let wait = wait_secs
                .or(wait.then_some(WAIT_SECS_DEFAULT))
                .map(Duration::from_secs);
            let network = ctx.take_network()?;
            let pow = is_pow(&network);
            with_client(network, options, |client| async move {
                if pow {
                    super::pow::transfer(&out, &client, &key, to, amount, wait, confirmations).await
                } else {
                    transfer(&out, &client, &key, to, amount, wait).await
                }
            })
        }
        Command::Balance { account } => {
            let address = parse_address(&mut ctx, &account)?;
            let network = ctx.take_network()?;
            let pow = is_pow(&network);
            with_client(network, options, |c| async move {
                if pow {
                    super::pow::balance(&out, &c, address).await
                } else {
                    reads::balance(&out, &c, address).await
                }
            })
        }
        Command::Tx {
            hash,
            confirmations,
        } => {
            let tx = super::input::parse_tx_hash(&hash)?;
            let network = ctx.take_network()?;
            let pow = is_pow(&network);
            with_client(network, options, |c| async move {
                if pow {
                    super::pow::tx(&out, &c, tx, confirmations).await
                } else {
                    reads::tx(&out, &c, tx).await
                }
            })
        }
        Command::Block { at, raw, out: path } => {
            let at = super::input::parse_block_ref(&at)?;
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                if raw {
                    reads::block_raw(&c, at, path.as_deref()).await
                } else {
                    reads::block(&out, &c, at).await
                }
            })
        }
        Command::VerifyExport { file } => {
            let network = ctx.take_network()?;
            reads::verify_export(&out, &network.genesis, &file)
        }
        Command::Status => {
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                reads::status(&out, &c).await
            })
        }
        Command::VerifyChain => {
            let network = ctx.take_network()?;
            let pow = is_pow(&network);
            with_client(network, options, |c| async move {
                if pow {
                    super::pow::verify_chain(&out, &c).await
                } else {
                    reads::verify_chain(&out, &c).await
                }
            })
        }
    }
}

/// Whether the network's genesis chose proof of work (then the commands prove most-work
/// positions and confirmations instead of certificates).
fn is_pow(network: &Network) -> bool {
    network.genesis.protocol.consensus == quire_chain::genesis::ConsensusMode::Pow
}

/// Runs `f` with a client on a small single-threaded runtime: a CLI call waits on the network,
/// it does not need cores. Which replicas did not answer is remembered for the next command
/// (see `quire_client::health`), so it does not wait them out again.
fn with_client<F, Fut>(network: Network, options: Options, f: F) -> Result<(), CliError>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<(), CliError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failure(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let health = match Health::default_path(&network.chain_id()) {
            Some(path) => Health::persisted(path),
            None => Health::in_memory(),
        };
        let client = Client::with_health(network, options, health)?;
        let result = f(client.clone()).await;
        // Only a hint for the next command: losing it costs time, never correctness.
        let _ = client.health().save();
        result
    })
}
fn keygen(out: &Out, path: Option<PathBuf>) -> Result<(), CliError> {
    let key = Keypair::generate();
    let address = key.address();
    let path = path.unwrap_or_else(|| {
        PathBuf::from(format!("./quire-key-{}.toml", hex::encode(&address.0[..4])))
    });
    // write_file refuses to overwrite too; checking first gives the clearer message.
    if path.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; refusing to overwrite it",
            path.display()
        )));
    }
    key.write_file(&path)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let shown = path.display().to_string();
    out.emit(
        &format!("address   {address}\nkey file  {shown}\n"),
        json!({ "address": address.to_string(), "key_file": shown }),
    );
    Ok(())
}

async fn transfer(
    out: &Out,
    client: &Client,
    key: &Keypair,
    to: Address,
    amount: u64,
    wait: Option<Duration>,
) -> Result<(), CliError> {
    let mut pending = client.start_transfer(key, to, amount).await?;
    progress(out, &pending.steps);
    out.progress(&format!("tx        {}", pending.id()));
    let Some(wait) = wait else {
        let accepted_by = pending.accepted_by();
        out.emit(
            &format!(
                "submitted to replicas {} (nonce {}); accepted by {}; not waiting\n",
                ids(&submitted_to(&pending.steps)),
                pending.nonce,
                ids(&accepted_by)
            ),
            json!({ "tx": pending.id().to_string(), "nonce": pending.nonce,
                    "accepted_by": accepted_by, "committed": null,
                    "steps": steps_json(&pending.steps) }),
        );
        return Ok(());
    };
    let first = pending.id();
    let result = client
        .finish_transfer_with(&mut pending, wait, &mut |step| {
            progress(out, std::slice::from_ref(step));
        })
        .await;
    if pending.id() != first {
        out.progress(&format!("tx        {} (signed again)", pending.id()));
    }
    let committed = result?;
    let committed_after = pending.submitted_at.elapsed();
    let mut value = committed_json(&committed, &client.network().genesis);
    value["nonce"] = json!(pending.nonce);
    value["accepted_by"] = json!(pending.accepted_by());
    value["steps"] = steps_json(&pending.steps);
    value["committed_after_ms"] = json!(ms(committed_after));
    let mut text = committed_text(&committed);
    match pending.decided() {
        Some(TransferStep::Decided {
            height,
            view,
            replicas,
            after,
            ..
        }) => {
            value["decided"] = json!({ "height": height, "view": view, "replicas": replicas,
                                       "after_ms": ms(*after) });
            text.push_str(&format!(
                "latency   decided after {:.1} ms, commit proven after {:.1} ms\n",
                ms(*after),
                ms(committed_after)
            ));
        }
        _ => {
            value["decided"] = Value::Null;
            text.push_str(&format!(
                "latency   commit proven after {:.1} ms\n",
                ms(committed_after)
            ));
        }
    }
    out.emit(&text, value);
    match committed.outcome {
        Outcome::Rejected(_) => Err(CliError::Failure(format!(
            "the transfer was committed but {}",
            outcome_text(&committed.outcome)
        ))),
        Outcome::Applied | Outcome::Ordered => Ok(()),
    }
}

/// A duration in milliseconds, to a tenth.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Every replica a transfer was sent to, in order.
fn submitted_to(steps: &[TransferStep]) -> Vec<u32> {
    let mut all = Vec::new();
    for step in steps {
        if let TransferStep::Submitted { sent_to, .. } | TransferStep::Resubmitted { sent_to, .. } =
            step
        {
            for r in sent_to {
                if !all.contains(r) {
                    all.push(*r);
                }
            }
        }
    }
    all
}

/// Tells the user about the steps beyond the first submission (text mode: as they happen).
fn progress(out: &Out, steps: &[TransferStep]) {
    for step in steps {
        match step {
            TransferStep::Submitted { .. } => {}
            TransferStep::Resubmitted {
                tx,
                dropped: true,
                accepted_by,
                ..
            } => out.note(&format!(
                "no replica held {} any more (dropped): submitted the same transaction again; \
                 accepted by replicas {}",
                tx.0.short(),
                ids(accepted_by)
            )),
            TransferStep::Resubmitted { .. } => {}
            TransferStep::Decided {
                height,
                view,
                replicas,
                after,
                ..
            } => out.progress(&format!(
                "decided   at height {height} (view {view}) after {:.1} ms: replicas {} hold it \
                 prepared; the proof of the commit and its outcome follows",
                ms(*after),
                ids(replicas)
            )),
            TransferStep::Replaced {
                old,
                old_nonce,
                new,
                nonce,
                proven_at,
                vouchers,
            } => out.note(&format!(
                "{} can never apply: its nonce {old_nonce} was used by another transaction (the \
                 sender's nonce is {nonce} at height {proven_at}, and replicas {} at or past it do \
                 not have it): signed the transfer again as {} with nonce {nonce}",
                old.0.short(),
                ids(vouchers),
                new.0.short(),
            )),
        }
    }
}

fn steps_json(steps: &[TransferStep]) -> Value {
    let list: Vec<Value> = steps
        .iter()
        .map(|step| match step {
            TransferStep::Decided {
                tx,
                height,
                view,
                replicas,
                after,
            } => json!({ "step": "decided", "tx": tx.to_string(), "height": height,
                         "view": view, "replicas": replicas, "after_ms": ms(*after) }),
            TransferStep::Submitted {
                tx,
                nonce,
                proven_at,
                sent_to,
                accepted_by,
            } => json!({ "step": "submitted", "tx": tx.to_string(), "nonce": nonce,
                         "nonce_proven_at": proven_at, "sent_to": sent_to,
                         "accepted_by": accepted_by }),
            TransferStep::Resubmitted {
                tx,
                dropped,
                sent_to,
                accepted_by,
            } => json!({ "step": "resubmitted", "tx": tx.to_string(),
                         "reason": if *dropped { "dropped" } else { "slow" },
                         "sent_to": sent_to, "accepted_by": accepted_by }),
            TransferStep::Replaced {
                old,
                old_nonce,
                new,
                nonce,
                proven_at,
                vouchers,
            } => json!({ "step": "replaced", "old_tx": old.to_string(), "old_nonce": old_nonce,
                         "tx": new.to_string(), "nonce": nonce, "nonce_proven_at": proven_at,
                         "not_committed_at": vouchers }),
        })
        .collect();
    json!(list)
}
