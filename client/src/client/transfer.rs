//! Transfers: read the sender's proven nonce, sign, submit, and (optionally) wait for a proven
//! commit, re-submitting everywhere when it is slow to come.

use std::time::{Duration, Instant};

use quire_chain::tx::{Transaction, Transfer, TxId};
use quire_chain::{Address, Keypair, ReplicaId};

use super::{Client, TxState};
use crate::error::ClientError;
use crate::verify::{CommittedTx, Verified};

/// What `transfer` did.
#[derive(Debug, Clone)]
pub struct TransferReceipt {
    pub tx: TxId,
    pub nonce: u64,
    /// The replica that accepted the submission.
    pub accepted_by: ReplicaId,
    /// The proven commit and outcome, when asked to wait.
    pub committed: Option<Verified<CommittedTx>>,
}

impl Client {
    /// Signs a transfer with the sender's next nonce, read from its proven account state.
    pub async fn prepare_transfer(
        &self,
        from: &Keypair,
        to: Address,
        amount: u64,
    ) -> Result<Transaction, ClientError> {
        let proven = self.account(from.address()).await?;
        let transfer = Transfer {
            from: from.address(),
            to,
            amount,
            nonce: proven.account.nonce,
        };
        Ok(transfer.sign(from, &self.network.chain_id()))
    }

    /// Polls until `tx` is proven committed, re-submitting it to every replica each time
    /// `resubmit_after` passes without a commit (a faulty primary may be ignoring it; the other
    /// replicas' request timers then force a view change).
    pub async fn wait_committed(
        &self,
        tx: &Transaction,
        wait: Duration,
    ) -> Result<Verified<CommittedTx>, ClientError> {
        let id = tx.id();
        let start = Instant::now();
        let mut last_submit = start;
        loop {
            match self.tx_status(id).await {
                Ok(report) => {
                    if let TxState::Committed(committed) = report.state {
                        return Ok(*committed);
                    }
                }
                // Unreachable for now: keep trying until the deadline.
                Err(ClientError::Unreachable(_)) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= wait {
                return Err(ClientError::NotCommitted {
                    tx: id,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            if last_submit.elapsed() >= self.options.resubmit_after {
                // Refusals are expected here (replicas that already have it say so).
                self.submit_everywhere(std::slice::from_ref(tx)).await;
                last_submit = Instant::now();
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Sends `amount` from `from` to `to`. With `wait`, returns once the commit and its outcome
    /// (applied, or rejected with the reason) are proven, or fails when `wait` has passed.
    pub async fn transfer(
        &self,
        from: &Keypair,
        to: Address,
        amount: u64,
        wait: Option<Duration>,
    ) -> Result<TransferReceipt, ClientError> {
        let tx = self.prepare_transfer(from, to, amount).await?;
        let nonce = tx.as_transfer().map_or(0, |t| t.transfer.nonce);
        let accepted_by = self.submit_one(&tx).await?;
        let committed = match wait {
            Some(wait) => Some(self.wait_committed(&tx, wait).await?),
            None => None,
        };
        Ok(TransferReceipt {
            tx: tx.id(),
            nonce,
            accepted_by,
            committed,
        })
    }
}
