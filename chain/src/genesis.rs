//! Genesis: the validators, the initial balances, the protocol rules every replica must share,
//! and the chain id (the hash of all three).
//!
//! A genesis file is TOML, for people:
//!
//! ```toml
//! chain_name = "quire-local"
//! max_faulty = 1            # optional; defaults to ⌊(n−1)/3⌋
//! [protocol]                # optional; these are the defaults
//! consensus = "pbft"
//! batch_txs_max = 512       # most transactions in one block
//! raw_payloads = false      # may unsigned, unexecuted payloads be ordered (benchmarks only)
//! checkpoint_interval = 32  # K: a checkpoint every K sequence numbers
//! log_window = 128          # L: the watermark window (h, h + L], a multiple of K, at least 2K
//! rotation_blocks = 1024    # the primary rotates at the first checkpoint at or after every multiple (0: never)
//! [pow]                     # only with consensus = "pow" (optional then): see `pow::PowParams`
//! target_interval_ms = 1000
//! [[validators]]
//! id = 0
//! public_key = "…64 hex digits…"
//! address = "127.0.0.1:7100"
//! [[accounts]]
//! address = "q1…"
//! balance = 1000000
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::block::{BATCH_TXS_MAX, Block, Header};
use crate::codec;
use crate::hash::{Hash, tags};
use crate::keys::{Address, PublicKey};
use crate::ledger::{Account, Ledger};
use crate::merkle;
use crate::pow::PowParams;
use crate::validators::{Validator, ValidatorSet, ValidatorSetError};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GenesisError {
    #[error("genesis file {0}: {1}")]
    Io(String, String),
    #[error("genesis is not valid TOML: {0}")]
    Syntax(String),
    #[error("genesis validator {id}: bad public key")]
    BadValidatorKey { id: u32 },
    #[error("genesis account {index}: {reason}")]
    BadAccount { index: usize, reason: String },
    #[error("genesis: {0}")]
    Validators(#[from] ValidatorSetError),
    #[error("genesis: total supply exceeds 2^64 - 1")]
    SupplyOverflow,
    #[error("genesis: chain_name must be 1 to 64 characters")]
    BadName,
    #[error("genesis [protocol]: {0}")]
    BadProtocol(String),
}

/// How the network decides blocks.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusMode {
    /// Castro & Liskov's PBFT: every block carries a commit certificate of 2f+1 validators.
    #[default]
    Pbft,
    /// Proof of work: the chain with the most cumulative work; final at k confirmations.
    Pow,
}

impl ConsensusMode {
    pub fn name(&self) -> &'static str {
        match self {
            ConsensusMode::Pbft => "pbft",
            ConsensusMode::Pow => "pow",
        }
    }

    fn code(&self) -> u8 {
        match self {
            ConsensusMode::Pbft => 0,
            ConsensusMode::Pow => 1,
        }
    }
}

/// The rules every replica of a network must apply identically. They live in the genesis, so
/// the chain id covers them and no replica can be configured out of step; node configs hold only
/// local choices.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Protocol {
    pub consensus: ConsensusMode,
    /// Most transactions in one block. A primary may propose smaller batches (a local choice);
    /// a larger one is refused by every replica.
    pub batch_txs_max: u32,
    /// Whether raw payloads (ordered, not executed: the benchmark workload) may enter a block.
    /// When false they are refused at every entry point: client RPC, forwarded transactions,
    /// proposals and blocks served in state transfer.
    pub raw_payloads: bool,
    /// K: a checkpoint every K sequence numbers.
    pub checkpoint_interval: u64,
    /// L: the watermark window `(h, h + L]`; a multiple of K and at least 2K.
    pub log_window: u64,
    /// Every this many blocks, every replica moves to the next view (a scheduled view change,
    /// PBFT.md trap 11): a replica that changed views alone is back within this many blocks, and
    /// no primary keeps the role forever. 0 turns it off.
    pub rotation_blocks: u64,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            consensus: ConsensusMode::Pbft,
            batch_txs_max: 512,
            raw_payloads: false,
            checkpoint_interval: 32,
            log_window: 128,
            rotation_blocks: 1024,
        }
    }
}

