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
            // Every transfer of the replayed blocks still goes through; the state differs.
            let acct = Account {
                balance: u64::MAX / 4,
                nonce: 0,
            };
            let cf = s.cf(CF_STATE).unwrap();
            s.db.put_cf(cf, address.0, acct.to_bytes()).unwrap();
        },
        "state root",
    );
    reopen_after(
        |s| {
            // Account 0 sends 7 in block 1: replaying it now refuses the transfer.
            let acct = Account {
                balance: 1,
                nonce: 0,
            };
            let cf = s.cf(CF_STATE).unwrap();
            s.db.put_cf(cf, address.0, acct.to_bytes()).unwrap();
        },
        "block 1 does not execute to its recorded outcomes",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_META).unwrap();
            s.db.put_cf(cf, META_STATE_HEIGHT, [1, 2, 3]).unwrap();
        },
        "meta/state_height",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_META).unwrap();
            s.db.put_cf(cf, META_STATE_HEIGHT, 4u64.to_be_bytes())
                .unwrap();
        },
        "above the head",
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
            s.db.put_cf(cf, hash.0, apart(&record)).unwrap();
        },
        "certificate",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_BATCHES).unwrap();
            let head = s.head();
            s.db.delete_cf(cf, batch_key(head.height, &head.batch_digest()))
                .unwrap();
        },
        "the body of block 3",
    );
    reopen_after(
        |s| {
            let cf = s.cf(CF_BATCHES).unwrap();
            let head = s.head();
            let mut body = s.batch(head.height, &head.batch_digest()).unwrap().unwrap();
            body.txs.push(quire_chain::Transaction::raw(vec![1; 8]));
            let mut value = vec![BODY_INLINE];
            value.extend_from_slice(&body.to_bytes());
            s.db.put_cf(cf, batch_key(head.height, &head.batch_digest()), value)
                .unwrap();
        },
        "tx_root",
    );
    // A large body lives in the body log: a damaged record there is named too.
    reopen_after(
        |s| {
            let net = TestNet::new(4, 4);
            raw_block(&net, s, 40, true, 100);
            let path = s.path.join("bodies").join("00000001.log");
            let mut bytes = std::fs::read(&path).unwrap();
            let end = bytes.len();
            bytes[end - 10] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        },
        "damaged",
    );
}

/// One block of `count` raw payloads of 700 bytes on `store`'s head (more than 93 make a body
/// for the body log); its batch is accepted (stored by (seq, digest)) first when
/// `accept_first`, as a replica does before it votes.
fn raw_block(
    net: &TestNet,
    store: &RocksStore,
    tag: u8,
    accept_first: bool,
    count: u8,
) -> quire_chain::Batch {
    let head = store.head();
    let batch = quire_chain::Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: u64::from(tag),
        txs: (0..count)
            .map(|i| quire_chain::Transaction::raw(vec![tag.wrapping_add(i); 700]))
            .collect(),
    };
    if accept_first {
        store.write(&accepted(head.height + 1, &batch)).unwrap();
    }
    let mut ledger = store.ledger(net.chain_id()).unwrap();
    let executed = net.certified_block(&mut ledger, &head, &batch);
    store
        .write(&WriteSet {
            blocks: vec![executed],
            ..WriteSet::default()
        })
        .unwrap();
    batch
}

fn accepted(seq: u64, batch: &quire_chain::Batch) -> WriteSet {
    WriteSet {
        batches: vec![quire_chain::store::BatchBody {
            seq,
            digest: batch.digest(),
            batch: std::sync::Arc::new(batch.clone()),
        }],
        consensus: vec![(b"acc".to_vec(), Some(seq.to_be_bytes().to_vec()))],
        ..WriteSet::default()
    }
}

