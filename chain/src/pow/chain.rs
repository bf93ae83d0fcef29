//! A replica's proof-of-work chain: the block tree, the main chain and its state, the orphan
//! pool and the side blocks, and the one operation that changes them — receive a block. Pure
//! and deterministic (no clock: the caller passes `now_ms`; no I/O but reads of the store it
//! is given), so the node and the simulator run exactly this code.
//!
//! Receiving a block: the checks a block passes alone; an unknown parent sends it to the orphan
//! pool; a known parent links it (height, target, timestamp) into the tree, with any orphans
//! waiting on it. Then the fork choice: if the most-work valid block is not the head, roll the
//! state back to the fork point with the undo records and execute the winning branch from
//! there, in a scratch ledger; a block that fails execution is marked invalid with its
//! descendants and the choice is made again. The result is one [`PowWrite`] — rollback and
//! extension together — which the caller makes durable before it relays anything.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use thiserror::Error;

use super::orphans::OrphanPool;
use super::rules::{BlockReject, PowRules, VerdictCache};
use super::tree::BlockTree;
use super::work::Work;
use crate::block::{Block, Header};
use crate::codec::Decode;
use crate::genesis::Genesis;
use crate::hash::Hash;
use crate::ledger::Ledger;
use crate::store::{PowWrite, Rollback, Store, StoreError};
use crate::tx::{Transaction, TxId};

/// A replica's own bounds (node settings, not protocol rules).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Undo records are kept for this many blocks below the head; a reorg deeper than that is
    /// refused and reported.
    pub undo_depth: u64,
    pub orphan_bytes_max: usize,
    pub orphans_max: usize,
    /// Bodies of blocks off the main chain, kept for reorgs.
    pub side_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            undo_depth: 256,
            orphan_bytes_max: 8 << 20,
            orphans_max: 1024,
            side_bytes_max: 32 << 20,
        }
    }
}

#[derive(Debug, Error)]
pub enum PowError {
    #[error("this genesis is not a proof-of-work genesis (consensus = \"pbft\")")]
    NotPow,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("refused: {0}")]
    Refused(BlockReject),
}

