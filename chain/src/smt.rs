//! A sparse merkle tree over 256-bit keys, compressed so that a subtree holding one leaf is just
//! that leaf (as in Diem's Jellyfish tree). Its root is unique for a set of (key, value) pairs, an
//! update costs O(log n) hashes for n leaves, and a proof is O(log n) hashes.
//!
//!   empty subtree              = 32 zero bytes
//!   subtree with one leaf      = H("quire/v1/smt-leaf", key || value_hash)
//!   subtree with ≥ 2 leaves    = H("quire/v1/smt-node", left || right)
//!
//! The tree is kept as a binary trie with one node per leaf and one per bit at which leaves part
//! ways (a branch), so an update walks O(log n) pointers instead of searching an ordered map at
//! every depth. Every node caches its hash; an update drops the cached hashes on its key's path,
//! and the next root computation rehashes only those. Between a branch and the branch or leaf
//! above it the definition still has one hash per level (the other side being empty): a branch's
//! cached hash is its subtree's hash at the depth where it hangs, and it is dropped whenever the
//! node moves to another depth.

use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};

#[derive(Clone, Default, Debug)]
pub struct SparseMerkleTree {
    root: Option<Box<Node>>,
    len: usize,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf {
        key: Hash,
        value: Hash,
        /// `leaf_hash(key, value)`, once computed.
        hash: Option<Hash>,
    },
    Branch(Branch),
}

#[derive(Clone, Debug)]
struct Branch {
    /// The first bit at which this subtree's leaves differ: both children hold leaves, and every
    /// leaf shares the bits before it.
    split: u16,
    /// The bits every leaf shares (those before `split`), the rest zero.
    prefix: Hash,
    /// The subtrees whose keys have bit `split` clear (0) and set (1).
    children: [Box<Node>; 2],
    /// The subtree's hash at the depth this branch hangs at, once computed.
    hash: Option<Hash>,
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

/// How many leading bits `a` and `b` share (256 if they are equal).
fn common_bits(a: &Hash, b: &Hash) -> usize {
    for (i, (x, y)) in a.0.iter().zip(&b.0).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            return i * 8 + diff.leading_zeros() as usize;
        }
    }
    256
}

/// A branch's subtree hash at depth `at` (≤ its split), from its hash at the split: one level per
/// bit the leaves share, the other side of each being empty.
fn lift(mut h: Hash, shared: &Hash, split: usize, at: usize) -> Hash {
    for d in (at..split).rev() {
        h = if shared.bit(d) {
            node_hash(&Hash::ZERO, &h)
        } else {
            node_hash(&h, &Hash::ZERO)
        };
    }
    h
}

/// What a node holds for the moment its contents are moved elsewhere.
const TAKEN: Node = Node::Leaf {
    key: Hash::ZERO,
    value: Hash::ZERO,
    hash: None,
};

impl Node {
    fn leaf(key: Hash, value: Hash) -> Box<Node> {
        Box::new(Node::Leaf {
            key,
            value,
            hash: None,
        })
    }

    /// A key that shares this subtree's common bits (all of them, for a leaf).
    fn path(&self) -> &Hash {
        match self {
            Node::Leaf { key, .. } => key,
            Node::Branch(b) => &b.prefix,
        }
    }

    /// The node now hangs at another depth: a branch's hash depends on it, a leaf's does not.
    fn moved(&mut self) {
        if let Node::Branch(b) = self {
            b.hash = None;
        }
    }

    /// This subtree's hash at `depth`, recomputing what an update dropped.
    fn hash(&mut self, depth: usize) -> Hash {
        match self {
            Node::Leaf { key, value, hash } => *hash.get_or_insert_with(|| leaf_hash(key, value)),
            Node::Branch(b) => {
                if let Some(h) = b.hash {
                    return h;
                }
                let h = lift(b.split_hash(), &b.prefix, b.split as usize, depth);
                b.hash = Some(h);
                h
            }
        }
    }
}

impl Branch {
    /// The hash at the split: both children seen from the depth below it.
    fn split_hash(&mut self) -> Hash {
        let below = self.split as usize + 1;
        let [left, right] = &mut self.children;
        node_hash(&left.hash(below), &right.hash(below))
    }
}

