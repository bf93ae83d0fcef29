//! The executor: the one place where a step's outputs are carried out, in the only order that
//! keeps a replica honest across crashes — **persist, then send, then commit**:
//!
//! 1. every `Persist`, `PersistBatch` and `Commit` of the step goes to the store in one atomic,
//!    durable write
//!    (one synced RocksDB batch in the node, the memory store in the simulator);
//! 2. only then do the step's messages leave, through an [`Outbox`];
//! 3. and only then are the committed blocks handed back, for what follows a commit (client
//!    replies, metrics, the simulator's checker).
//!
//! A failed write returns the error with nothing sent: a replica must not vote on what it could
//! not make durable, so its caller stops it. The node's driver and the simulator both call
//! [`carry_out`]; neither orders writes and sends itself.

use std::sync::Arc;

use quire_chain::block::Executed;
use quire_chain::codec::Encode;
use quire_chain::store::{Store, StoreError, WriteSet};
use quire_chain::{Block, ReplicaId};

use crate::message::{Kind, Message};
use crate::replica::{Output, Replica};

/// Where the executor's messages go: the QUIC mesh in the node, the simulated network in the
/// simulator. `kind` is `None` for raw bytes (only the `flood` behaviour sends those).
pub trait Outbox {
    fn send(&mut self, to: ReplicaId, kind: Option<Kind>, frame: Arc<Vec<u8>>);
    /// To every replica but the sender.
    fn broadcast(&mut self, kind: Option<Kind>, frame: Arc<Vec<u8>>);
    /// Takes a block request (`Output::ServeBlocks`) to carry out elsewhere — the node reads and
    /// sends blocks on a thread of their own, so a peer's fetches never hold up the consensus
    /// thread. `false` (the default) has the executor read the store and send them here.
    fn serve_blocks(&mut self, _to: ReplicaId, _from: u64, _to_height: u64) -> bool {
        false
    }
}

/// Carries out one step's (or one group of steps') outputs: durable write, then sends. Returns
/// the blocks the write committed, in height order.
pub fn carry_out<S, O>(
    replica: &Replica,
    store: &S,
    outbox: &mut O,
    outputs: Vec<Output>,
) -> Result<Vec<Executed>, StoreError>
where
    S: Store + ?Sized,
    O: Outbox + ?Sized,
{
    let (writes, sends) = split(outputs);
    if !writes.is_empty() {
        store.write(&writes)?;
    }
    for output in sends {
        send(replica, store, outbox, output);
    }
    Ok(writes.blocks)
}

/// Splits outputs into what must be written (one durable write) and what is sent after it.
fn split(outputs: Vec<Output>) -> (WriteSet, Vec<Output>) {
    let mut writes = WriteSet::default();
    let mut sends = Vec::new();
    for o in outputs {
        match o {
            Output::Persist(op) => writes.consensus.push(op),
            Output::PersistBatch(body) => writes.batches.push(body),
            Output::Commit(executed) => writes.blocks.push(*executed),
            other => sends.push(other),
        }
    }
    (writes, sends)
}

fn send<S, O>(replica: &Replica, store: &S, outbox: &mut O, output: Output)
where
    S: Store + ?Sized,
    O: Outbox + ?Sized,
{
    match output {
        Output::Send(to, m) => outbox.send(to, Some(m.kind()), Arc::new(m.to_bytes())),
        Output::Broadcast(m) => outbox.broadcast(Some(m.kind()), Arc::new(m.to_bytes())),
        Output::ServeBlocks {
            to,
            from,
            to_height,
        } => {
            if outbox.serve_blocks(to, from, to_height) {
                return;
            }
            let blocks = read_blocks(store, from, to_height);
            if !blocks.is_empty() {
                let reply: Message = replica.blocks_reply(blocks);
                outbox.send(to, Some(reply.kind()), Arc::new(reply.to_bytes()));
            }
        }
        Output::SendRaw(to, bytes) => outbox.send(to, None, Arc::new(bytes)),
        Output::Persist(_) | Output::PersistBatch(_) | Output::Commit(_) => {}
    }
}

