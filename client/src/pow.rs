//! Proof of work, checked by the client: no replica is believed about the chain. The client
//! fetches every replica's main-chain headers from the genesis, checks each header's work
//! against its target, the target against the retarget rule, the timestamps and the links,
//! and follows the chain with the most work that verifies; a replica serving a header with too
//! little work or a wrong link is refused (and named). A transaction is located on that chain
//! by its merkle proof against the header's `tx_root`, and counts as final at `k`
//! confirmations (the genesis's `confirmations` unless the caller says otherwise).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use num_bigint::BigUint;
use quire_chain::block::Header;
use quire_chain::pow::{PowRules, Work, meets_target, work, work::to_number};
use quire_chain::{Hash, ReplicaId, TxId};
use quire_wire::rpc::{HEADERS_MAX, Request, Response, TxStatus};
use thiserror::Error;

use crate::Client;
use crate::error::CallError;

/// What is wrong with a chain of headers a replica served.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PowFault {
    #[error("header 0 is not this network's genesis")]
    WrongGenesis,
    #[error("header at position {height} does not link to its parent")]
    BadLink { height: u64 },
    #[error("header {height} carries no proof-of-work seal")]
    NoSeal { height: u64 },
    #[error("header {height}'s hash is above its target (too little work)")]
    InsufficientWork { height: u64 },
    #[error("header {height}'s target is not the one the retarget rule gives")]
    WrongTarget { height: u64 },
    #[error("header {height}'s timestamp is not after its parent's, or is far in the future")]
    BadTimestamp { height: u64 },
}

#[derive(Debug, Error)]
pub enum PowClientError {
    #[error("this network's genesis is PBFT, not proof of work")]
    NotPow,
    #[error("no replica served a proof-of-work chain that verifies ({0})")]
    NoChain(String),
    #[error("transaction {0} is not on the most-work chain")]
    NotOnChain(TxId),
    #[error(
        "transaction {tx} did not reach {wanted} confirmations within {waited_ms} ms (it has {got})"
    )]
    Timeout {
        tx: TxId,
        wanted: u64,
        got: u64,
        waited_ms: u64,
    },
}

