//! Transfers: read the sender's proven nonce, sign, submit, and (optionally) wait for a proven
//! commit — never losing a transfer a replica accepted, and never applying one twice.
//!
//! A replica may drop a transaction it accepted: it crashes (mempools are not persisted), its
//! mempool is full, or the transfer's nonce turns out to be used already (a replica that is
//! behind accepts what the others refuse). So while waiting, the client watches what replicas
//! hold. When none holds it, it submits the same signed bytes again: the nonce makes that safe,
//! since a transfer applies at most once. When its nonce is proven used and f+1 replicas that
//! are at or past that state say they do not have it committed, it can never apply, and the
//! client signs the same transfer again with the next nonce. Each step is recorded, so the user
//! is told what happened.

use std::time::{Duration, Instant};

use quire_chain::tx::{Transaction, Transfer, TxId};
use quire_chain::{Address, Keypair, ReplicaId};
use quire_wire::rpc::{Request, Response, TxStatus};
use tokio::task::JoinSet;

use super::decided::{Cue, Watch};
use super::{Client, Submission, TxState};
use crate::error::{ClientError, Faults};
use crate::verify::{CommittedTx, Verified};

/// Most times one transfer is signed again with a fresh nonce before the client gives up (each
/// needs proof that the previous signature can never apply).
const REPLACEMENTS_MAX: usize = 3;
/// Polls in a row on which no replica holds the transfer before it counts as dropped (one
/// answer may race with a forward or a commit).
const UNKNOWN_POLLS_DROPPED: u32 = 2;
/// How often a first submission that every replica refused as "not now" (mempool full, busy,
/// sender limit) is tried again, with a growing pause, before the refusals are reported.
const TRANSIENT_RETRIES_MAX: u32 = 8;

/// One thing the client did to get a transfer committed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStep {
    /// Signed with the sender's next nonce (proven at `proven_at`) and submitted.
    Submitted {
        tx: TxId,
        nonce: u64,
        proven_at: u64,
        sent_to: Vec<ReplicaId>,
        accepted_by: Vec<ReplicaId>,
    },
    /// Submitted again, the same signed bytes: no replica held it any more (`dropped`), or it
    /// was slow to commit (a faulty primary may be sitting on it).
    Resubmitted {
        tx: TxId,
        dropped: bool,
        sent_to: Vec<ReplicaId>,
        accepted_by: Vec<ReplicaId>,
    },
    /// A quorum of replicas reported the batch holding `tx` prepared at `height` in `view`
    /// (PBFT's tentative execution, see [`super::decided`]): it commits there. `after` counts
    /// from the first submission. The outcome is known once the commit is proven.
    Decided {
        tx: TxId,
        height: u64,
        view: u64,
        replicas: Vec<ReplicaId>,
        after: Duration,
    },
    /// `old` can never apply: its nonce was used by another transaction (the sender's nonce is
    /// `nonce` at `proven_at`) and `vouchers`, f+1 replicas at or past that height, do not have
    /// it committed. The same transfer was signed again as `new` with `nonce`.
    Replaced {
        old: TxId,
        old_nonce: u64,
        new: TxId,
        nonce: u64,
        proven_at: u64,
        vouchers: Vec<ReplicaId>,
    },
}

/// A transfer on its way: the transaction now current, and what was done so far.
#[derive(Debug, Clone)]
pub struct PendingTransfer {
    from: Keypair,
    to: Address,
    amount: u64,
    pub tx: Transaction,
    pub nonce: u64,
    pub steps: Vec<TransferStep>,
    /// When it was first submitted.
    pub submitted_at: Instant,
    /// The height the sender's nonce was proven at (none when the nonce was given): the
    /// transaction cannot be in a block at or below it.
    proven_at: Option<u64>,
}

impl PendingTransfer {
    pub fn id(&self) -> TxId {
        self.tx.id()
    }

    /// The replicas that accepted the latest submission.
    pub fn accepted_by(&self) -> Vec<ReplicaId> {
        self.steps
            .iter()
            .rev()
            .find_map(|s| match s {
                TransferStep::Submitted { accepted_by, .. }
                | TransferStep::Resubmitted { accepted_by, .. } => Some(accepted_by.clone()),
                TransferStep::Replaced { .. } | TransferStep::Decided { .. } => None,
            })
            .unwrap_or_default()
    }

    fn resubmissions(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    TransferStep::Resubmitted { .. } | TransferStep::Replaced { .. }
                )
            })
            .count()
    }

    /// The decided batch's step, once a quorum reported the current transaction prepared.
    pub fn decided(&self) -> Option<&TransferStep> {
        let id = self.id();
        self.steps
            .iter()
            .find(|s| matches!(s, TransferStep::Decided { tx, .. } if *tx == id))
    }
}