/// What the replica saw happen, for metrics and reports.
#[derive(Clone, Debug, Default)]
pub struct PowStats {
    /// Blocks linked into the tree (valid headers), the genesis not counted.
    pub blocks_connected: u64,
    pub reorgs: u64,
    pub reorg_depth_max: u64,
    /// Reorg depth → how many.
    pub reorg_depths: BTreeMap<u64, u64>,
    /// Reorgs deeper than the undo depth, refused.
    pub reorgs_refused: u64,
    /// Transactions of abandoned blocks returned to the mempool.
    pub txs_returned: u64,
    /// Transactions of abandoned blocks that the new branch also holds.
    pub txs_reincluded: u64,
    /// Transactions of abandoned blocks whose nonce the new branch spent otherwise (reversed).
    pub txs_reversed: u64,
    /// Refused blocks by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

/// A head change, to be made durable with [`Store::write_pow`] before anything is relayed.
#[derive(Clone, Debug)]
pub struct Change {
    pub write: PowWrite,
    pub old_head: Header,
    pub new_head: Header,
    /// Main-chain blocks abandoned, head first.
    pub rolled_back: Vec<Block>,
    /// Blocks adopted, oldest first.
    pub applied: Vec<Block>,
    /// Transactions of abandoned blocks that are neither on the new branch nor spent by it:
    /// back to the mempool.
    pub returned: Vec<Transaction>,
    /// Transactions of abandoned blocks whose sender's nonce the new branch used for another
    /// transaction: reversed, not coming back.
    pub reversed: Vec<Transaction>,
}

impl Change {
    pub fn depth(&self) -> u64 {
        self.rolled_back.len() as u64
    }
}

#[derive(Clone, Debug)]
pub enum Received {
    /// Already known (in the tree or the orphan pool).
    Duplicate,
    /// Its parent is unknown; `missing` is the oldest missing ancestor, to fetch.
    Orphan { missing: Hash },
    /// Linked into the tree; the head did not move.
    Side,
    /// The head moved.
    NewHead(Box<Change>),
    /// The most-work branch forks deeper than the undo depth: refused (and out of the choice).
    ReorgRefused { depth: u64 },
}

const TREE_PRUNE_EVERY: u64 = 32;

#[derive(Clone)]
pub struct PowChain {
    rules: PowRules,
    limits: Limits,
    tree: BlockTree,
    /// The main chain's block hashes by height.
    main: Vec<Hash>,
    /// The state at the head.
    ledger: Ledger,
    side: HashMap<Hash, Block>,
    side_order: VecDeque<Hash>,
    side_bytes: usize,
    orphans: OrphanPool,
    verdicts: VerdictCache,
    /// Undo records at heights up to here have been pruned.
    undo_floor: u64,
    /// The tree was last pruned below this height.
    tree_floor: u64,
    /// Blocks found invalid on execution during the current receive.
    failures: Vec<(Hash, BlockReject)>,
    pub stats: PowStats,
}

impl PowChain {
    /// Rebuilds the chain from the store: the main chain's headers and the state at its head.
    /// (Side branches are not kept across restarts; peers serve them again if they win.)
    pub fn open(
        genesis: &Genesis,
        store: &dyn Store,
        limits: Limits,
    ) -> Result<PowChain, PowError> {
        let rules = PowRules::new(genesis).ok_or(PowError::NotPow)?;
        let head = store.head();
        let mut tree = BlockTree::new(genesis.block().header);
        let mut main = vec![tree.genesis()];
        for height in 1..=head.height {
            let record = store.block(height)?.ok_or_else(|| {
                PowError::Corrupt(format!("main-chain block {height} is missing"))
            })?;
            let header = record.block.header;
            if !tree.insert(header, header.hash()) {
                return Err(PowError::Corrupt(format!(
                    "main-chain block {height} does not link to block {}",
                    height - 1
                )));
            }
            main.push(header.hash());
        }
        let mut ledger = store.ledger(genesis.chain_id())?;
        if ledger.state_root() != head.state_root {
            return Err(PowError::Corrupt(
                "the stored state does not match the head's state root".into(),
            ));
        }
        Ok(PowChain {
            rules,
            undo_floor: head.height.saturating_sub(limits.undo_depth),
            limits,
            tree,
            main,
            ledger,
            side: HashMap::new(),
            side_order: VecDeque::new(),
            side_bytes: 0,
            orphans: OrphanPool::new(limits.orphan_bytes_max, limits.orphans_max),
            verdicts: VerdictCache::default(),
            failures: Vec::new(),
            tree_floor: 0,
            stats: PowStats::default(),
        })
    }

    pub fn rules(&self) -> &PowRules {
        &self.rules
    }

    pub fn head(&self) -> &Header {
        let hash = self
            .main
            .last()
            .copied()
            .unwrap_or_else(|| self.tree.genesis());
        &self
            .tree
            .get(&hash)
            .expect("every main-chain block is in the tree")
            .header
    }

    /// The cumulative work of the head.
    pub fn head_work(&self) -> &Work {
        self.work(&self.head().hash()).unwrap_or(&Work::ZERO)
    }

    pub fn work(&self, hash: &Hash) -> Option<&Work> {
        self.tree.get(hash).map(|n| &n.work)
    }

    pub fn header(&self, hash: &Hash) -> Option<&Header> {
        self.tree.get(hash).map(|n| &n.header)
    }

