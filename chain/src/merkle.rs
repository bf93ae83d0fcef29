//! The merkle tree over a block's transactions, with inclusion proofs.
//!
//! The tree shape is RFC 9162's (certificate transparency): the left subtree holds the largest
//! power of two of leaves smaller than the total. Leaves and nodes are hashed under different tags,
//! and the root also commits to the leaf count, so a proof cannot be replayed against another size:
//!
//!   leaf(id)   = H("quire/v1/merkle-leaf", id)
//!   node(l, r) = H("quire/v1/merkle-node", l || r)
//!   mth([])    = 32 zero bytes;  mth([x]) = leaf(x);  mth(D) = node(mth(D[..k]), mth(D[k..]))
//!   root(D)    = H("quire/v1/merkle-root", u64 count || mth(D))

use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};

fn leaf(data: &Hash) -> Hash {
    Hash::tagged(tags::MERKLE_LEAF, &[&data.0])
}

fn node(left: &Hash, right: &Hash) -> Hash {
    Hash::tagged(tags::MERKLE_NODE, &[&left.0, &right.0])
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::ZERO,
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn finish(count: usize, tree: &Hash) -> Hash {
    Hash::tagged(tags::MERKLE_ROOT, &[&(count as u64).to_be_bytes(), &tree.0])
}

/// The root over `items` (transaction ids) in order.
pub fn root(items: &[Hash]) -> Hash {
    let leaves: Vec<Hash> = items.iter().map(leaf).collect();
    finish(items.len(), &mth(&leaves))
}

/// Proves that one item sits at `index` of a list of `count` items.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MerkleProof {
    pub index: u64,
    pub count: u64,
    /// Sibling hashes from the leaf up to the root.
    pub siblings: Vec<Hash>,
}

/// Builds the proof for `items[index]`, or `None` if the index is out of range.
pub fn prove(items: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= items.len() {
        return None;
    }
    let leaves: Vec<Hash> = items.iter().map(leaf).collect();
    let mut siblings = Vec::new();
    path(&leaves, index, &mut siblings);
    Some(MerkleProof {
        index: index as u64,
        count: items.len() as u64,
        siblings,
    })
}

fn path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if index < k {
        path(&leaves[..k], index, out);
        out.push(mth(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, out);
        out.push(mth(&leaves[..k]));
    }
}

impl MerkleProof {
    /// RFC 9162 §2.1.3.2 inclusion verification, plus the count binding of [`root`].
    pub fn verify(&self, item: &Hash, expected_root: &Hash) -> bool {
        if self.index >= self.count {
            return false;
        }
        let (mut fnode, mut snode) = (self.index, self.count - 1);
        let mut r = leaf(item);
        for p in &self.siblings {
            if snode == 0 {
                return false;
            }
            if fnode & 1 == 1 || fnode == snode {
                r = node(p, &r);
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                r = node(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        snode == 0 && finish(self.count as usize, &r) == *expected_root
    }
}

impl Encode for MerkleProof {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.index);
        codec::put_u64(out, self.count);
        codec::put_seq(out, &self.siblings);
    }
}

impl Decode for MerkleProof {
    const MIN_LEN: usize = 20;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MerkleProof {
            index: r.u64()?,
            count: r.u64()?,
            siblings: r.seq("merkle proof", 64)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Hash> {
        (0..n as u32)
            .map(|i| Hash::tagged("item", &[&i.to_be_bytes()]))
            .collect()
    }

    #[test]
    fn every_item_of_every_size_proves() {
        for n in 1..40 {
            let xs = items(n);
            let r = root(&xs);
            for (i, x) in xs.iter().enumerate() {
                let p = prove(&xs, i).unwrap();
                assert!(p.verify(x, &r), "n={n} i={i}");
                assert!(!p.verify(&Hash([1; 32]), &r));
            }
            assert!(prove(&xs, n).is_none());
        }
    }

    #[test]
    fn every_single_bit_tamper_is_rejected() {
        for n in [1, 2, 3, 5, 8, 13] {
            let xs = items(n);
            let r = root(&xs);
            for (i, x) in xs.iter().enumerate() {
                let bytes = prove(&xs, i).unwrap().to_bytes();
                for bit in 0..bytes.len() * 8 {
                    let mut bad = bytes.clone();
                    bad[bit / 8] ^= 1 << (bit % 8);
                    if let Ok(p) = MerkleProof::from_bytes(&bad) {
                        assert!(!p.verify(x, &r), "n={n} i={i} bit={bit}");
                    }
                }
                // And the item and the root themselves.
                let p = prove(&xs, i).unwrap();
                for bit in 0..256 {
                    let mut item = *x;
                    item.0[bit / 8] ^= 1 << (bit % 8);
                    assert!(!p.verify(&item, &r));
                    let mut root2 = r;
                    root2.0[bit / 8] ^= 1 << (bit % 8);
                    assert!(!p.verify(x, &root2));
                }
            }
        }
    }

    #[test]
    fn the_root_commits_to_the_count() {
        assert_ne!(root(&[]), root(&items(1)));
        let xs = items(4);
        assert_ne!(root(&xs[..3]), root(&xs));
    }
}
