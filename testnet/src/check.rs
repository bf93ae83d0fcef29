//! `quire-testnet check`: the cross-replica safety checker.
//!
//! It gathers every honest replica's chain over RPC and checks that no two disagree at any
//! height, that every block links to its parent and carries a valid certificate of a quorum of
//! distinct validators, and — re-executing the chain from the genesis — that every header's state
//! root is right, no transaction is applied twice, and money is conserved. Replicas that were
//! ever switched to a faulty behaviour (see `DIR/events.log`) are named and not judged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use anyhow::Result;
use quire_chain::block::execute;
use quire_chain::tx::Outcome;
use quire_chain::{Block, Hash, Header, ReplicaId, TxId};
use quire_client::Client;
use quire_wire::rpc::{BlockRef, HEADERS_MAX, Request, Response};

use crate::ops::Testnet;

#[derive(Debug, Clone)]
pub enum Finding {
    /// Two honest replicas executed different blocks at one height.
    Disagreement {
        height: u64,
        hashes: BTreeMap<ReplicaId, Hash>,
    },
    BadLink {
        replica: ReplicaId,
        height: u64,
    },
    BadCertificate {
        replica: ReplicaId,
        height: u64,
        reason: String,
    },
    WrongState {
        replica: ReplicaId,
        height: u64,
    },
    AppliedTwice {
        tx: TxId,
        heights: (u64, u64),
    },
    MoneyNotConserved {
        height: u64,
        total: u128,
        expected: u128,
    },
    /// An honest replica found, at a checkpoint, that its block differed from the one 2f+1
    /// replicas certified — a fork it then repaired by discarding its chain. Its chain agrees
    /// now, but it had executed (and may have reported to clients) other blocks.
    Diverged {
        replica: ReplicaId,
        height: u64,
        ours: String,
        certified: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Diverged {
                replica,
                height,
                ours,
                certified,
            } => write!(
                f,
                "replica {replica} forked at height {height}: its block {} differed from the certified {} (it discarded its chain and fetched the certified one)",
                &ours[..ours.len().min(16)],
                &certified[..certified.len().min(16)]
            ),
            Finding::Disagreement { height, hashes } => {
                write!(f, "DISAGREEMENT at height {height}:")?;
                for (r, h) in hashes {
                    write!(f, " replica {r} has {}", h.short())?;
                    write!(f, ";")?;
                }
                Ok(())
            }
            Finding::BadLink { replica, height } => {
                write!(
                    f,
                    "replica {replica}: block {height} does not link to block {}",
                    height.saturating_sub(1)
                )
            }
            Finding::BadCertificate {
                replica,
                height,
                reason,
            } => write!(
                f,
                "replica {replica}: block {height} has no valid certificate: {reason}"
            ),
            Finding::WrongState { replica, height } => write!(
                f,
                "replica {replica}: block {height}'s state root is not what re-executing the chain gives"
            ),
            Finding::AppliedTwice { tx, heights } => write!(
                f,
                "transaction {} applied twice, at heights {} and {}",
                tx.0.short(),
                heights.0,
                heights.1
            ),
            Finding::MoneyNotConserved {
                height,
                total,
                expected,
            } => write!(
                f,
                "after block {height} the total supply is {total}, not {expected}"
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Replicas judged, with the height checked.
    pub judged: BTreeMap<ReplicaId, u64>,
    /// Replicas not judged, and why.
    pub excluded: BTreeMap<ReplicaId, String>,
    pub findings: Vec<Finding>,
    /// Height up to which every judged replica agrees (the shortest judged chain).
    pub agreed_height: u64,
    pub replayed_height: u64,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.findings.is_empty() && !self.judged.is_empty()
    }

    /// The first fork found: two honest replicas with different blocks at a height, or one
    /// that found (and repaired) its own divergence from the certified chain.
    pub fn first_disagreement(&self) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|f| matches!(f, Finding::Disagreement { .. } | Finding::Diverged { .. }))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let judged: Vec<String> = self
            .judged
            .iter()
            .map(|(r, h)| format!("{r} (height {h})"))
            .collect();
        let _ = writeln!(
            out,
            "judged (honest throughout): {}",
            if judged.is_empty() {
                "none".into()
            } else {
                judged.join(", ")
            }
        );
        for (r, why) in &self.excluded {
            let _ = writeln!(out, "not judged: replica {r}: {why}");
        }
        if self.findings.is_empty() {
            let _ = writeln!(
                out,
                "SAFE: judged replicas agree on every block up to height {}; every block links to its parent and carries a valid certificate; re-executing {} blocks gives every state root; no transaction applied twice; money conserved",
                self.agreed_height, self.replayed_height
            );
        } else {
            if let Some(d) = self.first_disagreement() {
                let _ = writeln!(out, "first disagreement: {d}");
            }
            let _ = writeln!(out, "{} problems:", self.findings.len());
            for f in self.findings.iter().take(20) {
                let _ = writeln!(out, "  {f}");
            }
        }
        out
    }
}

