//! Selfish mining (Eyal & Sirer 2014, Algorithm 1) by a pool with hash share `alpha`, against
//! honest miners who break ties by first seen (γ = 0), at fixed difficulty and with no network
//! delay. The pool keeps its blocks private and publishes to stay ahead:
//! - its own block found on a tie (state 0′) wins the race: publish the branch;
//! - an honest block when the pool is not ahead: adopt the public chain;
//! - an honest block when one ahead: publish the last block (a tie, state 0′);
//! - when two ahead: publish everything (the honest block is orphaned);
//! - when more ahead: publish the first unpublished block.
//!
//! The pool's share of the honest replica's final main chain is compared with eq. (8) of the
//! paper ([`analysis::selfish_revenue`]).

use quire_chain::pow::Retarget;
use quire_chain::{Block, Hash};

use super::analysis;
use super::{Node, sim_net};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub alpha: f64,
    pub blocks: u64,
    /// The pool's share of the honest replica's main chain.
    pub share: f64,
    pub formula: f64,
    /// Honest blocks orphaned by the pool.
    pub honest_orphaned: u64,
}

/// Mines `blocks` blocks in total (honest and pool) and reports the pool's share.
pub fn run(alpha: f64, blocks: u64, seed: u64) -> Row {
    let net = sim_net(Retarget::Fixed, 1000);
    let mut rng = Rng::new(seed).fork((alpha * 1000.0) as u64);
    let mut honest = Node::new(&net, 0);
    let mut pool = Node::new(&net, 1);
    // The pool's blocks not yet published, oldest first.
    let mut unpublished: Vec<Block> = Vec::new();
    // Blocks of the pool's branch since it last adopted the public chain.
    let mut branch_len = 0u64;
    let mut honest_mined = 0u64;
    for event in 0..blocks {
        let now_ms = event + 1;
        let lead_before = pool.chain.head().height as i64 - honest.chain.head().height as i64;
        if rng.unit() < alpha {
            unpublished.push(pool.mine(&[], now_ms));
            branch_len += 1;
            if lead_before == 0 && branch_len == 2 {
                publish(&mut honest, &mut unpublished, u64::MAX, now_ms);
                branch_len = 0;
            }
        } else {
            let block = honest.mine(&[], now_ms);
            honest_mined += 1;
            // The pool hears of every honest block; its own fork choice adopts the public chain
            // exactly when that has more work.
            pool.deliver(block, now_ms);
            let public = honest.chain.head().height;
            match lead_before {
                i64::MIN..=0 => {
                    unpublished.clear();
                    branch_len = 0;
                }
                1 => publish(&mut honest, &mut unpublished, public, now_ms),
                2 => {
                    publish(&mut honest, &mut unpublished, u64::MAX, now_ms);
                    branch_len = 0;
                }
                _ => publish(&mut honest, &mut unpublished, public, now_ms),
            }
        }
    }
    let head = honest.chain.head().height;
    let mut pool_blocks = 0;
    for h in 1..=head {
        let hash = honest.chain.main_hash(h).unwrap_or(Hash::ZERO);
        if honest
            .chain
            .header(&hash)
            .is_some_and(|hd| hd.proposer == 1)
        {
            pool_blocks += 1;
        }
    }
    Row {
        alpha,
        blocks,
        share: pool_blocks as f64 / head as f64,
        formula: analysis::selfish_revenue(alpha, 0.0),
        honest_orphaned: honest_mined.saturating_sub(head - pool_blocks),
    }
}

/// Publishes the pool's unpublished blocks up to height `up_to`.
fn publish(honest: &mut Node, unpublished: &mut Vec<Block>, up_to: u64, now_ms: u64) {
    let keep = unpublished.split_off(
        unpublished
            .iter()
            .position(|b| b.header.height > up_to)
            .unwrap_or(unpublished.len()),
    );
    for block in unpublished.drain(..) {
        honest.deliver(block, now_ms);
    }
    *unpublished = keep;
}
