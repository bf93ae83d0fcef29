//! The proof-of-work chain against its rules: fork choice by work, reorgs that restore exactly
//! the winning branch's state, what is refused and why, and bounded pools.

use super::*;
use crate::block::Block;
use crate::codec::{Decode, Encode};
use crate::genesis::{Genesis, GenesisError};
use crate::merkle;
use crate::store::{MemoryStore, Store};
use crate::testkit::{TestNet, easy_pow, mine};
use crate::tx::Transaction;

const NOW: u64 = 1_000_000_000;

struct Replica {
    store: MemoryStore,
    chain: PowChain,
}

impl Replica {
    fn new(net: &TestNet) -> Replica {
        Self::with_limits(net, Limits::default())
    }

    fn with_limits(net: &TestNet, limits: Limits) -> Replica {
        let store = MemoryStore::new(&net.genesis);
        let chain = PowChain::open(&net.genesis, &store, limits).unwrap();
        Replica { store, chain }
    }

    /// Receives a block and, as a node does, makes a head change durable.
    fn deliver(&mut self, block: Block) -> Result<Received, PowError> {
        let received = self.chain.receive(&self.store, block, NOW)?;
        if let Received::NewHead(change) = &received {
            self.store.write_pow(&change.write).unwrap();
        }
        Ok(received)
    }

    /// Mines a block at `timestamp_ms` and takes it as its own.
    fn mine(&mut self, txs: &[Transaction], timestamp_ms: u64) -> Block {
        let block = mine(&mut self.chain, txs, 0, timestamp_ms);
        assert!(matches!(
            self.deliver(block.clone()),
            Ok(Received::NewHead(_))
        ));
        block
    }

    /// Mines `count` blocks `interval_ms` apart after the head's timestamp.
    fn mine_run(&mut self, count: usize, interval_ms: u64) -> Vec<Block> {
        (0..count)
            .map(|_| {
                let ts = self.chain.head().timestamp_ms + interval_ms;
                self.mine(&[], ts)
            })
            .collect()
    }

    fn state_root(&mut self) -> crate::Hash {
        self.chain.ledger_mut().state_root()
    }
}

fn net() -> TestNet {
    TestNet::with_pow(4, 6, 0, easy_pow(4))
}

/// The state a branch gives when executed from the genesis by a replica that never saw
/// anything else.
fn fresh_state_root(net: &TestNet, blocks: &[Block]) -> crate::Hash {
    let mut fresh = Replica::new(net);
    for b in blocks {
        fresh.deliver(b.clone()).unwrap();
    }
    assert_eq!(fresh.chain.head().hash(), blocks.last().unwrap().hash());
    fresh.state_root()
}

/// Fork choice follows cumulative work, never height: a five-block branch of fast blocks
/// (harder targets) beats a six-block branch of slow ones.
#[test]
fn fork_choice_is_by_cumulative_work_not_height() {
    let net = net();
    let mut x = Replica::new(&net);
    let mut y = Replica::new(&net);
    let interval = net.genesis.pow.unwrap().target_interval_ms;
    let common = x.mine_run(2, interval);
    for b in &common {
        y.deliver(b.clone()).unwrap();
    }
    let long = x.mine_run(6, 4 * interval);
    let short = y.mine_run(5, 1);
    let long_work = x.chain.head_work().clone();
    let short_work = y.chain.head_work().clone();
    assert!(short_work > long_work, "the short branch carries more work");
    assert!(x.chain.head().height > y.chain.head().height);
    let mut depths = Vec::new();
    for b in &short {
        if let Received::NewHead(change) = x.deliver(b.clone()).unwrap() {
            depths.push(change.depth());
        }
    }
    // The fast branch overtakes at its fourth block (more work, still shorter) and grows on.
    assert_eq!(depths, vec![6, 0]);
    assert_eq!(x.chain.head().hash(), short[4].hash());
    assert!(x.chain.tree().contains(&long[5].hash()));
    // And the long branch, delivered to the short one's miner, changes nothing.
    for b in &long {
        assert!(matches!(y.deliver(b.clone()), Ok(Received::Side)));
    }
    assert_eq!(y.chain.head().hash(), short[4].hash());
}

