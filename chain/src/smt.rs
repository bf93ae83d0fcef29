//! A sparse merkle tree over 256-bit keys, compressed so that a subtree holding one leaf is just
//! that leaf (as in Diem's Jellyfish tree). Its root is unique for a set of (key, value) pairs, an
//! update costs O(log n) hashes for n leaves, and a proof is O(log n) hashes.
//!
//!   empty subtree              = 32 zero bytes
//!   subtree with one leaf      = H("quire/v1/smt-leaf", key || value_hash)
//!   subtree with ≥ 2 leaves    = H("quire/v1/smt-node", left || right)
//!
//! The tree keeps every leaf in an ordered map and caches the hash of every subtree with two or
//! more leaves; an update drops the cached hashes on its key's path, and the next root computation
//! rehashes only those.

use std::collections::{BTreeMap, HashMap};

use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};

#[derive(Clone, Default, Debug)]
pub struct SparseMerkleTree {
    leaves: BTreeMap<Hash, Hash>,
    /// (depth, key prefix with bits ≥ depth cleared) → subtree hash, for subtrees of ≥ 2 leaves.
    cache: HashMap<(u16, Hash), Hash>,
}

fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    Hash::tagged(tags::SMT_LEAF, &[&key.0, &value.0])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::tagged(tags::SMT_NODE, &[&left.0, &right.0])
}

/// `key` with every bit at position ≥ `depth` cleared.
fn prefix(key: &Hash, depth: usize) -> Hash {
    let mut out = *key;
    for (i, byte) in out.0.iter_mut().enumerate() {
        let first_bit = i * 8;
        if first_bit >= depth {
            *byte = 0;
        } else if first_bit + 8 > depth {
            *byte &= 0xffu8 << (8 - (depth - first_bit));
        }
    }
    out
}

/// `key` with every bit at position ≥ `depth` set: the last key of the subtree.
fn last_key(prefix: &Hash, depth: usize) -> Hash {
    let mut out = *prefix;
    for (i, byte) in out.0.iter_mut().enumerate() {
        let first_bit = i * 8;
        if first_bit >= depth {
            *byte = 0xff;
        } else if first_bit + 8 > depth {
            *byte |= 0xffu8 >> (depth - first_bit);
        }
    }
    out
}

fn with_bit(prefix: &Hash, bit: usize) -> Hash {
    let mut out = *prefix;
    out.0[bit / 8] |= 1 << (7 - bit % 8);
    out
}

/// What a subtree holds: nothing, one leaf, or more.
enum Shape {
    Empty,
    One(Hash, Hash),
    Many,
}

impl SparseMerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    pub fn get(&self, key: &Hash) -> Option<&Hash> {
        self.leaves.get(key)
    }

    fn shape(&self, depth: usize, prefix: &Hash) -> Shape {
        let mut range = self.leaves.range(*prefix..=last_key(prefix, depth));
        match (range.next(), range.next()) {
            (None, _) => Shape::Empty,
            (Some((k, v)), None) => Shape::One(*k, *v),
            _ => Shape::Many,
        }
    }

    /// Sets (`Some`) or removes (`None`) the value at `key`.
    pub fn update(&mut self, key: Hash, value: Option<Hash>) {
        // Drop the cached hashes on the path while the subtree has ≥ 2 leaves (only those are
        // cached); below that point nothing on this path was cached.
        for depth in 0..256 {
            let p = prefix(&key, depth);
            match self.shape(depth, &p) {
                Shape::Many => {
                    self.cache.remove(&(depth as u16, p));
                }
                _ => break,
            }
        }
        match value {
            Some(v) => self.leaves.insert(key, v),
            None => self.leaves.remove(&key),
        };
    }

    pub fn root(&mut self) -> Hash {
        self.subtree(0, Hash::ZERO)
    }

    fn subtree(&mut self, depth: usize, prefix: Hash) -> Hash {
        if let Some(h) = self.cache.get(&(depth as u16, prefix)) {
            return *h;
        }
        match self.shape(depth, &prefix) {
            Shape::Empty => Hash::ZERO,
            Shape::One(k, v) => leaf_hash(&k, &v),
            Shape::Many => {
                // Two distinct keys differ at some bit below 256, so depth < 256 here.
                let left = self.subtree(depth + 1, prefix);
                let right = self.subtree(depth + 1, with_bit(&prefix, depth));
                let h = node_hash(&left, &right);
                self.cache.insert((depth as u16, prefix), h);
                h
            }
        }
    }

    /// A proof of `key`'s value (or of its absence) against [`root`](Self::root).
    pub fn prove(&mut self, key: &Hash) -> SmtProof {
        let mut siblings = Vec::new();
        let mut depth = 0;
        loop {
            let p = prefix(key, depth);
            match self.shape(depth, &p) {
                Shape::Empty => {
                    return SmtProof {
                        siblings,
                        terminal: Terminal::Empty,
                    };
                }
                Shape::One(k, v) => {
                    return SmtProof {
                        siblings,
                        terminal: Terminal::Leaf {
                            key: k,
                            value_hash: v,
                        },
                    };
                }
                Shape::Many => {
                    let sibling_prefix = if key.bit(depth) {
                        p
                    } else {
                        with_bit(&p, depth)
                    };
                    let sibling = self.subtree(depth + 1, sibling_prefix);
                    siblings.push(sibling);
                    depth += 1;
                }
            }
        }
    }
}

/// Where a proof's path ends: an empty subtree, or the one leaf in it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Terminal {
    Empty,
    Leaf { key: Hash, value_hash: Hash },
}

