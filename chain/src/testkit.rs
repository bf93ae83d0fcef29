//! Deterministic test fixtures: a genesis with known validator and account keys, and certified
//! blocks built on it. Used by this crate's tests, the crash test's child process, the consensus
//! tests and the simulator.

use std::collections::BTreeMap;

use crate::block::{Batch, Executed, Header, execute};
use crate::cert::{Certificate, CommitStatement, Statement};
use crate::genesis::Genesis;
use crate::hash::Hash;
use crate::keys::Keypair;
use crate::ledger::Ledger;
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
        let genesis = Genesis::new(
            "quire-test".into(),
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
}
