//! The replica mesh: every replica keeps one outgoing link to every other replica and accepts
//! theirs, on one QUIC endpoint that also serves clients.
//!
//! Sending never blocks: a frame goes into the peer's queue (bounded in frames and in bytes), or
//! is dropped and counted when the queue is full (PBFT recovers lost messages; a stalled caller
//! would stall consensus). Receiving applies back-pressure instead, per peer: a reader waits for
//! room in its peer's queue of the [`Inbox`], and QUIC flow control slows that peer down. Link controls (block, delay) are checked on these
//! paths so the testnet can inject faults into a real network.

mod inbound;
mod outbound;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::{Endpoint, TokioRuntime};
use quire_chain::{Keypair, ReplicaId, ValidatorSet};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::debug;

use super::endpoint::endpoint_config;
use super::inbox::Inbox;
use super::stats::{EndpointCounters, MeshStats, PeerCounters, bump};
use super::tls::{replica_client_config, server_config};
use super::{FRAME_BYTES_MAX, TransportError, codes};

/// How long [`Mesh::shutdown`] waits for connections to close politely.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct MeshConfig {
    pub me: ReplicaId,
    /// This replica's key; it must be `me`'s key in `validators`.
    pub identity: Keypair,
    /// Where the endpoint binds (may differ from the genesis address, e.g. 0.0.0.0).
    pub listen: SocketAddr,
    /// Who the peers are, their keys and their "host:port" addresses.
    pub validators: ValidatorSet,
    /// Frames waiting for one peer before new ones are dropped…
    pub peer_queue_frames: usize,
    /// …and bytes.
    pub peer_queue_bytes: usize,
    /// A frame still queued this long after it was due (its link was down, or far behind) is
    /// dropped and counted instead of sent: see [`STALE_AFTER`].
    pub peer_frame_stale_after: Duration,
    /// Bytes received from one peer but not yet taken by the node, before its readers wait.
    pub inbound_peer_bytes: usize,
    /// Client connections not yet taken by the node, before new ones are refused.
    pub client_queue_connections: usize,
    /// The largest frame sent or accepted.
    pub frame_bytes_max: usize,
}

impl MeshConfig {
    /// A configuration with default queue sizes and frame cap.
    pub fn new(
        me: ReplicaId,
        identity: Keypair,
        listen: SocketAddr,
        validators: ValidatorSet,
    ) -> MeshConfig {
        MeshConfig {
            me,
            identity,
            listen,
            validators,
            peer_queue_frames: 4096,
            peer_queue_bytes: 64 << 20,
            peer_frame_stale_after: STALE_AFTER,
            inbound_peer_bytes: 16 << 20,
            client_queue_connections: 256,
            frame_bytes_max: FRAME_BYTES_MAX,
        }
    }
}

/// How long a queued frame stays worth sending after it was due. A replica restarted after a
/// minute down was sent the 4,096 frames queued for it while it was gone — thousands of
/// pre-prepares and votes for slots its peers had long executed — and verified them one by one
/// through the normal case at about 2,000 blocks a second, while state transfer, which certifies
/// a block with one certificate, brings it the same blocks at over 6,000. Dropping them is safe:
/// PBFT resends what is still needed (status, votes of stuck slots, view changes) and fetches
/// the rest. A second keeps the frames of a brief disconnection.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// What the mesh delivers to the node.
pub struct MeshEvents {
    /// Frames from other replicas, with the sender authenticated by its TLS certificate, in one
    /// byte-bounded queue per peer.
    pub frames: Arc<Inbox>,
    /// Connections of plain clients (no certificate), for the RPC service.
    pub clients: mpsc::Receiver<quinn::Connection>,
}

/// A running mesh. Dropping it stops its tasks and closes the endpoint.
pub struct Mesh {
    me: ReplicaId,
    endpoint: Endpoint,
    queues: BTreeMap<ReplicaId, mpsc::Sender<Outgoing>>,
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
    tasks: Vec<AbortHandle>,
}

/// A frame waiting in a peer's queue; the delay link control counts from `queued_at`.
pub(super) struct Outgoing {
    frame: Arc<Vec<u8>>,
    queued_at: Instant,
}

