//! The commands that read: `balance`, `tx`, `block`, `status`, `verify-chain`.

use std::io::{IsTerminal, Write};

use quire_chain::Address;
use quire_chain::codec::Encode;
use quire_chain::tx::TxId;
use quire_client::export::BlockExport;
use quire_client::{CertifiedBlock, Client, TxState};
use quire_wire::rpc::BlockRef;
use serde_json::{Value, json};

use super::error::CliError;
use super::evidence;
use super::output::{Out, committed_json, committed_text, ids, set_aside};

pub async fn balance(out: &Out, client: &Client, address: Address) -> Result<(), CliError> {
    let (proven, faults) = client.account_report(address).await?;
    let set_aside = set_aside(out, &faults);
    let genesis = &client.network().genesis;
    let block_hash = proven.header.hash();
    let text = format!(
        "address   {address}\nbalance   {}\nnonce     {}\nproven at height {} (block {}), \
         attested by replicas {}\n",
        proven.account.balance,
        proven.account.nonce,
        proven.header.height,
        block_hash.short(),
        ids(&proven.attesters),
    );
    out.emit(
        &text,
        json!({
            "address": address.to_string(),
            "balance": proven.account.balance,
            "nonce": proven.account.nonce,
            "height": proven.header.height,
            "block_hash": block_hash.to_string(),
            "attesters": proven.attesters,
            "set_aside": set_aside,
            "evidence": {
                "chain_id": genesis.chain_id().to_string(),
                "header": evidence::header(&proven.header),
                "account_proof": evidence::account_proof(
                    &address, &proven.account, &proven.proof, &proven.header),
                "attestations": evidence::attestations(&proven.attestations, genesis),
            },
        }),
    );
    Ok(())
}

pub async fn tx(out: &Out, client: &Client, tx: TxId) -> Result<(), CliError> {
    let report = client.tx_status(tx).await?;
    let set_aside = set_aside(out, &report.faults);
    let genesis = &client.network().genesis;
    let (text, mut value) = match &report.state {
        TxState::Committed(c) => (committed_text(c), committed_json(c, genesis)),
        TxState::Pending { held_by } => (
            format!(
                "status    pending (held by replicas {}; no commit proven yet)\n",
                ids(held_by)
            ),
            json!({ "status": "pending", "held_by": held_by }),
        ),
        TxState::Unknown => (
            "status    unknown (no replica that answered holds it)\n".to_string(),
            json!({ "status": "unknown" }),
        ),
    };
    value["tx"] = json!(tx.to_string());
    value["answered"] = json!(report.answered);
    value["set_aside"] = set_aside;
    out.emit(&format!("tx        {tx}\n{text}"), value);
    Ok(())
}

pub async fn block(out: &Out, client: &Client, at: BlockRef) -> Result<(), CliError> {
    let (certified, faults) = client.block_report(at).await?;
    let set_aside = set_aside(out, &faults);
    let (text, mut value) = block_view(&certified, &client.network().genesis);
    value["set_aside"] = set_aside;
    out.emit(&text, value);
    Ok(())
}

/// `quire block N --raw`: the block and its proofs in the export encoding, to a file or to
/// standard output (never to a terminal).
pub async fn block_raw(
    client: &Client,
    at: BlockRef,
    path: Option<&std::path::Path>,
) -> Result<(), CliError> {
    if path.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "--raw writes binary: redirect standard output or pass --out FILE".into(),
        ));
    }
    let (certified, faults) = client.block_report(at).await?;
    for fault in &faults {
        eprintln!("warning: set aside: {fault}");
    }
    let bytes = BlockExport::of(&certified, client.network().chain_id()).to_bytes();
    match path {
        Some(p) => std::fs::write(p, &bytes)
            .map_err(|e| CliError::Failure(format!("cannot write {}: {e}", p.display())))?,
        None => {
            let mut stdout = std::io::stdout();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| CliError::Failure(format!("cannot write the export: {e}")))?;
        }
    }
    Ok(())
}

