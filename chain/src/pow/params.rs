//! The proof-of-work rules of a network, from its genesis (`[pow]`), covered by the chain id.
//!
//! ```toml
//! [protocol]
//! consensus = "pow"
//! [pow]                       # optional under consensus = "pow"; these are the defaults
//! target_interval_ms = 1000   # T: the block interval the retarget aims at
//! initial_target = "…64 hex digits…"   # the target of block 1 (and 2)
//! target_limit = "…64 hex digits…"     # the easiest target any block may have
//! retarget = "per-block"      # or "fixed": every block has the initial target
//! retarget_damping = 16       # N: how many intervals the per-block retarget averages over
//! retarget_clamp = 4          # an observed interval counts as at most clamp · T
//! confirmations = 6           # k: a transaction is final k blocks deep
//! timestamp_future_ms = 5000  # a block stamped further ahead of the receiver's clock waits
//! ```

use num_bigint::BigUint;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::Hash;

/// How targets follow one another.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Retarget {
    /// Every block retargets toward the target interval (see [`super::work::next_target`]).
    PerBlock,
    /// Fixed difficulty: every block has the initial target (the setting of the selfish-mining
    /// analysis).
    Fixed,
}

impl Retarget {
    fn code(&self) -> u8 {
        match self {
            Retarget::PerBlock => 0,
            Retarget::Fixed => 1,
        }
    }
}

/// The hash rate the default initial target assumes: four miners at the default rate.
pub const DEFAULT_NETWORK_HASHES_PER_S: u64 = 4 * DEFAULT_HASHES_PER_S;
/// A miner's default hash rate (a node setting, not a rule): four of them use well under a
/// core (one header hash costs about 0.3 µs).
pub const DEFAULT_HASHES_PER_S: u64 = 20_000;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PowParams {
    pub target_interval_ms: u64,
    #[serde(with = "hex_hash")]
    pub initial_target: Hash,
    #[serde(with = "hex_hash")]
    pub target_limit: Hash,
    pub retarget: Retarget,
    pub retarget_damping: u32,
    pub retarget_clamp: u32,
    pub confirmations: u32,
    pub timestamp_future_ms: u64,
}

impl Default for PowParams {
    fn default() -> Self {
        PowParams::for_hash_rate(DEFAULT_NETWORK_HASHES_PER_S, 1000)
    }
}

impl PowParams {
    /// Defaults whose initial target gives one block per `interval_ms` at `hashes_per_s` in
    /// total; the limit is 256 times easier.
    pub fn for_hash_rate(hashes_per_s: u64, interval_ms: u64) -> PowParams {
        let hashes_per_block = (hashes_per_s as u128 * interval_ms as u128 / 1000).max(1);
        let initial = super::work::target_for_hashes(hashes_per_block);
        let limit = super::work::target_for_hashes((hashes_per_block / 256).max(1));
        PowParams {
            target_interval_ms: interval_ms,
            initial_target: initial,
            target_limit: limit,
            retarget: Retarget::PerBlock,
            retarget_damping: 16,
            retarget_clamp: 4,
            confirmations: 6,
            timestamp_future_ms: 5000,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.target_interval_ms == 0 || self.target_interval_ms > 3_600_000 {
            return Err(format!(
                "target_interval_ms must be 1..=3600000, got {}",
                self.target_interval_ms
            ));
        }
        if self.initial_target == Hash::ZERO {
            return Err("initial_target must not be zero".into());
        }
        if BigUint::from_bytes_be(&self.initial_target.0)
            > BigUint::from_bytes_be(&self.target_limit.0)
        {
            return Err("initial_target must not be easier than target_limit".into());
        }
        if self.retarget_damping == 0 || self.retarget_damping > 1024 {
            return Err(format!(
                "retarget_damping must be 1..=1024, got {}",
                self.retarget_damping
            ));
        }
        if self.retarget_clamp < 1 || self.retarget_clamp > 64 {
            return Err(format!(
                "retarget_clamp must be 1..=64, got {}",
                self.retarget_clamp
            ));
        }
        if self.confirmations == 0 || self.confirmations > 1000 {
            return Err(format!(
                "confirmations must be 1..=1000, got {}",
                self.confirmations
            ));
        }
        if self.timestamp_future_ms == 0 {
            return Err("timestamp_future_ms must be positive".into());
        }
        Ok(())
    }

    /// The bytes the chain id covers after the `[protocol]` bytes (docs/chain-format.md §10).
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.target_interval_ms);
        out.extend_from_slice(&self.initial_target.0);
        out.extend_from_slice(&self.target_limit.0);
        out.push(self.retarget.code());
        codec::put_u32(out, self.retarget_damping);
        codec::put_u32(out, self.retarget_clamp);
        codec::put_u32(out, self.confirmations);
        codec::put_u64(out, self.timestamp_future_ms);
    }
}

/// A hash as 64 hex digits in TOML.
mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::hash::Hash;

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}
