//! The `double-spend` behaviour's race, as bookkeeping without I/O: the attacker holds a signed
//! transfer that conflicts with a payment it expects (same sender and nonce, another recipient).
//! From the moment the payment is seen it mines a private branch from its head, whose first block
//! holds the conflicting transfer, and holds back the public blocks from its own chain (an input
//! filter: its chain stays on the private branch, so its miner keeps extending it). It releases the
//! branch once the payment has the merchant's `k` confirmations on the public chain **and** the
//! private branch's tip has more cumulative work than the public tip (the fork choice every
//! replica makes); it gives up when the public tip is `give_up_behind` blocks higher (the model of docs/pow.md, live: no pre-mined
//! block). The driver (`driver.rs`) feeds it blocks and carries out its decisions with real
//! blocks and the normal fork-choice rules on every replica.

use std::collections::HashMap;

use quire_chain::block::Header;
use quire_chain::pow::{Work, work};
use quire_chain::tx::SignedTransfer;
use quire_chain::{Block, Hash, Transaction, TxId};

/// Bounds on what a race keeps in memory: past these the attacker gives up.
pub const PRIVATE_BLOCKS_MAX: usize = 64;
pub const HELD_BLOCKS_MAX: usize = 512;

/// What the operator asked for: the conflicting transfer and when to release it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// A signed transfer (the payment's sender and nonce, the attacker's recipient).
    pub conflict: Transaction,
    /// The merchant's `k`: the branch is held at least until the payment is this deep.
    pub confirmations: u64,
    /// Give up when the public chain is this many blocks longer than the private branch.
    pub give_up_behind: u64,
}

impl Order {
    /// `None` unless `conflict` is a transfer and both numbers are at least 1.
    pub fn new(conflict: Transaction, confirmations: u64, give_up_behind: u64) -> Option<Order> {
        (conflict.as_transfer().is_some() && confirmations >= 1 && give_up_behind >= 1).then_some(
            Order {
                conflict,
                confirmations,
                give_up_behind,
            },
        )
    }

    pub fn transfer(&self) -> Option<&SignedTransfer> {
        self.conflict.as_transfer()
    }

    /// Whether `tx` is the payment this order reverses: the same sender and nonce, another
    /// transaction (a payment to the attacker's own recipient would reverse nothing).
    pub fn is_payment(&self, tx: &Transaction) -> bool {
        match (self.transfer(), tx.as_transfer()) {
            (Some(c), Some(t)) => {
                t.transfer.from == c.transfer.from
                    && t.transfer.nonce == c.transfer.nonce
                    && t.transfer.to != c.transfer.to
                    && tx.id() != self.conflict.id()
            }
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Hold,
    Release,
    GiveUp,
}

/// A held public block, linked to a block the attacker knows.
#[derive(Clone, Debug)]
struct PublicBlock {
    parent: Hash,
    height: u64,
    /// Cumulative work.
    work: Work,
    has_payment: bool,
}

/// Where the public chain's best tip stands (the fork point until a public block is linked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicView {
    pub height: u64,
    /// Cumulative work.
    pub work: Work,
    /// Confirmations of the payment on the public chain's best branch (0: not on it).
    pub payment_confirmations: u64,
}

#[derive(Clone, Debug)]
pub struct Race {
    pub order: Order,
    pub payment: TxId,
    pub fork: Hash,
    pub fork_height: u64,
    fork_work: Work,
    private: Vec<Block>,
    /// Cumulative work of the private tip.
    private_work: Work,
    public: HashMap<Hash, PublicBlock>,
    /// Public hashes in the order first seen (ties in work go to the first).
    seen: Vec<Hash>,
    /// Public blocks held back from the attacker's chain, in arrival order.
    held: Vec<Block>,
    /// Held blocks whose parent has not been seen (yet).
    unlinked: Vec<(Hash, Header, bool)>,
}

impl Race {
    /// A race from `fork` (the attacker's head, of cumulative work `fork_work`).
    pub fn new(order: Order, payment: TxId, fork: &Header, fork_work: Work) -> Race {
        Race {
            order,
            payment,
            fork: fork.hash(),
            fork_height: fork.height,
            fork_work: fork_work.clone(),
            private: Vec::new(),
            private_work: fork_work,
            public: HashMap::new(),
            seen: Vec::new(),
            held: Vec::new(),
            unlinked: Vec::new(),
        }
    }

