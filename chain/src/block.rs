//! Batches, headers and blocks, and the step that turns a decided batch into the next block.
//!
//! PBFT decides a *batch* at each sequence number; the block at height `seq` is derived when the
//! batch is executed, in sequence order, from the batch and its parent. That keeps pipelined and
//! re-proposed batches independent of each other (a null batch may fill a gap after a view
//! change) while the executed chain is still hash-linked. Heights equal sequence numbers; the
//! genesis block is height 0.

use thiserror::Error;

use crate::cert::{CertError, CommitCertificate};
use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};
use crate::ledger::{Ledger, StateChanges};
use crate::merkle;
use crate::tx::{Outcome, Transaction, TxId};
use crate::validators::{ReplicaId, ValidatorSet};

/// Most transactions one batch may hold.
pub const BATCH_TXS_MAX: usize = 1 << 16;

/// What the primary of `view` proposes for one sequence number.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Batch {
    pub view: u64,
    pub proposer: ReplicaId,
    pub timestamp_ms: u64,
    pub txs: Vec<Transaction>,
}

impl Batch {
    /// The null batch that fills a gap after a view change: empty, and the same for everyone.
    pub fn null() -> Batch {
        Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 0,
            txs: Vec::new(),
        }
    }

    pub fn is_null(&self) -> bool {
        *self == Batch::null()
    }

    pub fn tx_ids(&self) -> Vec<Hash> {
        self.txs.iter().map(|t| t.id().0).collect()
    }

    pub fn tx_root(&self) -> Hash {
        merkle::root(&self.tx_ids())
    }

    /// The digest PBFT agrees on; a header carries everything needed to recompute it.
    pub fn digest(&self) -> Hash {
        batch_digest(self.view, self.proposer, self.timestamp_ms, &self.tx_root())
    }
}

/// `H("quire/v1/batch", view || proposer || timestamp_ms || tx_root)`.
pub fn batch_digest(view: u64, proposer: ReplicaId, timestamp_ms: u64, tx_root: &Hash) -> Hash {
    Hash::tagged(
        tags::BATCH,
        &[
            &view.to_be_bytes(),
            &proposer.to_be_bytes(),
            &timestamp_ms.to_be_bytes(),
            &tx_root.0,
        ],
    )
}

impl Encode for Batch {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.view);
        codec::put_u32(out, self.proposer);
        codec::put_u64(out, self.timestamp_ms);
        codec::put_seq(out, &self.txs);
    }
}

impl Decode for Batch {
    const MIN_LEN: usize = 24;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Batch {
            view: r.u64()?,
            proposer: r.u32()?,
            timestamp_ms: r.u64()?,
            txs: r.seq("batch transactions", BATCH_TXS_MAX)?,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    pub height: u64,
    pub parent_hash: Hash,
    pub tx_root: Hash,
    pub state_root: Hash,
    /// The root over the outcome of each transaction (see [`outcomes_root`]), so that a header
    /// vouched for by attestations or a checkpoint vouches for what each transaction did.
    pub outcomes_root: Hash,
    /// The view in which the batch was proposed, and its proposer (under proof of work: 0, and
    /// the replica that mined the block).
    pub view: u64,
    pub proposer: ReplicaId,
    pub timestamp_ms: u64,
    /// Proof of work: present exactly when the genesis says `consensus = "pow"`.
    pub pow: Option<PowSeal>,
}

/// The proof-of-work fields of a header: the target its hash must not exceed, and the nonce
/// that makes it so.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PowSeal {
    /// A 256-bit big-endian number.
    pub target: Hash,
    pub nonce: u64,
}

impl Header {
    pub fn hash(&self) -> Hash {
        Hash::tagged(tags::HEADER, &[&self.to_bytes()])
    }

    /// The digest of the batch this block executed; what its commit certificate signs.
    pub fn batch_digest(&self) -> Hash {
        batch_digest(self.view, self.proposer, self.timestamp_ms, &self.tx_root)
    }
}

