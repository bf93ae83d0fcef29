//! The validator set: who may vote, how many may be faulty, and how many make a quorum.

use thiserror::Error;

use crate::keys::PublicKey;

/// A replica's index in the validator set (0..n).
pub type ReplicaId = u32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub id: ReplicaId,
    pub key: PublicKey,
    /// Where the replica listens (host:port), as written in the genesis.
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ValidatorSetError {
    #[error("a validator set needs at least one validator")]
    Empty,
    #[error("validator ids must be 0..n in order; position {position} has id {id}")]
    BadId { position: usize, id: ReplicaId },
    #[error("validators {0} and {1} share a public key")]
    DuplicateKey(ReplicaId, ReplicaId),
    #[error("n = {n} replicas cannot tolerate f = {f} faults: PBFT needs n >= 3f + 1")]
    TooFewReplicas { n: usize, f: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    f: usize,
}

impl ValidatorSet {
    /// `f` defaults to the most faults n replicas tolerate, ⌊(n−1)/3⌋.
    pub fn new(validators: Vec<Validator>, f: Option<usize>) -> Result<Self, ValidatorSetError> {
        let n = validators.len();
        if n == 0 {
            return Err(ValidatorSetError::Empty);
        }
        for (position, v) in validators.iter().enumerate() {
            if v.id as usize != position {
                return Err(ValidatorSetError::BadId { position, id: v.id });
            }
            if let Some(other) = validators[..position].iter().find(|o| o.key == v.key) {
                return Err(ValidatorSetError::DuplicateKey(other.id, v.id));
            }
        }
        let f = f.unwrap_or((n - 1) / 3);
        if n < 3 * f + 1 {
            return Err(ValidatorSetError::TooFewReplicas { n, f });
        }
        Ok(ValidatorSet { validators, f })
    }

    pub fn n(&self) -> usize {
        self.validators.len()
    }

    pub fn f(&self) -> usize {
        self.f
    }

    /// Votes that make a quorum: 2f+1 when n = 3f+1, and ⌈(n+f+1)/2⌉ in general, so that any two
    /// quorums share at least f+1 replicas, one of them honest.
    pub fn quorum(&self) -> usize {
        (self.n() + self.f + 2) / 2
    }

    /// f+1: enough that at least one is honest.
    pub fn weak_quorum(&self) -> usize {
        self.f + 1
    }

    pub fn get(&self, id: ReplicaId) -> Option<&Validator> {
        self.validators.get(id as usize)
    }

    pub fn key(&self, id: ReplicaId) -> Option<&PublicKey> {
        self.get(id).map(|v| &v.key)
    }

    pub fn id_of(&self, key: &PublicKey) -> Option<ReplicaId> {
        self.validators.iter().find(|v| v.key == *key).map(|v| v.id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Validator> {
        self.validators.iter()
    }

    pub fn ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.validators.iter().map(|v| v.id)
    }

    /// The primary of `view`: view mod n.
    pub fn primary(&self, view: u64) -> ReplicaId {
        (view % self.n() as u64) as ReplicaId
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    fn set(n: usize, f: Option<usize>) -> Result<ValidatorSet, ValidatorSetError> {
        ValidatorSet::new(
            (0..n)
                .map(|i| Validator {
                    id: i as u32,
                    key: Keypair::from_secret([i as u8 + 1; 32]).public(),
                    address: String::new(),
                })
                .collect(),
            f,
        )
    }

    #[test]
    fn quorums_follow_n_and_f() {
        let s = set(4, None).unwrap();
        assert_eq!((s.f(), s.quorum(), s.weak_quorum()), (1, 3, 2));
        let s = set(7, None).unwrap();
        assert_eq!((s.f(), s.quorum()), (2, 5));
        // n = 5, f = 1: two quorums of 4 overlap in 3 ≥ f + 1.
        let s = set(5, None).unwrap();
        assert_eq!(s.quorum(), 4);
        assert_eq!(set(1, None).unwrap().quorum(), 1);
    }

    #[test]
    fn too_many_faults_are_refused() {
        assert_eq!(
            set(4, Some(2)),
            Err(ValidatorSetError::TooFewReplicas { n: 4, f: 2 })
        );
        assert!(set(7, Some(2)).is_ok());
    }

    #[test]
    fn primary_rotates_with_the_view() {
        let s = set(4, None).unwrap();
        assert_eq!(s.primary(0), 0);
        assert_eq!(s.primary(5), 1);
    }
}
