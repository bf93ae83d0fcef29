//! The QUIC transport: it only moves bytes.
//!
//! - [`tls`]: every replica's TLS identity is a self-signed certificate whose key *is* its ed25519
//!   replica key, so authenticating a connection needs no CA: a replica's server certificate is
//!   pinned to the key in the genesis, and a client certificate is accepted only if its key is a
//!   validator's. Clients (the `quire` CLI) connect without a certificate.
//! - [`frame`]: length-prefixed frames (u32 big-endian length, then the bytes) with a size cap.
//! - [`mesh`]: the replica mesh. One QUIC endpoint per replica, one long-lived outgoing stream per
//!   peer fed by a bounded queue (full queue = frame dropped and counted, never a blocked caller),
//!   reconnection with back-off, inbound frames on a bounded channel, client connections handed to
//!   the node, link controls (block, delay) for fault injection, and counters for metrics.
//!
//! What the frames mean is not this module's business: decoding and signature checks happen above.

mod endpoint;
pub mod inbox;
pub mod mesh;
mod stats;

pub use quire_wire::{frame, tls};

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use quire_chain::ReplicaId;
use thiserror::Error;

pub use inbox::Inbox;
pub use mesh::{Mesh, MeshConfig, MeshEvents};
pub use quire_wire::frame::{FRAME_BYTES_MAX, FrameError, read_frame, write_frame};
pub use quire_wire::tls::{
    ALPN, SERVER_NAME, TlsError, client_config, peer_replica, replica_client_config, server_config,
};
pub use stats::{MeshStats, PeerStats};

/// Transport errors. Local faults (configuration, binding) stop the node; peer faults (dialing,
/// connections) are retried and counted by the mesh, and only reach logs.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot bind the QUIC endpoint to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the mesh must be started inside a tokio runtime")]
    NoRuntime,
    #[error("replica {me} is not in the validator set")]
    NotAValidator { me: ReplicaId },
    #[error("the key of replica {me} in the validator set is not this node's key")]
    IdentityMismatch { me: ReplicaId },
    #[error("address {address:?} of replica {peer} does not resolve: {reason}")]
    Resolve {
        peer: ReplicaId,
        address: String,
        reason: String,
    },
    #[error("cannot dial replica {peer} at {addr}: {source}")]
    Dial {
        peer: ReplicaId,
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    #[error("connection with replica {peer}: {source}")]
    Connection {
        peer: ReplicaId,
        #[source]
        source: quinn::ConnectionError,
    },
    #[error("sending to replica {peer}: {source}")]
    Send {
        peer: ReplicaId,
        #[source]
        source: FrameError,
    },
}

/// QUIC application error codes this transport closes connections and streams with.
pub mod codes {
    use quinn::VarInt;

    /// Orderly shutdown of the mesh.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// The peer sent a frame over the cap.
    pub const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(1);
    /// The node is not taking client connections right now (its queue is full).
    pub const BUSY: VarInt = VarInt::from_u32(2);
    /// The connection is not acceptable (e.g. a replica certificate for no peer of ours).
    pub const REFUSED: VarInt = VarInt::from_u32(3);
    /// The same replica opened a newer connection.
    pub const SUPERSEDED: VarInt = VarInt::from_u32(4);
}
