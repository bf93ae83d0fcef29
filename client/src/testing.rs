//! Test fixtures: a real certified chain on a `TestNet` (4 validators, f = 1, checkpoints every
//! 2 blocks), and the honest answers and attestations its replicas would give. Tests forge from
//! these.

use quire_chain::block::{Batch, BlockRecord, Header};
use quire_chain::genesis::Protocol;
use quire_chain::ledger::Ledger;
use quire_chain::merkle;
use quire_chain::testkit::TestNet;
use quire_chain::tx::Transaction;
use quire_chain::{Hash, ReplicaId};
use quire_wire::rpc::{Attestation, Statement, TxStatus};

pub struct Chain {
    pub net: TestNet,
    pub ledger: Ledger,
    /// `headers[h]` is the header at height h (0 = genesis).
    pub headers: Vec<Header>,
    /// `records[h - 1]` is the block at height h.
    pub records: Vec<BlockRecord>,
}

impl Chain {
    /// A network of 4 validators and 4 accounts with one block of two transfers.
    pub fn new() -> Chain {
        let protocol = Protocol {
            checkpoint_interval: 2,
            log_window: 4,
            ..Protocol::default()
        };
        let net = TestNet::with_protocol(4, 4, 0, protocol);
        let ledger = net.genesis.ledger();
        let headers = vec![net.genesis.block().header];
        let mut chain = Chain {
            net,
            ledger,
            headers,
            records: Vec::new(),
        };
        let txs = vec![
            chain.net.transfer(0, 1, 5, 0),
            chain.net.transfer(1, 2, 7, 0),
        ];
        chain.push(txs);
        chain
    }

    pub fn chain_id(&self) -> Hash {
        self.net.chain_id()
    }

    /// Executes and certifies a block of `txs` on top of the chain.
    pub fn push(&mut self, txs: Vec<Transaction>) -> &BlockRecord {
        let parent = *self.headers.last().expect("the chain has a genesis");
        let batch = Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 1000 + parent.height,
            txs,
        };
        let executed = self.net.certified_block(&mut self.ledger, &parent, &batch);
        self.headers.push(executed.record.block.header);
        self.records.push(executed.record);
        self.records.last().expect("just pushed")
    }

    pub fn record(&self, height: u64) -> &BlockRecord {
        &self.records[height as usize - 1]
    }

    pub fn attest(&self, statement: Statement, replica: ReplicaId) -> Attestation {
        let key = &self.net.validator_keys[replica as usize];
        Attestation::sign(statement, replica, key, &self.chain_id())
    }

    pub fn block_attestation(&self, height: u64, replica: ReplicaId) -> Attestation {
        self.attest(Statement::of(&self.headers[height as usize]), replica)
    }

    /// What an honest `replica` answers to TxStatus for the `index`th transaction of `height`.
    pub fn tx_status(&self, height: u64, index: usize, replica: ReplicaId) -> TxStatus {
        let record = self.record(height);
        let ids = record.block.batch().tx_ids();
        TxStatus::Committed {
            block: record.block.clone(),
            proof: merkle::prove(&ids, index).expect("index in range"),
            outcome: record.outcomes[index],
            outcome_proof: record.outcome_proof(index).expect("index in range"),
            attestation: self.block_attestation(height, replica),
        }
    }
}
