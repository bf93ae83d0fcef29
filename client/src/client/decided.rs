//! *Decided*: PBFT's tentative-execution point (Castro & Liskov §5.1), seen from the client, and
//! the commit cues that let a waiting client fetch its proof the moment there is one.
//!
//! A replica reports the batch it holds prepared on top of its executed head
//! ([`Request::WaitPrepared`]) once that prepared certificate is on its disk. A quorum of
//! replicas reporting the same height, view, digest, parent and transaction ids proves the batch
//! commits at that height: at least f+1 of them are honest and hold the certificate durably, every
//! view change hears from a quorum and so from one of them, and the new view must re-propose the
//! digest prepared in the highest view. So a client knows where its transaction lands one phase
//! (a synced write and a round of messages) before any replica commits it.
//!
//! The reports come over QUIC channels pinned to each replica's key but are not signed
//! statements: they convince this client, not a third party. What the client shows for a
//! transfer stays the commit proof (certificate, merkle and outcome proofs, attestations), which
//! [`Client::finish_transfer`] still waits for; the commit cues below only tell it *when* to ask
//! (once f+1 replicas say they committed the transaction, enough to attest its block) instead of
//! at its next poll, so lying cues cost at most an extra question and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quire_chain::tx::TxId;
use quire_chain::{Hash, ReplicaId, merkle};
use quire_wire::rpc::{Prepared, Request, Response};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Client;

/// How far past the highest height proven decided (or committed by f+1 replicas) a replica's
/// reports are followed: honest replicas are never more than a pipeline ahead of a quorum, and
/// one that reports heights faster than the others cannot make the client ask without end.
const AHEAD_MAX: u64 = 256;
/// Longest a report is held at a replica before it answers "not yet".
const HOLD_MS: u32 = 1_000;
/// The shortest hold asked for, whatever the call timeout: a follower whose replica answers
/// faster than half of it without a report pauses, so it never asks in a tight loop.
const HOLD_MS_MIN: u32 = 50;
/// Prepared reports kept below the highest decided height (a quorum for a lower height can
/// still complete while its slowest reports arrive).
const DECIDED_KEPT_HEIGHTS: u64 = 64;
/// Reports queued for the waiting loop before the followers wait for it.
const QUEUED_MAX: usize = 256;

/// A batch a quorum of replicas reported prepared (or committed) at one height, on one parent,
/// in one view: it commits there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub height: u64,
    pub view: u64,
    pub digest: Hash,
    pub parent: Hash,
    /// The replicas whose matching reports made the quorum.
    pub replicas: Vec<ReplicaId>,
    /// The batch's transactions, in order.
    pub ids: Vec<TxId>,
}

/// ([`Prepared::key`], root of the ids): what the reports of a quorum must share.
type Key = ((u64, u64, Hash, Hash), Hash);

/// Counts prepared reports, each replica once per batch, until a quorum agrees on one.
pub struct PreparedTally {
    quorum: usize,
    reports: BTreeMap<Key, BTreeSet<ReplicaId>>,
}

impl PreparedTally {
    /// `quorum`: the genesis's [`quorum`](quire_chain::ValidatorSet::quorum).
    pub fn new(quorum: usize) -> PreparedTally {
        PreparedTally {
            quorum: quorum.max(1),
            reports: BTreeMap::new(),
        }
    }

    /// Counts `replica`'s report; returns the batch when this report completes its quorum (once
    /// per batch). The ids are part of what must match: a replica that reports the right digest
    /// with other ids does not add to the honest reports.
    pub fn add(&mut self, replica: ReplicaId, report: &Prepared) -> Option<Decided> {
        let ids: Vec<Hash> = report.ids.iter().map(|id| id.0).collect();
        let key = (report.key(), merkle::root(&ids));
        let replicas = self.reports.entry(key).or_default();
        if !replicas.insert(replica) || replicas.len() != self.quorum {
            return None;
        }
        Some(Decided {
            height: report.height,
            view: report.view,
            digest: report.digest,
            parent: report.parent,
            replicas: replicas.iter().copied().collect(),
            ids: report.ids.clone(),
        })
    }

    /// Forgets the reports for heights below `floor`.
    pub fn forget_below(&mut self, floor: u64) {
        let zero = Hash([0; 32]);
        self.reports = self.reports.split_off(&((floor, 0, zero, zero), zero));
    }

    /// Whether no batch has a report (all decided ones forgotten).
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }
}

