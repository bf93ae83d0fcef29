//! The evidence leaves the client: on a real testnet, `--json` of `block`, `tx`, `balance` and
//! `verify-chain` carries what the client checked, in hex, and it checks out again from the JSON
//! alone with nothing but the chain crate's primitives and the genesis; `block --raw` writes an
//! export that `verify-export` accepts, and a corrupt one is refused naming the field.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use quire_chain::block::{Header, outcome_leaf};
use quire_chain::cert::{CheckpointStatement, CommitCertificate, CommitStatement};
use quire_chain::codec::{Decode, Encode};
use quire_chain::genesis::Protocol;
use quire_chain::keys::{PublicKey, Signature, sign_tags, signing_bytes};
use quire_chain::ledger::verify_account;
use quire_chain::merkle::MerkleProof;
use quire_chain::smt::SmtProof;
use quire_chain::tx::{Outcome, Transaction, TxId};
use quire_chain::{Account, Address, Block, CheckpointCertificate, Genesis, Hash};
use quire_testnet::generate::Plan;
use serde_json::Value;

fn json(run: &support::Run) -> Value {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not hex: {v}"))).unwrap()
}

fn hash(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn signature(v: &Value) -> Signature {
    Signature(bytes(v).try_into().unwrap())
}

/// Checks every vote of a certificate in the JSON: the key is the genesis's, the signed bytes
/// are the documented ones, and the signature verifies on them.
fn check_votes(cert: &Value, tag: &str, statement: &[u8], genesis: &Genesis) -> usize {
    let chain_id = genesis.chain_id();
    assert_eq!(cert["sign_tag"], tag);
    assert_eq!(bytes(&cert["statement_bytes"]), statement);
    assert_eq!(
        bytes(&cert["signed_bytes"]),
        signing_bytes(tag, &chain_id, statement)
    );
    let votes = cert["votes"].as_array().unwrap();
    for vote in votes {
        let replica = vote["replica"].as_u64().unwrap() as u32;
        let key = PublicKey::from_hex(vote["public_key"].as_str().unwrap()).unwrap();
        assert_eq!(genesis.validators.key(replica), Some(&key));
        key.verify(tag, &chain_id, statement, &signature(&vote["signature"]))
            .unwrap();
    }
    votes.len()
}

/// Checks attestations in the JSON: each signs `u64(height) ‖ hash(header)` under its
/// validator's key.
fn check_attestations(list: &Value, header: &Header, genesis: &Genesis) -> usize {
    let chain_id = genesis.chain_id();
    let mut statement = header.height.to_be_bytes().to_vec();
    statement.extend_from_slice(&header.hash().0);
    let mut attesters = std::collections::BTreeSet::new();
    for a in list.as_array().unwrap() {
        assert_eq!(bytes(&a["statement_bytes"]), statement);
        let replica = a["replica"].as_u64().unwrap() as u32;
        let key = genesis.validators.key(replica).unwrap();
        key.verify(
            sign_tags::ATTESTATION,
            &chain_id,
            &statement,
            &signature(&a["signature"]),
        )
        .unwrap();
        attesters.insert(replica);
    }
    attesters.len()
}

fn header(v: &Value) -> Header {
    let h = Header::from_bytes(&bytes(&v["bytes"])).unwrap();
    assert_eq!(h.hash(), hash(&v["hash"]));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_evidence_reverifies_from_the_json_alone_and_the_export_checks_out() {
    let plan = Plan {
        nodes: 4,
        accounts: 2,
        base_port: 0,
        protocol: Protocol {
            checkpoint_interval: 4,
            log_window: 16,
            ..Protocol::default()
        },
        ..Plan::default()
    };
    let net = support::start_with("evidence", plan).await;
    let genesis = net.tn.network.genesis.clone();
    let wait = Some(Duration::from_secs(30));
    let mut last = None;
    let mut decided = 0;
    for _ in 0..6 {
        let receipt = net
            .client
            .transfer(&net.keys[0], net.address(1), 3, wait)
            .await
            .unwrap();
        decided += usize::from(decided_where_it_committed(&receipt, &genesis));
        last = Some(receipt);
    }
    // A transfer whose commit is proven at the client's very first poll (a client descheduled
    // past the whole commit on a loaded machine) may have no quorum of reports in yet; on a
    // live testnet most are decided first.
    assert!(
        decided >= 1,
        "no transfer was seen decided before its commit"
    );
    let receipt = last.unwrap();
    net.wait_for("a stable checkpoint", Duration::from_secs(30), || async {
        net.status(0)
            .await
            .is_some_and(|s| s.stable_checkpoint >= 4)
    })
    .await;
    let no_cache = [("QUIRE_CACHE_DIR", "")];

    // block: the commit certificate re-verified from the JSON alone.
    let height = receipt.committed.as_ref().unwrap().height;
    let v = json(&support::quire(&net, &["--json", "block", &height.to_string()], &no_cache).await);
    let h = header(&v["evidence"]["header"]);
    assert_eq!(h.height, height);
    let cert = &v["certificate"];
    let statement = CommitStatement {
        view: cert["view"].as_u64().unwrap(),
        seq: cert["seq"].as_u64().unwrap(),
        digest: hash(&cert["digest"]),
    };
    assert_eq!(statement.seq, h.height);
    assert_eq!(statement.digest, h.batch_digest());
    let votes = check_votes(cert, sign_tags::COMMIT, &statement.to_bytes(), &genesis);
    assert!(votes >= genesis.validators.quorum());
    let decoded = CommitCertificate::from_bytes(&bytes(&cert["bytes"])).unwrap();
    decoded
        .verify(&genesis.chain_id(), &genesis.validators)
        .unwrap();
    let block = Block::from_bytes(&bytes(&v["evidence"]["block_bytes"])).unwrap();
    block
        .verify_certified(&genesis.chain_id(), &genesis.validators)
        .unwrap();
    assert_eq!(block.header, h);
    let txs = v["evidence"]["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), block.txs.len());
    for (t, tx) in txs.iter().zip(&block.txs) {
        assert_eq!(Transaction::from_bytes(&bytes(&t["bytes"])).unwrap(), *tx);
        assert_eq!(t["id"].as_str().unwrap(), tx.id().to_string());
    }
    assert!(
        check_attestations(&v["evidence"]["attestations"], &h, &genesis) > genesis.validators.f()
    );

    // tx: merkle proof and outcome proof against the attested header.
    let id = receipt.tx;
    let v = json(&support::quire(&net, &["--json", "tx", &id.to_string()], &no_cache).await);
    let e = &v["evidence"];
    let h = header(&e["header"]);
    let proof = MerkleProof::from_bytes(&bytes(&e["merkle_proof"]["bytes"])).unwrap();
    assert!(proof.verify(&id.0, &h.tx_root));
    let outcome = Outcome::from_bytes(&bytes(&e["outcome_proof"]["outcome_bytes"])).unwrap();
    assert_eq!(outcome, Outcome::Applied);
    let outcome_proof = MerkleProof::from_bytes(&bytes(&e["outcome_proof"]["bytes"])).unwrap();
    assert!(outcome_proof.verify(&outcome_leaf(&TxId(id.0), &outcome), &h.outcomes_root));
    assert_eq!(outcome_proof.index, proof.index);
    let tx = Transaction::from_bytes(&bytes(&e["transaction"]["bytes"])).unwrap();
    assert_eq!(tx.id(), id);
    let t = tx.as_transfer().unwrap();
    assert_eq!(
        bytes(&e["transaction"]["signed_bytes"]),
        t.signing_bytes(&genesis.chain_id())
    );
    assert!(tx.verify_signature(&genesis.chain_id()));
    assert!(check_attestations(&e["attestations"], &h, &genesis) > genesis.validators.f());
    assert!(
        v.get("outcome_attesters").is_none(),
        "no signed statement covers outcomes alone"
    );

    // balance: the account proof against the attested state root.
    let v = json(&support::quire(&net, &["--json", "balance", "account-0"], &no_cache).await);
    let e = &v["evidence"];
    let h = header(&e["header"]);
    let address = Address::parse(v["address"].as_str().unwrap()).unwrap();
    let account = Account {
        balance: v["balance"].as_u64().unwrap(),
        nonce: v["nonce"].as_u64().unwrap(),
    };
    let proof = SmtProof::from_bytes(&bytes(&e["account_proof"]["bytes"])).unwrap();
    assert!(verify_account(&h.state_root, &address, &account, &proof));
    assert_eq!(account.nonce, 7, "the first transfer of `up` and six more");
    assert!(check_attestations(&e["attestations"], &h, &genesis) > genesis.validators.f());

    // verify-chain: the checkpoint certificate and the last header's attestations.
    let v = json(&support::quire(&net, &["--json", "verify-chain"], &no_cache).await);
    let e = &v["evidence"];
    assert_eq!(e["protocol"]["checkpoint_interval"], 4);
    let c = &e["checkpoint"];
    let seq = c["seq"].as_u64().unwrap();
    assert!(seq >= 4 && seq.is_multiple_of(4), "{c}");
    let checkpoint_header = header(&c["header"]);
    assert_eq!(checkpoint_header.height, seq);
    let statement = CheckpointStatement {
        seq,
        block_hash: checkpoint_header.hash(),
    };
    assert_eq!(hash(&c["block_hash"]), statement.block_hash);
    let votes = check_votes(
        &c["certificate"],
        sign_tags::CHECKPOINT,
        &statement.to_bytes(),
        &genesis,
    );
    assert!(votes >= genesis.validators.quorum());
    CheckpointCertificate::from_bytes(&bytes(&c["certificate"]["bytes"]))
        .unwrap()
        .verify(&genesis.chain_id(), &genesis.validators)
        .unwrap();
    let last = header(&e["last_header"]);
    assert!(check_attestations(&e["attestations"], &last, &genesis) > genesis.validators.f());

    // transfer --json: the decided point and the commit it precedes.
    let v = json(
        &support::quire(
            &net,
            &[
                "--json",
                "transfer",
                "--from",
                "account-0",
                "--to",
                "account-1",
                "--amount",
                "1",
                "--wait",
            ],
            &no_cache,
        )
        .await,
    );
    assert!(v["committed_after_ms"].as_f64().is_some(), "{v}");
    if !v["decided"].is_null() {
        assert_eq!(v["decided"]["height"], v["height"], "{v}");
        assert_eq!(
            v["decided"]["view"], v["evidence"]["certificate"]["view"],
            "{v}"
        );
        let decided_ms = v["decided"]["after_ms"].as_f64().unwrap();
        assert!(
            decided_ms <= v["committed_after_ms"].as_f64().unwrap(),
            "{v}"
        );
        assert!(v["decided"]["replicas"].as_array().unwrap().len() >= genesis.validators.quorum());
    }

    // block --raw: the export verifies offline; a truncated or corrupt one names the field.
    let dir = support::temp_dir("evidence-export");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("block.bin");
    let file_s = file.display().to_string();
    let run = support::quire(
        &net,
        &["block", &height.to_string(), "--raw", "--out", &file_s],
        &no_cache,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = support::quire(&net, &["verify-export", &file_s], &no_cache).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("verifies against the genesis"),
        "{}",
        run.stdout
    );
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let run = support::quire(&net, &["verify-export", &file_s], &no_cache).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("byte "), "{}", run.stderr);
    let mut corrupt = good.clone();
    // Flip a bit in the first vote's signature: it follows the block's transactions, the
    // certificate's tag and statement, the vote count and the replica id.
    let votes_at = 22 + 32 + 157 + 4 + block_txs_len(&block) + 1 + 48 + 4;
    corrupt[votes_at + 4 + 10] ^= 1;
    std::fs::write(&file, &corrupt).unwrap();
    let run = support::quire(&net, &["--json", "verify-export", &file_s], &no_cache).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("block.certificate.votes[0].signature"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether, while waiting for the proof, the client saw a quorum of replicas report the
/// transfer's batch prepared (PBFT's tentative execution); if it did, that was at the height it
/// then committed at, in the view its certificate was signed in, from a quorum.
fn decided_where_it_committed(receipt: &quire_client::TransferReceipt, genesis: &Genesis) -> bool {
    let committed = receipt.committed.as_ref().unwrap();
    let decided = receipt.steps.iter().find_map(|s| match s {
        quire_client::TransferStep::Decided {
            tx,
            height,
            view,
            replicas,
            after,
        } => Some((*tx, *height, *view, replicas.clone(), *after)),
        _ => None,
    });
    let Some((tx, height, view, replicas, _)) = decided else {
        return false;
    };
    let cert = committed.block.certificate.as_ref().unwrap();
    assert_eq!(tx, receipt.tx);
    assert_eq!((height, view), (committed.height, cert.statement.view));
    assert!(
        replicas.len() >= genesis.validators.quorum(),
        "{replicas:?}"
    );
    true
}

fn block_txs_len(block: &Block) -> usize {
    block.txs.iter().map(|t| t.to_bytes().len()).sum()
}
