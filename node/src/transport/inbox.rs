//! Where frames from replicas wait for the node: one queue per peer, bounded in bytes, drained
//! round robin.
//!
//! A peer that sends faster than the node can verify fills only its own queue; its readers then
//! wait for room (and QUIC flow control slows the peer down) while every other peer's frames
//! keep flowing at their share. One queue for everyone would let a flooding replica push honest
//! votes to the back of the line; dropping on overflow would lose honest frames too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use quire_chain::ReplicaId;
use tokio::sync::Notify;

/// Frames from one peer, with their total size.
#[derive(Default)]
struct PeerQueue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

struct State {
    queues: BTreeMap<ReplicaId, PeerQueue>,
    /// The peer served last; the next pop starts after it.
    last: Option<ReplicaId>,
    closed: bool,
}

pub struct Inbox {
    state: Mutex<State>,
    ready: Condvar,
    /// Woken when a peer's queue gives up a frame, for that peer's waiting readers.
    room: BTreeMap<ReplicaId, Notify>,
    peer_bytes_max: usize,
}

/// One peer's queue, as a snapshot for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    pub frames: usize,
    pub bytes: usize,
}

impl Inbox {
    /// An inbox for `peers`, holding at most `peer_bytes_max` bytes per peer (a single frame
    /// larger than that is still taken when the peer's queue is empty).
    pub fn new(peers: impl IntoIterator<Item = ReplicaId>, peer_bytes_max: usize) -> Inbox {
        let peers: Vec<ReplicaId> = peers.into_iter().collect();
        Inbox {
            state: Mutex::new(State {
                queues: peers.iter().map(|p| (*p, PeerQueue::default())).collect(),
                last: None,
                closed: false,
            }),
            ready: Condvar::new(),
            room: peers.iter().map(|p| (*p, Notify::new())).collect(),
            peer_bytes_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame from `peer`, waiting while its queue is full. `false` once the inbox is
    /// closed (or for a peer it does not know).
    pub async fn push(&self, peer: ReplicaId, frame: Vec<u8>) -> bool {
        let Some(room) = self.room.get(&peer) else {
            return false;
        };
        loop {
            let notified = room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return false;
                }
                let Some(queue) = state.queues.get_mut(&peer) else {
                    return false;
                };
                if queue.bytes == 0 || queue.bytes + frame.len() <= self.peer_bytes_max {
                    queue.bytes += frame.len();
                    queue.frames.push_back(frame);
                    drop(state);
                    self.ready.notify_one();
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Takes the next frame, round robin over peers with frames waiting; blocks until there is
    /// one, or up to `timeout`. `None` on timeout or once closed.
    pub fn pop(&self, timeout: Duration) -> Option<(ReplicaId, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(taken) = take_next(&mut state) {
                drop(state);
                if let Some(room) = self.room.get(&taken.0) {
                    room.notify_waiters();
                }
                return Some(taken);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// For async consumers (tests): polls [`pop`](Self::pop) without blocking the runtime.
    pub async fn recv(&self) -> Option<(ReplicaId, Vec<u8>)> {
        loop {
            if let Some(taken) = self.pop(Duration::ZERO) {
                return Some(taken);
            }
            if self.lock().closed {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Wakes everyone; pushes and pops fail from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        for room in self.room.values() {
            room.notify_waiters();
        }
    }

    pub fn queued(&self) -> BTreeMap<ReplicaId, Queued> {
        self.lock()
            .queues
            .iter()
            .map(|(p, q)| {
                (
                    *p,
                    Queued {
                        frames: q.frames.len(),
                        bytes: q.bytes,
                    },
                )
            })
            .collect()
    }
}

/// The first frame of the first non-empty queue after the one served last.
fn take_next(state: &mut State) -> Option<(ReplicaId, Vec<u8>)> {
    let after = state.last;
    let next = state
        .queues
        .iter()
        .filter(|(_, q)| !q.frames.is_empty())
        .map(|(p, _)| *p)
        .find(|p| after.is_none_or(|a| *p > a))
        .or_else(|| {
            state
                .queues
                .iter()
                .find(|(_, q)| !q.frames.is_empty())
                .map(|(p, _)| *p)
        })?;
    let queue = state.queues.get_mut(&next)?;
    let frame = queue.frames.pop_front()?;
    queue.bytes -= frame.len();
    state.last = Some(next);
    Some((next, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A flooding peer gets its turn and no more: with its queue full, the others' frames are
    /// served alternately with its own.
    #[tokio::test]
    async fn peers_are_served_in_turn() {
        let inbox = Inbox::new([1, 2, 3], 1 << 20);
        for i in 0..10u8 {
            assert!(inbox.push(1, vec![i]).await);
        }
        assert!(inbox.push(2, vec![20]).await);
        assert!(inbox.push(3, vec![30]).await);
        let order: Vec<ReplicaId> = (0..5)
            .map(|_| inbox.pop(Duration::ZERO).unwrap().0)
            .collect();
        assert_eq!(order, vec![1, 2, 3, 1, 1]);
    }

    /// A full queue makes its peer's pusher wait (nothing is dropped) until a frame is taken;
    /// other peers are not held up.
    #[tokio::test]
    async fn a_full_queue_holds_back_only_its_peer() {
        let inbox = Arc::new(Inbox::new([1, 2], 10));
        assert!(inbox.push(1, vec![0; 8]).await);
        let waiting = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.push(1, vec![1; 8]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        assert!(inbox.push(2, vec![2; 8]).await);
        assert_eq!(inbox.queued()[&1].bytes, 8);
        let (peer, frame) = inbox.pop(Duration::ZERO).unwrap();
        assert_eq!((peer, frame.len()), (1, 8));
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .unwrap()
                .unwrap()
        );
        assert_eq!(inbox.queued()[&1].bytes, 8);
    }

    /// A frame larger than the budget still passes when its peer has nothing queued (a big
    /// honest NewView must not be stuck forever).
    #[tokio::test]
    async fn an_oversized_frame_passes_alone() {
        let inbox = Inbox::new([1], 4);
        assert!(inbox.push(1, vec![0; 100]).await);
        assert_eq!(inbox.pop(Duration::ZERO).unwrap().1.len(), 100);
    }

    #[tokio::test]
    async fn closing_ends_pushes_and_pops() {
        let inbox = Inbox::new([1], 4);
        inbox.close();
        assert!(!inbox.push(1, vec![1]).await);
        assert!(inbox.pop(Duration::from_millis(10)).is_none());
        assert!(!inbox.push(9, vec![1]).await);
    }
}
