//! Honest miners over a network with delay: how often blocks go stale. With block interval `T`
//! and a propagation delay `d`, a block is stale when another miner finds a competing block
//! before hearing of it; for small `d/T` the rate is about `1 − e^(−d/T)` (each of the others
//! keeps mining the old tip for `d`). Every block is delivered to every other miner `delay_ms`
//! after it is found; each miner mines on its own head (first seen on ties).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use quire_chain::Block;
use quire_chain::pow::Retarget;

use super::{Node, sim_net};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct Report {
    pub miners: usize,
    pub delay_ms: u64,
    pub interval_ms: u64,
    pub blocks_found: u64,
    pub main_chain: u64,
    /// `1 − main_chain / blocks_found`.
    pub stale_rate: f64,
    /// `1 − e^(−d/T)`.
    pub approximation: f64,
    pub reorgs: u64,
    pub reorg_depth_max: u64,
    /// Whether every miner ended on the same chain below the last few blocks.
    pub agreed: bool,
}

enum Event {
    Find(usize),
    Deliver(usize, Box<Block>),
}

/// Runs until `blocks` blocks are found, equal shares, fixed difficulty at `interval_ms`.
pub fn run(miners: usize, delay_ms: u64, interval_ms: u64, blocks: u64, seed: u64) -> Report {
    let net = sim_net(Retarget::Fixed, interval_ms);
    let mut rng = Rng::new(seed).fork(delay_ms * 7919 + miners as u64);
    let mut nodes: Vec<Node> = (0..miners).map(|i| Node::new(&net, i as u32)).collect();
    let rate = 1.0 / (interval_ms as f64 * miners as f64);
    // (time µs, sequence) → event; the sequence keeps equal times in a fixed order.
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut events: Vec<Option<Event>> = Vec::new();
    let push = |queue: &mut BinaryHeap<Reverse<(u64, u64, usize)>>,
                events: &mut Vec<Option<Event>>,
                at_us: u64,
                e: Event| {
        events.push(Some(e));
        let i = events.len() - 1;
        queue.push(Reverse((at_us, i as u64, i)));
    };
    for i in 0..miners {
        let at = (rng.exp(rate) * 1000.0) as u64;
        push(&mut queue, &mut events, at, Event::Find(i));
    }
    let mut found = 0;
    while found < blocks {
        let Some(Reverse((at_us, _, index))) = queue.pop() else {
            break;
        };
        let now_ms = at_us / 1000 + 1;
        match events[index].take() {
            Some(Event::Find(i)) => {
                found += 1;
                let block = nodes[i].mine(&[], now_ms);
                for j in (0..miners).filter(|j| *j != i) {
                    let e = Event::Deliver(j, Box::new(block.clone()));
                    push(&mut queue, &mut events, at_us + delay_ms * 1000, e);
                }
                let next = at_us + (rng.exp(rate) * 1000.0) as u64 + 1;
                push(&mut queue, &mut events, next, Event::Find(i));
            }
            Some(Event::Deliver(j, block)) => {
                nodes[j].deliver(*block, now_ms);
            }
            None => {}
        }
    }
    // Let the last blocks arrive.
    while let Some(Reverse((at_us, _, index))) = queue.pop() {
        if let Some(Event::Deliver(j, block)) = events[index].take() {
            nodes[j].deliver(*block, at_us / 1000 + 1);
        }
    }
    let main_chain = nodes
        .iter()
        .map(|n| n.chain.head().height)
        .max()
        .unwrap_or(0);
    let settled = main_chain.saturating_sub(6);
    let agreed = nodes
        .iter()
        .all(|n| n.chain.main_hash(settled) == nodes[0].chain.main_hash(settled));
    Report {
        miners,
        delay_ms,
        interval_ms,
        blocks_found: found,
        main_chain,
        stale_rate: 1.0 - main_chain as f64 / found as f64,
        approximation: 1.0 - (-(delay_ms as f64) / interval_ms as f64).exp(),
        reorgs: nodes.iter().map(|n| n.chain.stats.reorgs).sum(),
        reorg_depth_max: nodes
            .iter()
            .map(|n| n.chain.stats.reorg_depth_max)
            .max()
            .unwrap_or(0),
        agreed,
    }
}