/// `quire verify-export FILE`: decode and check an export against the genesis alone.
pub fn verify_export(
    out: &Out,
    genesis: &quire_chain::Genesis,
    path: &std::path::Path,
) -> Result<(), CliError> {
    let bytes = read_capped(path)?;
    let export = BlockExport::decode(&bytes).map_err(|e| {
        CliError::Usage(format!(
            "{} is not a valid block export: {e}",
            path.display()
        ))
    })?;
    let verified = export
        .verify(genesis)
        .map_err(|e| CliError::Failure(format!("{} does not verify: {e}", path.display())))?;
    let (text, mut value) = block_view(&verified, genesis);
    value["file"] = json!(path.display().to_string());
    out.emit(
        &format!("{} verifies against the genesis\n{text}", path.display()),
        value,
    );
    Ok(())
}

/// Reads a file that should be an export, refusing anything far larger than a block can be.
fn read_capped(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    const EXPORT_BYTES_MAX: u64 = 64 * 1024 * 1024;
    let cannot =
        |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(cannot)?.len();
    if len > EXPORT_BYTES_MAX {
        return Err(CliError::Usage(format!(
            "{} is {len} bytes: larger than any block export ({EXPORT_BYTES_MAX})",
            path.display()
        )));
    }
    std::fs::read(path).map_err(cannot)
}

/// A verified block as text and as JSON with its evidence.
fn block_view(certified: &CertifiedBlock, genesis: &quire_chain::Genesis) -> (String, Value) {
    let b = &certified.block;
    let h = &b.header;
    let cert_text = match &b.certificate {
        Some(c) => format!(
            "view {}, seq {}, signed by replicas {}",
            c.statement.view,
            c.statement.seq,
            ids(&certified.certificate_signers())
        ),
        None => "none (the genesis block)".to_string(),
    };
    let text = format!(
        "height        {}\nhash          {}\nparent_hash   {}\ntx_root       {}\nstate_root    {}\n\
         outcomes_root {}\nview          {}\nproposer      {}\ntimestamp_ms  {}\ntxs           {}\n\
         certificate   {}\nattested by   {}\n",
        h.height,
        h.hash(),
        h.parent_hash,
        h.tx_root,
        h.state_root,
        h.outcomes_root,
        h.view,
        h.proposer,
        h.timestamp_ms,
        b.txs.len(),
        cert_text,
        attested_text(&certified.attesters),
    );
    let value = json!({
        "height": h.height,
        "hash": h.hash().to_string(),
        "parent_hash": h.parent_hash.to_string(),
        "tx_root": h.tx_root.to_string(),
        "state_root": h.state_root.to_string(),
        "outcomes_root": h.outcomes_root.to_string(),
        "view": h.view,
        "proposer": h.proposer,
        "timestamp_ms": h.timestamp_ms,
        "tx_count": b.txs.len(),
        "tx_ids": b.txs.iter().map(|t| t.id().to_string()).collect::<Vec<_>>(),
        "certificate": evidence::commit_certificate(b, genesis),
        "attesters": certified.attesters,
        "evidence": {
            "chain_id": genesis.chain_id().to_string(),
            "header": evidence::header(h),
            "transactions": evidence::transactions(b, &certified.outcomes, genesis),
            "attestations": evidence::attestations(&certified.attestations, genesis),
            "block_bytes": hex::encode(b.to_bytes()),
        },
    });
    (text, value)
}

fn attested_text(attesters: &[u32]) -> String {
    if attesters.is_empty() {
        "(genesis: fixed by the network file)".into()
    } else {
        format!("replicas {}", ids(attesters))
    }
}

