//! Quire's wire protocol: what crosses the network between a client and a replica, and the TLS
//! identities both sides use. Replicas (`quire-node`) and clients (`quire-client`) share this
//! crate and nothing else of each other, so the client builds without the node's server code,
//! RocksDB or the consensus core.
//!
//! - [`rpc`]: client requests and responses, and the [`rpc::Attestation`]s replicas sign for
//!   clients, in the canonical encoding of `quire-chain` (docs/chain-format.md).
//! - [`frame`]: length-prefixed frames on QUIC streams, with a size cap.
//! - [`tls`]: self-signed certificates whose key is the replica's ed25519 key, pinned by clients
//!   to the key the genesis names, and the QUIC configurations built on them.

pub mod frame;
pub mod rpc;
pub mod tls;

pub use frame::{FRAME_BYTES_MAX, FrameError, read_frame, write_frame};
pub use tls::{
    ALPN, SERVER_NAME, TlsError, client_config, peer_replica, replica_client_config, server_config,
};
