//! The client's own checks of what replicas tell it. Pure functions: no I/O, so they are tested
//! with forged answers.
//!
//! A replica is never believed on its word. A fact is accepted only with evidence that at most f
//! faulty replicas cannot forge: a commit certificate (2f+1 validator signatures) for what was
//! decided, and attestations of f+1 distinct validators (at least one honest) for a header, which
//! then vouches for everything execution put in it — the state root (balances, by account
//! proof) and the outcomes root (what each transaction did, by merkle proof). Every verified value
//! keeps the evidence it was accepted on, so it can be shown and checked again elsewhere.

use std::collections::BTreeSet;
use std::ops::Deref;

use quire_chain::block::{Block, BlockRecord, Header, outcome_leaf};
use quire_chain::ledger::verify_account;
use quire_chain::merkle::MerkleProof;
use quire_chain::smt::SmtProof;
use quire_chain::tx::{Outcome, TxId};
use quire_chain::{Account, Address, Genesis, ReplicaId};
use quire_wire::rpc::{Attestation, Statement, TxStatus};

use crate::error::VerifyError;

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

/// A header whose execution results (parent hash, state root, outcomes root) f+1 distinct
/// validators vouch for, with their attestations (one per attester, in replica order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VouchedHeader {
    pub header: Header,
    pub attestations: Vec<Attestation>,
}

impl VouchedHeader {
    pub fn attesters(&self) -> Vec<ReplicaId> {
        self.attestations.iter().map(|a| a.replica).collect()
    }
}

/// A transaction proven committed, with its proven outcome and the evidence for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTx {
    pub tx: TxId,
    pub height: u64,
    pub index: u32,
    pub outcome: Outcome,
    pub header: Header,
    /// The whole block: its transactions (this one at `index`) and its commit certificate.
    pub block: Block,
    /// `tx` at `index` under `header.tx_root`.
    pub proof: MerkleProof,
    /// `outcome_leaf(tx, outcome)` at `index` under `header.outcomes_root`.
    pub outcome_proof: MerkleProof,
    /// f+1 validators' attestations of `header`, which cover its outcomes root.
    pub attestations: Vec<Attestation>,
    /// Validators whose votes are in the block's commit certificate.
    pub certificate_signers: Vec<ReplicaId>,
    pub block_attesters: Vec<ReplicaId>,
}

/// An account's state proven against an attested header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenAccount {
    pub address: Address,
    pub account: Account,
    pub header: Header,
    pub proof: SmtProof,
    pub attestations: Vec<Attestation>,
    pub attesters: Vec<ReplicaId>,
}

/// A block with a valid commit certificate, the outcomes its header commits to, and a header
/// f+1 validators attest (or the genesis block, fixed by the network file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedBlock {
    pub block: Block,
    pub outcomes: Vec<Outcome>,
    pub attestations: Vec<Attestation>,
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

/// The valid attestations of exactly `statement` on this chain, one per distinct validator (in
/// replica order). Attestations by non-validators, with bad signatures, or about anything else
/// are ignored; a validator that appears twice counts once.
pub fn valid_attestations(
    genesis: &Genesis,
    statement: &Statement,
    attestations: &[Attestation],
) -> Vec<Attestation> {
    let mut seen = BTreeSet::new();
    let mut valid: Vec<Attestation> = attestations
        .iter()
        .filter(|a| a.statement == *statement)
        .filter(|a| a.verify(&genesis.chain_id(), &genesis.validators))
        .filter(|a| seen.insert(a.replica))
        .cloned()
        .collect();
    valid.sort_by_key(|a| a.replica);
    valid
}

/// The distinct validators that validly signed exactly `statement`.
pub fn attesters(
    genesis: &Genesis,
    statement: &Statement,
    attestations: &[Attestation],
) -> BTreeSet<ReplicaId> {
    valid_attestations(genesis, statement, attestations)
        .iter()
        .map(|a| a.replica)
        .collect()
}

/// The distinct validators that validly attest a *different* block at `header`'s height: f+1 of
/// them prove `header` is not the chain's (at least one honest replica executed another).
pub fn contradicting(
    genesis: &Genesis,
    header: &Header,
    pool: &[Attestation],
) -> BTreeSet<ReplicaId> {
    let hash = header.hash();
    pool.iter()
        .filter(|a| a.statement.height == header.height && a.statement.block_hash != hash)
        .filter(|a| a.verify(&genesis.chain_id(), &genesis.validators))
        .map(|a| a.replica)
        .collect()
}

/// Vouches for `header`: f+1 distinct validators must attest it. This is the one place that
/// decides whether a header's execution results are believed; another consensus mode (proof of
/// work: the header's own work and k confirmations) plugs in here.
pub fn vouch_header(
    genesis: &Genesis,
    header: &Header,
    attestations: &[Attestation],
) -> Result<VouchedHeader, VerifyError> {
    let valid = valid_attestations(genesis, &Statement::of(header), attestations);
    let need = genesis.validators.weak_quorum();
    if valid.len() < need {
        return Err(VerifyError::TooFewAttestations {
            height: header.height,
            have: valid.len(),
            need,
        });
    }
    Ok(VouchedHeader {
        header: *header,
        attestations: valid,
    })
}

