//! The Quire client library: talks to replicas over QUIC, fails over between them, and believes
//! nothing it has not checked itself.
//!
//! Replicas may be Byzantine. A commit is accepted only with its commit certificate, merkle
//! proofs of the transaction and of its outcome, and f+1 validators' attestations of the header;
//! an account only with a proof against a header f+1 validators attest; see [`verify`]. Every
//! verified value carries that evidence, and [`export`] writes a block with it in a documented
//! encoding (docs/client-rpc.md). The `quire` CLI is a thin layer over [`Client`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use quire_client::{Client, Network};
//! let network = Network::load(std::path::Path::new("testnet/network.toml"))?;
//! let client = Client::new(network)?;
//! let address = quire_chain::Address::parse(&client.network().accounts[0].address)?;
//! let proven = client.account(address).await?;
//! println!("balance {} at height {}", proven.account.balance, proven.header.height);
//! # Ok(()) }
//! ```

pub mod chain_walk;
pub mod client;
pub mod conn;
pub mod error;
pub mod export;
pub mod health;
pub mod network;
pub mod pow;
pub mod verify;

#[cfg(test)]
mod testing;

pub use chain_walk::{ChainFault, ChainProblem};
pub use client::{
    ChainReport, Client, Decided, Options, PendingTransfer, PreparedTally, ReplicaStatus, SetAside,
    Submission, SubmitAnswer, TransferReceipt, TransferStep, TxReport, TxState,
};
pub use error::{CallError, ClientError, Fault, VerifyError};
pub use health::Health;
pub use network::Network;
pub use verify::{CertifiedBlock, CommittedTx, ProvenAccount, Verified, VouchedHeader};
