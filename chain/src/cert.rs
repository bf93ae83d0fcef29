//! Signed statements and quorum certificates.
//!
//! A certificate is a statement (what was voted for) and the votes of distinct validators, each a
//! signature over `tag || chain_id || statement`. Votes are kept exactly as signed, so the same
//! Commit messages that drive consensus are bundled into the certificate a block carries.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::hash::Hash;
use crate::keys::{Keypair, Signature, sign_tags, signing_bytes};
use crate::validators::{ReplicaId, ValidatorSet};

/// Something validators sign.
pub trait Statement: Encode + Decode + Clone + PartialEq + Eq + std::fmt::Debug {
    const TAG: &'static str;

    fn sign(&self, key: &Keypair, chain_id: &Hash) -> Signature {
        key.sign(Self::TAG, chain_id, &self.to_bytes())
    }
}

/// "Batch `digest` is decided at sequence number `seq`", voted in `view`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct CommitStatement {
    pub view: u64,
    pub seq: u64,
    pub digest: Hash,
}

impl Statement for CommitStatement {
    const TAG: &'static str = sign_tags::COMMIT;
}

impl Encode for CommitStatement {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.view);
        codec::put_u64(out, self.seq);
        self.digest.encode(out);
    }
}

impl Decode for CommitStatement {
    const MIN_LEN: usize = 48;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CommitStatement {
            view: r.u64()?,
            seq: r.u64()?,
            digest: Hash::decode(r)?,
        })
    }
}

/// "After executing up to `seq`, my chain's head is `block_hash`". 2f+1 make a stable checkpoint;
/// since the block hash covers the state root and every earlier header, it vouches for them all.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct CheckpointStatement {
    pub seq: u64,
    pub block_hash: Hash,
}

impl Statement for CheckpointStatement {
    const TAG: &'static str = sign_tags::CHECKPOINT;
}

impl Encode for CheckpointStatement {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.seq);
        self.block_hash.encode(out);
    }
}

impl Decode for CheckpointStatement {
    const MIN_LEN: usize = 40;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CheckpointStatement {
            seq: r.u64()?,
            block_hash: Hash::decode(r)?,
        })
    }
}

/// One validator's signature on a statement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vote {
    pub replica: ReplicaId,
    pub signature: Signature,
}

impl Encode for Vote {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u32(out, self.replica);
        self.signature.encode(out);
    }
}

impl Decode for Vote {
    const MIN_LEN: usize = 68;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            replica: r.u32()?,
            signature: Signature::decode(r)?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CertError {
    #[error("replica {0} votes twice (votes must be in increasing replica order)")]
    DuplicateOrUnordered(ReplicaId),
    #[error("replica {0} is not a validator")]
    UnknownSigner(ReplicaId),
    #[error("the vote of replica {0} does not verify")]
    BadSignature(ReplicaId),
    #[error("{have} votes, a quorum needs {need}")]
    TooFew { have: usize, need: usize },
    #[error("the certificate is for {0}, not for what it is attached to")]
    WrongStatement(String),
}

/// One vote's signature, ready to check.
#[derive(Clone, Debug)]
pub struct VoteToCheck {
    pub signed: Vec<u8>,
    pub signature: Signature,
    pub key: crate::keys::PublicKey,
    pub replica: ReplicaId,
}

/// Checks the signatures of votes (of one certificate or of many), in batches; the first bad one
/// is named.
pub fn check_votes(votes: &[VoteToCheck]) -> Result<(), CertError> {
    let items: Vec<crate::sig::Item<'_>> = votes
        .iter()
        .map(|v| (v.signed.as_slice(), &v.signature, Some(v.key)))
        .collect();
    let verdicts = crate::sig::verify_many(&items);
    match votes.iter().zip(verdicts).find(|(_, ok)| !ok) {
        Some((v, _)) => Err(CertError::BadSignature(v.replica)),
        None => Ok(()),
    }
}

/// A statement and the votes of at least a quorum of distinct validators, in replica order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Certificate<S> {
    pub statement: S,
    pub votes: Vec<Vote>,
}

pub type CommitCertificate = Certificate<CommitStatement>;
pub type CheckpointCertificate = Certificate<CheckpointStatement>;

impl<S: Statement> Certificate<S> {
    /// Bundles already-verified votes (keyed by replica, so distinct and ordered).
    pub fn from_votes(statement: S, votes: &BTreeMap<ReplicaId, Signature>) -> Self {
        Certificate {
            statement,
            votes: votes
                .iter()
                .map(|(replica, signature)| Vote {
                    replica: *replica,
                    signature: *signature,
                })
                .collect(),
        }
    }

    /// Checks that a quorum of distinct validators signed the statement on this chain.
    pub fn verify(&self, chain_id: &Hash, validators: &ValidatorSet) -> Result<(), CertError> {
        let votes = self.votes_to_check(chain_id, validators)?;
        check_votes(&votes)
    }