/// The replica's own report of a divergence (`quire_divergence{height,ours,certified}`).
fn divergence(replica: ReplicaId, metrics: &str) -> Option<Finding> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("quire_divergence{"))?;
    let label = |name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = start + line[start..].find('"')?;
        Some(line[start..end].to_string())
    };
    Some(Finding::Diverged {
        replica,
        height: label("height")?.parse().ok()?,
        ours: label("ours")?,
        certified: label("certified")?,
    })
}

async fn headers(
    client: &Client,
    replica: ReplicaId,
    to: u64,
) -> Result<Vec<(Header, Option<quire_chain::CommitCertificate>)>> {
    let mut out = Vec::new();
    let mut from = 0;
    while from <= to {
        let count = (to - from + 1).min(HEADERS_MAX);
        match client
            .call(replica, &Request::Headers { from, count })
            .await?
        {
            Response::Headers(hs) if !hs.is_empty() => {
                from += hs.len() as u64;
                out.extend(hs);
            }
            _ => break,
        }
    }
    Ok(out)
}

async fn block(client: &Client, replica: ReplicaId, height: u64) -> Result<Option<Block>> {
    Ok(
        match client
            .call(replica, &Request::Block(BlockRef::Height(height)))
            .await?
        {
            Response::Block { block, .. } => block,
            _ => None,
        },
    )
}

