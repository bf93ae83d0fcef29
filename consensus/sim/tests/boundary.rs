//! The boundary: every message is verified before it reaches the core, and nothing a peer sends
//! can panic a replica or grow its memory without bound.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;

use quire_chain::cert::{CheckpointStatement, CommitStatement};
use quire_chain::codec::Encode;
use quire_chain::genesis::Protocol;
use quire_chain::testkit::TestNet;
use quire_chain::{Batch, Keypair};
use quire_consensus::message::{
    Message, NewView, Prepare, PreparedProof, Proposal, Signed, SlotVote, StableCheckpoint,
    ViewChange,
};
use quire_consensus::{Durable, Input, Params, Reject, Replica, Verifier};
use quire_sim::rng::Rng;

struct Setup {
    net: TestNet,
    verifier: Verifier,
}

fn setup() -> Setup {
    let protocol = Protocol {
        checkpoint_interval: 8,
        log_window: 32,
        ..Protocol::default()
    };
    let net = TestNet::with_protocol(4, 4, 0, protocol);
    let verifier = Verifier::new(&net.genesis);
    Setup { net, verifier }
}

impl Setup {
    fn key(&self, i: u32) -> &Keypair {
        &self.net.validator_keys[i as usize]
    }
    fn sign<T: quire_consensus::message::Body>(&self, i: u32, body: T) -> Signed<T> {
        Signed::sign(body, i, self.key(i), &self.net.chain_id())
    }
    fn batch(&self) -> Batch {
        Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 5,
            txs: vec![self.net.transfer(0, 1, 3, 0)],
        }
    }
    /// A prepared certificate for `batch` at (view 0, seq 1): the primary's proposal and the
    /// Prepares of replicas 1 and 2.
    fn prepared(&self, batch: &Batch) -> PreparedProof {
        let vote = SlotVote {
            view: 0,
            seq: 1,
            digest: batch.digest(),
        };
        let prepares = [1u32, 2]
            .iter()
            .map(|i| quire_chain::cert::Vote {
                replica: *i,
                signature: self.sign(*i, Prepare(vote)).signature,
            })
            .collect();
        PreparedProof {
            proposal: self.sign(0, Proposal(vote)),
            prepares,
        }
    }
    /// Replica `id` fresh from the genesis, with the default parameters.
    fn replica(&self, id: u32) -> Replica {
        let durable = Durable::genesis(&self.net.genesis);
        Replica::recover(
            id,
            self.key(id).clone(),
            self.verifier.clone(),
            Params::default(),
            durable,
        )
        .unwrap()
    }
    fn view_change(&self, i: u32, prepared: Vec<PreparedProof>) -> Signed<ViewChange> {
        self.sign(
            i,
            ViewChange {
                new_view: 1,
                checkpoint: StableCheckpoint {
                    seq: 0,
                    block_hash: self.verifier.genesis_hash,
                    certificate: None,
                },
                prepared,
            },
        )
    }
    fn new_view(&self, digest: quire_chain::Hash, batches: Vec<Batch>) -> Message {
        let batch = self.batch();
        let vcs = vec![
            self.view_change(1, vec![self.prepared(&batch)]),
            self.view_change(2, vec![]),
            self.view_change(3, vec![]),
        ];
        let proposal = self.sign(
            1,
            Proposal(SlotVote {
                view: 1,
                seq: 1,
                digest,
            }),
        );
        Message::NewView {
            new_view: self.sign(
                1,
                NewView {
                    view: 1,
                    view_changes: vcs,
                    proposals: vec![proposal],
                },
            ),
            batches,
        }
    }
}

