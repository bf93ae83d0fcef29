//! The block evidence file that `quire block N --raw` writes and `quire verify-export` checks:
//! one block with everything needed to verify it offline against the genesis alone — its
//! transactions, commit certificate, outcomes, f+1 attestations of its header, and the merkle
//! proof of every transaction and of every outcome. The layout is in docs/client-rpc.md §5; it
//! is the canonical encoding of docs/chain-format.md throughout.
//!
//! Reading is strict and says where a file is wrong: a truncated or corrupt file is refused
//! naming the field (`block.certificate.votes[1].signature`, `proofs[0].outcome`, …) and its
//! byte offset.

use quire_chain::block::{Block, BlockError, Header, PowSeal, outcome_leaf};
use quire_chain::cert::{CertError, CommitCertificate, CommitStatement, Vote};
use quire_chain::codec::{self, Decode, DecodeError, Encode, Reader};
use quire_chain::merkle::{self, MerkleProof};
use quire_chain::tx::{Outcome, Transaction, TxId};
use quire_chain::{Genesis, Hash, Signature};
use quire_wire::rpc::{Attestation, Statement};
use thiserror::Error;

use crate::verify::{CertifiedBlock, Verified, valid_attestations, verify_block_response};

/// The file's first bytes: `u8(len) ‖ "quire/v1/export/block"`, as domain tags are written.
pub const MAGIC: &str = "quire/v1/export/block";
/// Transactions (hence outcomes and proof pairs) in one file at most: a block's cap.
const TXS_MAX: usize = quire_chain::block::BATCH_TXS_MAX;
/// Attestations in one file at most (one per validator is all that counts).
const ATTESTATIONS_MAX: usize = 1024;
/// Votes in a certificate at most (as `cert.rs` decodes).
const VOTES_MAX: usize = 1024;

/// A block and its proofs, as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockExport {
    pub chain_id: Hash,
    pub block: Block,
    pub outcomes: Vec<Outcome>,
    pub attestations: Vec<Attestation>,
    /// For each transaction in block order: its proof under `tx_root`, and the proof of its
    /// outcome leaf under `outcomes_root`.
    pub proofs: Vec<(MerkleProof, MerkleProof)>,
}