    /// Private blocks mined so far (unpublished).
    pub fn private_blocks(&self) -> u64 {
        self.private.len() as u64
    }

    pub fn held_blocks(&self) -> usize {
        self.held.len()
    }

    pub fn is_held(&self, hash: &Hash) -> bool {
        self.public.contains_key(hash) || self.unlinked.iter().any(|(h, _, _)| h == hash)
    }

    /// A block the attacker's miner sealed on the private branch's tip.
    pub fn on_private(&mut self, block: Block) {
        if let Some(seal) = block.header.pow {
            self.private_work += work(&seal.target);
        }
        self.private.push(block);
    }

    /// A public block (its work already checked). `known` gives the height and cumulative work
    /// of a block in the attacker's own tree (the fork point, its ancestors, side blocks).
    /// Returns false if it could not be linked (its parent is unknown so far: the caller may
    /// fetch).
    pub fn on_public(
        &mut self,
        block: Block,
        known: &dyn Fn(&Hash) -> Option<(u64, Work)>,
    ) -> bool {
        let hash = block.hash();
        if self.is_held(&hash) {
            return true;
        }
        let has_payment = block.txs.iter().any(|t| t.id() == self.payment);
        let header = block.header;
        self.held.push(block);
        self.unlinked.push((hash, header, has_payment));
        self.link_waiting(known);
        self.public.contains_key(&hash)
    }

    /// Links every waiting header whose parent is a linked public block or a known block.
    fn link_waiting(&mut self, known: &dyn Fn(&Hash) -> Option<(u64, Work)>) {
        loop {
            let mut found = None;
            for (i, (_, h, _)) in self.unlinked.iter().enumerate() {
                let base = match self.public.get(&h.parent_hash) {
                    Some(p) => Some((p.height, p.work.clone())),
                    None => known(&h.parent_hash),
                };
                if let Some(base) = base {
                    found = Some((i, base));
                    break;
                }
            }
            let Some((at, (parent_height, base))) = found else {
                return;
            };
            let (hash, header, has_payment) = self.unlinked.swap_remove(at);
            let height = parent_height + 1;
            let own = header.pow.map_or(Work::ZERO, |s| work(&s.target));
            self.public.insert(
                hash,
                PublicBlock {
                    parent: header.parent_hash,
                    height,
                    work: base + own,
                    has_payment,
                },
            );
            self.seen.push(hash);
        }
    }

    /// The public chain's best branch from the fork point (most work, first seen on a tie).
    pub fn public_view(&self) -> PublicView {
        let mut best: Option<&Hash> = None;
        for h in &self.seen {
            let better = match best.and_then(|b| self.public.get(b)) {
                None => true,
                Some(b) => self.public.get(h).is_some_and(|p| p.work > b.work),
            };
            if better {
                best = Some(h);
            }
        }
        let Some(tip) = best.and_then(|h| self.public.get(h)) else {
            return PublicView {
                height: self.fork_height,
                work: self.fork_work.clone(),
                payment_confirmations: 0,
            };
        };
        let mut payment_confirmations = 0;
        let mut at = Some(tip);
        while let Some(b) = at {
            if b.has_payment {
                payment_confirmations = tip.height - b.height + 1;
                break;
            }
            at = self.public.get(&b.parent);
        }
        PublicView {
            height: tip.height,
            work: tip.work.clone(),
            payment_confirmations,
        }
    }

    pub fn private_height(&self) -> u64 {
        self.fork_height + self.private_blocks()
    }