    pub fn tree(&self) -> &BlockTree {
        &self.tree
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    pub fn verdicts(&mut self) -> &mut VerdictCache {
        &mut self.verdicts
    }

    pub fn orphans(&self) -> &OrphanPool {
        &self.orphans
    }

    pub fn main_hash(&self, height: u64) -> Option<Hash> {
        self.main.get(height as usize).copied()
    }

    pub fn on_main(&self, hash: &Hash) -> bool {
        self.tree
            .get(hash)
            .is_some_and(|n| self.main_hash(n.header.height) == Some(*hash))
    }

    /// Confirmations of a main-chain block: 1 for the head, 2 for its parent, …; 0 if off it.
    pub fn confirmations(&self, hash: &Hash) -> u64 {
        match self.tree.get(hash) {
            Some(n) if self.on_main(hash) => self.head().height - n.header.height + 1,
            _ => 0,
        }
    }

    /// A block by hash: a side block from memory, a main-chain one from the store.
    pub fn block(&self, store: &dyn Store, hash: &Hash) -> Result<Option<Block>, StoreError> {
        if let Some(b) = self.side.get(hash) {
            return Ok(Some(b.clone()));
        }
        match self.tree.get(hash) {
            Some(n) if self.on_main(hash) => Ok(store.block(n.header.height)?.map(|r| r.block)),
            _ => Ok(None),
        }
    }

    /// Main-chain hashes at the head, then 1, 2, 4, … blocks below, and the genesis: enough for
    /// a peer to find where our chains part.
    pub fn locator(&self) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut height = self.head().height;
        let mut step = 1;
        loop {
            if let Some(h) = self.main_hash(height) {
                out.push(h);
            }
            if height == 0 {
                break;
            }
            height = height.saturating_sub(step);
            if out.len() > 8 {
                step *= 2;
            }
        }
        out
    }

    /// Main-chain blocks after the first locator entry on our main chain, up to `max`.
    pub fn blocks_after(
        &self,
        store: &dyn Store,
        locator: &[Hash],
        max: usize,
    ) -> Result<Vec<Block>, StoreError> {
        let from = locator
            .iter()
            .find(|h| self.on_main(h))
            .and_then(|h| self.tree.get(h))
            .map_or(0, |n| n.header.height);
        let mut out = Vec::new();
        for height in from + 1..=self.head().height {
            if out.len() >= max {
                break;
            }
            if let Some(r) = store.block(height)? {
                out.push(r.block);
            }
        }
        Ok(out)
    }

    /// A block for this replica to mine on its head, with what of `candidates` applies.
    pub fn template(&mut self, candidates: &[Transaction], miner: u32, now_ms: u64) -> Block {
        let head = *self.head();
        let grandparent = self.tree.parent(&head.hash()).copied();
        self.rules.template(
            &mut self.ledger,
            &head,
            grandparent.as_ref(),
            candidates,
            miner,
            now_ms,
            &mut self.verdicts,
        )
    }

    fn count(&mut self, reject: &BlockReject) {
        *self.stats.rejected.entry(reject.name()).or_default() += 1;
    }

    /// Receives a block from a peer or from our own miner. A refused block is
    /// [`PowError::Refused`] (and counted); other errors are local faults (storage).
    pub fn receive(
        &mut self,
        store: &dyn Store,
        block: Block,
        now_ms: u64,
    ) -> Result<Received, PowError> {
        let hash = block.hash();
        if self.tree.contains(&hash) || self.orphans.contains(&hash) {
            return Ok(Received::Duplicate);
        }
        if let Err(e) = self.rules.check_alone(&block, &hash, now_ms) {
            self.count(&e);
            return Err(PowError::Refused(e));
        }
        if !self.tree.contains(&block.header.parent_hash) {
            let missing = block.header.parent_hash;
            self.orphans.insert(block);
            let missing = self.orphans.root_parent(&hash).unwrap_or(missing);
            return Ok(Received::Orphan { missing });
        }
        let mut first = Some(hash);
        let mut queue = vec![block];
        while let Some(b) = queue.pop() {
            let h = b.hash();
            match self.link(b, h) {
                Ok(()) => queue.extend(self.orphans.children_of(&h)),
                Err(e) => {
                    self.count(&e);
                    if first == Some(h) {
                        return Err(PowError::Refused(e));
                    }
                }
            }
            first = None;
        }
        self.failures.clear();
        let received = self.follow_best(store)?;
        // The block (or an ancestor it made us try) failed execution: the sender's fault, unless
        // the head moved anyway (that change must be written).
        if matches!(received, Received::Side)
            && let Some((_, e)) = self.failures.first()
        {
            return Err(PowError::Refused(e.clone()));
        }
        Ok(received)
    }

