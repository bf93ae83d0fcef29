//! `quire-testnet up --prometheus`: a scrape configuration naming every replica's `/metrics`, and
//! Debian's `prometheus` started on it (tracked in `DIR/prometheus/prometheus.pid`, stopped by
//! `down`), listening on a free loopback port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::ops::{Testnet, http_request};
use crate::process;

/// The scrape period: short, so a user sees a change within seconds.
const SCRAPE_INTERVAL_S: u64 = 2;

/// The Prometheus binary: `$QUIRE_PROMETHEUS_BIN`, else `prometheus` on `$PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUIRE_PROMETHEUS_BIN") {
        return Some(PathBuf::from(p));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// The scrape configuration: one target per replica, labelled with its id.
pub fn config(net: &Testnet) -> String {
    let mut out = format!(
        "# Written by quire-testnet up --prometheus.\nglobal:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  scrape_timeout: {SCRAPE_INTERVAL_S}s\nscrape_configs:\n  - job_name: quire\n    metrics_path: /metrics\n    static_configs:\n"
    );
    for r in &net.network.replicas {
        out.push_str(&format!(
            "      - targets: ['{}']\n        labels:\n          replica: '{}'\n",
            r.http, r.id
        ));
    }
    out
}

fn free_loopback_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Writes the configuration and starts Prometheus on it; returns its address once it is ready.
pub fn start(net: &Testnet) -> Result<String> {
    let binary = binary().ok_or_else(|| {
        anyhow!(
            "prometheus is not installed (apt-get install prometheus, or set QUIRE_PROMETHEUS_BIN)"
        )
    })?;
    let dir = net.layout.prometheus();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config(net))?;
    let pid_file = dir.join("prometheus.pid");
    process::stop_pid_file(&pid_file, false)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_loopback_port()?));
    let args = [
        format!("--config.file={}", config_path.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let pid = process::start_helper(&binary, &args, &dir.join("prometheus.log"), &pid_file)?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if http_request(addr, "GET", "/-/ready").is_ok() {
            let url = format!("http://{addr}/");
            std::fs::write(dir.join("prometheus.url"), format!("{url}\n"))?;
            return Ok(url);
        }
        if !process::alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let _ = process::stop_pid_file(&pid_file, true);
    bail!("prometheus did not become ready; its log:\n{log}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_config_names_every_replica() {
        let dir = std::env::temp_dir().join(format!("quire-prom-unit-{}", rand::random::<u32>()));
        let layout = crate::layout::Layout::new(&dir);
        let plan = crate::generate::Plan {
            nodes: 4,
            accounts: 1,
            base_port: 0,
            ..crate::generate::Plan::default()
        };
        crate::generate::generate(&layout, &plan).expect("generate");
        let net = Testnet::open(&dir).expect("open");
        let text = config(&net);
        for r in &net.network.replicas {
            assert!(
                text.contains(&format!("- targets: ['{}']", r.http)),
                "{text}"
            );
            assert!(text.contains(&format!("replica: '{}'", r.id)), "{text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