    /// Release once the payment is `k` deep and the private tip has more work; give up when
    /// `give_up_behind` blocks behind or past the memory bounds; hold otherwise.
    pub fn decide(&self) -> Decision {
        let public = self.public_view();
        if public.payment_confirmations >= self.order.confirmations
            && self.private_work > public.work
        {
            return Decision::Release;
        }
        if public.height >= self.private_height() + self.order.give_up_behind
            || self.private.len() >= PRIVATE_BLOCKS_MAX
            || self.held.len() >= HELD_BLOCKS_MAX
        {
            return Decision::GiveUp;
        }
        Decision::Hold
    }

    /// The race's blocks: the private branch (oldest first) and the held public blocks (in
    /// arrival order).
    pub fn into_blocks(self) -> (Vec<Block>, Vec<Block>) {
        (self.private, self.held)
    }
}

/// How a race ended, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub released: bool,
    pub private_blocks: u64,
    /// The public tip's height above the fork point.
    pub public_blocks: u64,
    pub payment_confirmations: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use quire_chain::block::PowSeal;
    use quire_chain::pow::target_for_hashes;
    use quire_chain::testkit::TestNet;

    fn header(parent: &Header, hashes: u128, salt: u64) -> Header {
        Header {
            height: parent.height + 1,
            parent_hash: parent.hash(),
            timestamp_ms: parent.timestamp_ms + 1 + salt,
            pow: Some(PowSeal {
                target: target_for_hashes(hashes),
                nonce: salt,
            }),
            ..*parent
        }
    }

    fn block(header: Header, txs: Vec<Transaction>) -> Block {
        Block {
            header,
            txs,
            certificate: None,
        }
    }

    /// The attacker's tree holds only the fork point (work 0).
    fn known(fork: &Header) -> impl Fn(&Hash) -> Option<(u64, Work)> {
        let (hash, height) = (fork.hash(), fork.height);
        move |h: &Hash| (*h == hash).then_some((height, Work::ZERO))
    }

    fn public(race: &mut Race, fork: &Header, b: Block) -> bool {
        race.on_public(b, &known(fork))
    }

    struct Setup {
        net: TestNet,
        fork: Header,
        payment: Transaction,
        order: Order,
    }

    fn setup(k: u64, give_up: u64) -> Setup {
        let net = TestNet::with_pow(4, 3, 0, quire_chain::testkit::easy_pow(2));
        let fork = net.genesis.block().header;
        let payment = net.transfer(0, 1, 50, 0);
        let conflict = net.transfer(0, 2, 50, 0);
        let order = Order::new(conflict, k, give_up).unwrap();
        Setup {
            net,
            fork,
            payment,
            order,
        }
    }

    /// The payment is the same sender and nonce paid elsewhere; the conflict itself, another
    /// nonce or another sender is not.
    #[test]
    fn the_payment_is_the_senders_other_transfer_at_the_conflicts_nonce() {
        let s = setup(1, 10);
        assert!(s.order.is_payment(&s.payment));
        assert!(!s.order.is_payment(&s.order.conflict));
        assert!(!s.order.is_payment(&s.net.transfer(0, 1, 50, 1)));
        assert!(!s.order.is_payment(&s.net.transfer(1, 0, 50, 0)));
        assert!(Order::new(s.payment.clone(), 0, 10).is_none());
        assert!(Order::new(s.payment, 1, 0).is_none());
    }

