//! Light-client verification of the whole chain of headers, one header at a time, without I/O.
//!
//! Each header must link to the one before it and carry a commit certificate of a quorum for its
//! own batch at its own height; header 0 must be the genesis block's. That proves every batch was
//! decided, in order. What execution produced (state roots) is vouched for by the latest stable
//! checkpoint, whose certificate covers the hash of a header and hence every header before it.

use quire_chain::block::Header;
use quire_chain::cert::{CertError, CheckpointCertificate, CheckpointStatement, CommitCertificate};
use quire_chain::{Genesis, Hash, ReplicaId};
use thiserror::Error;

/// What is wrong at one height.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainFault {
    #[error("header 0 is not the genesis block's header")]
    NotGenesis,
    #[error("expected this height, got a header for height {got}")]
    OutOfOrder { got: u64 },
    #[error("parent_hash is not the hash of the previous header")]
    BadLink,
    #[error("the header has no commit certificate")]
    NoCertificate,
    #[error("the certificate is for sequence number {seq}")]
    WrongSeq { seq: u64 },
    #[error("the certificate signs another batch than the header's")]
    WrongDigest,
    #[error("certificate: {0}")]
    BadCertificate(CertError),
    #[error("the stable checkpoint has no certificate")]
    NoCheckpointCertificate,
    #[error(
        "checkpoints fall on multiples of the genesis's checkpoint_interval ({interval}), not on {seq}"
    )]
    CheckpointOffInterval { seq: u64, interval: u64 },
    #[error("the checkpoint certificate is for another statement than the checkpoint's")]
    CheckpointMismatch,
    #[error("checkpoint certificate: {0}")]
    BadCheckpointCertificate(CertError),
    #[error("the checkpoint's block hash is not the hash of the downloaded header")]
    CheckpointHashMismatch,
    #[error("the checkpoint is beyond the downloaded chain (which ends at {chain_height})")]
    CheckpointBeyondChain { chain_height: u64 },
    #[error("only {have} distinct validators attest the last header; {need} are needed")]
    LastHeaderNotAttested { have: usize, need: usize },
    #[error("a replica sent no headers")]
    Empty,
}

/// The first problem found, where, and (if known) from which replica's copy of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}height {height}: {what}", source_text(.replica))]
pub struct ChainProblem {
    pub height: u64,
    pub what: ChainFault,
    pub replica: Option<ReplicaId>,
}

fn source_text(replica: &Option<ReplicaId>) -> String {
    replica
        .map(|r| format!("replica {r}'s chain, "))
        .unwrap_or_default()
}

impl ChainProblem {
    pub fn new(height: u64, what: ChainFault) -> ChainProblem {
        ChainProblem {
            height,
            what,
            replica: None,
        }
    }

    pub fn from_replica(mut self, replica: ReplicaId) -> ChainProblem {
        self.replica = Some(replica);
        self
    }
}

/// Walks the chain from genesis, checking each header as it arrives.
#[derive(Debug)]
pub struct ChainWalk<'g> {
    genesis: &'g Genesis,
    last: Option<Header>,
    /// The height whose header the checkpoint check will need, and that header once walked.
    remember: Option<u64>,
    remembered: Option<Header>,
}

impl<'g> ChainWalk<'g> {
    /// `remember` is the height whose header hash [`Self::hash_at_remembered`] returns later.
    pub fn new(genesis: &'g Genesis, remember: Option<u64>) -> ChainWalk<'g> {
        ChainWalk {
            genesis,
            last: None,
            remember,
            remembered: None,
        }
    }

    /// The height of the next header the walk expects.
    pub fn next_height(&self) -> u64 {
        self.last.map_or(0, |h| h.height + 1)
    }

    pub fn last(&self) -> Option<&Header> {
        self.last.as_ref()
    }

    pub fn hash_at_remembered(&self) -> Option<Hash> {
        self.remembered.map(|h| h.hash())
    }

    /// The header at the remembered height, once walked.
    pub fn remembered_header(&self) -> Option<Header> {
        self.remembered
    }

    /// Checks the next header and its certificate.
    pub fn step(
        &mut self,
        header: &Header,
        certificate: Option<&CommitCertificate>,
    ) -> Result<(), ChainProblem> {
        let height = self.next_height();
        let problem = |what| ChainProblem::new(height, what);
        if header.height != height {
            return Err(problem(ChainFault::OutOfOrder { got: header.height }));
        }
        match &self.last {
            None if *header != self.genesis.block().header => {
                return Err(problem(ChainFault::NotGenesis));
            }
            None => {}
            Some(parent) => self.check_certified(parent, header, certificate)?,
        }
        if self.remember == Some(height) {
            self.remembered = Some(*header);
        }
        self.last = Some(*header);
        Ok(())
    }

    fn check_certified(
        &self,
        parent: &Header,
        header: &Header,
        certificate: Option<&CommitCertificate>,
    ) -> Result<(), ChainProblem> {
        let problem = |what| ChainProblem::new(header.height, what);
        if header.parent_hash != parent.hash() {
            return Err(problem(ChainFault::BadLink));
        }
        let cert = certificate.ok_or_else(|| problem(ChainFault::NoCertificate))?;
        if cert.statement.seq != header.height {
            return Err(problem(ChainFault::WrongSeq {
                seq: cert.statement.seq,
            }));
        }
        if cert.statement.digest != header.batch_digest() {
            return Err(problem(ChainFault::WrongDigest));
        }
        cert.verify(&self.genesis.chain_id(), &self.genesis.validators)
            .map_err(|e| problem(ChainFault::BadCertificate(e)))
    }
}

/// Checks the latest stable checkpoint against the walked chain. Returns the checkpoint's height,
/// or `None` when the network has no checkpoint beyond genesis yet. Checkpoints fall on multiples
/// of K, the genesis's `checkpoint_interval` (docs/chain-format.md §10): nothing but the genesis
/// is needed to check one.
pub fn verify_checkpoint(
    genesis: &Genesis,
    seq: u64,
    block_hash: &Hash,
    certificate: Option<&CheckpointCertificate>,
    walk: &ChainWalk<'_>,
) -> Result<Option<u64>, ChainProblem> {
    let problem = |what| ChainProblem::new(seq, what);
    let Some(cert) = certificate else {
        return if seq == 0 {
            Ok(None)
        } else {
            Err(problem(ChainFault::NoCheckpointCertificate))
        };
    };
    let interval = genesis.protocol.checkpoint_interval;
    if interval == 0 || !seq.is_multiple_of(interval) {
        return Err(problem(ChainFault::CheckpointOffInterval { seq, interval }));
    }
    let statement = CheckpointStatement {
        seq,
        block_hash: *block_hash,
    };
    if cert.statement != statement {
        return Err(problem(ChainFault::CheckpointMismatch));
    }
    cert.verify(&genesis.chain_id(), &genesis.validators)
        .map_err(|e| problem(ChainFault::BadCheckpointCertificate(e)))?;
    if walk.remember != Some(seq) {
        // The walk was told another height to remember: a caller bug, reported as a mismatch
        // rather than a panic.
        return Err(problem(ChainFault::CheckpointHashMismatch));
    }
    match walk.hash_at_remembered() {
        Some(h) if h == *block_hash => Ok(Some(seq)),
        Some(_) => Err(problem(ChainFault::CheckpointHashMismatch)),
        None => Err(problem(ChainFault::CheckpointBeyondChain {
            chain_height: walk.next_height().saturating_sub(1),
        })),
    }
}

#[cfg(test)]
#[path = "chain_walk_tests.rs"]
mod tests;