/// The batch a replica accepted is the body of the block that executes it: the block is kept
/// without its transactions, and reads back whole.
#[test]
fn a_batch_is_written_once_and_the_block_reads_back_whole() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-once");
    {
        let store = RocksStore::open(&dir, &net.genesis).unwrap();
        // Small bodies stay in RocksDB, large ones go to the body log; accepted first, or
        // arriving with their block.
        for (tag, accept_first, count) in
            [(1, true, 2), (2, false, 2), (3, true, 100), (4, false, 100)]
        {
            let batch = raw_block(&net, &store, tag, accept_first, count);
            let logged = store
                .db
                .get_cf(
                    store.cf(CF_BATCHES).unwrap(),
                    batch_key(store.head().height, &batch.digest()),
                )
                .unwrap()
                .unwrap()[0]
                == BODY_LOGGED;
            assert_eq!(
                logged,
                count > 93,
                "where a body of {count} payloads is kept"
            );
            let head = store.head();
            let kept = store
                .db
                .get_cf(store.cf(CF_BLOCKS).unwrap(), head.hash().0)
                .unwrap()
                .unwrap();
            assert_eq!(kept[0], KEPT_APART);
            assert!(
                kept.len() < 700,
                "the kept block holds no payload: {} bytes",
                kept.len()
            );
            let record = store.block(head.height).unwrap().unwrap();
            assert_eq!(record.block.txs, batch.txs);
            assert_eq!(
                store.batch(head.height, &batch.digest()).unwrap().unwrap(),
                batch
            );
        }
    }
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    assert_eq!(store.block(2).unwrap().unwrap().block.txs.len(), 2);
    assert_eq!(store.block(4).unwrap().unwrap().block.txs.len(), 100);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bodies a view change replaced (another digest at a height) outlive the execution of their
/// height while the consensus log may still name them — also across a restart — and go once
/// the chain is twice the watermark window past them; bodies above the head are kept.
#[test]
fn replaced_bodies_go_once_no_log_entry_can_name_them() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-replaced");
    let replaced = quire_chain::Batch {
        view: 0,
        proposer: 1,
        timestamp_ms: 9,
        txs: vec![quire_chain::Transaction::raw(vec![9; 700])],
    };
    let far = quire_chain::Batch {
        view: 1,
        ..replaced.clone()
    };
    {
        let store = RocksStore::open(&dir, &net.genesis).unwrap();
        store.write(&accepted(1, &replaced)).unwrap();
        store.write(&accepted(5, &far)).unwrap();
    }
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    assert!(store.batch(1, &replaced.digest()).unwrap().is_some());
    let executed = raw_block(&net, &store, 3, false, 2);
    assert_eq!(store.head().height, 1);
    assert!(store.batch(1, &replaced.digest()).unwrap().is_some());
    assert!(store.batch(1, &executed.digest()).unwrap().is_some());
    assert!(store.batch(5, &far.digest()).unwrap().is_some());
    // A body arriving for a height already executed is kept as a replaced one: the log that
    // names it may need it after a chain reset.
    store.write(&accepted(1, &far)).unwrap();
    assert!(store.batch(1, &far.digest()).unwrap().is_some());
    drop(store);
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    let keep = 2 * net.genesis.protocol.log_window;
    while store.head().height < 1 + keep {
        let tag = (store.head().height % 200) as u8 + 10;
        raw_block(&net, &store, tag, false, 1);
        if store.head().height == keep {
            assert!(store.batch(1, &replaced.digest()).unwrap().is_some());
        }
    }
    assert!(store.batch(1, &replaced.digest()).unwrap().is_none());
    assert!(store.batch(1, &far.digest()).unwrap().is_none());
    assert!(store.batch(1, &executed.digest()).unwrap().is_some());
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
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

