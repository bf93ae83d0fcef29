//! Room in the mempool, claimed by client submissions before their signatures are checked.
//!
//! A submission's signatures are checked before the driver sees it, so a transaction the
//! mempool then refuses as full was checked for nothing. Looking at the pool's size alone
//! before checking is not enough: submissions that arrive while others are being checked all
//! see the same room, all pass, all get checked, and all but the first are refused. Under six
//! times the knee of signed transfers, that made the primary spend three quarters of its CPU
//! on signatures of transactions it refused, and commit a third of what it could.
//!
//! So a submission claims its room first: the pool's size (as the driver last published it)
//! plus what submissions in flight have claimed must leave room for it, or it is refused as
//! `MempoolFull` at once. The claim is given back when the driver has answered, whether the
//! transactions went in or not; by then the driver counts the ones that did.

use std::sync::atomic::{AtomicU64, Ordering};

/// The mempool's capacity and the room submissions in flight have claimed.
#[derive(Debug)]
pub struct PoolRoom {
    max: u64,
    claimed: AtomicU64,
}

/// What the mempool holds, as the driver last published it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Every transaction.
    pub all: u64,
    /// Those that did not arrive early (`Mempool::in_order`).
    pub in_order: u64,
}

impl Held {
    /// A pool of transactions that all arrived in order.
    #[cfg(test)]
    fn in_order(n: u64) -> Held {
        Held {
            all: n,
            in_order: n,
        }
    }
}

/// Room held by one submission until it is dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    room: &'a PoolRoom,
    count: u64,
}

impl PoolRoom {
    pub fn new(max: usize) -> PoolRoom {
        PoolRoom {
            max: max as u64,
            claimed: AtomicU64::new(0),
        }
    }

    /// Claims room for `count` transactions in a pool that holds `held`; `None` when they would
    /// not fit beside what is already claimed: within the capacity, and within `limit` (0: none)
    /// for the transactions that arrived in order.
    ///
    /// The limit leaves out transfers that arrived early: they have a share of the pool of their
    /// own (a quarter), which the mempool bounds, and they may never become proposable. Counted
    /// against a limit that can fall to an eighth of the pool, a pool holding its early share
    /// refused everything else — the next nonces that would have made them proposable too — and
    /// signed transfers at six times the knee committed nothing after the first second.
    pub fn claim(&self, held: Held, count: u64, limit: u64) -> Option<Claim<'_>> {
        let mut claimed = self.claimed.load(Ordering::Relaxed);
        loop {
            let with = |base: u64| base.saturating_add(claimed).saturating_add(count);
            if with(held.all) > self.max || (limit > 0 && with(held.in_order) > limit) {
                return None;
            }
            match self.claimed.compare_exchange_weak(
                claimed,
                claimed + count,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Claim { room: self, count }),
                Err(now) => claimed = now,
            }
        }
    }

    /// Whether a pool holding `held`, with what is claimed, is more than three quarters full:
    /// of its capacity, or of `limit` (0: none) for the transactions that arrived in order.
    pub fn is_nearly_full(&self, held: Held, limit: u64) -> bool {
        let claimed = self.claimed();
        let over = |base: u64, bound: u64| base.saturating_add(claimed) > bound / 4 * 3;
        over(held.all, self.max) || (limit > 0 && over(held.in_order, limit))
    }

    /// Transactions claimed and not yet answered.
    pub fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::Relaxed)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.room.claimed.fetch_sub(self.count, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_needs_room_beside_the_pool_and_the_other_claims() {
        let room = PoolRoom::new(100);
        let first = room.claim(Held::in_order(50), 30, 0).expect("80 of 100");
        assert!(
            room.claim(Held::in_order(50), 30, 0).is_none(),
            "110 of 100 with the first claim held"
        );
        assert!(
            room.claim(Held::in_order(50), 20, 0).is_some(),
            "exactly 100 fits"
        );
        drop(first);
        assert_eq!(room.claimed(), 0);
        assert!(
            room.claim(Held::in_order(50), 30, 0).is_some(),
            "room given back when the claim is dropped"
        );
        assert!(
            room.claim(Held::in_order(0), 101, 0).is_none(),
            "more than the pool holds never fits"
        );
        assert!(
            room.claim(Held::in_order(u64::MAX), 1, 0).is_none(),
            "no overflow on a bogus size"
        );
    }

    /// Submissions checked at once never claim more than the pool holds, however they race.
    #[test]
    fn racing_claims_never_overcommit() {
        let room = PoolRoom::new(1_000);
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if let Some(c) = room.claim(Held::in_order(0), 7, 0) {
                            assert!(room.claimed() <= 1_000);
                            if let Ok(mut h) = held.lock() {
                                h.push(c.count);
                            }
                            drop(c);
                        }
                    }
                });
            }
        });
        assert_eq!(room.claimed(), 0);
        let granted = held.lock().map(|h| h.len()).unwrap_or(0);
        assert!(granted > 0);
        // Held at once: claims that are never dropped fill the pool to at most its size.
        let kept: Vec<_> = std::iter::from_fn(|| room.claim(Held::in_order(0), 7, 0))
            .take(1_000)
            .collect();
        assert_eq!(kept.len(), 1_000 / 7);
        assert!(room.claimed() <= 1_000);
    }

    /// Within a limit the driver sets, room ends there; a limit above the capacity, or none,
    /// leaves the capacity.
    #[test]
    fn a_limit_below_the_capacity_is_the_room() {
        let room = PoolRoom::new(100);
        assert!(
            room.claim(Held::in_order(30), 10, 40).is_some(),
            "40 of a limit of 40"
        );
        assert!(
            room.claim(Held::in_order(30), 11, 40).is_none(),
            "41 of a limit of 40"
        );
        assert!(
            room.claim(Held::in_order(30), 70, 1_000).is_some(),
            "a limit above: 100"
        );
        assert!(room.claim(Held::in_order(30), 71, 1_000).is_none());
        assert!(
            room.claim(Held::in_order(30), 70, 0).is_some(),
            "no limit: 100"
        );
        assert!(room.is_nearly_full(Held::in_order(31), 40), "31 of 40");
        assert!(!room.is_nearly_full(Held::in_order(31), 0), "31 of 100");
    }

    /// Early transfers count against the capacity, not against the limit: a pool holding its
    /// early share still takes in-order transactions up to the limit.
    #[test]
    fn early_transfers_do_not_use_up_the_limit() {
        let room = PoolRoom::new(100);
        let held = Held {
            all: 25,
            in_order: 0,
        };
        assert!(room.claim(held, 12, 12).is_some(), "12 in order within 12");
        assert!(room.claim(held, 13, 12).is_none(), "13 in order over 12");
        assert!(!room.is_nearly_full(held, 12));
        let full = Held {
            all: 95,
            in_order: 5,
        };
        assert!(
            room.claim(full, 6, 0).is_none(),
            "the capacity counts them all"
        );
        assert!(room.is_nearly_full(full, 50));
    }
}
