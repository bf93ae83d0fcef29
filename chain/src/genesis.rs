//! Genesis: the validators, the initial balances, and the chain id (the hash of both).
//!
//! A genesis file is TOML, for people:
//!
//! ```toml
//! chain_name = "quire-local"
//! max_faulty = 1            # optional; defaults to ⌊(n−1)/3⌋
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

use crate::block::{Block, Header};
use crate::codec;
use crate::hash::{Hash, tags};
use crate::keys::{Address, PublicKey};
use crate::ledger::{Account, Ledger};
use crate::merkle;
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
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    pub chain_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_faulty: Option<u32>,
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
    pub validators: ValidatorSet,
    /// Sorted by address, no duplicates.
    pub accounts: Vec<(Address, Account)>,
    chain_id: Hash,
}

impl Genesis {
    pub fn new(
        chain_name: String,
        validators: ValidatorSet,
        mut balances: Vec<(Address, u64)>,
    ) -> Result<Genesis, GenesisError> {
        if chain_name.is_empty() || chain_name.len() > 64 {
            return Err(GenesisError::BadName);
        }
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
        let chain_id = Self::compute_chain_id(&chain_name, &validators, &accounts);
        Ok(Genesis {
            chain_name,
            validators,
            accounts,
            chain_id,
        })
    }

    fn compute_chain_id(
        chain_name: &str,
        validators: &ValidatorSet,
        accounts: &[(Address, Account)],
    ) -> Hash {
        let mut out = Vec::new();
        codec::put_bytes(&mut out, chain_name.as_bytes());
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
        Genesis::new(file.chain_name, validators, balances)
    }

    pub fn to_file(&self) -> GenesisFile {
        GenesisFile {
            chain_name: self.chain_name.clone(),
            max_faulty: Some(self.validators.f() as u32),
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
    pub fn block(&self) -> Block {
        Block {
            header: Header {
                height: 0,
                parent_hash: Hash::ZERO,
                tx_root: merkle::root(&[]),
                state_root: self.ledger().state_root(),
                view: 0,
                proposer: 0,
                timestamp_ms: 0,
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
    }
}
