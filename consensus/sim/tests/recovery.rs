//! Recovery (PBFT.md trap 1, and issue 13): a replica that restarts from what it persisted
//! sends again the votes it had sent before the crash — the very same votes — so a slot whose
//! votes were lost with the crash can still commit without a view change.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::sync::Arc;

use quire_chain::cert::CommitStatement;
use quire_chain::store::{MemoryStore, Store};
use quire_chain::testkit::TestNet;
use quire_chain::{Batch, ReplicaId};
use quire_consensus::exec::{Outbox, carry_out};
use quire_consensus::message::{Kind, Message, Prepare, Proposal, Signed, SlotVote};
use quire_consensus::{Durable, Input, Output, Params, Replica, Verifier};

#[derive(Default)]
struct Sent(Vec<Vec<u8>>);

impl Outbox for Sent {
    fn send(&mut self, _: ReplicaId, _: Option<Kind>, frame: Arc<Vec<u8>>) {
        self.0.push(frame.to_vec());
    }
    fn broadcast(&mut self, _: Option<Kind>, frame: Arc<Vec<u8>>) {
        self.0.push(frame.to_vec());
    }
}

fn start(net: &TestNet, id: u32, store: &MemoryStore) -> Replica {
    let durable = Durable::read(store, net.chain_id()).unwrap();
    Replica::recover(
        id,
        net.validator_keys[id as usize].clone(),
        Verifier::new(&net.genesis),
        Params::default(),
        durable,
    )
    .unwrap()
}

fn signed<T: quire_consensus::message::Body>(net: &TestNet, i: u32, body: T) -> Signed<T> {
    Signed::sign(body, i, &net.validator_keys[i as usize], &net.chain_id())
}

/// The frames of `outputs` that are votes, as bytes (the executor encodes them as the node does).
fn votes(r: &Replica, store: &MemoryStore, outputs: Vec<Output>) -> Vec<Vec<u8>> {
    let mut sent = Sent::default();
    carry_out(r, store, &mut sent, outputs).unwrap();
    sent.0
        .into_iter()
        .filter(|f| {
            use quire_chain::Decode;
            matches!(
                Message::from_bytes(f),
                Ok(Message::Prepare(_) | Message::Commit(_))
            )
        })
        .collect()
}

#[test]
fn a_restarted_backup_sends_its_prepare_and_commit_again() {
    let net = TestNet::new(4, 2);
    let verifier = Verifier::new(&net.genesis);
    let store = MemoryStore::new(&net.genesis);
    let mut backup = start(&net, 3, &store);
    let batch = Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: 9,
        txs: vec![net.transfer(0, 1, 5, 0)],
    };
    let vote = SlotVote {
        view: 0,
        seq: 1,
        digest: batch.digest(),
    };
    let pre_prepare = Message::PrePrepare {
        proposal: signed(&net, 0, Proposal(vote)),
        batch,
    };
    let step = |r: &mut Replica, m: Message| {
        let verified = verifier.verify(m, None).unwrap();
        r.step(Input::Message(verified))
    };
    let outputs = step(&mut backup, pre_prepare);
    let mut before = votes(&backup, &store, outputs);
    // Replicas 1 and 2 prepare too: the backup is prepared and commits.
    for i in [1, 2] {
        let prepare = Message::Prepare(signed(&net, i, Prepare(vote)));
        let outputs = step(&mut backup, prepare);
        before.extend(votes(&backup, &store, outputs));
    }
    assert_eq!(
        before.len(),
        2,
        "one Prepare and one Commit before the crash"
    );

    // The crash: everything in memory is gone, and so (we assume) were those two frames.
    drop(backup);
    let mut restarted = start(&net, 3, &store);
    let outputs = restarted.step(Input::Tick { now_ms: 10 });
    let after = votes(&restarted, &store, outputs);
    assert_eq!(
        after, before,
        "the restarted replica resends exactly its votes"
    );

    // And the slot still commits once two more Commits arrive.
    for i in [0, 1] {
        let commit = Message::Commit(signed(
            &net,
            i,
            CommitStatement {
                view: 0,
                seq: 1,
                digest: vote.digest,
            },
        ));
        let outputs = step(&mut restarted, commit);
        let mut sent = Sent::default();
        carry_out(&restarted, &store, &mut sent, outputs).unwrap();
    }
    assert_eq!(restarted.last_executed(), 1);
}

/// A replica whose state is wrong (here: a corrupted account on its disk) executes blocks to
/// other state roots than everyone else. When the next checkpoint is certified by the others,
/// it finds its block differs, stops signing, forgets its chain and fetches the certified one
/// again — and ends with exactly the others' chain.
#[test]
fn a_diverged_replica_stops_signing_and_recovers_by_state_transfer() {
    use quire_chain::Account;
    let mut c = support::Cluster::with(4, |cfg| {
        cfg.params.batch_txs_max = 1;
        cfg.protocol.checkpoint_interval = 4;
        cfg.protocol.log_window = 8;
    });
    c.submit(6, quire_sim::workload::Target::All);
    c.run(100);
    // Replica 3's disk goes bad: one balance is off. (Not judged as honest any more.)
    let victim = c.sim.net.account_keys[5].address();
    let real = c.sim.stores[3].account(&victim).unwrap().unwrap();
    c.sim.stores[3].tamper_account(
        victim,
        Account {
            balance: real.balance + 5,
            ..real
        },
    );
    c.make(3, quire_consensus::Behaviour::Honest);
    c.crash(3);
    c.restart(3);
    assert!(c.sim.rebuilt.is_empty());
    c.submit(12, quire_sim::workload::Target::All);
    c.run(400);
    assert_eq!(c.sim.rebuilt, vec![3], "replica 3 found it diverged, once");
    let head = c.sim.stores[0].head();
    assert!(head.height >= 18);
    assert_eq!(
        c.sim.stores[3].head(),
        head,
        "rebuilt to the certified chain"
    );
    assert_eq!(
        c.sim.stores[3].account(&victim).unwrap(),
        c.sim.stores[0].account(&victim).unwrap()
    );
    c.assert_all_executed();
}
