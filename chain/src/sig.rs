//! Quire's one signature rule, and checking many signatures at once under it.
//!
//! A signature is valid iff (ZIP-215's rules, with Quire's key rule on top):
//!
//! 1. the key decodes as a [`PublicKey`]: a curve point that does not have small order;
//! 2. `S` is canonical (below the group order ℓ);
//! 3. `R` decodes to a curve point (non-canonical encodings allowed, as for keys);
//! 4. `[8]([S]B − [k]A − R)` is the identity, where `k = SHA-512(R ‖ A ‖ M) mod ℓ` over the bytes
//!    as given — the **cofactored** equation.
//!
//! Why this rule and not `verify_strict`: with the cofactorless equation, batch verification can
//! accept or reject a crafted signature depending on what else is in the batch, so whether a
//! transaction is valid would depend on its neighbours (../shared/STACK.md, "batch verification
//! must be canonical"). Under the cofactored equation a batch passes iff every signature in it
//! passes alone (up to a 2⁻¹²⁸ chance, with coefficients no signer can predict), so a verdict is
//! a pure function of one transaction: a replica may compute it at admission, when a transaction
//! is forwarded, or when a block executes, batched or not, and always get the same answer. That
//! is what lets a replica verify each client signature once and reuse the verdict.
//!
//! This is ed25519-consensus's rule (the one Zcash and Penumbra use) computed with
//! curve25519-dalek 5, whose AVX2 backend is ~1.5× faster here than ed25519-consensus's u64 one
//! (measured: 30 vs 47 µs per signature in batches of 512 on a loaded 2-core box); the tests
//! check both agree on valid, corrupted and crafted small-order signatures.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::keys::{PublicKey, Signature};

/// The most signatures checked in one multiscalar multiplication. Any chunking gives the same
/// verdicts; items are split into equal chunks of at most this many (a block of 300 is one
/// chunk of 300, not 256 and a costlier 44). Past where Pippenger's method pays off, and small
/// enough that a bad signature (which sends its chunk to one-by-one checks) costs a bounded
/// amount of extra work.
pub const BATCH_CHUNK: usize = 512;

/// One signature, decoded: `None` for anything that fails rules 2 or 3 (rule 1 is the caller's,
/// through [`PublicKey`]).
struct Decoded {
    key: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn decode(key: &PublicKey, msg: &[u8], sig: &Signature) -> Option<Decoded> {
    let r_bytes: [u8; 32] = sig.0[..32].try_into().ok()?;
    let s_bytes: [u8; 32] = sig.0[32..].try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.to_bytes());
    h.update(msg);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Some(Decoded {
        key: key.dalek().to_edwards(),
        r,
        s,
        k,
    })
}

fn holds(d: &Decoded) -> bool {
    // [S]B − [k]A − R, times the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-d.k), &d.key, &d.s);
    (sb_minus_ka - d.r).mul_by_cofactor().is_identity()
}

/// Whether `sig` is a valid signature of `msg` by `key` under the rule above.
pub fn verify(key: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    #[cfg(feature = "sim-signatures")]
    if let Some(verdict) = crate::sim_signatures::verify(key, msg, sig) {
        return verdict;
    }
    decode(key, msg, sig).is_some_and(|d| holds(&d))
}

/// One item to check: the signed bytes, the signature, and the signer's key (`None` when the
/// signer's bytes are not a valid key, which makes the verdict `false`).
pub type Item<'a> = (&'a [u8], &'a Signature, Option<PublicKey>);

