//! `quire-node`: a Quire replica. The PBFT core (`quire-consensus`) decides; this crate runs it:
//! the QUIC [`transport`], the [`driver`] thread that persists before it sends, the client
//! [`rpc_server`] (the protocol itself, [`rpc`], is the `quire-wire` crate the client shares),
//! Prometheus [`metrics`], the loopback [`http`] admin API, and the transport half of the
//! `slowloris` behaviour ([`slowloris`]). Under proof of work, [`pow`] replaces the PBFT core
//! and driver with a miner and a chain that follows the most work.

pub mod block_server;
pub mod config;
pub mod drain;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod node;
pub mod pool_room;
pub mod pow;
pub use quire_wire::rpc;
pub mod rpc_server;
pub mod slowloris;
pub mod transport;
pub mod verify_pool;