    /// Rosenfeld's attacker publishes only once the merchant accepted (k deep) and its branch
    /// has more work: ahead but before acceptance it holds; equal work is not more work.
    #[test]
    fn the_branch_is_released_only_when_k_deep_and_ahead_in_work() {
        let s = setup(2, 10);
        let mut race = Race::new(s.order.clone(), s.payment.id(), &s.fork, Work::ZERO);
        // The attacker mines two blocks first: ahead, but the payment is not even public.
        let p1 = header(&s.fork, 1000, 1);
        race.on_private(block(p1, vec![s.order.conflict.clone()]));
        race.on_private(block(header(&p1, 1000, 2), vec![]));
        assert_eq!(race.decide(), Decision::Hold);
        // The payment's block: 1 confirmation, the attacker still ahead, but k = 2.
        let h1 = header(&s.fork, 1000, 3);
        assert!(public(
            &mut race,
            &s.fork,
            block(h1, vec![s.payment.clone()])
        ));
        assert_eq!(race.public_view().payment_confirmations, 1);
        assert_eq!(race.decide(), Decision::Hold);
        // A second public block: k deep, but the work is equal.
        let h2 = header(&h1, 1000, 4);
        assert!(public(&mut race, &s.fork, block(h2, vec![])));
        assert_eq!(race.public_view().payment_confirmations, 2);
        assert_eq!(race.decide(), Decision::Hold);
        race.on_private(block(header(&p1, 1000, 5), vec![]));
        assert_eq!(race.decide(), Decision::Release);
        let (private, held) = race.into_blocks();
        assert_eq!((private.len(), held.len()), (3, 2));
    }

    /// Work, not height: a public branch of fewer, harder blocks is ahead of more easy ones.
    #[test]
    fn the_race_is_judged_by_work_not_height() {
        let s = setup(1, 10);
        let mut race = Race::new(s.order.clone(), s.payment.id(), &s.fork, Work::ZERO);
        let hard = header(&s.fork, 10_000, 1);
        public(&mut race, &s.fork, block(hard, vec![s.payment.clone()]));
        let p1 = header(&s.fork, 1000, 2);
        race.on_private(block(p1, vec![s.order.conflict.clone()]));
        race.on_private(block(header(&p1, 1000, 3), vec![]));
        assert_eq!(race.decide(), Decision::Hold);
    }

    /// A public block whose parent has not arrived waits, and is linked (with its work) when it
    /// does; the payment's depth counts from the best branch.
    #[test]
    fn public_blocks_out_of_order_are_linked_when_their_parent_arrives() {
        let s = setup(3, 10);
        let mut race = Race::new(s.order.clone(), s.payment.id(), &s.fork, Work::ZERO);
        let h1 = header(&s.fork, 1000, 1);
        let h2 = header(&h1, 1000, 2);
        let h3 = header(&h2, 1000, 3);
        assert!(!public(&mut race, &s.fork, block(h3, vec![])));
        assert!(!public(&mut race, &s.fork, block(h2, vec![])));
        assert_eq!(race.public_view().height, 0);
        assert!(public(
            &mut race,
            &s.fork,
            block(h1, vec![s.payment.clone()])
        ));
        let view = race.public_view();
        assert_eq!((view.height, view.payment_confirmations), (3, 3));
        assert!(race.is_held(&h2.hash()));
        // The same block again changes nothing.
        assert!(public(&mut race, &s.fork, block(h2, vec![])));
        assert_eq!(race.held_blocks(), 3);
    }

    /// The attacker gives up `give_up_behind` blocks behind the public chain.
    #[test]
    fn the_attacker_gives_up_far_behind() {
        let s = setup(1, 3);
        let mut race = Race::new(s.order.clone(), s.payment.id(), &s.fork, Work::ZERO);
        race.on_private(block(
            header(&s.fork, 1000, 1),
            vec![s.order.conflict.clone()],
        ));
        let mut parent = s.fork;
        for i in 0..3 {
            let h = header(&parent, 1000, 10 + i);
            let txs = if i == 0 {
                vec![s.payment.clone()]
            } else {
                vec![]
            };
            public(&mut race, &s.fork, block(h, txs));
            parent = h;
            assert_eq!(race.decide(), Decision::Hold, "after {} public", i + 1);
        }
        public(&mut race, &s.fork, block(header(&parent, 1000, 20), vec![]));
        assert_eq!(race.decide(), Decision::GiveUp);
    }
}
