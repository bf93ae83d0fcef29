//! Protocol rules belong to the network (issue 13): the genesis says what every replica must
//! accept — the batch limit, whether raw payloads may be ordered — and every entry point
//! enforces it; a replica's config only chooses for itself.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use quire_chain::genesis::Protocol;
use quire_chain::testkit::TestNet;
use quire_chain::{Batch, Transaction};
use quire_consensus::message::{Blocks, Forward, Message, Proposal, Signed, SlotVote};
use quire_consensus::{Input, Output, Params, Reject, Verifier};
use support::fresh_replica as replica;

fn net(protocol: Protocol) -> TestNet {
    TestNet::with_protocol(4, 4, 0, protocol)
}

fn signed<T: quire_consensus::message::Body>(net: &TestNet, i: u32, body: T) -> Signed<T> {
    Signed::sign(body, i, &net.validator_keys[i as usize], &net.chain_id())
}

fn pre_prepare(net: &TestNet, txs: Vec<Transaction>) -> Message {
    let batch = Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: 1,
        txs,
    };
    let vote = SlotVote {
        view: 0,
        seq: 1,
        digest: batch.digest(),
    };
    Message::PrePrepare {
        proposal: signed(net, 0, Proposal(vote)),
        batch,
    }
}

fn transfers(net: &TestNet, count: usize) -> Vec<Transaction> {
    (0..count)
        .map(|i| net.transfer(i % 4, (i + 1) % 4, 1, (i / 4) as u64))
        .collect()
}

/// A backup configured to propose batches of 2 still accepts the honest primary's batch of 10
/// (the genesis allows 16): its setting is about its own proposals, not others'.
#[test]
fn a_backup_with_a_smaller_local_batch_limit_accepts_the_primarys_batches() {
    let net = net(Protocol {
        batch_txs_max: 16,
        ..Protocol::default()
    });
    let verifier = Verifier::new(&net.genesis);
    let mut backup = replica(
        &net,
        1,
        Params {
            batch_txs_max: 2,
            ..Params::default()
        },
    );
    let verified = verifier
        .verify(pre_prepare(&net, transfers(&net, 10)), Some(0))
        .unwrap();
    let outputs = backup.step(Input::Message(verified));
    let prepared = outputs
        .iter()
        .any(|o| matches!(o, Output::Broadcast(Message::Prepare(_))));
    assert!(prepared, "the backup did not prepare: {outputs:?}");
    assert!(backup.stats().misbehaviour.is_empty());
    // A batch over the genesis's limit is refused at the boundary, whatever anyone's config.
    let too_big = verifier.verify(pre_prepare(&net, transfers(&net, 17)), Some(0));
    assert_eq!(too_big.err(), Some(Reject::BreaksProtocol));
}

/// With `raw_payloads = false`, a raw payload cannot get into a block by any path a faulty
/// replica has: a forward, a proposal, or blocks served in state transfer.
#[test]
fn raw_payloads_are_refused_at_every_entry_point_when_the_genesis_forbids_them() {
    let forbidding = net(Protocol::default());
    assert!(!forbidding.genesis.protocol.raw_payloads);
    let allowing = net(Protocol {
        raw_payloads: true,
        ..Protocol::default()
    });
    let raw = Transaction::raw(vec![7; 64]);
    for (net, expect_refused) in [(&forbidding, true), (&allowing, false)] {
        let verifier = Verifier::new(&net.genesis);
        let mut txs = transfers(net, 2);
        txs.push(raw.clone());
        let forward = Message::Forward(signed(net, 2, Forward(txs.clone())));
        let proposal = pre_prepare(net, txs.clone());
        let block = {
            let mut ledger = net.genesis.ledger();
            let batch = Batch {
                view: 0,
                proposer: 0,
                timestamp_ms: 3,
                txs: txs.clone(),
            };
            net.certified_block(&mut ledger, &net.genesis.block().header, &batch)
                .record
                .block
        };
        let blocks = Message::Blocks(signed(net, 1, Blocks(vec![block])));
        let results = [
            ("forward", verifier.verify(forward, Some(2)).err()),
            ("pre-prepare", verifier.verify(proposal, Some(0)).err()),
            ("blocks", verifier.verify(blocks, Some(1)).err()),
        ];
        for (what, result) in results {
            if expect_refused {
                assert!(
                    matches!(result, Some(Reject::BreaksProtocol | Reject::BadBlock)),
                    "{what}: {result:?}"
                );
            } else {
                assert_eq!(
                    result, None,
                    "{what} refused on a network that allows raw payloads"
                );
            }
        }
        // The client side of the boundary: the simulator's submit, like client RPC, drops it.
        assert_eq!(
            verifier.raw_allowed(std::slice::from_ref(&raw)).is_err(),
            expect_refused
        );
    }
}
