//! The dashboard's HTTP server (axum on the node's own connection loop, with its limits): the
//! page, a server-sent-event stream of samples, and the actions. It answers loopback peers only.
//!
//! One sampler task and one checker thread run per server, whatever the number of open pages;
//! a page's stream is only a receiver of the latest sample, so a closed tab drops it (hyper
//! drops the response body) and leaves no task behind.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use quire_node::http::serve::Limits;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::actions::{self, ActionError};
use super::state::{PERIOD, Sampler};
use crate::ops::Testnet;

/// The page, embedded: the dashboard works offline and needs no files beside the binary.
const PAGE: &str = include_str!("page.html");

/// How often the safety checker runs over the honest replicas' chains.
const CHECK_PERIOD: Duration = Duration::from_secs(2);

const LIMITS: Limits = Limits {
    connections_max: 32,
    header_read_timeout: Duration::from_secs(5),
    // Event streams last as long as their tab.
    connection_time_max: None,
};

pub struct Dashboard {
    net: Arc<Testnet>,
    latest: watch::Sender<Arc<str>>,
    verdict: Mutex<Value>,
    /// The running load generator: its rate and task.
    load: Mutex<Option<(u64, tokio::task::JoinHandle<()>)>>,
    /// The scenario being played: its name and task.
    scenario: Mutex<Option<(String, tokio::task::JoinHandle<()>)>>,
}

impl Dashboard {
    pub fn new(net: Testnet) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            net: Arc::new(net),
            latest: watch::Sender::new(Arc::from("{}")),
            verdict: Mutex::new(json!({"state": "pending"})),
            load: Mutex::new(None),
            scenario: Mutex::new(None),
        })
    }

    /// Open event streams (one per page): what a closed tab must bring down.
    pub fn streams(&self) -> usize {
        self.latest.receiver_count()
    }

    fn verdict(&self) -> Value {
        self.verdict
            .lock()
            .map(|v| v.clone())
            .unwrap_or(Value::Null)
    }

    fn load(&self) -> Value {
        let rate = self.load.lock().ok().and_then(|l| {
            l.as_ref()
                .filter(|(_, t)| !t.is_finished())
                .map(|(r, _)| *r)
        });
        let scenario = self.scenario.lock().ok().and_then(|s| {
            s.as_ref()
                .filter(|(_, t)| !t.is_finished())
                .map(|(name, _)| name.clone())
        });
        json!({"rate": rate.unwrap_or(0), "scenario": scenario})
    }

    /// Replaces the load generator by one at `rate` (none for 0).
    fn set_load(&self, rate: u64) -> Result<String, ActionError> {
        let mut slot = self
            .load
            .lock()
            .map_err(|_| ActionError::Failed("the load generator's state is lost".into()))?;
        if let Some((_, task)) = slot.take() {
            task.abort();
        }
        let _ = self.net.log_event(&format!("load {rate}"));
        if rate == 0 {
            return Ok("load stopped".into());
        }
        let net = self.net.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = super::load::run(net, rate).await {
                eprintln!("the load generator stopped: {e:#}");
            }
        });
        *slot = Some((rate, task));
        Ok(format!("load: {rate} tx/s"))
    }
}

/// The router, for [`serve`] and for tests that call it directly.
pub fn router(d: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/api/snapshot", get(snapshot))
        .route("/api/streams", get(streams))
        .route("/api/behaviours", get(behaviours))
        .route("/api/load", post(load))
        .route("/api/scenarios", get(scenarios))
        .route("/api/scenario", post(scenario))
        .route("/api/{action}", post(action))
        .layer(middleware::from_fn(loopback_only))
        .with_state(d)
}

/// Serves the dashboard on `listener` until the process ends, sampling and checking meanwhile.
pub async fn serve(d: Arc<Dashboard>, listener: TcpListener) {
    tokio::spawn(sample(d.clone()));
    spawn_checker(d.clone());
    quire_node::http::serve::serve(listener, router(d), LIMITS).await;
}

async fn sample(d: Arc<Dashboard>) {
    let mut sampler = Sampler::new(d.net.clone());
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sample = sampler.tick(&d.verdict(), &d.load()).await;
        d.latest.send_replace(Arc::from(sample.to_string()));
    }
}

