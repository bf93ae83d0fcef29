//! How long a primary under load lets a batch wait: half the time its recent blocks took from
//! PrePrepare to execution, kept between the local floor and ceiling
//! ([`crate::Params::batch_timeout_ticks`], [`crate::Params::batch_timeout_max_ticks`]).
//!
//! Why half the commit time: past `eager_depth`, a block closes when its oldest transaction has
//! waited the timeout, so the primary proposes about one block per timeout and keeps about
//! commit time / timeout blocks in flight. Tied to the commit time, that is two blocks in flight
//! (plus the eager ones) at any cluster size. A fixed timeout is right for one size only: 10 ms
//! suits four replicas, whose blocks commit in about that, while sixteen replicas under load take
//! ten times as long per block, so a fixed 10 ms multiplied their blocks — each one 2n(n−1)
//! signed messages — until the replicas spent their CPU on votes instead of payloads and
//! collapsed (7.3k of 12k raw payloads/s committed, p50 4.8 s; with a 50 ms timeout, 10.5k).
//! The wait stays bounded: a full batch closes at once, and the ceiling caps what a transaction
//! waits however slow the cluster gets.

/// The smoothed commit time, in sixteenths of a tick (ticks are coarse: a 4-replica block commits
/// in about one).
#[derive(Clone, Debug, Default)]
pub struct BatchTimeout {
    smoothed_x16: Option<u64>,
}

/// Samples above this are clipped: a block stuck behind a view change says nothing about how
/// fast blocks commit, and must not hold batches back long after.
const SAMPLE_MAX_TICKS: u64 = 1_000;

impl BatchTimeout {
    /// A block accepted `ticks` ticks before it executed. Weighted 1/8 against the past, so a
    /// change of load moves the timeout within a few blocks and one slow block barely does.
    pub fn record(&mut self, ticks: u64) {
        let sample = ticks.min(SAMPLE_MAX_TICKS) * 16;
        self.smoothed_x16 = Some(match self.smoothed_x16 {
            None => sample,
            Some(s) => s - s / 8 + sample / 8,
        });
    }

    /// The smoothed commit time in whole ticks (0 before any block).
    pub fn commit_ticks(&self) -> u64 {
        self.smoothed_x16.unwrap_or(0) / 16
    }

    /// The batch timeout now: half the commit time, within `floor..=ceiling`.
    pub fn ticks(&self, floor: u64, ceiling: u64) -> u64 {
        (self.smoothed_x16.unwrap_or(0) / 32).clamp(floor, ceiling.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_starts_at_the_floor_and_follows_half_the_commit_time() {
        let mut t = BatchTimeout::default();
        assert_eq!(t.ticks(1, 10), 1, "no block yet");
        t.record(0);
        assert_eq!(t.ticks(1, 10), 1, "blocks that commit within a tick");
        for _ in 0..64 {
            t.record(10);
        }
        assert_eq!(t.commit_ticks(), 10);
        assert_eq!(t.ticks(1, 10), 5);
        for _ in 0..64 {
            t.record(100);
        }
        assert_eq!(t.ticks(1, 10), 10, "capped at the ceiling");
        assert_eq!(t.ticks(3, 3), 3, "floor = ceiling: a fixed timeout");
        assert_eq!(t.ticks(5, 2), 5, "a ceiling below the floor is the floor");
    }

    #[test]
    fn one_slow_block_barely_moves_it() {
        let mut t = BatchTimeout::default();
        for _ in 0..64 {
            t.record(2);
        }
        let before = t.ticks(1, 50);
        t.record(u64::MAX);
        assert!(
            t.ticks(1, 50) <= before + 63,
            "clipped sample, weighted 1/8"
        );
        for _ in 0..32 {
            t.record(2);
        }
        assert_eq!(t.ticks(1, 50), before, "and it is forgotten");
    }
}
