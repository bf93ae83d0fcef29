//! The replica's configuration file (TOML).
//!
//! ```toml
//! id = 0
//! genesis = "../../genesis.toml"       # paths are relative to this file
//! key = "key.toml"
//! data_dir = "data"
//! listen = "127.0.0.1:7100"            # QUIC: replicas and clients
//! http = "127.0.0.1:7200"              # Prometheus metrics; the admin API when enabled
//! admin = false                        # loopback-only admin API (testnets turn it on)
//! tick_ms = 10
//! worker_threads = 1
//! verify_threads = 1                   # threads checking replica messages off the driver
//! peer_signatures_per_s = 30000        # most signature checks per second a peer can cost us
//! log = "info"
//!
//! [params]                             # optional; local consensus parameters (see Params)
//! batch_txs_max = 512                  # this replica's own batches (the genesis caps them)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use quire_consensus::Params;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub id: u32,
    pub genesis: String,
    pub key: String,
    pub data_dir: String,
    pub listen: String,
    pub http: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    #[serde(default = "default_workers")]
    pub worker_threads: usize,
    #[serde(default = "default_workers")]
    pub verify_threads: usize,
    #[serde(default = "default_peer_signatures")]
    pub peer_signatures_per_s: u64,
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default)]
    pub params: ParamsFile,
    /// Proof-of-work settings (used only when the genesis says `consensus = "pow"`).
    #[serde(default)]
    pub pow: PowFile,
}

/// A proof-of-work replica's own settings.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct PowFile {
    /// The miner's rate: this replica's share of the hash power is a setting.
    pub hashes_per_s: u64,
    /// Undo records kept below the head; a deeper reorg is refused and reported.
    pub undo_depth: u64,
}

impl Default for PowFile {
    fn default() -> Self {
        PowFile {
            hashes_per_s: quire_chain::pow::params::DEFAULT_HASHES_PER_S,
            undo_depth: quire_chain::pow::Limits::default().undo_depth,
        }
    }
}

fn default_tick_ms() -> u64 {
    10
}
fn default_workers() -> usize {
    1
}
fn default_peer_signatures() -> u64 {
    crate::verify_pool::Budget::default().signatures_per_s
}
fn default_log() -> String {
    "info".into()
}

/// The consensus parameters a replica may set for itself, optional (defaults from
/// [`Params::default`]).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ParamsFile {
    pub batch_txs_max: Option<usize>,
    pub batch_timeout_ticks: Option<u64>,
    pub batch_timeout_max_ticks: Option<u64>,
    pub pipeline_depth: Option<u64>,
    pub eager_depth: Option<u64>,
    pub view_timeout_ticks: Option<u64>,
    pub view_timeout_max_ticks: Option<u64>,
    pub status_interval_ticks: Option<u64>,
    pub retransmit_ticks: Option<u64>,
    pub fetch_timeout_ticks: Option<u64>,
    pub mempool_max: Option<usize>,
}

impl ParamsFile {
    pub fn resolve(&self) -> Params {
        let d = Params::default();
        let floor = self.batch_timeout_ticks.unwrap_or(d.batch_timeout_ticks);
        Params {
            batch_txs_max: self.batch_txs_max.unwrap_or(d.batch_txs_max),
            batch_timeout_ticks: floor,
            // A floor set above the default ceiling, with no ceiling given, is a fixed timeout.
            batch_timeout_max_ticks: self
                .batch_timeout_max_ticks
                .unwrap_or(d.batch_timeout_max_ticks.max(floor)),
            pipeline_depth: self.pipeline_depth.unwrap_or(d.pipeline_depth),
            eager_depth: self.eager_depth.unwrap_or(d.eager_depth),
            view_timeout_ticks: self.view_timeout_ticks.unwrap_or(d.view_timeout_ticks),
            view_timeout_max_ticks: self
                .view_timeout_max_ticks
                .unwrap_or(d.view_timeout_max_ticks),
            status_interval_ticks: self
                .status_interval_ticks
                .unwrap_or(d.status_interval_ticks),
            retransmit_ticks: self.retransmit_ticks.unwrap_or(d.retransmit_ticks),
            fetch_timeout_ticks: self.fetch_timeout_ticks.unwrap_or(d.fetch_timeout_ticks),
            mempool_max: self.mempool_max.unwrap_or(d.mempool_max),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {0}: {1}")]
    Read(String, String),
    #[error("config {0} is not valid: {1}")]
    Invalid(String, String),
}

/// A loaded configuration with paths resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: u32,
    pub genesis: PathBuf,
    pub key: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub admin: bool,
    pub tick_ms: u64,
    pub worker_threads: usize,
    pub verify_threads: usize,
    pub peer_signatures_per_s: u64,
    pub log: String,
    pub params: Params,
    pub pow: PowFile,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(shown.clone(), e.to_string()))?;
        let file: ConfigFile = toml::from_str(&text)
            .map_err(|e| ConfigError::Invalid(shown.clone(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_file(file, base).map_err(|why| ConfigError::Invalid(shown, why))
    }

    pub fn from_file(file: ConfigFile, base: &Path) -> Result<Config, String> {
        let addr = |s: &str, what: &str| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("{what} '{s}' is not an IP address and port"))
        };
        let params = file.params.resolve();
        if file.tick_ms == 0 || file.tick_ms > 1000 {
            return Err(format!("tick_ms must be 1..=1000, got {}", file.tick_ms));
        }
        if file.pow.hashes_per_s > 100_000_000 {
            return Err("pow.hashes_per_s must be at most 100000000".into());
        }
        if file.pow.undo_depth == 0 {
            return Err("pow.undo_depth must be positive".into());
        }
        if file.worker_threads == 0 || file.worker_threads > 64 {
            return Err("worker_threads must be 1..=64".into());
        }
        if file.verify_threads == 0 || file.verify_threads > 64 {
            return Err("verify_threads must be 1..=64".into());
        }
        if file.peer_signatures_per_s == 0 {
            return Err("peer_signatures_per_s must be positive".into());
        }
        Ok(Config {
            id: file.id,
            genesis: base.join(&file.genesis),
            key: base.join(&file.key),
            data_dir: base.join(&file.data_dir),
            listen: addr(&file.listen, "listen")?,
            http: addr(&file.http, "http")?,
            admin: file.admin,
            tick_ms: file.tick_ms,
            worker_threads: file.worker_threads,
            verify_threads: file.verify_threads,
            peer_signatures_per_s: file.peer_signatures_per_s,
            log: file.log,
            params,
            pow: file.pow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_timeout_floor_alone_above_the_default_ceiling_is_a_fixed_timeout() {
        let file = ParamsFile {
            batch_timeout_ticks: Some(20),
            ..ParamsFile::default()
        };
        let params = file.resolve();
        assert_eq!(
            (params.batch_timeout_ticks, params.batch_timeout_max_ticks),
            (20, 20)
        );
        let default = ParamsFile::default().resolve();
        assert_eq!(
            (default.batch_timeout_ticks, default.batch_timeout_max_ticks),
            (1, 10),
            "adaptive between one tick and ten by default"
        );
    }
}
