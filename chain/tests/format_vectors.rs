//! The worked examples of docs/chain-format.md, pinned: every hex string in the document's
//! "Worked examples" section is asserted here, so the document cannot drift from the code.
//!
//! Where the document gives a rule (a layout, a hash preimage, a tree shape), the test rebuilds
//! the value from the rule by hand, checks that the library agrees, then pins the bytes. A failure
//! here means the canonical encoding changed: that is a protocol change (every hash and signature
//! on an existing chain changes with it), so change the document together with the code.
//!
//! `cargo test -p quire-chain --test format_vectors -- --nocapture` prints every value.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use quire_chain::block::{Batch, Header, batch_digest};
use quire_chain::cert::{CheckpointStatement, CommitStatement, Statement};
use quire_chain::codec::{Decode, Encode};
use quire_chain::hash::{Hash, tags};
use quire_chain::keys::{Address, Keypair, sign_tags, signing_bytes};
use quire_chain::ledger::{Account, account_key, account_value_hash, verify_account};
use quire_chain::merkle::{self, MerkleProof};
use quire_chain::smt::{SmtProof, Terminal};
use quire_chain::testkit::{TEST_BALANCE, TestNet, derived_key};
use quire_chain::tx::{Outcome, Rejection, Transaction};
use quire_chain::{Block, BlockRecord, Genesis};
use sha2::{Digest, Sha256};

/// Prints `name = hex` (visible with `--nocapture`) and asserts the pinned value.
#[track_caller]
fn pin(name: &str, actual: impl AsRef<[u8]>, expected: &str) {
    let actual = hex::encode(actual);
    println!("{name} = {actual}");
    assert_eq!(
        actual, expected,
        "{name} changed: update docs/chain-format.md together with the code"
    );
}

/// The network of every example: 4 validators (f = 1, quorum 3) and 2 accounts of 1,000,000.
fn net() -> TestNet {
    TestNet::new(4, 2)
}

/// Keys outside the genesis, for the address example and the absence proofs.
fn carol() -> Keypair {
    Keypair::from_secret([1u8; 32])
}

fn dave() -> Keypair {
    Keypair::from_secret([4u8; 32])
}

/// Transaction 0 of the example batch: account 0 pays account 1 250, its first transfer.
fn transfer_0(net: &TestNet) -> Transaction {
    net.transfer(0, 1, 250, 0)
}

/// Transaction 1: a raw payload, ordered but not executed.
fn raw_1() -> Transaction {
    Transaction::raw(vec![0xde, 0xad, 0xbe, 0xef])
}

/// Transaction 2: account 1 tries to pay account 0 more than it has (rejected at execution).
fn transfer_2(net: &TestNet) -> Transaction {
    net.transfer(1, 0, 2_000_000, 0)
}

