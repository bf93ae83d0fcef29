//! The replica's HTTP endpoint (axum, with the connection limits of [`serve`]): `GET /metrics`
//! (Prometheus text), `GET /health` and, when the config enables it, the admin API used by
//! `quire-testnet` to inject faults at run time:
//!
//! | request | effect |
//! |---|---|
//! | `POST /admin/behaviour?name=equivocate[&colluders=0,1]` | switch this replica's behaviour (`honest` to restore); colluders get both sides of an equivocation |
//! | `POST /admin/block?peers=1,2` | drop all traffic to and from these replicas (`peers=` clears) |
//! | `POST /admin/delay?peer=1&ms=200` | delay what this replica sends to a peer |
//! | `GET /admin/state` | behaviour, blocked peers, delays |
//! | `GET /admin/pow/tree` | proof of work: the block tree near the head (main chain and side blocks) |
//!
//! The admin API answers only requests from loopback addresses, whatever address it listens on.

pub mod serve;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use quire_chain::ReplicaId;
use quire_consensus::Behaviour;
use tokio::net::TcpListener;

use crate::driver::{Event, Shared};
use crate::rpc_server::deliver;

/// Link fault injection, implemented by the transport.
pub trait Links: Send + Sync {
    fn set_blocked(&self, peers: BTreeSet<ReplicaId>);
    fn set_delay(&self, peer: ReplicaId, delay: Duration);
    /// Metrics in Prometheus text that are not in the registry: proof of work's, which its
    /// driver renders as text (the transport's are a collector of the registry).
    fn extra_metrics(&self) -> String {
        String::new()
    }
    /// Proof of work: the recent block tree as text (see [`crate::pow::admin::render_tree`]);
    /// `None` on a PBFT replica.
    fn pow_tree(&self) -> Option<String> {
        None
    }
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

/// Serves the endpoint on `listener`, with the limits of [`serve::Limits::REPLICA`].
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>) {
    serve::serve(listener, router(ctx), serve::Limits::REPLICA).await
}

pub fn router(ctx: Arc<HttpContext>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/admin/{*op}", any(admin_request))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(ctx)
}

async fn metrics(State(ctx): State<Arc<HttpContext>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        ctx.shared.metrics.render() + &ctx.links.extra_metrics(),
    )
        .into_response()
}

async fn admin_request(
    State(ctx): State<Arc<HttpContext>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    params: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> (StatusCode, String) {
    if !ctx.admin {
        return (
            StatusCode::NOT_FOUND,
            "the admin API is disabled in this replica's config\n".into(),
        );
    }
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "the admin API answers loopback only\n".into(),
        );
    }
    let Ok(Query(params)) = params else {
        return (StatusCode::BAD_REQUEST, "malformed query string\n".into());
    };
    let params: BTreeMap<&str, &str> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match admin(&ctx, method.as_str(), uri.path(), &params).await {
        Ok(body) => (StatusCode::OK, body),
        Err(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")),
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
        ("GET", "/admin/pow/tree") => ctx
            .links
            .pow_tree()
            .ok_or_else(|| "this replica runs PBFT: it has no block tree".to_string()),
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
    use axum::body::Body;
    use tower::ServiceExt;

    struct NoLinks;
    impl Links for NoLinks {
        fn set_blocked(&self, _: BTreeSet<ReplicaId>) {}
        fn set_delay(&self, _: ReplicaId, _: Duration) {}
    }

    fn context(admin: bool) -> (Arc<HttpContext>, std::sync::mpsc::Receiver<Event>) {
        let (events, inbox) = std::sync::mpsc::sync_channel(4);
        let ctx = HttpContext::new(
            0,
            admin,
            Arc::new(Shared::default()),
            events,
            Arc::new(NoLinks),
            4,
        );
        (Arc::new(ctx), inbox)
    }

    /// One request through the router, as from `peer`.
    async fn route(
        ctx: &Arc<HttpContext>,
        peer: SocketAddr,
        method: &str,
        target: &str,
    ) -> (StatusCode, String) {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(target)
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router(ctx.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_admin_api_answers_loopback_only() {
        let (ctx, inbox) = context(true);
        let outside: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let (status, _) = route(&ctx, outside, "POST", "/admin/behaviour?name=silent").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(inbox.try_recv().is_err(), "nothing reached the replica");
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (status, _) = route(
            &ctx,
            local,
            "POST",
            "/admin/behaviour?name=silent&colluders=1",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(matches!(
            inbox.try_recv(),
            Ok(Event::SetBehaviour {
                behaviour: Behaviour::Silent,
                ..
            })
        ));
        // Metrics are for anyone.
        let (status, body) = route(&ctx, outside, "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("quire_blocks_committed_total 0"), "{body}");
        let (status, _) = route(&ctx, outside, "GET", "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_admin_api_is_off_unless_configured_and_refuses_bad_requests() {
        let (ctx, _inbox) = context(false);
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (status, _) = route(&ctx, local, "POST", "/admin/behaviour?name=silent").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (ctx, _inbox) = context(true);
        for bad in [
            "/admin/behaviour?name=sneaky",
            "/admin/behaviour",
            "/admin/block?peers=9",
            "/admin/block?peers=x",
            "/admin/delay?peer=1&ms=lots",
            "/admin/delay?peer=7&ms=5",
            "/admin/delay?peer=%ZZ",
            "/admin/frobnicate",
        ] {
            let (status, body) = route(&ctx, local, "POST", bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        // A PBFT replica has no block tree to show.
        let (status, body) = route(&ctx, local, "GET", "/admin/pow/tree").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("runs PBFT"), "{body}");
    }
}
