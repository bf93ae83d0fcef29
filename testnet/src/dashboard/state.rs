//! What the dashboard shows, sampled about once a second by one task per server (not per
//! browser tab): each replica's process state and `/metrics`, its head from the client status
//! call, rates from the difference of two scrapes, a few minutes of history, and the toggles of
//! `events.log` to mark on the time axis; on a proof-of-work testnet, the block tree each
//! replica serves (merged in [`super::tree`]). Each sample is published as one JSON text; every open
//! page receives the latest through a `watch` channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quire_client::Client;
use serde_json::{Value, json};

use crate::ops::Testnet;
use crate::process;

/// How often the replicas are scraped (the issue asks for at most one second behind).
pub const PERIOD: Duration = Duration::from_millis(700);
/// Samples kept for the charts: about three minutes.
const HISTORY_MAX: usize = 260;

/// A replica's metrics: series (`name{labels}`) to value.
#[derive(Clone, Debug, Default)]
pub struct Series(pub BTreeMap<String, f64>);

impl Series {
    pub fn parse(text: &str) -> Series {
        let mut map = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((series, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.parse::<f64>()
            {
                map.insert(series.to_string(), v);
            }
        }
        Series(map)
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// The series of metric `name` with their labels: `[(labels, value)]`.
    pub fn family(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let prefix = format!("{name}{{");
        self.0
            .iter()
            .filter_map(|(s, v)| Some((labels(s.strip_prefix(&prefix)?)?, *v)))
            .collect()
    }
}

/// `a="1",b="x"}` → {a: 1, b: x}. Our label values never hold quotes or commas.
fn labels(rest: &str) -> Option<BTreeMap<String, String>> {
    let inner = rest.strip_suffix('}')?;
    let mut out = BTreeMap::new();
    for pair in inner.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        out.insert(k.to_string(), v.trim_matches('"').to_string());
    }
    Some(out)
}

/// Whether replica `i`'s process runs, is frozen, or is gone.
fn process_state(net: &Testnet, i: u32) -> &'static str {
    match net.running(i) {
        None => "killed",
        Some(pid) if process::paused(pid) => "paused",
        Some(_) => "up",
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sampler's memory between two ticks.
pub struct Sampler {
    net: Arc<Testnet>,
    client: Option<Client>,
    previous: Option<(Instant, Vec<Option<Series>>)>,
    history: VecDeque<Value>,
    started_ms: u64,
    /// Proof of work's `k` (confirmations), or `None` on a PBFT testnet.
    pow_k: Option<u64>,
}

impl Sampler {
    pub fn new(net: Arc<Testnet>) -> Sampler {
        let client = Client::new(net.network.clone()).ok();
        let pow_k = quire_chain::pow::PowRules::new(&net.network.genesis)
            .map(|rules| u64::from(rules.params.confirmations));
        Sampler {
            net,
            client,
            previous: None,
            history: VecDeque::new(),
            started_ms: unix_ms(),
            pow_k,
        }
    }

    /// Scrapes every running replica at once (a frozen one would only time out).
    async fn scrape(&self, states: &[&'static str]) -> Vec<Option<Series>> {
        let mut tasks = Vec::new();
        for (i, state) in states.iter().enumerate() {
            let net = self.net.clone();
            let up = *state == "up";
            tasks.push(tokio::task::spawn_blocking(move || {
                up.then(|| net.http(i as u32, "GET", "/metrics").ok())
                    .flatten()
                    .map(|t| Series::parse(&t))
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.ok().flatten());
        }
        out
    }

    /// Proof of work: every running replica's block tree near its head, merged; `null` on PBFT.
    async fn pow_tree(&self, states: &[&'static str]) -> Value {
        let Some(k) = self.pow_k else {
            return Value::Null;
        };
        let mut tasks = Vec::new();
        for (i, state) in states.iter().enumerate() {
            let net = self.net.clone();
            let up = *state == "up";
            tasks.push(tokio::task::spawn_blocking(move || {
                up.then(|| net.http(i as u32, "GET", "/admin/pow/tree").ok())
                    .flatten()
                    .and_then(|t| super::tree::parse(&t))
            }));
        }
        let mut trees = Vec::new();
        for t in tasks {
            trees.push(t.await.ok().flatten());
        }
        super::tree::merge(&trees, k)
    }

    /// Each replica's head hash (the status call), or nothing for one that does not answer soon.
    async fn heads(&self) -> BTreeMap<u32, String> {
        let Some(client) = &self.client else {
            return BTreeMap::new();
        };
        match tokio::time::timeout(Duration::from_millis(600), client.status_all()).await {
            Ok(all) => all
                .into_iter()
                .filter_map(|s| Some((s.replica, s.status.ok()?.head_hash.to_string())))
                .collect(),
            Err(_) => BTreeMap::new(),
        }
    }

    /// One sample, as the JSON the page draws (`verdict` and `load` come from elsewhere).
    pub async fn tick(&mut self, verdict: &Value, load: &Value) -> Value {
        let n = self.net.n();
        let states: Vec<&'static str> = (0..n).map(|i| process_state(&self.net, i)).collect();
        let (series, heads, tree) =
            tokio::join!(self.scrape(&states), self.heads(), self.pow_tree(&states));
        let now = Instant::now();
        let cards = cards(&states, &series, &heads);
        let rates = self
            .previous
            .as_ref()
            .map(|(then, before)| rates(n, now.duration_since(*then), before, &series));
        let (matrix, tps, latency_ms) = rates.unwrap_or((Value::Null, 0.0, None));
        let t_ms = unix_ms();
        self.history.push_back(json!({
            "t": t_ms,
            "heights": gauge_per_replica(&series, "quire_height"),
            "views": gauge_per_replica(&series, "quire_view"),
            "tps": tps,
            "latency_ms": latency_ms,
        }));
        while self.history.len() > HISTORY_MAX {
            self.history.pop_front();
        }
        let since = self
            .history
            .front()
            .and_then(|h| h["t"].as_u64())
            .unwrap_or(self.started_ms);
        let events: Vec<Value> = self
            .net
            .events()
            .into_iter()
            .filter(|(t, _)| *t as u64 >= since)
            .map(|(t, what)| json!({"t": t as u64, "what": what}))
            .collect();
        self.previous = Some((now, series.clone()));
        json!({
            "t": t_ms,
            "n": n,
            "cards": cards,
            "misbehaviour": misbehaviour(&series),
            "matrix": matrix,
            "history": self.history,
            "events": events,
            "verdict": verdict,
            "load": load,
            "tree": tree,
        })
    }
}

fn gauge_per_replica(series: &[Option<Series>], name: &str) -> Vec<Option<u64>> {
    series
        .iter()
        .map(|s| s.as_ref().and_then(|s| s.get(name)).map(|v| v as u64))
        .collect()
}

fn cards(states: &[&str], series: &[Option<Series>], heads: &BTreeMap<u32, String>) -> Vec<Value> {
    states
        .iter()
        .zip(series)
        .enumerate()
        .map(|(i, (state, s))| {
            // Gauges of whole numbers: shown as such.
            let get = |name: &str| s.as_ref().and_then(|s| s.get(name)).map(|v| v as u64);
            let behaviour = s.as_ref().and_then(|s| {
                s.family("quire_behaviour")
                    .into_iter()
                    .find_map(|(l, _)| l.get("name").cloned())
            });
            let behaviour = behaviour.map(|b| {
                if b.is_empty() {
                    "honest".to_string()
                } else {
                    b
                }
            });
            // Up but not answering: show that rather than stale numbers.
            let state = if *state == "up" && s.is_none() {
                "unreachable"
            } else {
                state
            };
            json!({
                "id": i,
                "state": state,
                "view": get("quire_view"),
                "changing_view": get("quire_changing_view").map(|v| v > 0),
                "primary": get("quire_primary"),
                "height": get("quire_height"),
                "head": heads.get(&(i as u32)),
                "stable_checkpoint": get("quire_stable_checkpoint"),
                "mempool": get("quire_mempool_transactions"),
                "peers": get("quire_peers_connected"),
                "behaviour": behaviour,
            })
        })
        .collect()
}

/// Misbehaviour detected, by culprit then kind, summed over the replicas that detected it.
fn misbehaviour(series: &[Option<Series>]) -> Value {
    let mut counts: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for s in series.iter().flatten() {
        for (l, v) in s.family("quire_misbehaviour_total") {
            if let (Some(culprit), Some(kind)) = (l.get("culprit"), l.get("kind")) {
                *counts
                    .entry(culprit.clone())
                    .or_default()
                    .entry(kind.clone())
                    .or_default() += v;
            }
        }
    }
    json!(counts)
}

/// The message matrix (from × to × kind, per second), committed transactions per second (the
/// median replica's: one replica rebuilding its chain or lying must not set the figure), and
/// the mean submit→commit latency over the interval.
fn rates(
    n: u32,
    dt: Duration,
    before: &[Option<Series>],
    now: &[Option<Series>],
) -> (Value, f64, Option<f64>) {
    let dt_s = dt.as_secs_f64().max(0.001);
    let mut matrix = vec![vec![BTreeMap::<String, f64>::new(); n as usize]; n as usize];
    let mut tps_each: Vec<f64> = Vec::new();
    let (mut latency_sum, mut latency_count) = (0.0, 0.0);
    for (from, (b, s)) in before.iter().zip(now).enumerate() {
        let (Some(b), Some(s)) = (b, s) else { continue };
        let delta = |name: &str| s.get(name).unwrap_or(0.0) - b.get(name).unwrap_or(0.0);
        for (series, v) in &s.0 {
            let Some(rest) = series.strip_prefix("quire_peer_messages_sent_total{") else {
                continue;
            };
            let Some(l) = labels(rest) else { continue };
            let (Some(to), Some(kind)) = (l.get("peer"), l.get("kind")) else {
                continue;
            };
            let Ok(to) = to.parse::<usize>() else {
                continue;
            };
            let was = b.get(series).unwrap_or(0.0);
            if let Some(row) = matrix.get_mut(from)
                && let Some(cell) = row.get_mut(to)
            {
                cell.insert(kind.clone(), ((v - was) / dt_s).max(0.0));
            }
        }
        tps_each.push(delta("quire_transactions_committed_total") / dt_s);
        latency_sum += delta("quire_commit_latency_seconds_sum");
        latency_count += delta("quire_commit_latency_seconds_count");
    }
    let latency_ms = (latency_count > 0.0).then(|| 1000.0 * latency_sum / latency_count);
    tps_each.sort_by(f64::total_cmp);
    let tps = tps_each.get(tps_each.len() / 2).copied().unwrap_or(0.0);
    (json!(matrix), tps.max(0.0), latency_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_labels_are_read_from_prometheus_text() {
        let text = "# HELP x y\nquire_height 12\nquire_misbehaviour_total{kind=\"equivocation\",culprit=\"0\"} 3\nbroken line\n";
        let s = Series::parse(text);
        assert_eq!(s.get("quire_height"), Some(12.0));
        let f = s.family("quire_misbehaviour_total");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0.get("culprit").map(String::as_str), Some("0"));
        assert_eq!(f[0].1, 3.0);
    }

    #[test]
    fn throughput_is_the_median_replica_s() {
        let at = |v: u64| {
            Some(Series::parse(&format!(
                "quire_transactions_committed_total {v}\n"
            )))
        };
        let before = [at(0), at(0), at(0), at(0)];
        // Replica 0 re-executed a rebuilt chain: its counter jumped.
        let now = [at(5000), at(100), at(100), at(90)];
        let (_, tps, _) = rates(4, Duration::from_secs(1), &before, &now);
        assert_eq!(tps, 100.0);
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let before = Series::parse(
            "quire_peer_messages_sent_total{peer=\"1\",kind=\"commit\"} 10\nquire_transactions_committed_total 100\n",
        );
        let now = Series::parse(
            "quire_peer_messages_sent_total{peer=\"1\",kind=\"commit\"} 30\nquire_transactions_committed_total 300\n",
        );
        let (matrix, tps, latency) = rates(
            2,
            Duration::from_secs(2),
            &[Some(before), None],
            &[Some(now), None],
        );
        assert_eq!(matrix[0][1]["commit"], 10.0);
        assert_eq!(tps, 100.0);
        assert_eq!(latency, None);
    }
}
