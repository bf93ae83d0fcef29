//! The live dashboard: a page served next to a testnet that shows each replica, the messages
//! between them, misbehaviour caught and the safety verdict, and lets a user attack the
//! replicas with a click through the same operations as the CLI.
//!
//! `quire-testnet up` starts it as a background process (`quire-testnet dashboard --serve`),
//! tracked by `DIR/dashboard.pid` like a replica and stopped by `down`; it writes its address to
//! `DIR/dashboard.url` once it listens.

pub mod actions;
pub mod load;
pub mod scenario;
pub mod server;
pub mod state;
pub mod tree;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::Layout;
use crate::ops::Testnet;
use crate::process;

/// The running dashboard's address, if its process is alive.
pub fn url(layout: &Layout) -> Option<String> {
    process::read_pid(&layout.dashboard_pid()).filter(|p| process::alive(*p))?;
    let url = std::fs::read_to_string(layout.dashboard_url()).ok()?;
    // A file caught mid-write (or left by an older writer) is not an address yet.
    let url = url.trim();
    url.starts_with("http://").then(|| url.to_string())
}

/// Serves the dashboard of the testnet in `dir` in this process, on loopback `port` (0: any
/// free one), writing the address to `DIR/dashboard.url` and calling `listening` with it.
pub async fn serve(dir: &Path, port: u16, listening: impl FnOnce(&str)) -> Result<()> {
    let net = Testnet::open(dir)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    // Written whole and then renamed into place: a reader polling for the file never sees it
    // created but still empty.
    let path = net.layout.dashboard_url();
    let partial = path.with_extension("url.partial");
    std::fs::write(&partial, format!("{url}\n"))?;
    std::fs::rename(&partial, &path)?;
    listening(&url);
    server::serve(server::Dashboard::new(net), listener).await;
    Ok(())
}

/// Starts `quire-testnet dashboard --serve` (the binary `exe`) in the background for the testnet
/// in `layout` and waits until it listens; returns its address.
pub fn start(layout: &Layout, exe: &Path, port: u16) -> Result<String> {
    if let Some(url) = url(layout) {
        return Ok(url);
    }
    let _ = std::fs::remove_file(layout.dashboard_url());
    let port = port.to_string();
    let args: [&std::ffi::OsStr; 6] = [
        "--dir".as_ref(),
        layout.dir.as_os_str(),
        "dashboard".as_ref(),
        "--serve".as_ref(),
        "--port".as_ref(),
        port.as_ref(),
    ];
    let pid = process::start_helper(exe, &args, &layout.dashboard_log(), &layout.dashboard_pid())?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(url) = url(layout) {
            return Ok(url);
        }
        if !process::alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(layout.dashboard_log()).unwrap_or_default();
    let _ = process::stop_pid_file(&layout.dashboard_pid(), true);
    bail!("the dashboard did not start; its log:\n{log}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_file_caught_mid_write_is_not_an_address() {
        let dir = std::env::temp_dir().join(format!("quire-dash-url-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let layout = Layout::new(&dir);
        // The "dashboard" is this process: alive, as url() requires.
        std::fs::write(layout.dashboard_pid(), std::process::id().to_string()).expect("pid");
        std::fs::write(layout.dashboard_url(), "").expect("empty address file");
        assert_eq!(url(&layout), None);
        std::fs::write(layout.dashboard_url(), "http://127.0.0.1:4100/\n").expect("address");
        assert_eq!(url(&layout).as_deref(), Some("http://127.0.0.1:4100/"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