/// What `transfer` did.
#[derive(Debug, Clone)]
pub struct TransferReceipt {
    pub tx: TxId,
    pub nonce: u64,
    /// The replicas that accepted the submission.
    pub accepted_by: Vec<ReplicaId>,
    /// The proven commit and outcome, when asked to wait.
    pub committed: Option<Verified<CommittedTx>>,
    pub steps: Vec<TransferStep>,
}

/// Whether a transfer whose nonce is used can never apply.
enum Verdict {
    /// It can: submit it again.
    MayApply,
    /// Some replica claims it committed: let the next status poll prove it.
    ClaimedCommitted,
    /// Not enough replicas at or past the proven state have answered yet.
    Undecided,
    /// It never will: signed again.
    Replaced(TransferStep),
}

impl Client {
    /// Signs a transfer with the sender's next nonce, read from its freshest proven state.
    pub async fn prepare_transfer(
        &self,
        from: &Keypair,
        to: Address,
        amount: u64,
    ) -> Result<(Transaction, u64), ClientError> {
        let proven = self.account(from.address()).await?;
        let transfer = Transfer {
            from: from.address(),
            to,
            amount,
            nonce: proven.account.nonce,
        };
        Ok((
            transfer.sign(from, &self.network.chain_id()),
            proven.header.height,
        ))
    }

    /// Signs and submits a transfer (see [`Client::submit_tx`]). If every replica refuses it
    /// because its nonce is used, it is signed again with the next one, once that is proven safe.
    pub async fn start_transfer(
        &self,
        from: &Keypair,
        to: Address,
        amount: u64,
    ) -> Result<PendingTransfer, ClientError> {
        let (tx, proven_at) = self.prepare_transfer(from, to, amount).await?;
        let nonce = tx.as_transfer().map_or(0, |t| t.transfer.nonce);
        self.submit_pending(from, to, amount, tx, nonce, Some(proven_at))
            .await
    }

    /// [`Client::start_transfer`] with `nonce` as given rather than the proven next one, for
    /// recovery tools and tests. A nonce that turns out to be used is handled like any other:
    /// once proven safe, the transfer is signed again with the next one.
    pub async fn start_transfer_at(
        &self,
        from: &Keypair,
        to: Address,
        amount: u64,
        nonce: u64,
    ) -> Result<PendingTransfer, ClientError> {
        let tx = Transfer {
            from: from.address(),
            to,
            amount,
            nonce,
        }
        .sign(from, &self.network.chain_id());
        self.submit_pending(from, to, amount, tx, nonce, None).await
    }

    async fn submit_pending(
        &self,
        from: &Keypair,
        to: Address,
        amount: u64,
        tx: Transaction,
        nonce: u64,
        proven_at: Option<u64>,
    ) -> Result<PendingTransfer, ClientError> {
        let mut pending = PendingTransfer {
            from: from.clone(),
            to,
            amount,
            tx,
            nonce,
            steps: Vec::new(),
            submitted_at: Instant::now(),
            proven_at,
        };
        for _ in 0..=REPLACEMENTS_MAX {
            let submission = self.submit_until_taken(&pending.tx).await;
            pending.steps.push(TransferStep::Submitted {
                tx: pending.id(),
                nonce: pending.nonce,
                proven_at: pending.proven_at.unwrap_or(0),
                sent_to: submission.sent_to.clone(),
                accepted_by: submission.accepted_by.clone(),
            });
            if submission.accepted() {
                return Ok(pending);
            }
            if !submission.stale() {
                return Err(refused(&pending, submission));
            }
            match self.replace_if_dead(&mut pending).await? {
                Verdict::Replaced(step) => pending.steps.push(step),
                _ => return Err(refused(&pending, submission)),
            }
        }
        Err(ClientError::Refused {
            tx: pending.id(),
            refusals: Vec::new(),
        })
    }

