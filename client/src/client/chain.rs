//! `verify_chain`: download every header and commit certificate from one replica and check them
//! from genesis (see [`crate::chain_walk`]), then the latest stable checkpoint, then that f+1
//! validators attest the last header. A replica whose copy fails is set aside and the next one is
//! tried; the chain verifies if any replica's copy does. Replicas that answer a status request at
//! once are tried first, so a dead one is not waited out.

use std::collections::BTreeSet;

use quire_chain::block::Header;
use quire_chain::cert::CheckpointCertificate;
use quire_chain::{Hash, ReplicaId};
use quire_wire::rpc::{Attestation, HEADERS_MAX, Request, Response};

use super::{Client, responses};
use crate::chain_walk::{ChainFault, ChainProblem, ChainWalk, verify_checkpoint};
use crate::conn::unexpected;
use crate::error::{CallError, ClientError, Fault};
use crate::verify::vouch_header;

/// A chain that verified, with the evidence that vouches for its execution results.
#[derive(Debug, Clone)]
pub struct ChainReport {
    /// The height of the last header checked.
    pub height: u64,
    pub head_hash: Hash,
    pub last_header: Header,
    /// f+1 validators' attestations of the last header (one per attester).
    pub last_attestations: Vec<Attestation>,
    /// The latest stable checkpoint, if any beyond genesis.
    pub checkpoint: Option<u64>,
    /// Its certificate (2f+1 validators' checkpoint votes) and the header it covers.
    pub checkpoint_certificate: Option<CheckpointCertificate>,
    pub checkpoint_header: Option<Header>,
    /// The replica whose headers were checked.
    pub headers_from: ReplicaId,
    /// The validators that attest the last header.
    pub attesters: Vec<ReplicaId>,
    /// Every replica that answered something.
    pub replicas_consulted: Vec<ReplicaId>,
    /// Replicas whose copies failed, and why (a faulty replica, or one that could not be reached).
    pub set_aside: Vec<SetAside>,
}

/// Why a replica's copy of the chain was not used.
#[derive(Debug, Clone)]
pub enum SetAside {
    Problem(ChainProblem),
    Call(CallError),
}

impl std::fmt::Display for SetAside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetAside::Problem(p) => write!(f, "{p}"),
            SetAside::Call(e) => write!(f, "{e}"),
        }
    }
}

impl Client {
    pub async fn verify_chain(&self) -> Result<ChainReport, ClientError> {
        let mut set_aside = Vec::new();
        for (id, height) in self.responsive_first().await {
            match self.verify_chain_from(id, height).await {
                Ok(mut report) => {
                    report.set_aside = set_aside;
                    return Ok(report);
                }
                Err(reason) => set_aside.push(reason),
            }
        }
        let first_problem = set_aside.iter().find_map(|s| match s {
            SetAside::Problem(p) => Some(p.clone()),
            SetAside::Call(_) => None,
        });
        match first_problem {
            Some(problem) => Err(ClientError::Chain(problem)),
            None => Err(ClientError::Unreachable(crate::error::Faults(
                set_aside
                    .into_iter()
                    .filter_map(|s| match s {
                        SetAside::Call(e) => Some(Fault::Call(e)),
                        SetAside::Problem(_) => None,
                    })
                    .collect(),
            ))),
        }
    }

    /// Replicas in rotation order, those that answer a status request (with the height they
    /// claim) before n − f have first.
    async fn responsive_first(&self) -> Vec<(ReplicaId, Option<u64>)> {
        let expected = self.answers_expected();
        let answers = self
            .fan_out(&self.all_ids(), &Request::Status, |got| {
                responses(got) >= expected
            })
            .await;
        let height = |id: ReplicaId| {
            answers.iter().find_map(|(i, r)| match r {
                Ok(Response::Status(s)) if *i == id => Some(s.height),
                _ => None,
            })
        };
        let mut order: Vec<(ReplicaId, Option<u64>)> = self
            .rotation()
            .into_iter()
            .map(|id| (id, height(id)))
            .collect();
        order.sort_by_key(|(_, h)| h.is_none());
        order
    }