/// Sets `key` to `value` in the subtree `node`; true if a leaf was added.
fn insert(node: &mut Node, key: Hash, value: Hash) -> bool {
    let parts_at = common_bits(node.path(), &key);
    match node {
        Node::Leaf {
            key: k,
            value: v,
            hash,
        } if *k == key => {
            *v = value;
            *hash = None;
            return false;
        }
        Node::Branch(b) if parts_at >= b.split as usize => {
            b.hash = None;
            let split = b.split as usize;
            return insert(&mut b.children[usize::from(key.bit(split))], key, value);
        }
        _ => {}
    }
    // `key` parts from every key of this subtree at bit `parts_at` (at or below the depth the
    // subtree hangs at, since they all share the bits above): a new branch there holds the
    // subtree on one side and the new leaf on the other.
    debug_assert!(parts_at < 256);
    let mut old = Box::new(std::mem::replace(node, TAKEN));
    old.moved();
    let leaf = Node::leaf(key, value);
    let children = if key.bit(parts_at) {
        [old, leaf]
    } else {
        [leaf, old]
    };
    *node = Node::Branch(Branch {
        split: parts_at as u16,
        prefix: prefix(&key, parts_at),
        children,
        hash: None,
    });
    true
}

/// What removing a key did to a subtree.
enum Removed {
    Nothing,
    Below,
    /// The subtree is the leaf removed: its parent must take its other child's place.
    ThisLeaf,
}

fn remove(node: &mut Node, key: &Hash) -> Removed {
    let (b, side) = match node {
        Node::Leaf { key: k, .. } => {
            return if k == key {
                Removed::ThisLeaf
            } else {
                Removed::Nothing
            };
        }
        Node::Branch(b) => {
            if common_bits(&b.prefix, key) < b.split as usize {
                return Removed::Nothing;
            }
            let side = usize::from(key.bit(b.split as usize));
            (b, side)
        }
    };
    match remove(&mut b.children[side], key) {
        Removed::Nothing => Removed::Nothing,
        Removed::Below => {
            b.hash = None;
            Removed::Below
        }
        Removed::ThisLeaf => {
            // The branch is left with one side: that subtree takes its place, one level or more
            // higher up.
            let mut other = std::mem::replace(&mut *b.children[1 - side], TAKEN);
            other.moved();
            *node = other;
            Removed::Below
        }
    }
}