    /// [`Client::submit_tx`], again after a growing pause while every replica refuses it only
    /// for now (back-pressure).
    async fn submit_until_taken(&self, tx: &Transaction) -> Submission {
        let mut pause = self.options.poll_interval;
        let mut submission = self.submit_tx(tx).await;
        for _ in 0..TRANSIENT_RETRIES_MAX {
            if submission.accepted() || !submission.transient() {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            submission = self.submit_tx(tx).await;
        }
        submission
    }

    /// Waits until the transfer is proven committed, resubmitting or replacing it as needed
    /// (module docs), or fails when `wait` has passed.
    pub async fn finish_transfer(
        &self,
        pending: &mut PendingTransfer,
        wait: Duration,
    ) -> Result<Verified<CommittedTx>, ClientError> {
        self.finish_transfer_with(pending, wait, &mut |_| {}).await
    }

    /// [`Client::finish_transfer`], telling `on_step` of each step it takes — among them
    /// [`TransferStep::Decided`], when a quorum reports the transaction's batch prepared.
    ///
    /// Meanwhile every replica's prepared reports and commits are followed as they happen
    /// ([`super::decided`]): f+1 replicas saying they committed the transaction is the cue to
    /// ask for the proof at once; without cues (replicas that do not report, or lie), the status is
    /// polled every `poll_interval` as before.
    pub async fn finish_transfer_with(
        &self,
        pending: &mut PendingTransfer,
        wait: Duration,
        on_step: &mut (dyn FnMut(&TransferStep) + Send),
    ) -> Result<Verified<CommittedTx>, ClientError> {
        let start = Instant::now();
        let mut last_submit = start;
        let mut unknown_polls = 0;
        let mut held_by = Vec::new();
        let mut replacements = 0;
        let mut told = pending.steps.len();
        let mut watch = pending.proven_at.map(|h| self.watch_from(h + 1));
        loop {
            tell(pending, &mut told, on_step);
            match self.tx_status(pending.id()).await {
                Ok(report) => match report.state {
                    TxState::Committed(committed) => {
                        // Reports already in (a quorum's last one may have come just before
                        // the commit cue): the step says when the batch was decided.
                        while let Some(cue) =
                            watch.as_mut().and_then(|w| w.queued_cue(pending.id()))
                        {
                            record(pending, cue);
                        }
                        tell(pending, &mut told, on_step);
                        return Ok(*committed);
                    }
                    TxState::Pending { held_by: h } => {
                        held_by = h;
                        unknown_polls = 0;
                    }
                    TxState::Unknown => {
                        held_by.clear();
                        unknown_polls += 1;
                    }
                },
                // Unreachable for now: keep trying until the deadline.
                Err(ClientError::Unreachable(_)) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= wait {
                return Err(ClientError::NotCommitted {
                    tx: pending.id(),
                    waited_ms: start.elapsed().as_millis() as u64,
                    held_by,
                    resubmissions: pending.resubmissions(),
                });
            }
            let dropped = unknown_polls >= UNKNOWN_POLLS_DROPPED;
            if dropped || last_submit.elapsed() >= self.options.resubmit_after {
                let replace = replacements < REPLACEMENTS_MAX;
                if self.resubmit(pending, dropped, replace).await? {
                    replacements += 1;
                    // The new transaction was signed against a later proven state.
                    watch = pending.proven_at.map(|h| self.watch_from(h + 1));
                }
                last_submit = Instant::now();
                unknown_polls = 0;
            }
            let poll_at = Instant::now() + self.options.poll_interval;
            self.until_cue(watch.as_mut(), pending, poll_at, &mut told, on_step)
                .await;
        }
    }

    /// Waits until f+1 replicas say the transaction committed, or `poll_at`; records (and
    /// tells) the step when a quorum reports its batch prepared.
    async fn until_cue(
        &self,
        watch: Option<&mut Watch>,
        pending: &mut PendingTransfer,
        poll_at: Instant,
        told: &mut usize,
        on_step: &mut (dyn FnMut(&TransferStep) + Send),
    ) {
        let Some(watch) = watch else {
            return tokio::time::sleep_until(poll_at.into()).await;
        };
        while let Some(cue) = watch.next_cue(pending.id(), poll_at).await {
            if matches!(cue, Cue::Committed) {
                return;
            }
            record(pending, cue);
            tell(pending, told, on_step);
        }
    }

    /// Submits the same signed transfer again; if every replica refuses it because its nonce is
    /// used and `replace` allows, signs it again with the next nonce once that is proven safe
    /// (see [`Client::replace_if_dead`]) and submits that. Returns whether it was replaced.
    async fn resubmit(
        &self,
        pending: &mut PendingTransfer,
        dropped: bool,
        replace: bool,
    ) -> Result<bool, ClientError> {
        let submission = self.submit_tx(&pending.tx).await;
        pending.steps.push(TransferStep::Resubmitted {
            tx: pending.id(),
            dropped,
            sent_to: submission.sent_to.clone(),
            accepted_by: submission.accepted_by.clone(),
        });
        if submission.accepted() || !submission.stale() || !replace {
            return Ok(false);
        }
        let Verdict::Replaced(step) = self.replace_if_dead(pending).await? else {
            return Ok(false);
        };
        pending.steps.push(step);
        let submission = self.submit_tx(&pending.tx).await;
        pending.steps.push(TransferStep::Submitted {
            tx: pending.id(),
            nonce: pending.nonce,
            proven_at: pending.proven_at.unwrap_or(0),
            sent_to: submission.sent_to,
            accepted_by: submission.accepted_by,
        });
        Ok(true)
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
        let mut pending = self.start_transfer(from, to, amount).await?;
        let committed = match wait {
            Some(wait) => Some(self.finish_transfer(&mut pending, wait).await?),
            None => None,
        };
        Ok(TransferReceipt {
            tx: pending.id(),
            nonce: pending.nonce,
            accepted_by: pending.accepted_by(),
            committed,
            steps: pending.steps,
        })
    }

    /// Decides whether `pending`'s transaction can never apply and, if so, signs the transfer
    /// again with the sender's proven next nonce.
    ///
    /// It can never apply in the future once the sender's proven nonce is past its own (nonces
    /// only grow). It did not apply in the past if f+1 replicas — at least one honest — that had
    /// executed at least up to that proven state say they do not have it committed: an honest
    /// replica's chain up to its height includes every block up to there.
    async fn replace_if_dead(&self, pending: &mut PendingTransfer) -> Result<Verdict, ClientError> {
        let proven = self.account(pending.from.address()).await?;
        if proven.account.nonce <= pending.nonce {
            return Ok(Verdict::MayApply);
        }
        let height = proven.header.height;
        let vouchers = match self.not_committed_by(pending.id(), height).await {
            Ok(v) => v,
            Err(()) => return Ok(Verdict::ClaimedCommitted),
        };
        if vouchers.len() < self.genesis().validators.weak_quorum() {
            return Ok(Verdict::Undecided);
        }
        let old = pending.id();
        let old_nonce = pending.nonce;
        pending.nonce = proven.account.nonce;
        pending.proven_at = Some(height);
        pending.tx = Transfer {
            from: pending.from.address(),
            to: pending.to,
            amount: pending.amount,
            nonce: pending.nonce,
        }
        .sign(&pending.from, &self.network.chain_id());
        Ok(Verdict::Replaced(TransferStep::Replaced {
            old,
            old_nonce,
            new: pending.id(),
            nonce: pending.nonce,
            proven_at: height,
            vouchers,
        }))
    }

    /// Replicas whose own height is at least `height` and that then say they have not committed
    /// `tx` (they hold it, or do not know it); `Err` if any claims it is committed. Each replica
    /// reports its height first, so its status answer covers at least that much chain.
    async fn not_committed_by(&self, tx: TxId, height: u64) -> Result<Vec<ReplicaId>, ()> {
        let mut set = JoinSet::new();
        for id in self.all_ids() {
            let client = self.clone();
            set.spawn(async move { (id, client.vouch_not_committed(id, tx, height).await) });
        }
        let need = self.genesis().validators.weak_quorum();
        let mut vouchers = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((id, Some(true))) => vouchers.push(id),
                Ok((_, None)) => return Err(()),
                _ => {}
            }
            if vouchers.len() >= need {
                break;
            }
        }
        vouchers.sort_unstable();
        Ok(vouchers)
    }

