use super::*;
use crate::block::Batch;
use crate::testkit::TestNet;
use crate::testkit::store::{check_contents, commit_blocks};

#[test]
fn memory_store_commits_and_indexes_blocks() {
    let net = TestNet::new(4, 4);
    let store = MemoryStore::new(&net.genesis);
    commit_blocks(&net, &store, 5);
    check_contents(&net, &store, 5);
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
            ..WriteSet::default()
        })
        .unwrap();
    let again = store.write(&WriteSet {
        blocks: vec![executed],
        consensus: vec![],
        ..WriteSet::default()
    });
    assert!(matches!(
        again,
        Err(StoreError::NotExtending { height: 1, head: 1 })
    ));
}