/// Trap 3: backups recompute O from V. The honest NewView passes; one that replaces a prepared
/// batch with a null batch is rejected.
#[test]
fn a_new_view_that_drops_a_prepared_batch_is_rejected() {
    let s = setup();
    let batch = s.batch();
    let honest = s.new_view(batch.digest(), vec![batch.clone()]);
    assert!(s.verifier.verify(honest, Some(1)).is_ok());
    let lying = s.new_view(Batch::null().digest(), vec![]);
    assert_eq!(
        s.verifier.verify(lying, Some(1)).err(),
        Some(Reject::BadNewView)
    );
    // Without the batch it passes the boundary: a NewView leaves out the batches its recipient
    // prepared, and the replica finds them in its log or refuses to enter
    // (`a_new_view_leaves_out_the_batches_a_replica_prepared`).
    let missing_batch = s.new_view(batch.digest(), vec![]);
    assert!(s.verifier.verify(missing_batch, Some(1)).is_ok());
}

/// Trap 2: a vote counts only under its verified signer; a message claiming another sender is
/// refused, and so is a prepared certificate that counts a replica twice.
#[test]
fn votes_count_only_for_their_verified_signer() {
    let s = setup();
    let vote = SlotVote {
        view: 0,
        seq: 1,
        digest: s.batch().digest(),
    };
    let mut forged = s.sign(2, Prepare(vote));
    forged.from = 3;
    assert_eq!(
        s.verifier
            .verify(Message::Prepare(forged.clone()), None)
            .err(),
        Some(Reject::BadSignature)
    );
    assert_eq!(
        s.verifier.verify(Message::Prepare(forged), Some(2)).err(),
        Some(Reject::Impersonation)
    );
    let mut proof = s.prepared(&s.batch());
    proof.prepares[1] = proof.prepares[0];
    let vc = s.view_change(2, vec![proof]);
    let m = Message::ViewChange {
        view_change: vc,
        batches: vec![s.batch()],
    };
    assert_eq!(
        s.verifier.verify(m, Some(2)).err(),
        Some(Reject::BadPreparedProof)
    );
}

/// A ViewChange's batches go to the new primary alone (`Replica::send_view_change`): one comes
/// with every batch its prepared proofs name, or with none; a batch its proofs do not name, or
/// one twice, is refused.
#[test]
fn a_view_change_comes_with_all_its_batches_or_none() {
    let s = setup();
    let batch = s.batch();
    let vc = s.view_change(2, vec![s.prepared(&batch)]);
    let with = |batches: Vec<Batch>| Message::ViewChange {
        view_change: vc.clone(),
        batches,
    };
    assert!(
        s.verifier
            .verify(with(vec![batch.clone()]), Some(2))
            .is_ok()
    );
    assert!(s.verifier.verify(with(vec![]), Some(2)).is_ok());
    let mut other = batch.clone();
    other.timestamp_ms += 1;
    assert_eq!(
        s.verifier.verify(with(vec![other]), Some(2)).err(),
        Some(Reject::BadViewChange)
    );
    assert_eq!(
        s.verifier
            .verify(with(vec![batch.clone(), batch]), Some(2))
            .err(),
        Some(Reject::BadViewChange)
    );
}

/// A ViewChange's and a NewView's inner signatures are checked together (one batch), and each
/// verdict is still the one it gets alone: one bad signature anywhere inside, the proposal's or
/// any Prepare's of a proof, or one of the NewView's own proposals, refuses the message.
#[test]
fn one_bad_signature_inside_a_view_change_or_new_view_refuses_it() {
    let s = setup();
    let batch = s.batch();
    let flip = |sig: &mut quire_chain::Signature| sig.0[5] ^= 1;
    let check = |proof: PreparedProof| {
        s.verifier
            .verify(
                Message::ViewChange {
                    view_change: s.view_change(2, vec![proof]),
                    batches: vec![batch.clone()],
                },
                Some(2),
            )
            .err()
    };
    assert_eq!(check(s.prepared(&batch)), None);
    for prepare in 0..2 {
        let mut proof = s.prepared(&batch);
        flip(&mut proof.prepares[prepare].signature);
        assert_eq!(
            check(proof),
            Some(Reject::BadPreparedProof),
            "Prepare {prepare}"
        );
    }
    let mut proof = s.prepared(&batch);
    flip(&mut proof.proposal.signature);
    assert_eq!(check(proof), Some(Reject::BadPreparedProof));
    let good = s.new_view(batch.digest(), vec![batch.clone()]);
    assert!(s.verifier.verify(good.clone(), Some(1)).is_ok());
    let Message::NewView {
        mut new_view,
        batches,
    } = good
    else {
        unreachable!()
    };
    flip(&mut new_view.body.proposals[0].signature);
    // The NewView's own signature covers its proposals: sign it again so that only the
    // proposal's signature is bad.
    let new_view = s.sign(1, new_view.body);
    assert_eq!(
        s.verifier
            .verify(Message::NewView { new_view, batches }, Some(1))
            .err(),
        Some(Reject::BadNewView)
    );
}

