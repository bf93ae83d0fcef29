//! Operating a local testnet: start it, look at it, stop it, crash and restart replicas, and
//! inject faults through each replica's loopback admin API. Every perturbation is appended to
//! `DIR/events.log`, which `check` reads to know which replicas were ever faulty.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use quire_chain::keys::Keypair;
use quire_client::network::Network;
use quire_client::{Client, ReplicaStatus};
use quire_consensus::Behaviour;
use rustix::process::Signal;

use crate::generate::{self, Plan};
use crate::layout::Layout;
use crate::process;

pub struct Testnet {
    pub layout: Layout,
    pub network: Network,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Testnet {
    pub fn open(dir: &Path) -> Result<Testnet> {
        let layout = Layout::new(dir);
        let network = Network::load(&layout.network()).map_err(|e| {
            anyhow!("{e}").context(format!(
                "no testnet in {} (start one with `quire-testnet up`)",
                dir.display()
            ))
        })?;
        Ok(Testnet { layout, network })
    }

    pub fn n(&self) -> u32 {
        self.network.replicas.len() as u32
    }

    pub fn check_index(&self, i: u32) -> Result<()> {
        if i >= self.n() {
            bail!(
                "replica {i} does not exist: this testnet has replicas 0..{}",
                self.n()
            );
        }
        Ok(())
    }

    /// Appends one line to the event log.
    pub fn log_event(&self, what: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.layout.dir.join("events.log"))?;
        writeln!(f, "{} {what}", unix_ms())?;
        Ok(())
    }

    pub fn events(&self) -> Vec<(u128, String)> {
        std::fs::read_to_string(self.layout.dir.join("events.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, what) = l.split_once(' ')?;
                Some((t.parse().ok()?, what.to_string()))
            })
            .collect()
    }

