//! Dispatch, and the commands that write: `keygen` and `transfer`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use quire_chain::tx::Outcome;
use quire_chain::{Address, Keypair};
use quire_client::{Client, Network, Options};
use serde_json::json;

use super::args::{Cli, Command};
use super::error::CliError;
use super::input::{Context, load_key, parse_address, parse_amount};
use super::output::{Out, committed_json, committed_text, outcome_text};
use super::reads;

/// How long `transfer --wait` waits without `--wait-secs`.
const WAIT_SECS_DEFAULT: u64 = 30;

pub fn run(cli: Cli) -> Result<(), CliError> {
    let mut ctx = Context::new(cli.network.as_deref());
    let out = Out { json: cli.json };
    let options = Options {
        call_timeout: Duration::from_millis(cli.timeout_ms),
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
        } => {
            // Check every input before touching the network.
            let amount = parse_amount(&amount)?;
            let to = parse_address(&mut ctx, &to)?;
            let key = load_key(&mut ctx, &from)?;
            let wait = wait_secs
                .or(wait.then_some(WAIT_SECS_DEFAULT))
                .map(Duration::from_secs);
            let network = ctx.take_network()?;
            with_client(network, options, |client| async move {
                transfer(&out, &client, &key, to, amount, wait).await
            })
        }
        Command::Balance { account } => {
            let address = parse_address(&mut ctx, &account)?;
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                reads::balance(&out, &c, address).await
            })
        }
        Command::Tx { hash } => {
            let tx = super::input::parse_tx_hash(&hash)?;
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                reads::tx(&out, &c, tx).await
            })
        }
        Command::Block { at } => {
            let at = super::input::parse_block_ref(&at)?;
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                reads::block(&out, &c, at).await
            })
        }
        Command::Status => {
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                reads::status(&out, &c).await
            })
        }
        Command::VerifyChain => {
            let network = ctx.take_network()?;
            with_client(network, options, |c| async move {
                reads::verify_chain(&out, &c).await
            })
        }
    }
}

/// Runs `f` with a client on a small single-threaded runtime: a CLI call waits on the network,
/// it does not need cores.
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
        let client = Client::with_options(network, options)?;
        f(client).await
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
    let tx = client.prepare_transfer(key, to, amount).await?;
    let id = tx.id();
    let nonce = tx.as_transfer().map_or(0, |t| t.transfer.nonce);
    let accepted_by = client.submit_one(&tx).await?;
    out.progress(&format!("tx        {id}"));
    let Some(wait) = wait else {
        out.emit(
            &format!("submitted to replica {accepted_by} (nonce {nonce}); not waiting\n"),
            json!({ "tx": id.to_string(), "nonce": nonce, "accepted_by": accepted_by,
                    "committed": null }),
        );
        return Ok(());
    };
    let committed = client.wait_committed(&tx, wait).await?;
    let mut value = committed_json(&committed);
    value["nonce"] = json!(nonce);
    value["accepted_by"] = json!(accepted_by);
    out.emit(&committed_text(&committed), value);
    match committed.outcome {
        Outcome::Rejected(_) => Err(CliError::Failure(format!(
            "the transfer was committed but {}",
            outcome_text(&committed.outcome)
        ))),
        Outcome::Applied | Outcome::Ordered => Ok(()),
    }
}