fn batch(net: &TestNet) -> Batch {
    Batch {
        view: 0,
        proposer: 0,
        timestamp_ms: 1_700_000_000_000,
        txs: vec![transfer_0(net), raw_1(), transfer_2(net)],
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[test]
fn keys_are_rfc8032_seeds_and_test_keys_are_derived_by_tagged_hash() {
    // derived_key(label, seed, index) is the ed25519 seed H("quire/test-key", label || seed || index).
    let seed = Hash::tagged(
        "quire/test-key",
        &[b"validator", &0u64.to_be_bytes(), &0u64.to_be_bytes()],
    );
    assert_eq!(derived_key("validator", 0, 0).secret_bytes(), seed.0);

    let net = net();
    let validators = [
        (
            "830b499249a5213b8e6e521c1201002380f075cc621391a69d39da888a1718f6",
            "995b9ed8f7b464b87a05b82ec194debee08c83bcd68021b375a9bea625e304b3",
        ),
        (
            "96f5a82832e14b755a6d8bd8790aa04b0214d49e99829e4be0d0e2a7ed57fe90",
            "8931f05c263e7079de0125d48545645a7575defd9d39c6ca16cc5db2e4996fab",
        ),
        (
            "3c27e707cd39da9053e2d4f77e89f228890eb780418c91c0f81863c3ce7bc0fe",
            "e5ed1fbc21cb5b94084b91a09885c1f6863357c9be6f598a7a2fe3a49e3481ae",
        ),
        (
            "025c96ab601c1dc3402e719201d9e7982dcf85efda2e3c785edf4a611603e24e",
            "3fe2ac50bdd3394845edc29102c8f468cc8b8e222359c518835c6e1aa4956aab",
        ),
    ];
    for (i, (k, (secret, public))) in net.validator_keys.iter().zip(validators).enumerate() {
        pin(&format!("validator {i} secret"), k.secret_bytes(), secret);
        pin(
            &format!("validator {i} public"),
            k.public().to_bytes(),
            public,
        );
    }
    let accounts = [
        (
            "777daa201034718a07d38a12890fc678c3f1cb8dc4b2da45d3031710a97bfea5",
            "798153c25836e38302acec74b68bb588741396708385ada4291d773aac6bfc05",
        ),
        (
            "a907c8a26c257ea3448e2f2125d6b0e4ed2755ee86003b49132378a1b18ec4b0",
            "dd7905a991a539cdbffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f867",
        ),
    ];
    for (i, (k, (secret, public))) in net.account_keys.iter().zip(accounts).enumerate() {
        pin(&format!("account {i} secret"), k.secret_bytes(), secret);
        pin(
            &format!("account {i} public"),
            k.public().to_bytes(),
            public,
        );
    }
    pin(
        "carol public",
        carol().public().to_bytes(),
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    );
    pin(
        "dave public",
        dave().public().to_bytes(),
        "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c",
    );
}

#[test]
fn addresses_are_q1_hex_key_and_a_four_byte_checksum() {
    let carol = carol().address();
    let check = Hash::tagged(tags::ADDRESS_CHECK, &[&carol.0]);
    pin("carol address checksum", &check.0[..4], "69faee1f");
    let text = carol.to_string();
    assert_eq!(
        text,
        format!("q1{}{}", hex::encode(carol.0), hex::encode(&check.0[..4]))
    );
    assert_eq!(
        text,
        "q18a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c69faee1f"
    );
    assert_eq!(Address::parse(&text).unwrap(), carol);
    let net = net();
    assert_eq!(
        net.account_keys[0].address().to_string(),
        "q1798153c25836e38302acec74b68bb588741396708385ada4291d773aac6bfc05743b3cac"
    );
    assert_eq!(
        net.account_keys[1].address().to_string(),
        "q1dd7905a991a539cdbffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f867d4aa88a9"
    );
}

/// The genesis file shown in the document, verbatim.
const GENESIS_TOML: &str = r#"chain_name = "quire-test"
max_faulty = 1
[[validators]]
id = 0
public_key = "995b9ed8f7b464b87a05b82ec194debee08c83bcd68021b375a9bea625e304b3"
address = "127.0.0.1:7100"
[[validators]]
id = 1
public_key = "8931f05c263e7079de0125d48545645a7575defd9d39c6ca16cc5db2e4996fab"
address = "127.0.0.1:7101"
[[validators]]
id = 2
public_key = "e5ed1fbc21cb5b94084b91a09885c1f6863357c9be6f598a7a2fe3a49e3481ae"
address = "127.0.0.1:7102"
[[validators]]
id = 3
public_key = "3fe2ac50bdd3394845edc29102c8f468cc8b8e222359c518835c6e1aa4956aab"
address = "127.0.0.1:7103"
[[accounts]]
address = "q1798153c25836e38302acec74b68bb588741396708385ada4291d773aac6bfc05743b3cac"
balance = 1000000
[[accounts]]
address = "q1dd7905a991a539cdbffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f867d4aa88a9"
balance = 1000000
"#;

#[test]
fn the_example_genesis_file_is_the_example_network() {
    let genesis = Genesis::from_toml(GENESIS_TOML).unwrap();
    assert_eq!(genesis, net().genesis);
    pin(
        "chain id from the genesis file",
        genesis.chain_id().0,
        "19b4df7af51997bf2f4e5ea85ed9d1cff8824d37fcc72c62b32d5fdaea71462e",
    );
}

#[test]
fn the_chain_id_is_the_tagged_hash_of_the_genesis_preimage() {
    let net = net();
    // Rebuilt by hand from the document's layout.
    let mut pre = Vec::new();
    pre.extend_from_slice(&(b"quire-test".len() as u32).to_be_bytes());
    pre.extend_from_slice(b"quire-test");
    // The protocol rules: consensus (0 = pbft), batch_txs_max, raw_payloads, K, L, rotation.
    pre.push(0);
    pre.extend_from_slice(&512u32.to_be_bytes());
    pre.push(0);
    pre.extend_from_slice(&32u64.to_be_bytes());
    pre.extend_from_slice(&128u64.to_be_bytes());
    pre.extend_from_slice(&1024u64.to_be_bytes()); // rotation_blocks
    pre.extend_from_slice(&1u32.to_be_bytes()); // f
    pre.extend_from_slice(&4u32.to_be_bytes()); // n
    for (i, k) in net.validator_keys.iter().enumerate() {
        let host = format!("127.0.0.1:{}", 7100 + i);
        pre.extend_from_slice(&(i as u32).to_be_bytes());
        pre.extend_from_slice(&k.public().to_bytes());
        pre.extend_from_slice(&(host.len() as u32).to_be_bytes());
        pre.extend_from_slice(host.as_bytes());
    }
    let mut accounts: Vec<Address> = net.account_keys.iter().map(Keypair::address).collect();
    accounts.sort();
    pre.extend_from_slice(&(accounts.len() as u32).to_be_bytes());
    for a in &accounts {
        pre.extend_from_slice(&a.0);
        pre.extend_from_slice(&TEST_BALANCE.to_be_bytes());
    }
    pin(
        "genesis preimage",
        &pre,
        concat!(
            "0000000a71756972652d74657374000000020000000000000000002000000000",
            "000000800000000000000400000000010000000400000000995b9ed8f7b464b8",
            "7a05b82ec194debee08c83bcd68021b375a9bea625e304b30000000e3132372e",
            "302e302e313a37313030000000018931f05c263e7079de0125d48545645a7575",
            "defd9d39c6ca16cc5db2e4996fab0000000e3132372e302e302e313a37313031",
            "00000002e5ed1fbc21cb5b94084b91a09885c1f6863357c9be6f598a7a2fe3a4",
            "9e3481ae0000000e3132372e302e302e313a37313032000000033fe2ac50bdd3",
            "394845edc29102c8f468cc8b8e222359c518835c6e1aa4956aab0000000e3132",
            "372e302e302e313a3731303300000002798153c25836e38302acec74b68bb588",
            "741396708385ada4291d773aac6bfc0500000000000f4240dd7905a991a539cd",
            "bffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f86700000000000f4240"
        ),
    );
    let chain_id = Hash::tagged(tags::GENESIS, &[&pre]);
    assert_eq!(chain_id, net.genesis.chain_id());
    pin(
        "chain id",
        chain_id.0,
        "19b4df7af51997bf2f4e5ea85ed9d1cff8824d37fcc72c62b32d5fdaea71462e",
    );
}

#[test]
fn a_transfer_signs_its_fields_under_the_transfer_tag_and_chain_id() {
    let net = net();
    let chain_id = net.chain_id();
    let tx = transfer_0(&net);
    let t = *tx.as_transfer().unwrap();
    let fields = t.transfer.fields();
    let mut by_hand = Vec::new();
    by_hand.extend_from_slice(&net.account_keys[0].address().0);
    by_hand.extend_from_slice(&net.account_keys[1].address().0);
    by_hand.extend_from_slice(&250u64.to_be_bytes());
    by_hand.extend_from_slice(&0u64.to_be_bytes());
    assert_eq!(fields.as_slice(), by_hand.as_slice());
    pin(
        "transfer 0 fields",
        fields,
        concat!(
            "798153c25836e38302acec74b68bb588741396708385ada4291d773aac6bfc05",
            "dd7905a991a539cdbffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f867",
            "00000000000000fa0000000000000000"
        ),
    );

    let signed = t.signing_bytes(&chain_id);
    let mut by_hand = vec![sign_tags::TRANSFER.len() as u8];
    by_hand.extend_from_slice(sign_tags::TRANSFER.as_bytes());
    by_hand.extend_from_slice(&chain_id.0);
    by_hand.extend_from_slice(&fields);
    assert_eq!(signed, by_hand);
    pin(
        "transfer 0 signing bytes",
        &signed,
        concat!(
            "1671756972652f76312f7369676e2f7472616e7366657219b4df7af51997bf2f",
            "4e5ea85ed9d1cff8824d37fcc72c62b32d5fdaea71462e798153c25836e38302",
            "acec74b68bb588741396708385ada4291d773aac6bfc05dd7905a991a539cdbf",
            "fec85548c9ebe83bfacd40a60cfeb3324ea66083d3f86700000000000000fa00",
            "00000000000000"
        ),
    );
    // ed25519 is deterministic (RFC 8032): the same key and message give the same signature.
    pin(
        "transfer 0 signature",
        t.signature.0,
        concat!(
            "cc9abecb4103b74921536fb1fc616b24796241b8a53002cf840f9da2f53ee904",
            "b2fda9d8eb8b8e37ed4224f9c9543c8adc66c145180dd84df76580453be4000a"
        ),
    );
    assert_eq!(net.account_keys[0].sign_raw(&signed), t.signature);
    net.account_keys[0]
        .public()
        .verify_raw(&signed, &t.signature)
        .unwrap();

    let encoded = tx.to_bytes();
    assert_eq!(encoded.len(), 145);
    pin(
        "transfer 0 encoding",
        &encoded,
        concat!(
            "00798153c25836e38302acec74b68bb588741396708385ada4291d773aac6bfc",
            "05dd7905a991a539cdbffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f8",
            "6700000000000000fa0000000000000000cc9abecb4103b74921536fb1fc616b",
            "24796241b8a53002cf840f9da2f53ee904b2fda9d8eb8b8e37ed4224f9c9543c",
            "8adc66c145180dd84df76580453be4000a"
        ),
    );
    assert_eq!(Transaction::from_bytes(&encoded).unwrap(), tx);

    let id = Hash::tagged(tags::TX_ID, &[&[0], &fields]);
    assert_eq!(tx.id().0, id);
    pin(
        "transfer 0 id",
        id.0,
        "61df45db63286571a307662a8f90fc7fe73e13780f1f8ba8d7d55f284bcd07d7",
    );
    pin(
        "transfer 2 id",
        transfer_2(&net).id().0.0,
        "2fc3000e5e9b1a5b383a143c7822e9e9562d6c9983ac6a8a1624f0652286e09b",
    );
}

#[test]
fn a_raw_payload_is_length_prefixed_and_its_id_hashes_its_encoding() {
    let tx = raw_1();
    let encoded = tx.to_bytes();
    pin("raw 1 encoding", &encoded, "0100000004deadbeef");
    let id = Hash::tagged(tags::TX_ID, &[&encoded]);
    assert_eq!(tx.id().0, id);
    pin(
        "raw 1 id",
        id.0,
        "e0f6dfe6c37763d5b2b3dc5f377380db7c688460c2a6326af252b6fa7172a9d9",
    );
}

#[test]
fn the_tx_root_binds_the_count_and_proofs_follow_rfc_9162() {
    let net = net();
    let ids = batch(&net).tx_ids();
    let leaf = |h: &Hash| Hash::tagged(tags::MERKLE_LEAF, &[&h.0]);
    let node = |l: &Hash, r: &Hash| Hash::tagged(tags::MERKLE_NODE, &[&l.0, &r.0]);
    let leaves: Vec<Hash> = ids.iter().map(leaf).collect();
    pin(
        "merkle leaf 0",
        leaves[0].0,
        "b1691df3c9aa9e436fa8c359d386c0f041b7d1782d9e4cd9444ef94bc499b90f",
    );
    pin(
        "merkle leaf 1",
        leaves[1].0,
        "8f74bc51bb254a5f52895e14588120e2fb3848c46c0d76bce6b1910ca6972c6a",
    );
    pin(
        "merkle leaf 2",
        leaves[2].0,
        "70c14383a00535cae976a004463bdf190ad3ac947360350b82fae3fb66b21595",
    );
    // Three leaves: the left subtree holds the largest power of two below 3, i.e. 2.
    let left = node(&leaves[0], &leaves[1]);
    pin(
        "merkle node(leaf 0, leaf 1)",
        left.0,
        "57c4dd14333ace329b4c4b6ce15d05b4730480b88448d100e2953a60d206bdf5",
    );
    let tree = node(&left, &leaves[2]);
    pin(
        "merkle tree hash",
        tree.0,
        "f84d885f6b3e592dbd0618e3d088c5471ab62ed364c03593eb8a5014906ab7c2",
    );
    let root = Hash::tagged(tags::MERKLE_ROOT, &[&3u64.to_be_bytes(), &tree.0]);
    assert_eq!(merkle::root(&ids), root);
    pin(
        "tx root",
        root.0,
        "ac6d0b03e03ca95ad20edb80ae21b371f2d2060528b3a8cda41108d7fd9ab890",
    );

    let proof = merkle::prove(&ids, 1).unwrap();
    assert_eq!(proof.siblings, vec![leaves[0], leaves[2]]);
    assert!(proof.verify(&ids[1], &root));
    let encoded = proof.to_bytes();
    pin(
        "merkle proof of index 1",
        &encoded,
        concat!(
            "0000000000000001000000000000000300000002b1691df3c9aa9e436fa8c359",
            "d386c0f041b7d1782d9e4cd9444ef94bc499b90f70c14383a00535cae976a004",
            "463bdf190ad3ac947360350b82fae3fb66b21595"
        ),
    );
    assert_eq!(MerkleProof::from_bytes(&encoded).unwrap(), proof);

    let empty = Hash::tagged(tags::MERKLE_ROOT, &[&0u64.to_be_bytes(), &[0u8; 32]]);
    assert_eq!(merkle::root(&[]), empty);
    pin(
        "tx root of no transactions",
        empty.0,
        "d798e9083cd86d85eda62bbf116b1324fbcaaa1a8314b26fc77794b9866fe8ff",
    );
}

#[test]
fn the_state_root_of_two_accounts_and_their_proofs() {
    let net = net();
    let mut ledger = net.genesis.ledger();
    let genesis_account = Account {
        balance: TEST_BALANCE,
        nonce: 0,
    };
    let expected = [
        (
            "bdf7214c594b07303ee0528e3ade465578615b12892ec9a1416ee895f837a225",
            "f86eda4442f4eb83938a48af3cb45765332f01d2c781918b3aa1271504e3dc62",
            "9a9c4578ef0e57733e71e130e3ff3d50c0e49f9d03fe4b3a98cb47de3347172d",
        ),
        (
            "8cd98b698f07afe330c34ffcbdc04dc8b568a897b7e92ec6926aedabae87c5de",
            "dcf8f9d8f00a7a6ef244a38c578e5896ad4a8307ddbff39552bff25d32a8084a",
            "2881684cb2f44ecc85390c67a920c3104dfada0733a85c98c02cf87ad998ff46",
        ),
    ];
    let mut keys = Vec::new();
    let mut leaves = Vec::new();
    for (i, (k, (key_hex, value_hex, leaf_hex))) in
        net.account_keys.iter().zip(expected).enumerate()
    {
        let address = k.address();
        let key = account_key(&address);
        assert_eq!(key, Hash::tagged(tags::SMT_KEY, &[&address.0]));
        let value = account_value_hash(&address, &genesis_account);
        let by_hand = Hash::tagged(
            tags::ACCOUNT,
            &[&address.0, &TEST_BALANCE.to_be_bytes(), &0u64.to_be_bytes()],
        );
        assert_eq!(value, by_hand);
        let leaf = Hash::tagged(tags::SMT_LEAF, &[&key.0, &value.0]);
        pin(&format!("account {i} smt key"), key.0, key_hex);
        pin(&format!("account {i} value hash"), value.0, value_hex);
        pin(&format!("account {i} smt leaf"), leaf.0, leaf_hex);
        keys.push(key);
        leaves.push(leaf);
    }
    // The keys agree on bits 0 (= 1) and 1 (= 0) and part at bit 2, where account 1 has 0. The
    // two single-leaf subtrees hang under a node at depth 2; above it, each level is a node whose
    // other child is the empty subtree (no path compression of inner nodes).
    assert_eq!(
        (0..3).map(|i| keys[0].bit(i)).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(
        (0..3).map(|i| keys[1].bit(i)).collect::<Vec<_>>(),
        [true, false, false]
    );
    let node = |l: &Hash, r: &Hash| Hash::tagged(tags::SMT_NODE, &[&l.0, &r.0]);
    let depth_2 = node(&leaves[1], &leaves[0]);
    pin(
        "smt node at depth 2",
        depth_2.0,
        "7c79e0b2e088df385076369c608aa527621a85fd7a88aef759a25f7b15549fcb",
    );
    let depth_1 = node(&depth_2, &Hash::ZERO);
    pin(
        "smt node at depth 1",
        depth_1.0,
        "046f18ea3070c83ce9722dee0c8a02024c01b545e10819b24f0faa88d66bcb09",
    );
    let root = node(&Hash::ZERO, &depth_1);
    assert_eq!(ledger.state_root(), root);
    pin(
        "genesis state root",
        root.0,
        "318d74cb6746c1a1cfdfd875d6003eefebfd28cb4e88e7ffc02d5769a95cbac7",
    );

    let account_0 = net.account_keys[0].address();
    let (account, proof) = ledger.prove(&account_0);
    assert_eq!(account, genesis_account);
    assert_eq!(proof.siblings, vec![Hash::ZERO, Hash::ZERO, leaves[1]]);
    assert!(verify_account(&root, &account_0, &account, &proof));
    pin(
        "smt proof of account 0",
        proof.to_bytes(),
        concat!(
            "0000000300000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "000000002881684cb2f44ecc85390c67a920c3104dfada0733a85c98c02cf87a",
            "d998ff4601bdf7214c594b07303ee0528e3ade465578615b12892ec9a1416ee8",
            "95f837a225f86eda4442f4eb83938a48af3cb45765332f01d2c781918b3aa127",
            "1504e3dc62"
        ),
    );
    assert_eq!(SmtProof::from_bytes(&proof.to_bytes()).unwrap(), proof);

    // Carol's key starts 1, 0, 1 like account 0's: her path ends in account 0's single-leaf
    // subtree, so the very proof that shows account 0's value also shows that she has none.
    let carol = carol().address();
    pin(
        "carol smt key",
        account_key(&carol).0,
        "b8d128bb57e835c34d98b187e70b1af8f44dce35969bf9f1ad5a74ba8dde0106",
    );
    let (account, absent) = ledger.prove(&carol);
    assert_eq!(account, Account::default());
    assert_eq!(absent, proof);
    assert!(verify_account(&root, &carol, &account, &absent));

    // Dave's key starts 1, 1: his path ends in an empty subtree at depth 2.
    let dave = dave().address();
    pin(
        "dave smt key",
        account_key(&dave).0,
        "d84cf8c07f6571506f44e1d2529cc9a804938c235f1d04ee23fb0c40537abe54",
    );
    let (account, absent) = ledger.prove(&dave);
    assert_eq!(absent.siblings, vec![Hash::ZERO, depth_2]);
    assert_eq!(absent.terminal, Terminal::Empty);
    assert!(verify_account(&root, &dave, &account, &absent));
    pin(
        "smt absence proof of dave",
        absent.to_bytes(),
        concat!(
            "0000000200000000000000000000000000000000000000000000000000000000",
            "000000007c79e0b2e088df385076369c608aa527621a85fd7a88aef759a25f7b",
            "15549fcb00"
        ),
    );
}

#[test]
fn the_genesis_block_is_height_zero_with_no_certificate() {
    let net = net();
    let block = net.genesis.block();
    assert!(block.certificate.is_none());
    let encoded = block.header.to_bytes();
    assert_eq!(encoded.len(), 157);
    pin(
        "genesis header encoding",
        &encoded,
        concat!(
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000d798e9083cd86d85eda62bbf116b1324fbcaaa1a8314b26f",
            "c77794b9866fe8ff318d74cb6746c1a1cfdfd875d6003eefebfd28cb4e88e7ff",
            "c02d5769a95cbac7d798e9083cd86d85eda62bbf116b1324fbcaaa1a8314b26f",
            "c77794b9866fe8ff000000000000000000000000000000000000000000"
        ),
    );
    assert_eq!(block.header.hash(), Hash::tagged(tags::HEADER, &[&encoded]));
    pin(
        "genesis block hash",
        block.header.hash().0,
        "567e18e537cc5c7f0ccc369c7ff9347b132c3559cb55b232d0788947df821ba6",
    );
    pin(
        "genesis block encoding",
        block.to_bytes(),
        concat!(
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000d798e9083cd86d85eda62bbf116b1324fbcaaa1a8314b26f",
            "c77794b9866fe8ff318d74cb6746c1a1cfdfd875d6003eefebfd28cb4e88e7ff",
            "c02d5769a95cbac7d798e9083cd86d85eda62bbf116b1324fbcaaa1a8314b26f",
            "c77794b9866fe8ff000000000000000000000000000000000000000000000000",
            "0000"
        ),
    );
}

#[test]
fn a_batch_digest_covers_view_proposer_timestamp_and_tx_root() {
    let net = net();
    let b = batch(&net);
    let encoded = b.to_bytes();
    assert_eq!(encoded.len(), 8 + 4 + 8 + 4 + 145 + 9 + 145);
    let mut by_hand = Vec::new();
    by_hand.extend_from_slice(&0u64.to_be_bytes());
    by_hand.extend_from_slice(&0u32.to_be_bytes());
    by_hand.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    by_hand.extend_from_slice(&3u32.to_be_bytes());
    for tx in &b.txs {
        by_hand.extend_from_slice(&tx.to_bytes());
    }
    assert_eq!(encoded, by_hand);
    pin(
        "batch encoding sha256",
        sha256(&encoded),
        "bc5a9bca0f811d178643cd0a8c30ba5e7e55fade459cb863c38b79371abb1a5d",
    );
    let digest = Hash::tagged(
        tags::BATCH,
        &[
            &0u64.to_be_bytes(),
            &0u32.to_be_bytes(),
            &1_700_000_000_000u64.to_be_bytes(),
            &b.tx_root().0,
        ],
    );
    assert_eq!(b.digest(), digest);
    pin(
        "batch digest",
        digest.0,
        "a51779230471c181fda038f4f51fc03083c025425dc3e627f71c3117f5268849",
    );

    let null = Batch::null();
    pin(
        "null batch encoding",
        null.to_bytes(),
        "000000000000000000000000000000000000000000000000",
    );
    pin(
        "null batch digest",
        null.digest().0,
        "9c3ef9502912b0f3851bdb43b48fc880de7a39c412e8ce31ab89b12f8e108917",
    );
}

#[test]
fn executing_the_batch_at_seq_1_derives_header_1() {
    let net = net();
    let mut ledger = net.genesis.ledger();
    let genesis = net.genesis.block();
    let b = batch(&net);
    let executed = net.certified_block(&mut ledger, &genesis.header, &b);
    let record = &executed.record;
    let header = record.block.header;
    assert_eq!(
        record.outcomes,
        vec![
            Outcome::Applied,
            Outcome::Ordered,
            Outcome::Rejected(Rejection::InsufficientBalance {
                balance: 1_000_250,
                amount: 2_000_000
            }),
        ]
    );
    pin("outcome 0", record.outcomes[0].to_bytes(), "00");
    pin("outcome 1", record.outcomes[1].to_bytes(), "01");
    pin(
        "outcome 2",
        record.outcomes[2].to_bytes(),
        "020300000000000f433a00000000001e8480",
    );
    assert_eq!(header.height, 1);
    assert_eq!(header.parent_hash, genesis.hash());
    assert_eq!(header.batch_digest(), b.digest());
    assert_eq!(
        header.batch_digest(),
        batch_digest(
            header.view,
            header.proposer,
            header.timestamp_ms,
            &header.tx_root
        )
    );
    pin(
        "block 1 state root",
        header.state_root.0,
        "cd7b85f146fa5156800c7a73141186f65df8c5888e672a117a8fe2fc60ffe391",
    );
    // The outcomes root: each leaf binds a transaction id to its outcome's encoding.
    let leaves: Vec<Hash> = record
        .block
        .txs
        .iter()
        .zip(&record.outcomes)
        .map(|(tx, o)| Hash::tagged(tags::OUTCOME, &[&tx.id().0.0, &o.to_bytes()]))
        .collect();
    pin(
        "block 1 outcome leaf 0",
        leaves[0].0,
        "85681bb3bfeb2111a74a5e0a3e55f69d35ab7444904e24ef6ede6cdf38dbd220",
    );
    assert_eq!(header.outcomes_root, merkle::root(&leaves));
    pin(
        "block 1 outcomes root",
        header.outcomes_root.0,
        "919647e117775260b70d13bf7b343e6e63fbc712d4a6a432bf3f887625a30561",
    );
    let encoded = header.to_bytes();
    pin(
        "block 1 header encoding",
        &encoded,
        concat!(
            "0000000000000001567e18e537cc5c7f0ccc369c7ff9347b132c3559cb55b232",
            "d0788947df821ba6ac6d0b03e03ca95ad20edb80ae21b371f2d2060528b3a8cd",
            "a41108d7fd9ab890cd7b85f146fa5156800c7a73141186f65df8c5888e672a11",
            "7a8fe2fc60ffe391919647e117775260b70d13bf7b343e6e63fbc712d4a6a432",
            "bf3f887625a305610000000000000000000000000000018bcfe5680000"
        ),
    );
    assert_eq!(Header::from_bytes(&encoded).unwrap(), header);
    pin(
        "block 1 hash",
        header.hash().0,
        "0e8b09feb98cfe9ddc89078564a8ab139315761ff07b8180da1fd4185eb8b0ba",
    );

    record
        .block
        .verify_certified(&net.chain_id(), &net.genesis.validators)
        .unwrap();
    let block_bytes = record.block.to_bytes();
    assert_eq!(block_bytes.len(), 157 + 4 + 299 + 1 + 48 + 4 + 3 * 68);
    pin(
        "block 1 encoding sha256",
        sha256(&block_bytes),
        "e696cc920862e13a142cbf5adca5a641f4ff92d92cae8f39b0b6c8d4c2693597",
    );
    assert_eq!(Block::from_bytes(&block_bytes).unwrap(), record.block);
    let record_bytes = record.to_bytes();
    assert_eq!(record_bytes.len(), block_bytes.len() + 4 + 1 + 1 + 18);
    pin(
        "block 1 record encoding sha256",
        sha256(&record_bytes),
        "c1a0ea92048b5a759dd8561c3315a7767467ff863132cfd9e06168c704fa9161",
    );
    assert_eq!(BlockRecord::from_bytes(&record_bytes).unwrap(), *record);

    let account_0 = net.account_keys[0].address();
    let (account, proof) = ledger.prove(&account_0);
    let after = Account {
        balance: 999_750,
        nonce: 1,
    };
    assert_eq!(account, after);
    assert!(verify_account(
        &header.state_root,
        &account_0,
        &after,
        &proof
    ));
    pin(
        "block 1 value hash of account 0",
        account_value_hash(&account_0, &after).0,
        "9bf20011ff4292b53b208a20eb62089818502ec6d9b3407c9d18a8ffe3f1ba56",
    );
    pin(
        "block 1 smt proof of account 0",
        proof.to_bytes(),
        concat!(
            "0000000300000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "00000000e5a92976c2e56e7f06252cb316f885eb00453e0b844ed2eea91bc535",
            "e201dc8901bdf7214c594b07303ee0528e3ade465578615b12892ec9a1416ee8",
            "95f837a2259bf20011ff4292b53b208a20eb62089818502ec6d9b3407c9d18a8",
            "ffe3f1ba56"
        ),
    );
}

#[test]
fn a_commit_certificate_is_the_statement_and_a_quorum_of_ordered_votes() {
    let net = net();
    let chain_id = net.chain_id();
    let mut ledger = net.genesis.ledger();
    let b = batch(&net);
    let executed = net.certified_block(&mut ledger, &net.genesis.block().header, &b);
    let cert = executed.record.block.certificate.unwrap();
    let statement = CommitStatement {
        view: 0,
        seq: 1,
        digest: b.digest(),
    };
    assert_eq!(cert.statement, statement);
    let encoded = statement.to_bytes();
    pin(
        "commit statement encoding",
        &encoded,
        concat!(
            "00000000000000000000000000000001a51779230471c181fda038f4f51fc030",
            "83c025425dc3e627f71c3117f5268849"
        ),
    );
    let signed = signing_bytes(sign_tags::COMMIT, &chain_id, &encoded);
    pin(
        "commit signing bytes",
        &signed,
        concat!(
            "1471756972652f76312f7369676e2f636f6d6d697419b4df7af51997bf2f4e5e",
            "a85ed9d1cff8824d37fcc72c62b32d5fdaea71462e0000000000000000000000",
            "0000000001a51779230471c181fda038f4f51fc03083c025425dc3e627f71c31",
            "17f5268849"
        ),
    );
    let votes = [
        concat!(
            "10000b88b28a9c39c555e24ff4765a664ce77e49822057ceff22d3624e6ef284",
            "b2c36b8161d5a735a34f847ce92f1d6874e6519c56184c8e767afade9cda860e"
        ),
        concat!(
            "5d44af44395657523491fdd31458da249b75eac2b764065a6d8e619649e65329",
            "ca925c774528864880da5094b10d27a42e4b5ceea07aa1ef7907e3be04ed3d05"
        ),
        concat!(
            "b2799697dd70e527a8386ce58d40f905c63215be54ea6b28f2d8333e647b629c",
            "ff302ac73280c74ec183fcb8dac4fff2b58959824d831259f7114014a23d6c08"
        ),
    ];
    assert_eq!(cert.votes.len(), net.genesis.validators.quorum());
    for (vote, expected) in cert.votes.iter().zip(votes) {
        let key = &net.validator_keys[vote.replica as usize];
        assert_eq!(vote.signature, statement.sign(key, &chain_id));
        key.public().verify_raw(&signed, &vote.signature).unwrap();
        pin(
            &format!("commit vote of validator {}", vote.replica),
            vote.signature.0,
            expected,
        );
    }
    cert.verify(&chain_id, &net.genesis.validators).unwrap();
    pin(
        "commit certificate encoding",
        cert.to_bytes(),
        concat!(
            "00000000000000000000000000000001a51779230471c181fda038f4f51fc030",
            "83c025425dc3e627f71c3117f5268849000000030000000010000b88b28a9c39",
            "c555e24ff4765a664ce77e49822057ceff22d3624e6ef284b2c36b8161d5a735",
            "a34f847ce92f1d6874e6519c56184c8e767afade9cda860e000000015d44af44",
            "395657523491fdd31458da249b75eac2b764065a6d8e619649e65329ca925c77",
            "4528864880da5094b10d27a42e4b5ceea07aa1ef7907e3be04ed3d0500000002",
            "b2799697dd70e527a8386ce58d40f905c63215be54ea6b28f2d8333e647b629c",
            "ff302ac73280c74ec183fcb8dac4fff2b58959824d831259f7114014a23d6c08"
        ),
    );

    // The Commit message validator 0 sends, assembled from the envelope layout by hand (the
    // consensus crate is not a dependency of this one): kind 2 || from || statement || signature.
    let mut message = vec![2u8];
    message.extend_from_slice(&0u32.to_be_bytes());
    message.extend_from_slice(&encoded);
    message.extend_from_slice(&cert.votes[0].signature.0);
    pin(
        "commit message from validator 0",
        &message,
        concat!(
            "020000000000000000000000000000000000000001a51779230471c181fda038",
            "f4f51fc03083c025425dc3e627f71c3117f526884910000b88b28a9c39c555e2",
            "4ff4765a664ce77e49822057ceff22d3624e6ef284b2c36b8161d5a735a34f84",
            "7ce92f1d6874e6519c56184c8e767afade9cda860e"
        ),
    );
}

#[test]
fn checkpoints_and_attestations_vouch_for_a_block_hash() {
    let net = net();
    let chain_id = net.chain_id();
    let mut ledger = net.genesis.ledger();
    let executed = net.certified_block(&mut ledger, &net.genesis.block().header, &batch(&net));
    let block_hash = executed.record.block.hash();

    let checkpoint = CheckpointStatement { seq: 1, block_hash };
    let encoded = checkpoint.to_bytes();
    pin(
        "checkpoint statement encoding",
        &encoded,
        concat!(
            "00000000000000010e8b09feb98cfe9ddc89078564a8ab139315761ff07b8180",
            "da1fd4185eb8b0ba"
        ),
    );
    let signed = signing_bytes(sign_tags::CHECKPOINT, &chain_id, &encoded);
    pin(
        "checkpoint signing bytes",
        &signed,
        concat!(
            "1871756972652f76312f7369676e2f636865636b706f696e7419b4df7af51997",
            "bf2f4e5ea85ed9d1cff8824d37fcc72c62b32d5fdaea71462e00000000000000",
            "010e8b09feb98cfe9ddc89078564a8ab139315761ff07b8180da1fd4185eb8b0",
            "ba"
        ),
    );
    pin(
        "checkpoint vote of validator 0",
        checkpoint.sign(&net.validator_keys[0], &chain_id).0,
        concat!(
            "715ee3204aeb8d9ca7116368ef69b9b04914d46f3ce1216069c5c2601efd51d4",
            "4d55fc3e04be93529606917acb524862529e4e7e8ba6e2bfa61af3bb9fd1d500"
        ),
    );

    // Attestation { height: 1, block_hash }: fields = height u64 BE || block_hash. The node's
    // RPC type is written separately; the bytes it signs are fixed here.
    let mut fields = 1u64.to_be_bytes().to_vec();
    fields.extend_from_slice(&block_hash.0);
    let signed = signing_bytes(sign_tags::ATTESTATION, &chain_id, &fields);
    pin(
        "attestation signing bytes",
        &signed,
        concat!(
            "1971756972652f76312f7369676e2f6174746573746174696f6e19b4df7af519",
            "97bf2f4e5ea85ed9d1cff8824d37fcc72c62b32d5fdaea71462e000000000000",
            "00010e8b09feb98cfe9ddc89078564a8ab139315761ff07b8180da1fd4185eb8",
            "b0ba"
        ),
    );
    let attestations = [
        concat!(
            "66c59453bdbcd0e9efd8d993d1b102aca77c586041b71c27c7727a3687496c82",
            "fd6c16ccce6370a6278da4e324876d128a98700e18bf748d8bd7cbe049fe2b0d"
        ),
        concat!(
            "8707feab23ee9eb9ceee511a6de4bac94b4f717a2f74911f67b39d1d8845a3c2",
            "c3cb14aa48d6638e64233410c18ce821918ca2e45e6ed150648b3d3dc8bdcb0a"
        ),
    ];
    for (i, expected) in attestations.iter().enumerate() {
        let key = &net.validator_keys[i];
        let sig = key.sign(sign_tags::ATTESTATION, &chain_id, &fields);
        key.public()
            .verify(sign_tags::ATTESTATION, &chain_id, &fields, &sig)
            .unwrap();
        pin(&format!("attestation of validator {i}"), sig.0, expected);
    }
}

/// §14.12: the proof-of-work network of the examples — its rules in the chain id, a sealed
/// header, its work, a retargeted target, an undo record.
#[test]
fn proof_of_work_rules_headers_work_and_undo_records() {
    use quire_chain::pow::{
        Limits, PowChain, PowParams, Received, Retarget, Undo, grind, meets_target, next_target,
        target_for_hashes, work,
    };
    use quire_chain::store::{MemoryStore, Store};
    let params = PowParams {
        target_interval_ms: 1000,
        initial_target: target_for_hashes(16),
        target_limit: target_for_hashes(1),
        retarget: Retarget::PerBlock,
        retarget_damping: 16,
        retarget_clamp: 4,
        confirmations: 6,
        timestamp_future_ms: 5000,
    };
    let net = TestNet::with_pow(4, 2, 0, params);
    let mut rules = Vec::new();
    params.encode(&mut rules);
    // By hand: T, the two targets, the retarget code, N, clamp, k, the future drift.
    let mut by_hand = Vec::new();
    by_hand.extend_from_slice(&1000u64.to_be_bytes());
    by_hand.extend_from_slice(&params.initial_target.0);
    by_hand.extend_from_slice(&[0xff; 32]);
    by_hand.push(0);
    by_hand.extend_from_slice(&16u32.to_be_bytes());
    by_hand.extend_from_slice(&4u32.to_be_bytes());
    by_hand.extend_from_slice(&6u32.to_be_bytes());
    by_hand.extend_from_slice(&5000u64.to_be_bytes());
    assert_eq!(rules, by_hand);
    pin(
        "initial target (16 hashes)",
        params.initial_target.0,
        "0fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    );
    pin(
        "pow rules in the chain id",
        &rules,
        "00000000000003e80fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000001000000004000000060000000000001388",
    );
    pin(
        "pow chain id",
        net.chain_id().0,
        "99c1947b6a3cc769ed85453d42ed9e9d3831584acc98619adc3313fcbe97ce80",
    );
    assert_eq!(work(&params.initial_target).to_string(), "16");

    let genesis = net.genesis.block().header;
    assert_eq!(genesis.parent_hash, net.chain_id());
    pin(
        "pow genesis block hash",
        genesis.hash().0,
        "e4656654e81d170be9d9cebc5955b4ca98f825aea2d0e9fe86039dd2a4d812a1",
    );
    let store = MemoryStore::new(&net.genesis);
    let mut chain = PowChain::open(&net.genesis, &store, Limits::default()).unwrap();
    let mut block = chain.template(&[net.transfer(0, 1, 250, 0)], 0, 1_700_000_000_000);
    assert!(grind(&mut block.header, 0, 1 << 20));
    let header = block.header;
    assert!(meets_target(&header.hash(), &params.initial_target));
    pin(
        "pow header 1",
        header.to_bytes(),
        "0000000000000001e4656654e81d170be9d9cebc5955b4ca98f825aea2d0e9fe86039dd2a4d812a1fc46e656afb6ceb78297a1455d9ca5d44554e70a58e549122c2d9b5d45203960cd7b85f146fa5156800c7a73141186f65df8c5888e672a117a8fe2fc60ffe3916fcbde9c50f9efbde504d469fb196ab41b260c3e79ccfd0bf52d9dd5ab126e5b0000000000000000000000000000018bcfe56800010fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0000000000000013",
    );
    pin(
        "pow header 1 hash",
        header.hash().0,
        "0ac7f3d33a9965bd88378875d2ab941e72f401c67dc6f0005a38fcf06ed2620a",
    );
    let Received::NewHead(change) = chain
        .receive(&store, block.clone(), 1_700_000_000_000)
        .unwrap()
    else {
        panic!("block 1 extends the genesis");
    };
    let undo: &Undo = &change.write.blocks[0].1;
    pin(
        "undo record of block 1",
        undo.to_bytes(),
        "00000002798153c25836e38302acec74b68bb588741396708385ada4291d773aac6bfc050100000000000f42400000000000000000dd7905a991a539cdbffec85548c9ebe83bfacd40a60cfeb3324ea66083d3f8670100000000000f42400000000000000000",
    );
    store.write_pow(&change.write).unwrap();
    // A parent 500 ms after its own parent: the child's target tightens by (15 + 0.5) / 16.
    let mut parent = header;
    parent.height = 2;
    parent.timestamp_ms = header.timestamp_ms + 500;
    pin(
        "target after a 500 ms interval",
        next_target(&params, &parent, Some(&header)).0,
        "0f7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    );
}
