//! The safety checker, run after every step of the simulation.
//!
//! - Agreement: no two honest replicas execute different blocks at the same height.
//! - Validity: every executed block links to the replica's previous one and carries a valid
//!   commit certificate; re-executing the agreed chain independently gives the same state root;
//!   no transfer with an invalid signature is applied; money is conserved.

use std::collections::BTreeMap;

use quire_chain::block::Executed;
use quire_chain::tx::Outcome;
use quire_chain::{Genesis, Hash, Header, Ledger, ReplicaId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: u64,
        first: (ReplicaId, Hash),
        second: (ReplicaId, Hash),
    },
    BadLink {
        replica: ReplicaId,
        height: u64,
    },
    BadCertificate {
        replica: ReplicaId,
        height: u64,
        reason: String,
    },
    WrongState {
        replica: ReplicaId,
        height: u64,
    },
    InvalidTransactionApplied {
        height: u64,
        index: usize,
    },
    MoneyNotConserved {
        height: u64,
        total: u128,
        expected: u128,
    },
    NoProgress {
        replica: ReplicaId,
        height: u64,
        needed: u64,
    },
    /// The store refused a replica's write (a bug in the write it was given: the memory store
    /// fails only on a block that does not extend the head).
    StorageFailed {
        replica: ReplicaId,
        reason: String,
    },
    /// Frames left a replica whose write had failed (persist before send broken).
    SentWithoutWrite {
        replica: ReplicaId,
        frames: usize,
    },
    /// An honest replica accused another honest one.
    FalseBlame {
        accuser: ReplicaId,
        culprit: ReplicaId,
        kind: &'static str,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Agreement {
                height,
                first,
                second,
            } => write!(
                f,
                "agreement violated at height {height}: replica {} executed {}, replica {} executed {}",
                first.0,
                first.1.short(),
                second.0,
                second.1.short()
            ),
            Violation::SentWithoutWrite { replica, frames } => write!(
                f,
                "replica {replica}: {frames} frames left although the step's write failed"
            ),
            Violation::StorageFailed { replica, reason } => {
                write!(f, "replica {replica}: the store refused a write: {reason}")
            }
            Violation::BadLink { replica, height } => {
                write!(
                    f,
                    "replica {replica}: block {height} does not link to its parent"
                )
            }
            Violation::BadCertificate {
                replica,
                height,
                reason,
            } => write!(
                f,
                "replica {replica}: block {height} is not certified: {reason}"
            ),
            Violation::WrongState { replica, height } => write!(
                f,
                "replica {replica}: block {height}'s state root differs from independent re-execution"
            ),
            Violation::InvalidTransactionApplied { height, index } => write!(
                f,
                "block {height}: transaction {index} was applied but its signature is invalid"
            ),
            Violation::MoneyNotConserved {
                height,
                total,
                expected,
            } => write!(
                f,
                "block {height}: total supply {total}, expected {expected}"
            ),
            Violation::FalseBlame {
                accuser,
                culprit,
                kind,
            } => write!(
                f,
                "honest replica {accuser} blamed honest replica {culprit} for {kind}"
            ),
            Violation::NoProgress {
                replica,
                height,
                needed,
            } => write!(
                f,
                "no progress after the network healed: replica {replica} is at height {height}, needed {needed}"
            ),
        }
    }
}

pub struct Checker {
    genesis: Genesis,
    /// The agreed chain: height → (first honest replica to execute it, header).
    canonical: Vec<(ReplicaId, Header)>,
    /// Independent re-execution of the agreed chain.
    reference: Ledger,
    reference_head: Header,
    supply: u128,
    /// Each honest replica's last executed header.
    heads: BTreeMap<ReplicaId, Header>,
}

impl Checker {
    pub fn new(genesis: &Genesis) -> Checker {
        let head = genesis.block().header;
        Checker {
            genesis: genesis.clone(),
            canonical: vec![(0, head)],
            reference: genesis.ledger(),
            reference_head: head,
            supply: genesis.total_supply(),
            heads: BTreeMap::new(),
        }
    }

    pub fn height(&self) -> u64 {
        self.canonical.len() as u64 - 1
    }

    /// The agreed ledger so far (what clients see).
    pub fn ledger(&self) -> &Ledger {
        &self.reference
    }

    pub fn head_of(&self, replica: ReplicaId) -> u64 {
        self.heads.get(&replica).map_or(0, |h| h.height)
    }

    /// A replica restarted from its store; its head is what it persisted.
    pub fn restarted(&mut self, replica: ReplicaId, head: Header) {
        self.heads.insert(replica, head);
    }

    pub fn on_commit(&mut self, replica: ReplicaId, executed: &Executed) -> Result<(), Violation> {
        let block = &executed.record.block;
        let header = block.header;
        let height = header.height;
        let previous = self
            .heads
            .get(&replica)
            .copied()
            .unwrap_or(self.canonical[0].1);
        if header.parent_hash != previous.hash() || height != previous.height + 1 {
            return Err(Violation::BadLink { replica, height });
        }
        self.heads.insert(replica, header);
        if let Some((first, agreed)) = self.canonical.get(height as usize) {
            if agreed.hash() != header.hash() {
                return Err(Violation::Agreement {
                    height,
                    first: (*first, agreed.hash()),
                    second: (replica, header.hash()),
                });
            }
            return Ok(());
        }
        // First honest replica to reach this height: check the block thoroughly, once.
        block
            .verify_certified(&self.genesis.chain_id(), &self.genesis.validators)
            .map_err(|e| Violation::BadCertificate {
                replica,
                height,
                reason: e.to_string(),
            })?;
        let reexecuted = quire_chain::block::execute(
            &mut self.reference,
            &self.reference_head,
            &block.batch(),
            block.certificate.clone(),
            None,
        );
        if reexecuted.record.block.header != header {
            return Err(Violation::WrongState { replica, height });
        }
        for (index, (tx, outcome)) in block.txs.iter().zip(&executed.record.outcomes).enumerate() {
            if *outcome != Outcome::Applied {
                continue;
            }
            if !tx.verify_signature(&self.genesis.chain_id()) {
                return Err(Violation::InvalidTransactionApplied { height, index });
            }
        }
        let total = self.reference.total_supply();
        if total != self.supply {
            return Err(Violation::MoneyNotConserved {
                height,
                total,
                expected: self.supply,
            });
        }
        self.reference_head = header;
        self.canonical.push((replica, header));
        Ok(())
    }
}
