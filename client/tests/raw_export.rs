//! An independent check of the block export: `quire block 1 --raw` is decoded here by hand,
//! following only docs/client-rpc.md §5 and docs/chain-format.md, with nothing but SHA-256 and
//! Ed25519 — none of Quire's decoding or verification code — and its commit certificate, its
//! outcomes, its attestations and its merkle proofs are verified against the genesis file.
//! If the documents were not precise enough to write a client from, this could not pass.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use std::sync::Arc;

use common::{Role, World, fake_network, quire, write_network};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

// ---- primitives (chain-format.md §3, §4.1, §8) --------------------------------------------

/// `H(tag, x) = SHA-256(u8(len(tag)) ‖ tag ‖ x)`.
fn h(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update([tag.len() as u8]);
    sha.update(tag.as_bytes());
    for p in parts {
        sha.update(p);
    }
    sha.finalize().into()
}

/// `u8(len(tag)) ‖ tag ‖ chain_id ‖ fields`.
fn signing_bytes(tag: &str, chain_id: &[u8], fields: &[u8]) -> Vec<u8> {
    let mut out = vec![tag.len() as u8];
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(chain_id);
    out.extend_from_slice(fields);
    out
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    h("quire/v1/merkle-node", &[l, r])
}

fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => [0; 32],
        1 => leaves[0],
        n => {
            // The largest power of two strictly less than n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// `merkle_root(items)`: leaves `H(merkle-leaf, item)`, the count bound into the root.
fn merkle_root(items: &[[u8; 32]]) -> [u8; 32] {
    let leaves: Vec<[u8; 32]> = items
        .iter()
        .map(|i| h("quire/v1/merkle-leaf", &[i]))
        .collect();
    h(
        "quire/v1/merkle-root",
        &[&(items.len() as u64).to_be_bytes(), &mth(&leaves)],
    )
}

/// `verify_merkle(proof, item, root)` exactly as chain-format.md §8 writes it.
fn verify_merkle(p: &Proof, item: &[u8; 32], root: &[u8; 32]) -> bool {
    if p.index >= p.count {
        return false;
    }
    let (mut f, mut s) = (p.index, p.count - 1);
    let mut r = h("quire/v1/merkle-leaf", &[item]);
    for sib in &p.siblings {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            r = node(sib, &r);
            while f % 2 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, sib);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && h("quire/v1/merkle-root", &[&p.count.to_be_bytes(), &r]) == *root
}

// ---- the file, field by field (client-rpc.md §5) ------------------------------------------

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let out = &self.b[self.at..self.at + n];
        self.at += n;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn h32(&mut self) -> [u8; 32] {
        self.take(32).try_into().unwrap()
    }
    fn sig(&mut self) -> [u8; 64] {
        self.take(64).try_into().unwrap()
    }
    fn proof(&mut self) -> Proof {
        let index = self.u64();
        let count = self.u64();
        let n = self.u32();
        Proof {
            index,
            count,
            siblings: (0..n).map(|_| self.h32()).collect(),
        }
    }
}

struct Proof {
    index: u64,
    count: u64,
    siblings: Vec<[u8; 32]>,
}

struct Header {
    bytes: Vec<u8>,
    height: u64,
    tx_root: [u8; 32],
    outcomes_root: [u8; 32],
    view: u64,
    proposer: u32,
    timestamp_ms: u64,
}

/// A commit certificate: view, seq, digest, and (replica, signature) votes.
type Cert = (u64, u64, [u8; 32], Vec<(u32, [u8; 64])>);

struct Export {
    chain_id: [u8; 32],
    header: Header,
    tx_ids: Vec<[u8; 32]>,
    cert: Cert,
    outcomes: Vec<Vec<u8>>,
    attestations: Vec<(u32, u64, [u8; 32], [u8; 64])>,
    proofs: Vec<(Proof, Proof)>,
}