/// The verdict of each item, exactly as [`verify`] would give it one by one, computed in batches.
pub fn verify_many(items: &[Item<'_>]) -> Vec<bool> {
    #[cfg(feature = "sim-signatures")]
    if crate::sim_signatures::enabled() {
        return items
            .iter()
            .map(|(msg, sig, key)| key.as_ref().is_some_and(|k| verify(k, msg, sig)))
            .collect();
    }
    let mut verdicts = Vec::with_capacity(items.len());
    for chunk in items.chunks(even_chunk(items.len(), BATCH_CHUNK)) {
        verdicts.extend(verify_chunk(chunk));
    }
    verdicts
}

/// The chunk size that splits `n` items into as few chunks of at most `most` as possible, all
/// of nearly the same size (a small last chunk costs more per signature).
fn even_chunk(n: usize, most: usize) -> usize {
    let most = most.max(1);
    n.div_ceil(n.div_ceil(most).max(1)).max(1)
}

fn verify_chunk(chunk: &[Item<'_>]) -> Vec<bool> {
    let decoded: Vec<Option<Decoded>> = chunk
        .iter()
        .map(|(msg, sig, key)| key.as_ref().and_then(|k| decode(k, msg, sig)))
        .collect();
    let candidates: Vec<&Decoded> = decoded.iter().flatten().collect();
    if candidates.len() > 1 && batch_holds(&candidates) {
        return decoded.iter().map(Option::is_some).collect();
    }
    // One at a time: a single candidate, or a batch with at least one bad signature.
    decoded
        .iter()
        .map(|d| d.as_ref().is_some_and(holds))
        .collect()
}

/// `[8]([−Σ zᵢSᵢ]B + Σ zᵢRᵢ + Σ (zᵢkᵢ)Aᵢ) = 0` with 128-bit coefficients `zᵢ` derived from
/// every signature of the batch: a signer would have to know them before choosing its
/// signature to make an invalid one cancel out. Holds whenever every item holds on its own.
fn batch_holds(items: &[&Decoded]) -> bool {
    // The seed hashes each item's `k` and `S`: `k = SHA-512(R ‖ A ‖ M)` already binds `R`, the
    // key and the message (changing any of them without changing `k` is a 2¹²⁶-work collision,
    // no easier than guessing a coefficient).
    let mut seed = Sha512::new();
    seed.update(b"quire/v1/batch-coefficients");
    for d in items {
        seed.update(d.k.as_bytes());
        seed.update(d.s.as_bytes());
    }
    let seed = seed.finalize();
    // Four 128-bit coefficients from each 512-bit output of SHA-512(seed ‖ counter).
    let zs: Vec<Scalar> = (0..items.len().div_ceil(4) as u64)
        .flat_map(|block| {
            let mut h = Sha512::new();
            h.update(seed);
            h.update(block.to_be_bytes());
            let out: [u8; 64] = h.finalize().into();
            (0..4).map(move |j| {
                let mut z = [0u8; 32];
                z[..16].copy_from_slice(&out[16 * j..16 * (j + 1)]);
                Scalar::from_bytes_mod_order(z)
            })
        })
        .take(items.len())
        .collect();
    let b_coefficient: Scalar = items.iter().zip(&zs).map(|(d, z)| z * d.s).sum();
    let scalars = std::iter::once(-b_coefficient)
        .chain(zs.iter().copied())
        .chain(items.iter().zip(&zs).map(|(d, z)| z * d.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(items.iter().map(|d| d.r))
        .chain(items.iter().map(|d| d.key));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use curve25519_dalek::constants::EIGHT_TORSION;

    /// A key whose secret scalar we hold, so tests can craft signatures a library would not make.
    struct RawKey {
        a: Scalar,
        public: PublicKey,
    }

    fn raw_key(seed: u8) -> RawKey {
        let a = Scalar::from_bytes_mod_order([seed.wrapping_add(11); 32]);
        let point = ED25519_BASEPOINT_POINT * a;
        let public = PublicKey::from_bytes(&point.compress().to_bytes()).unwrap();
        RawKey { a, public }
    }

    fn challenge(r: &[u8; 32], key: &PublicKey, msg: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r);
        h.update(key.to_bytes());
        h.update(msg);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// Signs with `R = [r]B + torsion`: valid under the cofactored equation, rejected by
    /// `verify_strict` (cofactorless). The signatures batch verification used to disagree on.
    fn sign_with_torsion(key: &RawKey, msg: &[u8], torsion: usize) -> Signature {
        let r = Scalar::from_bytes_mod_order([msg.len() as u8 + 3; 32]);
        let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion];
        let r_bytes = big_r.compress().to_bytes();
        let s = r + challenge(&r_bytes, &key.public, msg) * key.a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(s.as_bytes());
        Signature(sig)
    }

    /// ℓ = 2²⁵² + 27742317777372353535851937790883648493, little-endian.
    const GROUP_ORDER: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn reference(key: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        let Ok(vk) = ed25519_consensus::VerificationKey::try_from(key.to_bytes()) else {
            return false;
        };
        vk.verify(&ed25519_consensus::Signature::from(sig.0), msg)
            .is_ok()
    }

    /// A mix of the cases that matter: honest signatures, every byte corrupted somewhere,
    /// non-canonical S, torsion in R (each of the 8 torsion points), wrong messages and keys.
    fn cases() -> Vec<(Vec<u8>, Signature, PublicKey)> {
        let mut out = Vec::new();
        for i in 0..24u8 {
            let k = Keypair::from_secret([i; 32]);
            let msg = vec![i; 20 + i as usize];
            let sig = k.sign_raw(&msg);
            out.push((msg.clone(), sig, k.public()));
            let mut bad = sig;
            bad.0[(i as usize * 5) % 64] ^= 1 << (i % 8);
            out.push((msg.clone(), bad, k.public()));
            out.push((b"another message".to_vec(), sig, k.public()));
            // S + ℓ: the same scalar, not canonical.
            let mut s_plus_l = sig;
            let s = Scalar::from_canonical_bytes(sig.0[32..].try_into().unwrap()).unwrap();
            let mut wide = [0u8; 32];
            let mut carry = 0u16;
            for (j, w) in wide.iter_mut().enumerate() {
                let v = s.as_bytes()[j] as u16 + GROUP_ORDER[j] as u16 + carry;
                *w = v as u8;
                carry = v >> 8;
            }
            if carry == 0 {
                s_plus_l.0[32..].copy_from_slice(&wide);
                out.push((msg.clone(), s_plus_l, k.public()));
            }
            let raw = raw_key(i);
            for t in 0..8 {
                out.push((msg.clone(), sign_with_torsion(&raw, &msg, t), raw.public));
            }
        }
        out
    }

    #[test]
    fn the_rule_is_ed25519_consensus_rule_one_by_one() {
        let mut torsion_accepted = 0;
        for (msg, sig, key) in cases() {
            let ours = verify(&key, &msg, &sig);
            assert_eq!(ours, reference(&key, &msg, &sig), "{sig:?} on {msg:?}");
            let strict = key
                .dalek()
                .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig.0));
            if ours && strict.is_err() {
                torsion_accepted += 1;
            }
        }
        // The crafted signatures really are the ones the strict rule and batches disagreed on.
        assert!(torsion_accepted >= 24 * 7, "{torsion_accepted}");
    }

    /// A verdict never depends on what else is checked with it: every chunking of the same
    /// items, and every shuffle, gives each item the verdict it has alone.
    #[test]
    fn batches_give_every_item_its_own_verdict() {
        let cases = cases();
        let alone: Vec<bool> = cases.iter().map(|(m, s, k)| verify(k, m, s)).collect();
        assert!(alone.iter().any(|v| *v) && alone.iter().any(|v| !*v));
        let items: Vec<Item<'_>> = cases
            .iter()
            .map(|(m, s, k)| (m.as_slice(), s, Some(*k)))
            .collect();
        assert_eq!(verify_many(&items), alone);
        // More than one chunk's worth, split evenly by `verify_many` itself.
        let many: Vec<Item<'_>> = items
            .iter()
            .cycle()
            .take(items.len() * 3)
            .copied()
            .collect();
        assert!(many.len() > BATCH_CHUNK);
        let expected: Vec<bool> = alone.iter().cycle().take(many.len()).copied().collect();
        assert_eq!(verify_many(&many), expected);
        for width in [2, 3, 7, 16, 64] {
            let mut got = Vec::new();
            for chunk in items.chunks(width) {
                got.extend(verify_chunk(chunk));
            }
            assert_eq!(got, alone, "chunks of {width}");
        }
        // Only the valid ones, batched together (the batch path proper, no fallback).
        let valid: Vec<Item<'_>> = items
            .iter()
            .zip(&alone)
            .filter(|(_, ok)| **ok)
            .map(|(item, _)| *item)
            .collect();
        let decoded: Vec<Decoded> = valid
            .iter()
            .map(|(m, s, k)| decode(k.as_ref().unwrap(), m, s).unwrap())
            .collect();
        assert!(batch_holds(&decoded.iter().collect::<Vec<_>>()));
        // And one bad signature among them fails the batch, and only it is refused.
        let mut with_bad = valid.clone();
        let (m, s, k) = cases.iter().zip(&alone).find(|(_, ok)| !**ok).unwrap().0;
        with_bad.insert(5, (m.as_slice(), s, Some(*k)));
        let verdicts = verify_many(&with_bad);
        assert_eq!(verdicts.iter().filter(|v| !**v).count(), 1);
        assert!(!verdicts[5]);
    }

    #[test]
    fn chunks_are_as_few_and_as_even_as_the_limit_allows() {
        let sizes = |n: usize| -> Vec<usize> {
            let width = even_chunk(n, BATCH_CHUNK);
            (0..n)
                .collect::<Vec<_>>()
                .chunks(width)
                .map(<[usize]>::len)
                .collect()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(300), vec![300]);
        assert_eq!(sizes(512), vec![512]);
        assert_eq!(sizes(513), vec![257, 256]);
        assert_eq!(sizes(1025), vec![342, 342, 341]);
        for n in 1..3000 {
            let s = sizes(n);
            assert_eq!(s.len(), n.div_ceil(BATCH_CHUNK), "{n}");
            assert!(
                s.iter().max().unwrap() - s.iter().min().unwrap() <= s.len(),
                "{n}: {s:?}"
            );
        }
    }

    #[test]
    fn a_signer_that_is_not_a_key_fails() {
        let k = Keypair::from_secret([9; 32]);
        let sig = k.sign_raw(b"m");
        let items: Vec<Item<'_>> = vec![(b"m", &sig, None), (b"m", &sig, Some(k.public()))];
        assert_eq!(verify_many(&items), vec![false, true]);
    }
}
