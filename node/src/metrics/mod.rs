//! Metrics through `prometheus-client`, served as the Prometheus text format (0.0.4): the
//! replica's protocol state, what it committed and how fast (with the time a block spends in each
//! phase), what it sent to whom and received, what it dropped and why, and whom it caught
//! misbehaving.
//!
//! Nothing on the message path takes a shared lock: the driver, the verify pool's threads and the
//! RPC tasks bump atomic counters whose handles were made once, at start ([`Counters`]). The
//! core's own counters and the protocol state are a snapshot the driver publishes every 50 ms
//! ([`snapshot`]); the transport's are read from its atomics at scrape time ([`transport`]).

mod labels;
pub mod phases;
mod snapshot;
pub mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use quire_chain::ReplicaId;
use quire_consensus::{Kind, Stats};

use labels::{
    DivergenceLabel, KindLabel, PeerKindLabel, PeerLabel, PeerReasonLabel, PhaseLabel, ReasonLabel,
};
pub use phases::Phase;

/// What the driver publishes about the replica after each round of steps.
#[derive(Clone, Debug, Default)]
pub struct ReplicaState {
    pub view: u64,
    pub changing_view: bool,
    pub height: u64,
    pub stable_checkpoint: u64,
    pub mempool: u64,
    /// Transactions client RPC lets the mempool hold now (see `crate::drain`; 0: no limit
    /// beyond the pool's bound).
    pub admission_limit: u64,
    /// Smoothed ticks from PrePrepare to execution, and the batch timeout they give.
    pub commit_ticks: u64,
    pub batch_timeout_ticks: u64,
    pub primary: u32,
    pub behaviour: String,
    pub stats: Stats,
    /// The core's one-line summary of its protocol state (for the admin API).
    pub describe: String,
}

/// The reasons frames are dropped before the core, known in advance so their counters exist
/// from the start (the verify pool and the driver bump them without a lookup that locks).
fn ingress_reasons() -> Vec<&'static str> {
    let mut reasons: Vec<&'static str> = quire_consensus::Reject::ALL
        .iter()
        .map(|r| r.name())
        .collect();
    reasons.extend(["throttled", "block_server_busy"]);
    reasons
}

