use std::path::PathBuf;

use super::*;
use crate::block::Batch;
use crate::testkit::TestNet;

pub(crate) fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quire-{label}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Commits `count` blocks of transfers on top of `store`'s head.
fn commit_blocks(net: &TestNet, store: &dyn Store, count: u64) {
    let mut ledger = store.ledger(net.chain_id()).unwrap();
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
        let executed = net.certified_block(&mut ledger, &head, &batch);
        let writes = WriteSet {
            blocks: vec![executed],
            consensus: vec![(b"k".to_vec(), Some(head.height.to_be_bytes().to_vec()))],
        };
        store.write(&writes).unwrap();
    }
}

fn check_contents(net: &TestNet, store: &dyn Store, height: u64) {
    assert_eq!(store.head().height, height);
    for h in 1..=height {
        let record = store.block(h).unwrap().unwrap();
        record
            .block
            .verify_certified(&net.chain_id(), &net.genesis.validators)
            .unwrap();
        let parent = store.header(h - 1).unwrap().unwrap();
        assert_eq!(record.block.header.parent_hash, parent.hash());
        let id = record.block.txs[0].id();
        assert_eq!(store.tx_location(&id).unwrap().unwrap().height, h);
    }
    let mut ledger = store.ledger(net.chain_id()).unwrap();
    assert_eq!(ledger.state_root(), store.head().state_root);
    assert_eq!(ledger.total_supply(), net.genesis.total_supply());
    let entries = store.consensus_entries().unwrap();
    assert_eq!(entries.len(), 1);
}

#[test]
fn memory_store_commits_and_indexes_blocks() {
    let net = TestNet::new(4, 4);
    let store = MemoryStore::new(&net.genesis);
    commit_blocks(&net, &store, 5);
    check_contents(&net, &store, 5);
}

#[test]
fn rocks_store_commits_and_recovers_after_reopen() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-reopen");
    {
        let store = RocksStore::open(&dir, &net.genesis).unwrap();
        commit_blocks(&net, &store, 5);
        check_contents(&net, &store, 5);
    }
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    check_contents(&net, &store, 5);
    commit_blocks(&net, &store, 2);
    check_contents(&net, &store, 7);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_block_that_does_not_extend_the_head_is_refused() {
    let net = TestNet::new(4, 4);
    let store = MemoryStore::new(&net.genesis);
    let mut ledger = net.genesis.ledger();
    let genesis = store.head();
    let executed = net.certified_block(&mut ledger, &genesis, &Batch::null());
    store
        .write(&WriteSet {
            blocks: vec![executed.clone()],
            consensus: vec![],
        })
        .unwrap();
    let again = store.write(&WriteSet {
        blocks: vec![executed],
        consensus: vec![],
    });
    assert!(matches!(
        again,
        Err(StoreError::NotExtending { height: 1, head: 1 })
    ));
}

#[test]
fn a_store_of_another_chain_is_refused() {
    let dir = temp_dir("rocks-foreign");
    RocksStore::open(&dir, &TestNet::with_seed(4, 4, 1).genesis).unwrap();
    let err = RocksStore::open(&dir, &TestNet::with_seed(4, 4, 2).genesis)
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Damage one thing in a closed store, reopen, and expect an error that names it.
fn reopen_after(damage: impl Fn(&RocksStore), expect: &str) {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-corrupt");
    {
        let store = RocksStore::open(&dir, &net.genesis).unwrap();
        commit_blocks(&net, &store, 3);
        damage(&store);
    }
    let err = RocksStore::open(&dir, &net.genesis).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(
        err.to_string().contains(expect),
        "{err} should mention {expect}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_store_opens_with_an_error_naming_what_is_wrong() {
    let address = TestNet::new(4, 4).account_keys[0].address();
    reopen_after(
        |s| {
            let acct = Account {
                balance: 1,
                nonce: 0,
            };
            let cf = s.cf(CF_STATE).unwrap();
            s.db.put_cf(cf, address.0, acct.to_bytes()).unwrap();
        },
        "state root",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_STATE).unwrap();
            s.db.put_cf(cf, address.0, b"short").unwrap();
        },
        "account",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_BLOCKS).unwrap();
            let hash = s.head().hash();
            s.db.put_cf(cf, hash.0, b"garbage").unwrap();
        },
        "block",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_HEIGHTS).unwrap();
            s.db.delete_cf(cf, 3u64.to_be_bytes()).unwrap();
        },
        "height index",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_META).unwrap();
            s.db.put_cf(cf, META_HEAD, [1, 2, 3]).unwrap();
        },
        "meta/head",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_BLOCKS).unwrap();
            let hash = s.head().hash();
            let mut record = s.record_by_hash(&hash).unwrap().unwrap();
            record.block.certificate.as_mut().unwrap().votes.pop();
            record.block.certificate.as_mut().unwrap().votes.pop();
            s.db.put_cf(cf, hash.0, record.to_bytes()).unwrap();
        },
        "certificate",
    );
}

use super::rocks::{CF_BLOCKS, CF_HEIGHTS, CF_META, CF_STATE, META_HEAD};
use crate::codec::Encode;
use crate::ledger::Account;
