//! The block tree: every header a replica accepted, with its cumulative work, and the fork
//! choice over it — the most cumulative work wins, ties go to the block seen first, and height
//! never counts for itself (a shorter branch with more work wins).

use std::collections::HashMap;

use super::work::{Work, work};
use crate::block::Header;
use crate::hash::Hash;

#[derive(Clone, Debug)]
pub struct Node {
    pub header: Header,
    /// Work of the chain from the genesis through this block.
    pub work: Work,
    /// Arrival order: the tie-break.
    pub seen: u64,
    /// Found invalid on execution (it and every descendant are out of the fork choice).
    pub invalid: bool,
    pub children: Vec<Hash>,
}

#[derive(Clone, Debug)]
pub struct BlockTree {
    nodes: HashMap<Hash, Node>,
    genesis: Hash,
    next_seen: u64,
    best: Hash,
}

impl BlockTree {
    pub fn new(genesis: Header) -> BlockTree {
        let hash = genesis.hash();
        let mut nodes = HashMap::new();
        nodes.insert(
            hash,
            Node {
                header: genesis,
                work: Work::ZERO,
                seen: 0,
                invalid: false,
                children: Vec::new(),
            },
        );
        BlockTree {
            nodes,
            genesis: hash,
            next_seen: 1,
            best: hash,
        }
    }

    pub fn genesis(&self) -> Hash {
        self.genesis
    }

    pub fn get(&self, hash: &Hash) -> Option<&Node> {
        self.nodes.get(hash)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.nodes.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The header of `hash`'s parent, if known.
    pub fn parent(&self, hash: &Hash) -> Option<&Header> {
        let node = self.nodes.get(hash)?;
        self.nodes.get(&node.header.parent_hash).map(|n| &n.header)
    }

    /// Adds a header whose parent is in the tree (the caller checked the link). Returns false
    /// if the parent is missing or the header is known.
    pub fn insert(&mut self, header: Header, hash: Hash) -> bool {
        if self.nodes.contains_key(&hash) {
            return false;
        }
        let Some(parent) = self.nodes.get_mut(&header.parent_hash) else {
            return false;
        };
        parent.children.push(hash);
        let invalid = parent.invalid;
        let target = header.pow.map(|s| s.target).unwrap_or(Hash([0xff; 32]));
        let total = &parent.work + work(&target);
        let node = Node {
            header,
            work: total,
            seen: self.next_seen,
            invalid,
            children: Vec::new(),
        };
        self.next_seen += 1;
        if !invalid && self.beats(&node, &self.nodes[&self.best]) {
            self.best = hash;
        }
        self.nodes.insert(hash, node);
        true
    }

    /// More work, or as much and seen first.
    fn beats(&self, a: &Node, b: &Node) -> bool {
        a.work > b.work || (a.work == b.work && a.seen < b.seen)
    }

    /// The fork choice: the valid block with the most cumulative work, first seen on a tie.
    pub fn best(&self) -> Hash {
        self.best
    }

    /// Marks `hash` and its descendants invalid, and chooses again.
    pub fn invalidate(&mut self, hash: &Hash) {
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            if let Some(node) = self.nodes.get_mut(&h) {
                node.invalid = true;
                stack.extend(node.children.iter().copied());
            }
        }
        self.choose();
    }

    fn choose(&mut self) {
        let mut best = self.genesis;
        for (hash, node) in &self.nodes {
            if !node.invalid && self.beats(node, &self.nodes[&best]) {
                best = *hash;
            }
        }
        self.best = best;
    }

    /// The path from `ancestor` (exclusive) down to `tip` (inclusive), oldest first; `None` if
    /// `ancestor` is not an ancestor of `tip`.
    pub fn path(&self, ancestor: &Hash, tip: &Hash) -> Option<Vec<Hash>> {
        let mut out = Vec::new();
        let mut at = *tip;
        let stop = self.nodes.get(ancestor)?.header.height;
        while at != *ancestor {
            let node = self.nodes.get(&at)?;
            if node.header.height <= stop {
                return None;
            }
            out.push(at);
            at = node.header.parent_hash;
        }
        out.reverse();
        Some(out)
    }

    /// Forgets side blocks (and their descendants) that fork below `height`: no reorg can reach
    /// them. `keep` says which blocks are on the main chain.
    pub fn prune_below(&mut self, height: u64, keep: impl Fn(&Hash, u64) -> bool) -> Vec<Hash> {
        let doomed: Vec<Hash> = self
            .nodes
            .iter()
            .filter(|(h, n)| n.header.height < height && !keep(h, n.header.height))
            .map(|(h, _)| *h)
            .collect();
        let mut removed = Vec::new();
        let mut stack = doomed;
        while let Some(h) = stack.pop() {
            if let Some(node) = self.nodes.remove(&h) {
                stack.extend(node.children.iter().copied());
                if let Some(parent) = self.nodes.get_mut(&node.header.parent_hash) {
                    parent.children.retain(|c| *c != h);
                }
                removed.push(h);
            }
        }
        if !self.nodes.contains_key(&self.best) {
            self.choose();
        }
        removed
    }
}