    async fn verify_chain_from(
        &self,
        id: ReplicaId,
        height: Option<u64>,
    ) -> Result<ChainReport, SetAside> {
        let on_problem = |p: ChainProblem| SetAside::Problem(p.from_replica(id));
        let (seq, block_hash, certificate) = self.checkpoint_of(id).await?;
        let height = match height {
            Some(h) => h,
            None => self.height_of(id).await?,
        };
        let target = height.max(seq);
        let genesis = self.genesis();
        let mut walk = ChainWalk::new(genesis, Some(seq));
        self.download(id, target, &mut walk).await?;
        let last = *walk
            .last()
            .ok_or_else(|| on_problem(ChainProblem::new(0, ChainFault::Empty)))?;
        let checkpoint = verify_checkpoint(genesis, seq, &block_hash, certificate.as_ref(), &walk)
            .map_err(on_problem)?;
        let checkpoint_header = walk.remembered_header();
        let attestations = self.attest_last(&last).await.map_err(on_problem)?;
        let attesters: Vec<ReplicaId> = attestations.iter().map(|a| a.replica).collect();
        let mut replicas_consulted: BTreeSet<ReplicaId> = attesters.iter().copied().collect();
        replicas_consulted.insert(id);
        Ok(ChainReport {
            height: last.height,
            head_hash: last.hash(),
            last_header: last,
            last_attestations: attestations,
            checkpoint,
            checkpoint_certificate: checkpoint.and(certificate),
            checkpoint_header: checkpoint.and(checkpoint_header),
            headers_from: id,
            attesters,
            replicas_consulted: replicas_consulted.into_iter().collect(),
            set_aside: Vec::new(),
        })
    }

    async fn checkpoint_of(
        &self,
        id: ReplicaId,
    ) -> Result<(u64, Hash, Option<quire_chain::CheckpointCertificate>), SetAside> {
        let request = Request::Checkpoint;
        match self.call(id, &request).await.map_err(SetAside::Call)? {
            Response::Checkpoint {
                seq,
                block_hash,
                certificate,
            } => Ok((seq, block_hash, certificate)),
            other => Err(SetAside::Call(unexpected(id, &request, &other))),
        }
    }

    /// The replica's own height: only a bound on how far to download, so a replica that lies
    /// about it can only make the check stop early (or end at the last header it really has).
    async fn height_of(&self, id: ReplicaId) -> Result<u64, SetAside> {
        let request = Request::Status;
        match self.call(id, &request).await.map_err(SetAside::Call)? {
            Response::Status(s) => Ok(s.height),
            other => Err(SetAside::Call(unexpected(id, &request, &other))),
        }
    }

    /// Downloads and walks headers `0..=target` in chunks, stopping early if the replica has
    /// no more.
    async fn download(
        &self,
        id: ReplicaId,
        target: u64,
        walk: &mut ChainWalk<'_>,
    ) -> Result<(), SetAside> {
        while walk.next_height() <= target {
            let from = walk.next_height();
            let count = (target - from + 1).min(HEADERS_MAX);
            let request = Request::Headers { from, count };
            let items = match self.call(id, &request).await.map_err(SetAside::Call)? {
                Response::Headers(items) => items,
                other => return Err(SetAside::Call(unexpected(id, &request, &other))),
            };
            if items.is_empty() {
                return Ok(());
            }
            for (header, certificate) in items.iter().take(count as usize) {
                walk.step(header, certificate.as_ref())
                    .map_err(|p| SetAside::Problem(p.from_replica(id)))?;
            }
        }
        Ok(())
    }

    /// Asks every replica to attest the last header; returns the valid attestations.
    async fn attest_last(&self, last: &Header) -> Result<Vec<Attestation>, ChainProblem> {
        let mut pool = Vec::new();
        self.gather_attestations(last, &mut pool).await;
        match vouch_header(self.genesis(), last, &pool) {
            Ok(vouched) => Ok(vouched.attestations),
            Err(crate::error::VerifyError::TooFewAttestations { have, need, .. }) => {
                Err(ChainProblem::new(
                    last.height,
                    ChainFault::LastHeaderNotAttested { have, need },
                ))
            }
            Err(_) => Err(ChainProblem::new(
                last.height,
                ChainFault::LastHeaderNotAttested {
                    have: 0,
                    need: self.genesis().validators.weak_quorum(),
                },
            )),
        }
    }
}