/// On equal work the block seen first stays.
#[test]
fn ties_go_to_the_first_seen() {
    let net = net();
    let mut x = Replica::new(&net);
    let mut y = Replica::new(&net);
    let a = x.mine(&[], 100);
    let b = y.mine(&[], 200);
    assert_eq!(x.chain.work(&a.hash()), y.chain.work(&b.hash()));
    assert!(matches!(x.deliver(b.clone()), Ok(Received::Side)));
    assert_eq!(x.chain.head().hash(), a.hash());
    assert!(matches!(y.deliver(a), Ok(Received::Side)));
    assert_eq!(y.chain.head().hash(), b.hash());
}

/// A reorg leaves exactly the winning branch's state (the state root of executing it from the
/// genesis), in memory and in the store; an abandoned transaction the new branch did not spend
/// returns to the mempool, and the double spend the new branch carries reverses the payment
/// that was visible at k = 1 (and was never final at k).
#[test]
fn a_reorg_restores_the_winning_branch_and_returns_orphaned_transactions() {
    let net = net();
    let mut x = Replica::new(&net);
    let mut y = Replica::new(&net);
    let common = x.mine_run(1, 1000);
    y.deliver(common[0].clone()).unwrap();
    let pay_merchant = net.transfer(0, 1, 500, 0);
    let other = net.transfer(2, 3, 40, 0);
    let double_spend = net.transfer(0, 4, 500, 0);
    let a = x.mine(&[pay_merchant.clone(), other.clone()], 2000);
    // The merchant sees its payment at one confirmation: visible at k = 1, never final at the
    // genesis's k (a client calls a transfer final only at k confirmations).
    let k = net.genesis.pow.unwrap().confirmations as u64;
    assert_eq!(x.chain.confirmations(&a.hash()), 1);
    assert!(x.chain.confirmations(&a.hash()) < k);
    let b1 = y.mine(std::slice::from_ref(&double_spend), 1500);
    let b2 = y.mine(&[net.transfer(5, 3, 1, 0)], 2500);
    x.deliver(b1.clone()).unwrap();
    let Received::NewHead(change) = x.deliver(b2.clone()).unwrap() else {
        panic!("the longer branch wins");
    };
    assert_eq!(change.depth(), 1);
    assert_eq!(change.returned, vec![other]);
    assert_eq!(change.reversed, vec![pay_merchant.clone()]);
    assert_eq!(x.chain.confirmations(&a.hash()), 0);
    let branch = [common[0].clone(), b1, b2];
    let expected = fresh_state_root(&net, &branch);
    assert_eq!(x.state_root(), expected);
    assert_eq!(x.chain.head().state_root, expected);
    let mut stored = x.store.ledger(net.chain_id()).unwrap();
    assert_eq!(stored.state_root(), expected);
    assert_eq!(x.store.head().hash(), branch[2].hash());
    // The index follows the new branch: the payment is gone, the double spend is there.
    assert_eq!(x.store.tx_location(&pay_merchant.id()).unwrap(), None);
    assert_eq!(
        x.store
            .tx_location(&double_spend.id())
            .unwrap()
            .map(|l| l.height),
        Some(2)
    );
    assert_eq!(x.chain.stats.reorgs, 1);
    assert_eq!(x.chain.stats.txs_reversed, 1);
    // The mempool takes the returned transaction back and refuses the reversed one.
    let mut pool = Mempool::new(100);
    for tx in change.returned.iter().chain(&change.reversed) {
        pool.insert(x.chain.ledger(), tx.clone());
    }
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.candidates(x.chain.ledger(), 10), change.returned);
}

