//! The worked examples of docs/client-rpc.md §6, read from the document itself: each example
//! block after a `<!-- pinned: NAME -->` marker must be exactly the bytes computed here, so the
//! document cannot drift from the code. The values are built on the example network of
//! docs/chain-format.md §14.
//!
//! `cargo test -p quire-wire --test rpc_vectors -- --nocapture` prints every value.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use quire_chain::Encode;
use quire_chain::block::Batch;
use quire_chain::testkit::TestNet;
use quire_chain::tx::Transaction;
use quire_wire::rpc::{Attestation, BlockRef, Refusal, Request, Response, Statement};

const DOC: &str = include_str!("../../../docs/client-rpc.md");

/// The hex of the example block after `<!-- pinned: name -->`: the first word of each line.
pub fn pinned(doc: &str, name: &str) -> String {
    let marker = format!("<!-- pinned: {name} -->");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/client-rpc.md has no {marker}"));
    let rest = &doc[start + marker.len()..];
    let open = rest.find("```").unwrap() + 3;
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let close = body.find("```").unwrap();
    body[..close]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[track_caller]
fn pin(name: &str, actual: &[u8]) {
    let actual = hex::encode(actual);
    println!("{name} = {actual}");
    assert_eq!(
        pinned(DOC, name),
        actual,
        "{name} changed: update docs/client-rpc.md §6 together with the code"
    );
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Block 1 of docs/chain-format.md §14.9.
fn example() -> (TestNet, quire_chain::BlockRecord) {
    let net = TestNet::new(4, 2);
    let batch = Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: 1_700_000_000_000,
        txs: vec![
            net.transfer(0, 1, 250, 0),
            Transaction::raw(vec![0xde, 0xad, 0xbe, 0xef]),
            net.transfer(1, 0, 2_000_000, 0),
        ],
    };
    let mut ledger = net.genesis.ledger();
    let parent = net.genesis.block().header;
    let record = net.certified_block(&mut ledger, &parent, &batch).record;
    (net, record)
}

#[test]
fn requests_are_framed_as_documented() {
    let (net, _) = example();
    let tx0 = net.transfer(0, 1, 250, 0).id();
    pin(
        "txstatus-request-frame",
        &frame(&Request::TxStatus(tx0).to_bytes()),
    );
    pin(
        "block-request-frame",
        &frame(&Request::Block(BlockRef::Height(1)).to_bytes()),
    );
}

#[test]
fn an_attestation_signs_exactly_the_documented_statement() {
    let (net, record) = example();
    let header = record.block.header;
    let attestation = Attestation::sign(
        Statement::of(&header),
        0,
        &net.validator_keys[0],
        &net.chain_id(),
    );
    // The statement is chain-format.md §14.11's attestation fields, 40 bytes.
    assert_eq!(
        hex::encode(attestation.statement.to_bytes()),
        "00000000000000010e8b09feb98cfe9ddc89078564a8ab139315761ff07b8180da1fd4185eb8b0ba"
    );
    assert_eq!(attestation.to_bytes().len(), 108);
    assert!(attestation.verify(&net.chain_id(), &net.genesis.validators));
    pin(
        "attestation-response-frame",
        &frame(&Response::Attestation(Some(attestation)).to_bytes()),
    );
}

#[test]
fn submit_results_are_encoded_as_documented() {
    let (net, _) = example();
    let tx0 = net.transfer(0, 1, 250, 0).id();
    let response = Response::Submitted(vec![Ok(tx0), Err(Refusal::StaleNonce { expected: 1 })]);
    pin("submitted-response", &response.to_bytes());
}
