//! The transport's counters as metrics, read from its atomics at scrape time.

use std::fmt::Error;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::snapshot::{counter, family, gauge};
use crate::transport::{Mesh, MeshStats, PeerStats};

/// Replicas we hold a connection to.
pub fn connected_peers(stats: &MeshStats) -> usize {
    stats.peers.values().filter(|p| p.connected == 1).count()
}

/// A per-peer counter: metric name (without `_total`), help, and how to read it.
type PeerCounter = (&'static str, &'static str, fn(&PeerStats) -> u64);

const PER_PEER: [PeerCounter; 11] = [
    (
        "quire_transport_frames_sent",
        "Frames written to a peer.",
        |p| p.frames_sent,
    ),
    (
        "quire_transport_bytes_sent",
        "Frame bytes written to a peer.",
        |p| p.bytes_sent,
    ),
    (
        "quire_transport_frames_received",
        "Frames read from a peer.",
        |p| p.frames_received,
    ),
    (
        "quire_transport_bytes_received",
        "Frame bytes read from a peer.",
        |p| p.bytes_received,
    ),
    (
        "quire_transport_dropped_queue_full",
        "Frames dropped: peer queue full.",
        |p| p.dropped_queue_full,
    ),
    (
        "quire_transport_dropped_stale",
        "Frames dropped: queued too long for a peer (its link was down).",
        |p| p.dropped_stale,
    ),
    (
        "quire_transport_dropped_blocked",
        "Frames dropped: link blocked by the admin API.",
        |p| p.dropped_blocked_in + p.dropped_blocked_out,
    ),
    (
        "quire_transport_dropped_oversized",
        "Frames dropped: over the size cap.",
        |p| p.dropped_oversized,
    ),
    (
        "quire_transport_reconnects",
        "Reconnections to a peer.",
        |p| p.reconnects,
    ),
    (
        "quire_transport_connection_errors",
        "Failed dials, lost connections and broken inbound streams of a peer.",
        |p| p.connection_errors,
    ),
    (
        "quire_transport_dropped_connection",
        "Frames to a peer lost with a failed write.",
        |p| p.dropped_connection,
    ),
];

/// Encodes a mesh's counters (`stats` is read once per scrape).
pub struct TransportCollector(pub Arc<Mesh>);

impl std::fmt::Debug for TransportCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportCollector")
    }
}

impl Collector for TransportCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        encode(&self.0.stats(), &mut enc)
    }
}

pub fn encode(stats: &MeshStats, e: &mut DescriptorEncoder) -> Result<(), Error> {
    gauge(
        e,
        "quire_peers_connected",
        "Replicas we hold a connection to.",
        connected_peers(stats) as u64,
    )?;
    for (name, help, get) in PER_PEER {
        let rows = stats
            .peers
            .iter()
            .map(|(peer, p)| ([("peer", *peer)], get(p)));
        family(e, name, help, MetricType::Counter, rows)?;
    }
    family(
        e,
        "quire_transport_queued_bytes",
        "Bytes waiting to be sent to a peer.",
        MetricType::Gauge,
        stats
            .queued_bytes
            .iter()
            .map(|(peer, v)| ([("peer", *peer)], *v)),
    )?;
    family(
        e,
        "quire_transport_inbound_queued_bytes",
        "Bytes received from a peer, waiting for verification.",
        MetricType::Gauge,
        stats
            .inbound_queued_bytes
            .iter()
            .map(|(peer, v)| ([("peer", *peer)], *v)),
    )?;
    counter(
        e,
        "quire_transport_clients_accepted",
        "Client connections handed to the RPC server.",
        stats.clients_accepted,
    )?;
    counter(
        e,
        "quire_transport_clients_refused",
        "Client connections refused (busy).",
        stats.clients_refused,
    )?;
    counter(
        e,
        "quire_transport_handshakes_failed",
        "Handshakes refused (unknown keys and other TLS failures).",
        stats.handshakes_failed,
    )
}