/// The checker on its own thread: it speaks blocking HTTP to every replica and walks their
/// chains, which must not hold up the sampler or the streams.
fn spawn_checker(d: Arc<Dashboard>) {
    let spawned = std::thread::Builder::new()
        .name("dashboard-check".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            loop {
                let started = std::time::Instant::now();
                let mut verdict = rt.block_on(verdict(&d.net));
                let took = started.elapsed();
                verdict["took_ms"] = json!(took.as_millis() as u64);
                if let Ok(mut v) = d.verdict.lock() {
                    *v = verdict;
                }
                // The check re-executes whole chains: on a long one it must not take over the
                // machine the replicas run on, so it rests at least twice as long as it worked.
                std::thread::sleep(CHECK_PERIOD.max(took * 2));
            }
        });
    if let Err(e) = spawned {
        eprintln!("the dashboard's checker did not start: {e}");
    }
}

/// `check` over the replicas that were never switched to a faulty behaviour.
async fn verdict(net: &Testnet) -> Value {
    let faulty = net.ever_faulty();
    if crate::pow::is_pow(net) {
        // Proof of work's own check (`quire-testnet check` on a PoW testnet): its report as text.
        return match crate::pow::check(net, &faulty).await {
            Ok(report) => json!({
                "state": if report.ok() { "safe" } else { "unsafe" },
                "faulty": faulty,
                "text": report.render(),
            }),
            Err(e) => json!({"state": "error", "text": format!("{e:#}")}),
        };
    }
    match crate::check::check(net, &faulty).await {
        Ok(report) => json!({
            "state": if report.ok() { "safe" } else if report.first_disagreement().is_some() { "unsafe" } else { "incomplete" },
            "faulty": faulty,
            "judged": report.judged,
            "findings": report.findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "first_disagreement": report.first_disagreement().map(|f| f.to_string()),
        }),
        Err(e) => json!({"state": "error", "text": format!("{e:#}")}),
    }
}

async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "the dashboard answers loopback only\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn snapshot(State(d): State<Arc<Dashboard>>) -> Response {
    let text = d.latest.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        text.to_string(),
    )
        .into_response()
}

async fn behaviours(State(d): State<Arc<Dashboard>>) -> Response {
    let names: Vec<&str> = if crate::pow::is_pow(&d.net) {
        quire_node::pow::PowBehaviour::ALL
            .iter()
            .map(|b| b.name())
            .collect()
    } else {
        quire_consensus::Behaviour::ALL
            .iter()
            .map(|b| b.name())
            .collect()
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(names).to_string(),
    )
        .into_response()
}

async fn streams(State(d): State<Arc<Dashboard>>) -> String {
    format!("{}\n", d.streams())
}

/// The latest sample at once, then each new one; ends when the tab goes (the stream is dropped).
async fn events(
    State(d): State<Arc<Dashboard>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let mut rx = d.latest.subscribe();
    rx.mark_changed();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let text = rx.borrow_and_update().clone();
        Some((Ok(Event::default().data(&*text)), rx))
    });
    Sse::new(stream)
}

fn answer(result: Result<String, ActionError>) -> Response {
    match result {
        Ok(text) => (StatusCode::OK, text).into_response(),
        Err(ActionError::Bad(text)) => (StatusCode::BAD_REQUEST, text).into_response(),
        Err(ActionError::Failed(text)) => (StatusCode::INTERNAL_SERVER_ERROR, text).into_response(),
    }
}

async fn action(
    State(d): State<Arc<Dashboard>>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let net = d.net.clone();
    let result = tokio::task::spawn_blocking(move || actions::run(&net, &name, &params))
        .await
        .unwrap_or_else(|e| Err(ActionError::Failed(format!("the action stopped: {e}"))));
    answer(result)
}

async fn load(
    State(d): State<Arc<Dashboard>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    answer(actions::load_rate(&params).and_then(|rate| d.set_load(rate)))
}

async fn scenarios() -> Response {
    let names: Vec<&str> = super::scenario::SHIPPED.iter().map(|(s, _)| *s).collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!(names).to_string(),
    )
        .into_response()
}