impl Encode for Header {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.height);
        self.parent_hash.encode(out);
        self.tx_root.encode(out);
        self.state_root.encode(out);
        self.outcomes_root.encode(out);
        codec::put_u64(out, self.view);
        codec::put_u32(out, self.proposer);
        codec::put_u64(out, self.timestamp_ms);
        codec::put_option(out, &self.pow);
    }
}

impl Decode for Header {
    const MIN_LEN: usize = 157;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Header {
            height: r.u64()?,
            parent_hash: Hash::decode(r)?,
            tx_root: Hash::decode(r)?,
            state_root: Hash::decode(r)?,
            outcomes_root: Hash::decode(r)?,
            view: r.u64()?,
            proposer: r.u32()?,
            timestamp_ms: r.u64()?,
            pow: r.option()?,
        })
    }
}

impl Encode for PowSeal {
    fn encode(&self, out: &mut Vec<u8>) {
        self.target.encode(out);
        codec::put_u64(out, self.nonce);
    }
}

impl Decode for PowSeal {
    const MIN_LEN: usize = 40;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PowSeal {
            target: Hash::decode(r)?,
            nonce: r.u64()?,
        })
    }
}

/// The leaf of transaction `id`'s outcome in [`outcomes_root`]:
/// `H("quire/v1/outcome", id ‖ outcome encoding)`. The id is in the leaf, so a proof of one
/// leaf says which transaction had that outcome, not only what happened at a position.
pub fn outcome_leaf(id: &TxId, outcome: &Outcome) -> Hash {
    Hash::tagged(tags::OUTCOME, &[&id.0.0, &outcome.to_bytes()])
}

/// The merkle root (the tree of docs/chain-format.md §8) over the outcome leaves of a block's
/// transactions, in block order.
pub fn outcomes_root(ids: &[Hash], outcomes: &[Outcome]) -> Hash {
    let leaves: Vec<Hash> = ids
        .iter()
        .zip(outcomes)
        .map(|(id, o)| outcome_leaf(&TxId(*id), o))
        .collect();
    merkle::root(&leaves)
}

/// A block: its header, its transactions, and (except at genesis) the commit certificate that
/// decided its batch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<Transaction>,
    pub certificate: Option<CommitCertificate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("block {height} has no commit certificate")]
    Uncertified { height: u64 },
    #[error("block {height}: the certificate is for sequence number {seq}")]
    WrongSeq { height: u64, seq: u64 },
    #[error("block {height}: the certificate signs another batch")]
    WrongDigest { height: u64 },
    #[error("block {height}: transactions do not match the header's tx_root")]
    WrongTxRoot { height: u64 },
    #[error("block {height}: outcomes do not match the header's outcomes_root")]
    WrongOutcomesRoot { height: u64 },
    #[error("block {height}: certificate: {source}")]
    Certificate { height: u64, source: CertError },
    #[error("block {height} does not link to its parent")]
    BadLink { height: u64 },
    #[error("block {height}: re-executing it gives another header")]
    WrongExecution { height: u64 },
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn tx_ids(&self) -> Vec<Hash> {
        self.txs.iter().map(|t| t.id().0).collect()
    }

    pub fn batch(&self) -> Batch {
        Batch {
            view: self.header.view,
            proposer: self.header.proposer,
            timestamp_ms: self.header.timestamp_ms,
            txs: self.txs.clone(),
        }
    }

    /// Checks that the body matches the header and a quorum certified this block's batch at this
    /// height. It says nothing about `parent_hash` or `state_root`, which come from execution:
    /// re-execute, or trust a checkpoint or attestations for those.
    pub fn verify_certified(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
    ) -> Result<(), BlockError> {
        verify_certified_all(std::slice::from_ref(self), chain_id, validators)
    }

    /// Everything [`verify_certified`](Self::verify_certified) checks but the votes'
    /// signatures, which it returns to check.
    fn certified_votes(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
    ) -> Result<Vec<crate::cert::VoteToCheck>, BlockError> {
        let height = self.header.height;
        let cert = self
            .certificate
            .as_ref()
            .ok_or(BlockError::Uncertified { height })?;
        if cert.statement.seq != height {
            return Err(BlockError::WrongSeq {
                height,
                seq: cert.statement.seq,
            });
        }
        if merkle::root(&self.tx_ids()) != self.header.tx_root {
            return Err(BlockError::WrongTxRoot { height });
        }
        if cert.statement.digest != self.header.batch_digest() {
            return Err(BlockError::WrongDigest { height });
        }
        cert.votes_to_check(chain_id, validators)
            .map_err(|source| BlockError::Certificate { height, source })
    }

    /// The index of a transaction in this block.
    pub fn position(&self, id: &TxId) -> Option<usize> {
        self.txs.iter().position(|t| t.id() == *id)
    }
}

