//! A small HTTP/1.1 server for `GET /metrics` (Prometheus) and, when the config enables it, the
//! admin API used by `quire-testnet` to inject faults at run time:
//!
//! | request | effect |
//! |---|---|
//! | `POST /admin/behaviour?name=equivocate[&colluders=0,1]` | switch this replica's behaviour (`honest` to restore); colluders get both sides of an equivocation |
//! | `POST /admin/block?peers=1,2` | drop all traffic to and from these replicas (`peers=` clears) |
//! | `POST /admin/delay?peer=1&ms=200` | delay what this replica sends to a peer |
//! | `GET /admin/state` | behaviour, blocked peers, delays |
//!
//! The admin API answers only requests from loopback addresses, whatever address it listens on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quire_chain::ReplicaId;
use quire_consensus::Behaviour;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::driver::{Event, Shared};
use crate::rpc_server::deliver;

/// Link fault injection, implemented by the transport.
pub trait Links: Send + Sync {
    fn set_blocked(&self, peers: BTreeSet<ReplicaId>);
    fn set_delay(&self, peer: ReplicaId, delay: Duration);
    /// Transport metrics, in Prometheus text.
    fn metrics(&self) -> String;
    /// The replica switched behaviour: attacks on connections rather than messages (slowloris)
    /// start or stop here.
    fn set_behaviour(&self, _behaviour: Behaviour) {}
}

pub struct HttpContext {
    pub id: ReplicaId,
    pub admin: bool,
    pub shared: Arc<Shared>,
    pub events: SyncSender<Event>,
    pub links: Arc<dyn Links>,
    pub n: usize,
    /// Which behaviours and knobs apply (PBFT's, or proof of work's).
    pub consensus: quire_chain::genesis::ConsensusMode,
    state: Mutex<AdminState>,
}

#[derive(Default)]
struct AdminState {
    blocked: BTreeSet<ReplicaId>,
    delays: BTreeMap<ReplicaId, u64>,
}

impl HttpContext {
    pub fn new(
        id: ReplicaId,
        admin: bool,
        shared: Arc<Shared>,
        events: SyncSender<Event>,
        links: Arc<dyn Links>,
        n: usize,
    ) -> HttpContext {
        HttpContext {
            id,
            admin,
            shared,
            events,
            links,
            n,
            consensus: quire_chain::genesis::ConsensusMode::Pbft,
            state: Mutex::new(AdminState::default()),
        }
    }

    pub fn with_consensus(mut self, consensus: quire_chain::genesis::ConsensusMode) -> Self {
        self.consensus = consensus;
        self
    }
}

pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), connection(stream, peer, ctx)).await;
        });
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<HttpContext>) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // Read the request head (we take no bodies).
    while len < buf.len() {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = route(&ctx, peer, method, target).await;
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn query(target: &str) -> (&str, BTreeMap<&str, &str>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let params = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    (path, params)
}

async fn route(
    ctx: &HttpContext,
    peer: SocketAddr,
    method: &str,
    target: &str,
) -> (&'static str, String) {
    let (path, params) = query(target);
    match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            ctx.shared.metrics.render(ctx.id, &ctx.links.metrics()),
        ),
        ("GET", "/health") => ("200 OK", "ok\n".into()),
        (_, p) if p.starts_with("/admin/") => {
            if !ctx.admin {
                return (
                    "404 Not Found",
                    "the admin API is disabled in this replica's config\n".into(),
                );
            }
            if !peer.ip().is_loopback() {
                return (
                    "403 Forbidden",
                    "the admin API answers loopback only\n".into(),
                );
            }
            match admin(ctx, method, p, &params).await {
                Ok(body) => ("200 OK", body),
                Err(why) => ("400 Bad Request", format!("{why}\n")),
            }
        }
        _ => ("404 Not Found", "not found\n".into()),
    }
}

