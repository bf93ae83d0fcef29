//! PBFT (Castro & Liskov, OSDI 1999) as a pure, deterministic state machine.
//!
//! A [`Replica`] takes one [`Input`] at a time — a [`Verified`] peer message, client
//! transactions, or a tick — and returns [`Output`]s: consensus-log entries to persist, blocks to
//! commit to the chain store, messages to send. It owns no socket, clock, thread or database, so
//! the same code runs inside `quire-node` and inside the seeded simulator of `quire-testnet sim`.
//!
//! The driver loop, in full:
//!
//! ```text
//! loop {
//!     let input = next_event();              // a frame (verified with Verifier), a request, a tick
//!     let outputs = actor.step(input);
//!     let committed = exec::carry_out(&actor.replica, &store, &mut outbox, outputs)?;
//!     // carry_out wrote the step durably (fsync), then sent its votes; now act on `committed`
//! }
//! ```
//!
//! [`exec`] is the only place that orders writes and sends; the node's driver and the simulator
//! (`quire-sim`) both go through it.
//!
//! Byzantine behaviours ([`byzantine`]) are rewrites of a replica's inputs and outputs around
//! `step`, shared by the simulator and the node.

pub mod batch_timeout;
pub mod byzantine;
mod change;
pub mod checkpoint;
pub mod config;
pub mod exec;
pub mod known;
pub mod log;
pub mod mempool;
pub mod message;
mod normal;
pub mod persist;
pub mod prefilter;
pub mod replica;
pub mod stats;
pub mod transfer;
pub mod verify;
pub mod view_change;
pub mod view_changes;

pub use byzantine::{Actor, Behaviour, Pressure};
pub use config::Params;
pub use exec::{Outbox, carry_out};
pub use message::{Kind, Message};
pub use replica::{
    Admission, Divergence, Durable, Input, Output, PreparedNext, Replica, ReplicaError,
};
pub use stats::{Drop, Misbehaviour, Stats, ViewChangeCause};
pub use verify::{Reject, Verified, Verifier};
