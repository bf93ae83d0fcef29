//! The mesh's counters: atomics bumped on the hot paths, read as a plain snapshot for metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use quire_chain::ReplicaId;

/// Declares the live counters of one peer and their snapshot with the same fields, so the two
/// cannot drift apart.
macro_rules! peer_counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters of one peer link.
        #[derive(Debug, Default)]
        pub(super) struct PeerCounters {
            $(pub(super) $name: AtomicU64,)*
        }

        /// A snapshot of one peer link's counters. Byte counts are frame payloads (without the
        /// 4-byte length prefix).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct PeerStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl PeerCounters {
            fn snapshot(&self) -> PeerStats {
                PeerStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

peer_counters! {
    /// Frames written to the peer's stream.
    frames_sent,
    bytes_sent,
    /// Frames read from the peer and handed to the node.
    frames_received,
    bytes_received,
    /// Outgoing frames dropped because the peer's queue was full.
    dropped_queue_full,
    /// Outgoing frames dropped because the link is blocked.
    dropped_blocked_out,
    /// Outgoing frames dropped because they waited in the queue too long (the link was down).
    dropped_stale,
    /// Incoming frames dropped because the link is blocked.
    dropped_blocked_in,
    /// Frames over the cap: ours not sent, or theirs refused (closing their connection).
    dropped_oversized,
    /// Outgoing frames lost with a failed write.
    dropped_connection,
    /// Failed dials, lost connections and broken or truncated inbound streams.
    connection_errors,
    /// Successful dials.
    connects,
    /// Successful dials after the first one.
    reconnects,
    /// 1 while our outgoing connection to the peer is up, else 0 (a gauge).
    connected,
}

/// Counts one event.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts `amount` (bytes).
pub(super) fn add(counter: &AtomicU64, amount: usize) {
    counter.fetch_add(amount as u64, Ordering::Relaxed);
}

/// Counters that belong to the endpoint rather than to one peer.
#[derive(Debug, Default)]
pub(super) struct EndpointCounters {
    pub(super) clients_accepted: AtomicU64,
    pub(super) clients_refused: AtomicU64,
    pub(super) handshakes_failed: AtomicU64,
}

/// A snapshot of the mesh's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// One entry per other replica.
    pub peers: BTreeMap<ReplicaId, PeerStats>,
    /// Frames waiting in each peer's queue right now…
    pub queued_frames: BTreeMap<ReplicaId, u64>,
    /// …their bytes…
    pub queued_bytes: BTreeMap<ReplicaId, u64>,
    /// …and bytes received from each peer, waiting for verification.
    pub inbound_queued_bytes: BTreeMap<ReplicaId, u64>,
    /// Client connections handed to the node.
    pub clients_accepted: u64,
    /// Client connections closed because the node's client queue was full or gone.
    pub clients_refused: u64,
    /// Incoming handshakes that failed (e.g. a certificate of a key that is not a validator's).
    pub handshakes_failed: u64,
}

impl MeshStats {
    pub(super) fn collect<'a>(
        peers: impl Iterator<Item = (ReplicaId, &'a PeerCounters, u64)>,
        endpoint: &EndpointCounters,
    ) -> MeshStats {
        let mut stats = MeshStats {
            clients_accepted: endpoint.clients_accepted.load(Ordering::Relaxed),
            clients_refused: endpoint.clients_refused.load(Ordering::Relaxed),
            handshakes_failed: endpoint.handshakes_failed.load(Ordering::Relaxed),
            ..MeshStats::default()
        };
        for (id, counters, queued) in peers {
            stats.peers.insert(id, counters.snapshot());
            stats.queued_frames.insert(id, queued);
        }
        stats
    }
}