/// Plays a shipped scenario: its load for its duration, and its timeline.
async fn scenario(
    State(d): State<Arc<Dashboard>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let name = params.get("name").map(|s| s.trim()).unwrap_or("");
    let plan = match super::scenario::find(name, d.net.n()) {
        Ok(plan) => plan,
        Err(e) => return answer(Err(ActionError::Bad(format!("{e:#}")))),
    };
    let Ok(mut slot) = d.scenario.lock() else {
        return answer(Err(ActionError::Failed(
            "the scenario's state is lost".into(),
        )));
    };
    if let Some((_, task)) = slot.take() {
        task.abort();
    }
    let (rate, duration_s) = (plan.scenario.load.rate, plan.scenario.load.duration);
    if let Err(e) = d.set_load(rate) {
        return answer(Err(e));
    }
    let played = d.clone();
    let task = tokio::spawn(async move {
        let end = tokio::time::Instant::now() + Duration::from_secs(duration_s);
        if let Err(e) = super::scenario::play(played.net.clone(), plan).await {
            eprintln!("the scenario stopped: {e:#}");
        }
        tokio::time::sleep_until(end).await;
        let _ = played.set_load(0);
    });
    *slot = Some((name.to_string(), task));
    answer(Ok(format!(
        "playing scenario {name}: {rate} tx/s for {duration_s} s"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    /// A dashboard over a generated testnet whose replicas never started: enough for the
    /// server's own behaviour, with no process and no port.
    fn dashboard() -> (Arc<Dashboard>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "quire-dashboard-unit-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let layout = crate::layout::Layout::new(&dir);
        let plan = crate::generate::Plan {
            nodes: 4,
            accounts: 1,
            base_port: 0,
            ..crate::generate::Plan::default()
        };
        crate::generate::generate(&layout, &plan).expect("generate");
        let net = Testnet::open(&dir).expect("open");
        (Dashboard::new(net), dir)
    }

    async fn call(
        d: &Arc<Dashboard>,
        peer: &str,
        method: &str,
        uri: &str,
    ) -> (StatusCode, Response) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let peer: SocketAddr = peer.parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router(d.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        (response.status(), response)
    }

    async fn text(response: Response) -> String {
        let mut body = response.into_body().into_data_stream();
        let mut out = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn the_dashboard_answers_loopback_only() {
        let (d, dir) = dashboard();
        let (status, _) = call(&d, "192.0.2.7:5000", "GET", "/").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&d, "192.0.2.7:5000", "POST", "/api/heal").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, page) = call(&d, "127.0.0.1:5000", "GET", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text(page).await.contains("new EventSource(\"/events\")"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn bad_actions_are_refused_with_a_message() {
        let (d, dir) = dashboard();
        for (uri, says) in [
            (
                "/api/behaviour?replica=7&name=silent",
                "replica 7 does not exist",
            ),
            ("/api/behaviour?replica=0&name=bogus", "unknown behaviour"),
            ("/api/behaviour?name=silent", "missing parameter `replica`"),
            (
                "/api/behaviour?replica=0&name=equivocate&colluders=1,5",
                "replica 5 does not exist",
            ),
            ("/api/kill?replica=x", "not a replica index"),
            ("/api/partition?groups=0,1", "at least two groups"),
            ("/api/partition?groups=0,1/1,2", "in two groups"),
            ("/api/partition?groups=0/9", "replica 9 does not exist"),
            ("/api/partition?groups=0,/,", "empty group"),
            ("/api/delay?replica=1&ms=-3", "not a whole number"),
            ("/api/load?rate=fast", "not a rate"),
            ("/api/load?rate=99999999", "at most"),
            ("/api/explode", "unknown action"),
            ("/api/scenario?name=nope", "unknown scenario"),
            (
                "/api/scenario?name=seven-replicas-two-faulty",
                "written for 7 replicas",
            ),
        ] {
            let (status, response) = call(&d, "127.0.0.1:1", "POST", uri).await;
            let body = text(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert!(body.contains(says), "{uri}: expected `{says}` in `{body}`");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_closed_event_stream_leaves_no_receiver_behind() {
        let (d, dir) = dashboard();
        let (status, response) = call(&d, "127.0.0.1:1", "GET", "/events").await;
        assert_eq!(status, StatusCode::OK);
        let mut body = response.into_body().into_data_stream();
        let first = body.next().await.expect("a first event").expect("data");
        assert!(String::from_utf8_lossy(&first).starts_with("data: "));
        assert_eq!(d.streams(), 1);
        // A new sample reaches the open stream…
        d.latest.send_replace(Arc::from("{\"t\":1}"));
        let second = body.next().await.expect("a second event").expect("data");
        assert!(String::from_utf8_lossy(&second).contains("{\"t\":1}"));
        // …and closing the tab (hyper drops the body) drops the stream with its receiver.
        drop(body);
        assert_eq!(d.streams(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