impl SparseMerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &Hash) -> Option<&Hash> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Leaf { key: k, value, .. } => return (k == key).then_some(value),
                Node::Branch(b) => {
                    if common_bits(&b.prefix, key) < b.split as usize {
                        return None;
                    }
                    node = &b.children[usize::from(key.bit(b.split as usize))];
                }
            }
        }
    }

    /// Sets (`Some`) or removes (`None`) the value at `key`.
    pub fn update(&mut self, key: Hash, value: Option<Hash>) {
        match (value, &mut self.root) {
            (Some(v), None) => {
                self.root = Some(Node::leaf(key, v));
                self.len += 1;
            }
            (Some(v), Some(root)) => {
                if insert(root, key, v) {
                    self.len += 1;
                }
            }
            (None, None) => {}
            (None, Some(root)) => match remove(root, &key) {
                Removed::Nothing => {}
                Removed::Below => self.len -= 1,
                Removed::ThisLeaf => {
                    self.root = None;
                    self.len -= 1;
                }
            },
        }
    }

    pub fn root(&mut self) -> Hash {
        match &mut self.root {
            None => Hash::ZERO,
            Some(root) => root.hash(0),
        }
    }

    /// A proof of `key`'s value (or of its absence) against [`root`](Self::root).
    pub fn prove(&mut self, key: &Hash) -> SmtProof {
        let mut siblings = Vec::new();
        let mut depth = 0;
        let Some(mut node) = self.root.as_deref_mut() else {
            return SmtProof {
                siblings,
                terminal: Terminal::Empty,
            };
        };
        loop {
            let b = match node {
                Node::Leaf { key: k, value, .. } => {
                    return SmtProof {
                        siblings,
                        terminal: Terminal::Leaf {
                            key: *k,
                            value_hash: *value,
                        },
                    };
                }
                Node::Branch(b) => b,
            };
            let split = b.split as usize;
            let follows = common_bits(&b.prefix, key).min(split);
            // Down to where the key leaves the shared bits, each level's other side is empty.
            siblings.extend(std::iter::repeat_n(Hash::ZERO, follows - depth));
            if follows < split {
                // The key parts from every leaf here at bit `follows`: its side is empty, and
                // the other is this whole subtree, seen from the level below.
                let h = lift(b.split_hash(), &b.prefix, split, follows + 1);
                siblings.push(h);
                return SmtProof {
                    siblings,
                    terminal: Terminal::Empty,
                };
            }
            let side = usize::from(key.bit(split));
            siblings.push(b.children[1 - side].hash(split + 1));
            depth = split + 1;
            node = &mut b.children[side];
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
    use std::collections::BTreeMap;

    use super::*;

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

    /// The leaves of the subtree at `depth` holding `key`'s path.
    fn subtree_leaves(leaves: &BTreeMap<Hash, Hash>, depth: usize, p: &Hash) -> Vec<(Hash, Hash)> {
        leaves
            .range(*p..=last_key(p, depth))
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// A proof straight from the definition: a sibling per level while the key's subtree holds
    /// two leaves or more, then what that subtree holds.
    fn reference_proof(leaves: &BTreeMap<Hash, Hash>, key: &Hash) -> SmtProof {
        let mut siblings = Vec::new();
        for depth in 0..=256 {
            let sub = subtree_leaves(leaves, depth, &prefix(key, depth));
            match sub.len() {
                0 => {
                    return SmtProof {
                        siblings,
                        terminal: Terminal::Empty,
                    };
                }
                1 => {
                    return SmtProof {
                        siblings,
                        terminal: Terminal::Leaf {
                            key: sub[0].0,
                            value_hash: sub[0].1,
                        },
                    };
                }
                _ => {
                    let mut other = prefix(key, depth + 1);
                    other.0[depth / 8] ^= 1 << (7 - depth % 8);
                    siblings.push(reference_root(leaves, depth + 1, other));
                }
            }
        }
        unreachable!("two distinct keys part at some bit")
    }

    /// Keys that share long prefixes, so the trie has long runs of one-sided levels and
    /// branches that move when a neighbour comes or goes.
    fn clustered_key(i: u32) -> Hash {
        let mut k = key(i % 5);
        let at = 8 + (i as usize * 37) % 240;
        k.0[at / 8] ^= 1 << (7 - at % 8);
        k
    }

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

    /// Nodes whose hash the next root computation must recompute.
    fn stale(node: &Node) -> usize {
        match node {
            Node::Leaf { hash, .. } => usize::from(hash.is_none()),
            Node::Branch(b) => {
                usize::from(b.hash.is_none()) + b.children.iter().map(|c| stale(c)).sum::<usize>()
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
        let root = t.root.as_deref().expect("a root");
        assert_eq!(stale(root), 0);
        t.update(key(5), Some(val(99_999)));
        let dropped = stale(t.root.as_deref().expect("a root"));
        // log2(4096) = 12 branches on a path; random keys put a leaf a few levels deeper at most.
        assert!(dropped <= 30, "dropped {dropped} cached hashes");
        assert!(dropped >= 8, "dropped {dropped} cached hashes");
    }

    /// Roots, proofs, lookups and sizes equal the definition's through inserts, updates and
    /// removals (of present and absent keys), with keys that part late as well as random ones.
    #[test]
    fn roots_and_proofs_match_the_definition_through_every_kind_of_change() {
        for keys in [key as fn(u32) -> Hash, clustered_key] {
            let mut t = SparseMerkleTree::new();
            let mut model = BTreeMap::new();
            for i in 0..600u32 {
                let k = keys((i * 7919) % 97);
                if i % 5 == 2 {
                    t.update(k, None);
                    model.remove(&k);
                } else {
                    t.update(k, Some(val(i)));
                    model.insert(k, val(i));
                }
                assert_eq!(t.len(), model.len(), "step {i}");
                if i % 3 == 0 {
                    let root = t.root();
                    assert_eq!(root, reference_root(&model, 0, Hash::ZERO), "step {i}");
                    let probe = keys((i * 31) % 101);
                    let proof = t.prove(&probe);
                    assert_eq!(proof, reference_proof(&model, &probe), "step {i}");
                    assert!(proof.verify(&root, &probe, model.get(&probe)), "step {i}");
                    assert_eq!(t.get(&probe), model.get(&probe), "step {i}");
                }
            }
            // Emptied again: the empty root.
            for k in model.keys() {
                t.update(*k, None);
            }
            assert_eq!((t.len(), t.root()), (0, Hash::ZERO));
        }
    }
}
