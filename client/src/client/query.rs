//! Verified reads: a transaction's status, an account, a block.

use std::collections::BTreeMap;
use std::time::Instant;

use quire_chain::tx::TxId;
use quire_chain::{Address, ReplicaId};
use quire_wire::rpc::{BlockRef, Request, Response, TxStatus};

use super::Client;
use crate::conn::unexpected;
use crate::error::{ClientError, Fault, VerifyError};
use crate::verify::{
    CertifiedBlock, CommittedTx, ProvenAccount, Verified, verify_account_response,
    verify_block_response, verify_tx_answers,
};

/// What the client can prove about a transaction.
#[derive(Debug, Clone)]
pub enum TxState {
    /// Proven committed, with its proven outcome.
    Committed(Box<Verified<CommittedTx>>),
    /// Some replica has it (or claims a commit that is not yet attested by f+1): not proven.
    Pending,
    /// No replica that answered knows it.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct TxReport {
    pub state: TxState,
    /// Answers set aside: unreachable replicas, and claims that failed verification.
    pub faults: Vec<Fault>,
}

impl Client {
    /// Asks every replica about `tx` and reports what their answers prove. While a commit claim
    /// lacks only attestations (other replicas behind), the lagging replicas are asked again for
    /// up to `attest_wait`.
    pub async fn tx_status(&self, tx: TxId) -> Result<TxReport, ClientError> {
        let request = Request::TxStatus(tx);
        let deadline = Instant::now() + self.options.attest_wait;
        let mut answers: BTreeMap<ReplicaId, TxStatus> = BTreeMap::new();
        let mut call_faults: BTreeMap<ReplicaId, Fault> = BTreeMap::new();
        let mut ask = self.all_ids();
        loop {
            // Stop waiting for slow or dead replicas as soon as the answers in prove the commit.
            let mut seen: Vec<(ReplicaId, TxStatus)> =
                answers.iter().map(|(id, s)| (*id, s.clone())).collect();
            let genesis = self.genesis();
            let proven = |id: ReplicaId, r: &Result<Response, _>| match r {
                Ok(Response::TxStatus(status @ TxStatus::Committed { .. })) => {
                    seen.push((id, status.clone()));
                    verify_tx_answers(genesis, &tx, &seen).committed.is_some()
                }
                _ => false,
            };
            for (id, result) in self.fan_out(&ask, &request, proven).await {
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
                    tokio::time::sleep(self.options.poll_interval).await;
                    continue;
                }
                None if verdict.pending => TxState::Pending,
                None => TxState::Unknown,
            };
            return Ok(TxReport { state, faults });
        }
    }

    /// An account's balance and nonce, proven against a header that f+1 validators attest.
    /// Replicas are asked in turn until one's answer verifies.
    pub async fn account(&self, address: Address) -> Result<Verified<ProvenAccount>, ClientError> {
        let mut faults = Vec::new();
        for id in self.rotation() {
            match self.account_from(id, address).await {
                Ok(proven) => return Ok(proven),
                Err(fault) => faults.push(fault),
            }
        }
        Err(ClientError::from_faults(
            format!("account {address}"),
            faults,
        ))
    }

    async fn account_from(
        &self,
        id: ReplicaId,
        address: Address,
    ) -> Result<Verified<ProvenAccount>, Fault> {
        let request = Request::Account(address);
        let response = self.call(id, &request).await?;
        let Response::Account {
            header,
            attestation,
            account,
            proof,
        } = response
        else {
            return Err(unexpected(id, &request, &response).into());
        };
        let genesis = self.genesis();
        let check = |pool: &[_]| {
            verify_account_response(genesis, &address, &header, &account, &proof, pool)
        };
        let mut pool = vec![attestation];
        match check(&pool) {
            Err(e) if e.is_missing_attestations() => {}
            other => {
                return other.map_err(|source| Fault::Verify {
                    replica: id,
                    source,
                });
            }
        }
        self.gather_attestations(&header, &mut pool).await;
        check(&pool).map_err(|source| Fault::Verify {
            replica: id,
            source,
        })
    }

    /// A block with a valid commit certificate and a header attested by f+1 validators.
    pub async fn block(&self, at: BlockRef) -> Result<Verified<CertifiedBlock>, ClientError> {
        let mut faults = Vec::new();
        for id in self.rotation() {
            match self.block_from(id, at).await {
                Ok(block) => return Ok(block),
                Err(fault) => faults.push(fault),
            }
        }
        let what = match at {
            BlockRef::Latest => "the latest block".to_string(),
            BlockRef::Height(h) => format!("block {h}"),
        };
        Err(ClientError::from_faults(what, faults))
    }

    async fn block_from(
        &self,
        id: ReplicaId,
        at: BlockRef,
    ) -> Result<Verified<CertifiedBlock>, Fault> {
        let request = Request::Block(at);
        let response = self.call(id, &request).await?;
        let Response::Block { block, attestation } = response else {
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
        let check = |pool: &[_]| verify_block_response(genesis, asked, &block, pool);
        let mut pool: Vec<_> = attestation.into_iter().collect();
        match check(&pool) {
            Err(e) if e.is_missing_attestations() => {}
            other => return other.map_err(verify_fault),
        }
        self.gather_attestations(&block.header, &mut pool).await;
        check(&pool).map_err(verify_fault)
    }
}
