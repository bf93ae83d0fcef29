//! Simulated signatures: for the deterministic simulator, and nothing else.
//!
//! A simulated cluster signs and checks every message and transaction of every replica in one
//! thread, and ed25519 is then ~90% of its time (a signature costs ~22 µs to make and ~35 µs to
//! check; a seed of n = 4 makes thousands, and verifying each distinct one once would still leave
//! ~75% of today's cost). A thread that calls [`enable_for_this_thread`] signs instead with a
//! keyed hash of the signed bytes, under a key derived from the secret key, and checks a signature
//! by recomputing it: a fraction of a microsecond for a vote. Every check the protocol makes is
//! still made, on the same bytes, and fails exactly when the real one would for anything a
//! simulated replica can produce: a flipped bit, another signer's claimed identity, other signed
//! bytes, a key that never signed. What it does not exercise is ed25519 itself (non-canonical
//! encodings, small-order points), which `sig.rs`'s own tests pin against a reference
//! implementation; `quire-testnet sim --real-signatures` runs seeds with ed25519 throughout.
//!
//! The keyed hash is not a cryptographic MAC: nothing in a simulation searches for forgeries,
//! and a simulated Byzantine replica forges the way a real one can — by flipping bits, claiming
//! another sender, replaying — all of which it fails. It is two 64-bit lanes of multiply–rotate
//! mixing (an accidental collision is a 2⁻¹²⁸ event), several times faster than SHA-256.
//!
//! **Never in a replica**: a simulated signature proves nothing to anyone outside the thread.
//! The mode is per thread and off unless a thread turns it on; nothing but `quire-sim` does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

use crate::keys::{Keypair, PublicKey, Signature};

/// Public keys are uniformly distributed bytes: their first eight are hash enough, and the
/// lookup is on every signature (SipHash of 32 bytes would cost as much as the check itself).
#[derive(Default)]
struct KeyBytes(u64);

impl Hasher for KeyBytes {
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Keys = HashMap<[u8; 32], [u64; 2], BuildHasherDefault<KeyBytes>>;

thread_local! {
    /// Public key → the key its simulated signatures are made with, for every key that signed
    /// in this thread; `None` when the mode is off.
    static KEYS: RefCell<Option<Keys>> = const { RefCell::new(None) };
}

/// From now on this thread signs and verifies with simulated signatures, starting from an
/// empty table: a simulation calls it when it starts, so what signed in an earlier one (run
/// before in the same thread) can neither help nor hurt it, and the table holds one simulation's
/// keys only.
pub fn enable_for_this_thread() {
    KEYS.with(|k| *k.borrow_mut() = Some(Keys::default()));
}

/// Back to ed25519 for this thread.
pub fn disable_for_this_thread() {
    KEYS.with(|k| *k.borrow_mut() = None);
}

pub fn enabled() -> bool {
    KEYS.with(|k| k.borrow().is_some())
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The keyed hash, over `msg` eight bytes at a time, spread over 64 bytes: a check compares all
/// of them, so a change anywhere in the signature fails it.
fn mac(key: &[u64; 2], msg: &[u8]) -> Signature {
    let (mut a, mut b) = (key[0], key[1]);
    let mut words = msg.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        a = (a ^ w).wrapping_mul(K1).rotate_left(29);
        b = (b ^ w).wrapping_mul(K2).rotate_left(31) ^ a;
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    let w = u64::from_le_bytes(tail) ^ ((msg.len() as u64) << 56);
    a = finalize((a ^ w).wrapping_mul(K1));
    b = finalize((b ^ w ^ a).wrapping_mul(K2));
    let mut sig = [0u8; 64];
    for (i, chunk) in sig.chunks_exact_mut(16).enumerate() {
        let (x, y) = (a.rotate_left(i as u32 * 16), b.rotate_left(i as u32 * 16));
        chunk[..8].copy_from_slice(&x.to_le_bytes());
        chunk[8..].copy_from_slice(&y.to_le_bytes());
    }
    Signature(sig)
}

/// A simulated signature of `msg` by `key`, when this thread simulates.
pub(crate) fn sign(key: &Keypair, msg: &[u8]) -> Option<Signature> {
    KEYS.with(|k| {
        let mut k = k.borrow_mut();
        let keys = k.as_mut()?;
        let public = key.public().to_bytes();
        let secret = match keys.get(&public) {
            Some(s) => *s,
            None => {
                let d: [u8; 32] = Sha256::new()
                    .chain_update(b"quire/sim-signature/key")
                    .chain_update(key.secret_bytes())
                    .finalize()
                    .into();
                let derived = [
                    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]),
                    u64::from_le_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]]),
                ];
                keys.insert(public, derived);
                derived
            }
        };
        Some(mac(&secret, msg))
    })
}

