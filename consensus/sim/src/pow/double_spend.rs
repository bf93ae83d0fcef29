//! Double spending against a merchant who waits for `z` confirmations, attacker share `q`.
//!
//! The model (Rosenfeld 2014's, stated exactly; docs/pow.md):
//! - Difficulty is fixed and the network has no delay, so blocks are a race of two Poisson
//!   processes: the honest miners (share `p = 1 − q`) and the attacker (`q`).
//! - The attacker's branch starts with **one block pre-mined**: at time 0 it holds, unpublished,
//!   a block on the common tip that pays its own account with the coins the payment will use
//!   (the same sender and nonce). Then the payment is sent; honest miners put it in their next
//!   block.
//! - The merchant (an honest replica) **accepts** when the payment's block has `z`
//!   confirmations on its main chain (the block itself is one).
//! - After that, the attacker publishes its branch the moment it has more work than the honest
//!   chain; the merchant's replica reorganises (the real fork choice and reorg code), and the
//!   attack **succeeds** if the payment is then reversed there. An attacker already ahead at
//!   acceptance publishes at once.
//! - The attacker **gives up** when `give_up` blocks behind the honest chain (after
//!   acceptance).
//!
//! Its exact success probability is [`analysis::double_spend_exact`]; Rosenfeld's closed form
//! is the same without giving up (the difference is below `(q/p)^(give_up+1)`).

use quire_chain::pow::Retarget;

use super::analysis;
use super::{Node, sim_net};
use crate::rng::Rng;

/// The default point at which the attacker gives up: `(0.3/0.7)^11 < 1e-4`.
pub const GIVE_UP: u64 = 10;

#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub q: f64,
    pub z: u64,
    pub trials: u64,
    pub successes: u64,
    /// The exact value for the simulated model.
    pub analytical: f64,
    /// The 99% binomial interval of the analytical value, as rates.
    pub interval: (f64, f64),
    pub rosenfeld: f64,
    pub nakamoto: f64,
}

impl Row {
    pub fn measured(&self) -> f64 {
        self.successes as f64 / self.trials as f64
    }

    pub fn inside(&self) -> bool {
        let m = self.measured();
        self.interval.0 <= m && m <= self.interval.1
    }
}

/// Runs `trials` attacks at (q, z) from `seed`.
pub fn run(q: f64, z: u64, trials: u64, seed: u64) -> Row {
    let net = sim_net(Retarget::Fixed, 1000);
    let payment = net.transfer(0, 1, 500, 0);
    let double_spend = net.transfer(0, 2, 500, 0);
    let mut rng = Rng::new(seed).fork((q * 1000.0) as u64 * 100 + z);
    // Every trial starts from this node: its verdicts on the two signatures are made once.
    let mut start = Node::new(&net, 0);
    for tx in [&payment, &double_spend] {
        start.chain.verdicts().verify(tx, &net.chain_id());
    }
    let mut successes = 0;
    for _ in 0..trials {
        if trial(&net, &start, q, z, &payment, &double_spend, &mut rng) {
            successes += 1;
        }
    }
    let analytical = analysis::double_spend_exact(q, z, GIVE_UP);
    Row {
        q,
        z,
        trials,
        successes,
        analytical,
        interval: analysis::binomial_interval(trials, analytical, 0.99),
        rosenfeld: analysis::rosenfeld(q, z),
        nakamoto: analysis::nakamoto(q, z),
    }
}

fn trial(
    net: &quire_chain::testkit::TestNet,
    start: &Node,
    q: f64,
    z: u64,
    payment: &quire_chain::Transaction,
    double_spend: &quire_chain::Transaction,
    rng: &mut Rng,
) -> bool {
    let mut merchant = start.copy(0);
    let mut attacker = start.copy(1);
    let mut now_ms = 1;
    let mut private = vec![attacker.mine(std::slice::from_ref(double_spend), now_ms)];
    let mut payment_block = None;
    loop {
        now_ms += 1;
        if rng.unit() < q {
            private.push(attacker.mine(&[], now_ms));
        } else {
            let pending: &[_] = if payment_block.is_none() {
                std::slice::from_ref(payment)
            } else {
                &[]
            };
            let block = merchant.mine(pending, now_ms);
            if payment_block.is_none() {
                payment_block = Some(block.hash());
            }
        }
        let Some(paid) = payment_block else {
            continue;
        };
        let confirmations = merchant.chain.confirmations(&paid);
        if confirmations < z {
            continue;
        }
        // Accepted. Publish as soon as the private branch carries more work.
        if attacker.chain.head_work() > merchant.chain.head_work() {
            for block in private.drain(..) {
                merchant.deliver(block, now_ms);
            }
            return merchant.chain.confirmations(&paid) == 0
                && merchant
                    .chain
                    .ledger()
                    .account(&net.account_keys[2].address())
                    .balance
                    > quire_chain::testkit::TEST_BALANCE;
        }
        if merchant.chain.head().height >= attacker.chain.head().height + GIVE_UP {
            return false;
        }
    }
}
