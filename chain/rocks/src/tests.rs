use std::path::PathBuf;

use quire_chain::Account;
use quire_chain::codec::Encode;
use quire_chain::store::{Store, StoreError};
use quire_chain::testkit::TestNet;
use quire_chain::testkit::store::{check_contents, commit_blocks};

use super::*;

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quire-{label}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
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

/// A diverged replica's chain is forgotten in one durable write, back to the genesis, while its
/// consensus log (its votes) stays; the store reopens cleanly and can grow again.
#[test]
fn reset_chain_keeps_the_consensus_log_and_reopens() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-reset");
    {
        let store = RocksStore::open(&dir, &net.genesis).unwrap();
        commit_blocks(&net, &store, 4);
        store.reset_chain(&net.genesis).unwrap();
        assert_eq!(store.head(), net.genesis.block().header);
        assert!(store.block(1).unwrap().is_none());
        assert_eq!(store.consensus_entries().unwrap().len(), 1);
    }
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    assert_eq!(store.head().height, 0);
    let mut ledger = store.ledger(net.chain_id()).unwrap();
    assert_eq!(ledger.state_root(), net.genesis.block().header.state_root);
    commit_blocks(&net, &store, 2);
    assert_eq!(store.head().height, 2);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