/// What one replica said while a transfer is watched.
#[derive(Debug)]
enum Seen {
    /// A prepared report, and when it arrived.
    Prepared(ReplicaId, Prepared, Instant),
    /// The replica says it committed `height`, whose batch holds `ids`: a cue to ask for the
    /// proof now (nothing is believed because of it).
    Committed(ReplicaId, u64, Vec<TxId>),
}

/// What the reports say about the watched transaction.
#[derive(Debug)]
pub(crate) enum Cue {
    /// Its batch is decided; the quorum's last report arrived at that instant.
    Decided(Decided, Instant),
    /// f+1 replicas say they committed it: time to ask for the proof.
    Committed,
}

/// Every replica's prepared reports and commits from one height on, as they happen; the
/// followers stop when this is dropped.
pub(crate) struct Watch {
    rx: mpsc::Receiver<Seen>,
    tally: PreparedTally,
    /// The followers ask for no height above this plus [`AHEAD_MAX`].
    frontier: Arc<AtomicU64>,
    /// The highest height each replica said it committed.
    committed: BTreeMap<ReplicaId, u64>,
    /// The replicas that said they committed each watched transaction.
    cued: BTreeMap<TxId, BTreeSet<ReplicaId>>,
    weak_quorum: usize,
    _followers: JoinSet<()>,
}

impl Watch {
    /// The next thing the reports say about `tx`, or `None` once `until` has come.
    pub async fn next_cue(&mut self, tx: TxId, until: Instant) -> Option<Cue> {
        loop {
            let seen = match tokio::time::timeout_at(until.into(), self.rx.recv()).await {
                Ok(Some(seen)) => seen,
                // Every follower ended (they only end when this is dropped).
                Ok(None) => {
                    tokio::time::sleep_until(until.into()).await;
                    return None;
                }
                Err(_) => return None,
            };
            if let Some(cue) = self.see(seen, tx) {
                return Some(cue);
            }
        }
    }

    /// What the reports already received say about `tx`, without waiting.
    pub fn queued_cue(&mut self, tx: TxId) -> Option<Cue> {
        while let Ok(seen) = self.rx.try_recv() {
            if let Some(cue) = self.see(seen, tx) {
                return Some(cue);
            }
        }
        None
    }

    fn see(&mut self, seen: Seen, tx: TxId) -> Option<Cue> {
        match seen {
            Seen::Prepared(replica, report, at) => {
                let decided = self.tally.add(replica, &report)?;
                // Proven decided: the followers may go further.
                self.frontier.fetch_max(decided.height, Ordering::Relaxed);
                self.tally
                    .forget_below(decided.height.saturating_sub(DECIDED_KEPT_HEIGHTS));
                decided
                    .ids
                    .contains(&tx)
                    .then_some(Cue::Decided(decided, at))
            }
            Seen::Committed(replica, height, ids) => {
                self.committed(replica, height);
                if !ids.contains(&tx) {
                    return None;
                }
                // Its proof needs f+1 replicas' attestations of the block, and a replica
                // attests only what it has committed: asked after the first cue, the others
                // are often a moment behind, and asked again.
                let cued = self.cued.entry(tx).or_default();
                cued.insert(replica);
                (cued.len() >= self.weak_quorum).then_some(Cue::Committed)
            }
        }
    }

    /// `replica` says it committed `height`; once f+1 replicas (one of them honest) say they
    /// are at or past a height, the followers may go further from there too.
    fn committed(&mut self, replica: ReplicaId, height: u64) {
        let highest = self.committed.entry(replica).or_insert(0);
        *highest = (*highest).max(height);
        let mut heights: Vec<u64> = self.committed.values().copied().collect();
        heights.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(h) = heights.get(self.weak_quorum.saturating_sub(1)) {
            self.frontier.fetch_max(*h, Ordering::Relaxed);
        }
    }
}