impl Protocol {
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |why: String| Err(GenesisError::BadProtocol(why));
        if self.batch_txs_max == 0 || self.batch_txs_max as usize > BATCH_TXS_MAX {
            return bad(format!(
                "batch_txs_max must be 1..={BATCH_TXS_MAX}, got {}",
                self.batch_txs_max
            ));
        }
        if self.checkpoint_interval == 0 {
            return bad("checkpoint_interval must be positive".into());
        }
        if !self.log_window.is_multiple_of(self.checkpoint_interval)
            || self.log_window < 2 * self.checkpoint_interval
        {
            return bad(format!(
                "log_window ({}) must be a multiple of checkpoint_interval ({}) and at least twice it",
                self.log_window, self.checkpoint_interval
            ));
        }
        Ok(())
    }

    /// The bytes the chain id covers (docs/chain-format.md §10).
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.consensus.code());
        codec::put_u32(out, self.batch_txs_max);
        codec::put_bool(out, self.raw_payloads);
        codec::put_u64(out, self.checkpoint_interval);
        codec::put_u64(out, self.log_window);
        codec::put_u64(out, self.rotation_blocks);
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    pub chain_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_faulty: Option<u32>,
    #[serde(default)]
    pub protocol: Protocol,
    /// The proof-of-work rules; only (and optionally) when `protocol.consensus` is `pow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowParams>,
    pub validators: Vec<ValidatorEntry>,
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    pub id: u32,
    pub public_key: String,
    pub address: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    pub address: String,
    pub balance: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    pub chain_name: String,
    pub protocol: Protocol,
    /// Present exactly when `protocol.consensus` is [`ConsensusMode::Pow`].
    pub pow: Option<PowParams>,
    pub validators: ValidatorSet,
    /// Sorted by address, no duplicates.
    pub accounts: Vec<(Address, Account)>,
    chain_id: Hash,
}

impl Genesis {
    /// A genesis with the default protocol rules.
    pub fn new(
        chain_name: String,
        validators: ValidatorSet,
        balances: Vec<(Address, u64)>,
    ) -> Result<Genesis, GenesisError> {
        Self::with_protocol(chain_name, Protocol::default(), validators, balances)
    }

    /// A genesis with these protocol rules (and the default proof-of-work rules if the mode is
    /// proof of work).
    pub fn with_protocol(
        chain_name: String,
        protocol: Protocol,
        validators: ValidatorSet,
        balances: Vec<(Address, u64)>,
    ) -> Result<Genesis, GenesisError> {
        let pow = (protocol.consensus == ConsensusMode::Pow).then(PowParams::default);
        Self::with_rules(chain_name, protocol, pow, validators, balances)
    }

    /// A genesis with these protocol and proof-of-work rules; `pow` must be given exactly when
    /// the mode is proof of work.
    pub fn with_rules(
        chain_name: String,
        protocol: Protocol,
        pow: Option<PowParams>,
        validators: ValidatorSet,
        mut balances: Vec<(Address, u64)>,
    ) -> Result<Genesis, GenesisError> {
        match (protocol.consensus, &pow) {
            (ConsensusMode::Pow, None) => {
                return Err(GenesisError::BadProtocol(
                    "consensus = \"pow\" needs proof-of-work rules".into(),
                ));
            }
            (ConsensusMode::Pbft, Some(_)) => {
                return Err(GenesisError::BadProtocol(
                    "a [pow] section needs consensus = \"pow\"".into(),
                ));
            }
            (_, Some(p)) => p
                .validate()
                .map_err(|why| GenesisError::BadProtocol(format!("[pow] {why}")))?,
            _ => {}
        }
        if chain_name.is_empty() || chain_name.len() > 64 {
            return Err(GenesisError::BadName);
        }
        protocol.validate()?;
        balances.sort();
        for (index, pair) in balances.windows(2).enumerate() {
            if pair[0].0 == pair[1].0 {
                return Err(GenesisError::BadAccount {
                    index: index + 1,
                    reason: format!("{} appears twice", pair[0].0),
                });
            }
        }
        balances
            .iter()
            .try_fold(0u64, |sum, (_, b)| sum.checked_add(*b))
            .ok_or(GenesisError::SupplyOverflow)?;
        let accounts: Vec<(Address, Account)> = balances
            .into_iter()
            .map(|(a, balance)| (a, Account { balance, nonce: 0 }))
            .collect();
        let chain_id =
            Self::compute_chain_id(&chain_name, &protocol, pow.as_ref(), &validators, &accounts);
        Ok(Genesis {
            chain_name,
            protocol,
            pow,
            validators,
            accounts,
            chain_id,
        })
    }

