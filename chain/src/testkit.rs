//! Deterministic test fixtures: a genesis with known validator and account keys, and certified
//! blocks built on it. Used by this crate's tests, the crash test's child process, the consensus
//! tests and the simulator.

use std::collections::BTreeMap;

use crate::block::{Batch, Executed, Header, execute};
use crate::cert::{Certificate, CommitStatement, Statement};
use crate::genesis::{ConsensusMode, Genesis, Protocol};
use crate::hash::Hash;
use crate::keys::Keypair;
use crate::ledger::Ledger;
use crate::pow::{PowChain, PowParams, grind, target_for_hashes};
use crate::tx::{Transaction, Transfer};
use crate::validators::{Validator, ValidatorSet};

/// Every account in a test network starts with this much.
pub const TEST_BALANCE: u64 = 1_000_000;

/// Derives a key from a label and an index, so fixtures are the same on every run.
pub fn derived_key(label: &str, seed: u64, index: u64) -> Keypair {
    let h = Hash::tagged(
        "quire/test-key",
        &[label.as_bytes(), &seed.to_be_bytes(), &index.to_be_bytes()],
    );
    Keypair::from_secret(h.0)
}

pub struct TestNet {
    pub genesis: Genesis,
    pub validator_keys: Vec<Keypair>,
    pub account_keys: Vec<Keypair>,
}

impl TestNet {
    pub fn new(validators: usize, accounts: usize) -> TestNet {
        Self::with_seed(validators, accounts, 0)
    }

    pub fn with_seed(validators: usize, accounts: usize, seed: u64) -> TestNet {
        Self::with_protocol(validators, accounts, seed, Protocol::default())
    }

    /// A test network whose genesis has these protocol rules.
    pub fn with_protocol(
        validators: usize,
        accounts: usize,
        seed: u64,
        protocol: Protocol,
    ) -> TestNet {
        let pow = (protocol.consensus == ConsensusMode::Pow).then(PowParams::default);
        Self::with_rules(validators, accounts, seed, protocol, pow)
    }

    /// A proof-of-work test network with these rules.
    pub fn with_pow(validators: usize, accounts: usize, seed: u64, pow: PowParams) -> TestNet {
        let protocol = Protocol {
            consensus: ConsensusMode::Pow,
            ..Protocol::default()
        };
        Self::with_rules(validators, accounts, seed, protocol, Some(pow))
    }

    fn with_rules(
        validators: usize,
        accounts: usize,
        seed: u64,
        protocol: Protocol,
        pow: Option<PowParams>,
    ) -> TestNet {
        let validator_keys: Vec<Keypair> = (0..validators as u64)
            .map(|i| derived_key("validator", seed, i))
            .collect();
        let account_keys: Vec<Keypair> = (0..accounts as u64)
            .map(|i| derived_key("account", seed, i))
            .collect();
        let set = ValidatorSet::new(
            validator_keys
                .iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    id: i as u32,
                    key: k.public(),
                    address: format!("127.0.0.1:{}", 7100 + i),
                })
                .collect(),
            None,
        )
        .expect("a test validator set is valid");
        let genesis = Genesis::with_rules(
            "quire-test".into(),
            protocol,
            pow,
            set,
            account_keys
                .iter()
                .map(|k| (k.address(), TEST_BALANCE))
                .collect(),
        )
        .expect("a test genesis is valid");
        TestNet {
            genesis,
            validator_keys,
            account_keys,
        }
    }

    pub fn chain_id(&self) -> Hash {
        self.genesis.chain_id()
    }

    pub fn transfer(&self, from: usize, to: usize, amount: u64, nonce: u64) -> Transaction {
        Transfer {
            from: self.account_keys[from].address(),
            to: self.account_keys[to].address(),
            amount,
            nonce,
        }
        .sign(&self.account_keys[from], &self.chain_id())
    }

    /// Executes `batch` at the next height and certifies it with a quorum of validators.
    pub fn certified_block(&self, ledger: &mut Ledger, parent: &Header, batch: &Batch) -> Executed {
        let statement = CommitStatement {
            view: batch.view,
            seq: parent.height + 1,
            digest: batch.digest(),
        };
        let quorum = self.genesis.validators.quorum();
        let votes: BTreeMap<u32, _> = self.validator_keys[..quorum]
            .iter()
            .enumerate()
            .map(|(i, k)| (i as u32, statement.sign(k, &self.chain_id())))
            .collect();
        let cert = Certificate::from_votes(statement, &votes);
        execute(ledger, parent, batch, Some(cert), None)
    }

    /// `count` certified blocks of empty batches on top of the genesis (heights 1..=count).
    pub fn certified_chain(&self, count: u64) -> Vec<crate::Block> {
        let mut ledger = self.genesis.ledger();
        let mut head = self.genesis.block().header;
        let mut blocks = Vec::new();
        for b in 0..count {
            let batch = Batch {
                view: 0,
                proposer: 0,
                timestamp_ms: b,
                txs: Vec::new(),
            };
            let executed = self.certified_block(&mut ledger, &head, &batch);
            head = executed.record.block.header;
            blocks.push(executed.record.block);
        }
        blocks
    }
}