impl Client {
    /// Follows every replica's prepared reports ([`Request::WaitPrepared`]) and commits
    /// ([`Request::WaitBlockIds`]) from height `from` on.
    pub(crate) fn watch_from(&self, from: u64) -> Watch {
        let (tx, rx) = mpsc::channel(QUEUED_MAX);
        let frontier = Arc::new(AtomicU64::new(from));
        let mut followers = JoinSet::new();
        let half_timeout =
            u32::try_from(self.options.call_timeout.as_millis() / 2).unwrap_or(u32::MAX);
        let hold = HOLD_MS.min(half_timeout).max(HOLD_MS_MIN);
        for replica in self.all_ids() {
            for commits in [false, true] {
                let follow = Follower {
                    client: self.clone(),
                    replica,
                    frontier: Arc::clone(&frontier),
                    tx: tx.clone(),
                    hold,
                };
                followers.spawn(follow.run(from, commits));
            }
        }
        Watch {
            rx,
            tally: PreparedTally::new(self.genesis().validators.quorum()),
            frontier,
            committed: BTreeMap::new(),
            cued: BTreeMap::new(),
            weak_quorum: self.genesis().validators.weak_quorum(),
            _followers: followers,
        }
    }
}

struct Follower {
    client: Client,
    replica: ReplicaId,
    frontier: Arc<AtomicU64>,
    tx: mpsc::Sender<Seen>,
    hold: u32,
}

impl Follower {
    /// Asks for `height`, then the next, as each is reported; `commits` follows the commits
    /// instead of the prepared reports.
    async fn run(self, mut height: u64, commits: bool) {
        let pause = self.client.options.poll_interval;
        loop {
            if height
                > self
                    .frontier
                    .load(Ordering::Relaxed)
                    .saturating_add(AHEAD_MAX)
            {
                tokio::time::sleep(pause).await;
                continue;
            }
            let request = if commits {
                Request::WaitBlockIds {
                    height,
                    wait_ms: self.hold,
                }
            } else {
                Request::WaitPrepared {
                    height,
                    wait_ms: self.hold,
                }
            };
            let asked = Instant::now();
            let seen = match self.client.call_held(self.replica, &request).await {
                Ok(Response::Prepared(Some(report))) if !commits && report.height == height => {
                    Some(Seen::Prepared(self.replica, report, Instant::now()))
                }
                Ok(Response::BlockIds {
                    header: Some(header),
                    ids,
                    ..
                }) if commits && header.height == height => {
                    Some(Seen::Committed(self.replica, height, ids))
                }
                _ => None,
            };
            match seen {
                Some(seen) => {
                    if self.tx.send(seen).await.is_err() {
                        return;
                    }
                    height += 1;
                }
                // Not yet, an error, or an answer to something else. A replica that answers
                // at once instead of holding the request (an old version, a proof-of-work block
                // without a certificate, a fault) is asked again after a pause, not in a loop.
                None if asked.elapsed() < Duration::from_millis(u64::from(self.hold) / 2) => {
                    tokio::time::sleep(pause).await;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(view: u64, parent: u8, ids: &[TxId]) -> Prepared {
        Prepared {
            height: 5,
            view,
            digest: Hash([9; 32]),
            parent: Hash([parent; 32]),
            committed: false,
            ids: ids.to_vec(),
        }
    }

    /// A quorum is that many distinct replicas reporting the same height, view, digest, parent
    /// and ids: a replica counts once however often it reports, and reports that differ in any
    /// of those do not add up. The batch is decided once.
    #[test]
    fn a_quorum_is_distinct_replicas_reporting_one_batch() {
        let ids: Vec<TxId> = (0..3u8).map(|i| TxId(Hash([i; 32]))).collect();
        let mut t = PreparedTally::new(3);
        assert_eq!(t.add(0, &report(0, 1, &ids)), None);
        assert_eq!(t.add(0, &report(0, 1, &ids)), None, "a replica counts once");
        assert_eq!(t.add(1, &report(1, 1, &ids)), None, "another view");
        assert_eq!(t.add(2, &report(0, 2, &ids)), None, "another parent");
        assert_eq!(t.add(3, &report(0, 1, &ids[..2])), None, "other ids");
        // A report of the batch committed counts with the prepared ones (it is past prepared).
        let mut committed = report(0, 1, &ids);
        committed.committed = true;
        assert_eq!(t.add(1, &committed), None, "two of three");
        let decided = t.add(2, &report(0, 1, &ids));
        let decided = decided.unwrap_or_else(|| panic!("the third matching report decides"));
        assert_eq!(
            (decided.height, decided.view, decided.replicas.clone()),
            (5, 0, vec![0, 1, 2])
        );
        assert_eq!(decided.ids, ids);
        assert_eq!(t.add(3, &report(0, 1, &ids)), None, "decided once");
        t.forget_below(6);
        assert!(t.is_empty());
    }
}
