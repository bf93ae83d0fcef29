//! Checkpoint votes (PBFT §4.3): every K sequence numbers each replica signs the hash of its
//! block there; a quorum of matching votes makes the checkpoint stable.

use std::collections::BTreeMap;

use quire_chain::cert::{Certificate, CheckpointStatement};
use quire_chain::{Hash, ReplicaId, Signature};

use crate::log::{self, Recorded};
use crate::message::StableCheckpoint;

#[derive(Clone, Debug, Default)]
pub struct CheckpointVotes {
    /// seq → (seq, replica) → (block hash, signature); the view slot of the key is the seq.
    votes: BTreeMap<(u64, ReplicaId), log::VoteEntry>,
}

impl CheckpointVotes {
    /// Records a vote; returns the stable checkpoint it completes, if any.
    pub fn add(
        &mut self,
        seq: u64,
        from: ReplicaId,
        block_hash: Hash,
        signature: Signature,
        quorum: usize,
    ) -> (Recorded, Option<StableCheckpoint>) {
        let recorded = log::record(&mut self.votes, seq, from, block_hash, signature);
        if recorded != Recorded::New {
            return (recorded, None);
        }
        let matching = log::matching(&self.votes, seq, &block_hash, None);
        if matching.len() < quorum {
            return (recorded, None);
        }
        let statement = CheckpointStatement { seq, block_hash };
        let stable = StableCheckpoint {
            seq,
            block_hash,
            certificate: Some(Certificate::from_votes(statement, &matching)),
        };
        (recorded, Some(stable))
    }

    /// The block hash `replica` voted for at `seq`, if its vote is held.
    pub fn vote_of(&self, seq: u64, replica: ReplicaId) -> Option<Hash> {
        self.votes.get(&(seq, replica)).map(|(h, _)| *h)
    }

    /// Forgets votes at or below the stable checkpoint.
    pub fn collect_garbage(&mut self, stable_seq: u64) {
        self.votes = self.votes.split_off(&(stable_seq + 1, 0));
    }

    /// How many distinct votes are held (bounded by replicas × window / K).
    pub fn len(&self) -> usize {
        self.votes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }
}
