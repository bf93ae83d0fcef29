//! When a proof-of-work block is valid, and how a miner builds one.
//!
//! A block is valid when (docs/pow.md, docs/chain-format.md §7.4):
//! - its header carries a seal, no certificate, `view = 0`, and a `proposer` (the miner) that is
//!   a validator;
//! - its target is not easier than the genesis's limit, and its header hash is at or below it;
//! - its height is its parent's plus one, its target is the one the retarget rule gives after
//!   its parent, and its timestamp is after its parent's and at most `timestamp_future_ms`
//!   ahead of the receiver's clock (a block from the future waits; it is not invalid forever);
//! - its transactions fit the genesis's limits, match `tx_root`, and are **all valid** on its
//!   parent's state (every transfer's signature verifies strictly and it applies; unlike PBFT, a
//!   miner has no business including what it cannot execute), and executing them gives the
//!   header's `state_root` and `outcomes_root`.

use std::collections::HashMap;

use thiserror::Error;

use super::params::PowParams;
use super::undo::Undo;
use super::work::{meets_target, next_target, to_number};
use crate::block::{Block, BlockRecord, Executed, Header, PowSeal, outcomes_root};
use crate::genesis::{Genesis, Protocol};
use crate::hash::Hash;
use crate::keys::Signature;
use crate::ledger::Ledger;
use crate::merkle;
use crate::tx::{Outcome, Rejection, Transaction, TxId};

/// Why a block is refused. All are the sender's fault except `FutureTimestamp` (maybe a clock).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BlockReject {
    #[error("block {hash}: no proof-of-work seal")]
    NoSeal { hash: Hash },
    #[error("block {hash}: a proof-of-work block carries no commit certificate")]
    HasCertificate { hash: Hash },
    #[error("block {hash}: view must be 0, got {view}")]
    NonZeroView { hash: Hash, view: u64 },
    #[error("block {hash}: miner {proposer} is not a validator")]
    UnknownMiner { hash: Hash, proposer: u32 },
    #[error("block {hash}: target {target} is easier than the limit")]
    TargetAboveLimit { hash: Hash, target: Hash },
    #[error("block {hash}: the hash is above its target {target}")]
    InsufficientWork { hash: Hash, target: Hash },
    #[error("block {hash}: target {got}, the retarget rule gives {expected}")]
    WrongTarget {
        hash: Hash,
        expected: Hash,
        got: Hash,
    },
    #[error("block {hash}: height {got}, its parent is at {parent}")]
    WrongHeight { hash: Hash, got: u64, parent: u64 },
    #[error("block {hash}: timestamp {got} is not after its parent's {parent}")]
    StaleTimestamp { hash: Hash, got: u64, parent: u64 },
    #[error("block {hash}: timestamp {got} is more than the allowed drift ahead of {now}")]
    FutureTimestamp { hash: Hash, got: u64, now: u64 },
    #[error("block {hash}: {count} transactions, the genesis allows {max}")]
    TooManyTransactions { hash: Hash, count: usize, max: u32 },
    #[error("block {hash}: raw payloads are not allowed on this network")]
    RawPayload { hash: Hash },
    #[error("block {hash}: transactions do not match tx_root")]
    WrongTxRoot { hash: Hash },
    #[error("block {hash}: transaction {index} is invalid on its parent's state: {reason}")]
    InvalidTransaction {
        hash: Hash,
        index: usize,
        reason: Rejection,
    },
    #[error("block {hash}: executing it gives another state root or outcomes root")]
    WrongExecution { hash: Hash },
    #[error("block {hash} at height {height} forks below the undo floor {floor}")]
    BelowUndoFloor { hash: Hash, height: u64, floor: u64 },
}

impl BlockReject {
    /// A short name for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            BlockReject::NoSeal { .. } => "no_seal",
            BlockReject::HasCertificate { .. } => "has_certificate",
            BlockReject::NonZeroView { .. } => "nonzero_view",
            BlockReject::UnknownMiner { .. } => "unknown_miner",
            BlockReject::TargetAboveLimit { .. } => "target_above_limit",
            BlockReject::InsufficientWork { .. } => "insufficient_work",
            BlockReject::WrongTarget { .. } => "wrong_target",
            BlockReject::WrongHeight { .. } => "wrong_height",
            BlockReject::StaleTimestamp { .. } => "stale_timestamp",
            BlockReject::FutureTimestamp { .. } => "future_timestamp",
            BlockReject::TooManyTransactions { .. } => "too_many_transactions",
            BlockReject::RawPayload { .. } => "raw_payload",
            BlockReject::WrongTxRoot { .. } => "wrong_tx_root",
            BlockReject::InvalidTransaction { .. } => "invalid_transaction",
            BlockReject::WrongExecution { .. } => "wrong_execution",
            BlockReject::BelowUndoFloor { .. } => "below_undo_floor",
        }
    }
}

