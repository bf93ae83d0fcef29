//! The simulated network: messages in flight with a delivery tick, and the faults a seed chooses —
//! drops, duplicates, delays (which reorder), and partitions that cut the replicas in two.

use std::collections::{BTreeMap, BTreeSet};

use quire_chain::ReplicaId;

use super::rng::Rng;

#[derive(Clone, Debug)]
pub struct Faults {
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_min_ticks: u64,
    pub delay_max_ticks: u64,
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub from: ReplicaId,
    pub to: ReplicaId,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

pub struct Network {
    /// (delivery tick, sequence) → packet. The sequence keeps delivery order deterministic.
    in_flight: BTreeMap<(u64, u64), Packet>,
    next_seq: u64,
    /// When set, the replicas in this group cannot exchange messages with the others.
    partition: Option<BTreeSet<ReplicaId>>,
    pub faults: Faults,
    /// Faults apply only while this is true (the network "heals" for good when it turns false).
    pub faulty: bool,
    pub sent: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(faults: Faults) -> Network {
        Network {
            in_flight: BTreeMap::new(),
            next_seq: 0,
            partition: None,
            faults,
            faulty: true,
            sent: 0,
            dropped: 0,
        }
    }

    pub fn partition(&mut self, group: BTreeSet<ReplicaId>) {
        self.partition = Some(group);
    }

    pub fn heal(&mut self) {
        self.partition = None;
    }

    pub fn is_partitioned(&self) -> bool {
        self.partition.is_some()
    }

    pub fn cut(&self, a: ReplicaId, b: ReplicaId) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|g| g.contains(&a) != g.contains(&b))
    }

    pub fn send(&mut self, rng: &mut Rng, now: u64, packet: Packet) {
        self.sent += 1;
        let f = &self.faults;
        let (drop, dup, lo, hi) = if self.faulty {
            (
                f.drop_per_mille,
                f.duplicate_per_mille,
                f.delay_min_ticks,
                f.delay_max_ticks,
            )
        } else {
            (0, 0, 1, 2)
        };
        if rng.chance(drop) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.chance(dup) { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + rng.between(lo.max(1), hi.max(1));
            self.in_flight.insert((at, self.next_seq), packet.clone());
            self.next_seq += 1;
        }
    }

    /// The next packet due at or before `now`, if any.
    pub fn pop_due(&mut self, now: u64) -> Option<Packet> {
        let (&key, _) = self.in_flight.first_key_value()?;
        if key.0 > now {
            return None;
        }
        self.in_flight.remove(&key)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
