//! What a verifying command checked, as JSON with every byte in hex: headers and their encoding,
//! transactions and the bytes their signatures cover, the commit certificate with its digest and
//! each vote's signature, merkle and account proofs, checkpoint certificates, and attestations
//! with the statement they sign. Enough to check the result again with other code, against the
//! genesis alone (docs/chain-format.md and docs/client-rpc.md give the layouts).

use quire_chain::block::{Block, Header, outcome_leaf};
use quire_chain::cert::Certificate;
use quire_chain::codec::Encode;
use quire_chain::keys::signing_bytes;
use quire_chain::ledger::{account_key, account_value_hash};
use quire_chain::merkle::MerkleProof;
use quire_chain::smt::{SmtProof, Terminal};
use quire_chain::tx::{Outcome, Transaction};
use quire_chain::{Account, Address, Genesis, Hash};
use quire_wire::rpc::Attestation;
use serde_json::{Value, json};

use super::output::outcome_json;

fn hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

/// A header's fields, its encoding and its hash.
pub fn header(h: &Header) -> Value {
    json!({
        "height": h.height,
        "hash": h.hash().to_string(),
        "parent_hash": h.parent_hash.to_string(),
        "tx_root": h.tx_root.to_string(),
        "state_root": h.state_root.to_string(),
        "outcomes_root": h.outcomes_root.to_string(),
        "view": h.view,
        "proposer": h.proposer,
        "timestamp_ms": h.timestamp_ms,
        "pow": h.pow.map(|p| json!({ "target": p.target.to_string(), "nonce": p.nonce })),
        "batch_digest": h.batch_digest().to_string(),
        "bytes": hex(h.to_bytes()),
    })
}

/// A transaction: its encoding, id and, for a transfer, its fields, signature and the exact
/// bytes the signature covers.
pub fn transaction(tx: &Transaction, genesis: &Genesis) -> Value {
    let mut value = json!({ "id": tx.id().to_string(), "bytes": hex(tx.to_bytes()) });
    match tx {
        Transaction::Transfer(t) => {
            let f = &t.transfer;
            value["kind"] = json!("transfer");
            value["from"] = json!(f.from.to_string());
            value["to"] = json!(f.to.to_string());
            value["amount"] = json!(f.amount);
            value["nonce"] = json!(f.nonce);
            value["signature"] = json!(hex(t.signature.0));
            value["signed_bytes"] = json!(hex(t.signing_bytes(&genesis.chain_id())));
        }
        Transaction::Raw(payload) => {
            value["kind"] = json!("raw");
            value["payload"] = json!(hex(payload.bytes()));
        }
    }
    value
}

/// A certificate: its statement, the statement's encoding and signing bytes, and every vote
/// with the signer's key from the genesis; plus the whole certificate's encoding.
pub fn certificate<S: quire_chain::cert::Statement>(
    cert: &Certificate<S>,
    statement: Value,
    genesis: &Genesis,
) -> Value {
    let fields = cert.statement.to_bytes();
    let votes: Vec<Value> = cert
        .votes
        .iter()
        .map(|v| {
            json!({
                "replica": v.replica,
                "public_key": genesis.validators.key(v.replica).map(|k| k.to_hex()),
                "signature": hex(v.signature.0),
            })
        })
        .collect();
    let mut value = statement;
    value["sign_tag"] = json!(S::TAG);
    value["statement_bytes"] = json!(hex(&fields));
    value["signed_bytes"] = json!(hex(signing_bytes(S::TAG, &genesis.chain_id(), &fields)));
    value["signers"] = json!(cert.votes.iter().map(|v| v.replica).collect::<Vec<_>>());
    value["votes"] = json!(votes);
    value["bytes"] = json!(hex(cert.to_bytes()));
    value
}

/// A block's commit certificate, or null (the genesis block has none).
pub fn commit_certificate(block: &Block, genesis: &Genesis) -> Value {
    match &block.certificate {
        Some(c) => certificate(
            c,
            json!({
                "view": c.statement.view,
                "seq": c.statement.seq,
                "digest": c.statement.digest.to_string(),
            }),
            genesis,
        ),
        None => Value::Null,
    }
}

pub fn checkpoint_certificate(
    cert: &quire_chain::CheckpointCertificate,
    genesis: &Genesis,
) -> Value {
    certificate(
        cert,
        json!({ "seq": cert.statement.seq, "block_hash": cert.statement.block_hash.to_string() }),
        genesis,
    )
}

/// Attestations with the statement each signs, its signing bytes and the signer's key.
pub fn attestations(attestations: &[Attestation], genesis: &Genesis) -> Value {
    let tag = quire_chain::keys::sign_tags::ATTESTATION;
    let list: Vec<Value> = attestations
        .iter()
        .map(|a| {
            let fields = a.statement.to_bytes();
            json!({
                "replica": a.replica,
                "public_key": genesis.validators.key(a.replica).map(|k| k.to_hex()),
                "height": a.statement.height,
                "block_hash": a.statement.block_hash.to_string(),
                "sign_tag": tag,
                "statement_bytes": hex(&fields),
                "signed_bytes": hex(signing_bytes(tag, &genesis.chain_id(), &fields)),
                "signature": hex(a.signature.0),
                "bytes": hex(a.to_bytes()),
            })
        })
        .collect();
    json!(list)
}

/// A merkle proof of `leaf` (the value hashed into the tree's leaf) under `root`.
pub fn merkle(proof: &MerkleProof, leaf: &Hash, root: &Hash) -> Value {
    json!({
        "index": proof.index,
        "count": proof.count,
        "leaf": leaf.to_string(),
        "root": root.to_string(),
        "siblings": proof.siblings.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "bytes": hex(proof.to_bytes()),
    })
}

/// The merkle proof of a transaction's outcome leaf under its header's outcomes root.
pub fn outcome_proof(
    proof: &MerkleProof,
    tx: &Transaction,
    outcome: &Outcome,
    h: &Header,
) -> Value {
    let mut value = merkle(proof, &outcome_leaf(&tx.id(), outcome), &h.outcomes_root);
    value["outcome_bytes"] = json!(hex(outcome.to_bytes()));
    value
}

/// An account proof: the tree key and value hash it proves, and the proof itself.
pub fn account_proof(address: &Address, account: &Account, proof: &SmtProof, h: &Header) -> Value {
    let terminal = match &proof.terminal {
        Terminal::Empty => json!({ "kind": "empty" }),
        Terminal::Leaf { key, value_hash } => json!({
            "kind": "leaf",
            "key": key.to_string(),
            "value_hash": value_hash.to_string(),
        }),
    };
    json!({
        "key": account_key(address).to_string(),
        "value_hash": account_value_hash(address, account).to_string(),
        "account_bytes": hex(account.to_bytes()),
        "state_root": h.state_root.to_string(),
        "siblings": proof.siblings.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "terminal": terminal,
        "bytes": hex(proof.to_bytes()),
    })
}

/// Every transaction of a block with its outcome.
pub fn transactions(block: &Block, outcomes: &[Outcome], genesis: &Genesis) -> Value {
    let list: Vec<Value> = block
        .txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            let mut value = transaction(tx, genesis);
            if let Some(o) = outcomes.get(i) {
                value["outcome"] = outcome_json(o);
                value["outcome_bytes"] = json!(hex(o.to_bytes()));
            }
            value
        })
        .collect();
    json!(list)
}
