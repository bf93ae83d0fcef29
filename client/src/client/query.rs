//! Verified reads: a transaction's status, an account, a block.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quire_chain::ledger::verify_account;
use quire_chain::tx::TxId;
use quire_chain::{Address, Hash, ReplicaId};
use quire_wire::rpc::{BlockRef, Request, Response, TxStatus};

use super::{Client, responses};
use crate::conn::unexpected;
use crate::error::{ClientError, Fault, VerifyError};
use crate::verify::{
    CertifiedBlock, CommittedTx, ProvenAccount, Verified, contradicting, verify_account_response,
    verify_block_response, verify_tx_answers,
};

/// The first pause before asking replicas that have not attested a claimed commit yet.
const ATTEST_PAUSE_FIRST: Duration = Duration::from_millis(2);

/// What the client can prove about a transaction.
#[derive(Debug, Clone)]
pub enum TxState {
    /// Proven committed, with its proven outcome.
    Committed(Box<Verified<CommittedTx>>),
    /// These replicas say they hold it (or claim a commit that f+1 do not attest yet): not
    /// proven.
    Pending { held_by: Vec<ReplicaId> },
    /// No replica that answered holds it.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct TxReport {
    pub state: TxState,
    /// Replicas that answered.
    pub answered: Vec<ReplicaId>,
    /// Answers set aside: unreachable replicas, and claims that failed verification.
    pub faults: Vec<Fault>,
}