/// Sibling hashes from the root down, and the subtree where the key's path ends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SmtProof {
    pub siblings: Vec<Hash>,
    pub terminal: Terminal,
}

impl SmtProof {
    /// Checks that `key` maps to `value_hash` (`Some`) or to nothing (`None`) under `root`.
    pub fn verify(&self, root: &Hash, key: &Hash, value_hash: Option<&Hash>) -> bool {
        let depth = self.siblings.len();
        if depth > 256 {
            return false;
        }
        let mut h = match (&self.terminal, value_hash) {
            (Terminal::Empty, None) => Hash::ZERO,
            (Terminal::Empty, Some(_)) => return false,
            (
                Terminal::Leaf {
                    key: k,
                    value_hash: v,
                },
                Some(expected),
            ) => {
                if k != key || v != expected {
                    return false;
                }
                leaf_hash(k, v)
            }
            (
                Terminal::Leaf {
                    key: k,
                    value_hash: v,
                },
                None,
            ) => {
                // Absence: another key sits alone where `key` would be, so it must share the path.
                if k == key || prefix(k, depth) != prefix(key, depth) {
                    return false;
                }
                leaf_hash(k, v)
            }
        };
        for d in (0..depth).rev() {
            h = if key.bit(d) {
                node_hash(&self.siblings[d], &h)
            } else {
                node_hash(&h, &self.siblings[d])
            };
        }
        h == *root
    }
}

impl Encode for SmtProof {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_seq(out, &self.siblings);
        match &self.terminal {
            Terminal::Empty => out.push(0),
            Terminal::Leaf { key, value_hash } => {
                out.push(1);
                key.encode(out);
                value_hash.encode(out);
            }
        }
    }
}

impl Decode for SmtProof {
    const MIN_LEN: usize = 5;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let siblings = r.seq("smt proof", 256)?;
        let terminal = match r.u8()? {
            0 => Terminal::Empty,
            1 => Terminal::Leaf {
                key: Hash::decode(r)?,
                value_hash: Hash::decode(r)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "smt terminal",
                    tag,
                });
            }
        };
        Ok(SmtProof { siblings, terminal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Hash {
        Hash::tagged("k", &[&i.to_be_bytes()])
    }
    fn val(i: u32) -> Hash {
        Hash::tagged("v", &[&i.to_be_bytes()])
    }

    /// The root straight from the definition, with no cache: the reference the tree must match.
    fn reference_root(leaves: &BTreeMap<Hash, Hash>, depth: usize, p: Hash) -> Hash {
        let sub: Vec<_> = leaves
            .range(p..=last_key(&p, depth))
            .map(|(k, v)| (*k, *v))
            .collect();
        match sub.len() {
            0 => Hash::ZERO,
            1 => leaf_hash(&sub[0].0, &sub[0].1),
            _ => node_hash(
                &reference_root(leaves, depth + 1, p),
                &reference_root(leaves, depth + 1, with_bit(&p, depth)),
            ),
        }
    }

    #[test]
    fn root_matches_the_definition_through_inserts_updates_and_removals() {
        let mut t = SparseMerkleTree::new();
        assert_eq!(t.root(), Hash::ZERO);
        let mut model = BTreeMap::new();
        for i in 0..200u32 {
            let (k, v) = (key(i % 70), val(i));
            if i % 7 == 3 {
                t.update(k, None);
                model.remove(&k);
            } else {
                t.update(k, Some(v));
                model.insert(k, v);
            }
            if i % 10 == 0 {
                assert_eq!(t.root(), reference_root(&model, 0, Hash::ZERO), "step {i}");
            }
        }
        assert_eq!(t.root(), reference_root(&model, 0, Hash::ZERO));
    }

    #[test]
    fn the_root_does_not_depend_on_insertion_order() {
        let mut a = SparseMerkleTree::new();
        let mut b = SparseMerkleTree::new();
        for i in 0..50 {
            a.update(key(i), Some(val(i)));
            b.update(key(49 - i), Some(val(49 - i)));
        }
        assert_eq!(a.root(), b.root());
    }

    #[test]
    fn inclusion_and_absence_proofs_verify_and_lies_do_not() {
        let mut t = SparseMerkleTree::new();
        for i in 0..40 {
            t.update(key(i), Some(val(i)));
        }
        let root = t.root();
        for i in 0..40 {
            let p = t.prove(&key(i));
            assert!(p.verify(&root, &key(i), Some(&val(i))));
            assert!(!p.verify(&root, &key(i), Some(&val(i + 1))));
            assert!(!p.verify(&root, &key(i), None));
        }
        for i in 40..60 {
            let p = t.prove(&key(i));
            assert!(p.verify(&root, &key(i), None));
            assert!(!p.verify(&root, &key(i), Some(&val(i))));
        }
        // Every single-bit tamper of an encoded proof fails.
        let bytes = t.prove(&key(3)).to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(p) = SmtProof::from_bytes(&bad) {
                assert!(!p.verify(&root, &key(3), Some(&val(3))), "bit {bit}");
            }
        }
    }

    #[test]
    fn an_update_rehashes_a_logarithmic_path() {
        let mut t = SparseMerkleTree::new();
        for i in 0..4096 {
            t.update(key(i), Some(val(i)));
        }
        t.root();
        let cached = t.cache.len();
        t.update(key(5), Some(val(99_999)));
        let dropped = cached - t.cache.len();
        // log2(4096) = 12; random keys put a leaf a few levels deeper at most.
        assert!(dropped <= 30, "dropped {dropped} cached hashes");
        assert!(dropped >= 10);
    }
}
