//! The light-client walk over forged chains: each test breaks one link of the evidence.

use std::collections::BTreeMap;

use quire_chain::cert::{Certificate, CheckpointStatement, Statement as _};
use quire_chain::testkit::derived_key;

use super::*;
use crate::testing::Chain;

/// A chain of 4 blocks after genesis.
fn chain() -> Chain {
    let mut c = Chain::new();
    for i in 0..3u64 {
        let tx = c.net.transfer(2, 3, 1 + i, i);
        c.push(vec![tx]);
    }
    c
}

type Item = (Header, Option<CommitCertificate>);

fn items(c: &Chain) -> Vec<Item> {
    let mut out = vec![(c.headers[0], None)];
    out.extend(
        c.records
            .iter()
            .map(|r| (r.block.header, r.block.certificate.clone())),
    );
    out
}

fn walk_all<'g>(
    c: &'g Chain,
    items: &[Item],
    remember: Option<u64>,
) -> Result<ChainWalk<'g>, ChainProblem> {
    let mut walk = ChainWalk::new(&c.net.genesis, remember);
    for (header, cert) in items {
        walk.step(header, cert.as_ref())?;
    }
    Ok(walk)
}

fn checkpoint_cert(c: &Chain, seq: u64, block_hash: Hash, signers: usize) -> CheckpointCertificate {
    let statement = CheckpointStatement { seq, block_hash };
    let votes: BTreeMap<u32, _> = c.net.validator_keys[..signers]
        .iter()
        .enumerate()
        .map(|(i, k)| (i as u32, statement.sign(k, &c.chain_id())))
        .collect();
    Certificate::from_votes(statement, &votes)
}

#[test]
fn an_honest_chain_walks_to_its_head() {
    let c = chain();
    let walk = walk_all(&c, &items(&c), Some(2)).unwrap();
    assert_eq!(walk.last().map(|h| h.height), Some(4));
    assert_eq!(walk.hash_at_remembered(), Some(c.headers[2].hash()));
}

#[test]
fn a_chain_that_does_not_start_at_this_genesis_is_refused() {
    let c = chain();
    let mut forged = items(&c);
    forged[0].0.state_root = Hash([3; 32]);
    let err = walk_all(&c, &forged, None).unwrap_err();
    assert_eq!(err, ChainProblem::new(0, ChainFault::NotGenesis));
    // Another network's genesis.
    let other = quire_chain::testkit::TestNet::with_seed(4, 4, 1);
    let mut forged = items(&c);
    forged[0].0 = other.genesis.block().header;
    assert_eq!(
        walk_all(&c, &forged, None).unwrap_err().what,
        ChainFault::NotGenesis
    );
}

#[test]
fn a_broken_link_is_refused_at_its_height() {
    let c = chain();
    let mut forged = items(&c);
    forged[3].0.parent_hash = Hash([9; 32]);
    let err = walk_all(&c, &forged, None).unwrap_err();
    assert_eq!(err, ChainProblem::new(3, ChainFault::BadLink));
    // A changed state root changes the hash the next header links to.
    let mut forged = items(&c);
    forged[2].0.state_root = Hash([9; 32]);
    assert_eq!(
        walk_all(&c, &forged, None).unwrap_err(),
        ChainProblem::new(3, ChainFault::BadLink)
    );
}

#[test]
fn missing_misplaced_or_forged_certificates_are_refused() {
    let c = chain();
    let mut forged = items(&c);
    forged[2].1 = None;
    assert_eq!(
        walk_all(&c, &forged, None).unwrap_err(),
        ChainProblem::new(2, ChainFault::NoCertificate)
    );
    // Block 3's certificate on block 2.
    let mut forged = items(&c);
    forged[2].1 = forged[3].1.clone();
    assert_eq!(
        walk_all(&c, &forged, None).unwrap_err(),
        ChainProblem::new(2, ChainFault::WrongSeq { seq: 3 })
    );
    // A certificate for another batch at the right height.
    let mut forged = items(&c);
    if let Some(cert) = forged[2].1.as_mut() {
        cert.statement.digest = Hash([4; 32]);
    }
    assert_eq!(
        walk_all(&c, &forged, None).unwrap_err(),
        ChainProblem::new(2, ChainFault::WrongDigest)
    );
    // Two votes only.
    let mut forged = items(&c);
    if let Some(cert) = forged[4].1.as_mut() {
        cert.votes.pop();
    }
    assert!(matches!(
        walk_all(&c, &forged, None).unwrap_err().what,
        ChainFault::BadCertificate(CertError::TooFew { .. })
    ));
    // A vote signed by an outsider.
    let mut forged = items(&c);
    if let Some(cert) = forged[1].1.as_mut() {
        cert.votes[0].signature = derived_key("outsider", 0, 0).sign_raw(b"x");
    }
    assert!(matches!(
        walk_all(&c, &forged, None).unwrap_err().what,
        ChainFault::BadCertificate(CertError::BadSignature(0))
    ));
}