fn decode(bytes: &[u8]) -> Export {
    let mut c = Cursor { b: bytes, at: 0 };
    assert_eq!(c.u8(), 21);
    assert_eq!(c.take(21), b"quire/v1/export/block");
    let chain_id = c.h32();
    // Header (chain-format.md §7.2): 157 bytes under PBFT.
    let start = c.at;
    let height = c.u64();
    let _parent = c.h32();
    let tx_root = c.h32();
    let _state_root = c.h32();
    let outcomes_root = c.h32();
    let view = c.u64();
    let proposer = c.u32();
    let timestamp_ms = c.u64();
    assert_eq!(c.u8(), 0, "no proof-of-work seal on this network");
    let header = Header {
        bytes: bytes[start..c.at].to_vec(),
        height,
        tx_root,
        outcomes_root,
        view,
        proposer,
        timestamp_ms,
    };
    // Transactions (§6.2) and their ids (§6.3).
    let mut tx_ids = Vec::new();
    for _ in 0..c.u32() {
        let at = c.at;
        match c.u8() {
            0 => {
                let fields = c.take(80);
                let _signature = c.sig();
                tx_ids.push(h("quire/v1/tx-id", &[&[0], fields]));
            }
            1 => {
                let len = c.u32() as usize;
                c.take(len);
                tx_ids.push(h("quire/v1/tx-id", &[&bytes[at..c.at]]));
            }
            tag => panic!("transaction tag {tag}"),
        }
    }
    // The commit certificate (§11.4).
    assert_eq!(c.u8(), 1, "a certificate");
    let (cview, seq, digest) = (c.u64(), c.u64(), c.h32());
    let votes = (0..c.u32()).map(|_| (c.u32(), c.sig())).collect();
    // Outcomes (§6.4).
    let outcomes = (0..c.u32())
        .map(|_| {
            let at = c.at;
            if c.u8() == 2 {
                c.take(17);
            }
            bytes[at..c.at].to_vec()
        })
        .collect();
    // Attestations (client-rpc.md §3.2) and proofs.
    let attestations = (0..c.u32())
        .map(|_| (c.u32(), c.u64(), c.h32(), c.sig()))
        .collect();
    let proofs = (0..c.u32()).map(|_| (c.proof(), c.proof())).collect();
    assert_eq!(c.at, bytes.len(), "trailing bytes");
    Export {
        chain_id,
        header,
        tx_ids,
        cert: (cview, seq, digest, votes),
        outcomes,
        attestations,
        proofs,
    }
}

/// The genesis's validator keys and f, read from its TOML (chain-format.md §10).
fn validators(genesis_toml: &str) -> (Vec<VerifyingKey>, usize) {
    let value: toml::Value = toml::from_str(genesis_toml).unwrap();
    let keys: Vec<VerifyingKey> = value["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let bytes = hex::decode(v["public_key"].as_str().unwrap()).unwrap();
            VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
        })
        .collect();
    let f = value
        .get("max_faulty")
        .and_then(|f| f.as_integer())
        .map_or((keys.len() - 1) / 3, |f| f as usize);
    (keys, f)
}

