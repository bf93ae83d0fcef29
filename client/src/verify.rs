//! The client's own checks of what replicas tell it. Pure functions: no I/O, so they are tested
//! with forged answers.
//!
//! A replica is never believed on its word. A fact is accepted only with evidence that at most f
//! faulty replicas cannot forge: a commit certificate (2f+1 validator signatures) for what was
//! decided, a merkle proof tying the item to a certified or attested header, and attestations of
//! f+1 distinct validators for what execution produced (the state root, a transaction's outcome),
//! since at least one of f+1 is honest.

use std::collections::BTreeSet;
use std::ops::Deref;

use quire_chain::block::{Block, Header};
use quire_chain::ledger::verify_account;
use quire_chain::smt::SmtProof;
use quire_chain::tx::{Outcome, TxId};
use quire_chain::{Account, Address, Genesis, ReplicaId};
use quire_wire::rpc::{Attestation, Statement, TxStatus};

use crate::error::{Attested, VerifyError};

/// A value this crate checked itself. Only the functions of this module make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A transaction proven committed, with its proven outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTx {
    pub tx: TxId,
    pub height: u64,
    pub index: u32,
    pub outcome: Outcome,
    pub header: Header,
    /// Validators whose votes are in the block's commit certificate.
    pub certificate_signers: Vec<ReplicaId>,
    pub block_attesters: Vec<ReplicaId>,
    pub outcome_attesters: Vec<ReplicaId>,
}

/// An account's state proven against an attested header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenAccount {
    pub address: Address,
    pub account: Account,
    pub header: Header,
    pub attesters: Vec<ReplicaId>,
}

/// A block with a valid commit certificate whose header f+1 validators attest (or the genesis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedBlock {
    pub block: Block,
    pub attesters: Vec<ReplicaId>,
}

impl CertifiedBlock {
    pub fn certificate_signers(&self) -> Vec<ReplicaId> {
        signers(&self.block)
    }
}

fn signers(block: &Block) -> Vec<ReplicaId> {
    block
        .certificate
        .as_ref()
        .map(|c| c.votes.iter().map(|v| v.replica).collect())
        .unwrap_or_default()
}

/// The distinct validators that validly signed exactly `statement` on this chain. Attestations
/// by non-validators, with bad signatures, or about anything else are ignored; a validator that
/// appears twice counts once.
pub fn attesters(
    genesis: &Genesis,
    statement: &Statement,
    attestations: &[Attestation],
) -> BTreeSet<ReplicaId> {
    attestations
        .iter()
        .filter(|a| a.statement == *statement)
        .filter(|a| a.verify(&genesis.chain_id(), &genesis.validators))
        .map(|a| a.replica)
        .collect()
}

/// Requires f+1 distinct validators to attest `statement`; returns who did.
pub fn require_attested(
    genesis: &Genesis,
    statement: &Statement,
    what: Attested,
    attestations: &[Attestation],
) -> Result<Vec<ReplicaId>, VerifyError> {
    let who = attesters(genesis, statement, attestations);
    let need = genesis.validators.weak_quorum();
    if who.len() < need {
        return Err(VerifyError::TooFewAttestations {
            what,
            have: who.len(),
            need,
        });
    }
    Ok(who.into_iter().collect())
}

/// Requires f+1 attestations of `header` at its height.
pub fn require_header_attested(
    genesis: &Genesis,
    header: &Header,
    attestations: &[Attestation],
) -> Result<Vec<ReplicaId>, VerifyError> {
    let statement = Statement::Block {
        height: header.height,
        block_hash: header.hash(),
    };
    let what = Attested::Block {
        height: header.height,
    };
    require_attested(genesis, &statement, what, attestations)
}

/// Checks a replica's claim that `tx` is committed. `attestations` are those gathered from other
/// replicas; the claim's own two attestations are counted too.
///
/// Accepted only if the block's commit certificate verifies (the batch was decided at this
/// height), the merkle proof puts `tx` in that batch, f+1 validators attest the block's header,
/// and f+1 attest the same outcome at the same position.
pub fn verify_committed(
    status: &TxStatus,
    tx: &TxId,
    genesis: &Genesis,
    attestations: &[Attestation],
) -> Result<Verified<CommittedTx>, VerifyError> {
    let TxStatus::Committed {
        block,
        proof,
        outcome,
        block_attestation,
        outcome_attestation,
    } = status
    else {
        return Err(VerifyError::NotCommitted);
    };
    let header = block.header;
    let height = header.height;
    block
        .verify_certified(&genesis.chain_id(), &genesis.validators)
        .map_err(|source| VerifyError::BadBlock { height, source })?;
    let index = u32::try_from(proof.index).ok();
    let index = match index {
        Some(i) if proof.verify(&tx.0, &header.tx_root) => i,
        _ => return Err(VerifyError::BadMerkleProof { tx: *tx, height }),
    };
    let mut all = attestations.to_vec();
    all.push(block_attestation.clone());
    all.push(outcome_attestation.clone());
    let block_attesters = require_header_attested(genesis, &header, &all)?;
    let statement = Statement::TxOutcome {
        tx: *tx,
        height,
        index,
        outcome: *outcome,
    };
    let outcome_attesters =
        require_attested(genesis, &statement, Attested::Outcome { height }, &all)?;
    Ok(Verified(CommittedTx {
        tx: *tx,
        height,
        index,
        outcome: *outcome,
        header,
        certificate_signers: signers(block),
        block_attesters,
        outcome_attesters,
    }))
}