pub async fn status(out: &Out, client: &Client) -> Result<(), CliError> {
    let all = client.status_all().await;
    if all.iter().all(|s| s.status.is_err()) {
        let why: Vec<String> = all
            .iter()
            .filter_map(|s| s.status.as_ref().err().map(|e| e.to_string()))
            .collect();
        return Err(CliError::Failure(format!(
            "no replica answered: {}",
            why.join("; ")
        )));
    }
    let mut text = format!(
        "{:<3} {:<21} {:>6} {:>8} {:<9} {:>10} {:>5} {:<12} {:>8}\n",
        "ID", "ADDRESS", "VIEW", "HEIGHT", "HEAD", "CHECKPOINT", "PEERS", "BEHAVIOUR", "MEMPOOL"
    );
    let mut rows = Vec::new();
    for s in &all {
        match &s.status {
            Ok(n) => {
                let view = format!("{}{}", n.view, if n.changing_view { "*" } else { "" });
                text.push_str(&format!(
                    "{:<3} {:<21} {:>6} {:>8} {:<9} {:>10} {:>5} {:<12} {:>8}\n",
                    s.replica,
                    s.addr.to_string(),
                    view,
                    n.height,
                    n.head_hash.short(),
                    n.stable_checkpoint,
                    n.peers_connected,
                    n.behaviour,
                    n.mempool
                ));
                rows.push(json!({
                    "replica": s.replica, "address": s.addr.to_string(), "reachable": true,
                    "view": n.view, "changing_view": n.changing_view, "height": n.height,
                    "head_hash": n.head_hash.to_string(), "stable_checkpoint": n.stable_checkpoint,
                    "peers_connected": n.peers_connected, "behaviour": n.behaviour,
                    "mempool": n.mempool, "pid": n.pid,
                }));
            }
            Err(e) => {
                text.push_str(&format!(
                    "{:<3} {:<21} unreachable: {e}\n",
                    s.replica,
                    s.addr.to_string()
                ));
                rows.push(json!({
                    "replica": s.replica, "address": s.addr.to_string(), "reachable": false,
                    "error": e.to_string(),
                }));
            }
        }
    }
    text.push_str("(* = changing view; replicas report these figures themselves, unverified)\n");
    out.emit(&text, json!({ "replicas": rows }));
    Ok(())
}

pub async fn verify_chain(out: &Out, client: &Client) -> Result<(), CliError> {
    let report = client.verify_chain().await?;
    for s in &report.set_aside {
        out.warn(&format!("set aside: {s}"));
    }
    let genesis = &client.network().genesis;
    let checkpoint = report
        .checkpoint
        .map_or("none beyond genesis yet".to_string(), |c| c.to_string());
    let text = format!(
        "chain verified from genesis to height {} (head {})\nstable checkpoint  {}\n\
         headers from       replica {}\nlast header        attested by replicas {}\n\
         replicas consulted {}\n",
        report.height,
        report.head_hash.short(),
        checkpoint,
        report.headers_from,
        ids(&report.attesters),
        ids(&report.replicas_consulted),
    );
    let checkpoint_json = match (&report.checkpoint_certificate, &report.checkpoint_header) {
        (Some(cert), Some(header)) => json!({
            "seq": cert.statement.seq,
            "block_hash": cert.statement.block_hash.to_string(),
            "header": evidence::header(header),
            "certificate": evidence::checkpoint_certificate(cert, genesis),
        }),
        _ => Value::Null,
    };
    let value = json!({
        "ok": true,
        "height": report.height,
        "head_hash": report.head_hash.to_string(),
        "checkpoint": report.checkpoint,
        "headers_from": report.headers_from,
        "attesters": report.attesters,
        "replicas_consulted": report.replicas_consulted,
        "set_aside": report.set_aside.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "evidence": {
            "chain_id": genesis.chain_id().to_string(),
            "protocol": {
                "checkpoint_interval": genesis.protocol.checkpoint_interval,
                "log_window": genesis.protocol.log_window,
            },
            "checkpoint": checkpoint_json,
            "last_header": evidence::header(&report.last_header),
            "attestations": evidence::attestations(&report.last_attestations, genesis),
        },
    });
    out.emit(&text, value);
    Ok(())
}