/// Checks a replica's claim that `tx` is committed. `attestations` are those gathered from other
/// replicas; the claim's own is counted too.
///
/// Accepted only if the block's commit certificate verifies (the batch was decided at this
/// height), the merkle proof puts `tx` in that batch, the outcome proof puts `(tx, outcome)` at
/// the same position under the header's outcomes root, and f+1 validators attest the header.
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
        outcome_proof,
        attestation,
    } = status
    else {
        return Err(VerifyError::NotCommitted);
    };
    let header = block.header;
    let height = header.height;
    block
        .verify_certified(&genesis.chain_id(), &genesis.validators)
        .map_err(|source| VerifyError::BadBlock { height, source })?;
    let index = match u32::try_from(proof.index) {
        Ok(i) if proof.verify(&tx.0, &header.tx_root) => i,
        _ => return Err(VerifyError::BadMerkleProof { tx: *tx, height }),
    };
    let same_place = outcome_proof.index == proof.index && outcome_proof.count == proof.count;
    if !same_place || !outcome_proof.verify(&outcome_leaf(tx, outcome), &header.outcomes_root) {
        return Err(VerifyError::BadOutcomeProof { tx: *tx, height });
    }
    let mut all = attestations.to_vec();
    all.push(attestation.clone());
    let vouched = vouch_header(genesis, &header, &all)?;
    Ok(Verified(CommittedTx {
        tx: *tx,
        height,
        index,
        outcome: *outcome,
        header,
        block: block.clone(),
        proof: proof.clone(),
        outcome_proof: outcome_proof.clone(),
        block_attesters: vouched.attesters(),
        attestations: vouched.attestations,
        certificate_signers: signers(block),
    }))
}

/// Checks a replica's `Response::Account` answer for `address`: the proof must match the
/// header's state root, and f+1 validators must attest that header (`attestations` are those
/// gathered from other replicas, the answer's own included). The proof is checked first, so
/// [`VerifyError::TooFewAttestations`] means only that more attestations are needed.
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
    let vouched = vouch_header(genesis, header, attestations)?;
    Ok(Verified(ProvenAccount {
        address: *address,
        account: *account,
        header: *header,
        proof: proof.clone(),
        attesters: vouched.attesters(),
        attestations: vouched.attestations,
    }))
}

/// Checks a replica's `Response::Block` answer. The genesis block needs no attestations: it must
/// equal the genesis's. Any other block needs a valid commit certificate, outcomes that match its
/// outcomes root, and f+1 attestations of its header. `asked` is the requested height, if one was.
pub fn verify_block_response(
    genesis: &Genesis,
    asked: Option<u64>,
    block: &Block,
    outcomes: &[Outcome],
    attestations: &[Attestation],
) -> Result<Verified<CertifiedBlock>, VerifyError> {
    let height = block.header.height;
    if let Some(asked) = asked.filter(|a| *a != height) {
        return Err(VerifyError::WrongHeight { asked, got: height });
    }
    let record = BlockRecord {
        block: block.clone(),
        outcomes: outcomes.to_vec(),
    };
    if height == 0 {
        if *block != genesis.block() || !outcomes.is_empty() {
            return Err(VerifyError::NotGenesis);
        }
        return Ok(Verified(CertifiedBlock {
            block: record.block,
            outcomes: record.outcomes,
            attestations: Vec::new(),
            attesters: Vec::new(),
        }));
    }
    block
        .verify_certified(&genesis.chain_id(), &genesis.validators)
        .map_err(|source| VerifyError::BadBlock { height, source })?;
    record
        .verify_outcomes()
        .map_err(|source| VerifyError::BadBlock { height, source })?;
    let vouched = vouch_header(genesis, &block.header, attestations)?;
    Ok(Verified(CertifiedBlock {
        block: record.block,
        outcomes: record.outcomes,
        attesters: vouched.attesters(),
        attestations: vouched.attestations,
    }))
}

/// What a set of replicas' TxStatus answers prove about one transaction.
#[derive(Debug, Clone)]
pub struct TxVerdict {
    /// Set when some answer proved the commit and its outcome.
    pub committed: Option<Verified<CommittedTx>>,
    /// Replicas that hold the transaction (in their mempool) but have not committed it.
    pub held_by: Vec<ReplicaId>,
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
            TxStatus::Committed { attestation, .. } => Some(attestation.clone()),
            _ => None,
        })
        .collect();
    let mut verdict = TxVerdict {
        committed: None,
        held_by: Vec::new(),
        awaiting_attestations: false,
        refused: Vec::new(),
    };
    for (replica, status) in answers {
        match status {
            TxStatus::Unknown => {}
            TxStatus::Pending => verdict.held_by.push(*replica),
            TxStatus::Committed { .. } => match verify_committed(status, tx, genesis, &pool) {
                Ok(v) if verdict.committed.is_none() => verdict.committed = Some(v),
                Ok(_) => {}
                Err(e) if e.is_missing_attestations() => {
                    verdict.awaiting_attestations = true;
                    verdict.held_by.push(*replica);
                }
                Err(e) => verdict.refused.push((*replica, e)),
            },
        }
    }
    verdict
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