impl Encode for Block {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        codec::put_seq(out, &self.txs);
        codec::put_option(out, &self.certificate);
    }
}

impl Decode for Block {
    const MIN_LEN: usize = Header::MIN_LEN + 5;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Block {
            header: Header::decode(r)?,
            txs: r.seq("block transactions", BATCH_TXS_MAX)?,
            certificate: r.option()?,
        })
    }
}

/// [`Block::verify_certified`] for many blocks, with every vote of every certificate checked in
/// one batch (state transfer serves 64 blocks at a time: 192 signatures for n = 4).
pub fn verify_certified_all(
    blocks: &[Block],
    chain_id: &Hash,
    validators: &ValidatorSet,
) -> Result<(), BlockError> {
    let mut votes = Vec::new();
    let mut heights = Vec::new();
    for block in blocks {
        let v = block.certified_votes(chain_id, validators)?;
        heights.extend(std::iter::repeat_n(block.header.height, v.len()));
        votes.extend(v);
    }
    let items: Vec<crate::sig::Item<'_>> = votes
        .iter()
        .map(|v| (v.signed.as_slice(), &v.signature, Some(v.key)))
        .collect();
    let verdicts = crate::sig::verify_many(&items);
    match votes.iter().zip(heights).zip(verdicts).find(|(_, ok)| !ok) {
        Some(((v, height), _)) => Err(BlockError::Certificate {
            height,
            source: crate::cert::CertError::BadSignature(v.replica),
        }),
        None => Ok(()),
    }
}

/// A block as a replica stores it: with the outcome of each transaction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockRecord {
    pub block: Block,
    pub outcomes: Vec<Outcome>,
}

impl BlockRecord {
    /// Checks that the recorded outcomes are the ones the header commits to.
    pub fn verify_outcomes(&self) -> Result<(), BlockError> {
        let header = &self.block.header;
        if self.outcomes.len() != self.block.txs.len()
            || outcomes_root(&self.block.tx_ids(), &self.outcomes) != header.outcomes_root
        {
            return Err(BlockError::WrongOutcomesRoot {
                height: header.height,
            });
        }
        Ok(())
    }

    /// The merkle proof that transaction `index` had its recorded outcome, against the header's
    /// `outcomes_root`; verify with [`MerkleProof::verify`] on [`outcome_leaf`].
    pub fn outcome_proof(&self, index: usize) -> Option<merkle::MerkleProof> {
        let ids = self.block.tx_ids();
        let leaves: Vec<Hash> = ids
            .iter()
            .zip(&self.outcomes)
            .map(|(id, o)| outcome_leaf(&TxId(*id), o))
            .collect();
        merkle::prove(&leaves, index)
    }
}

impl Encode for BlockRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        self.block.encode(out);
        codec::put_seq(out, &self.outcomes);
    }
}

impl Decode for BlockRecord {
    const MIN_LEN: usize = Block::MIN_LEN + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockRecord {
            block: Block::decode(r)?,
            outcomes: r.seq("outcomes", BATCH_TXS_MAX)?,
        })
    }
}

/// The result of executing one decided batch on top of a parent.
#[derive(Clone, Debug)]
pub struct Executed {
    pub record: BlockRecord,
    pub changes: StateChanges,
}

