//! The client: fail-over across replicas, fan-out where several must answer, and the operations
//! built on them (submodules). No answer is believed before [`crate::verify`] has checked it.
//!
//! Nothing waits out a replica that does not answer while the others have said enough. Reads that
//! several replicas must answer go to all of them at once and stop at n − f answers (all the
//! protocol can count on) or as soon as what came in proves the fact; a read one replica can
//! answer asks the next one after a short hedge, not after a timeout; a submission goes to f+1
//! replicas at once, so at least one honest replica holds it. Replicas that failed lately
//! ([`crate::health`]) are tried last.

mod chain;
mod decided;
mod query;
mod submit;
mod transfer;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quire_chain::block::Header;
use quire_chain::tx::{Transaction, TxId};
use quire_chain::{Genesis, ReplicaId};
use quire_wire::rpc::{Attestation, NodeStatus, Refusal, Request, Response, Statement};
use tokio::task::JoinSet;

use crate::conn::{Connections, unexpected};
use crate::error::{CallError, ClientError, Fault};
use crate::health::Health;
use crate::network::Network;
use crate::verify::{attesters, contradicting};

pub use chain::{ChainReport, SetAside};
pub use decided::{Decided, PreparedTally};
pub use query::{TxReport, TxState};
pub use submit::Submission;
pub use transfer::{PendingTransfer, TransferReceipt, TransferStep};

/// Timing knobs. The defaults suit a local testnet.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest wait for one call to one replica (connecting included).
    pub call_timeout: Duration,
    /// How long to keep asking lagging replicas for attestations before giving up.
    pub attest_wait: Duration,
    /// When waiting for a commit, submit again to every replica after this long without one (the
    /// client's side of PBFT's request timer: a faulty primary may be sitting on it).
    pub resubmit_after: Duration,
    /// Pause between polls.
    pub poll_interval: Duration,
    /// A read that one replica can answer asks the next replica too when no verified answer has
    /// come within this (instead of waiting out `call_timeout`).
    pub hedge: Duration,
    /// Try this replica first wherever replicas are tried in turn, and put it in every
    /// submission's first wave.
    pub prefer: Option<ReplicaId>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            call_timeout: Duration::from_secs(3),
            attest_wait: Duration::from_secs(2),
            resubmit_after: Duration::from_secs(3),
            poll_interval: Duration::from_millis(100),
            hedge: Duration::from_millis(250),
            prefer: None,
        }
    }
}

/// What one replica said about itself (informational: not verified).
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    pub replica: ReplicaId,
    pub addr: std::net::SocketAddr,
    pub status: Result<NodeStatus, CallError>,
}

/// One replica's answer to a Submit: an id or a refusal for each transaction, in order.
#[derive(Debug, Clone)]
pub struct SubmitAnswer {
    pub replica: ReplicaId,
    pub results: Vec<Result<TxId, Refusal>>,
}

/// Answers collected from a fan-out, in arrival order.
type Answers = Vec<(ReplicaId, Result<Response, CallError>)>;

/// A cheap handle: clones share connections, health and the round-robin position.
#[derive(Clone)]
pub struct Client {
    network: Arc<Network>,
    connections: Arc<Connections>,
    options: Options,
    /// Round-robin start for fail-over, so load and any one faulty replica's influence spread.
    next: Arc<AtomicUsize>,
}

impl Client {
    /// A client with default options. Must be called inside a tokio runtime.
    pub fn new(network: Network) -> Result<Client, ClientError> {
        Client::with_options(network, Options::default())
    }

    pub fn with_options(network: Network, options: Options) -> Result<Client, ClientError> {
        Client::with_health(network, options, Health::in_memory())
    }