/// One peer link's controls and counters, shared by the handle and the tasks.
#[derive(Debug, Default)]
struct Link {
    counters: PeerCounters,
    blocked: AtomicBool,
    delay_us: AtomicU64,
    /// Bytes of the frames in the peer's outgoing queue.
    queued_bytes: AtomicU64,
    /// The peer's current connection to us. A peer dials again only when it thinks its link is
    /// gone, so a new connection supersedes the old one; this also stops a faulty replica from
    /// holding many connections (each with readers and buffers) open at once.
    inbound: Mutex<Option<quinn::Connection>>,
    /// Rung when the peer connects to us: it is up (often a new incarnation after a restart),
    /// so our sender dials it now instead of finishing a back-off of up to 2 s or a handshake
    /// with the dead incarnation. Without it a restarted replica heard from its peers only
    /// 1–4.5 s after it was up, and a view it was to lead waited that long for its NewView.
    wake: tokio::sync::Notify,
}

impl Link {
    /// Makes `conn` the peer's connection, closing the one it replaces.
    fn supersede_inbound(&self, conn: &quinn::Connection) {
        self.wake.notify_one();
        let old = self.inbound_slot().replace(conn.clone());
        if let Some(old) = old.filter(|old| old.stable_id() != conn.stable_id()) {
            old.close(codes::SUPERSEDED, b"superseded by a new connection");
        }
    }

    /// Forgets `conn` if it is still the peer's current connection.
    fn forget_inbound(&self, conn: &quinn::Connection) {
        let mut slot = self.inbound_slot();
        if slot
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            *slot = None;
        }
    }

    fn inbound_slot(&self) -> std::sync::MutexGuard<'_, Option<quinn::Connection>> {
        // The slot holds no invariant a panicking holder could break, so poisoning is moot.
        self.inbound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }

    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
}

/// State shared by all of the mesh's tasks.
#[derive(Debug)]
struct Shared {
    links: BTreeMap<ReplicaId, Arc<Link>>,
    endpoint: EndpointCounters,
    frame_bytes_max: usize,
    peer_queue_bytes: usize,
}

impl Mesh {
    /// Binds the endpoint and starts the accept loop and one sender task per peer, on the tokio
    /// runtime of the caller.
    pub fn start(config: MeshConfig) -> Result<(Mesh, MeshEvents), TransportError> {
        tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        check_identity(&config)?;
        let allowed = Arc::new(allowed_keys(&config.validators, config.me));
        // Build every configuration before spawning anything, so an error leaks no task.
        let peers = peer_plans(&config)?;
        let endpoint = bind(&config, allowed.clone())?;
        let shared = Arc::new(Shared {
            links: peers.iter().map(|p| (p.id, p.link.clone())).collect(),
            endpoint: EndpointCounters::default(),
            frame_bytes_max: config.frame_bytes_max,
            peer_queue_bytes: config.peer_queue_bytes,
        });
        let frames = Arc::new(Inbox::new(
            peers.iter().map(|p| p.id),
            config.inbound_peer_bytes,
        ));
        let (clients_tx, clients) = mpsc::channel(config.client_queue_connections.max(1));
        let inbound = inbound::Inbound {
            shared: shared.clone(),
            allowed,
            frames: frames.clone(),
            clients: clients_tx,
        };
        let mut tasks =
            vec![tokio::spawn(inbound::accept_loop(endpoint.clone(), inbound)).abort_handle()];
        let mut queues = BTreeMap::new();
        for plan in peers {
            let (queue_tx, queue) = mpsc::channel(config.peer_queue_frames.max(1));
            queues.insert(plan.id, queue_tx);
            let outbound = outbound::Outbound {
                peer: plan.id,
                address: plan.address,
                client: plan.client,
                endpoint: endpoint.clone(),
                link: plan.link,
                queue,
                stale_after: config.peer_frame_stale_after,
            };
            tasks.push(tokio::spawn(outbound.run()).abort_handle());
        }
        let mesh = Mesh {
            me: config.me,
            endpoint,
            queues,
            shared,
            inbox: frames.clone(),
            tasks,
        };
        Ok((mesh, MeshEvents { frames, clients }))
    }

    pub fn me(&self) -> ReplicaId {
        self.me
    }

