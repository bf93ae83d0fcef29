//! The ViewChanges a replica holds: per replica, a few, for the lowest views at or above its own.
//!
//! One per replica (its latest) was not enough. A replica that once asked for a far view — a
//! faulty one flooding ViewChanges for view + 1000, then repaired, or switched back to honest on
//! a testnet — had every later, honest ViewChange dropped as older than the one on file. Its
//! votes then never counted toward a NewView again until the views caught up: with one other
//! replica paused, no NewView could form at all (a 10-minute chaos run, seed 1: three primary
//! pauses in a row waited for the paused primary to come back, 2.7–4.6 s each).
//!
//! Keeping the lowest views is what liveness needs: the view being changed to, and the join rule
//! (the smallest view f+1 others ask for). Memory stays bounded whatever views a faulty replica
//! claims: `PER_REPLICA` ViewChanges per validator, and none below the replica's own view.

use std::collections::BTreeMap;

use quire_chain::{Batch, ReplicaId};

use crate::message::{Signed, ViewChange};

/// ViewChanges kept per replica, at most (the lowest views).
pub const PER_REPLICA: usize = 4;

type Entry = (Signed<ViewChange>, Vec<Batch>);

#[derive(Clone, Debug, Default)]
pub struct ViewChanges(BTreeMap<ReplicaId, BTreeMap<u64, Entry>>);

/// What [`ViewChanges::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    Kept,
    /// The replica's ViewChange for that view is already here.
    Duplicate,
    /// The replica has `PER_REPLICA` ViewChanges for lower views already.
    TooFar,
}

impl ViewChanges {
    /// Keeps `vc` (from its signer) unless one for its view is here, or it would be the replica's
    /// highest of more than `PER_REPLICA` (then the highest goes: the lowest views are kept).
    pub fn insert(&mut self, vc: Signed<ViewChange>, batches: Vec<Batch>) -> Inserted {
        let views = self.0.entry(vc.from).or_default();
        let view = vc.body.new_view;
        if views.contains_key(&view) {
            return Inserted::Duplicate;
        }
        if views.len() >= PER_REPLICA {
            match views.keys().next_back().copied() {
                Some(highest) if highest > view => {
                    views.remove(&highest);
                }
                _ => return Inserted::TooFar,
            }
        }
        views.insert(view, (vc, batches));
        Inserted::Kept
    }

    /// Every replica's ViewChange for exactly `view`.
    pub fn for_view(&self, view: u64) -> impl Iterator<Item = &Entry> {
        self.0.values().filter_map(move |views| views.get(&view))
    }

    /// How many replicas ask for `view` or a later one.
    pub fn asking_at_least(&self, view: u64) -> usize {
        self.0
            .values()
            .filter(|views| views.keys().next_back().is_some_and(|v| *v >= view))
            .count()
    }

    /// For each replica but `except`, the lowest view above `view` it asks for.
    pub fn lowest_above(&self, view: u64, except: ReplicaId) -> Vec<u64> {
        self.0
            .iter()
            .filter(|(r, _)| **r != except)
            .filter_map(|(_, views)| views.range(view + 1..).next().map(|(v, _)| *v))
            .collect()
    }

    /// `replica`'s ViewChange for the highest view it asked for.
    pub fn latest(&self, replica: ReplicaId) -> Option<&Entry> {
        self.0
            .get(&replica)
            .and_then(|views| views.values().next_back())
    }

    /// Forgets every ViewChange for a view below `view` (they can no longer start a view).
    pub fn retain_from(&mut self, view: u64) {
        for views in self.0.values_mut() {
            views.retain(|v, _| *v >= view);
        }
        self.0.retain(|_, views| !views.is_empty());
    }

    /// Forgets every ViewChange for `view` or below (entering `view`).
    pub fn retain_above(&mut self, view: u64) {
        self.retain_from(view.saturating_add(1));
    }

    /// (replica, view) of everything held, for logs.
    pub fn summary(&self) -> Vec<(ReplicaId, u64)> {
        self.0
            .iter()
            .flat_map(|(r, views)| views.keys().map(move |v| (*r, *v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::StableCheckpoint;
    use quire_chain::{Hash, Signature};

    fn vc(from: ReplicaId, view: u64) -> Signed<ViewChange> {
        Signed {
            from,
            body: ViewChange {
                new_view: view,
                checkpoint: StableCheckpoint {
                    seq: 0,
                    block_hash: Hash::ZERO,
                    certificate: None,
                },
                prepared: Vec::new(),
            },
            signature: Signature([0; 64]),
        }
    }

    /// The chaos run's case: replica 1 asked for far views (a flood), then honestly for the
    /// next one. The honest one is kept and counts for that view and for the join rule.
    #[test]
    fn an_honest_view_change_after_far_ones_is_kept() {
        let mut held = ViewChanges::default();
        for far in [1_500, 1_200, 1_900, 1_700, 1_100] {
            held.insert(vc(1, far), Vec::new());
        }
        assert_eq!(held.insert(vc(1, 92), Vec::new()), Inserted::Kept);
        assert_eq!(held.for_view(92).count(), 1);
        assert_eq!(held.lowest_above(91, 0), vec![92]);
        assert_eq!(held.latest(1).map(|(v, _)| v.body.new_view), Some(1_500));
        // Bounded: the highest were let go.
        assert_eq!(held.summary().len(), PER_REPLICA);
    }

    #[test]
    fn duplicates_and_views_beyond_the_bound_are_refused() {
        let mut held = ViewChanges::default();
        for v in 1..=4 {
            assert_eq!(held.insert(vc(2, v), Vec::new()), Inserted::Kept);
        }
        assert_eq!(held.insert(vc(2, 3), Vec::new()), Inserted::Duplicate);
        assert_eq!(held.insert(vc(2, 9), Vec::new()), Inserted::TooFar);
        held.retain_above(2);
        assert_eq!(held.summary(), vec![(2, 3), (2, 4)]);
        assert_eq!(held.asking_at_least(4), 1);
        assert_eq!(held.asking_at_least(5), 0);
    }
}
