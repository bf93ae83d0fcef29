//! Where a testnet keeps its files, under one directory (default `./testnet`):
//!
//! ```text
//! DIR/network.toml            what clients need (quire --network DIR/network.toml)
//! DIR/genesis.toml            validators and initial balances
//! DIR/accounts/account-N.toml funded account keys
//! DIR/replicas/N/config.toml  replica N's configuration
//! DIR/replicas/N/key.toml     replica N's secret key
//! DIR/replicas/N/data/        replica N's RocksDB
//! DIR/replicas/N/node.log     replica N's log
//! DIR/replicas/N/pid          replica N's process id while it runs
//! ```

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn network(&self) -> PathBuf {
        self.dir.join("network.toml")
    }
    pub fn genesis(&self) -> PathBuf {
        self.dir.join("genesis.toml")
    }
    pub fn accounts(&self) -> PathBuf {
        self.dir.join("accounts")
    }
    pub fn account(&self, i: usize) -> PathBuf {
        self.accounts().join(format!("account-{i}.toml"))
    }
    pub fn replicas(&self) -> PathBuf {
        self.dir.join("replicas")
    }
    pub fn replica(&self, i: u32) -> PathBuf {
        self.replicas().join(i.to_string())
    }
    pub fn config(&self, i: u32) -> PathBuf {
        self.replica(i).join("config.toml")
    }
    pub fn key(&self, i: u32) -> PathBuf {
        self.replica(i).join("key.toml")
    }
    pub fn data(&self, i: u32) -> PathBuf {
        self.replica(i).join("data")
    }
    pub fn log(&self, i: u32) -> PathBuf {
        self.replica(i).join("node.log")
    }
    pub fn pid(&self, i: u32) -> PathBuf {
        self.replica(i).join("pid")
    }
    pub fn reports(&self) -> PathBuf {
        self.dir.join("reports")
    }
    pub fn bench(&self) -> PathBuf {
        self.dir.join("bench")
    }
    /// The dashboard's pid, address (`http://127.0.0.1:PORT/`) and log.
    pub fn dashboard_pid(&self) -> PathBuf {
        self.dir.join("dashboard.pid")
    }
    pub fn dashboard_url(&self) -> PathBuf {
        self.dir.join("dashboard.url")
    }
    pub fn dashboard_log(&self) -> PathBuf {
        self.dir.join("dashboard.log")
    }
    /// Prometheus's configuration, data, pid and log.
    pub fn prometheus(&self) -> PathBuf {
        self.dir.join("prometheus")
    }
}
