//! What can go wrong for a client, grouped by who is at fault: one call to one replica
//! ([`CallError`]: the network or that replica), evidence that does not check out
//! ([`VerifyError`]: a faulty or lagging replica), and a whole operation ([`ClientError`]).

use std::fmt;
use std::net::SocketAddr;

use quire_chain::block::BlockError;
use quire_chain::{Address, DecodeError, ReplicaId, TxId};
use quire_wire::rpc::Refusal;
use thiserror::Error;

/// One request to one replica failed.
#[derive(Debug, Clone, Error)]
pub enum CallError {
    #[error("replica {replica} ({addr}) did not answer within {timeout_ms} ms")]
    Timeout {
        replica: ReplicaId,
        addr: SocketAddr,
        timeout_ms: u64,
    },
    #[error("replica {replica} ({addr}): cannot connect: {reason}")]
    Connect {
        replica: ReplicaId,
        addr: SocketAddr,
        reason: String,
    },
    #[error("replica {replica} ({addr}): connection lost: {reason}")]
    Stream {
        replica: ReplicaId,
        addr: SocketAddr,
        reason: String,
    },
    #[error("replica {replica} sent an undecodable response: {source}")]
    Decode {
        replica: ReplicaId,
        source: DecodeError,
    },
    #[error("replica {replica} could not serve the request: {message}")]
    Remote { replica: ReplicaId, message: String },
    #[error("replica {replica} answered a {asked} request with a {got} response")]
    Unexpected {
        replica: ReplicaId,
        asked: &'static str,
        got: &'static str,
    },
    #[error("replica {replica} is not in the network file")]
    UnknownReplica { replica: ReplicaId },
}

/// Evidence from a replica that does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("the replica does not claim it is committed")]
    NotCommitted,
    #[error("block {height}: {source}")]
    BadBlock { height: u64, source: BlockError },
    #[error("block 0 is not this network's genesis block")]
    NotGenesis,
    #[error("the merkle proof does not place transaction {tx} in block {height}")]
    BadMerkleProof { tx: TxId, height: u64 },
    #[error("the outcome proof does not match block {height}'s outcomes root for transaction {tx}")]
    BadOutcomeProof { tx: TxId, height: u64 },
    #[error("the proof of account {address} does not match the state root of block {height}")]
    BadAccountProof { address: Address, height: u64 },
    #[error("only {have} distinct validators attest block {height}; {need} are needed")]
    TooFewAttestations {
        height: u64,
        have: usize,
        need: usize,
    },
    #[error(
        "{against} distinct validators attest another block at height {height}: the header is not the chain's"
    )]
    Contradicted { height: u64, against: usize },
    #[error("asked for block {asked}, got block {got}")]
    WrongHeight { asked: u64, got: u64 },
    #[error("the replica has no block at the asked height")]
    NoBlock,
}

impl VerifyError {
    /// Too few attestations may only mean that other replicas are behind: worth asking again.
    pub fn is_missing_attestations(&self) -> bool {
        matches!(self, VerifyError::TooFewAttestations { .. })
    }
}

/// Why a replica's answer was set aside.
#[derive(Debug, Clone, Error)]
pub enum Fault {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("replica {replica}: {source}")]
    Verify {
        replica: ReplicaId,
        source: VerifyError,
    },
}

impl CallError {
    pub fn replica(&self) -> ReplicaId {
        match self {
            CallError::Timeout { replica, .. }
            | CallError::Connect { replica, .. }
            | CallError::Stream { replica, .. }
            | CallError::Decode { replica, .. }
            | CallError::Remote { replica, .. }
            | CallError::Unexpected { replica, .. }
            | CallError::UnknownReplica { replica } => *replica,
        }
    }
}

impl Fault {
    /// The replica whose answer was set aside.
    pub fn replica(&self) -> ReplicaId {
        match self {
            Fault::Call(e) => e.replica(),
            Fault::Verify { replica, .. } => *replica,
        }
    }

    /// `unreachable` (no usable answer: a network fault or a replica that is down or busy) or
    /// `bad_evidence` (an answer that does not prove what it claims: a faulty or lagging replica).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Call(CallError::Decode { .. } | CallError::Unexpected { .. }) => "bad_answer",
            Fault::Call(_) => "unreachable",
            Fault::Verify { .. } => "bad_evidence",
        }
    }
}

/// A list of faults, shown as `first; second; …`.
#[derive(Debug, Clone, Default)]
pub struct Faults(pub Vec<Fault>);

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no replica gave an answer");
        }
        for (i, fault) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{fault}")?;
        }
        Ok(())
    }
}

/// One replica's refusal of a submitted transaction.
#[derive(Debug, Clone)]
pub struct Refused {
    pub replica: ReplicaId,
    pub refusal: Refusal,
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot open a QUIC endpoint: {0}")]
    Endpoint(String),
    #[error("no replica answered: {0}")]
    Unreachable(Faults),
    #[error("could not verify {what}: {faults}")]
    Unverified { what: String, faults: Faults },
    #[error("every replica refused transaction {tx}: {}", refusals_text(.refusals))]
    Refused { tx: TxId, refusals: Vec<Refused> },
    #[error(
        "transaction {tx} was not committed within {waited_ms} ms ({})",
        held_text(.held_by, *.resubmissions)
    )]
    NotCommitted {
        tx: TxId,
        waited_ms: u64,
        /// Replicas that last said they hold it.
        held_by: Vec<ReplicaId>,
        /// How many times it was submitted again.
        resubmissions: usize,
    },
    #[error("the chain does not verify: {0}")]
    Chain(#[from] crate::chain_walk::ChainProblem),
}

fn held_text(held_by: &[ReplicaId], resubmissions: usize) -> String {
    let held = if held_by.is_empty() {
        "no replica that answered holds it".to_string()
    } else {
        let ids: Vec<String> = held_by.iter().map(|r| r.to_string()).collect();
        format!("held by replicas {}", ids.join(", "))
    };
    format!("{held}; submitted again {resubmissions} times")
}

fn refusals_text(refusals: &[Refused]) -> String {
    refusals
        .iter()
        .map(|r| format!("replica {}: {}", r.replica, r.refusal))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClientError {
    /// The replicas' answers that were set aside on the way to this error, each naming its
    /// replica.
    pub fn faults(&self) -> &[Fault] {
        match self {
            ClientError::Unreachable(f) | ClientError::Unverified { faults: f, .. } => &f.0,
            _ => &[],
        }
    }

    /// Builds the error for an operation where every replica failed or lied.
    pub(crate) fn from_faults(what: impl Into<String>, faults: Vec<Fault>) -> ClientError {
        let only_calls = faults.iter().all(|f| matches!(f, Fault::Call(_)));
        if only_calls {
            ClientError::Unreachable(Faults(faults))
        } else {
            ClientError::Unverified {
                what: what.into(),
                faults: Faults(faults),
            }
        }
    }
}