/// The new primary re-proposes from the batches that come with the ViewChanges, so one without
/// them is of no use to it: dropped and counted, and it does not count toward the NewView. A
/// replica that is not the new primary takes the same ViewChange.
#[test]
fn the_new_primary_drops_a_view_change_without_its_batches() {
    let s = setup();
    let batch = s.batch();
    let bare = |from: u32| {
        s.verifier
            .verify(
                Message::ViewChange {
                    view_change: s.view_change(from, vec![s.prepared(&batch)]),
                    batches: vec![],
                },
                Some(from),
            )
            .unwrap()
    };
    let replica = |id: u32| s.replica(id);
    // Replica 1 is view 1's primary; replica 3 is not.
    let mut primary = replica(1);
    let mut backup = replica(3);
    for from in [0, 2] {
        primary.step(Input::Message(bare(from)));
        backup.step(Input::Message(bare(from)));
    }
    let missing = |r: &Replica| {
        r.stats()
            .drops
            .get(&quire_consensus::stats::Drop::MissingBatches)
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(missing(&primary), 2);
    assert_eq!(missing(&backup), 0);
    // Two of them are f + 1: the backup follows them into view 1 (the join rule); the primary,
    // which kept neither, stays where it was.
    assert_eq!(backup.view(), 1);
    assert_eq!(primary.view(), 0);
    // With the batch, the primary keeps them and joins.
    for from in [0, 2] {
        let m = s
            .verifier
            .verify(
                Message::ViewChange {
                    view_change: s.view_change(from, vec![s.prepared(&batch)]),
                    batches: vec![batch.clone()],
                },
                Some(from),
            )
            .unwrap();
        primary.step(Input::Message(m));
    }
    assert_eq!(primary.view(), 1);
}

/// A NewView leaves out the batches a replica's ViewChange in it says it prepared: that replica
/// takes them from its log and enters the view; one sent all of them enters it too; one that
/// lacks a left-out batch it still has to execute does not (dropped, counted). The verifier
/// takes any subset of the proposals' batches, and nothing else.
#[test]
fn a_new_view_leaves_out_the_batches_a_replica_prepared() {
    use quire_consensus::Output;
    let s = setup();
    let batch = s.batch();
    let replica = |id: u32| s.replica(id);
    let verified = |m: Message| {
        let from = m.from();
        s.verifier.verify(m, Some(from)).unwrap()
    };
    // Replica 2 prepares the batch in view 0: the primary's PrePrepare and replica 1's Prepare
    // (with its own, a quorum).
    let vote = SlotVote {
        view: 0,
        seq: 1,
        digest: batch.digest(),
    };
    let mut prepared = replica(2);
    prepared.step(Input::Message(verified(Message::PrePrepare {
        proposal: s.sign(0, Proposal(vote)),
        batch: batch.clone(),
    })));
    prepared.step(Input::Message(verified(Message::Prepare(
        s.sign(1, Prepare(vote)),
    ))));
    // View 1's primary gathers ViewChanges: replicas 0 and 2 prepared the batch, 3 did not.
    let mut primary = replica(1);
    let mut out = Vec::new();
    for (from, with) in [(0, true), (2, true), (3, false)] {
        let (proofs, batches) = if with {
            (vec![s.prepared(&batch)], vec![batch.clone()])
        } else {
            (vec![], vec![])
        };
        out.extend(primary.step(Input::Message(verified(Message::ViewChange {
            view_change: s.view_change(from, proofs),
            batches,
        }))));
    }
    assert_eq!(primary.view(), 1);
    assert!(!primary.is_changing_view(), "the primary sent its NewView");
    let new_views: BTreeMap<u32, Message> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(to, m @ Message::NewView { .. }) => Some((to, m)),
            _ => None,
        })
        .collect();
    let sent = |to: u32| match &new_views[&to] {
        Message::NewView { batches, .. } => batches.len(),
        _ => unreachable!(),
    };
    assert_eq!((sent(0), sent(2), sent(3)), (0, 0, 1));
    // Replica 2 completes it from its log; replica 3, sent the batch, enters as well.
    let mut lacking = replica(3);
    for (r, to) in [(&mut prepared, 2), (&mut lacking, 3)] {
        r.step(Input::Message(verified(new_views[&to].clone())));
        assert_eq!(r.view(), 1, "replica {to}");
        assert!(!r.is_changing_view(), "replica {to}");
    }
    // A replica in the view answers one left behind with the NewView, likewise without the
    // batches the laggard's ViewChange says it prepared.
    for (from, with, expect) in [(0, true, 0), (3, false, 1)] {
        let (proofs, batches) = if with {
            (vec![s.prepared(&batch)], vec![batch.clone()])
        } else {
            (vec![], vec![])
        };
        let out = prepared.step(Input::Message(verified(Message::ViewChange {
            view_change: s.view_change(from, proofs),
            batches,
        })));
        let answered: Vec<usize> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send(to, Message::NewView { batches, .. }) if *to == from => {
                    Some(batches.len())
                }
                _ => None,
            })
            .collect();
        assert_eq!(answered, vec![expect], "answer to replica {from}");
    }
    // A replica that never saw the batch, handed the copy without it, cannot enter.
    let mut without = replica(3);
    without.step(Input::Message(verified(new_views[&0].clone())));
    assert_eq!(without.view(), 0);
    assert_eq!(
        without
            .stats()
            .drops
            .get(&quire_consensus::stats::Drop::MissingBatches),
        Some(&1)
    );
    // A batch the proposals do not name is refused at the boundary.
    let mut other = batch.clone();
    other.timestamp_ms += 1;
    let Message::NewView { new_view, .. } = new_views[&0].clone() else {
        unreachable!()
    };
    assert_eq!(
        s.verifier
            .verify(
                Message::NewView {
                    new_view,
                    batches: vec![other]
                },
                Some(1)
            )
            .err(),
        Some(Reject::BadNewView)
    );
}

