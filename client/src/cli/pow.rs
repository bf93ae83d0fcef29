//! The commands on a proof-of-work network: the same names and arguments as under PBFT, but what
//! they prove is different — a transaction is on the chain with the most work this client
//! verified itself (every header's work and link, the merkle path of the transaction), and final
//! only at `k` confirmations (the genesis's, or `--confirmations`).

use std::time::Duration;

use quire_chain::tx::Transfer;
use quire_chain::{Address, Keypair, TxId};
use quire_client::Client;
use quire_client::pow::{PowClientError, PowTx};
use serde_json::json;

use super::error::CliError;
use super::output::Out;

fn failure(e: PowClientError) -> CliError {
    CliError::Failure(e.to_string())
}

fn tx_json(found: &PowTx) -> serde_json::Value {
    json!({ "tx": found.tx.to_string(), "height": found.height,
            "block_hash": found.block_hash.to_string(), "confirmations": found.confirmations,
            "depth": found.depth(), "k": found.k, "final": found.is_final(),
            "head_height": found.head_height })
}

fn tx_text(found: &PowTx) -> String {
    format!(
        "tx        {}\nblock     {} at height {}\nconfirmed {} of {} (depth {}; head at {}): {}\n",
        found.tx,
        found.block_hash.short(),
        found.height,
        found.confirmations,
        found.k,
        found.depth(),
        found.head_height,
        if found.is_final() {
            "final"
        } else {
            "not final yet"
        }
    )
}

pub async fn transfer(
    out: &Out,
    client: &Client,
    key: &Keypair,
    to: Address,
    amount: u64,
    wait: Option<Duration>,
    k: Option<u64>,
) -> Result<(), CliError> {
    let account = client.pow_account(key.address()).await.map_err(failure)?;
    let tx = Transfer {
        from: key.address(),
        to,
        amount,
        nonce: account.account.nonce,
    }
    .sign(key, &client.network().genesis.chain_id());
    let accepted_by = client.submit_one(&tx).await?;
    out.progress(&format!("tx        {}", tx.id()));
    let Some(wait) = wait else {
        out.emit(
            &format!(
                "submitted (nonce {} as of height {}); accepted by replica {accepted_by}; not \
                 waiting\n",
                account.account.nonce, account.height
            ),
            json!({ "tx": tx.id().to_string(), "nonce": account.account.nonce,
                    "accepted_by": accepted_by, "final": null }),
        );
        return Ok(());
    };
    let found = client
        .pow_wait_final(tx.id(), k, wait)
        .await
        .map_err(failure)?;
    let mut value = tx_json(&found);
    value["nonce"] = json!(account.account.nonce);
    out.emit(&tx_text(&found), value);
    Ok(())
}

pub async fn tx(out: &Out, client: &Client, tx: TxId, k: Option<u64>) -> Result<(), CliError> {
    match client.pow_tx(tx, k).await.map_err(failure)? {
        Some(found) => {
            out.emit(&tx_text(&found), tx_json(&found));
            Ok(())
        }
        None => Err(failure(PowClientError::NotOnChain(tx))),
    }
}

pub async fn balance(out: &Out, client: &Client, address: Address) -> Result<(), CliError> {
    let a = client.pow_account(address).await.map_err(failure)?;
    out.emit(
        &format!(
            "account   {address}\nbalance   {}\nnonce     {}\nproven at height {} of the most-work \
             chain (head {}; not final until k deep)\n",
            a.account.balance, a.account.nonce, a.height, a.head_height
        ),
        json!({ "address": address.to_string(), "balance": a.account.balance,
                "nonce": a.account.nonce, "height": a.height, "head_height": a.head_height,
                "replica": a.replica }),
    );
    Ok(())
}

/// Every replica's chain from the genesis, each header's work, target and link checked; the
/// most work wins. A replica whose chain does not verify is named.
pub async fn verify_chain(out: &Out, client: &Client) -> Result<(), CliError> {
    let best = client.pow_best_chain().await.map_err(failure)?;
    let head = best.head();
    let mut text = format!(
        "most-work chain: height {} head {} (from replica {}), total work {}\n",
        head.height,
        head.hash().short(),
        best.replica,
        best.work
    );
    for (id, fault) in &best.refused {
        text.push_str(&format!("refused replica {id}: {fault}\n"));
    }
    for (id, e) in &best.unreachable {
        text.push_str(&format!("unreachable replica {id}: {e}\n"));
    }
    out.emit(
        &text,
        json!({ "height": head.height, "head": head.hash().to_string(),
                "replica": best.replica, "work": best.work.to_string(),
                "refused": best.refused.iter().map(|(id, f)| json!({"replica": id, "fault": f.to_string()})).collect::<Vec<_>>(),
                "unreachable": best.unreachable.iter().map(|(id, _)| *id).collect::<Vec<_>>() }),
    );
    if best.refused.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failure(format!(
            "{} replica(s) served a chain that does not verify",
            best.refused.len()
        )))
    }
}