/// Consecutive blocks `from..=to` as far as the store has them (the core bounds the range). A
/// read error ends the reply early: the peer asks again elsewhere.
pub fn read_blocks<S: Store + ?Sized>(store: &S, from: u64, to: u64) -> Vec<Block> {
    (from..=to)
        .map_while(|h| store.block(h).ok().flatten())
        .map(|r| r.block)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use quire_chain::store::MemoryStore;
    use quire_chain::testkit::TestNet;

    use crate::config::Params;
    use crate::replica::Durable;
    use crate::verify::Verifier;

    #[derive(Default)]
    struct Recorder {
        sent: Vec<(Option<ReplicaId>, Option<Kind>)>,
    }

    impl Outbox for Recorder {
        fn send(&mut self, to: ReplicaId, kind: Option<Kind>, _: Arc<Vec<u8>>) {
            self.sent.push((Some(to), kind));
        }
        fn broadcast(&mut self, kind: Option<Kind>, _: Arc<Vec<u8>>) {
            self.sent.push((None, kind));
        }
    }

    /// A store that refuses every write, as a full or failing disk does.
    struct FailingStore(MemoryStore);

    impl Store for FailingStore {
        fn head(&self) -> quire_chain::Header {
            self.0.head()
        }
        fn block(&self, h: u64) -> Result<Option<quire_chain::BlockRecord>, StoreError> {
            self.0.block(h)
        }
        fn tx_location(
            &self,
            id: &quire_chain::TxId,
        ) -> Result<Option<quire_chain::store::TxLocation>, StoreError> {
            self.0.tx_location(id)
        }
        fn account(
            &self,
            a: &quire_chain::Address,
        ) -> Result<Option<quire_chain::Account>, StoreError> {
            self.0.account(a)
        }
        fn accounts(
            &self,
        ) -> Result<Vec<(quire_chain::Address, quire_chain::Account)>, StoreError> {
            self.0.accounts()
        }
        fn consensus_entries(&self) -> Result<quire_chain::store::ConsensusEntries, StoreError> {
            self.0.consensus_entries()
        }
        fn batch(
            &self,
            seq: u64,
            digest: &quire_chain::Hash,
        ) -> Result<Option<quire_chain::Batch>, StoreError> {
            self.0.batch(seq, digest)
        }
        fn write(&self, _: &WriteSet) -> Result<(), StoreError> {
            Err(StoreError::Engine("disk full".into()))
        }
        fn reset_chain(&self, _: &quire_chain::Genesis) -> Result<(), StoreError> {
            Err(StoreError::Engine("disk full".into()))
        }
        fn write_pow(&self, _: &quire_chain::store::PowWrite) -> Result<(), StoreError> {
            Err(StoreError::Engine("disk full".into()))
        }
        fn undo(
            &self,
            h: &quire_chain::Hash,
        ) -> Result<Option<quire_chain::pow::Undo>, StoreError> {
            self.0.undo(h)
        }
    }

    /// Replica 1 of `net`, started from what `store` holds.
    pub(crate) fn replica(net: &TestNet, store: &dyn Store) -> Replica {
        let params = Params::default();
        let verifier = Verifier::new(&net.genesis);
        let durable = Durable::read(store, net.chain_id()).unwrap();
        Replica::recover(1, net.validator_keys[1].clone(), verifier, params, durable).unwrap()
    }

    /// Replica 0's proposal of one transfer at height 1 in view 0, with its batch.
    pub(crate) fn proposal_at_height_one(
        net: &TestNet,
    ) -> (
        quire_chain::Batch,
        crate::message::Signed<crate::message::Proposal>,
    ) {
        use crate::message::{Proposal, Signed, SlotVote};
        let batch = quire_chain::Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 1,
            txs: vec![net.transfer(0, 1, 5, 0)],
        };
        let vote = SlotVote {
            view: 0,
            seq: 1,
            digest: batch.digest(),
        };
        let proposal = Signed::sign(Proposal(vote), 0, &net.validator_keys[0], &net.chain_id());
        (batch, proposal)
    }

    /// Replica 0's proposal at height 1 in view 0, as a backup accepts it: the log entry and the
    /// body, in one write; and the digest the log names.
    fn accepted_at_height_one(net: &TestNet) -> (WriteSet, quire_chain::Hash) {
        use quire_chain::store::BatchBody;
        let (batch, proposal) = proposal_at_height_one(net);
        let digest = proposal.body.0.digest;
        let accept = WriteSet {
            consensus: vec![crate::persist::accepted(&proposal)],
            batches: vec![BatchBody {
                seq: 1,
                digest,
                batch: Arc::new(batch),
            }],
            ..WriteSet::default()
        };
        (accept, digest)
    }

    /// Another batch (view 1's), executed and certified at height 1 on top of `store`'s head.
    fn executed_at_height_one(net: &TestNet, store: &MemoryStore) -> WriteSet {
        let other = quire_chain::Batch {
            view: 1,
            proposer: 1,
            timestamp_ms: 2,
            txs: vec![net.transfer(1, 2, 5, 0)],
        };
        let mut ledger = store.ledger(net.chain_id()).unwrap();
        let executed = net.certified_block(&mut ledger, &store.head(), &other);
        WriteSet {
            blocks: vec![executed],
            ..WriteSet::default()
        }
    }

    /// A replica that accepted one proposal at a height, then executed another batch there
    /// (fetched from its peers after a view change replaced the first), and then started its
    /// chain over (a divergence: it keeps its log) still finds every batch its log names, and
    /// restarts. (The store used to delete the replaced body when the height executed; the
    /// replica then could not restart — found by the colluding-equivocation scenario.)
    #[test]
    fn a_replaced_proposal_named_by_the_log_survives_a_chain_reset() {
        let net = TestNet::new(4, 4);
        let store = MemoryStore::new(&net.genesis);
        let (accept, digest) = accepted_at_height_one(&net);
        store.write(&accept).unwrap();
        store.write(&executed_at_height_one(&net, &store)).unwrap();
        store.reset_chain(&net.genesis).unwrap();
        let durable = Durable::read(&store, net.chain_id()).expect("every batch the log names");
        assert!(durable.batches.contains_key(&(1, digest)));
        let params = Params::default();
        let verifier = Verifier::new(&net.genesis);
        Replica::recover(1, net.validator_keys[1].clone(), verifier, params, durable).unwrap();
    }

    /// A proposal accepted at a height already executed (state transfer got there first) keeps
    /// its body while the log names it: a chain reset after a divergence puts that height above
    /// the head again, and the replica restarts. (The body was not stored, and the replica
    /// refused its store after the reset — found by the colluding-equivocation scenario.)
    #[test]
    fn a_proposal_accepted_at_an_executed_height_survives_a_chain_reset() {
        let net = TestNet::new(4, 4);
        let store = MemoryStore::new(&net.genesis);
        store.write(&executed_at_height_one(&net, &store)).unwrap();
        let (accept, digest) = accepted_at_height_one(&net);
        store.write(&accept).unwrap();
        store.reset_chain(&net.genesis).unwrap();
        let durable = Durable::read(&store, net.chain_id()).expect("every batch the log names");
        assert!(durable.batches.contains_key(&(1, digest)));
    }

    fn vote_with_its_log_entry(r: &Replica) -> Vec<Output> {
        let status = Message::Status(r.sign(crate::message::Status {
            view: 0,
            changing_view: false,
            last_executed: 0,
            stable_seq: 0,
        }));
        // Sends first in the output list: the executor, not the order of outputs, decides.
        vec![
            Output::Broadcast(status),
            Output::Persist(crate::persist::view(0, false)),
        ]
    }

    /// Persist before send (PBFT.md trap 1): the write happens, and only then the send.
    #[test]
    fn a_step_is_written_before_anything_is_sent() {
        let net = TestNet::new(4, 2);
        let store = MemoryStore::new(&net.genesis);
        let r = replica(&net, &store);
        let mut outbox = Recorder::default();
        let committed = carry_out(&r, &store, &mut outbox, vote_with_its_log_entry(&r)).unwrap();
        assert!(committed.is_empty());
        assert_eq!(store.consensus_entries().unwrap().len(), 1);
        assert_eq!(outbox.sent, vec![(None, Some(Kind::Status))]);
    }

    /// A write that fails sends nothing: the vote it would have carried must not leave.
    #[test]
    fn a_failed_write_sends_nothing() {
        let net = TestNet::new(4, 2);
        let store = FailingStore(MemoryStore::new(&net.genesis));
        let r = replica(&net, &store);
        let mut outbox = Recorder::default();
        let result = carry_out(&r, &store, &mut outbox, vote_with_its_log_entry(&r));
        assert!(matches!(result, Err(StoreError::Engine(_))));
        assert!(outbox.sent.is_empty());
    }
}
