//! Submitting one transaction so that it cannot be lost with one replica: to f+1 replicas at once
//! (at least one honest one holds it), then to the rest if none of those accepts.

use quire_chain::ReplicaId;
use quire_chain::tx::{Transaction, TxId};
use quire_wire::rpc::{Refusal, Request};
use tokio::task::JoinSet;

use super::{Client, submitted};
use crate::error::{ClientError, Fault, Refused};

/// What the replicas asked said to one submission.
#[derive(Debug, Clone)]
pub struct Submission {
    pub tx: TxId,
    /// Replicas the transaction was sent to.
    pub sent_to: Vec<ReplicaId>,
    /// Replicas known to have accepted it (the first, and any that answered before it).
    pub accepted_by: Vec<ReplicaId>,
    pub refusals: Vec<Refused>,
    pub faults: Vec<Fault>,
}

impl Submission {
    pub fn accepted(&self) -> bool {
        !self.accepted_by.is_empty()
    }

    /// Whether every refusal says "not now" (full, busy, too many from this sender): worth
    /// trying again shortly.
    pub fn transient(&self) -> bool {
        !self.refusals.is_empty() && self.refusals.iter().all(|r| r.refusal.is_transient())
    }

    /// Whether some replica says the transaction's nonce is already used.
    pub fn stale(&self) -> bool {
        self.refusals
            .iter()
            .any(|r| matches!(r.refusal, Refusal::StaleNonce { .. }))
    }
}

impl Client {
    /// Submits `tx` to f+1 replicas at once (the preferred one, then round-robin, replicas that
    /// failed lately last), then to all the others at once if none of the first accepted it.
    /// Returns as soon as one accepts; the other calls of its wave finish in the background, so
    /// the transaction still reaches every replica of the wave that answers.
    ///
    /// A refusal is not final — the refusing replica may be faulty or behind — so the caller
    /// weighs them (see [`Submission::stale`]).
    pub async fn submit_tx(&self, tx: &Transaction) -> Submission {
        let order = self.rotation();
        let first = self.genesis().validators.weak_quorum().min(order.len());
        let mut submission = Submission {
            tx: tx.id(),
            sent_to: Vec::new(),
            accepted_by: Vec::new(),
            refusals: Vec::new(),
            faults: Vec::new(),
        };
        for wave in [&order[..first], &order[first..]] {
            if wave.is_empty() {
                continue;
            }
            self.submit_wave(tx, wave, &mut submission).await;
            if submission.accepted() {
                break;
            }
        }
        submission
    }

    /// [`Client::submit_tx`], as a result: the first replica that accepted, or every refusal
    /// (or why no replica could be reached).
    pub async fn submit_one(&self, tx: &Transaction) -> Result<ReplicaId, ClientError> {
        let submission = self.submit_tx(tx).await;
        if let Some(first) = submission.accepted_by.first() {
            return Ok(*first);
        }
        if submission.refusals.is_empty() {
            return Err(ClientError::from_faults(
                "the submission",
                submission.faults,
            ));
        }
        Err(ClientError::Refused {
            tx: submission.tx,
            refusals: submission.refusals,
        })
    }

    async fn submit_wave(&self, tx: &Transaction, wave: &[ReplicaId], into: &mut Submission) {
        let request = Request::Submit(vec![tx.clone()]);
        let id = tx.id();
        let mut set = JoinSet::new();
        for &replica in wave {
            let client = self.clone();
            let request = request.clone();
            set.spawn(async move {
                let answer = client
                    .call(replica, &request)
                    .await
                    .and_then(|r| submitted(replica, &request, r, 1));
                (replica, answer)
            });
            into.sent_to.push(replica);
        }
        while let Some(joined) = set.join_next().await {
            let Ok((replica, answer)) = joined else {
                continue;
            };
            match answer.map(|a| a.results.into_iter().next()) {
                Ok(Some(Ok(got))) if got == id => into.accepted_by.push(replica),
                Ok(Some(Err(refusal))) => into.refusals.push(Refused { replica, refusal }),
                Ok(_) => into
                    .faults
                    .push(Fault::Call(crate::error::CallError::Remote {
                        replica,
                        message: "acknowledged another transaction id".into(),
                    })),
                Err(e) => into.faults.push(Fault::Call(e)),
            }
            if into.accepted() {
                // The rest of the wave carries on without us.
                set.detach_all();
                return;
            }
        }
    }
}