/// Checks the testnet, judging every reachable replica not in `faulty`.
pub async fn check(net: &Testnet, faulty: &BTreeSet<ReplicaId>) -> Result<CheckReport> {
    let client = Client::new(net.network.clone())?;
    let genesis = &net.network.genesis;
    let mut report = CheckReport::default();
    let mut chains: BTreeMap<ReplicaId, Vec<(Header, Option<quire_chain::CommitCertificate>)>> =
        BTreeMap::new();
    for r in 0..net.n() {
        if faulty.contains(&r) {
            report.excluded.insert(
                r,
                "was switched to a faulty behaviour during the run".into(),
            );
            continue;
        }
        let height = match client.call(r, &Request::Status).await {
            Ok(Response::Status(s)) => s.height,
            _ => {
                report.excluded.insert(r, "unreachable".into());
                continue;
            }
        };
        let chain = headers(&client, r, height).await?;
        report
            .judged
            .insert(r, chain.len().saturating_sub(1) as u64);
        chains.insert(r, chain);
        if let Ok(metrics) = net.http(r, "GET", "/metrics")
            && let Some(finding) = divergence(r, &metrics)
        {
            report.findings.push(finding);
        }
    }
    // Links and certificates, per replica.
    for (r, chain) in &chains {
        for (i, (header, cert)) in chain.iter().enumerate() {
            if i == 0 {
                if *header != genesis.block().header {
                    report.findings.push(Finding::BadLink {
                        replica: *r,
                        height: 0,
                    });
                }
                continue;
            }
            if header.height != i as u64 || header.parent_hash != chain[i - 1].0.hash() {
                report.findings.push(Finding::BadLink {
                    replica: *r,
                    height: i as u64,
                });
            }
            // Bodies are not fetched here: the certificate is checked against the header's digest
            // (the replay below checks bodies against tx_root).
            let verdict = match cert {
                None => Err("no certificate".to_string()),
                Some(c) if c.statement.seq != header.height => {
                    Err(format!("certificate for seq {}", c.statement.seq))
                }
                Some(c) if c.statement.digest != header.batch_digest() => {
                    Err("certificate signs another batch".into())
                }
                Some(c) => c
                    .verify(&genesis.chain_id(), &genesis.validators)
                    .map_err(|e| e.to_string()),
            };
            if let Err(reason) = verdict {
                report.findings.push(Finding::BadCertificate {
                    replica: *r,
                    height: i as u64,
                    reason,
                });
            }
        }
    }
    // Agreement across replicas, height by height.
    let max = chains.values().map(|c| c.len()).max().unwrap_or(0);
    report.agreed_height = chains
        .values()
        .map(|c| c.len())
        .min()
        .unwrap_or(0)
        .saturating_sub(1) as u64;
    for h in 0..max {
        let hashes: BTreeMap<ReplicaId, Hash> = chains
            .iter()
            .filter_map(|(r, c)| c.get(h).map(|(hd, _)| (*r, hd.hash())))
            .collect();
        let distinct: BTreeSet<&Hash> = hashes.values().collect();
        if distinct.len() > 1 {
            report.findings.push(Finding::Disagreement {
                height: h as u64,
                hashes,
            });
        }
    }
    // Re-execute the longest judged chain.
    if let Some((&r, chain)) = chains.iter().max_by_key(|(_, c)| c.len()) {
        replay(
            &client,
            r,
            chain.len().saturating_sub(1) as u64,
            net,
            &mut report,
        )
        .await?;
    }
    Ok(report)
}

async fn replay(
    client: &Client,
    r: ReplicaId,
    to: u64,
    net: &Testnet,
    report: &mut CheckReport,
) -> Result<()> {
    let genesis = &net.network.genesis;
    let mut ledger = genesis.ledger();
    let mut head = genesis.block().header;
    let supply = genesis.total_supply();
    let mut applied: BTreeMap<TxId, u64> = BTreeMap::new();
    for h in 1..=to {
        let Some(block) = block(client, r, h).await? else {
            break;
        };
        let executed = execute(
            &mut ledger,
            &head,
            &block.batch(),
            block.certificate.clone(),
            None,
        );
        if executed.record.block.header != block.header {
            report.findings.push(Finding::WrongState {
                replica: r,
                height: h,
            });
            break;
        }
        for (tx, outcome) in block.txs.iter().zip(&executed.record.outcomes) {
            if *outcome == Outcome::Applied
                && let Some(first) = applied.insert(tx.id(), h)
            {
                report.findings.push(Finding::AppliedTwice {
                    tx: tx.id(),
                    heights: (first, h),
                });
            }
        }
        let total = ledger.total_supply();
        if total != supply {
            report.findings.push(Finding::MoneyNotConserved {
                height: h,
                total,
                expected: supply,
            });
            break;
        }
        head = block.header;
        report.replayed_height = h;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_s_divergence_gauge_is_read_as_a_finding() {
        // The node renders the gauge and the checker parses it: one test pins both ends.
        let m = quire_node::metrics::Metrics::new(2, 4);
        assert!(divergence(2, &m.render()).is_none());
        let (ours, certified) = (quire_chain::Hash([5; 32]), quire_chain::Hash([6; 32]));
        m.diverged(24, ours, certified);
        match divergence(2, &m.render()) {
            Some(Finding::Diverged {
                replica: 2,
                height: 24,
                ours: o,
                certified: c,
            }) => {
                assert_eq!(o, ours.to_string());
                assert_eq!(c, certified.to_string());
            }
            other => panic!("expected a divergence finding, got {other:?}"),
        }
    }
}