/// A block fails on each rule alone: work, target, timestamps, transactions, miner, limit.
#[test]
fn blocks_that_break_a_rule_are_refused() {
    let net = net();
    let mut x = Replica::new(&net);
    x.mine_run(3, 1000);
    let rules = x.chain.rules().clone();
    let ts = x.chain.head().timestamp_ms + 1000;
    let valid = mine(&mut x.chain, &[], 0, ts);
    let refused = |x: &mut Replica, b: Block| match x.deliver(b) {
        Err(PowError::Refused(e)) => e.name(),
        other => panic!("accepted: {other:?} {:?}", x.chain.stats.rejected),
    };
    let reseal = |mut b: Block| {
        let mut start = 0;
        while !grind(&mut b.header, start, 1 << 12) {
            start += 1 << 12;
        }
        b
    };
    // Not enough work: a nonce whose hash is above the target.
    let mut weak = valid.clone();
    let target = valid.header.pow.unwrap().target;
    for nonce in 0.. {
        weak.header.pow.as_mut().unwrap().nonce = nonce;
        if !meets_target(&weak.header.hash(), &target) {
            break;
        }
    }
    assert_eq!(refused(&mut x, weak), "insufficient_work");
    // A target the retarget rule does not give (still met by the hash).
    let mut wrong = valid.clone();
    let mut easier = work::to_number(&valid.header.pow.unwrap().target);
    easier += 1u8;
    wrong.header.pow.as_mut().unwrap().target = {
        let bytes = easier.to_bytes_be();
        let mut out = [0u8; 32];
        out[32 - bytes.len()..].copy_from_slice(&bytes);
        crate::Hash(out)
    };
    assert_eq!(refused(&mut x, reseal(wrong)), "wrong_target");
    // An absurd target: easier than the limit.
    let mut absurd = valid.clone();
    absurd.header.pow.as_mut().unwrap().target = crate::Hash([0xff; 32]);
    let limited = TestNet::with_pow(4, 6, 0, PowParams::default());
    let mut y = Replica::new(&limited);
    assert_eq!(refused(&mut y, absurd), "target_above_limit");
    // Timestamps: not after the parent, and far in the future.
    let mut stale = valid.clone();
    stale.header.timestamp_ms = x.chain.head().timestamp_ms;
    assert_eq!(refused(&mut x, reseal(stale)), "stale_timestamp");
    let mut future = valid.clone();
    future.header.timestamp_ms = NOW + rules.params.timestamp_future_ms + 1;
    assert_eq!(refused(&mut x, reseal(future)), "future_timestamp");
    // A transaction that does not apply on the parent's state (an overdraft).
    let mut overdraft = valid.clone();
    overdraft.txs = vec![net.transfer(0, 1, crate::testkit::TEST_BALANCE + 1, 0)];
    overdraft.header.tx_root = merkle::root(&overdraft.tx_ids());
    assert_eq!(refused(&mut x, reseal(overdraft)), "invalid_transaction");
    // A transaction with a forged signature.
    let mut forged = valid.clone();
    let mut tx = net.transfer(0, 1, 5, 0);
    if let Transaction::Transfer(t) = &mut tx {
        t.signature.0[3] ^= 1;
    }
    forged.txs = vec![tx];
    forged.header.tx_root = merkle::root(&forged.tx_ids());
    assert_eq!(refused(&mut x, reseal(forged)), "invalid_transaction");
    // A state root that execution does not give.
    let mut lying = valid.clone();
    lying.header.state_root = crate::Hash([7; 32]);
    assert_eq!(refused(&mut x, reseal(lying)), "wrong_execution");
    // A miner that is not a validator, a body that does not match the header.
    let mut stranger = valid.clone();
    stranger.header.proposer = 9;
    assert_eq!(refused(&mut x, reseal(stranger)), "unknown_miner");
    let mut body = valid.clone();
    body.txs = vec![net.transfer(1, 2, 5, 0)];
    assert_eq!(refused(&mut x, body), "wrong_tx_root");
    // Malformed bytes do not decode.
    let bytes = valid.to_bytes();
    for cut in [0, 10, bytes.len() - 1] {
        assert!(Block::from_bytes(&bytes[..cut]).is_err());
    }
    // None of that moved the head; the valid block still goes in.
    assert!(matches!(x.deliver(valid), Ok(Received::NewHead(_))));
    assert!(x.chain.stats.rejected.values().sum::<u64>() >= 9);
}

/// A block whose parent comes later waits in the orphan pool and is linked when it does.
#[test]
fn orphans_are_linked_when_their_parent_arrives() {
    let net = net();
    let mut x = Replica::new(&net);
    let mut y = Replica::new(&net);
    let blocks = y.mine_run(4, 1000);
    // Delivered newest first: each one's parent is the oldest missing ancestor, to fetch.
    for i in (1..4).rev() {
        let Received::Orphan { missing } = x.deliver(blocks[i].clone()).unwrap() else {
            panic!("an orphan");
        };
        assert_eq!(missing, blocks[i - 1].hash());
    }
    assert_eq!(x.chain.orphans().len(), 3);
    assert!(matches!(
        x.deliver(blocks[0].clone()),
        Ok(Received::NewHead(_))
    ));
    assert_eq!(x.chain.head().hash(), blocks[3].hash());
    assert!(x.chain.orphans().is_empty());
}