async fn admin(
    ctx: &HttpContext,
    method: &str,
    path: &str,
    params: &BTreeMap<&str, &str>,
) -> Result<String, String> {
    match (method, path) {
        ("POST", "/admin/behaviour")
            if ctx.consensus == quire_chain::genesis::ConsensusMode::Pow =>
        {
            crate::pow::admin::behaviour(ctx, params).await
        }
        ("POST", "/admin/hashpower") => crate::pow::admin::hashpower(ctx, params).await,
        ("POST", "/admin/behaviour") => {
            let name = params.get("name").ok_or("missing ?name=")?;
            let behaviour = Behaviour::parse(name)?;
            let colluders = parse_peers(params.get("colluders").copied().unwrap_or(""), ctx.n)?;
            let event = Event::SetBehaviour {
                behaviour,
                colluders,
            };
            if !deliver(&ctx.events, event).await {
                return Err("replica is shutting down".into());
            }
            ctx.links.set_behaviour(behaviour);
            Ok(format!("behaviour {behaviour}\n"))
        }
        ("POST", "/admin/block") => {
            let list = params.get("peers").copied().unwrap_or("");
            let peers = parse_peers(list, ctx.n)?;
            ctx.links.set_blocked(peers.clone());
            if let Ok(mut s) = ctx.state.lock() {
                s.blocked = peers.clone();
            }
            Ok(format!("blocked {peers:?}\n"))
        }
        ("POST", "/admin/delay") => {
            let peer = parse_peer(params.get("peer").ok_or("missing ?peer=")?, ctx.n)?;
            let ms: u64 = params
                .get("ms")
                .ok_or("missing &ms=")?
                .parse()
                .map_err(|_| "ms must be a whole number of milliseconds")?;
            if ms > 60_000 {
                return Err("ms must be at most 60000".into());
            }
            ctx.links.set_delay(peer, Duration::from_millis(ms));
            if let Ok(mut s) = ctx.state.lock() {
                s.delays.insert(peer, ms);
            }
            Ok(format!("delay to {peer}: {ms} ms\n"))
        }
        ("GET", "/admin/state") => {
            let r = ctx.shared.metrics.replica();
            let (blocked, delays) = ctx
                .state
                .lock()
                .map(|s| (s.blocked.clone(), s.delays.clone()))
                .unwrap_or_default();
            Ok(format!(
                "behaviour {}\nblocked {:?}\ndelays {:?}\nview {}\nheight {}\nstate {}\n",
                r.behaviour, blocked, delays, r.view, r.height, r.describe
            ))
        }
        _ => Err(format!("unknown admin request {method} {path}")),
    }
}

fn parse_peer(s: &str, n: usize) -> Result<ReplicaId, String> {
    let id: ReplicaId = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a replica index"))?;
    if id as usize >= n {
        return Err(format!("replica {id} does not exist (0..{n})"));
    }
    Ok(id)
}

fn parse_peers(list: &str, n: usize) -> Result<BTreeSet<ReplicaId>, String> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_peer(s, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoLinks;
    impl Links for NoLinks {
        fn set_blocked(&self, _: BTreeSet<ReplicaId>) {}
        fn set_delay(&self, _: ReplicaId, _: Duration) {}
        fn metrics(&self) -> String {
            String::new()
        }
    }

    fn context(admin: bool) -> (HttpContext, std::sync::mpsc::Receiver<Event>) {
        let (events, inbox) = std::sync::mpsc::sync_channel(4);
        let ctx = HttpContext::new(
            0,
            admin,
            Arc::new(Shared::default()),
            events,
            Arc::new(NoLinks),
            4,
        );
        (ctx, inbox)
    }

    #[tokio::test]
    async fn the_admin_api_answers_loopback_only() {
        let (ctx, inbox) = context(true);
        let outside: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let (status, _) = route(&ctx, outside, "POST", "/admin/behaviour?name=silent").await;
        assert_eq!(status, "403 Forbidden");
        assert!(inbox.try_recv().is_err(), "nothing reached the replica");
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (status, _) = route(
            &ctx,
            local,
            "POST",
            "/admin/behaviour?name=silent&colluders=1",
        )
        .await;
        assert_eq!(status, "200 OK");
        assert!(matches!(
            inbox.try_recv(),
            Ok(Event::SetBehaviour {
                behaviour: Behaviour::Silent,
                ..
            })
        ));
        // Metrics are for anyone.
        let (status, _) = route(&ctx, outside, "GET", "/metrics").await;
        assert_eq!(status, "200 OK");
    }

    #[tokio::test]
    async fn the_admin_api_is_off_unless_configured_and_refuses_bad_requests() {
        let (ctx, _inbox) = context(false);
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (status, _) = route(&ctx, local, "POST", "/admin/behaviour?name=silent").await;
        assert_eq!(status, "404 Not Found");
        let (ctx, _inbox) = context(true);
        for bad in [
            "/admin/behaviour?name=sneaky",
            "/admin/behaviour",
            "/admin/block?peers=9",
            "/admin/block?peers=x",
            "/admin/delay?peer=1&ms=lots",
            "/admin/delay?peer=7&ms=5",
        ] {
            let (status, body) = route(&ctx, local, "POST", bad).await;
            assert_eq!(status, "400 Bad Request", "{bad}: {body}");
        }
    }
}
