//! Proof of work on the same transactions, ledger and store as PBFT: the rules (targets, work,
//! the per-block retarget, when a block is valid), the block tree and its fork choice (most
//! cumulative work, ties to the first seen, never height), the orphan pool, undo records, the
//! chain that reorganises with them, and the mempool a miner draws from. All of it is pure and
//! deterministic, so the node and the simulator run the same code. docs/pow.md describes the
//! mode; docs/chain-format.md the bytes.

pub mod chain;
pub mod mempool;
pub mod orphans;
pub mod params;
pub mod rules;
pub mod tree;
pub mod undo;
pub mod work;

pub use chain::{Change, Limits, PowChain, PowError, PowStats, Received};
pub use mempool::Mempool;
pub use params::{PowParams, Retarget};
pub use rules::{BlockReject, PowRules, VerdictCache, grind};
pub use undo::Undo;
pub use work::{Work, meets_target, next_target, target_for_hashes, work};

#[cfg(test)]
mod tests;
