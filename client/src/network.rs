//! The network file: everything a client needs to reach and check a network. `quire-testnet up`
//! writes it to `DIR/network.toml`; `quire` finds it through `--network`, then `$QUIRE_NETWORK`,
//! then `./testnet/network.toml`.
//!
//! ```toml
//! chain_id = "…64 hex digits…"   # must equal the hash of the genesis below
//! genesis = "genesis.toml"        # relative to this file
//!
//! [[replicas]]
//! id = 0
//! public_key = "…64 hex digits…"
//! quic = "127.0.0.1:7100"         # client RPC and replica traffic
//! http = "127.0.0.1:7200"         # metrics (and, on a testnet, the admin API)
//! pid_file = "replicas/0/pid"     # optional, relative; testnets only
//!
//! [[accounts]]
//! name = "account-0"
//! key = "accounts/account-0.toml" # relative; a secret key file
//! address = "q1…"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use quire_chain::{Genesis, Hash, PublicKey, ReplicaId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const ENV_NETWORK: &str = "QUIRE_NETWORK";
pub const DEFAULT_NETWORK: &str = "testnet/network.toml";

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    pub chain_id: String,
    pub genesis: String,
    pub replicas: Vec<ReplicaEntry>,
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEntry {
    pub id: ReplicaId,
    pub public_key: String,
    pub quic: String,
    pub http: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    pub name: String,
    pub key: String,
    pub address: String,
}

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error(
        "cannot read network file {0}: {1} (start a testnet with `quire-testnet up`, or pass --network PATH)"
    )]
    Read(String, String),
    #[error("network file {0} is not valid: {1}")]
    Invalid(String, String),
}

/// A loaded, checked network.
#[derive(Debug, Clone)]
pub struct Network {
    pub path: PathBuf,
    pub genesis: Genesis,
    pub replicas: Vec<Replica>,
    pub accounts: Vec<AccountEntry>,
}

#[derive(Debug, Clone)]
pub struct Replica {
    pub id: ReplicaId,
    pub key: PublicKey,
    pub quic: SocketAddr,
    pub http: SocketAddr,
    pub pid_file: Option<PathBuf>,
}

/// `--network`, else `$QUIRE_NETWORK`, else `./testnet/network.toml`.
pub fn resolve(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_NETWORK) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_NETWORK),
    }
}

impl Network {
    pub fn load(path: &Path) -> Result<Network, NetworkError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| NetworkError::Read(shown.clone(), e.to_string()))?;
        let file: NetworkFile = toml::from_str(&text)
            .map_err(|e| NetworkError::Invalid(shown.clone(), e.to_string()))?;
        Network::from_file(path, file)
    }

    pub fn from_file(path: &Path, file: NetworkFile) -> Result<Network, NetworkError> {
        let shown = path.display().to_string();
        let invalid = |why: String| NetworkError::Invalid(shown.clone(), why);
        let base = path.parent().unwrap_or(Path::new("."));
        let genesis =
            Genesis::load(&base.join(&file.genesis)).map_err(|e| invalid(e.to_string()))?;
        let chain_id =
            Hash::from_hex(&file.chain_id).map_err(|e| invalid(format!("chain_id: {e}")))?;
        if chain_id != genesis.chain_id() {
            return Err(invalid(format!(
                "chain_id {} does not match the genesis ({})",
                chain_id,
                genesis.chain_id()
            )));
        }
        let mut replicas = Vec::new();
        for r in &file.replicas {
            let key = PublicKey::from_hex(&r.public_key)
                .map_err(|_| invalid(format!("replica {}: bad public key", r.id)))?;
            if genesis.validators.key(r.id) != Some(&key) {
                return Err(invalid(format!(
                    "replica {}: its key is not validator {} of the genesis",
                    r.id, r.id
                )));
            }
            let parse = |s: &str, what: &str| {
                s.parse::<SocketAddr>().map_err(|_| {
                    invalid(format!(
                        "replica {}: {what} address '{s}' is not host:port",
                        r.id
                    ))
                })
            };
            replicas.push(Replica {
                id: r.id,
                key,
                quic: parse(&r.quic, "quic")?,
                http: parse(&r.http, "http")?,
                pid_file: r.pid_file.as_ref().map(|p| base.join(p)),
            });
        }
        if replicas.is_empty() {
            return Err(invalid("no replicas".into()));
        }
        let accounts = file
            .accounts
            .into_iter()
            .map(|mut a| {
                a.key = base.join(&a.key).display().to_string();
                a
            })
            .collect();
        Ok(Network {
            path: path.to_path_buf(),
            genesis,
            replicas,
            accounts,
        })
    }

    pub fn chain_id(&self) -> Hash {
        self.genesis.chain_id()
    }

    /// f+1: answers from this many distinct replicas include an honest one.
    pub fn weak_quorum(&self) -> usize {
        self.genesis.validators.weak_quorum()
    }
}
