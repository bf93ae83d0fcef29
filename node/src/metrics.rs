//! Metrics in the Prometheus text format: the replica's protocol state, what it committed and how
//! fast, what it sent and received, what it dropped and why, and whom it caught misbehaving.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use quire_consensus::{Kind, Stats};

/// A fixed-bucket histogram.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// What the driver publishes about the replica after each round of steps.
#[derive(Clone, Debug, Default)]
pub struct ReplicaState {
    pub view: u64,
    pub changing_view: bool,
    pub height: u64,
    pub stable_checkpoint: u64,
    pub mempool: u64,
    pub primary: u32,
    pub behaviour: String,
    pub stats: Stats,
    /// The core's one-line summary of its protocol state (for the admin API).
    pub describe: String,
}

#[derive(Debug)]
struct Inner {
    replica: ReplicaState,
    sent: BTreeMap<Kind, u64>,
    sent_bytes: BTreeMap<Kind, u64>,
    received: BTreeMap<Kind, u64>,
    blocks: u64,
    txs: u64,
    batch_size: Histogram,
    commit_latency: Histogram,
    submitted: u64,
    refused: BTreeMap<&'static str, u64>,
    rpc_requests: u64,
    rpc_errors: BTreeMap<&'static str, u64>,
    /// Replica frames dropped before the core, by peer and reason (stale, throttled, refused).
    ingress_dropped: BTreeMap<(u32, &'static str), u64>,
    /// Signatures checked for each peer's messages (what its budget is charged).
    ingress_signatures: BTreeMap<u32, u64>,
    /// Times this replica's chain diverged from a certified checkpoint (and was rebuilt)…
    diverged: u64,
    /// …and the last time's height, its block and the certified one.
    divergence: Option<(u64, quire_chain::Hash, quire_chain::Hash)>,
}

/// Shared between the driver (writer) and the HTTP server (reader).
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                replica: ReplicaState::default(),
                sent: BTreeMap::new(),
                sent_bytes: BTreeMap::new(),
                received: BTreeMap::new(),
                blocks: 0,
                txs: 0,
                batch_size: Histogram::new(&[
                    1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                ]),
                commit_latency: Histogram::new(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                submitted: 0,
                refused: BTreeMap::new(),
                rpc_requests: 0,
                rpc_errors: BTreeMap::new(),
                ingress_dropped: BTreeMap::new(),
                ingress_signatures: BTreeMap::new(),
                diverged: 0,
                divergence: None,
            }),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_replica(&self, state: ReplicaState) {
        self.lock().replica = state;
    }

    pub fn replica(&self) -> ReplicaState {
        self.lock().replica.clone()
    }

    /// `copies` messages of `kind`, each `bytes` long, left for other replicas.
    pub fn sent(&self, kind: Kind, copies: u64, bytes: usize) {
        let mut m = self.lock();
        *m.sent.entry(kind).or_default() += copies;
        *m.sent_bytes.entry(kind).or_default() += copies * bytes as u64;
    }

    pub fn received(&self, kind: Kind) {
        *self.lock().received.entry(kind).or_default() += 1;
    }

    pub fn block(&self, txs: usize) {
        let mut m = self.lock();
        m.blocks += 1;
        m.txs += txs as u64;
        m.batch_size.observe(txs as f64);
    }

    pub fn commit_latency(&self, seconds: f64) {
        self.lock().commit_latency.observe(seconds);
    }

    pub fn submitted(&self, accepted: u64) {
        self.lock().submitted += accepted;
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused_many(reason, 1);
    }

    pub fn refused_many(&self, reason: &'static str, count: u64) {
        *self.lock().refused.entry(reason).or_default() += count;
    }

    pub fn rpc_request(&self) {
        self.lock().rpc_requests += 1;
    }

    pub fn rpc_error(&self, reason: &'static str) {
        *self.lock().rpc_errors.entry(reason).or_default() += 1;
    }

    /// This replica found its block at `height` (`ours`) differs from the one a quorum
    /// certified, and rebuilt its chain.
    pub fn diverged(&self, height: u64, ours: quire_chain::Hash, certified: quire_chain::Hash) {
        let mut m = self.lock();
        m.diverged += 1;
        m.divergence = Some((height, ours, certified));
    }

    pub fn ingress_dropped(&self, peer: u32, reason: &'static str) {
        *self
            .lock()
            .ingress_dropped
            .entry((peer, reason))
            .or_default() += 1;
    }

    pub fn ingress_signatures(&self, peer: u32, signatures: u64) {
        *self.lock().ingress_signatures.entry(peer).or_default() += signatures;
    }

    /// Renders everything, plus the transport's lines (`extra`), as Prometheus text.
    pub fn render(&self, id: u32, extra: &str) -> String {
        let m = self.lock();
        let r = &m.replica;
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "quire_replica_id",
            "This replica's id.",
            id as u64,
        );
        gauge(&mut out, "quire_view", "Current view.", r.view);
        gauge(
            &mut out,
            "quire_changing_view",
            "1 while changing views.",
            r.changing_view as u64,
        );
        gauge(
            &mut out,
            "quire_primary",
            "Primary of the current view.",
            r.primary as u64,
        );
        gauge(&mut out, "quire_height", "Executed height.", r.height);
        gauge(
            &mut out,
            "quire_stable_checkpoint",
            "Last stable checkpoint.",
            r.stable_checkpoint,
        );
        gauge(
            &mut out,
            "quire_mempool_transactions",
            "Transactions waiting.",
            r.mempool,
        );
        counter(
            &mut out,
            "quire_blocks_committed_total",
            "Blocks committed to the chain store.",
            m.blocks,
        );
        counter(
            &mut out,
            "quire_transactions_committed_total",
            "Transactions in committed blocks.",
            m.txs,
        );
        counter(
            &mut out,
            "quire_view_changes_total",
            "View changes this replica started.",
            r.stats.view_changes,
        );
        counter(
            &mut out,
            "quire_new_views_total",
            "New views this replica entered.",
            r.stats.new_views,
        );
        counter(
            &mut out,
            "quire_blocks_fetched_total",
            "Blocks received by state transfer.",
            r.stats.blocks_fetched,
        );
        counter(
            &mut out,
            "quire_batches_proposed_total",
            "Batches proposed as primary.",
            r.stats.batches_proposed,
        );
        counter(
            &mut out,
            "quire_client_transactions_accepted_total",
            "Client transactions admitted.",
            m.submitted,
        );
        counter(
            &mut out,
            "quire_diverged_total",
            "Times this replica's chain differed from a checkpoint 2f+1 replicas certified (it then stops signing and rebuilds its chain).",
            m.diverged,
        );
        if let Some((height, ours, certified)) = m.divergence {
            let _ = writeln!(
                out,
                "# HELP quire_divergence The last divergence: the height, this replica's block and the certified one (labels).\n# TYPE quire_divergence gauge\nquire_divergence{{height=\"{height}\",ours=\"{ours}\",certified=\"{certified}\"}} 1"
            );
        }
        counter(
            &mut out,
            "quire_rpc_requests_total",
            "Client RPC requests served.",
            m.rpc_requests,
        );
        m.batch_size.render(
            &mut out,
            "quire_batch_size",
            "Transactions per committed block.",
        );
        m.commit_latency.render(
            &mut out,
            "quire_commit_latency_seconds",
            "From a client's submission at this replica to the commit of its block here.",
        );
        let _ = writeln!(
            out,
            "# HELP quire_messages_sent_total Consensus messages sent, by kind.\n# TYPE quire_messages_sent_total counter"
        );
        for k in Kind::ALL {
            let v = m.sent.get(&k).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "quire_messages_sent_total{{kind=\"{}\"}} {v}",
                k.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_message_bytes_sent_total Bytes of consensus messages sent, by kind.\n# TYPE quire_message_bytes_sent_total counter"
        );
        for k in Kind::ALL {
            let v = m.sent_bytes.get(&k).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "quire_message_bytes_sent_total{{kind=\"{}\"}} {v}",
                k.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_messages_received_total Verified consensus messages received, by kind.\n# TYPE quire_messages_received_total counter"
        );
        for k in Kind::ALL {
            let v = m.received.get(&k).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "quire_messages_received_total{{kind=\"{}\"}} {v}",
                k.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_messages_dropped_total Messages dropped, by reason.\n# TYPE quire_messages_dropped_total counter"
        );
        for reject in quire_consensus::Reject::ALL {
            let v = r.stats.rejects.get(&reject).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "quire_messages_dropped_total{{reason=\"{}\"}} {v}",
                reject.name()
            );
        }
        for drop in quire_consensus::Drop::ALL {
            let v = r.stats.drops.get(&drop).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "quire_messages_dropped_total{{reason=\"{}\"}} {v}",
                drop.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_misbehaviour_total Misbehaviour detected, by kind and culprit.\n# TYPE quire_misbehaviour_total counter"
        );
        for ((kind, culprit), v) in &r.stats.misbehaviour {
            let _ = writeln!(
                out,
                "quire_misbehaviour_total{{kind=\"{}\",culprit=\"{culprit}\"}} {v}",
                kind.name()
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_client_refused_total Client transactions refused, by reason.\n# TYPE quire_client_refused_total counter"
        );
        for (reason, v) in &m.refused {
            let _ = writeln!(out, "quire_client_refused_total{{reason=\"{reason}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP quire_rpc_errors_total Bad client requests and connections, by reason.\n# TYPE quire_rpc_errors_total counter"
        );
        for (reason, v) in &m.rpc_errors {
            let _ = writeln!(out, "quire_rpc_errors_total{{reason=\"{reason}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP quire_ingress_dropped_total Replica frames dropped before the consensus core, by peer and reason.\n# TYPE quire_ingress_dropped_total counter"
        );
        for ((peer, reason), v) in &m.ingress_dropped {
            let _ = writeln!(
                out,
                "quire_ingress_dropped_total{{peer=\"{peer}\",reason=\"{reason}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_ingress_signatures_total Signatures checked for each peer's messages.\n# TYPE quire_ingress_signatures_total counter"
        );
        for (peer, v) in &m.ingress_signatures {
            let _ = writeln!(out, "quire_ingress_signatures_total{{peer=\"{peer}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP quire_behaviour Current behaviour (1 for the active one).\n# TYPE quire_behaviour gauge\nquire_behaviour{{name=\"{}\"}} 1",
            r.behaviour
        );
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.block(10);
        m.commit_latency(0.02);
        m.sent(Kind::Commit, 3, 10);
        let text = m.render(1, "");
        assert!(text.contains("quire_blocks_committed_total 1"));
        assert!(text.contains("quire_batch_size_bucket{le=\"32\"} 1"));
        assert!(text.contains("quire_commit_latency_seconds_count 1"));
        assert!(text.contains("quire_messages_sent_total{kind=\"commit\"} 3"));
    }
}