/// Checks a replica's `Response::Account` answer for `address`: the proof must match the
/// header's state root, and f+1 validators must attest that header (`attestations` are those
/// gathered from other replicas; the answer's own is counted too). The proof is checked first,
/// so [`VerifyError::TooFewAttestations`] means only that more attestations are needed.
pub fn verify_account_response(
    genesis: &Genesis,
    address: &Address,
    header: &Header,
    account: &Account,
    proof: &SmtProof,
    attestations: &[Attestation],
) -> Result<Verified<ProvenAccount>, VerifyError> {
    if !verify_account(&header.state_root, address, account, proof) {
        return Err(VerifyError::BadAccountProof {
            address: *address,
            height: header.height,
        });
    }
    let attesters = require_header_attested(genesis, header, attestations)?;
    Ok(Verified(ProvenAccount {
        address: *address,
        account: *account,
        header: *header,
        attesters,
    }))
}

/// Checks a replica's `Response::Block` answer. The genesis block needs no attestations: it must
/// equal the genesis's. Any other block needs a valid commit certificate and f+1 attestations of
/// its header. `asked` is the requested height, if one was.
pub fn verify_block_response(
    genesis: &Genesis,
    asked: Option<u64>,
    block: &Block,
    attestations: &[Attestation],
) -> Result<Verified<CertifiedBlock>, VerifyError> {
    let height = block.header.height;
    if let Some(asked) = asked.filter(|a| *a != height) {
        return Err(VerifyError::WrongHeight { asked, got: height });
    }
    if height == 0 {
        if *block != genesis.block() {
            return Err(VerifyError::NotGenesis);
        }
        return Ok(Verified(CertifiedBlock {
            block: block.clone(),
            attesters: Vec::new(),
        }));
    }
    block
        .verify_certified(&genesis.chain_id(), &genesis.validators)
        .map_err(|source| VerifyError::BadBlock { height, source })?;
    let attesters = require_header_attested(genesis, &block.header, attestations)?;
    Ok(Verified(CertifiedBlock {
        block: block.clone(),
        attesters,
    }))
}

/// What a set of replicas' TxStatus answers prove about one transaction.
#[derive(Debug, Clone)]
pub struct TxVerdict {
    /// Set when some answer proved the commit and its outcome.
    pub committed: Option<Verified<CommittedTx>>,
    /// Some replica has the transaction but no commit is proven (yet).
    pub pending: bool,
    /// Some commit claim checks out except for attestations: others may be behind; ask again.
    pub awaiting_attestations: bool,
    /// Claims that are wrong, not merely early: the replica is faulty.
    pub refused: Vec<(ReplicaId, VerifyError)>,
}

/// Weighs every replica's answer about `tx`. The attestations carried by all commit claims are
/// pooled, so honest replicas' claims vouch for each other, while a lone faulty replica's claim
/// has only its own signature and never reaches f+1.
pub fn verify_tx_answers(
    genesis: &Genesis,
    tx: &TxId,
    answers: &[(ReplicaId, TxStatus)],
) -> TxVerdict {
    let pool: Vec<Attestation> = answers
        .iter()
        .filter_map(|(_, status)| match status {
            TxStatus::Committed {
                block_attestation,
                outcome_attestation,
                ..
            } => Some([block_attestation.clone(), outcome_attestation.clone()]),
            _ => None,
        })
        .flatten()
        .collect();
    let mut verdict = TxVerdict {
        committed: None,
        pending: false,
        awaiting_attestations: false,
        refused: Vec::new(),
    };
    for (replica, status) in answers {
        match status {
            TxStatus::Unknown => {}
            TxStatus::Pending => verdict.pending = true,
            TxStatus::Committed { .. } => match verify_committed(status, tx, genesis, &pool) {
                Ok(v) if verdict.committed.is_none() => verdict.committed = Some(v),
                Ok(_) => {}
                Err(e) if e.is_missing_attestations() => verdict.awaiting_attestations = true,
                Err(e) => verdict.refused.push((*replica, e)),
            },
        }
    }
    verdict.pending |= verdict.awaiting_attestations;
    verdict
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
