//! Targets and work: a header meets its target when its hash, read as a 256-bit big-endian
//! number, is at or below the target; a block's work is `2^256 / (target + 1)`, the expected
//! number of hashes it took; and the per-block retarget that keeps the block interval.

use num_bigint::BigUint;

use super::params::{PowParams, Retarget};
use crate::block::Header;
use crate::hash::Hash;

/// Cumulative work: an unbounded integer, compared numerically.
pub type Work = BigUint;

fn two_to_256() -> BigUint {
    BigUint::from(1u8) << 256
}

fn to_hash(n: &BigUint) -> Hash {
    let max = two_to_256() - 1u8;
    let n = if *n > max { max } else { n.clone() };
    let bytes = n.to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    Hash(out)
}

pub fn to_number(target: &Hash) -> BigUint {
    BigUint::from_bytes_be(&target.0)
}

/// Whether `hash` is at or below `target` (big-endian byte order is numeric order).
pub fn meets_target(hash: &Hash, target: &Hash) -> bool {
    hash.0 <= target.0
}

/// The work a block of this target represents: `2^256 / (target + 1)`.
pub fn work(target: &Hash) -> Work {
    two_to_256() / (to_number(target) + 1u8)
}

/// The target at which one block takes `hashes` hashes on average: `2^256 / hashes − 1`.
pub fn target_for_hashes(hashes: u128) -> Hash {
    let hashes = BigUint::from(hashes.max(1));
    to_hash(&(two_to_256() / hashes - 1u8))
}

/// The target a child of `parent` must carry; `grandparent` is `parent`'s parent (`None` when
/// `parent` is the genesis).
///
/// Per block: with `T` the target interval, `N` the damping and `dt` the parent's own interval
/// (`parent.timestamp − grandparent.timestamp`, clamped to `1..=clamp·T`),
/// `next = parent_target · (T·(N−1) + dt) / (T·N)`, capped at the limit and at least 1. So a
/// block interval of T keeps the target, a faster one makes it harder and a slower one easier,
/// each block moving it by at most a factor in `[(N−1)/N, (N−1+clamp)/N]`. Blocks 1 and 2 carry
/// the initial target (the genesis has no meaningful timestamp).
pub fn next_target(params: &PowParams, parent: &Header, grandparent: Option<&Header>) -> Hash {
    let (Some(seal), Some(grandparent)) = (parent.pow, grandparent) else {
        return params.initial_target;
    };
    if params.retarget == Retarget::Fixed || parent.height < 2 {
        return params.initial_target;
    }
    let interval = params.target_interval_ms as u128;
    let damping = params.retarget_damping as u128;
    let clamp_ms = interval * params.retarget_clamp as u128;
    let dt =
        (parent.timestamp_ms.saturating_sub(grandparent.timestamp_ms) as u128).clamp(1, clamp_ms);
    let next = to_number(&seal.target) * BigUint::from(interval * (damping - 1) + dt)
        / BigUint::from(interval * damping);
    let limit = to_number(&params.target_limit);
    if next > limit {
        params.target_limit
    } else if next == BigUint::ZERO {
        to_hash(&BigUint::from(1u8))
    } else {
        to_hash(&next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::PowSeal;

    fn header(height: u64, timestamp_ms: u64, target: Hash) -> Header {
        Header {
            height,
            parent_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            outcomes_root: Hash::ZERO,
            view: 0,
            proposer: 0,
            timestamp_ms,
            pow: Some(PowSeal { target, nonce: 0 }),
        }
    }

    #[test]
    fn work_is_the_expected_number_of_hashes() {
        assert_eq!(work(&target_for_hashes(80_000)), BigUint::from(80_000u32));
        assert_eq!(work(&Hash([0xff; 32])), BigUint::from(1u8));
        // Target 0 is the hardest: 2^256 hashes.
        assert_eq!(work(&Hash::ZERO), two_to_256());
        let mut half = [0u8; 32];
        half[0] = 0x7f;
        half[1..].fill(0xff);
        assert_eq!(work(&Hash(half)), BigUint::from(2u8));
    }

    #[test]
    fn meeting_the_target_is_numeric_order() {
        let target = target_for_hashes(16);
        let mut below = target;
        below.0[31] = below.0[31].wrapping_sub(1);
        assert!(meets_target(&target, &target));
        assert!(meets_target(&below, &target));
        let mut above = target;
        above.0[0] += 1;
        assert!(!meets_target(&above, &target));
    }

    /// The retarget keeps the target at the target interval, tightens it when blocks come
    /// faster, eases it when slower, and never moves past the clamp or the limit.
    #[test]
    fn per_block_retarget_follows_the_interval_within_the_clamp() {
        let params = PowParams::default();
        let t = params.initial_target;
        let at = |dt: u64| {
            next_target(
                &params,
                &header(5, 10_000 + dt, t),
                Some(&header(4, 10_000, t)),
            )
        };
        assert_eq!(at(params.target_interval_ms), t);
        assert!(to_number(&at(500)) < to_number(&t));
        assert!(to_number(&at(2000)) > to_number(&t));
        // A stalled network eases by at most (N − 1 + clamp) / N per block.
        let n = params.retarget_damping as u64;
        let most =
            to_number(&t) * BigUint::from(n - 1 + params.retarget_clamp as u64) / BigUint::from(n);
        assert_eq!(to_number(&at(1_000_000)), most);
        // A burst tightens by at most (N − 1) / N (plus the 1 ms floor).
        assert!(to_number(&at(0)) >= to_number(&t) * BigUint::from(n - 1) / BigUint::from(n));
        // Never easier than the limit.
        let easy = params.target_limit;
        let capped = next_target(
            &params,
            &header(5, 1_000_000, easy),
            Some(&header(4, 0, easy)),
        );
        assert_eq!(capped, params.target_limit);
        // Blocks 1 and 2, and fixed difficulty, carry the initial target.
        assert_eq!(
            next_target(&params, &header(1, 7, easy), Some(&header(0, 0, easy))),
            t
        );
        let fixed = PowParams {
            retarget: Retarget::Fixed,
            ..params
        };
        assert_eq!(
            next_target(&fixed, &header(9, 10, easy), Some(&header(8, 9, easy))),
            t
        );
    }
}
