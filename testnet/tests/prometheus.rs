//! Prometheus for real: `promtool check metrics` accepts what a running replica serves on
//! `/metrics`, and a real Prometheus started as `quire-testnet up --prometheus` starts it
//! scrapes all four replicas (`up == 1` for each target, through its HTTP API).
//!
//! Skipped, with a message, only where Debian's `prometheus` (which ships promtool) is missing
//! (`scripts/setup --tests` installs it).

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_a_replica_serves() {
    let Some(promtool) = on_path("promtool") else {
        println!(
            "SKIPPED: no promtool on PATH (scripts/setup --tests installs Debian's prometheus)"
        );
        return;
    };
    let net = support::start("promtool", 4, 2).await;
    let text = net.tn.http(1, "GET", "/metrics").expect("metrics");
    // The families a dashboard and a Prometheus user rely on are there before the format check.
    for family in [
        "quire_height",
        "quire_peer_messages_sent_total",
        "quire_phase_seconds_bucket",
        "quire_transport_frames_sent_total",
    ] {
        assert!(text.contains(family), "no {family} in\n{text}");
    }
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics refused the output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_every_replica() {
    if quire_testnet::prometheus::binary().is_none() {
        println!(
            "SKIPPED: no prometheus on PATH (scripts/setup --tests installs Debian's prometheus)"
        );
        return;
    }
    let net = support::start("prometheus", 4, 2).await;
    let url = quire_testnet::prometheus::start(&net.tn).expect("prometheus starts");
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("prometheus's address");
    let wanted: Vec<String> = net
        .tn
        .network
        .replicas
        .iter()
        .map(|r| r.http.to_string())
        .collect();
    let end = Instant::now() + Duration::from_secs(45);
    loop {
        let answer = quire_testnet::ops::http_request(addr, "GET", "/api/v1/query?query=up")
            .unwrap_or_default();
        let up: Vec<String> = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|r| r["value"][1] == "1")
            .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_string))
            .collect();
        if wanted.iter().all(|w| up.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "not every replica is up in Prometheus: wanted {wanted:?}, up {up:?}; last answer {answer}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // `down` (here the testnet's drop) stops Prometheus with the replicas.
    let pid_file = net.tn.layout.prometheus().join("prometheus.pid");
    let pid = quire_testnet::process::read_pid(&pid_file).expect("prometheus's pid");
    net.tn.stop_all().expect("stop");
    assert!(
        !quire_testnet::process::alive(pid),
        "prometheus outlived down"
    );
}