    fn compute_chain_id(
        chain_name: &str,
        protocol: &Protocol,
        pow: Option<&PowParams>,
        validators: &ValidatorSet,
        accounts: &[(Address, Account)],
    ) -> Hash {
        let mut out = Vec::new();
        codec::put_bytes(&mut out, chain_name.as_bytes());
        protocol.encode(&mut out);
        // Only a proof-of-work genesis has these bytes, so PBFT chain ids are unchanged.
        if let Some(pow) = pow {
            pow.encode(&mut out);
        }
        codec::put_u32(&mut out, validators.f() as u32);
        codec::put_u32(&mut out, validators.n() as u32);
        for v in validators.iter() {
            codec::put_u32(&mut out, v.id);
            out.extend_from_slice(&v.key.to_bytes());
            codec::put_bytes(&mut out, v.address.as_bytes());
        }
        codec::put_u32(&mut out, accounts.len() as u32);
        for (address, account) in accounts {
            out.extend_from_slice(&address.0);
            codec::put_u64(&mut out, account.balance);
        }
        Hash::tagged(tags::GENESIS, &[&out])
    }

    /// The chain id: every signature on this network covers it.
    pub fn chain_id(&self) -> Hash {
        self.chain_id
    }

    pub fn from_file(file: GenesisFile) -> Result<Genesis, GenesisError> {
        let mut validators = Vec::new();
        for v in &file.validators {
            let key = PublicKey::from_hex(&v.public_key)
                .map_err(|_| GenesisError::BadValidatorKey { id: v.id })?;
            validators.push(Validator {
                id: v.id,
                key,
                address: v.address.clone(),
            });
        }
        let validators = ValidatorSet::new(validators, file.max_faulty.map(|f| f as usize))?;
        let mut balances = Vec::new();
        for (index, a) in file.accounts.iter().enumerate() {
            let address = Address::parse(&a.address).map_err(|e| GenesisError::BadAccount {
                index,
                reason: e.to_string(),
            })?;
            balances.push((address, a.balance));
        }
        let pow = match (file.protocol.consensus, file.pow) {
            (ConsensusMode::Pow, None) => Some(PowParams::default()),
            (_, pow) => pow,
        };
        Genesis::with_rules(file.chain_name, file.protocol, pow, validators, balances)
    }

