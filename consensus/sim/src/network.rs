//! The simulated network: messages in flight with a delivery tick, and the faults a seed chooses —
//! drops, duplicates, delays (which reorder), and partitions that cut the replicas in two.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use quire_chain::ReplicaId;
use quire_consensus::{Reject, Verified, Verifier};

use super::rng::Rng;

#[derive(Clone, Debug)]
pub struct Faults {
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_min_ticks: u64,
    pub delay_max_ticks: u64,
}

/// One frame as sent: every copy of it in flight (a broadcast's, a duplicate's) shares it, so
/// the frame is decoded, verified and hashed for the trace once, however many replicas get it.
/// The verdict depends only on the bytes and the sender, both fixed here.
#[derive(Debug)]
pub struct Frame {
    pub from: ReplicaId,
    pub bytes: Arc<Vec<u8>>,
    checked: OnceLock<(u64, Result<Verified, Reject>)>,
}

/// A 64-bit hash of a frame's bytes, to tell frames apart in the trace: FNV-style mixing eight
/// bytes at a time (a trace needs no collision resistance, and SHA-256 of every frame was a
/// tenth of the simulator's time).
fn frame_id(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(23);
    }
    for b in words.remainder() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29)
}

impl Frame {
    pub fn new(from: ReplicaId, bytes: Arc<Vec<u8>>) -> Arc<Frame> {
        Arc::new(Frame {
            from,
            bytes,
            checked: OnceLock::new(),
        })
    }

    /// The frame's id in the trace (a hash of its bytes) and the boundary's verdict on it,
    /// computed at first use.
    pub fn checked(&self, verifier: &Verifier) -> &(u64, Result<Verified, Reject>) {
        self.checked.get_or_init(|| {
            (
                frame_id(&self.bytes),
                verifier.decode(&self.bytes, Some(self.from)),
            )
        })
    }
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub from: ReplicaId,
    pub to: ReplicaId,
    pub frame: Arc<Frame>,
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
