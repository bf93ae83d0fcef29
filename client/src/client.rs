//! The client: fail-over across replicas, fan-out where several must answer, and the operations
//! built on them (submodules). No answer is believed before [`crate::verify`] has checked it.

mod chain;
mod query;
mod transfer;

use std::collections::BTreeSet;
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
use crate::network::Network;
use crate::verify::attesters;

pub use chain::{ChainReport, SetAside};
pub use query::{TxReport, TxState};
pub use transfer::TransferReceipt;

/// Timing knobs. The defaults suit a local testnet.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest wait for one call to one replica (connecting included).
    pub call_timeout: Duration,
    /// How long to keep asking lagging replicas for attestations before giving up.
    pub attest_wait: Duration,
    /// When waiting for a commit, re-submit to every replica after this long without one (the
    /// client's side of PBFT's request timer: a faulty primary may be sitting on it).
    pub resubmit_after: Duration,
    /// Pause between polls.
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            call_timeout: Duration::from_secs(3),
            attest_wait: Duration::from_secs(2),
            resubmit_after: Duration::from_secs(3),
            poll_interval: Duration::from_millis(200),
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

pub struct Client {
    network: Network,
    connections: Arc<Connections>,
    options: Options,
    /// Round-robin start for fail-over, so load and any one faulty replica's influence spread.
    next: AtomicUsize,
}

impl Client {
    /// A client with default options. Must be called inside a tokio runtime.
    pub fn new(network: Network) -> Result<Client, ClientError> {
        Client::with_options(network, Options::default())
    }

    pub fn with_options(network: Network, options: Options) -> Result<Client, ClientError> {
        let connections = Connections::new(&network.replicas, options.call_timeout)?;
        Ok(Client {
            network,
            connections: Arc::new(connections),
            options,
            next: AtomicUsize::new(rand::random::<u32>() as usize),
        })
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    fn genesis(&self) -> &Genesis {
        &self.network.genesis
    }

    /// Every replica once, starting from the next in round-robin order; replicas that just
    /// failed to answer come last.
    fn rotation(&self) -> Vec<ReplicaId> {
        let ids: Vec<ReplicaId> = self.network.replicas.iter().map(|r| r.id).collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % ids.len().max(1);
        let mut order: Vec<ReplicaId> = ids
            .iter()
            .cycle()
            .skip(start)
            .take(ids.len())
            .copied()
            .collect();
        // A stable sort keeps the round-robin order within each group.
        order.sort_by_key(|id| self.connections.suspect(*id));
        order
    }

    fn all_ids(&self) -> Vec<ReplicaId> {
        self.network.replicas.iter().map(|r| r.id).collect()
    }

    /// One raw call to one replica (nothing verified).
    pub async fn call(&self, replica: ReplicaId, request: &Request) -> Result<Response, CallError> {
        self.connections.call(replica, request).await
    }

    /// Sends `request` to `replicas` at once and collects answers as they arrive, until all have
    /// answered or `enough` says so (the calls still running are then dropped).
    async fn fan_out(
        &self,
        replicas: &[ReplicaId],
        request: &Request,
        mut enough: impl FnMut(ReplicaId, &Result<Response, CallError>) -> bool,
    ) -> Vec<(ReplicaId, Result<Response, CallError>)> {
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
            let Ok((id, result)) = joined else { continue };
            let stop = enough(id, &result);
            answers.push((id, result));
            if stop {
                break;
            }
        }
        answers
    }

    /// Submits to one replica, failing over to the next while calls fail.
    pub async fn submit(&self, txs: &[Transaction]) -> Result<SubmitAnswer, ClientError> {
        let request = Request::Submit(txs.to_vec());
        let mut faults = Vec::new();
        for id in self.rotation() {
            match self.submit_to(id, &request, txs.len()).await {
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
        let answers = self.fan_out(&self.all_ids(), &request, |_, _| false).await;
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

    async fn submit_to(
        &self,
        id: ReplicaId,
        request: &Request,
        count: usize,
    ) -> Result<SubmitAnswer, CallError> {
        let response = self.call(id, request).await?;
        submitted(id, request, response, count)
    }

    /// Submits one transaction, trying replicas in turn until one accepts it. A refusal is not
    /// final, since the refusing replica may be faulty; every refusal is reported if all refuse.
    pub async fn submit_one(&self, tx: &Transaction) -> Result<ReplicaId, ClientError> {
        let request = Request::Submit(vec![tx.clone()]);
        let id_expected = tx.id();
        let (mut faults, mut refusals) = (Vec::new(), Vec::new());
        for id in self.rotation() {
            match self.submit_to(id, &request, 1).await {
                Ok(answer) => match answer.results.into_iter().next() {
                    Some(Ok(got)) if got == id_expected => return Ok(id),
                    Some(Err(refusal)) => refusals.push(crate::error::Refused {
                        replica: id,
                        refusal,
                    }),
                    _ => faults.push(Fault::Call(CallError::Remote {
                        replica: id,
                        message: "acknowledged another transaction id".into(),
                    })),
                },
                Err(e) => faults.push(Fault::Call(e)),
            }
        }
        if refusals.is_empty() {
            return Err(ClientError::from_faults("the submission", faults));
        }
        Err(ClientError::Refused {
            tx: id_expected,
            refusals,
        })
    }

    /// Each replica's own report of its state, unreachable ones included (informational only).
    pub async fn status_all(&self) -> Vec<ReplicaStatus> {
        let answers = self
            .fan_out(&self.all_ids(), &Request::Status, |_, _| false)
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
    /// attest it, or `attest_wait` passes. Replicas that are behind are asked again; replicas
    /// that cannot be reached are not.
    async fn gather_attestations(&self, header: &Header, pool: &mut Vec<Attestation>) {
        let statement = Statement::Block {
            height: header.height,
            block_hash: header.hash(),
        };
        let need = self.genesis().validators.weak_quorum();
        let deadline = Instant::now() + self.options.attest_wait;
        let mut unreachable: BTreeSet<ReplicaId> = BTreeSet::new();
        loop {
            let have = attesters(self.genesis(), &statement, pool);
            if have.len() >= need || Instant::now() >= deadline {
                return;
            }
            let ask: Vec<ReplicaId> = self
                .all_ids()
                .into_iter()
                .filter(|id| !have.contains(id) && !unreachable.contains(id))
                .collect();
            if ask.is_empty() {
                return;
            }
            let mut count = have.len();
            let genesis = self.genesis();
            let request = Request::Attest(header.height);
            let answers = self
                .fan_out(&ask, &request, |_, r| {
                    if let Ok(Response::Attestation(Some(a))) = r {
                        count += attesters(genesis, &statement, std::slice::from_ref(a)).len();
                    }
                    count >= need
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
            if attesters(self.genesis(), &statement, pool).len() < need {
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