/// Counter handles, made once: each is an `Arc` around an atomic, shared with its family in the
/// registry, so a bump is one atomic add.
struct Counters {
    sent: Vec<Counter>,
    sent_bytes: Vec<Counter>,
    received: Vec<Counter>,
    /// By destination peer, then kind: the sender's row of the replica × replica matrix.
    sent_to: HashMap<ReplicaId, Vec<Counter>>,
    sent_to_family: Family<PeerKindLabel, Counter>,
    blocks: Counter,
    txs: Counter,
    submitted: Counter,
    client_signatures: Counter,
    rpc_requests: Counter,
    diverged: Counter,
    /// Only the last divergence: one series, replaced at each (the labels say where and how).
    divergence: Family<DivergenceLabel, Gauge>,
    refused: Family<ReasonLabel, Counter>,
    rpc_errors: Family<ReasonLabel, Counter>,
    ingress_dropped: HashMap<(ReplicaId, &'static str), Counter>,
    ingress_dropped_family: Family<PeerReasonLabel, Counter>,
    ingress_signatures: HashMap<ReplicaId, Counter>,
    ingress_signatures_family: Family<PeerLabel, Counter>,
    batch_size: Histogram,
    commit_latency: Histogram,
    phases: Vec<Histogram>,
}

/// Shared between the driver, the verify pool, client RPC (writers) and the HTTP server (reader).
pub struct Metrics {
    registry: Registry,
    counters: Counters,
    replica: Arc<Mutex<ReplicaState>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Metrics of a replica that knows no peers (tests): per-peer counters are made on first use.
    fn default() -> Self {
        Metrics::new(0, 0)
    }
}

fn per_kind(family: &Family<KindLabel, Counter>) -> Vec<Counter> {
    Kind::ALL
        .iter()
        .map(|k| family.get_or_create_owned(&KindLabel { kind: k.name() }))
        .collect()
}

fn phase_histogram() -> Histogram {
    // 0.5 ms to ~4 s: a loopback testnet's phases are milliseconds, a partitioned one's seconds.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Metrics {
    /// Metrics of replica `id` in a network of `n` replicas.
    pub fn new(id: ReplicaId, n: usize) -> Metrics {
        let mut registry = Registry::default();
        let peers: Vec<ReplicaId> = (0..n as ReplicaId).filter(|p| *p != id).collect();
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<KindLabel, Counter>::default();
            registry.register(name, help, f.clone());
            per_kind(&f)
        };
        let sent = family(
            &mut registry,
            "quire_messages_sent",
            "Consensus messages sent, by kind",
        );
        let sent_bytes = family(
            &mut registry,
            "quire_message_bytes_sent",
            "Bytes of consensus messages sent, by kind",
        );
        let received = family(
            &mut registry,
            "quire_messages_received",
            "Verified consensus messages received, by kind",
        );
        let sent_to_family = Family::<PeerKindLabel, Counter>::default();
        registry.register(
            "quire_peer_messages_sent",
            "Consensus messages sent to each peer, by kind (not counting those a blocked link drops)",
            sent_to_family.clone(),
        );
        let sent_to = peers
            .iter()
            .map(|p| {
                let row = Kind::ALL
                    .iter()
                    .map(|k| {
                        sent_to_family.get_or_create_owned(&PeerKindLabel {
                            peer: *p,
                            kind: k.name(),
                        })
                    })
                    .collect();
                (*p, row)
            })
            .collect();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let blocks = counter(
            &mut registry,
            "quire_blocks_committed",
            "Blocks committed to the chain store",
        );
        let txs = counter(
            &mut registry,
            "quire_transactions_committed",
            "Transactions in committed blocks",
        );
        let submitted = counter(
            &mut registry,
            "quire_client_transactions_accepted",
            "Client transactions admitted",
        );
        let client_signatures = counter(
            &mut registry,
            "quire_client_signatures_checked",
            "Client signatures checked at admission (not found in the verdict cache); beside quire_client_transactions_accepted it shows how much checking overload wastes",
        );
        let diverged = counter(
            &mut registry,
            "quire_diverged",
            "Times this replica's chain differed from a checkpoint 2f+1 replicas certified (it then stops signing and rebuilds its chain)",
        );
        let divergence = Family::<DivergenceLabel, Gauge>::default();
        registry.register(
            "quire_divergence",
            "The last divergence: the height, this replica's block and the certified one (labels)",
            divergence.clone(),
        );
        let rpc_requests = counter(
            &mut registry,
            "quire_rpc_requests",
            "Client RPC requests served",
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "quire_client_refused",
            "Client transactions refused, by reason",
            refused.clone(),
        );
        let rpc_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "quire_rpc_errors",
            "Bad client requests and connections, by reason",
            rpc_errors.clone(),
        );
        let ingress_dropped_family = Family::<PeerReasonLabel, Counter>::default();
        registry.register(
            "quire_ingress_dropped",
            "Replica frames dropped before the consensus core, by peer and reason",
            ingress_dropped_family.clone(),
        );
        let mut ingress_dropped = HashMap::new();
        for p in &peers {
            for reason in ingress_reasons() {
                let c = ingress_dropped_family
                    .get_or_create_owned(&PeerReasonLabel { peer: *p, reason });
                ingress_dropped.insert((*p, reason), c);
            }
        }
        let ingress_signatures_family = Family::<PeerLabel, Counter>::default();
        registry.register(
            "quire_ingress_signatures",
            "Signatures checked for each peer's messages",
            ingress_signatures_family.clone(),
        );
        let ingress_signatures = peers
            .iter()
            .map(|p| {
                (
                    *p,
                    ingress_signatures_family.get_or_create_owned(&PeerLabel { peer: *p }),
                )
            })
            .collect();
        let batch_size =
            Histogram::new([1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0]);
        registry.register(
            "quire_batch_size",
            "Transactions per committed block",
            batch_size.clone(),
        );
        let commit_latency = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "quire_commit_latency_seconds",
            "From a client's submission at this replica to the commit of its block here",
            commit_latency.clone(),
        );
        let phase_family = Family::<PhaseLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            phase_histogram,
        );
        registry.register(
            "quire_phase_seconds",
            "Time a block spends in each phase at this replica: pre_prepare_to_prepared (its PrePrepare accepted until 2f matching Prepares), prepared_to_committed (until 2f+1 Commits), committed_to_executed (until its turn in sequence order), executed_to_durable (the synced write)",
            phase_family.clone(),
        );
        let phases = Phase::ALL
            .iter()
            .map(|p| phase_family.get_or_create_owned(&PhaseLabel { phase: p.name() }))
            .collect();
        let replica = Arc::new(Mutex::new(ReplicaState::default()));
        registry.register_collector(Box::new(snapshot::SnapshotCollector {
            id,
            replica: replica.clone(),
        }));
        Metrics {
            registry,
            counters: Counters {
                sent,
                sent_bytes,
                received,
                sent_to,
                sent_to_family,
                blocks,
                txs,
                submitted,
                client_signatures,
                rpc_requests,
                diverged,
                divergence,
                refused,
                rpc_errors,
                ingress_dropped,
                ingress_dropped_family,
                ingress_signatures,
                ingress_signatures_family,
                batch_size,
                commit_latency,
                phases,
            },
            replica,
        }
    }

    /// Adds metrics read at scrape time from elsewhere (the transport's counters).
    pub fn with_collector(mut self, collector: Box<dyn Collector>) -> Metrics {
        self.registry.register_collector(collector);
        self
    }

    fn lock_replica(&self) -> std::sync::MutexGuard<'_, ReplicaState> {
        // A snapshot has no invariant a panicking writer could break.
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver's snapshot (every 50 ms: not on the message path).
    pub fn set_replica(&self, state: ReplicaState) {
        *self.lock_replica() = state;
    }

    pub fn replica(&self) -> ReplicaState {
        self.lock_replica().clone()
    }

    /// `copies` messages of `kind`, each `bytes` long, left for other replicas.
    pub fn sent(&self, kind: Kind, copies: u64, bytes: usize) {
        let i = kind as usize;
        self.counters.sent[i].inc_by(copies);
        self.counters.sent_bytes[i].inc_by(copies * bytes as u64);
    }

    /// One message of `kind` handed to the link to `peer`.
    pub fn sent_to(&self, peer: ReplicaId, kind: Kind) {
        let i = kind as usize;
        match self.counters.sent_to.get(&peer) {
            Some(row) => {
                row[i].inc();
            }
            None => {
                self.counters
                    .sent_to_family
                    .get_or_create(&PeerKindLabel {
                        peer,
                        kind: kind.name(),
                    })
                    .inc();
            }
        }
    }

    pub fn received(&self, kind: Kind) {
        self.counters.received[kind as usize].inc();
    }

    pub fn block(&self, txs: usize) {
        self.counters.blocks.inc();
        self.counters.txs.inc_by(txs as u64);
        self.counters.batch_size.observe(txs as f64);
    }

    pub fn commit_latency(&self, seconds: f64) {
        self.counters.commit_latency.observe(seconds);
    }

    /// A block spent `seconds` in `phase` (the driver's clock; the core counts ticks only).
    pub fn phase(&self, phase: Phase, seconds: f64) {
        self.counters.phases[phase as usize].observe(seconds);
    }

    pub fn submitted(&self, accepted: u64) {
        self.counters.submitted.inc_by(accepted);
    }

    pub fn client_signatures_checked(&self, count: u64) {
        self.counters.client_signatures.inc_by(count);
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused_many(reason, 1);
    }

    pub fn refused_many(&self, reason: &'static str, count: u64) {
        self.counters
            .refused
            .get_or_create(&ReasonLabel { reason })
            .inc_by(count);
    }

    pub fn rpc_request(&self) {
        self.counters.rpc_requests.inc();
    }

    pub fn rpc_error(&self, reason: &'static str) {
        self.counters
            .rpc_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// This replica found its block at `height` (`ours`) differs from the one a quorum
    /// certified, and rebuilt its chain.
    pub fn diverged(&self, height: u64, ours: quire_chain::Hash, certified: quire_chain::Hash) {
        self.counters.diverged.inc();
        // Rare (a fork repaired): the lock inside the family is off the message path.
        self.counters.divergence.clear();
        self.counters
            .divergence
            .get_or_create(&DivergenceLabel {
                height,
                ours: ours.to_string(),
                certified: certified.to_string(),
            })
            .set(1);
    }

    pub fn ingress_dropped(&self, peer: ReplicaId, reason: &'static str) {
        match self.counters.ingress_dropped.get(&(peer, reason)) {
            Some(c) => {
                c.inc();
            }
            None => {
                self.counters
                    .ingress_dropped_family
                    .get_or_create(&PeerReasonLabel { peer, reason })
                    .inc();
            }
        }
    }

    pub fn ingress_signatures(&self, peer: ReplicaId, signatures: u64) {
        match self.counters.ingress_signatures.get(&peer) {
            Some(c) => {
                c.inc_by(signatures);
            }
            None => {
                self.counters
                    .ingress_signatures_family
                    .get_or_create(&PeerLabel { peer })
                    .inc_by(signatures);
            }
        }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; a collector that failed would leave its lines out.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_counters() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i, "{p:?}");
        }
    }

    #[test]
    fn renders_prometheus_text_with_the_names_readers_use() {
        let m = Metrics::new(1, 4);
        m.block(10);
        m.commit_latency(0.02);
        m.sent(Kind::Commit, 3, 10);
        m.sent_to(2, Kind::Commit);
        m.ingress_dropped(0, "throttled");
        m.rpc_error("malformed_request");
        m.phase(Phase::ExecutedToDurable, 0.003);
        let text = m.render();
        for line in [
            "quire_blocks_committed_total 1",
            "quire_batch_size_bucket{le=\"32\"} 1",
            "quire_commit_latency_seconds_count 1",
            "quire_messages_sent_total{kind=\"commit\"} 3",
            "quire_message_bytes_sent_total{kind=\"commit\"} 30",
            "quire_peer_messages_sent_total{peer=\"2\",kind=\"commit\"} 1",
            "quire_ingress_dropped_total{peer=\"0\",reason=\"throttled\"} 1",
            "quire_rpc_errors_total{reason=\"malformed_request\"} 1",
            "quire_phase_seconds_count{phase=\"executed_to_durable\"} 1",
            "quire_replica_id 1",
            "quire_behaviour{name=\"\"} 1",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        // Every family is declared once, with help and type.
        assert_eq!(
            text.matches("# TYPE quire_messages_sent_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn a_replica_without_known_peers_counts_them_on_first_use() {
        let m = Metrics::default();
        m.sent_to(7, Kind::Prepare);
        m.ingress_signatures(7, 5);
        let text = m.render();
        assert!(text.contains("quire_peer_messages_sent_total{peer=\"7\",kind=\"prepare\"} 1"));
        assert!(text.contains("quire_ingress_signatures_total{peer=\"7\"} 5"));
    }

    #[test]
    fn a_divergence_is_one_gauge_labelled_with_the_last_one() {
        let m = Metrics::new(0, 4);
        assert!(!m.render().contains("quire_divergence{"));
        m.diverged(8, quire_chain::Hash([1; 32]), quire_chain::Hash([2; 32]));
        m.diverged(16, quire_chain::Hash([3; 32]), quire_chain::Hash([4; 32]));
        let text = m.render();
        assert!(text.contains("quire_diverged_total 2"), "{text}");
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("quire_divergence{"))
            .collect();
        let ours = quire_chain::Hash([3; 32]);
        let certified = quire_chain::Hash([4; 32]);
        assert_eq!(
            series,
            [format!(
                "quire_divergence{{height=\"16\",ours=\"{ours}\",certified=\"{certified}\"}} 1"
            )]
        );
    }
}