#[test]
fn a_pre_prepare_whose_batch_does_not_match_its_digest_is_rejected() {
    let s = setup();
    let batch = s.batch();
    let proposal = s.sign(
        0,
        Proposal(SlotVote {
            view: 0,
            seq: 1,
            digest: batch.digest(),
        }),
    );
    let mut other = batch.clone();
    other.timestamp_ms += 1;
    let m = Message::PrePrepare {
        proposal: proposal.clone(),
        batch: other,
    };
    assert_eq!(
        s.verifier.verify(m, Some(0)).err(),
        Some(Reject::DigestMismatch)
    );
    let not_primary = s.sign(
        1,
        Proposal(SlotVote {
            view: 0,
            seq: 1,
            digest: batch.digest(),
        }),
    );
    let m = Message::PrePrepare {
        proposal: not_primary,
        batch,
    };
    assert_eq!(
        s.verifier.verify(m, Some(1)).err(),
        Some(Reject::WrongPrimary)
    );
}

/// Garbage, truncations and bit flips of valid messages: all rejected, none panics.
#[test]
fn malformed_bytes_never_panic() {
    let s = setup();
    let batch = s.batch();
    let valid: Vec<Vec<u8>> = vec![
        s.new_view(batch.digest(), vec![batch.clone()]).to_bytes(),
        Message::Prepare(s.sign(
            1,
            Prepare(SlotVote {
                view: 0,
                seq: 1,
                digest: batch.digest(),
            }),
        ))
        .to_bytes(),
        Message::Commit(s.sign(
            2,
            CommitStatement {
                view: 0,
                seq: 1,
                digest: batch.digest(),
            },
        ))
        .to_bytes(),
    ];
    let mut rng = Rng::new(9);
    for bytes in &valid {
        assert!(s.verifier.decode(bytes, None).is_ok());
        for cut in 0..bytes.len() {
            let _ = s.verifier.decode(&bytes[..cut], None);
        }
        for _ in 0..2000 {
            let mut b = bytes.clone();
            let i = rng.below(b.len() as u64) as usize;
            b[i] ^= 1 << rng.below(8);
            // A flipped bit either breaks decoding or a signature, or lands in a field the
            // signature does not cover (the batch of a NewView attachment is checked by digest).
            let _ = s.verifier.decode(&b, None);
        }
    }
    for _ in 0..5000 {
        let len = rng.below(300) as usize;
        let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        assert!(s.verifier.decode(&b, None).is_err());
    }
    // A length prefix claiming gigabytes is refused before any allocation.
    let huge = [9u8, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        s.verifier.decode(&huge, None).err(),
        Some(Reject::Malformed)
    );
}

