//! The simulator's proof-of-work mode: miners in seeded virtual time, each finding blocks after
//! exponential waits in proportion to its share of the hash power, over a network with delays,
//! running the real block rules, fork choice, reorgs, store and ledger ([`quire_chain::pow`]).
//! Mining is real sha256 over real headers; the simulated target is easy (a handful of hashes
//! per block), so virtual time, not grinding, decides who finds the next block.
//!
//! Three experiments whose answers are known in closed form or by approximation:
//! [`double_spend`] (Rosenfeld 2014; Nakamoto 2008), [`selfish`] (Eyal & Sirer 2014), and
//! [`network`] (stale blocks against `1 − e^(−d/T)`). docs/pow.md states each model exactly.

pub mod analysis;
pub mod double_spend;
pub mod network;
pub mod selfish;

use quire_chain::pow::{Limits, PowChain, PowParams, Received, Retarget};
use quire_chain::store::{MemoryStore, Store};
use quire_chain::testkit::{TestNet, easy_pow, mine};
use quire_chain::{Block, Transaction};

/// A simulated replica: its store and its chain.
pub struct Node {
    pub id: u32,
    pub store: MemoryStore,
    pub chain: PowChain,
}

impl Node {
    pub fn new(net: &TestNet, id: u32) -> Node {
        let store = MemoryStore::new(&net.genesis);
        let chain = PowChain::open(&net.genesis, &store, Limits::default())
            .expect("a PoW genesis opens on an empty store");
        Node { id, store, chain }
    }

    /// A copy of this node as it stands (store included): cheaper than opening a new one, and
    /// it keeps the signature verdicts the original already made.
    pub fn copy(&self, id: u32) -> Node {
        Node {
            id,
            store: self.store.snapshot(),
            chain: self.chain.clone(),
        }
    }

    /// Mines a block on this node's head at virtual time `now_ms` and takes it as its own.
    pub fn mine(&mut self, txs: &[Transaction], now_ms: u64) -> Block {
        let block = mine(&mut self.chain, txs, self.id, now_ms);
        self.deliver(block.clone(), now_ms);
        block
    }

    /// Receives a block through the real rules and makes a head change durable, as a node does.
    pub fn deliver(&mut self, block: Block, now_ms: u64) -> Received {
        match self.chain.receive(&self.store, block, now_ms) {
            Ok(received) => {
                if let Received::NewHead(change) = &received {
                    self.store
                        .write_pow(&change.write)
                        .expect("the memory store accepts a checked write");
                }
                received
            }
            Err(e) => panic!("node {}: a simulated block was refused: {e}", self.id),
        }
    }
}

/// The simulated network's genesis: a few accounts, an easy target, fixed or per-block
/// retargeting with interval `interval_ms`.
pub fn sim_net(retarget: Retarget, interval_ms: u64) -> TestNet {
    let pow = PowParams {
        retarget,
        target_interval_ms: interval_ms,
        ..easy_pow(2)
    };
    TestNet::with_pow(4, 6, 0, pow)
}