    /// A client that starts from (and can [`Health::save`]) what `health` remembers about which
    /// replicas are down.
    pub fn with_health(
        network: Network,
        options: Options,
        health: Health,
    ) -> Result<Client, ClientError> {
        let connections =
            Connections::new(&network.replicas, options.call_timeout, Arc::new(health))?;
        Ok(Client {
            network: Arc::new(network),
            connections: Arc::new(connections),
            options,
            next: Arc::new(AtomicUsize::new(rand::random::<u32>() as usize)),
        })
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn health(&self) -> &Health {
        self.connections.health()
    }

    fn genesis(&self) -> &Genesis {
        &self.network.genesis
    }

    /// Every replica once: the preferred one first, then round-robin; replicas that failed
    /// lately come last.
    fn rotation(&self) -> Vec<ReplicaId> {
        let ids = self.all_ids();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % ids.len().max(1);
        let mut order: Vec<ReplicaId> = ids
            .iter()
            .cycle()
            .skip(start)
            .take(ids.len())
            .copied()
            .collect();
        // Stable sorts keep the round-robin order within each group.
        order.sort_by_key(|id| self.connections.suspect(*id));
        if let Some(p) = self.options.prefer.filter(|p| ids.contains(p)) {
            order.retain(|id| *id != p);
            order.insert(0, p);
        }
        order
    }

    fn all_ids(&self) -> Vec<ReplicaId> {
        self.network.replicas.iter().map(|r| r.id).collect()
    }

    /// n − f: as many answers as the protocol guarantees while f replicas are down.
    fn answers_expected(&self) -> usize {
        let validators = &self.genesis().validators;
        let n = self.network.replicas.len();
        n.saturating_sub(validators.f()).max(1)
    }

    /// One raw call to one replica (nothing verified).
    pub async fn call(&self, replica: ReplicaId, request: &Request) -> Result<Response, CallError> {
        self.connections.call(replica, request).await
    }

    /// A long poll to one replica (nothing verified, and its wait not held against the
    /// replica's health: see [`Connections::call_held`]).
    pub async fn call_held(
        &self,
        replica: ReplicaId,
        request: &Request,
    ) -> Result<Response, CallError> {
        self.connections.call_held(replica, request).await
    }

    /// Sends `request` to `replicas` at once and collects answers as they arrive, until all have
    /// answered or `enough` (shown the answers so far) says so. The calls still running are then
    /// abandoned: a replica that does not answer costs nothing once the others have said enough.
    async fn fan_out(
        &self,
        replicas: &[ReplicaId],
        request: &Request,
        mut enough: impl FnMut(&Answers) -> bool,
    ) -> Answers {
        let mut set = JoinSet::new();
        for &id in replicas {
            let connections = Arc::clone(&self.connections);
            let request = request.clone();
            set.spawn(async move { (id, connections.call(id, &request).await) });
        }
        let mut answers = Vec::new();
        while let Some(joined) = set.join_next().await {
            // A call task only ends by returning; a join error would be a panic or an abort,
            // neither of which we cause, so there is nothing to record for it.
            let Ok(answer) = joined else { continue };
            answers.push(answer);
            if enough(&answers) {
                break;
            }
        }
        answers
    }

    /// Asks replicas in `order`, one at a time, for something one of them can provide: the next
    /// one is asked as soon as a call fails, or when `hedge` passes with no answer. Returns the
    /// first success and the faults of those that failed before it.
    async fn race<T, F, Fut>(&self, order: Vec<ReplicaId>, ask: F) -> (Option<T>, Vec<Fault>)
    where
        T: Send + 'static,
        F: Fn(ReplicaId) -> Fut,
        Fut: Future<Output = Result<T, Fault>> + Send + 'static,
    {
        let mut waiting = order.into_iter();
        let mut set = JoinSet::new();
        let mut faults = Vec::new();
        loop {
            if set.is_empty() {
                match waiting.next() {
                    Some(id) => {
                        set.spawn(ask(id));
                    }
                    None => return (None, faults),
                }
            }
            let more = waiting.len() > 0;
            tokio::select! {
                joined = set.join_next() => match joined {
                    Some(Ok(Ok(value))) => return (Some(value), faults),
                    Some(Ok(Err(fault))) => {
                        faults.push(fault);
                        if let Some(id) = waiting.next() {
                            set.spawn(ask(id));
                        }
                    }
                    Some(Err(_)) | None => {}
                },
                () = tokio::time::sleep(self.options.hedge), if more => {
                    if let Some(id) = waiting.next() {
                        set.spawn(ask(id));
                    }
                }
            }
        }
    }

    /// Each replica's own report of its state, unreachable ones included (informational only).
    pub async fn status_all(&self) -> Vec<ReplicaStatus> {
        let answers = self
            .fan_out(&self.all_ids(), &Request::Status, |_| false)
            .await;
        let mut out: Vec<ReplicaStatus> = answers
            .into_iter()
            .filter_map(|(id, result)| {
                let replica = self.network.replicas.iter().find(|r| r.id == id)?;
                let status = result.and_then(|r| match r {
                    Response::Status(s) => Ok(s),
                    other => Err(unexpected(id, &Request::Status, &other)),
                });
                Some(ReplicaStatus {
                    replica: id,
                    addr: replica.quic,
                    status,
                })
            })
            .collect();
        out.sort_by_key(|s| s.replica);
        out
    }

    /// Adds to `pool` attestations of `header` from other replicas until f+1 distinct validators
    /// attest it, f+1 attest another block at its height (it is not the chain's), or
    /// `attest_wait` passes. Replicas that are behind are asked again; replicas that cannot be
    /// reached are not.
    async fn gather_attestations(&self, header: &Header, pool: &mut Vec<Attestation>) {
        let statement = Statement::of(header);
        let need = self.genesis().validators.weak_quorum();
        let deadline = Instant::now() + self.options.attest_wait;
        let mut unreachable: BTreeSet<ReplicaId> = BTreeSet::new();
        let settled = |pool: &[Attestation]| {
            attesters(self.genesis(), &statement, pool).len() >= need
                || contradicting(self.genesis(), header, pool).len() >= need
        };
        loop {
            if settled(pool) || Instant::now() >= deadline {
                return;
            }
            let have = attesters(self.genesis(), &statement, pool);
            let ask: Vec<ReplicaId> = self
                .all_ids()
                .into_iter()
                .filter(|id| !have.contains(id) && !unreachable.contains(id))
                .collect();
            if ask.is_empty() {
                return;
            }
            let request = Request::Attest(header.height);
            let before = pool.clone();
            let answers = self
                .fan_out(&ask, &request, |got| {
                    let mut all = before.clone();
                    all.extend(got.iter().filter_map(|(_, r)| match r {
                        Ok(Response::Attestation(Some(a))) => Some(a.clone()),
                        _ => None,
                    }));
                    settled(&all)
                })
                .await;
            for (id, answer) in answers {
                match answer {
                    Ok(Response::Attestation(Some(a))) => pool.push(a),
                    Ok(_) => {}
                    Err(_) => {
                        unreachable.insert(id);
                    }
                }
            }
            if !settled(pool) {
                tokio::time::sleep(self.options.poll_interval).await;
            }
        }
    }
}

/// Reads a Submit answer, checking it has one result per transaction.
fn submitted(
    id: ReplicaId,
    request: &Request,
    response: Response,
    count: usize,
) -> Result<SubmitAnswer, CallError> {
    match response {
        Response::Submitted(results) if results.len() == count => Ok(SubmitAnswer {
            replica: id,
            results,
        }),
        Response::Submitted(results) => Err(CallError::Remote {
            replica: id,
            message: format!("{} results for {count} transactions", results.len()),
        }),
        other => Err(unexpected(id, request, &other)),
    }
}

impl Client {
    /// Submits a batch to one replica, failing over to the next while calls fail (bulk loads;
    /// a transfer that must not be lost goes through [`Client::submit_tx`]).
    pub async fn submit(&self, txs: &[Transaction]) -> Result<SubmitAnswer, ClientError> {
        let request = Request::Submit(txs.to_vec());
        let mut faults = Vec::new();
        for id in self.rotation() {
            let answer = self
                .call(id, &request)
                .await
                .and_then(|r| submitted(id, &request, r, txs.len()));
            match answer {
                Ok(answer) => return Ok(answer),
                Err(e) => faults.push(Fault::Call(e)),
            }
        }
        Err(ClientError::from_faults("the submission", faults))
    }

    /// Submits to every replica at once; used when a transaction does not commit in time.
    pub async fn submit_everywhere(
        &self,
        txs: &[Transaction],
    ) -> Vec<(ReplicaId, Result<SubmitAnswer, CallError>)> {
        let request = Request::Submit(txs.to_vec());
        let answers = self.fan_out(&self.all_ids(), &request, |_| false).await;
        let mut out: Vec<_> = answers
            .into_iter()
            .map(|(id, r)| {
                (
                    id,
                    r.and_then(|resp| submitted(id, &request, resp, txs.len())),
                )
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

/// How many answers in `answers` are responses (rather than failed calls).
fn responses(answers: &Answers) -> usize {
    answers.iter().filter(|(_, r)| r.is_ok()).count()
}