/// The verdict on a simulated signature, when this thread simulates: valid iff `key` signed
/// exactly `msg` in this thread.
pub(crate) fn verify(key: &PublicKey, msg: &[u8], sig: &Signature) -> Option<bool> {
    KEYS.with(|k| {
        let k = k.borrow();
        let keys = k.as_ref()?;
        Some(
            keys.get(&key.to_bytes())
                .is_some_and(|secret| mac(secret, msg) == *sig),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::keys::sign_tags;

    /// Under simulation, a signature checks out for its signer and bytes only — as a real one.
    #[test]
    fn simulated_signatures_fail_where_real_ones_would() {
        enable_for_this_thread();
        let chain = Hash([1; 32]);
        let (a, b) = (Keypair::from_secret([1; 32]), Keypair::from_secret([2; 32]));
        let sig = a.sign(sign_tags::PREPARE, &chain, b"fields");
        assert!(
            a.public()
                .verify(sign_tags::PREPARE, &chain, b"fields", &sig)
                .is_ok()
        );
        for i in [0, 17, 40, 63] {
            let mut bad = sig;
            bad.0[i] ^= 1;
            assert!(
                a.public()
                    .verify(sign_tags::PREPARE, &chain, b"fields", &bad)
                    .is_err()
            );
        }
        let other = |tag, chain_id: &Hash, fields: &[u8]| {
            a.public().verify(tag, chain_id, fields, &sig).is_err()
        };
        assert!(other(sign_tags::COMMIT, &chain, b"fields"));
        assert!(other(sign_tags::PREPARE, &Hash([2; 32]), b"fields"));
        assert!(other(sign_tags::PREPARE, &chain, b"other"));
        assert!(
            b.public()
                .verify(sign_tags::PREPARE, &chain, b"fields", &sig)
                .is_err()
        );
        // A key that never signed in this thread has no valid simulated signature.
        let c = Keypair::from_secret([3; 32]);
        assert!(
            c.public()
                .verify(sign_tags::PREPARE, &chain, b"fields", &sig)
                .is_err()
        );
        // Batches agree with single checks.
        let items = [
            (b"m1".to_vec(), a.sign_raw(b"m1"), a.address()),
            (b"m2".to_vec(), a.sign_raw(b"m1"), a.address()),
            (b"m3".to_vec(), b.sign_raw(b"m3"), b.address()),
        ];
        assert_eq!(crate::keys::verify_many(&items), vec![true, false, true]);
        disable_for_this_thread();
        // Back to ed25519: a simulated signature is worthless.
        assert!(
            a.public()
                .verify(sign_tags::PREPARE, &chain, b"fields", &sig)
                .is_err()
        );
    }

    /// The mode belongs to the thread that asked for it.
    #[test]
    fn other_threads_keep_real_signatures() {
        enable_for_this_thread();
        let elsewhere = std::thread::spawn(enabled).join().unwrap_or(true);
        assert!(!elsewhere);
        assert!(enabled());
        disable_for_this_thread();
    }
}