impl Client {
    /// Asks every replica about `tx` at once and reports what their answers prove, as soon as
    /// they prove a commit or n − f have answered. While a commit claim lacks only attestations
    /// (other replicas behind), the others are asked again for up to `attest_wait`.
    pub async fn tx_status(&self, tx: TxId) -> Result<TxReport, ClientError> {
        let request = Request::TxStatus(tx);
        let deadline = Instant::now() + self.options.attest_wait;
        let expected = self.answers_expected();
        let mut answers: BTreeMap<ReplicaId, TxStatus> = BTreeMap::new();
        let mut call_faults: BTreeMap<ReplicaId, Fault> = BTreeMap::new();
        let mut ask = self.all_ids();
        // Replicas commit within a round of messages of each other: ask the laggards again
        // soon, then less often.
        let mut pause = ATTEST_PAUSE_FIRST.min(self.options.poll_interval);
        loop {
            let kept: Vec<(ReplicaId, TxStatus)> = answers
                .iter()
                .filter(|(id, _)| !ask.contains(id))
                .map(|(id, s)| (*id, s.clone()))
                .collect();
            let genesis = self.genesis();
            let enough = |got: &super::Answers| {
                let mut seen = kept.clone();
                seen.extend(got.iter().filter_map(|(id, r)| match r {
                    Ok(Response::TxStatus(s)) => Some((*id, s.clone())),
                    _ => None,
                }));
                kept.len() + responses(got) >= expected
                    || verify_tx_answers(genesis, &tx, &seen).committed.is_some()
            };
            for (id, result) in self.fan_out(&ask, &request, enough).await {
                match result {
                    Ok(Response::TxStatus(status)) => {
                        call_faults.remove(&id);
                        answers.insert(id, status);
                    }
                    Ok(other) => {
                        call_faults.insert(id, unexpected(id, &request, &other).into());
                    }
                    Err(e) => {
                        call_faults.insert(id, e.into());
                    }
                }
            }
            if answers.is_empty() {
                return Err(ClientError::Unreachable(crate::error::Faults(
                    call_faults.into_values().collect(),
                )));
            }
            let listed: Vec<(ReplicaId, TxStatus)> =
                answers.iter().map(|(id, s)| (*id, s.clone())).collect();
            let verdict = verify_tx_answers(self.genesis(), &tx, &listed);
            let mut faults: Vec<Fault> = call_faults.values().cloned().collect();
            faults.extend(
                verdict
                    .refused
                    .into_iter()
                    .map(|(replica, source)| Fault::Verify { replica, source }),
            );
            let state = match verdict.committed {
                Some(committed) => TxState::Committed(Box::new(committed)),
                None if verdict.awaiting_attestations && Instant::now() < deadline => {
                    // Ask again those that have not (yet) claimed the commit themselves.
                    ask = self
                        .all_ids()
                        .into_iter()
                        .filter(|id| !matches!(answers.get(id), Some(TxStatus::Committed { .. })))
                        .collect();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.options.poll_interval);
                    continue;
                }
                None if !verdict.held_by.is_empty() => TxState::Pending {
                    held_by: verdict.held_by,
                },
                None => TxState::Unknown,
            };
            return Ok(TxReport {
                state,
                answered: answers.keys().copied().collect(),
                faults,
            });
        }
    }

    /// An account's balance and nonce, proven against a header that f+1 validators attest.
    /// The freshest proven state wins, so a replica that is behind (just restarted, say) cannot
    /// hand out a nonce that is already used.
    pub async fn account(&self, address: Address) -> Result<Verified<ProvenAccount>, ClientError> {
        self.account_report(address).await.map(|(proven, _)| proven)
    }

    /// [`Client::account`], with the answers it set aside.
    ///
    /// Every replica is asked at once; once n − f have answered, the highest header whose
    /// proof checks out is taken, and attestations are gathered for it if its answer alone does
    /// not carry f+1. A higher header that cannot be vouched for is set aside, naming its replica.
    pub async fn account_report(
        &self,
        address: Address,
    ) -> Result<(Verified<ProvenAccount>, Vec<Fault>), ClientError> {
        let request = Request::Account(address);
        let expected = self.answers_expected();
        let answers = self
            .fan_out(&self.all_ids(), &request, |got| responses(got) >= expected)
            .await;
        let mut faults = Vec::new();
        let mut pool = Vec::new();
        let mut candidates = Vec::new();
        for (id, result) in answers {
            match result {
                Ok(Response::Account {
                    header,
                    attestation,
                    account,
                    proof,
                }) => {
                    pool.push(attestation);
                    // The proof is checked first, on its own: one valid proof against a state
                    // root fixes the account, so answers with the same header agree.
                    if verify_account(&header.state_root, &address, &account, &proof) {
                        candidates.push((id, header, account, proof));
                    } else {
                        let source = VerifyError::BadAccountProof {
                            address,
                            height: header.height,
                        };
                        faults.push(Fault::Verify {
                            replica: id,
                            source,
                        });
                    }
                }
                Ok(other) => faults.push(unexpected(id, &request, &other).into()),
                Err(e) => faults.push(e.into()),
            }
        }
        // Highest first; one candidate per distinct header.
        candidates.sort_by_key(|(id, h, _, _)| (std::cmp::Reverse(h.height), *id));
        let mut tried: Vec<Hash> = Vec::new();
        for (id, header, account, proof) in candidates {
            if tried.contains(&header.hash()) {
                continue;
            }
            tried.push(header.hash());
            let genesis = self.genesis();
            let check = |pool: &[_]| {
                verify_account_response(genesis, &address, &header, &account, &proof, pool)
            };
            let verdict = match check(&pool) {
                Err(e) if e.is_missing_attestations() => {
                    self.gather_attestations(&header, &mut pool).await;
                    check(&pool).map_err(|e| self.explain(&header, &pool, e))
                }
                other => other,
            };
            match verdict {
                Ok(proven) => return Ok((proven, faults)),
                Err(source) => faults.push(Fault::Verify {
                    replica: id,
                    source,
                }),
            }
        }
        Err(ClientError::from_faults(
            format!("account {address}"),
            faults,
        ))
    }

    /// Too few attestations, or a header f+1 validators contradict: the stronger reason.
    fn explain(
        &self,
        header: &quire_chain::Header,
        pool: &[quire_wire::rpc::Attestation],
        e: VerifyError,
    ) -> VerifyError {
        let against = contradicting(self.genesis(), header, pool).len();
        if e.is_missing_attestations() && against >= self.genesis().validators.weak_quorum() {
            VerifyError::Contradicted {
                height: header.height,
                against,
            }
        } else {
            e
        }
    }

    /// A block with a valid commit certificate and a header attested by f+1 validators.
    pub async fn block(&self, at: BlockRef) -> Result<Verified<CertifiedBlock>, ClientError> {
        self.block_report(at).await.map(|(block, _)| block)
    }

    /// [`Client::block`], with the answers it set aside. Replicas are asked in turn, the next
    /// one after a hedge; the first answer that verifies wins.
    pub async fn block_report(
        &self,
        at: BlockRef,
    ) -> Result<(Verified<CertifiedBlock>, Vec<Fault>), ClientError> {
        let (block, faults) = self
            .race(self.rotation(), |id| {
                let client = self.clone();
                async move { client.block_from(id, at).await }
            })
            .await;
        match block {
            Some(block) => Ok((block, faults)),
            None => {
                let what = match at {
                    BlockRef::Latest => "the latest block".to_string(),
                    BlockRef::Height(h) => format!("block {h}"),
                };
                Err(ClientError::from_faults(what, faults))
            }
        }
    }

    async fn block_from(
        &self,
        id: ReplicaId,
        at: BlockRef,
    ) -> Result<Verified<CertifiedBlock>, Fault> {
        let request = Request::Block(at);
        let response = self.call(id, &request).await?;
        let Response::Block {
            block,
            outcomes,
            attestation,
        } = response
        else {
            return Err(unexpected(id, &request, &response).into());
        };
        let verify_fault = |source| Fault::Verify {
            replica: id,
            source,
        };
        let block = block.ok_or(verify_fault(VerifyError::NoBlock))?;
        let asked = match at {
            BlockRef::Latest => None,
            BlockRef::Height(h) => Some(h),
        };
        let genesis = self.genesis();
        let check = |pool: &[_]| verify_block_response(genesis, asked, &block, &outcomes, pool);
        let mut pool: Vec<_> = attestation.into_iter().collect();
        match check(&pool) {
            Err(e) if e.is_missing_attestations() => {}
            other => return other.map_err(verify_fault),
        }
        self.gather_attestations(&block.header, &mut pool).await;
        check(&pool)
            .map_err(|e| self.explain(&block.header, &pool, e))
            .map_err(verify_fault)
    }
}
