//! A replica's local parameters: timers, pipelining, its own batch size, its mempool. Time is
//! counted in ticks; the node ticks every `tick_ms` of wall time, the simulator in virtual time.
//!
//! The rules every replica must share (the batch limit, raw payloads, the checkpoint interval
//! and the watermark window) are not here: they are [`quire_chain::genesis::Protocol`], in the
//! genesis, read through the [`crate::Verifier`].

use quire_chain::genesis::Protocol;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// A batch this replica proposes closes at this many transactions (capped by the genesis's
    /// `batch_txs_max`, which is what every replica enforces on others)…
    pub batch_txs_max: usize,
    /// …or when its oldest transaction has waited the batch timeout: half this replica's recent
    /// commit time (see [`crate::batch_timeout`]), at least this many ticks…
    pub batch_timeout_ticks: u64,
    /// …and at most this many (equal to `batch_timeout_ticks`: a fixed timeout).
    pub batch_timeout_max_ticks: u64,
    /// Sequence numbers in flight (proposed, not yet executed) at once.
    pub pipeline_depth: u64,
    /// While fewer than this many are in flight, a primary proposes what it has at once instead
    /// of waiting for the batch timeout: a lightly loaded network gains nothing from waiting
    /// (the next tick is up to a tick away). Past it, batches fill while they wait, so under load
    /// batches grow instead of blocks multiplying. 1 proposes at once only into an empty pipeline.
    pub eager_depth: u64,
    /// Base view-change timeout; it doubles with every view change that makes no progress…
    pub view_timeout_ticks: u64,
    /// …up to this cap.
    pub view_timeout_max_ticks: u64,
    /// Every this many ticks a replica reports its status (the primary's doubles as heartbeat).
    pub status_interval_ticks: u64,
    /// Votes of a slot that has not committed after this many ticks are sent again.
    pub retransmit_ticks: u64,
    /// A state-transfer request unanswered for this long goes to another peer.
    pub fetch_timeout_ticks: u64,
    /// Most transactions a replica keeps waiting; beyond that it refuses new ones.
    pub mempool_max: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            batch_txs_max: 512,
            batch_timeout_ticks: 1,
            batch_timeout_max_ticks: 10,
            pipeline_depth: 16,
            eager_depth: 2,
            view_timeout_ticks: 100,
            view_timeout_max_ticks: 1600,
            status_interval_ticks: 10,
            retransmit_ticks: 20,
            fetch_timeout_ticks: 50,
            mempool_max: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParamsError {
    #[error("{0} must be positive")]
    Zero(&'static str),
    #[error("batch_timeout_max_ticks ({max}) must not be below batch_timeout_ticks ({min})")]
    BatchTimeout { min: u64, max: u64 },
    #[error("pipeline_depth ({depth}) must not exceed the genesis's log_window ({window})")]
    Pipeline { depth: u64, window: u64 },
}

impl Params {
    pub fn validate(&self, protocol: &Protocol) -> Result<(), ParamsError> {
        let positive = [
            ("batch_txs_max", self.batch_txs_max as u64),
            ("pipeline_depth", self.pipeline_depth),
            ("view_timeout_ticks", self.view_timeout_ticks),
            ("status_interval_ticks", self.status_interval_ticks),
            ("retransmit_ticks", self.retransmit_ticks),
            ("fetch_timeout_ticks", self.fetch_timeout_ticks),
            ("mempool_max", self.mempool_max as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ParamsError::Zero(name));
        }
        if self.batch_timeout_max_ticks < self.batch_timeout_ticks {
            return Err(ParamsError::BatchTimeout {
                min: self.batch_timeout_ticks,
                max: self.batch_timeout_max_ticks,
            });
        }
        if self.pipeline_depth > protocol.log_window {
            return Err(ParamsError::Pipeline {
                depth: self.pipeline_depth,
                window: protocol.log_window,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_timeout_ceiling_must_not_be_below_its_floor() {
        let protocol = Protocol::default();
        assert_eq!(Params::default().validate(&protocol), Ok(()));
        let fixed = Params {
            batch_timeout_ticks: 5,
            batch_timeout_max_ticks: 5,
            ..Params::default()
        };
        assert_eq!(fixed.validate(&protocol), Ok(()));
        let inverted = Params {
            batch_timeout_ticks: 5,
            batch_timeout_max_ticks: 4,
            ..Params::default()
        };
        assert_eq!(
            inverted.validate(&protocol),
            Err(ParamsError::BatchTimeout { min: 5, max: 4 })
        );
    }
}