    /// Links a block whose parent is in the tree.
    fn link(&mut self, block: Block, hash: Hash) -> Result<(), BlockReject> {
        let parent_hash = block.header.parent_hash;
        let parent =
            self.tree
                .get(&parent_hash)
                .map(|n| n.header)
                .ok_or(BlockReject::WrongHeight {
                    hash,
                    got: block.header.height,
                    parent: 0,
                })?;
        let floor = self.head().height.saturating_sub(self.limits.undo_depth);
        if parent.height < floor {
            return Err(BlockReject::BelowUndoFloor {
                hash,
                height: block.header.height,
                floor,
            });
        }
        let grandparent = self.tree.parent(&parent_hash).copied();
        self.rules
            .check_link(&block.header, &hash, &parent, grandparent.as_ref())?;
        self.tree.insert(block.header, hash);
        self.stats.blocks_connected += 1;
        self.keep_side(block, hash);
        Ok(())
    }

    fn keep_side(&mut self, block: Block, hash: Hash) {
        self.side_bytes += encoded_len(&block);
        self.side_order.push_back(hash);
        self.side.insert(hash, block);
        while self.side_bytes > self.limits.side_bytes_max {
            let Some(old) = self.side_order.pop_front() else {
                break;
            };
            if let Some(b) = self.side.remove(&old) {
                self.side_bytes -= encoded_len(&b);
            }
        }
    }

    fn take_side(&mut self, hash: &Hash) -> Option<Block> {
        let b = self.side.remove(hash)?;
        self.side_bytes -= encoded_len(&b);
        self.side_order.retain(|h| h != hash);
        Some(b)
    }

    /// The fork choice, carried out: switch to the most-work valid block if it is not the head.
    fn follow_best(&mut self, store: &dyn Store) -> Result<Received, PowError> {
        loop {
            let best = self.tree.best();
            let head = *self.head();
            if best == head.hash() {
                return Ok(Received::Side);
            }
            let mut fork = best;
            while !self.on_main(&fork) {
                fork = self
                    .tree
                    .get(&fork)
                    .map(|n| n.header.parent_hash)
                    .ok_or_else(|| PowError::Corrupt("a tree block without a parent".into()))?;
            }
            let fork_height = self.tree.get(&fork).map_or(0, |n| n.header.height);
            let depth = head.height - fork_height;
            let path = self
                .tree
                .path(&fork, &best)
                .ok_or_else(|| PowError::Corrupt("no path from the fork point".into()))?;
            if depth > self.limits.undo_depth || fork_height < self.undo_floor {
                self.stats.reorgs_refused += 1;
                if let Some(first) = path.first() {
                    self.tree.invalidate(first);
                }
                return Ok(Received::ReorgRefused { depth });
            }
            match self.switch(store, head, fork_height, &path)? {
                Some(change) => return Ok(Received::NewHead(Box::new(change))),
                None => continue,
            }
        }
    }