    /// Replicas that were switched to a faulty behaviour since the testnet started.
    pub fn ever_faulty(&self) -> std::collections::BTreeSet<u32> {
        self.events()
            .iter()
            .filter_map(|(_, e)| {
                let mut w = e.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("behaviour"), Some(i), Some(b)) if b != "honest" => i.parse().ok(),
                    _ => None,
                }
            })
            .collect()
    }

    pub fn running(&self, i: u32) -> Option<u32> {
        process::running(&self.layout, i)
    }

    pub fn start(&self, i: u32) -> Result<u32> {
        if let Some(pid) = self.running(i) {
            bail!("replica {i} is already running (pid {pid})");
        }
        let pid = process::start(&self.layout, i)?;
        self.log_event(&format!("start {i}"))?;
        Ok(pid)
    }

    pub fn kill(&self, i: u32) -> Result<bool> {
        self.check_index(i)?;
        let was = process::stop(&self.layout, i, true)?;
        self.log_event(&format!("kill {i}"))?;
        Ok(was)
    }

    pub fn stop_all(&self) -> Result<usize> {
        let mut stopped = 0;
        for i in 0..self.n() {
            if process::stop(&self.layout, i, false)? {
                stopped += 1;
            }
        }
        // The helpers watching the testnet go with it.
        process::stop_pid_file(&self.layout.dashboard_pid(), false)?;
        let _ = std::fs::remove_file(self.layout.dashboard_url());
        process::stop_pid_file(&self.layout.prometheus().join("prometheus.pid"), false)?;
        self.log_event("down")?;
        Ok(stopped)
    }

    pub fn pause(&self, i: u32, pause: bool) -> Result<()> {
        self.check_index(i)?;
        let pid = self
            .running(i)
            .ok_or_else(|| anyhow!("replica {i} is not running"))?;
        process::signal(pid, if pause { Signal::STOP } else { Signal::CONT })?;
        self.log_event(&format!("{} {i}", if pause { "pause" } else { "resume" }))
    }

    fn http_addr(&self, i: u32) -> Result<SocketAddr> {
        self.network
            .replicas
            .iter()
            .find(|r| r.id == i)
            .map(|r| r.http)
            .ok_or_else(|| anyhow!("replica {i} is not in the network file"))
    }

    /// One request to replica `i`'s HTTP endpoint; returns the body of a 200 answer.
    pub fn http(&self, i: u32, method: &str, path: &str) -> Result<String> {
        let addr = self.http_addr(i)?;
        http_request(addr, method, path).with_context(|| format!("replica {i} ({addr})"))
    }

    pub fn set_behaviour(&self, i: u32, b: Behaviour) -> Result<()> {
        self.set_behaviour_with(i, b, &[])
    }

    /// Switches replica `i`'s behaviour; `colluders` (faulty replicas working together) receive
    /// both sides of an equivocation.
    pub fn set_behaviour_with(&self, i: u32, b: Behaviour, colluders: &[u32]) -> Result<()> {
        self.check_index(i)?;
        for c in colluders {
            self.check_index(*c)?;
        }
        let list: Vec<String> = colluders.iter().map(|c| c.to_string()).collect();
        self.http(
            i,
            "POST",
            &format!(
                "/admin/behaviour?name={}&colluders={}",
                b.name(),
                list.join(",")
            ),
        )?;
        self.log_event(&format!("behaviour {i} {}", b.name()))
    }

    /// Cuts the network into groups: each replica drops traffic with every replica outside its
    /// group. Replicas named in no group are cut off from everyone.
    pub fn partition(&self, groups: &[Vec<u32>]) -> Result<()> {
        for g in groups {
            for i in g {
                self.check_index(*i)?;
            }
        }
        for i in 0..self.n() {
            let mine = groups.iter().find(|g| g.contains(&i));
            let blocked: Vec<String> = (0..self.n())
                .filter(|j| *j != i && mine.is_none_or(|g| !g.contains(j)))
                .map(|j| j.to_string())
                .collect();
            self.http(
                i,
                "POST",
                &format!("/admin/block?peers={}", blocked.join(",")),
            )
            .with_context(|| format!("partitioning replica {i}"))?;
        }
        let shown: Vec<String> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        self.log_event(&format!("partition {}", shown.join(" / ")))
    }

    /// Removes every partition and delay.
    pub fn heal(&self) -> Result<()> {
        for i in 0..self.n() {
            if self.running(i).is_none() {
                continue;
            }
            self.http(i, "POST", "/admin/block?peers=")?;
            for j in 0..self.n() {
                if j != i {
                    self.http(i, "POST", &format!("/admin/delay?peer={j}&ms=0"))?;
                }
            }
        }
        self.log_event("heal")
    }

    /// Delays everything replica `i` sends (to `to`, or to every peer) by `ms`.
    pub fn delay(&self, i: u32, ms: u64, to: Option<u32>) -> Result<()> {
        self.check_index(i)?;
        let peers: Vec<u32> = match to {
            Some(j) => {
                self.check_index(j)?;
                vec![j]
            }
            None => (0..self.n()).filter(|j| *j != i).collect(),
        };
        for j in peers {
            self.http(i, "POST", &format!("/admin/delay?peer={j}&ms={ms}"))?;
        }
        self.log_event(&format!("delay {i} {ms}"))
    }

    pub async fn status(&self) -> Result<Vec<ReplicaStatus>> {
        let client = Client::new(self.network.clone())?;
        Ok(client.status_all().await)
    }
}

/// The most of a replica's HTTP answer that is read (metrics of a large testnet are a few MiB).
const HTTP_RESPONSE_MAX: u64 = 32 << 20;

/// A minimal HTTP/1.1 client for the replicas' loopback endpoints.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    // A replica's answer is read into memory: bounded, whatever a replica sends.
    (&mut stream)
        .take(HTTP_RESPONSE_MAX)
        .read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        bail!("{} {}", status.trim(), body.trim());
    }
    Ok(body.to_string())
}

