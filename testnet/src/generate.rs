//! Generating a testnet: keys, genesis, replica configs, funded accounts and the network file.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use anyhow::{Context, Result, bail};
use quire_chain::genesis::{ConsensusMode, Genesis, Protocol};
use quire_chain::keys::Keypair;
use quire_chain::pow::PowParams;
use quire_chain::validators::{Validator, ValidatorSet};
use quire_client::network::{AccountEntry, NetworkFile, ReplicaEntry};
use quire_node::config::{ConfigFile, ParamsFile, PowFile};

use crate::layout::Layout;

#[derive(Clone, Debug)]
pub struct Plan {
    pub nodes: usize,
    pub accounts: usize,
    pub balance: u64,
    /// First port to try (QUIC ports from here, HTTP ports from here + 100); 0 picks free ports.
    pub base_port: u16,
    pub tick_ms: u64,
    pub worker_threads: usize,
    /// Threads verifying replica messages, per replica.
    pub verify_threads: usize,
    /// Each replica's budget of signature checks per second per peer.
    pub peer_signatures_per_s: u64,
    /// The network's rules, written into the genesis.
    pub protocol: Protocol,
    /// Every replica's local parameters.
    pub params: ParamsFile,
    /// Proof of work: the genesis's rules (`protocol.consensus` must be `pow`); derived from
    /// `pow_node` and the interval when `None`.
    pub pow: Option<PowParams>,
    /// Proof of work: every replica's miner rate and undo depth.
    pub pow_node: PowFile,
    pub log: String,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            nodes: 4,
            accounts: 8,
            balance: 1_000_000_000,
            base_port: 7100,
            tick_ms: 10,
            worker_threads: 1,
            verify_threads: 1,
            peer_signatures_per_s: quire_node::verify_pool::Budget::default().signatures_per_s,
            protocol: Protocol::default(),
            params: ParamsFile::default(),
            pow: None,
            pow_node: PowFile::default(),
            log: "info".into(),
        }
    }
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `count` ports free for `free`, from `base` upwards (or, when base is 0, anywhere outside the
/// kernel's ephemeral range, at random).
fn ports(count: usize, base: u16, free: fn(u16) -> bool) -> Result<Vec<u16>> {
    let mut out = Vec::new();
    if base == 0 {
        // Not what the OS hands out for port 0: that range is also where every outgoing
        // connection (the testnet's own HTTP polls, other testnets' clients) takes its local
        // port, so a port picked there and released can be taken before the replica binds it.
        // Random, so that testnets generated at the same moment rarely pick the same one.
        let (low, high) = outside_ephemeral();
        let span = u64::from(high - low);
        let mut rng = quire_sim::rng::Rng::new(seed());
        let mut tries = 0u32;
        while out.len() < count {
            tries += 1;
            if tries > 10_000 {
                bail!("no free port in {low}..{high}");
            }
            let p = low + (rng.below(span) as u16);
            if !out.contains(&p) && free(p) {
                out.push(p);
            }
        }
        return Ok(out);
    }
    let mut p = base;
    while out.len() < count {
        if free(p) {
            out.push(p);
        }
        p = p.checked_add(1).context("ran out of ports")?;
    }
    Ok(out)
}

/// The larger span of ports outside `/proc/sys/net/ipv4/ip_local_port_range` (Linux's default
/// 32768–60999 leaves 1024–32767).
fn outside_ephemeral() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let below = (10_000u16, range.0.max(10_001));
    let above = (range.1.saturating_add(1).min(65_534), 65_535u16);
    if below.1 - below.0 >= above.1 - above.0 {
        below
    } else {
        above
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a fresh testnet into `layout.dir` (which must hold no running testnet).
pub fn generate(layout: &Layout, plan: &Plan) -> Result<()> {
    if plan.nodes == 0 || plan.nodes > 64 {
        bail!("--nodes must be between 1 and 64");
    }
    if plan.accounts == 0 || plan.accounts > 100_000 {
        bail!("--accounts must be between 1 and 100000");
    }
    for sub in [layout.replicas(), layout.accounts()] {
        if sub.exists() {
            std::fs::remove_dir_all(&sub)
                .with_context(|| format!("cannot clear {}", sub.display()))?;
        }
    }
    std::fs::create_dir_all(layout.accounts())?;
    let quic = ports(plan.nodes, plan.base_port, udp_free)?;
    let http_base = if plan.base_port == 0 {
        0
    } else {
        plan.base_port.saturating_add(100)
    };
    let http = ports(plan.nodes, http_base, tcp_free)?;
    let mut validators = Vec::new();
    for i in 0..plan.nodes as u32 {
        std::fs::create_dir_all(layout.replica(i))?;
        let key = Keypair::generate();
        key.write_file(&layout.key(i))?;
        validators.push(Validator {
            id: i,
            key: key.public(),
            address: format!("127.0.0.1:{}", quic[i as usize]),
        });
    }
    let set = ValidatorSet::new(validators, None)?;
    let mut accounts = Vec::new();
    let mut balances = Vec::new();
    for a in 0..plan.accounts {
        let key = Keypair::generate();
        key.write_file(&layout.account(a))?;
        balances.push((key.address(), plan.balance));
        accounts.push(AccountEntry {
            name: format!("account-{a}"),
            key: format!("accounts/account-{a}.toml"),
            address: key.address().to_string(),
        });
    }
    let pow = match (plan.protocol.consensus, plan.pow) {
        (ConsensusMode::Pow, None) => Some(PowParams::for_hash_rate(
            plan.pow_node.hashes_per_s * plan.nodes as u64,
            PowParams::default().target_interval_ms,
        )),
        (ConsensusMode::Pow, Some(p)) => Some(p),
        (ConsensusMode::Pbft, _) => None,
    };
    let genesis = Genesis::with_rules("quire-local".into(), plan.protocol, pow, set, balances)?;
    write(&layout.genesis(), &genesis.to_toml())?;
    let mut replicas = Vec::new();
    for i in 0..plan.nodes as u32 {
        let listen: SocketAddr = format!("127.0.0.1:{}", quic[i as usize]).parse()?;
        let http_addr: SocketAddr = format!("127.0.0.1:{}", http[i as usize]).parse()?;
        let config = ConfigFile {
            id: i,
            genesis: "../../genesis.toml".into(),
            key: "key.toml".into(),
            data_dir: "data".into(),
            listen: listen.to_string(),
            http: http_addr.to_string(),
            admin: true,
            tick_ms: plan.tick_ms,
            worker_threads: plan.worker_threads,
            verify_threads: plan.verify_threads,
            peer_signatures_per_s: plan.peer_signatures_per_s,
            log: plan.log.clone(),
            params: plan.params.clone(),
            pow: plan.pow_node,
        };
        write(&layout.config(i), &toml::to_string_pretty(&config)?)?;
        replicas.push(ReplicaEntry {
            id: i,
            public_key: genesis
                .validators
                .key(i)
                .map(|k| k.to_hex())
                .unwrap_or_default(),
            quic: listen.to_string(),
            http: http_addr.to_string(),
            pid_file: Some(format!("replicas/{i}/pid")),
        });
    }
    let network = NetworkFile {
        chain_id: genesis.chain_id().to_hex(),
        genesis: "genesis.toml".into(),
        replicas,
        accounts,
    };
    write(&layout.network(), &toml::to_string_pretty(&network)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports picked for a testnet are distinct, free when picked, and outside the range the
    /// kernel hands out to outgoing connections.
    #[test]
    fn picked_ports_are_distinct_and_not_ephemeral() {
        let (low, high) = outside_ephemeral();
        assert!(low >= 1024 && low < high, "{low}..{high}");
        let picked = ports(16, 0, tcp_free).unwrap();
        let mut unique = picked.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 16);
        assert!(picked.iter().all(|p| (low..high).contains(p)), "{picked:?}");
        let taken = TcpListener::bind(("127.0.0.1", picked[0])).unwrap();
        assert!(!tcp_free(picked[0]));
        drop(taken);
    }
}
