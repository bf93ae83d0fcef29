//! Printing results: text for people, or one JSON object per command with `--json`.

use std::io::Write;

use quire_chain::codec::Encode;
use quire_chain::tx::Outcome;
use quire_chain::{Genesis, ReplicaId};
use quire_client::Fault;
use quire_client::verify::CommittedTx;
use serde_json::{Value, json};

use super::error::fault_json;
use super::evidence;

pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints the command's result: `text` for people, `value` with `--json`.
    pub fn emit(&self, text: &str, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            print!("{text}");
        }
        let _ = std::io::stdout().flush();
    }

    /// A line printed at once in text mode (e.g. a transaction hash before a long wait).
    pub fn progress(&self, line: &str) {
        if !self.json {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Something the user should know that is not an error (e.g. a replica that lied).
    pub fn warn(&self, line: &str) {
        eprintln!("warning: {line}");
    }

    /// Something the client did on the user's behalf (e.g. submitting a transfer again).
    pub fn note(&self, line: &str) {
        eprintln!("note: {line}");
    }
}

/// `0, 1, 2`.
pub fn ids(ids: &[ReplicaId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied => "applied".into(),
        Outcome::Ordered => "ordered (raw payload, not executed)".into(),
        Outcome::Rejected(r) => format!("rejected: {r}"),
    }
}

pub fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Applied => json!({ "kind": "applied" }),
        Outcome::Ordered => json!({ "kind": "ordered" }),
        Outcome::Rejected(r) => json!({
            "kind": "rejected",
            "rejection": r.kind(),
            "reason": r.to_string(),
        }),
    }
}

pub fn committed_text(c: &CommittedTx) -> String {
    format!(
        "status    committed\nheight    {}\nindex     {}\noutcome   {}\nblock     {}\n\
         evidence  certificate signed by replicas {}; block attested by {} (its outcomes root \
         proves the outcome)\n",
        c.height,
        c.index,
        outcome_text(&c.outcome),
        c.header.hash(),
        ids(&c.certificate_signers),
        ids(&c.block_attesters),
    )
}

/// A proven commit and everything it was proven with.
pub fn committed_json(c: &CommittedTx, genesis: &Genesis) -> Value {
    let tx = c.block.txs.get(c.index as usize);
    json!({
        "status": "committed",
        "tx": c.tx.to_string(),
        "height": c.height,
        "index": c.index,
        "outcome": outcome_json(&c.outcome),
        "block_hash": c.header.hash().to_string(),
        "certificate_signers": c.certificate_signers,
        "block_attesters": c.block_attesters,
        "evidence": {
            "chain_id": genesis.chain_id().to_string(),
            "header": evidence::header(&c.header),
            "transaction": tx.map(|t| evidence::transaction(t, genesis)),
            "merkle_proof": evidence::merkle(&c.proof, &c.tx.0, &c.header.tx_root),
            "outcome_proof": tx.map(|t| evidence::outcome_proof(&c.outcome_proof, t, &c.outcome, &c.header)),
            "certificate": evidence::commit_certificate(&c.block, genesis),
            "attestations": evidence::attestations(&c.attestations, genesis),
            "block_bytes": hex::encode(c.block.to_bytes()),
        },
    })
}

/// Answers set aside on the way to a result: a warning line each, and the JSON list.
pub fn set_aside(out: &Out, faults: &[Fault]) -> Value {
    for fault in faults {
        out.warn(&format!("set aside: {fault}"));
    }
    json!(faults.iter().map(fault_json).collect::<Vec<_>>())
}
