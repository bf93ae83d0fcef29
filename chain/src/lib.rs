//! Quire's data model and storage.
//!
//! Keys and domain-separated signatures ([`keys`]), hashes ([`hash`]), the canonical encoding
//! ([`codec`]), transactions ([`tx`]), batches and blocks ([`block`]), quorum certificates
//! ([`cert`]), merkle proofs ([`merkle`], [`smt`]), the ledger state machine ([`ledger`]), the
//! genesis ([`genesis`]), the proof-of-work rules and chain selection ([`pow`]) and the chain store trait with its in-memory twin ([`store`]; the RocksDB
//! store is the `quire-rocks` crate). The byte-level format of everything signed or hashed is in
//! `docs/chain-format.md`.

pub mod block;
pub mod cert;
pub mod codec;
pub mod genesis;
pub mod hash;
pub mod keys;
pub mod ledger;
pub mod merkle;
pub mod pow;
pub mod sig;
pub mod smt;
pub mod store;
pub mod testkit;
pub mod tx;
pub mod validators;

pub use block::{Batch, Block, BlockRecord, Header};
pub use cert::{CheckpointCertificate, CommitCertificate};
pub use codec::{Decode, DecodeError, Encode};
pub use genesis::Genesis;
pub use hash::Hash;
pub use keys::{Address, Keypair, PublicKey, Signature};
pub use ledger::{Account, Ledger};
pub use tx::{RawPayload, SignedId, Transaction, Transfer, TxId};
pub use validators::{ReplicaId, ValidatorSet};
