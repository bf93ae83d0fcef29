//! `quire-node`: a Quire replica. The PBFT core (`quire-consensus`) decides; this crate runs it:
//! the QUIC [`transport`], the [`driver`] thread that persists before it sends, client [`rpc`]
//! and its [`rpc_server`], Prometheus [`metrics`] and the loopback [`http`] admin API.

pub mod config;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod node;
pub mod rpc;
pub mod rpc_server;
pub mod transport;