/// Checks a chain of headers from the genesis; returns its cumulative work.
pub fn verify_headers(
    rules: &PowRules,
    genesis: &Header,
    headers: &[Header],
) -> Result<Work, PowFault> {
    if headers.first() != Some(genesis) {
        return Err(PowFault::WrongGenesis);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let limit = to_number(&rules.params.target_limit);
    let mut total = Work::ZERO;
    for i in 1..headers.len() {
        let (header, parent) = (&headers[i], &headers[i - 1]);
        let height = i as u64;
        let hash = header.hash();
        if header.parent_hash != parent.hash() || header.height != height {
            return Err(PowFault::BadLink { height });
        }
        let seal = header.pow.ok_or(PowFault::NoSeal { height })?;
        if !meets_target(&hash, &seal.target) || to_number(&seal.target) > limit {
            return Err(PowFault::InsufficientWork { height });
        }
        let grandparent = (i >= 2).then(|| &headers[i - 2]);
        match rules.check_link(header, &hash, parent, grandparent) {
            Ok(()) => {}
            Err(quire_chain::pow::BlockReject::WrongTarget { .. }) => {
                return Err(PowFault::WrongTarget { height });
            }
            Err(_) => return Err(PowFault::BadTimestamp { height }),
        }
        if header.timestamp_ms > now_ms.saturating_add(rules.params.timestamp_future_ms) {
            return Err(PowFault::BadTimestamp { height });
        }
        total += work(&seal.target);
    }
    Ok(total)
}

/// The most-work chain the client could verify, and who served what.
#[derive(Debug, Clone)]
pub struct BestChain {
    pub replica: ReplicaId,
    pub headers: Vec<Header>,
    pub work: BigUint,
    /// Replicas whose chain did not verify, and why.
    pub refused: Vec<(ReplicaId, PowFault)>,
    /// Replicas that did not answer.
    pub unreachable: Vec<(ReplicaId, CallError)>,
}

impl BestChain {
    pub fn head(&self) -> &Header {
        self.headers
            .last()
            .expect("a verified chain holds at least the genesis")
    }

    /// Confirmations of the block at `height` with this hash: 0 if it is not on this chain.
    pub fn confirmations(&self, height: u64, hash: &Hash) -> u64 {
        match self.headers.get(height as usize) {
            Some(h) if h.hash() == *hash => self.head().height - height + 1,
            _ => 0,
        }
    }
}

/// Where a transaction is on the most-work chain.
#[derive(Debug, Clone)]
pub struct PowTx {
    pub tx: TxId,
    pub height: u64,
    pub block_hash: Hash,
    pub confirmations: u64,
    /// The `k` it was judged against.
    pub k: u64,
    pub head_height: u64,
}

impl PowTx {
    pub fn is_final(&self) -> bool {
        self.confirmations >= self.k
    }

    /// Blocks on top of its block: confirmations − 1.
    pub fn depth(&self) -> u64 {
        self.confirmations.saturating_sub(1)
    }
}

impl Client {
    fn pow_rules(&self) -> Result<PowRules, PowClientError> {
        PowRules::new(&self.network().genesis).ok_or(PowClientError::NotPow)
    }

    /// Replica `replica`'s main-chain headers from the genesis.
    pub async fn pow_headers(&self, replica: ReplicaId) -> Result<Vec<Header>, CallError> {
        let mut out = Vec::new();
        loop {
            let request = Request::Headers {
                from: out.len() as u64,
                count: HEADERS_MAX,
            };
            match self.call(replica, &request).await? {
                Response::Headers(batch) => {
                    let done = (batch.len() as u64) < HEADERS_MAX;
                    out.extend(batch.into_iter().map(|(h, _)| h));
                    if done {
                        return Ok(out);
                    }
                }
                other => return Err(crate::conn::unexpected(replica, &request, &other)),
            }
        }
    }

    /// Asks every replica for its chain and follows the most work that verifies (the first
    /// replica asked wins a tie).
    pub async fn pow_best_chain(&self) -> Result<BestChain, PowClientError> {
        let rules = self.pow_rules()?;
        let genesis = self.network().genesis.block().header;
        let mut best: Option<BestChain> = None;
        let mut refused = Vec::new();
        let mut unreachable = Vec::new();
        for replica in self.network().replicas.iter().map(|r| r.id) {
            let headers = match self.pow_headers(replica).await {
                Ok(h) => h,
                Err(e) => {
                    unreachable.push((replica, e));
                    continue;
                }
            };
            match verify_headers(&rules, &genesis, &headers) {
                Ok(work) => {
                    if best.as_ref().is_none_or(|b| work > b.work) {
                        best = Some(BestChain {
                            replica,
                            headers,
                            work,
                            refused: Vec::new(),
                            unreachable: Vec::new(),
                        });
                    }
                }
                Err(fault) => refused.push((replica, fault)),
            }
        }
        let mut best = best.ok_or_else(|| {
            PowClientError::NoChain(format!(
                "{} refused, {} unreachable",
                refused.len(),
                unreachable.len()
            ))
        })?;
        best.refused = refused;
        best.unreachable = unreachable;
        Ok(best)
    }

    /// Where `tx` is on the most-work chain: a replica's answer counts only if its block is on
    /// that chain and the merkle proof puts the transaction in it.
    pub async fn pow_tx(&self, tx: TxId, k: Option<u64>) -> Result<Option<PowTx>, PowClientError> {
        let rules = self.pow_rules()?;
        let k = k.unwrap_or(rules.params.confirmations as u64);
        let best = self.pow_best_chain().await?;
        for replica in self.network().replicas.iter().map(|r| r.id) {
            let Ok(Response::TxStatus(TxStatus::Committed { block, proof, .. })) =
                self.call(replica, &Request::TxStatus(tx)).await
            else {
                continue;
            };
            let header = block.header;
            let hash = header.hash();
            let on_chain = best.confirmations(header.height, &hash);
            let ids = block.tx_ids();
            let in_block = proof.verify(&tx.0, &header.tx_root)
                && quire_chain::merkle::root(&ids) == header.tx_root
                && ids.contains(&tx.0);
            if on_chain > 0 && in_block {
                return Ok(Some(PowTx {
                    tx,
                    height: header.height,
                    block_hash: hash,
                    confirmations: on_chain,
                    k,
                    head_height: best.head().height,
                }));
            }
        }
        Ok(None)
    }

    /// Waits until `tx` has `k` confirmations on the most-work chain (checked afresh each time).
    pub async fn pow_wait_final(
        &self,
        tx: TxId,
        k: Option<u64>,
        timeout: Duration,
    ) -> Result<PowTx, PowClientError> {
        let start = Instant::now();
        let mut got = 0;
        let wanted = match k {
            Some(k) => k,
            None => self.pow_rules()?.params.confirmations as u64,
        };
        loop {
            if let Some(found) = self.pow_tx(tx, Some(wanted)).await? {
                got = found.confirmations;
                if found.is_final() {
                    return Ok(found);
                }
            }
            if start.elapsed() >= timeout {
                return Err(PowClientError::Timeout {
                    tx,
                    wanted,
                    got,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quire_chain::pow::{Limits, PowChain, Received};
    use quire_chain::store::{MemoryStore, Store};
    use quire_chain::testkit::{TestNet, easy_pow, mine};

    fn chain(net: &TestNet, blocks: usize) -> Vec<Header> {
        let store = MemoryStore::new(&net.genesis);
        let mut c = PowChain::open(&net.genesis, &store, Limits::default()).unwrap();
        for i in 0..blocks {
            let b = mine(&mut c, &[], 0, 1000 * (i as u64 + 1));
            if let Received::NewHead(ch) = c.receive(&store, b, u64::MAX / 4).unwrap() {
                store.write_pow(&ch.write).unwrap();
            }
        }
        (0..=blocks as u64)
            .map(|h| store.header(h).unwrap().unwrap())
            .collect()
    }

    /// A replica serving a header with too little work, a wrong link or a wrong target is
    /// refused; an honest chain verifies, and more blocks carry more work.
    #[test]
    fn lying_headers_are_refused() {
        let net = TestNet::with_pow(4, 2, 0, easy_pow(4));
        let rules = PowRules::new(&net.genesis).unwrap();
        let genesis = net.genesis.block().header;
        let good = chain(&net, 5);
        let work5 = verify_headers(&rules, &genesis, &good).unwrap();
        let work3 = verify_headers(&rules, &genesis, &good[..4]).unwrap();
        assert!(work5 > work3);
        let mut weak = good.clone();
        let target = weak[3].pow.unwrap().target;
        for nonce in 0.. {
            weak[3].pow.as_mut().unwrap().nonce = nonce;
            if !meets_target(&weak[3].hash(), &target) {
                break;
            }
        }
        // Relink the rest so only the work is wrong at 3.
        assert!(matches!(
            verify_headers(&rules, &genesis, &weak[..4]),
            Err(PowFault::InsufficientWork { height: 3 })
        ));
        let mut unlinked = good.clone();
        unlinked.swap(2, 3);
        assert!(matches!(
            verify_headers(&rules, &genesis, &unlinked),
            Err(PowFault::BadLink { height: 2 })
        ));
        let mut retargeted = good.clone();
        retargeted[4].pow.as_mut().unwrap().target = quire_chain::Hash([0xff; 32]);
        assert!(verify_headers(&rules, &genesis, &retargeted[..5]).is_err());
        let other = TestNet::with_pow(4, 2, 9, easy_pow(4));
        assert_eq!(
            verify_headers(&rules, &other.genesis.block().header, &good),
            Err(PowFault::WrongGenesis)
        );
    }
}