/// Strict signature verdicts by (transaction id, signature): a verdict is a pure function of
/// the two, and a transfer is checked when admitted, when a block holding it arrives, and again
/// on every branch that holds it.
#[derive(Default, Clone)]
pub struct VerdictCache {
    verdicts: HashMap<(TxId, [u8; 64]), bool>,
}

const VERDICTS_MAX: usize = 200_000;

impl VerdictCache {
    pub fn verify(&mut self, tx: &Transaction, chain_id: &Hash) -> bool {
        let Some(t) = tx.as_transfer() else {
            return true;
        };
        let key = (tx.id(), t.signature.0);
        if let Some(v) = self.verdicts.get(&key) {
            return *v;
        }
        let ok = tx.verify_signature(chain_id);
        if self.verdicts.len() >= VERDICTS_MAX {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, ok);
        ok
    }

    /// Records a verdict made elsewhere (the RPC layer's admission check).
    pub fn record(&mut self, id: TxId, signature: &Signature, ok: bool) {
        if self.verdicts.len() >= VERDICTS_MAX {
            self.verdicts.clear();
        }
        self.verdicts.insert((id, signature.0), ok);
    }
}

/// The network's rules, from the genesis.
#[derive(Clone, Debug)]
pub struct PowRules {
    pub chain_id: Hash,
    pub protocol: Protocol,
    pub params: PowParams,
    pub validators: usize,
}

impl PowRules {
    /// `None` for a PBFT genesis.
    pub fn new(genesis: &Genesis) -> Option<PowRules> {
        Some(PowRules {
            chain_id: genesis.chain_id(),
            protocol: genesis.protocol,
            params: genesis.pow?,
            validators: genesis.validators.n(),
        })
    }

    /// What can be checked of a block alone (before its parent is known): cheap, so it comes
    /// first; an orphan must pass it to be kept.
    pub fn check_alone(
        &self,
        block: &Block,
        hash: &Hash,
        now_ms: u64,
    ) -> Result<PowSeal, BlockReject> {
        let header = &block.header;
        let hash = *hash;
        let seal = header.pow.ok_or(BlockReject::NoSeal { hash })?;
        if block.certificate.is_some() {
            return Err(BlockReject::HasCertificate { hash });
        }
        if header.view != 0 {
            return Err(BlockReject::NonZeroView {
                hash,
                view: header.view,
            });
        }
        if header.proposer as usize >= self.validators {
            return Err(BlockReject::UnknownMiner {
                hash,
                proposer: header.proposer,
            });
        }
        if to_number(&seal.target) > to_number(&self.params.target_limit) {
            return Err(BlockReject::TargetAboveLimit {
                hash,
                target: seal.target,
            });
        }
        if !meets_target(&hash, &seal.target) {
            return Err(BlockReject::InsufficientWork {
                hash,
                target: seal.target,
            });
        }
        if header.timestamp_ms > now_ms.saturating_add(self.params.timestamp_future_ms) {
            return Err(BlockReject::FutureTimestamp {
                hash,
                got: header.timestamp_ms,
                now: now_ms,
            });
        }
        if block.txs.len() > self.protocol.batch_txs_max as usize {
            return Err(BlockReject::TooManyTransactions {
                hash,
                count: block.txs.len(),
                max: self.protocol.batch_txs_max,
            });
        }
        if !self.protocol.raw_payloads && block.txs.iter().any(|t| t.as_transfer().is_none()) {
            return Err(BlockReject::RawPayload { hash });
        }
        if merkle::root(&block.tx_ids()) != header.tx_root {
            return Err(BlockReject::WrongTxRoot { hash });
        }
        Ok(seal)
    }

    /// The checks against the parent's header (and the grandparent's, for the retarget).
    pub fn check_link(
        &self,
        header: &Header,
        hash: &Hash,
        parent: &Header,
        grandparent: Option<&Header>,
    ) -> Result<(), BlockReject> {
        let hash = *hash;
        if header.height != parent.height + 1 {
            return Err(BlockReject::WrongHeight {
                hash,
                got: header.height,
                parent: parent.height,
            });
        }
        let expected = next_target(&self.params, parent, grandparent);
        let got = header.pow.map(|s| s.target).unwrap_or_default();
        if got != expected {
            return Err(BlockReject::WrongTarget {
                hash,
                expected,
                got,
            });
        }
        if header.timestamp_ms <= parent.timestamp_ms {
            return Err(BlockReject::StaleTimestamp {
                hash,
                got: header.timestamp_ms,
                parent: parent.timestamp_ms,
            });
        }
        Ok(())
    }