    /// The address the endpoint is bound to (useful when listening on port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Queues `frame` for `to` without waiting; drops (and counts) it if the link is blocked, the
    /// frame is over the cap or the peer's queue is full. Frames to ourselves or to unknown
    /// replicas are ignored.
    pub fn send(&self, to: ReplicaId, frame: Arc<Vec<u8>>) {
        let (Some(queue), Some(link)) = (self.queues.get(&to), self.shared.links.get(&to)) else {
            debug!(to, me = self.me, "frame to no peer ignored");
            return;
        };
        if link.is_blocked() {
            return bump(&link.counters.dropped_blocked_out);
        }
        if frame.len() > self.shared.frame_bytes_max {
            return bump(&link.counters.dropped_oversized);
        }
        let bytes = frame.len() as u64;
        let queued = link.queued_bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + bytes > self.shared.peer_queue_bytes as u64 {
            return bump(&link.counters.dropped_queue_full);
        }
        let outgoing = Outgoing {
            frame,
            queued_at: Instant::now(),
        };
        match queue.try_send(outgoing) {
            Ok(()) => {
                link.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => bump(&link.counters.dropped_queue_full),
            // The sender task is gone: the mesh is shutting down.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Queues `frame` for every other replica; all queues share the one allocation.
    pub fn broadcast(&self, frame: Arc<Vec<u8>>) {
        for &to in self.queues.keys() {
            self.send(to, frame.clone());
        }
    }

    /// Whether the link to `to` is blocked by fault injection (its frames are dropped).
    pub fn is_blocked(&self, to: ReplicaId) -> bool {
        self.shared.links.get(&to).is_some_and(|l| l.is_blocked())
    }

    /// Fault injection: from now on, frames to and from exactly these peers are dropped (on our
    /// side, both directions). An empty set unblocks everyone.
    pub fn set_blocked(&self, peers: BTreeSet<ReplicaId>) {
        for (id, link) in &self.shared.links {
            link.blocked.store(peers.contains(id), Ordering::Relaxed);
        }
    }

    /// Fault injection: frames to `peer` are written no earlier than `delay` after they were
    /// queued (order is kept). `Duration::ZERO` removes the delay.
    pub fn set_delay(&self, peer: ReplicaId, delay: Duration) {
        if let Some(link) = self.shared.links.get(&peer) {
            let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
            link.delay_us.store(micros, Ordering::Relaxed);
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MeshStats {
        let peers = self.shared.links.iter().map(|(id, link)| {
            let queued = self
                .queues
                .get(id)
                .map_or(0, |q| q.max_capacity() - q.capacity());
            (*id, &link.counters, queued as u64)
        });
        let mut stats = MeshStats::collect(peers, &self.shared.endpoint);
        for (id, link) in &self.shared.links {
            stats
                .queued_bytes
                .insert(*id, link.queued_bytes.load(Ordering::Relaxed));
        }
        for (id, q) in self.inbox.queued() {
            stats.inbound_queued_bytes.insert(id, q.bytes as u64);
        }
        stats
    }

    /// Stops all tasks, closes every connection and waits (briefly) for peers to hear about it.
    /// The UDP socket is released once the `Mesh` is dropped.
    pub async fn shutdown(&self) {
        self.stop();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle()).await;
    }

    fn stop(&self) {
        self.tasks.iter().for_each(AbortHandle::abort);
        self.inbox.close();
        self.endpoint.close(codes::SHUTDOWN, b"shutdown");
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("me", &self.me)
            .field("peers", &self.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The node's key must be its validator key, or every peer would refuse it.
fn check_identity(config: &MeshConfig) -> Result<(), TransportError> {
    let me = config.me;
    let key = config
        .validators
        .key(me)
        .ok_or(TransportError::NotAValidator { me })?;
    if *key != config.identity.public() {
        return Err(TransportError::IdentityMismatch { me });
    }
    Ok(())
}

/// Keys whose client certificates mark a replica connection; our own is left out, since no peer
/// can legitimately hold it.
fn allowed_keys(validators: &ValidatorSet, me: ReplicaId) -> BTreeMap<[u8; 32], ReplicaId> {
    validators
        .iter()
        .filter(|v| v.id != me)
        .map(|v| (v.key.to_bytes(), v.id))
        .collect()
}

/// What the mesh needs to run one peer link.
struct PeerPlan {
    id: ReplicaId,
    address: String,
    /// Pins the peer's key and presents ours.
    client: quinn::ClientConfig,
    link: Arc<Link>,
}

fn peer_plans(config: &MeshConfig) -> Result<Vec<PeerPlan>, TransportError> {
    config
        .validators
        .iter()
        .filter(|v| v.id != config.me)
        .map(|v| {
            Ok(PeerPlan {
                id: v.id,
                address: v.address.clone(),
                client: replica_client_config(&config.identity, v.key)?,
                link: Arc::default(),
            })
        })
        .collect()
}

fn bind(
    config: &MeshConfig,
    allowed: Arc<BTreeMap<[u8; 32], ReplicaId>>,
) -> Result<Endpoint, TransportError> {
    let addr = config.listen;
    let server = server_config(&config.identity, allowed)?;
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| TransportError::Bind { addr, source })?;
    let endpoint = endpoint_config(&config.identity);
    Endpoint::new(endpoint, Some(server), socket, Arc::new(TokioRuntime))
        .map_err(|source| TransportError::Bind { addr, source })
}