/// Why an export file is refused: which field, and (when decoding) where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExportError {
    #[error("{field} (byte {offset}): {source}")]
    Decode {
        field: String,
        offset: usize,
        source: DecodeError,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl ExportError {
    /// The field that is wrong.
    pub fn field(&self) -> &str {
        match self {
            ExportError::Decode { field, .. } | ExportError::Invalid { field, .. } => field,
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ExportError {
    ExportError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl BlockExport {
    /// The export of a verified block: proofs for every transaction are built here.
    pub fn of(block: &CertifiedBlock, chain_id: Hash) -> BlockExport {
        let ids = block.block.tx_ids();
        let leaves: Vec<Hash> = ids
            .iter()
            .zip(&block.outcomes)
            .map(|(id, o)| outcome_leaf(&TxId(*id), o))
            .collect();
        let proofs = (0..ids.len())
            .filter_map(|i| Some((merkle::prove(&ids, i)?, merkle::prove(&leaves, i)?)))
            .collect();
        BlockExport {
            chain_id,
            block: block.block.clone(),
            outcomes: block.outcomes.clone(),
            attestations: block.attestations.clone(),
            proofs,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        codec::put_u8(&mut out, MAGIC.len() as u8);
        out.extend_from_slice(MAGIC.as_bytes());
        self.chain_id.encode(&mut out);
        self.block.encode(&mut out);
        codec::put_seq(&mut out, &self.outcomes);
        codec::put_seq(&mut out, &self.attestations);
        codec::put_u32(&mut out, self.proofs.len() as u32);
        for (tx, outcome) in &self.proofs {
            tx.encode(&mut out);
            outcome.encode(&mut out);
        }
        out
    }

    /// Decodes a whole file, naming the field where it goes wrong.
    pub fn decode(bytes: &[u8]) -> Result<BlockExport, ExportError> {
        let mut f = Fields {
            r: Reader::new(bytes),
            total: bytes.len(),
        };
        let offset = f.offset();
        let len = f.byte("magic")?;
        let tag = f.take("magic", usize::from(len))?;
        if tag != MAGIC.as_bytes() {
            return Err(ExportError::Invalid {
                field: "magic".into(),
                reason: format!("byte {offset}: not a Quire block export (expected {MAGIC:?})"),
            });
        }
        let chain_id = f.get::<Hash>("chain_id")?;
        let block = f.block()?;
        let count = f.count("outcomes", TXS_MAX, Outcome::MIN_LEN)?;
        let outcomes = (0..count)
            .map(|i| f.get::<Outcome>(&format!("outcomes[{i}]")))
            .collect::<Result<_, _>>()?;
        let count = f.count("attestations", ATTESTATIONS_MAX, Attestation::MIN_LEN)?;
        let attestations = (0..count)
            .map(|i| f.attestation(i))
            .collect::<Result<_, _>>()?;
        let count = f.count("proofs", TXS_MAX, 2 * MerkleProof::MIN_LEN)?;
        let mut proofs = Vec::with_capacity(count);
        for i in 0..count {
            let tx = f.get::<MerkleProof>(&format!("proofs[{i}].tx"))?;
            let outcome = f.get::<MerkleProof>(&format!("proofs[{i}].outcome"))?;
            proofs.push((tx, outcome));
        }
        if f.r.remaining() > 0 {
            return Err(invalid(
                "end of file",
                format!(
                    "{} trailing bytes after the last field (byte {})",
                    f.r.remaining(),
                    f.offset()
                ),
            ));
        }
        Ok(BlockExport {
            chain_id,
            block,
            outcomes,
            attestations,
            proofs,
        })
    }

    /// Checks everything against `genesis` alone, naming the first field that does not hold.
    pub fn verify(&self, genesis: &Genesis) -> Result<Verified<CertifiedBlock>, ExportError> {
        if self.chain_id != genesis.chain_id() {
            return Err(invalid(
                "chain_id",
                format!(
                    "{} is not this network's ({})",
                    self.chain_id,
                    genesis.chain_id()
                ),
            ));
        }
        let header = &self.block.header;
        if header.height > 0 {
            self.block
                .verify_certified(&genesis.chain_id(), &genesis.validators)
                .map_err(|e| self.certificate_field(e))?;
        }
        if self.outcomes.len() != self.block.txs.len() {
            return Err(invalid(
                "outcomes",
                format!(
                    "{} outcomes for {} transactions",
                    self.outcomes.len(),
                    self.block.txs.len()
                ),
            ));
        }
        if header.height > 0 {
            self.check_attestations(genesis)?;
        }
        self.check_proofs()?;
        verify_block_response(
            genesis,
            None,
            &self.block,
            &self.outcomes,
            &self.attestations,
        )
        .map_err(|e| match e {
            crate::error::VerifyError::BadBlock {
                source: BlockError::WrongOutcomesRoot { .. },
                ..
            } => invalid(
                "outcomes",
                "do not match the header's outcomes_root".to_string(),
            ),
            other => invalid("block", other.to_string()),
        })
    }

    fn certificate_field(&self, e: BlockError) -> ExportError {
        let vote_index = |replica: u32| {
            self.block
                .certificate
                .as_ref()
                .and_then(|c| c.votes.iter().position(|v| v.replica == replica))
                .map_or_else(
                    || "block.certificate.votes".to_string(),
                    |i| format!("block.certificate.votes[{i}]"),
                )
        };
        let reason = e.to_string();
        match e {
            BlockError::Uncertified { .. } => invalid("block.certificate", reason),
            BlockError::WrongSeq { .. } => invalid("block.certificate.statement.seq", reason),
            BlockError::WrongTxRoot { .. } => invalid("block.header.tx_root", reason),
            BlockError::WrongDigest { .. } => invalid("block.certificate.statement.digest", reason),
            BlockError::Certificate { source, .. } => match source {
                CertError::BadSignature(r) => {
                    invalid(format!("{}.signature", vote_index(r)), reason)
                }
                CertError::UnknownSigner(r) | CertError::DuplicateOrUnordered(r) => {
                    invalid(format!("{}.replica", vote_index(r)), reason)
                }
                _ => invalid("block.certificate.votes", reason),
            },
            _ => invalid("block", reason),
        }
    }

    fn check_attestations(&self, genesis: &Genesis) -> Result<(), ExportError> {
        let statement = Statement::of(&self.block.header);
        for (i, a) in self.attestations.iter().enumerate() {
            if a.statement != statement {
                return Err(invalid(
                    format!("attestations[{i}].statement"),
                    format!(
                        "attests block {} at height {}, not this block",
                        a.statement.block_hash, a.statement.height
                    ),
                ));
            }
            if !a.verify(&genesis.chain_id(), &genesis.validators) {
                return Err(invalid(
                    format!("attestations[{i}].signature"),
                    format!("does not verify under validator {}'s key", a.replica),
                ));
            }
        }
        let have = valid_attestations(genesis, &statement, &self.attestations).len();
        let need = genesis.validators.weak_quorum();
        if have < need {
            return Err(invalid(
                "attestations",
                format!("{have} distinct validators attest the header; {need} are needed"),
            ));
        }
        Ok(())
    }

    fn check_proofs(&self) -> Result<(), ExportError> {
        let header = &self.block.header;
        if self.proofs.len() != self.block.txs.len() {
            return Err(invalid(
                "proofs",
                format!(
                    "{} proof pairs for {} transactions",
                    self.proofs.len(),
                    self.block.txs.len()
                ),
            ));
        }
        let items = self.block.txs.iter().zip(&self.outcomes).zip(&self.proofs);
        for (i, ((tx, outcome), (tx_proof, outcome_proof))) in items.enumerate() {
            let id = tx.id();
            if tx_proof.index != i as u64 || !tx_proof.verify(&id.0, &header.tx_root) {
                return Err(invalid(
                    format!("proofs[{i}].tx"),
                    "does not place the transaction at its index under tx_root",
                ));
            }
            let leaf = outcome_leaf(&id, outcome);
            if outcome_proof.index != i as u64
                || !outcome_proof.verify(&leaf, &header.outcomes_root)
            {
                return Err(invalid(
                    format!("proofs[{i}].outcome"),
                    "does not place the outcome at its index under outcomes_root",
                ));
            }
        }
        Ok(())
    }
}

/// A reader that knows which field it is on.
struct Fields<'a> {
    r: Reader<'a>,
    total: usize,
}

impl Fields<'_> {
    fn offset(&self) -> usize {
        self.total - self.r.remaining()
    }

    fn get<T: Decode>(&mut self, field: &str) -> Result<T, ExportError> {
        let offset = self.offset();
        T::decode(&mut self.r).map_err(|source| ExportError::Decode {
            field: field.to_string(),
            offset,
            source,
        })
    }

    fn byte(&mut self, field: &str) -> Result<u8, ExportError> {
        let offset = self.offset();
        self.r.u8().map_err(|source| ExportError::Decode {
            field: field.to_string(),
            offset,
            source,
        })
    }

    fn option<T: Decode>(&mut self, field: &str) -> Result<Option<T>, ExportError> {
        let offset = self.offset();
        self.r.option().map_err(|source| ExportError::Decode {
            field: field.to_string(),
            offset,
            source,
        })
    }

    fn take(&mut self, field: &str, len: usize) -> Result<Vec<u8>, ExportError> {
        let offset = self.offset();
        self.r
            .take(len)
            .map(<[u8]>::to_vec)
            .map_err(|source| ExportError::Decode {
                field: field.to_string(),
                offset,
                source,
            })
    }

    /// A `u32` count, refused above `max` or if the rest of the file could not hold that many
    /// items of `item_min` bytes (so nothing is allocated for a lie).
    fn count(&mut self, field: &str, max: usize, item_min: usize) -> Result<usize, ExportError> {
        let offset = self.offset();
        let count = self.get::<u32>(&format!("{field} count"))? as usize;
        let fits = count.saturating_mul(item_min.max(1)) <= self.r.remaining();
        if count > max || !fits {
            return Err(ExportError::Invalid {
                field: format!("{field} count"),
                reason: format!(
                    "byte {offset}: {count} items (at most {max}, and {} bytes are left)",
                    self.r.remaining()
                ),
            });
        }
        Ok(count)
    }

    fn block(&mut self) -> Result<Block, ExportError> {
        let header = self.header()?;
        let count = self.count("block.txs", TXS_MAX, Transaction::MIN_LEN)?;
        let txs = (0..count)
            .map(|i| self.get::<Transaction>(&format!("block.txs[{i}]")))
            .collect::<Result<_, _>>()?;
        let certificate = match self.byte("block.certificate")? {
            0 => None,
            1 => Some(self.certificate()?),
            tag => {
                return Err(invalid(
                    "block.certificate",
                    format!("byte {}: option tag {tag} (0 or 1)", self.offset() - 1),
                ));
            }
        };
        Ok(Block {
            header,
            txs,
            certificate,
        })
    }

    fn header(&mut self) -> Result<Header, ExportError> {
        Ok(Header {
            height: self.get("block.header.height")?,
            parent_hash: self.get("block.header.parent_hash")?,
            tx_root: self.get("block.header.tx_root")?,
            state_root: self.get("block.header.state_root")?,
            outcomes_root: self.get("block.header.outcomes_root")?,
            view: self.get("block.header.view")?,
            proposer: self.get("block.header.proposer")?,
            timestamp_ms: self.get("block.header.timestamp_ms")?,
            pow: self.option::<PowSeal>("block.header.pow")?,
        })
    }

    fn certificate(&mut self) -> Result<CommitCertificate, ExportError> {
        let statement = CommitStatement {
            view: self.get("block.certificate.statement.view")?,
            seq: self.get("block.certificate.statement.seq")?,
            digest: self.get("block.certificate.statement.digest")?,
        };
        let count = self.count("block.certificate.votes", VOTES_MAX, Vote::MIN_LEN)?;
        let mut votes = Vec::with_capacity(count);
        for i in 0..count {
            votes.push(Vote {
                replica: self.get(&format!("block.certificate.votes[{i}].replica"))?,
                signature: self
                    .get::<Signature>(&format!("block.certificate.votes[{i}].signature"))?,
            });
        }
        Ok(CommitCertificate { statement, votes })
    }

    fn attestation(&mut self, i: usize) -> Result<Attestation, ExportError> {
        Ok(Attestation {
            replica: self.get(&format!("attestations[{i}].replica"))?,
            statement: Statement {
                height: self.get(&format!("attestations[{i}].height"))?,
                block_hash: self.get(&format!("attestations[{i}].block_hash"))?,
            },
            signature: self.get(&format!("attestations[{i}].signature"))?,
        })
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