    /// Everything [`verify`](Self::verify) checks but the signatures (a quorum of distinct
    /// validators, in order), and the signatures to check: so that many certificates can be
    /// checked in one batch ([`check_votes`]).
    pub fn votes_to_check(
        &self,
        chain_id: &Hash,
        validators: &ValidatorSet,
    ) -> Result<Vec<VoteToCheck>, CertError> {
        let need = validators.quorum();
        if self.votes.len() < need {
            return Err(CertError::TooFew {
                have: self.votes.len(),
                need,
            });
        }
        let signed = signing_bytes(S::TAG, chain_id, &self.statement.to_bytes());
        let mut previous: Option<ReplicaId> = None;
        let mut out = Vec::with_capacity(self.votes.len());
        for vote in &self.votes {
            if previous.is_some_and(|p| vote.replica <= p) {
                return Err(CertError::DuplicateOrUnordered(vote.replica));
            }
            previous = Some(vote.replica);
            let key = validators
                .key(vote.replica)
                .ok_or(CertError::UnknownSigner(vote.replica))?;
            out.push(VoteToCheck {
                signed: signed.clone(),
                signature: vote.signature,
                key: *key,
                replica: vote.replica,
            });
        }
        Ok(out)
    }
}

impl<S: Statement> Encode for Certificate<S> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.statement.encode(out);
        codec::put_seq(out, &self.votes);
    }
}

impl<S: Statement> Decode for Certificate<S> {
    const MIN_LEN: usize = S::MIN_LEN + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Certificate {
            statement: S::decode(r)?,
            votes: r.seq("certificate votes", 1024)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validators::Validator;

    fn setup(n: usize) -> (Vec<Keypair>, ValidatorSet, Hash) {
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_secret([i as u8 + 1; 32]))
            .collect();
        let set = ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    id: i as u32,
                    key: k.public(),
                    address: String::new(),
                })
                .collect(),
            None,
        )
        .unwrap();
        (keys, set, Hash([5; 32]))
    }

    fn statement() -> CommitStatement {
        CommitStatement {
            view: 2,
            seq: 7,
            digest: Hash([1; 32]),
        }
    }

    fn cert(keys: &[Keypair], signers: &[u32], chain: &Hash) -> CommitCertificate {
        let s = statement();
        Certificate {
            statement: s,
            votes: signers
                .iter()
                .map(|&i| Vote {
                    replica: i,
                    signature: s.sign(&keys[i as usize], chain),
                })
                .collect(),
        }
    }

    #[test]
    fn a_quorum_of_distinct_signers_is_accepted() {
        let (keys, set, chain) = setup(4);
        cert(&keys, &[0, 1, 2], &chain)
            .verify(&chain, &set)
            .unwrap();
        cert(&keys, &[0, 1, 2, 3], &chain)
            .verify(&chain, &set)
            .unwrap();
        let c = cert(&keys, &[1, 2, 3], &chain);
        let decoded = CommitCertificate::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(decoded, c);
    }

    #[test]
    fn too_few_signers_are_rejected() {
        let (keys, set, chain) = setup(4);
        assert_eq!(
            cert(&keys, &[0, 1], &chain).verify(&chain, &set),
            Err(CertError::TooFew { have: 2, need: 3 })
        );
    }

    #[test]
    fn a_duplicate_signer_is_rejected() {
        let (keys, set, chain) = setup(4);
        assert_eq!(
            cert(&keys, &[0, 1, 1], &chain).verify(&chain, &set),
            Err(CertError::DuplicateOrUnordered(1))
        );
    }

    #[test]
    fn a_non_validator_is_rejected() {
        let (keys, set, chain) = setup(4);
        let mut c = cert(&keys, &[0, 1, 2], &chain);
        let outsider = Keypair::from_secret([99; 32]);
        c.votes.push(Vote {
            replica: 4,
            signature: statement().sign(&outsider, &chain),
        });
        assert_eq!(c.verify(&chain, &set), Err(CertError::UnknownSigner(4)));
    }

    #[test]
    fn a_vote_for_another_digest_is_rejected() {
        let (keys, set, chain) = setup(4);
        let mut c = cert(&keys, &[0, 1, 2], &chain);
        c.statement.digest = Hash([2; 32]);
        assert_eq!(c.verify(&chain, &set), Err(CertError::BadSignature(0)));
        // Or signed on another chain, or claimed by another replica.
        let c = cert(&keys, &[0, 1, 2], &Hash([6; 32]));
        assert!(c.verify(&chain, &set).is_err());
        let mut c = cert(&keys, &[0, 1, 2], &chain);
        c.votes[2].replica = 3;
        assert_eq!(c.verify(&chain, &set), Err(CertError::BadSignature(3)));
    }
}
