//! Simulated clients: funded accounts that send transfers (a few of them invalid on purpose:
//! overdrafts, bad signatures), occasional raw payloads, and resend to every replica when a
//! transfer does not execute in time — the client's side of PBFT's request timer.

use quire_chain::testkit::TestNet;
use quire_chain::{Ledger, Transaction};

use super::rng::Rng;

/// Where a client sends a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    One(u32),
    All,
}

struct Pending {
    tx: Transaction,
    nonce: u64,
    sent_tick: u64,
    retries: u32,
}

pub struct Workload {
    /// Chance per account per tick of starting a new transfer.
    rate_per_mille: u64,
    resend_ticks: u64,
    pending: Vec<Option<Pending>>,
    pub submitted: u64,
}

impl Workload {
    pub fn new(accounts: usize, rate_per_mille: u64) -> Workload {
        Workload {
            rate_per_mille,
            resend_ticks: 150,
            pending: (0..accounts).map(|_| None).collect(),
            submitted: 0,
        }
    }

    pub fn tick(
        &mut self,
        rng: &mut Rng,
        now: u64,
        net: &TestNet,
        agreed: &Ledger,
        replicas: u32,
    ) -> Vec<(Target, Transaction)> {
        let mut out = Vec::new();
        let accounts = self.pending.len();
        for a in 0..accounts {
            let executed_nonce = agreed.account(&net.account_keys[a].address()).nonce;
            if let Some(p) = &mut self.pending[a] {
                if executed_nonce > p.nonce || p.retries >= 3 {
                    self.pending[a] = None;
                } else if now.saturating_sub(p.sent_tick) > self.resend_ticks {
                    p.sent_tick = now;
                    p.retries += 1;
                    out.push((Target::All, p.tx.clone()));
                }
                continue;
            }
            if !rng.chance(self.rate_per_mille) {
                continue;
            }
            let to = (a + 1 + rng.below(accounts as u64 - 1) as usize) % accounts;
            let balance = agreed.account(&net.account_keys[a].address()).balance;
            let amount = if rng.chance(20) {
                balance + 1
            } else {
                1 + rng.below(balance / 8 + 1)
            };
            let mut tx = net.transfer(a, to, amount, executed_nonce);
            if rng.chance(10)
                && let Transaction::Transfer(t) = &mut tx
            {
                t.signature.0[5] ^= 0x20;
            }
            let target = Target::One(rng.below(replicas as u64) as u32);
            self.pending[a] = Some(Pending {
                tx: tx.clone(),
                nonce: executed_nonce,
                sent_tick: now,
                retries: 0,
            });
            self.submitted += 1;
            out.push((target, tx));
            if rng.chance(10) {
                let payload = rng.next_u64().to_be_bytes().to_vec();
                out.push((
                    Target::One(rng.below(replicas as u64) as u32),
                    Transaction::raw(payload),
                ));
            }
        }
        out
    }
}
