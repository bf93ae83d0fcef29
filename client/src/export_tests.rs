//! The block export: it round-trips, verifies against the genesis alone, and a truncated or
//! corrupt file is refused naming the field that is wrong.

use super::*;
use crate::testing::Chain;

fn export(chain: &Chain) -> BlockExport {
    let record = chain.record(1);
    let attestations = vec![chain.block_attestation(1, 1), chain.block_attestation(1, 3)];
    let verified = verify_block_response(
        &chain.net.genesis,
        Some(1),
        &record.block,
        &record.outcomes,
        &attestations,
    )
    .unwrap();
    BlockExport::of(&verified, chain.chain_id())
}

fn refusal(bytes: &[u8], chain: &Chain) -> ExportError {
    match BlockExport::decode(bytes) {
        Err(e) => e,
        Ok(decoded) => decoded.verify(&chain.net.genesis).unwrap_err(),
    }
}

#[test]
fn an_export_round_trips_and_verifies_against_the_genesis_alone() {
    let chain = Chain::new();
    let export = export(&chain);
    let bytes = export.to_bytes();
    let decoded = BlockExport::decode(&bytes).unwrap();
    assert_eq!(decoded, export);
    let verified = decoded.verify(&chain.net.genesis).unwrap();
    assert_eq!(verified.attesters, vec![1, 3]);
    assert_eq!(verified.block.txs.len(), 2);
    assert_eq!(export.proofs.len(), 2);
}

#[test]
fn a_truncated_file_is_refused_naming_the_field_it_ends_in() {
    let chain = Chain::new();
    let bytes = export(&chain).to_bytes();
    for len in 0..bytes.len() {
        let e = refusal(&bytes[..len], &chain);
        assert!(!e.field().is_empty(), "cut at {len}: {e}");
    }
    // Cut inside the header's state root (header offset 72..104).
    let header_at = 1 + MAGIC.len() + 32;
    let e = refusal(&bytes[..header_at + 100], &chain);
    assert_eq!(e.field(), "block.header.state_root", "{e}");
    assert!(
        e.to_string().contains(&format!("byte {}", header_at + 72)),
        "{e}"
    );
    // Cut inside the last field of the file.
    let e = refusal(&bytes[..bytes.len() - 10], &chain);
    assert_eq!(e.field(), "proofs[1].outcome", "{e}");
    // Cut among the votes: the count is refused before anything is allocated for it.
    let votes_at = header_at + 157 + 4 + 2 * 145 + 1 + 48;
    let e = refusal(&bytes[..votes_at + 4 + 100], &chain);
    assert_eq!(e.field(), "block.certificate.votes count", "{e}");
    let e = refusal(&bytes[..5], &chain);
    assert_eq!(e.field(), "magic");
}

/// One way to break an export.
type Corrupt = Box<dyn Fn(&mut BlockExport)>;

#[test]
fn corrupt_fields_are_named() {
    let chain = Chain::new();
    let good = export(&chain);
    let cases: Vec<(&str, Corrupt)> = vec![
        ("chain_id", Box::new(|e| e.chain_id = Hash([9; 32]))),
        (
            "block.certificate.votes[1].signature",
            Box::new(|e| {
                if let Some(c) = e.block.certificate.as_mut() {
                    c.votes[1].signature.0[3] ^= 1;
                }
            }),
        ),
        ("block.header.tx_root", Box::new(|e| e.block.txs.swap(0, 1))),
        (
            "block.certificate.statement.seq",
            Box::new(|e| {
                if let Some(c) = e.block.certificate.as_mut() {
                    c.statement.seq = 7;
                }
            }),
        ),
        (
            "outcomes",
            Box::new(|e| {
                e.outcomes.pop();
            }),
        ),
        (
            "attestations[0].signature",
            Box::new(|e| e.attestations[0].signature.0[0] ^= 1),
        ),
        ("attestations", Box::new(|e| e.attestations.truncate(1))),
        (
            "proofs[1].tx",
            Box::new(|e| e.proofs[1].0 = e.proofs[0].0.clone()),
        ),
        (
            "proofs[0].outcome",
            Box::new(|e| e.proofs[0].1 = e.proofs[1].1.clone()),
        ),
    ];
    for (field, corrupt) in cases {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let e = refusal(&bad.to_bytes(), &chain);
        assert_eq!(e.field(), field, "{e}");
    }
    let mut bytes = good.to_bytes();
    bytes[3] ^= 0x20;
    assert_eq!(refusal(&bytes, &chain).field(), "magic");
    let mut bytes = good.to_bytes();
    bytes.push(0);
    assert_eq!(refusal(&bytes, &chain).field(), "end of file");
}
