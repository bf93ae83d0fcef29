//! SHA-256 hashes with domain separation: `H(tag, data) = SHA-256(len(tag) || tag || data)`.
//!
//! Every hashed structure has its own tag (see [`tags`]), so a transaction can never be confused
//! with a header or a merkle node that happens to have the same bytes.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::codec::{Decode, DecodeError, Encode, Reader};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

/// The domain tags, in one place so that none is ever reused.
pub mod tags {
    pub const GENESIS: &str = "quire/v1/genesis";
    pub const TX_ID: &str = "quire/v1/tx-id";
    pub const BATCH: &str = "quire/v1/batch";
    pub const NULL_BATCH: &str = "quire/v1/null-batch";
    pub const HEADER: &str = "quire/v1/header";
    pub const OUTCOME: &str = "quire/v1/outcome";
    pub const MERKLE_LEAF: &str = "quire/v1/merkle-leaf";
    pub const MERKLE_NODE: &str = "quire/v1/merkle-node";
    pub const MERKLE_ROOT: &str = "quire/v1/merkle-root";
    pub const SMT_KEY: &str = "quire/v1/smt-key";
    pub const SMT_LEAF: &str = "quire/v1/smt-leaf";
    pub const SMT_NODE: &str = "quire/v1/smt-node";
    pub const ACCOUNT: &str = "quire/v1/account";
    pub const ADDRESS_CHECK: &str = "quire/v1/address-check";
    pub const MESSAGE: &str = "quire/v1/message";
}

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// `SHA-256(len(tag) as u8 || tag || part_0 || part_1 || ...)`.
    pub fn tagged(tag: &str, parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        h.update([tag.len() as u8]);
        h.update(tag.as_bytes());
        for part in parts {
            h.update(part);
        }
        Hash(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, String> {
        let bytes = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("a hash is 32 bytes (64 hex digits), got {}", b.len()))?;
        Ok(Hash(arr))
    }

    /// The first 4 bytes, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Bit `i` (0 = most significant bit of byte 0).
    pub fn bit(&self, i: usize) -> bool {
        (self.0[i / 8] >> (7 - i % 8)) & 1 == 1
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Encode for Hash {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0)
    }
}

impl Decode for Hash {
    const MIN_LEN: usize = 32;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Hash(r.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_separate_domains() {
        assert_ne!(
            Hash::tagged(tags::TX_ID, &[b"x"]),
            Hash::tagged(tags::HEADER, &[b"x"])
        );
        // The tag length prefix stops "ab"+"c" colliding with "a"+"bc".
        assert_ne!(Hash::tagged("ab", &[b"c"]), Hash::tagged("a", &[b"bc"]));
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let h = Hash::tagged("t", &[b"data"]);
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash::from_hex("zz").is_err());
        assert!(Hash::from_hex("abcd").is_err());
    }
}
