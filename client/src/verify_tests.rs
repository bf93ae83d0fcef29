//! Forged answers against the client's checks. Each test names the lie it must not believe.
//! The network is 4 validators, f = 1: a fact needs 2 distinct attesters, a certificate 3 votes.

use quire_chain::block::BlockError;
use quire_chain::cert::{CertError, Vote};
use quire_chain::ledger::Ledger;
use quire_chain::merkle;
use quire_chain::testkit::derived_key;
use quire_chain::tx::{Outcome, Rejection};
use quire_chain::{Account, Hash};
use quire_wire::rpc::{Attestation, Statement, TxStatus};

use super::*;
use crate::error::VerifyError;
use crate::testing::Chain;

fn tx0(chain: &Chain) -> TxId {
    chain.record(1).block.txs[0].id()
}

/// Replica 1's honest attestation of block 1.
fn second_opinion(chain: &Chain) -> Vec<Attestation> {
    vec![chain.block_attestation(1, 1)]
}

fn with_status(status: &mut TxStatus, edit: impl FnOnce(&mut Block, &mut merkle::MerkleProof)) {
    if let TxStatus::Committed { block, proof, .. } = status {
        edit(block, proof);
    }
}

#[test]
fn an_honest_commit_with_f_plus_1_attestations_is_accepted() {
    let chain = Chain::new();
    let status = chain.tx_status(1, 0, 0);
    let v = verify_committed(
        &status,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap();
    assert_eq!(v.height, 1);
    assert_eq!(v.index, 0);
    assert_eq!(v.outcome, Outcome::Applied);
    assert_eq!(v.block_attesters, vec![0, 1]);
    assert_eq!(v.certificate_signers, vec![0, 1, 2]);
    // The evidence it was accepted on comes with it.
    assert_eq!(v.attestations.len(), 2);
    assert!(v.proof.verify(&tx0(&chain).0, &v.header.tx_root));
}

#[test]
fn one_replica_alone_cannot_prove_a_commit() {
    // Its own two attestations are one validator's word: f could all be lying.
    let chain = Chain::new();
    let status = chain.tx_status(1, 0, 0);
    let err = verify_committed(&status, &tx0(&chain), &chain.net.genesis, &[]).unwrap_err();
    assert_eq!(
        err,
        VerifyError::TooFewAttestations {
            height: 1,
            have: 1,
            need: 2
        }
    );
}

#[test]
fn pending_and_unknown_are_not_commits() {
    let chain = Chain::new();
    for status in [TxStatus::Pending, TxStatus::Unknown] {
        let err = verify_committed(&status, &tx0(&chain), &chain.net.genesis, &[]).unwrap_err();
        assert_eq!(err, VerifyError::NotCommitted);
    }
}

#[test]
fn a_certificate_short_of_a_quorum_is_refused() {
    let chain = Chain::new();
    let mut status = chain.tx_status(1, 0, 0);
    with_status(&mut status, |block, _| {
        if let Some(c) = block.certificate.as_mut() {
            c.votes.truncate(2);
        }
    });
    let err = verify_committed(
        &status,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::BadBlock {
                source: BlockError::Certificate {
                    source: CertError::TooFew { have: 2, need: 3 },
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_certificate_with_forged_duplicate_or_outsider_votes_is_refused() {
    let chain = Chain::new();
    let outsider = derived_key("outsider", 0, 0);
    type Forge = Box<dyn Fn(&mut Vec<Vote>)>;
    let forgeries: Vec<Forge> = vec![
        // Replica 2's vote signed by someone else.
        Box::new(move |votes| votes[2].signature = outsider.sign_raw(b"anything")),
        // Replica 1 counted twice instead of replica 2.
        Box::new(|votes| votes[2] = votes[1]),
        // A vote claimed by a replica that does not exist.
        Box::new(|votes| votes[2].replica = 9),
    ];
    for forge in forgeries {
        let mut status = chain.tx_status(1, 0, 0);
        with_status(&mut status, |block, _| {
            if let Some(c) = block.certificate.as_mut() {
                forge(&mut c.votes);
            }
        });
        let err = verify_committed(
            &status,
            &tx0(&chain),
            &chain.net.genesis,
            &second_opinion(&chain),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::BadBlock {
                    source: BlockError::Certificate { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
    let mut status = chain.tx_status(1, 0, 0);
    with_status(&mut status, |block, _| block.certificate = None);
    let err = verify_committed(
        &status,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VerifyError::BadBlock {
            source: BlockError::Uncertified { .. },
            ..
        }
    ));
}

#[test]
fn a_certificate_for_another_batch_is_refused() {
    // A real certificate, but for the block at height 2: another batch, another sequence number.
    let mut chain = Chain::new();
    let tx = chain.net.transfer(2, 3, 1, 0);
    chain.push(vec![tx]);
    let other = chain.record(2).block.certificate.clone();
    let mut status = chain.tx_status(1, 0, 0);
    with_status(&mut status, |block, _| block.certificate = other.clone());
    let err = verify_committed(
        &status,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VerifyError::BadBlock {
            source: BlockError::WrongSeq { .. },
            ..
        }
    ));
    // Same sequence number, another digest.
    with_status(&mut status, |block, _| {
        if let Some(c) = block.certificate.as_mut() {
            c.statement.seq = 1;
        }
    });
    let err = verify_committed(
        &status,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VerifyError::BadBlock {
            source: BlockError::WrongDigest { .. },
            ..
        }
    ));
}

#[test]
fn a_wrong_merkle_proof_is_refused() {
    let chain = Chain::new();
    let tx = tx0(&chain);
    // The proof of transaction 1 offered for transaction 0.
    let mut status = chain.tx_status(1, 0, 0);
    let ids = chain.record(1).block.batch().tx_ids();
    with_status(&mut status, |_, proof| {
        *proof = merkle::prove(&ids, 1).unwrap()
    });
    let err =
        verify_committed(&status, &tx, &chain.net.genesis, &second_opinion(&chain)).unwrap_err();
    assert_eq!(err, VerifyError::BadMerkleProof { tx, height: 1 });
    // A transaction that is not in the block at all, with the block's genuine evidence.
    let absent = chain.net.transfer(3, 0, 1, 0).id();
    let status = chain.tx_status(1, 0, 0);
    let err = verify_committed(
        &status,
        &absent,
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::BadMerkleProof {
            tx: absent,
            height: 1
        }
    );
}

#[test]
fn duplicate_outsider_and_badly_signed_attestations_do_not_count() {
    let chain = Chain::new();
    let status = chain.tx_status(1, 0, 0);
    let genesis = &chain.net.genesis;
    let outsider = derived_key("outsider", 0, 0);
    let block_statement = Statement {
        height: 1,
        block_hash: chain.headers[1].hash(),
    };
    let forged_sets: Vec<Vec<Attestation>> = vec![
        // Replica 0 again.
        vec![chain.block_attestation(1, 0), chain.block_attestation(1, 0)],
        // Someone outside the validator set, under a made-up id and under replica 1's id.
        vec![
            Attestation::sign(block_statement, 4, &outsider, &chain.chain_id()),
            Attestation::sign(block_statement, 1, &outsider, &chain.chain_id()),
        ],
        // Replica 1's signature on another chain.
        vec![Attestation::sign(
            block_statement,
            1,
            &chain.net.validator_keys[1],
            &Hash([7; 32]),
        )],
        // Replica 1 attesting another height.
        vec![chain.block_attestation(0, 1)],
    ];
    for forged in forged_sets {
        let err = verify_committed(&status, &tx0(&chain), genesis, &forged).unwrap_err();
        assert!(err.is_missing_attestations(), "{err}");
    }
}

#[test]
fn a_wrong_outcome_does_not_match_the_attested_outcomes_root() {
    // Replica 0 lies about the outcome. The header f+1 attest commits to the true one, so the
    // honest outcome proof cannot carry the lie, nor can the proof of another transaction.
    let chain = Chain::new();
    let lie = Outcome::Rejected(Rejection::InsufficientBalance {
        balance: 0,
        amount: 5,
    });
    let mut liar = chain.tx_status(1, 0, 0);
    if let TxStatus::Committed { outcome, .. } = &mut liar {
        *outcome = lie;
    }
    let err = verify_committed(
        &liar,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::BadOutcomeProof {
            tx: tx0(&chain),
            height: 1
        }
    );
    // Transaction 1's outcome proof (a real one, for another position) offered for transaction 0.
    let mut swapped = chain.tx_status(1, 0, 0);
    let other = chain.record(1).outcome_proof(1).unwrap();
    if let TxStatus::Committed { outcome_proof, .. } = &mut swapped {
        *outcome_proof = other;
    }
    let err = verify_committed(
        &swapped,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::BadOutcomeProof { .. }), "{err}");
}

#[test]
fn a_lie_about_the_outcome_with_its_own_header_is_attested_by_the_liar_only() {
    // A consistent forgery: the lie, a header whose outcomes root is over it, and the liar's
    // attestation of that header. Everything matches but the attestations.
    let chain = Chain::new();
    let record = chain.record(1);
    let lie = Outcome::Rejected(Rejection::ZeroAmount);
    let mut outcomes = record.outcomes.clone();
    outcomes[0] = lie;
    let mut forged = quire_chain::BlockRecord {
        block: record.block.clone(),
        outcomes,
    };
    forged.block.header.outcomes_root =
        quire_chain::block::outcomes_root(&forged.block.tx_ids(), &forged.outcomes);
    let header = forged.block.header;
    let liar = TxStatus::Committed {
        proof: merkle::prove(&forged.block.tx_ids(), 0).unwrap(),
        outcome: lie,
        outcome_proof: forged.outcome_proof(0).unwrap(),
        attestation: chain.attest(Statement::of(&header), 0),
        block: forged.block,
    };
    let err = verify_committed(
        &liar,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::TooFewAttestations {
            height: 1,
            have: 1,
            need: 2
        }
    );
}

#[test]
fn a_certified_block_with_a_forged_state_root_is_refused() {
    // The commit certificate signs the batch, not the state root: only attestations catch this.
    let chain = Chain::new();
    let mut status = chain.tx_status(1, 0, 0);
    let mut forged_header = chain.headers[1];
    forged_header.state_root = Hash([0xee; 32]);
    with_status(&mut status, |block, _| block.header = forged_header);
    if let TxStatus::Committed { attestation, .. } = &mut status {
        *attestation = chain.attest(Statement::of(&forged_header), 0);
    }
    let err = verify_committed(
        &status,
        &tx0(&chain),
        &chain.net.genesis,
        &second_opinion(&chain),
    )
    .unwrap_err();
    assert!(err.is_missing_attestations(), "{err}");
}

#[test]
fn answers_are_weighed_together_and_a_lone_liar_is_outvoted() {
    let chain = Chain::new();
    let genesis = &chain.net.genesis;
    let tx = tx0(&chain);
    // Honest replicas 1 and 2 vouch for each other.
    let answers = vec![
        (0, TxStatus::Unknown),
        (1, chain.tx_status(1, 0, 1)),
        (2, chain.tx_status(1, 0, 2)),
    ];
    let verdict = verify_tx_answers(genesis, &tx, &answers);
    let committed = verdict.committed.unwrap();
    assert_eq!(committed.outcome, Outcome::Applied);
    assert_eq!(committed.block_attesters, vec![1, 2]);
    // One replica's claim alone is not a commit: pending while others catch up.
    let answers = vec![
        (0, chain.tx_status(1, 0, 0)),
        (1, TxStatus::Unknown),
        (2, TxStatus::Unknown),
    ];
    let verdict = verify_tx_answers(genesis, &tx, &answers);
    assert!(verdict.committed.is_none());
    assert!(verdict.awaiting_attestations);
    assert_eq!(verdict.held_by, vec![0]);
    // A claim with a broken proof is refused outright, naming the replica.
    let mut broken = chain.tx_status(1, 0, 0);
    with_status(&mut broken, |block, _| block.certificate = None);
    let answers = vec![(0, broken), (1, TxStatus::Unknown)];
    let verdict = verify_tx_answers(genesis, &tx, &answers);
    assert!(verdict.committed.is_none() && verdict.held_by.is_empty());
    assert_eq!(verdict.refused.len(), 1);
    assert_eq!(verdict.refused[0].0, 0);
}

// ---- accounts ----------------------------------------------------------------------------

struct AccountAnswer {
    header: Header,
    account: Account,
    proof: SmtProof,
}

fn honest_account(chain: &mut Chain, index: usize) -> (Address, AccountAnswer) {
    let address = chain.net.account_keys[index].address();
    let (account, proof) = chain.ledger.prove(&address);
    let header = chain.headers[1];
    (
        address,
        AccountAnswer {
            header,
            account,
            proof,
        },
    )
}

#[test]
fn an_honest_balance_attested_by_f_plus_1_is_accepted() {
    let mut chain = Chain::new();
    let (address, a) = honest_account(&mut chain, 0);
    let pool = [chain.block_attestation(1, 0), chain.block_attestation(1, 3)];
    let v = verify_account_response(
        &chain.net.genesis,
        &address,
        &a.header,
        &a.account,
        &a.proof,
        &pool,
    )
    .unwrap();
    assert_eq!(v.account.balance, quire_chain::testkit::TEST_BALANCE - 5);
    assert_eq!(v.account.nonce, 1);
    assert_eq!(v.attesters, vec![0, 3]);
    // An account that never appeared is proven absent and reads as zero.
    let stranger = derived_key("stranger", 0, 0).address();
    let (account, proof) = chain.ledger.prove(&stranger);
    let v = verify_account_response(
        &chain.net.genesis,
        &stranger,
        &a.header,
        &account,
        &proof,
        &pool,
    )
    .unwrap();
    assert_eq!(v.account, Account::default());
}

#[test]
fn a_wrong_balance_is_refused() {
    let mut chain = Chain::new();
    let (address, a) = honest_account(&mut chain, 0);
    let pool = [chain.block_attestation(1, 0), chain.block_attestation(1, 1)];
    for forged in [
        Account {
            balance: a.account.balance + 1,
            ..a.account
        },
        Account {
            nonce: 0,
            ..a.account
        },
        Account::default(),
    ] {
        let err = verify_account_response(
            &chain.net.genesis,
            &address,
            &a.header,
            &forged,
            &a.proof,
            &pool,
        )
        .unwrap_err();
        assert_eq!(err, VerifyError::BadAccountProof { address, height: 1 });
    }
    // The proof of another account.
    let (other, b) = honest_account(&mut chain, 1);
    assert_ne!(other, address);
    let err = verify_account_response(
        &chain.net.genesis,
        &address,
        &a.header,
        &a.account,
        &b.proof,
        &pool,
    )
    .unwrap_err();
    assert_eq!(err, VerifyError::BadAccountProof { address, height: 1 });
}

#[test]
fn a_balance_under_a_header_only_the_liar_attests_is_refused() {
    // A consistent forgery: a made-up state with a rich account, a header over its root, and the
    // liar's own attestation of that header (twice). The proof matches; the attestations do not.
    let chain = Chain::new();
    let address = chain.net.account_keys[0].address();
    let rich = Account {
        balance: u64::MAX,
        nonce: 1,
    };
    let mut fake = Ledger::new(chain.chain_id(), [(address, rich)]);
    let (account, proof) = fake.prove(&address);
    let mut header = chain.headers[1];
    header.state_root = fake.state_root();
    let lie = chain.attest(Statement::of(&header), 0);
    let pool = [lie.clone(), lie, chain.block_attestation(1, 1)];
    let err = verify_account_response(
        &chain.net.genesis,
        &address,
        &header,
        &account,
        &proof,
        &pool,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::TooFewAttestations {
            height: 1,
            have: 1,
            need: 2
        }
    );
}

// ---- blocks --------------------------------------------------------------------------------

#[test]
fn blocks_need_a_certificate_and_f_plus_1_attestations() {
    let chain = Chain::new();
    let genesis = &chain.net.genesis;
    let block = chain.record(1).block.clone();
    let outcomes = chain.record(1).outcomes.clone();
    let pool = [chain.block_attestation(1, 2), chain.block_attestation(1, 3)];
    let v = verify_block_response(genesis, Some(1), &block, &outcomes, &pool).unwrap();
    assert_eq!(v.attesters, vec![2, 3]);
    assert_eq!(v.certificate_signers(), vec![0, 1, 2]);
    let err = verify_block_response(genesis, None, &block, &outcomes, &pool[..1]).unwrap_err();
    assert!(err.is_missing_attestations());
    let err = verify_block_response(genesis, Some(2), &block, &outcomes, &pool).unwrap_err();
    assert_eq!(err, VerifyError::WrongHeight { asked: 2, got: 1 });
    // Outcomes the header does not commit to.
    let mut wrong = outcomes.clone();
    wrong.swap(0, 1);
    wrong[0] = Outcome::Rejected(Rejection::ZeroAmount);
    let err = verify_block_response(genesis, Some(1), &block, &wrong, &pool).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::BadBlock {
                source: BlockError::WrongOutcomesRoot { .. },
                ..
            }
        ),
        "{err}"
    );
    let mut uncertified = block;
    uncertified.certificate = None;
    let err = verify_block_response(genesis, Some(1), &uncertified, &outcomes, &pool).unwrap_err();
    assert!(matches!(err, VerifyError::BadBlock { .. }));
}

#[test]
fn block_0_must_be_the_genesis_block() {
    let chain = Chain::new();
    let genesis = &chain.net.genesis;
    verify_block_response(genesis, Some(0), &genesis.block(), &[], &[]).unwrap();
    let mut forged = genesis.block();
    forged.header.state_root = Hash([1; 32]);
    let err = verify_block_response(genesis, Some(0), &forged, &[], &[]).unwrap_err();
    assert_eq!(err, VerifyError::NotGenesis);
}
