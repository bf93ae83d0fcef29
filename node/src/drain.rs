//! How much client RPC may let into the mempool: a few seconds of this network's work.
//!
//! The mempool's bound is a count (`mempool_max`, 100,000 by default). Four replicas on this
//! machine execute 40–60k raw payloads a second, so a full pool is two seconds of their work;
//! sixteen execute 6–8k, so the same pool is twelve to fifteen, and an overloaded sixteen-replica
//! network answered in 7.5 s at the median (p99 17 s) before admission pushed back at all. A
//! bound in seconds of work pushes back at the same delay whatever the network's speed.
//!
//! The rate is measured, not configured: over each second in which the mempool never ran short
//! of a full batch (the primary always had one to propose, so what executed is what the network
//! can do), the transactions executed per second; smoothed, since one slow second (a rotation,
//! a compaction) should not halve the room at once. Seconds with too little waiting say nothing
//! about the capacity and leave the estimate alone. Until a backlogged second has been seen,
//! there is no limit beyond the pool's own bound.

use std::time::{Duration, Instant};

/// Seconds of work the mempool may hold: enough to keep a full pipeline through a view change
/// or a slow second, short enough that a client told "accepted" hears back within a few seconds.
pub const QUEUE_SECONDS: f64 = 2.0;
/// The length of one measurement.
const WINDOW: Duration = Duration::from_secs(1);
/// The limit never falls below this share of the pool's bound (a measurement taken across a
/// stall is low; the floor keeps a full batch pipeline's worth of room for the next one).
const FLOOR_SHARE: u64 = 8;

#[derive(Debug, Default)]
pub struct Drain {
    window: Option<Window>,
    /// Transactions executed per second while backlogged, smoothed.
    rate: Option<f64>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    executed: u64,
    backlogged: bool,
}

impl Drain {
    /// One observation: `executed` transactions executed so far, `queued` waiting now, and
    /// `backlog` the least that counts as never running short (a full batch).
    pub fn observe(&mut self, now: Instant, executed: u64, queued: u64, backlog: u64) {
        let short = queued < backlog;
        let Some(w) = &mut self.window else {
            self.window = Some(Window {
                start: now,
                executed,
                backlogged: !short,
            });
            return;
        };
        w.backlogged &= !short;
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed < WINDOW {
            return;
        }
        if w.backlogged {
            let measured = executed.saturating_sub(w.executed) as f64 / elapsed.as_secs_f64();
            self.rate = Some(self.rate.map_or(measured, |r| (r + measured) / 2.0));
        }
        *w = Window {
            start: now,
            executed,
            backlogged: !short,
        };
    }

    /// Transactions the mempool may hold, for a pool bounded at `max`: [`QUEUE_SECONDS`] of
    /// the measured rate, within `[max / FLOOR_SHARE, max]`; `max` before any measurement.
    pub fn limit(&self, max: u64) -> u64 {
        let Some(rate) = self.rate else {
            return max;
        };
        let floor = max / FLOOR_SHARE;
        ((rate * QUEUE_SECONDS) as u64).clamp(floor, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `seconds` of a network executing `rate` a second with `queued` waiting, sampled
    /// every 50 ms from `*at` on; returns the transactions executed so far.
    fn run(d: &mut Drain, at: &mut Instant, executed: &mut u64, rate: u64, queued: u64, s: u64) {
        for _ in 0..s * 20 {
            *at += Duration::from_millis(50);
            *executed += rate / 20;
            d.observe(*at, *executed, queued, 512);
        }
    }

    /// The limit is two seconds of what executed while work never ran short, smoothed; seconds
    /// without a backlog change nothing; the limit stays within an eighth of the pool and the
    /// pool.
    #[test]
    fn the_limit_is_seconds_of_the_rate_measured_under_a_backlog() {
        let (mut d, mut at, mut executed) = (Drain::default(), Instant::now(), 0);
        assert_eq!(d.limit(100_000), 100_000, "nothing measured yet");
        // Idle: a few transactions, never a batch waiting.
        run(&mut d, &mut at, &mut executed, 100, 3, 5);
        assert_eq!(d.limit(100_000), 100_000, "an idle network says nothing");
        // Sixteen replicas under load: 7,000 a second with a backlog.
        run(&mut d, &mut at, &mut executed, 7_000, 20_000, 5);
        let limit = d.limit(100_000);
        assert!((13_000..=15_000).contains(&limit), "{limit}");
        // Light load afterwards measures nothing and keeps the estimate.
        run(&mut d, &mut at, &mut executed, 1_000, 10, 5);
        assert_eq!(d.limit(100_000), limit);
        // A stall under a backlog (nothing executes for three seconds) lowers it to the floor
        // at most; the next backlogged seconds bring it back.
        run(&mut d, &mut at, &mut executed, 0, 20_000, 3);
        assert_eq!(d.limit(100_000), 12_500, "an eighth of the pool");
        run(&mut d, &mut at, &mut executed, 7_000, 20_000, 6);
        assert!(d.limit(100_000) >= 13_000, "{}", d.limit(100_000));
        // A fast network's two seconds are more than the pool holds: the pool's bound.
        run(&mut d, &mut at, &mut executed, 60_000, 90_000, 5);
        assert_eq!(d.limit(100_000), 100_000);
    }

    /// One sample short of a batch in a window is enough to leave that window out.
    #[test]
    fn a_window_that_ran_short_once_is_not_measured() {
        let (mut d, mut at, mut executed) = (Drain::default(), Instant::now(), 0);
        for i in 0..40 {
            at += Duration::from_millis(50);
            executed += 100;
            let queued = if i % 20 == 10 { 0 } else { 5_000 };
            d.observe(at, executed, queued, 512);
        }
        assert_eq!(d.limit(100_000), 100_000);
    }
}
