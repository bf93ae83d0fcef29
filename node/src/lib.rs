//! `quire-node`: a Quire replica. The PBFT core (`quire-consensus`) decides; this crate runs it:
//! the QUIC [`transport`], the [`driver`] thread that persists before it sends, the client
//! [`rpc_server`] (the protocol itself, [`rpc`], is the `quire-wire` crate the client shares),
//! Prometheus [`metrics`], the loopback [`http`] admin API, and the transport half of the
//! `slowloris` behaviour ([`slowloris`]).

pub mod block_server;
pub mod config;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod node;
pub use quire_wire::rpc;
pub mod rpc_server;
pub mod slowloris;
pub mod transport;
pub mod verify_pool;