    /// `Some(true)`: at or past `height` and not committed; `Some(false)`: behind or no answer;
    /// `None`: claims it is committed.
    async fn vouch_not_committed(&self, id: ReplicaId, tx: TxId, height: u64) -> Option<bool> {
        let at_or_past = match self.call(id, &Request::Status).await {
            Ok(Response::Status(s)) => s.height >= height,
            _ => false,
        };
        if !at_or_past {
            return Some(false);
        }
        match self.call(id, &Request::TxStatus(tx)).await {
            Ok(Response::TxStatus(TxStatus::Unknown | TxStatus::Pending)) => Some(true),
            Ok(Response::TxStatus(TxStatus::Committed { .. })) => None,
            _ => Some(false),
        }
    }
}

/// Records the first quorum of prepared reports for the current transaction as a step.
fn record(pending: &mut PendingTransfer, cue: Cue) {
    let Cue::Decided(decided, at) = cue else {
        return;
    };
    if pending.decided().is_some() {
        return;
    }
    pending.steps.push(TransferStep::Decided {
        tx: pending.id(),
        height: decided.height,
        view: decided.view,
        replicas: decided.replicas,
        after: at.saturating_duration_since(pending.submitted_at),
    });
}

/// Passes the steps not told yet to `on_step`.
fn tell(
    pending: &PendingTransfer,
    told: &mut usize,
    on_step: &mut (dyn FnMut(&TransferStep) + Send),
) {
    for step in pending.steps.iter().skip(*told) {
        on_step(step);
    }
    *told = pending.steps.len();
}

fn refused(pending: &PendingTransfer, submission: Submission) -> ClientError {
    if submission.refusals.is_empty() {
        return ClientError::Unreachable(Faults(submission.faults));
    }
    ClientError::Refused {
        tx: pending.id(),
        refusals: submission.refusals,
    }
}
