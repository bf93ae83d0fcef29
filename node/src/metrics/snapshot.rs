//! The driver's snapshot as metrics: protocol state gauges and the core's own counters (drops,
//! rejects, misbehaviour by kind and culprit), encoded at scrape time.

use std::fmt::Error;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use quire_chain::ReplicaId;

use super::ReplicaState;

#[derive(Debug)]
pub(super) struct SnapshotCollector {
    pub id: ReplicaId,
    pub replica: Arc<Mutex<ReplicaState>>,
}

pub(super) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

pub(super) fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One family of `kind` (counter or gauge) with a value per label set.
pub(super) fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        let row = m.encode_family(&labels)?;
        if kind == MetricType::Counter {
            ConstCounter::new(v).encode(row)?;
        } else {
            ConstGauge::new(v).encode(row)?;
        }
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let r = self
            .replica
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let e = &mut enc;
        gauge(e, "quire_replica_id", "This replica's id.", self.id as u64)?;
        gauge(e, "quire_view", "Current view.", r.view)?;
        gauge(
            e,
            "quire_changing_view",
            "1 while changing views.",
            r.changing_view as u64,
        )?;
        gauge(
            e,
            "quire_primary",
            "Primary of the current view.",
            r.primary as u64,
        )?;
        gauge(e, "quire_height", "Executed height.", r.height)?;
        gauge(
            e,
            "quire_stable_checkpoint",
            "Last stable checkpoint.",
            r.stable_checkpoint,
        )?;
        gauge(
            e,
            "quire_mempool_transactions",
            "Transactions waiting.",
            r.mempool,
        )?;
        gauge(
            e,
            "quire_mempool_admission_limit",
            "Transactions client RPC lets the mempool hold: seconds of the work executed under a backlog (0: the pool's bound).",
            r.admission_limit,
        )?;
        gauge(
            e,
            "quire_commit_ticks",
            "Smoothed ticks from PrePrepare to execution of recent blocks.",
            r.commit_ticks,
        )?;
        gauge(
            e,
            "quire_batch_timeout_ticks",
            "How long a batch may wait under load: half the commit ticks, within local bounds.",
            r.batch_timeout_ticks,
        )?;
        let s = &r.stats;
        counter(
            e,
            "quire_view_changes",
            "View changes this replica started.",
            s.view_changes,
        )?;
        counter(
            e,
            "quire_new_views",
            "New views this replica entered.",
            s.new_views,
        )?;
        counter(
            e,
            "quire_blocks_fetched",
            "Blocks received by state transfer.",
            s.blocks_fetched,
        )?;
        counter(
            e,
            "quire_batches_proposed",
            "Batches proposed as primary.",
            s.batches_proposed,
        )?;
        let rejects = quire_consensus::Reject::ALL
            .iter()
            .map(|x| (x.name(), s.rejects.get(x).copied().unwrap_or(0)));
        let drops = quire_consensus::Drop::ALL
            .iter()
            .map(|x| (x.name(), s.drops.get(x).copied().unwrap_or(0)));
        family(
            e,
            "quire_messages_dropped",
            "Messages dropped, by reason.",
            MetricType::Counter,
            rejects
                .chain(drops)
                .map(|(reason, v)| ([("reason", reason)], v)),
        )?;
        family(
            e,
            "quire_view_change_causes",
            "View changes this replica started, by what started them.",
            MetricType::Counter,
            quire_consensus::ViewChangeCause::ALL.iter().map(|c| {
                (
                    [("cause", c.name())],
                    s.view_change_causes.get(c).copied().unwrap_or(0),
                )
            }),
        )?;
        family(
            e,
            "quire_misbehaviour",
            "Misbehaviour detected, by kind and culprit.",
            MetricType::Counter,
            s.misbehaviour.iter().map(|((kind, culprit), v)| {
                (
                    [
                        ("kind", kind.name().to_string()),
                        ("culprit", culprit.to_string()),
                    ],
                    *v,
                )
            }),
        )?;
        family(
            e,
            "quire_behaviour",
            "Current behaviour (1 for the active one).",
            MetricType::Gauge,
            [([("name", r.behaviour.as_str())], 1)],
        )
    }
}
