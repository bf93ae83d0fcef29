//! Blocks whose parent has not arrived yet wait here, bounded in bytes and in count; when full,
//! the oldest go first. A flood of blocks with made-up parents can therefore cost a replica at
//! most the bound, and each such block had to pass the checks a block can pass alone.

use std::collections::{HashMap, VecDeque};

use crate::block::Block;
use crate::codec::Encode;
use crate::hash::Hash;

#[derive(Clone, Debug)]
pub struct OrphanPool {
    blocks: HashMap<Hash, (Block, usize)>,
    by_parent: HashMap<Hash, Vec<Hash>>,
    order: VecDeque<Hash>,
    bytes: usize,
    bytes_max: usize,
    count_max: usize,
    /// Orphans pushed out by newer ones.
    pub evicted: u64,
}

impl OrphanPool {
    pub fn new(bytes_max: usize, count_max: usize) -> OrphanPool {
        OrphanPool {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            bytes_max,
            count_max,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Keeps `block` until its parent arrives (false if it is larger than the whole pool).
    pub fn insert(&mut self, block: Block) -> bool {
        let hash = block.hash();
        let size = block.to_bytes().len();
        if size > self.bytes_max || self.blocks.contains_key(&hash) {
            return false;
        }
        while self.bytes + size > self.bytes_max || self.blocks.len() >= self.count_max {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.remove(&old).is_some() {
                self.evicted += 1;
            }
        }
        self.by_parent
            .entry(block.header.parent_hash)
            .or_default()
            .push(hash);
        self.order.push_back(hash);
        self.bytes += size;
        self.blocks.insert(hash, (block, size));
        true
    }

    fn remove(&mut self, hash: &Hash) -> Option<Block> {
        let (block, size) = self.blocks.remove(hash)?;
        self.bytes -= size;
        if let Some(siblings) = self.by_parent.get_mut(&block.header.parent_hash) {
            siblings.retain(|h| h != hash);
            if siblings.is_empty() {
                self.by_parent.remove(&block.header.parent_hash);
            }
        }
        Some(block)
    }

    /// Takes out the orphans whose parent is `parent`.
    pub fn children_of(&mut self, parent: &Hash) -> Vec<Block> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        let mut out = Vec::new();
        for h in hashes {
            if let Some((block, size)) = self.blocks.remove(&h) {
                self.bytes -= size;
                out.push(block);
            }
        }
        self.order.retain(|h| self.blocks.contains_key(h));
        out
    }

    /// The oldest missing ancestor of an orphan chain ending at `hash`: what to fetch.
    pub fn root_parent(&self, hash: &Hash) -> Option<Hash> {
        let mut at = self.blocks.get(hash)?.0.header.parent_hash;
        let mut steps = 0;
        while let Some((b, _)) = self.blocks.get(&at) {
            at = b.header.parent_hash;
            steps += 1;
            if steps > self.count_max {
                break;
            }
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Header, PowSeal};

    fn block(parent: u8, nonce: u64, payload: usize) -> Block {
        Block {
            header: Header {
                height: 5,
                parent_hash: Hash([parent; 32]),
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                outcomes_root: Hash::ZERO,
                view: 0,
                proposer: 0,
                timestamp_ms: 1,
                pow: Some(PowSeal {
                    target: Hash([0xff; 32]),
                    nonce,
                }),
            },
            txs: vec![crate::tx::Transaction::Raw(crate::tx::RawPayload::new(
                vec![0; payload],
            ))],
            certificate: None,
        }
    }

    /// A flood of orphans with made-up parents never holds more than the bound.
    #[test]
    fn a_flood_of_orphans_stays_within_the_bound() {
        let mut pool = OrphanPool::new(10_000, 1000);
        for i in 0..5000 {
            pool.insert(block((i % 7) as u8, i, 500));
            assert!(pool.bytes() <= 10_000);
        }
        assert!(pool.evicted > 4900);
        assert!(
            !pool.insert(block(1, 99_999, 20_000)),
            "larger than the pool"
        );
        let mut small = OrphanPool::new(1 << 20, 3);
        for i in 0..10 {
            small.insert(block(1, i, 1));
        }
        assert_eq!(small.len(), 3);
        assert_eq!(small.children_of(&Hash([1; 32])).len(), 3);
        assert!(small.is_empty());
        assert_eq!(small.bytes(), 0);
    }
}