/// A body written for a height already executed (a proposal accepted after state transfer got
/// there) is kept, as a replaced one: a chain reset puts its height above the head again, and
/// the consensus log that names it must find it.
#[test]
fn a_body_for_an_executed_height_is_kept_across_a_chain_reset() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-late-body");
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    commit_blocks(&net, &store, 2);
    let late = quire_chain::Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: 99,
        txs: vec![net.transfer(0, 1, 5, 0)],
    };
    let digest = late.digest();
    let writes = WriteSet {
        batches: vec![quire_chain::store::BatchBody {
            seq: 1,
            digest,
            batch: std::sync::Arc::new(late),
        }],
        ..WriteSet::default()
    };
    store.write(&writes).unwrap();
    store.reset_chain(&net.genesis).unwrap();
    assert!(store.batch(1, &digest).unwrap().is_some());
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The transaction index is derived data: entries of blocks go to memory, full maps are written
/// behind the blocks (as table files RocksDB takes in), and a store opened after losing the unwritten ones (a crash) indexes
/// those blocks again from their bodies.
#[test]
fn the_transaction_index_is_rebuilt_from_the_blocks_after_a_crash() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-txindex");
    let mut ids = Vec::new();
    {
        let mut store = RocksStore::open(&dir, &net.genesis).unwrap();
        // A small map, so some of it is written out and some is lost with the process.
        store.index = None;
        store.open_index(5).unwrap();
        for tag in 1..=10u8 {
            let batch = raw_block(&net, &store, tag * 2, tag % 2 == 0, 2);
            ids.extend(batch.txs.iter().map(|tx| (tx.id(), u64::from(tag))));
            // The writer done with each map before the next block: maps are then sealed at
            // fixed heights (a busy writer lets the next map grow), and the last block's
            // entries stay in memory.
            store.index.as_ref().unwrap().wait_written();
        }
        for (id, height) in &ids {
            assert_eq!(store.tx_location(id).unwrap().unwrap().height, *height);
        }
        // Wait for the writer: the map sealed last is flushed when the next one can be sealed.
        store.index.as_ref().unwrap().wait_written();
        assert!(
            !dir.join("txindex-ingest.sst").exists(),
            "the table file was taken in, not left behind"
        );
        let flushed = store.get(CF_TXINDEX, txindex::INDEXED_HEIGHT).unwrap();
        let flushed = u64::from_be_bytes(flushed.unwrap().try_into().unwrap());
        assert!(
            flushed > 0 && flushed < 10,
            "part of the index is flushed: {flushed}"
        );
        // Dropped without writing what is still in memory, as a killed process would be.
    }
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    for (id, height) in &ids {
        assert_eq!(
            store.tx_location(id).unwrap().map(|at| at.height),
            Some(*height),
            "{id:?} after the restart"
        );
    }
    store.reset_chain(&net.genesis).unwrap();
    assert!(store.tx_location(&ids[0].0).unwrap().is_none());
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rewriting an account overwrites its value in the memtable instead of adding a version (the
/// account family's in-place updates): a memtable with one entry per account stays shallow
/// however many blocks rewrite the same accounts, which is what makes a block's state writes
/// cheap. Fails if the option goes, or if an account's encoding stops having a fixed size.
#[test]
fn rewriting_an_account_keeps_one_memtable_entry_for_it() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-inplace");
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    let blocks = 2 * STATE_WRITE_BLOCKS + 2;
    commit_blocks(&net, &store, blocks);
    check_contents(&net, &store, blocks);
    let accounts = store.accounts().unwrap().len() as u64;
    let cf = store.cf(CF_STATE).unwrap();
    let entries = store
        .db
        .property_int_value_cf(cf, rocksdb::properties::NUM_ENTRIES_ACTIVE_MEM_TABLE)
        .unwrap()
        .unwrap();
    // Every account was written at genesis and twice since (every STATE_WRITE_BLOCKS blocks).
    assert_eq!(entries, accounts, "one memtable entry per account");
    drop(store);
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    check_contents(&net, &store, blocks);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Account changes reach the account family every STATE_WRITE_BLOCKS blocks, not with each
/// block; a store dropped in between (a crash: what waits in memory is gone) opens with the
/// state of its head, replayed from the blocks above the family's height, and serves every
/// account as of the head before and after.
#[test]
fn account_changes_wait_in_memory_and_a_reopen_replays_them() {
    let net = TestNet::new(4, 4);
    let dir = temp_dir("rocks-state-height");
    let blocks = STATE_WRITE_BLOCKS + 6;
    let at_head = {
        let store = RocksStore::open(&dir, &net.genesis).unwrap();
        commit_blocks(&net, &store, blocks);
        assert_eq!(store.state_height().unwrap(), Some(STATE_WRITE_BLOCKS));
        let ledger = store.ledger(net.chain_id()).unwrap();
        let mut check = ledger.clone();
        assert_eq!(check.state_root(), store.head().state_root);
        // Account 3 receives in every block: the family still holds its value at the last
        // write, the store answers with the head's.
        let receiver = net.account_keys[3].address();
        let written = store.get(CF_STATE, &receiver.0).unwrap().unwrap();
        let at_head = store.account(&receiver).unwrap().unwrap();
        assert_ne!(Account::from_bytes(&written).unwrap(), at_head);
        assert_eq!(ledger.account(&receiver), at_head);
        ledger
    };
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    check_contents(&net, &store, blocks);
    let reopened = store.ledger(net.chain_id()).unwrap();
    assert_eq!(
        reopened.accounts().collect::<Vec<_>>(),
        at_head.accounts().collect::<Vec<_>>()
    );
    for key in &net.account_keys {
        let a = key.address();
        assert_eq!(store.account(&a).unwrap(), Some(at_head.account(&a)));
    }
    // Writing goes on from the replayed state, and the next write of the family covers it.
    commit_blocks(&net, &store, STATE_WRITE_BLOCKS);
    assert_eq!(
        store.state_height().unwrap(),
        Some(blocks + STATE_WRITE_BLOCKS - 6)
    );
    check_contents(&net, &store, blocks + STATE_WRITE_BLOCKS);
    drop(store);
    let store = RocksStore::open(&dir, &net.genesis).unwrap();
    check_contents(&net, &store, blocks + STATE_WRITE_BLOCKS);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
