//! The commands that read: `balance`, `tx`, `block`, `status`, `verify-chain`.

use quire_chain::Address;
use quire_chain::tx::TxId;
use quire_client::{Client, TxState};
use quire_wire::rpc::BlockRef;
use serde_json::{Value, json};

use super::error::CliError;
use super::output::{Out, committed_json, committed_text, ids};

pub async fn balance(out: &Out, client: &Client, address: Address) -> Result<(), CliError> {
    let proven = client.account(address).await?;
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
        }),
    );
    Ok(())
}

pub async fn tx(out: &Out, client: &Client, tx: TxId) -> Result<(), CliError> {
    let report = client.tx_status(tx).await?;
    for fault in &report.faults {
        out.warn(&fault.to_string());
    }
    let (text, value) = match &report.state {
        TxState::Committed(c) => (committed_text(c), committed_json(c)),
        TxState::Pending => (
            "status    pending (known to a replica; no commit proven yet)\n".to_string(),
            json!({ "status": "pending" }),
        ),
        TxState::Unknown => (
            "status    unknown (no replica that answered has it)\n".to_string(),
            json!({ "status": "unknown" }),
        ),
    };
    let mut value = value;
    value["tx"] = json!(tx.to_string());
    out.emit(&format!("tx        {tx}\n{text}"), value);
    Ok(())
}

pub async fn block(out: &Out, client: &Client, at: BlockRef) -> Result<(), CliError> {
    let certified = client.block(at).await?;
    let b = &certified.block;
    let h = &b.header;
    let (cert_text, cert_json) = match &b.certificate {
        Some(c) => {
            let signers = certified.certificate_signers();
            (
                format!(
                    "view {}, seq {}, signed by replicas {}",
                    c.statement.view,
                    c.statement.seq,
                    ids(&signers)
                ),
                json!({ "view": c.statement.view, "seq": c.statement.seq, "signers": signers }),
            )
        }
        None => ("none (the genesis block)".to_string(), Value::Null),
    };
    let text = format!(
        "height        {}\nhash          {}\nparent_hash   {}\ntx_root       {}\nstate_root    {}\n\
         view          {}\nproposer      {}\ntimestamp_ms  {}\ntxs           {}\ncertificate   {}\n\
         attested by   {}\n",
        h.height,
        h.hash(),
        h.parent_hash,
        h.tx_root,
        h.state_root,
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
        "view": h.view,
        "proposer": h.proposer,
        "timestamp_ms": h.timestamp_ms,
        "tx_count": b.txs.len(),
        "tx_ids": b.txs.iter().map(|t| t.id().to_string()).collect::<Vec<_>>(),
        "certificate": cert_json,
        "attesters": certified.attesters,
    });
    out.emit(&text, value);
    Ok(())
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
    let value = json!({
        "ok": true,
        "height": report.height,
        "head_hash": report.head_hash.to_string(),
        "checkpoint": report.checkpoint,
        "headers_from": report.headers_from,
        "attesters": report.attesters,
        "replicas_consulted": report.replicas_consulted,
        "set_aside": report.set_aside.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    });
    out.emit(&text, value);
    Ok(())
}