/// Proof-of-work rules for tests and the simulator: a block takes about `hashes_per_block`
/// real hashes (a handful, so tests need no real grinding), the limit is the easiest target.
pub fn easy_pow(hashes_per_block: u128) -> PowParams {
    PowParams {
        initial_target: target_for_hashes(hashes_per_block),
        target_limit: target_for_hashes(1),
        ..PowParams::default()
    }
}

/// Mines a block on `chain`'s head: its template, with the nonce ground until the header's real
/// hash meets the target.
pub fn mine(
    chain: &mut PowChain,
    candidates: &[Transaction],
    miner: u32,
    now_ms: u64,
) -> crate::Block {
    let mut block = chain.template(candidates, miner, now_ms);
    let mut start = 0;
    while !grind(&mut block.header, start, 1 << 16) {
        start += 1 << 16;
    }
    block
}

/// Shared checks for every [`crate::store::Store`] implementation (the memory store here, the
/// RocksDB store in `quire-rocks`): each must pass the same ones.
pub mod store {
    use super::TestNet;
    use crate::block::Batch;
    use crate::store::{Store, WriteSet};

    /// Commits `count` blocks of one transfer each on top of `store`'s head, with one consensus
    /// entry per write. Every other batch is accepted in a write of its own first, as a replica
    /// accepts before it votes (its block then finds the body stored); the others come with
    /// their block, as from state transfer.
    pub fn commit_blocks(net: &TestNet, store: &dyn Store, count: u64) {
        let mut ledger = store.ledger(net.chain_id()).expect("ledger");
        for _ in 0..count {
            let head = store.head();
            let sender = (head.height % 3) as usize;
            let nonce = ledger.account(&net.account_keys[sender].address()).nonce;
            let batch = Batch {
                view: 0,
                proposer: 0,
                timestamp_ms: head.height * 10,
                txs: vec![net.transfer(sender, 3, 7, nonce)],
            };
            if head.height.is_multiple_of(2) {
                let accepted = WriteSet {
                    batches: vec![crate::store::BatchBody {
                        seq: head.height + 1,
                        digest: batch.digest(),
                        batch: std::sync::Arc::new(batch.clone()),
                    }],
                    consensus: vec![(b"k".to_vec(), Some(head.height.to_be_bytes().to_vec()))],
                    ..WriteSet::default()
                };
                store.write(&accepted).expect("write the accepted batch");
            }
            let executed = net.certified_block(&mut ledger, &head, &batch);
            let writes = WriteSet {
                blocks: vec![executed],
                consensus: vec![(b"k".to_vec(), Some(head.height.to_be_bytes().to_vec()))],
                ..WriteSet::default()
            };
            store.write(&writes).expect("write");
        }
    }

    /// Checks that `store` holds exactly what [`commit_blocks`] wrote, up to `height`.
    pub fn check_contents(net: &TestNet, store: &dyn Store, height: u64) {
        assert_eq!(store.head().height, height);
        for h in 1..=height {
            let record = store.block(h).expect("read").expect("block");
            record
                .block
                .verify_certified(&net.chain_id(), &net.genesis.validators)
                .expect("certificate");
            let parent = store.header(h - 1).expect("read").expect("parent");
            assert_eq!(record.block.header.parent_hash, parent.hash());
            // The body is stored once, as the batch at (height, digest).
            let body = store
                .batch(h, &record.block.header.batch_digest())
                .expect("read")
                .expect("the block's body");
            assert_eq!(body.txs, record.block.txs);
            let id = record.block.txs[0].id();
            assert_eq!(
                store
                    .tx_location(&id)
                    .expect("read")
                    .expect("indexed")
                    .height,
                h
            );
        }
        let mut ledger = store.ledger(net.chain_id()).expect("ledger");
        assert_eq!(ledger.state_root(), store.head().state_root);
        assert_eq!(ledger.total_supply(), net.genesis.total_supply());
        let entries = store.consensus_entries().expect("entries");
        assert_eq!(entries.len(), 1);
    }
}