/// The CLI's and the dashboard's partition syntax: `0,1 / 2,3` → [[0,1],[2,3]].
pub fn parse_groups(text: &str) -> Result<Vec<Vec<u32>>> {
    let mut groups = Vec::new();
    for part in text.split('/') {
        let group: Result<Vec<u32>> = part
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>()
                    .with_context(|| format!("'{s}' is not a replica index"))
            })
            .collect();
        let group = group?;
        if group.is_empty() {
            bail!("empty group in '{text}' (write groups like `0,1 / 2,3`)");
        }
        groups.push(group);
    }
    let mut seen = std::collections::BTreeSet::new();
    for i in groups.iter().flatten() {
        if !seen.insert(*i) {
            bail!("replica {i} is in two groups of '{text}'");
        }
    }
    if groups.len() < 2 {
        bail!("a partition needs at least two groups, like `0,1 / 2,3`");
    }
    Ok(groups)
}

/// `quire-testnet up`: a fresh testnet, running, with a first transfer committed.
pub async fn up(dir: &Path, plan: &Plan, out: &mut dyn Write) -> Result<Testnet> {
    let layout = Layout::new(dir);
    if let Ok(existing) = Testnet::open(dir) {
        let running: Vec<u32> = (0..existing.n())
            .filter(|i| existing.running(*i).is_some())
            .collect();
        if !running.is_empty() {
            bail!(
                "a testnet is already running in {} (replicas {running:?}); stop it with `quire-testnet down`",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::remove_file(layout.dir.join("events.log"));
    generate::generate(&layout, plan)?;
    let net = Testnet::open(dir)?;
    match start_and_prove(&net, out).await {
        Ok(()) => Ok(net),
        Err(e) => {
            // Leave nothing running behind a failed start.
            let _ = net.stop_all();
            Err(e)
        }
    }
}

async fn start_and_prove(net: &Testnet, out: &mut dyn Write) -> Result<()> {
    for i in 0..net.n() {
        net.start(i)?;
    }
    // Output is best effort: a closed stdout must not bring the testnet down.
    let _ = writeln!(
        out,
        "started {} replicas in {}",
        net.n(),
        net.layout.dir.display()
    );
    net.wait_ready(Duration::from_secs(60)).await?;
    let (height, ms) = if crate::pow::is_pow(net) {
        crate::pow::first_transfer(net).await?
    } else {
        net.first_transfer().await?
    };
    let _ = writeln!(
        out,
        "first transfer committed at height {height} ({ms} ms), verified end to end"
    );
    Ok(())
}

impl Testnet {
    /// Waits until every replica answers and reports all its peers connected.
    pub async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let client = Client::new(self.network.clone())?;
        let start = Instant::now();
        loop {
            let statuses = client.status_all().await;
            let ready = statuses.iter().all(|s| {
                s.status
                    .as_ref()
                    .is_ok_and(|st| st.peers_connected as usize + 1 >= self.network.replicas.len())
            });
            if ready {
                return Ok(());
            }
            for i in 0..self.n() {
                if self.running(i).is_none() {
                    bail!(
                        "replica {i} exited; see its log with `quire-testnet logs {i}` ({})",
                        self.layout.log(i).display()
                    );
                }
            }
            if start.elapsed() > limit {
                bail!("replicas did not all connect within {limit:?}; see `quire-testnet logs I`");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn account_key(&self, i: usize) -> Result<Keypair> {
        let entry = self
            .network
            .accounts
            .get(i)
            .ok_or_else(|| anyhow!("the testnet has no account {i}"))?;
        Ok(Keypair::read_file(Path::new(&entry.key))?)
    }

    /// Sends one transfer and waits for its verified commit: proof the network does real work.
    async fn first_transfer(&self) -> Result<(u64, u128)> {
        let client = Client::new(self.network.clone())?;
        let from = self.account_key(0)?;
        let to = self
            .account_key(1)
            .or_else(|_| self.account_key(0))?
            .address();
        let start = Instant::now();
        let receipt = client
            .transfer(&from, to, 1, Some(Duration::from_secs(30)))
            .await?;
        let height = receipt
            .committed
            .map(|c| c.into_inner().height)
            .unwrap_or_default();
        Ok((height, start.elapsed().as_millis()))
    }
}