/// Everything an independent verifier checks, with the genesis's keys and the chain id.
fn verify(e: &Export, keys: &[VerifyingKey], f: usize, chain_id: &[u8; 32]) {
    let hd = &e.header;
    assert_eq!(e.chain_id, *chain_id);
    // The transactions are the header's, and the certificate signs its batch at its height.
    assert_eq!(merkle_root(&e.tx_ids), hd.tx_root);
    let digest = h(
        "quire/v1/batch",
        &[
            &hd.view.to_be_bytes(),
            &hd.proposer.to_be_bytes(),
            &hd.timestamp_ms.to_be_bytes(),
            &hd.tx_root,
        ],
    );
    let (cview, seq, cdigest, votes) = &e.cert;
    assert_eq!((*seq, *cdigest), (hd.height, digest));
    let mut statement = cview.to_be_bytes().to_vec();
    statement.extend_from_slice(&seq.to_be_bytes());
    statement.extend_from_slice(cdigest);
    let signed = signing_bytes("quire/v1/sign/commit", chain_id, &statement);
    let quorum = (keys.len() + f + 2) / 2;
    assert!(votes.len() >= quorum);
    let mut last = None;
    for (replica, sig) in votes {
        assert!(last < Some(*replica), "votes in increasing replica order");
        last = Some(*replica);
        keys[*replica as usize]
            .verify_strict(&signed, &Signature::from_bytes(sig))
            .unwrap();
    }
    // The outcomes are the header's.
    assert_eq!(e.outcomes.len(), e.tx_ids.len());
    let leaves: Vec<[u8; 32]> = e
        .tx_ids
        .iter()
        .zip(&e.outcomes)
        .map(|(id, o)| h("quire/v1/outcome", &[id, o]))
        .collect();
    assert_eq!(merkle_root(&leaves), hd.outcomes_root);
    // f + 1 distinct validators attest the header.
    let header_hash = h("quire/v1/header", &[&hd.bytes]);
    let mut attesters = std::collections::BTreeSet::new();
    for (replica, height, block_hash, sig) in &e.attestations {
        assert_eq!((*height, *block_hash), (hd.height, header_hash));
        let mut fields = height.to_be_bytes().to_vec();
        fields.extend_from_slice(block_hash);
        let signed = signing_bytes("quire/v1/sign/attestation", chain_id, &fields);
        keys[*replica as usize]
            .verify_strict(&signed, &Signature::from_bytes(sig))
            .unwrap();
        attesters.insert(*replica);
    }
    assert!(attesters.len() > f);
    // Every merkle proof, by the document's algorithm.
    assert_eq!(e.proofs.len(), e.tx_ids.len());
    for (i, (tx, outcome)) in e.proofs.iter().enumerate() {
        assert_eq!((tx.index, outcome.index), (i as u64, i as u64));
        assert!(
            verify_merkle(tx, &e.tx_ids[i], &hd.tx_root),
            "proofs[{i}].tx"
        );
        assert!(
            verify_merkle(outcome, &leaves[i], &hd.outcomes_root),
            "proofs[{i}].outcome"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_decodes_by_the_documented_layout_and_verifies_independently() {
    let world = Arc::new(World::new());
    let fake = fake_network(
        &world,
        [Role::Honest, Role::Honest, Role::Honest, Role::Silent],
    );
    let dir = write_network(&world, &fake.network);
    let file = dir.join("block-1.bin");
    let run = quire(
        &dir,
        &["block", "1", "--raw", "--out", &file.display().to_string()],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bytes = std::fs::read(&file).unwrap();
    let export = decode(&bytes);
    assert_eq!(export.header.height, 1);
    // The genesis file and the chain id the network file names: nothing else is trusted.
    let (keys, f) = validators(&std::fs::read_to_string(dir.join("genesis.toml")).unwrap());
    let network: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("network.toml")).unwrap()).unwrap();
    let chain_id: [u8; 32] = hex::decode(network["chain_id"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    verify(&export, &keys, f, &chain_id);
    // A vote changed by one bit does not verify.
    let (view, seq, digest, votes) = &export.cert;
    let mut statement = view.to_be_bytes().to_vec();
    statement.extend_from_slice(&seq.to_be_bytes());
    statement.extend_from_slice(digest);
    let signed = signing_bytes("quire/v1/sign/commit", &chain_id, &statement);
    let (replica, mut sig) = votes[0];
    sig[5] ^= 1;
    assert!(
        keys[replica as usize]
            .verify_strict(&signed, &Signature::from_bytes(&sig))
            .is_err()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The hex of the block after `<!-- pinned: name -->` in docs/client-rpc.md.
fn pinned(name: &str) -> String {
    let doc = include_str!("../../docs/client-rpc.md");
    let marker = format!("<!-- pinned: {name} -->");
    let rest = &doc[doc.find(&marker).unwrap() + marker.len()..];
    let body = &rest[rest.find("```").unwrap() + 3..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn the_documented_export_example_is_pinned_and_verifies_independently() {
    // Block 1 of chain-format.md §14.9 with the attestations of validators 0 and 1.
    use quire_chain::block::Batch;
    use quire_chain::testkit::TestNet;
    use quire_wire::rpc::{Attestation, Statement};
    let net = TestNet::new(4, 2);
    let batch = Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: 1_700_000_000_000,
        txs: vec![
            net.transfer(0, 1, 250, 0),
            quire_chain::Transaction::raw(vec![0xde, 0xad, 0xbe, 0xef]),
            net.transfer(1, 0, 2_000_000, 0),
        ],
    };
    let mut ledger = net.genesis.ledger();
    let record = net
        .certified_block(&mut ledger, &net.genesis.block().header, &batch)
        .record;
    let attestations: Vec<Attestation> = (0..2)
        .map(|i| {
            Attestation::sign(
                Statement::of(&record.block.header),
                i,
                &net.validator_keys[i as usize],
                &net.chain_id(),
            )
        })
        .collect();
    let export = quire_client::export::BlockExport {
        chain_id: net.chain_id(),
        block: record.block.clone(),
        outcomes: record.outcomes.clone(),
        attestations,
        proofs: (0..3)
            .map(|i| {
                (
                    quire_chain::merkle::prove(&record.block.tx_ids(), i).unwrap(),
                    record.outcome_proof(i).unwrap(),
                )
            })
            .collect(),
    };
    let bytes = export.to_bytes();
    let mut summary = (bytes.len() as u32).to_be_bytes().to_vec();
    summary.extend_from_slice(&Sha256::digest(&bytes));
    println!("export-block-1 = {}", hex::encode(&summary));
    assert_eq!(
        pinned("export-block-1"),
        hex::encode(&summary),
        "update docs/client-rpc.md §6 together with the code"
    );
    let (keys, f) = validators(&net.genesis.to_toml());
    verify(&decode(&bytes), &keys, f, &net.chain_id().0);
}