/// Executes `batch`, decided at `seq` with `certificate`, on `ledger` whose state is `parent`'s.
/// `signature_ok` may carry verdicts computed earlier (they are a pure function of the batch).
pub fn execute(
    ledger: &mut Ledger,
    parent: &Header,
    batch: &Batch,
    certificate: Option<CommitCertificate>,
    signature_ok: Option<Vec<bool>>,
) -> Executed {
    let verdicts = signature_ok.unwrap_or_else(|| ledger.verify_signatures(&batch.txs));
    let (outcomes, changes) = ledger.apply(&batch.txs, &verdicts);
    let ids = batch.tx_ids();
    let header = Header {
        height: parent.height + 1,
        parent_hash: parent.hash(),
        tx_root: merkle::root(&ids),
        state_root: ledger.state_root(),
        outcomes_root: outcomes_root(&ids, &outcomes),
        view: batch.view,
        proposer: batch.proposer,
        timestamp_ms: batch.timestamp_ms,
        pow: None,
    };
    Executed {
        record: BlockRecord {
            block: Block {
                header,
                txs: batch.txs.clone(),
                certificate,
            },
            outcomes,
        },
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_blocks_round_trip() {
        let h = Header {
            height: 3,
            parent_hash: Hash([1; 32]),
            tx_root: Hash([2; 32]),
            state_root: Hash([3; 32]),
            outcomes_root: Hash([5; 32]),
            view: 4,
            proposer: 1,
            timestamp_ms: 99,
            pow: None,
        };
        assert_eq!(Header::from_bytes(&h.to_bytes()).unwrap(), h);
        assert_eq!(h.to_bytes().len(), Header::MIN_LEN);
        let sealed = Header {
            pow: Some(PowSeal {
                target: Hash([0x0f; 32]),
                nonce: 77,
            }),
            ..h
        };
        assert_eq!(Header::from_bytes(&sealed.to_bytes()).unwrap(), sealed);
        assert_eq!(sealed.to_bytes().len(), Header::MIN_LEN + PowSeal::MIN_LEN);
        assert_ne!(sealed.hash(), h.hash());
        let b = Block {
            header: h,
            txs: vec![Transaction::raw(vec![7; 10])],
            certificate: None,
        };
        let bytes = b.to_bytes();
        assert_eq!(Block::from_bytes(&bytes).unwrap(), b);
        for cut in 0..bytes.len() {
            assert!(Block::from_bytes(&bytes[..cut]).is_err());
        }
    }

    /// The header commits to every outcome: a proof verifies for the recorded one, and a record
    /// whose outcomes were changed no longer matches its header.
    #[test]
    fn outcomes_are_committed_by_the_header() {
        let net = crate::testkit::TestNet::new(4, 3);
        let mut ledger = net.genesis.ledger();
        let batch = Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 5,
            txs: vec![net.transfer(0, 1, 5, 0), net.transfer(1, 2, 5, 7)],
        };
        let mut record = net
            .certified_block(&mut ledger, &net.genesis.block().header, &batch)
            .record;
        record.verify_outcomes().unwrap();
        assert!(matches!(record.outcomes[1], Outcome::Rejected(_)));
        let root = record.block.header.outcomes_root;
        for (i, tx) in record.block.txs.iter().enumerate() {
            let proof = record.outcome_proof(i).unwrap();
            assert!(proof.verify(&outcome_leaf(&tx.id(), &record.outcomes[i]), &root));
            assert!(!proof.verify(&outcome_leaf(&tx.id(), &Outcome::Ordered), &root));
        }
        record.outcomes[1] = Outcome::Applied;
        assert!(record.verify_outcomes().is_err());
    }

    #[test]
    fn the_null_batch_is_fixed() {
        assert!(Batch::null().is_null());
        assert_eq!(Batch::null().digest(), Batch::null().digest());
        let mut b = Batch::null();
        b.timestamp_ms = 1;
        assert_ne!(b.digest(), Batch::null().digest());
    }
}