    /// Rolls back to `fork_height` and executes `path`; `None` if a block on it failed (it is
    /// marked invalid and the caller chooses again).
    fn switch(
        &mut self,
        store: &dyn Store,
        head: Header,
        fork_height: u64,
        path: &[Hash],
    ) -> Result<Option<Change>, PowError> {
        // A plain extension executes on the live ledger (execution is failure-atomic); only a
        // real reorg needs a scratch copy to roll back in.
        let extending = fork_height == head.height;
        let mut scratch = (!extending).then(|| self.ledger.clone());
        let mut rollback = Vec::new();
        let mut rolled_back = Vec::new();
        for height in (fork_height + 1..=head.height).rev() {
            let record = store.block(height)?.ok_or_else(|| {
                PowError::Corrupt(format!("main-chain block {height} is missing"))
            })?;
            let hash = record.block.hash();
            let undo = store.undo(&hash)?.ok_or_else(|| {
                PowError::Corrupt(format!("undo record of block {height} is missing"))
            })?;
            if let Some(l) = scratch.as_mut() {
                l.restore(&undo.accounts);
            }
            rollback.push(Rollback {
                header: record.block.header,
                tx_ids: record.block.txs.iter().map(Transaction::id).collect(),
                undo,
            });
            rolled_back.push(record.block);
        }
        let mut blocks = Vec::new();
        let mut applied = Vec::new();
        for hash in path {
            let Some(body) = self.side.get(hash).cloned() else {
                // Its body was pushed out of the side pool: it cannot be followed.
                self.tree.invalidate(hash);
                return Ok(None);
            };
            let ledger = scratch.as_mut().unwrap_or(&mut self.ledger);
            match self.rules.execute(ledger, &body, &mut self.verdicts) {
                Ok(done) => {
                    blocks.push(done);
                    applied.push(body);
                }
                Err(e) => {
                    if extending {
                        // Blocks before it on the path were applied to the live ledger.
                        for (_, undo) in blocks.iter().rev() {
                            self.ledger.restore(&undo.accounts);
                        }
                    }
                    self.count(&e);
                    self.tree.invalidate(hash);
                    self.failures.push((*hash, e));
                    return Ok(None);
                }
            }
        }
        // Commit to the switch in memory; the caller makes it durable.
        for hash in path {
            self.take_side(hash);
        }
        for b in &rolled_back {
            self.keep_side(b.clone(), b.hash());
        }
        self.main.truncate(fork_height as usize + 1);
        self.main.extend(path.iter().copied());
        if let Some(l) = scratch {
            self.ledger = l;
        }
        let new_head = *self.head();
        let (returned, reversed) = self.sort_abandoned(&rolled_back, &applied);
        let prune = self.prune(store, new_head.height)?;
        let depth = rolled_back.len() as u64;
        if depth > 0 {
            self.stats.reorgs += 1;
            *self.stats.reorg_depths.entry(depth).or_default() += 1;
            self.stats.reorg_depth_max = self.stats.reorg_depth_max.max(depth);
        }
        Ok(Some(Change {
            write: PowWrite {
                rollback,
                blocks,
                prune,
            },
            old_head: head,
            new_head,
            rolled_back,
            applied,
            returned,
            reversed,
        }))
    }

    /// Splits the abandoned blocks' transactions: on the new branch too (re-included), spent
    /// by it otherwise (reversed), or neither (returned to the mempool).
    fn sort_abandoned(
        &mut self,
        rolled_back: &[Block],
        applied: &[Block],
    ) -> (Vec<Transaction>, Vec<Transaction>) {
        let adopted: HashSet<TxId> = applied
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.id()))
            .collect();
        let (mut returned, mut reversed) = (Vec::new(), Vec::new());
        for tx in rolled_back.iter().rev().flat_map(|b| b.txs.iter()) {
            if adopted.contains(&tx.id()) {
                self.stats.txs_reincluded += 1;
                continue;
            }
            let spent = tx
                .as_transfer()
                .is_some_and(|t| t.transfer.nonce < self.ledger.account(&t.transfer.from).nonce);
            if spent {
                self.stats.txs_reversed += 1;
                reversed.push(tx.clone());
            } else {
                self.stats.txs_returned += 1;
                returned.push(tx.clone());
            }
        }
        (returned, reversed)
    }

    /// Undo records deeper than the undo depth are no longer needed; side blocks forking below
    /// that floor can never win.
    fn prune(&mut self, store: &dyn Store, head_height: u64) -> Result<Vec<Hash>, PowError> {
        let floor = head_height.saturating_sub(self.limits.undo_depth);
        let mut out = Vec::new();
        while self.undo_floor < floor {
            self.undo_floor += 1;
            if let Some(h) = self.main_hash(self.undo_floor)
                && store.undo(&h)?.is_some()
            {
                out.push(h);
            }
        }
        // Scanning the tree costs its size: do it every so often, not every block.
        if floor < self.tree_floor + TREE_PRUNE_EVERY {
            return Ok(out);
        }
        self.tree_floor = floor;
        let main = &self.main;
        let gone = self
            .tree
            .prune_below(floor, |h, height| main.get(height as usize) == Some(h));
        for h in gone {
            self.take_side(&h);
        }
        Ok(out)
    }
}

/// A block's encoded size without encoding it.
fn encoded_len(block: &Block) -> usize {
    Header::MIN_LEN
        + 40
        + 5
        + block
            .txs
            .iter()
            .map(Transaction::encoded_len)
            .sum::<usize>()
}
