//! Where a block's time goes at this replica, measured by the driver: the core counts ticks and
//! has no clock, so the driver notes when its outputs show each step of a sequence number —
//! its PrePrepare accepted (the replica's own PrePrepare or Prepare leaves), prepared (its Commit
//! leaves), committed (the core says so), executed (its block comes out) — and when the synced
//! write holding the block returned.

use std::collections::BTreeMap;
use std::time::Instant;

use quire_consensus::message::Message;
use quire_consensus::{Output, Replica};

use super::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    PrePrepareToPrepared,
    PreparedToCommitted,
    CommittedToExecuted,
    ExecutedToDurable,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::PrePrepareToPrepared,
        Phase::PreparedToCommitted,
        Phase::CommittedToExecuted,
        Phase::ExecutedToDurable,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Phase::PrePrepareToPrepared => "pre_prepare_to_prepared",
            Phase::PreparedToCommitted => "prepared_to_committed",
            Phase::CommittedToExecuted => "committed_to_executed",
            Phase::ExecutedToDurable => "executed_to_durable",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    pre_prepared: Instant,
    prepared: Option<Instant>,
    committed: Option<Instant>,
}

/// Sequence numbers in flight and when they reached each step. Bounded: a slot that never
/// completes (a view change abandoned it) is forgotten once `SLOTS_MAX` newer ones exist.
#[derive(Debug, Default)]
pub struct PhaseClock {
    slots: BTreeMap<u64, Slot>,
}

const SLOTS_MAX: usize = 4096;

fn slot_of(m: &Message) -> Option<(u64, bool)> {
    match m {
        Message::PrePrepare { proposal, .. } => Some((proposal.body.0.seq, false)),
        Message::Prepare(p) => Some((p.body.0.seq, false)),
        Message::Commit(c) => Some((c.body.seq, true)),
        _ => None,
    }
}

impl PhaseClock {
    /// Notes what one round's outputs show, before they are carried out; returns the heights of
    /// the blocks they execute (for [`PhaseClock::durable`]).
    pub fn round(
        &mut self,
        outputs: &[Output],
        replica: &Replica,
        metrics: &Metrics,
        now: Instant,
    ) -> Vec<u64> {
        for o in outputs {
            let (Output::Broadcast(m) | Output::Send(_, m)) = o else {
                continue;
            };
            match slot_of(m) {
                Some((seq, false)) => self.pre_prepared(seq, now),
                Some((seq, true)) => self.prepared(seq, metrics, now),
                None => {}
            }
        }
        self.committed(replica, metrics, now);
        let mut executed = Vec::new();
        for o in outputs {
            if let Output::Commit(block) = o {
                let height = block.record.block.header.height;
                if let Some(committed) = self.slots.get(&height).and_then(|s| s.committed) {
                    metrics.phase(Phase::CommittedToExecuted, secs(committed, now));
                }
                self.slots.remove(&height);
                executed.push(height);
            }
        }
        while self.slots.len() > SLOTS_MAX {
            self.slots.pop_first();
        }
        executed
    }

    fn pre_prepared(&mut self, seq: u64, now: Instant) {
        self.slots.entry(seq).or_insert(Slot {
            pre_prepared: now,
            prepared: None,
            committed: None,
        });
    }

    fn prepared(&mut self, seq: u64, metrics: &Metrics, now: Instant) {
        if let Some(s) = self.slots.get_mut(&seq)
            && s.prepared.is_none()
        {
            s.prepared = Some(now);
            metrics.phase(Phase::PrePrepareToPrepared, secs(s.pre_prepared, now));
        }
    }

    fn committed(&mut self, replica: &Replica, metrics: &Metrics, now: Instant) {
        for (seq, s) in self.slots.iter_mut() {
            if s.committed.is_some() || !replica.is_committed(*seq) {
                continue;
            }
            s.committed = Some(now);
            if let Some(prepared) = s.prepared {
                metrics.phase(Phase::PreparedToCommitted, secs(prepared, now));
            }
        }
    }

    /// The write holding the blocks executed at `executed_at` returned.
    pub fn durable(&self, blocks: usize, metrics: &Metrics, executed_at: Instant) {
        let seconds = secs(executed_at, Instant::now());
        for _ in 0..blocks {
            metrics.phase(Phase::ExecutedToDurable, seconds);
        }
    }
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}