    pub fn to_file(&self) -> GenesisFile {
        GenesisFile {
            chain_name: self.chain_name.clone(),
            max_faulty: Some(self.validators.f() as u32),
            protocol: self.protocol,
            pow: self.pow,
            validators: self
                .validators
                .iter()
                .map(|v| ValidatorEntry {
                    id: v.id,
                    public_key: v.key.to_hex(),
                    address: v.address.clone(),
                })
                .collect(),
            accounts: self
                .accounts
                .iter()
                .map(|(a, acct)| AccountEntry {
                    address: a.to_string(),
                    balance: acct.balance,
                })
                .collect(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let file: GenesisFile =
            toml::from_str(text).map_err(|e| GenesisError::Syntax(e.to_string()))?;
        Genesis::from_file(file)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_file()).unwrap_or_default()
    }

    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GenesisError::Io(path.display().to_string(), e.to_string()))?;
        Genesis::from_toml(&text)
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.chain_id, self.accounts.iter().copied())
    }

    pub fn total_supply(&self) -> u128 {
        self.accounts.iter().map(|(_, a)| a.balance as u128).sum()
    }

    /// Block 0: no transactions, the initial state, no certificate (the genesis is trusted).
    /// Under proof of work its `parent_hash` is the chain id, so every block of the chain is
    /// bound to its rules from block 1 on (a PBFT block carries certificates for that).
    pub fn block(&self) -> Block {
        Block {
            header: Header {
                height: 0,
                parent_hash: if self.pow.is_some() {
                    self.chain_id
                } else {
                    Hash::ZERO
                },
                tx_root: merkle::root(&[]),
                state_root: self.ledger().state_root(),
                outcomes_root: merkle::root(&[]),
                view: 0,
                proposer: 0,
                timestamp_ms: 0,
                pow: None,
            },
            txs: Vec::new(),
            certificate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestNet;

    #[test]
    fn genesis_round_trips_through_toml_with_the_same_chain_id() {
        let net = TestNet::new(4, 5);
        let text = net.genesis.to_toml();
        let again = Genesis::from_toml(&text).unwrap();
        assert_eq!(again.chain_id(), net.genesis.chain_id());
        assert_eq!(again, net.genesis);
    }

    #[test]
    fn bad_genesis_files_give_clear_errors() {
        let net = TestNet::new(4, 2);
        let good = net.genesis.to_toml();
        assert!(matches!(
            Genesis::from_toml("nonsense ="),
            Err(GenesisError::Syntax(_))
        ));
        let bad_key = good.replacen("public_key = \"", "public_key = \"00", 1);
        assert!(matches!(
            Genesis::from_toml(&bad_key),
            Err(GenesisError::BadValidatorKey { id: 0 })
        ));
        let too_many_faults = good.replace("max_faulty = 1", "max_faulty = 2");
        assert!(matches!(
            Genesis::from_toml(&too_many_faults),
            Err(GenesisError::Validators(
                ValidatorSetError::TooFewReplicas { n: 4, f: 2 }
            ))
        ));
        let bad_address = good.replacen("address = \"q1", "address = \"q2", 1);
        assert!(matches!(
            Genesis::from_toml(&bad_address),
            Err(GenesisError::BadAccount { .. })
        ));
    }

    #[test]
    fn the_chain_id_changes_with_any_field() {
        let net = TestNet::new(4, 2);
        let mut file = net.genesis.to_file();
        file.accounts[0].balance += 1;
        assert_ne!(
            Genesis::from_file(file).unwrap().chain_id(),
            net.genesis.chain_id()
        );
        let mut file = net.genesis.to_file();
        file.chain_name.push('x');
        assert_ne!(
            Genesis::from_file(file).unwrap().chain_id(),
            net.genesis.chain_id()
        );
        // Every protocol rule is covered: two networks that differ in one cannot share votes.
        let changes: [fn(&mut Protocol); 6] = [
            |p| p.consensus = ConsensusMode::Pow,
            |p| p.batch_txs_max += 1,
            |p| p.raw_payloads = !p.raw_payloads,
            |p| {
                p.checkpoint_interval *= 2;
                p.log_window *= 2;
            },
            |p| p.log_window += p.checkpoint_interval,
            |p| p.rotation_blocks += 1,
        ];
        for change in changes {
            let mut file = net.genesis.to_file();
            change(&mut file.protocol);
            assert_ne!(
                Genesis::from_file(file).unwrap().chain_id(),
                net.genesis.chain_id()
            );
        }
    }

    #[test]
    fn protocol_rules_are_checked() {
        let net = TestNet::new(4, 2);
        let text = net.genesis.to_toml();
        for (rule, bad) in [
            ("batch_txs_max = 512", "batch_txs_max = 0"),
            ("batch_txs_max = 512", "batch_txs_max = 70000"),
            ("log_window = 128", "log_window = 100"),
            ("log_window = 128", "log_window = 32"),
            ("checkpoint_interval = 32", "checkpoint_interval = 0"),
        ] {
            assert!(text.contains(rule), "{text}");
            let broken = text.replace(rule, bad);
            assert!(
                matches!(
                    Genesis::from_toml(&broken),
                    Err(GenesisError::BadProtocol(_))
                ),
                "{bad} was accepted"
            );
        }
        let unknown = text.replace(
            "raw_payloads = false",
            "raw_payloads = false\nfrobnicate = 1",
        );
        assert!(matches!(
            Genesis::from_toml(&unknown),
            Err(GenesisError::Syntax(_))
        ));
    }
}