#[test]
fn headers_out_of_order_are_refused() {
    let c = chain();
    let mut forged = items(&c);
    forged.swap(2, 3);
    assert_eq!(
        walk_all(&c, &forged, None).unwrap_err(),
        ChainProblem::new(2, ChainFault::OutOfOrder { got: 3 })
    );
}

#[test]
fn a_stable_checkpoint_must_be_certified_and_match_the_walked_header() {
    let c = chain();
    let genesis = &c.net.genesis;
    let walk = walk_all(&c, &items(&c), Some(2)).unwrap();
    let hash = c.headers[2].hash();
    let good = checkpoint_cert(&c, 2, hash, 3);
    assert_eq!(
        verify_checkpoint(genesis, 2, &hash, Some(&good), &walk),
        Ok(Some(2))
    );
    // Certified, but not what the downloaded chain has at that height.
    let other = Hash([5; 32]);
    let cert = checkpoint_cert(&c, 2, other, 3);
    assert_eq!(
        verify_checkpoint(genesis, 2, &other, Some(&cert), &walk)
            .unwrap_err()
            .what,
        ChainFault::CheckpointHashMismatch
    );
    // Too few votes; a certificate for another statement; none at all.
    let weak = checkpoint_cert(&c, 2, hash, 2);
    assert!(matches!(
        verify_checkpoint(genesis, 2, &hash, Some(&weak), &walk)
            .unwrap_err()
            .what,
        ChainFault::BadCheckpointCertificate(CertError::TooFew { .. })
    ));
    assert_eq!(
        verify_checkpoint(genesis, 2, &other, Some(&good), &walk)
            .unwrap_err()
            .what,
        ChainFault::CheckpointMismatch
    );
    assert_eq!(
        verify_checkpoint(genesis, 2, &hash, None, &walk)
            .unwrap_err()
            .what,
        ChainFault::NoCheckpointCertificate
    );
    // No checkpoint yet is fine.
    let walk0 = walk_all(&c, &items(&c), Some(0)).unwrap();
    assert_eq!(
        verify_checkpoint(genesis, 0, &c.headers[0].hash(), None, &walk0),
        Ok(None)
    );
}

#[test]
fn a_checkpoint_off_the_genesis_interval_is_refused() {
    // The test chain's genesis says K = 2; seq 3 is no checkpoint, whatever its certificate.
    let c = chain();
    assert_eq!(c.net.genesis.protocol.checkpoint_interval, 2);
    let walk = walk_all(&c, &items(&c), Some(3)).unwrap();
    let hash = c.headers[3].hash();
    let cert = checkpoint_cert(&c, 3, hash, 3);
    assert_eq!(
        verify_checkpoint(&c.net.genesis, 3, &hash, Some(&cert), &walk)
            .unwrap_err()
            .what,
        ChainFault::CheckpointOffInterval {
            seq: 3,
            interval: 2
        }
    );
}

#[test]
fn a_checkpoint_beyond_the_downloaded_chain_is_refused() {
    let c = chain();
    let walk = walk_all(&c, &items(&c)[..3], Some(4)).unwrap();
    let hash = c.headers[4].hash();
    let cert = checkpoint_cert(&c, 4, hash, 3);
    assert_eq!(
        verify_checkpoint(&c.net.genesis, 4, &hash, Some(&cert), &walk)
            .unwrap_err()
            .what,
        ChainFault::CheckpointBeyondChain { chain_height: 2 }
    );
}