/// Validly signed messages for views far ahead, sequence numbers far outside the window, and
/// checkpoints far ahead are dropped and counted; the replica's memory stays bounded.
#[test]
fn far_future_messages_do_not_grow_memory() {
    let s = setup();
    let mut r = s.replica(3);
    let mut rng = Rng::new(5);
    let mut stepped = 0;
    for i in 0..3000u64 {
        let from = (i % 3) as u32;
        let digest = quire_chain::Hash([i as u8; 32]);
        let m = match i % 4 {
            0 => Message::Prepare(s.sign(
                from.max(1),
                Prepare(SlotVote {
                    view: rng.below(1 << 40),
                    seq: rng.next_u64(),
                    digest,
                }),
            )),
            1 => Message::Commit(s.sign(
                from,
                CommitStatement {
                    view: 0,
                    seq: 33 + rng.below(1 << 40),
                    digest,
                },
            )),
            2 => Message::Checkpoint(s.sign(
                from,
                CheckpointStatement {
                    seq: 8 * (5 + rng.below(1 << 30)),
                    block_hash: digest,
                },
            )),
            _ => Message::ViewChange {
                view_change: s.sign(
                    from,
                    ViewChange {
                        new_view: 2 + rng.below(1 << 40),
                        checkpoint: StableCheckpoint {
                            seq: 0,
                            block_hash: s.verifier.genesis_hash,
                            certificate: None,
                        },
                        prepared: vec![],
                    },
                ),
                batches: vec![],
            },
        };
        let sender = m.from();
        // (A random view may make a Prepare's sender that view's primary: refused at the
        // boundary, which is fine; everything else reaches the core.)
        if let Ok(v) = s.verifier.verify(m, Some(sender)) {
            stepped += 1;
            r.step(Input::Message(v));
        }
    }
    assert!(stepped > 2500);
    assert!(r.log_len() <= 32, "log holds {} slots", r.log_len());
    let drops: BTreeMap<_, _> = r.stats().drops.clone();
    assert!(drops.values().sum::<u64>() > 1000, "{drops:?}");
}