    /// Executes `block` on `ledger` (its parent's state) and checks the result against the
    /// header. On success `ledger` holds the block's state and the undo record restores the
    /// parent's; on failure `ledger` is unchanged.
    pub fn execute(
        &self,
        ledger: &mut Ledger,
        block: &Block,
        verdicts: &mut VerdictCache,
    ) -> Result<(Executed, Undo), BlockReject> {
        let hash = block.header.hash();
        let ok: Vec<bool> = block
            .txs
            .iter()
            .map(|t| verdicts.verify(t, &self.chain_id))
            .collect();
        let undo = Undo::before(ledger, &block.txs);
        let (outcomes, changes) = ledger.apply(&block.txs, &ok);
        let failed = outcomes.iter().enumerate().find_map(|(index, o)| match o {
            Outcome::Rejected(reason) => Some((index, *reason)),
            _ => None,
        });
        let ids = block.tx_ids();
        let result = match failed {
            Some((index, reason)) => Err(BlockReject::InvalidTransaction {
                hash,
                index,
                reason,
            }),
            None if ledger.state_root() != block.header.state_root
                || outcomes_root(&ids, &outcomes) != block.header.outcomes_root =>
            {
                Err(BlockReject::WrongExecution { hash })
            }
            None => Ok(()),
        };
        match result {
            Ok(()) => Ok((
                Executed {
                    record: BlockRecord {
                        block: block.clone(),
                        outcomes,
                    },
                    changes,
                },
                undo,
            )),
            Err(e) => {
                ledger.restore(&undo.accounts);
                Err(e)
            }
        }
    }

    /// A block for a miner to seal: on `parent` (whose state `ledger` holds), with as many of
    /// `candidates` as apply in order, up to the genesis's limit, stamped `timestamp_ms` (moved
    /// past the parent's if the clock is behind it). Its nonce is 0; the miner grinds it.
    #[allow(clippy::too_many_arguments)] // the block's fields, each one needed
    pub fn template(
        &self,
        ledger: &mut Ledger,
        parent: &Header,
        grandparent: Option<&Header>,
        candidates: &[Transaction],
        miner: u32,
        timestamp_ms: u64,
        verdicts: &mut VerdictCache,
    ) -> Block {
        let mut txs = Vec::new();
        let mut trial = None;
        for tx in candidates {
            let trial = trial.get_or_insert_with(|| ledger.clone());
            if txs.len() >= self.protocol.batch_txs_max as usize {
                break;
            }
            if tx.as_transfer().is_none() && !self.protocol.raw_payloads {
                continue;
            }
            let ok = verdicts.verify(tx, &self.chain_id);
            let (outcomes, _) = trial.apply(std::slice::from_ref(tx), &[ok]);
            if !matches!(outcomes.first(), Some(Outcome::Rejected(_))) {
                txs.push(tx.clone());
            }
        }
        let ids: Vec<Hash> = txs.iter().map(|t| t.id().0).collect();
        let outcomes: Vec<Outcome> = txs
            .iter()
            .map(|t| match t {
                Transaction::Transfer(_) => Outcome::Applied,
                Transaction::Raw(_) => Outcome::Ordered,
            })
            .collect();
        let header = Header {
            height: parent.height + 1,
            parent_hash: parent.hash(),
            tx_root: merkle::root(&ids),
            state_root: match trial.as_mut() {
                Some(t) => t.state_root(),
                None => ledger.state_root(),
            },
            outcomes_root: outcomes_root(&ids, &outcomes),
            view: 0,
            proposer: miner,
            timestamp_ms: timestamp_ms.max(parent.timestamp_ms + 1),
            pow: Some(PowSeal {
                target: next_target(&self.params, parent, grandparent),
                nonce: 0,
            }),
        };
        Block {
            header,
            txs,
            certificate: None,
        }
    }
}

/// Tries nonces from `start` for at most `tries` hashes; the sealed header if one meets its
/// target. Real sha256 over the real header: the simulator's easy targets make it quick, not
/// fake.
pub fn grind(header: &mut Header, start: u64, tries: u64) -> bool {
    let Some(mut seal) = header.pow else {
        return false;
    };
    for i in 0..tries {
        seal.nonce = start.wrapping_add(i);
        header.pow = Some(seal);
        if meets_target(&header.hash(), &seal.target) {
            return true;
        }
    }
    false
}