/// A branch forking deeper than the undo depth is refused and reported, and stays out.
#[test]
fn a_reorg_deeper_than_the_undo_depth_is_refused() {
    let net = net();
    let limits = Limits {
        undo_depth: 3,
        ..Limits::default()
    };
    let mut x = Replica::with_limits(&net, limits);
    let mut y = Replica::new(&net);
    x.mine_run(2, 1000);
    let attack = y.mine_run(3, 1);
    let mut refused = false;
    for b in &attack {
        match x.deliver(b.clone()) {
            Ok(Received::ReorgRefused { depth }) => {
                assert_eq!(depth, 2);
                refused = true;
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!refused, "within the undo depth a reorg is allowed");
    assert_eq!(x.chain.head().hash(), attack[2].hash());
    // Now a deeper one: x keeps mining past the undo depth; y's branch from the genesis wins on
    // work but forks too deep.
    let mut z = Replica::new(&net);
    x.mine_run(4, 1000);
    let deep = z.mine_run(9, 1);
    let mut outcome = Vec::new();
    for b in &deep {
        outcome.push(x.deliver(b.clone()));
    }
    assert!(
        outcome.iter().any(|r| matches!(
            r,
            Ok(Received::ReorgRefused { .. })
                | Err(PowError::Refused(BlockReject::BelowUndoFloor { .. }))
        )),
        "{outcome:?}"
    );
    assert!(
        x.chain.stats.reorgs_refused
            + x.chain
                .stats
                .rejected
                .get("below_undo_floor")
                .copied()
                .unwrap_or(0)
            > 0
    );
    assert_ne!(x.chain.head().hash(), deep[8].hash());
}

/// PoW and PBFT genesis files do not mix: the mode and the PoW rules are in the chain id, a
/// PBFT genesis with PoW rules is refused, and a PoW chain will not open on a PBFT genesis.
#[test]
fn pow_and_pbft_genesis_files_cannot_be_mixed() {
    let pow = net();
    let pbft = TestNet::new(4, 6);
    assert_ne!(pow.chain_id(), pbft.chain_id());
    let mut file = pbft.genesis.to_file();
    file.pow = Some(PowParams::default());
    assert!(matches!(
        Genesis::from_file(file),
        Err(GenesisError::BadProtocol(_))
    ));
    let store = MemoryStore::new(&pbft.genesis);
    assert!(matches!(
        PowChain::open(&pbft.genesis, &store, Limits::default()),
        Err(PowError::NotPow)
    ));
    // Every PoW rule is covered by the chain id.
    let changes: [fn(&mut PowParams); 6] = [
        |p| p.target_interval_ms += 1,
        |p| p.initial_target.0[31] ^= 1,
        |p| p.retarget = Retarget::Fixed,
        |p| p.retarget_damping += 1,
        |p| p.confirmations += 1,
        |p| p.timestamp_future_ms += 1,
    ];
    for change in changes {
        let mut file = pow.genesis.to_file();
        change(file.pow.as_mut().unwrap());
        assert_ne!(Genesis::from_file(file).unwrap().chain_id(), pow.chain_id());
    }
    // A PoW genesis round-trips through TOML, [pow] section included.
    let text = pow.genesis.to_toml();
    assert!(text.contains("[pow]"), "{text}");
    assert_eq!(Genesis::from_toml(&text).unwrap(), pow.genesis);
    let bad = text.replace("retarget_damping = 16", "retarget_damping = 0");
    assert!(matches!(
        Genesis::from_toml(&bad),
        Err(GenesisError::BadProtocol(_))
    ));
}

/// Undo records round-trip, and restoring one takes the ledger back exactly.
#[test]
fn undo_records_restore_the_prior_state() {
    let net = net();
    let mut ledger = net.genesis.ledger();
    let before = ledger.state_root();
    let stranger = crate::testkit::derived_key("stranger", 0, 0).address();
    let tx = crate::tx::Transfer {
        from: net.account_keys[0].address(),
        to: stranger,
        amount: 5,
        nonce: 0,
    }
    .sign(&net.account_keys[0], &net.chain_id());
    let undo = Undo::before(&ledger, std::slice::from_ref(&tx));
    assert_eq!(Undo::from_bytes(&undo.to_bytes()).unwrap(), undo);
    assert!(
        undo.accounts
            .iter()
            .any(|(a, acct)| *a == stranger && acct.is_none())
    );
    let ok = ledger.verify_signatures(std::slice::from_ref(&tx));
    ledger.apply(&[tx], &ok);
    assert_ne!(ledger.state_root(), before);
    ledger.restore(&undo.accounts);
    assert_eq!(ledger.state_root(), before);
    assert_eq!(ledger.get(&stranger), None);
}
