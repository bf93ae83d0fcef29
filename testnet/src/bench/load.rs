//! The benchmark's load: transactions made ahead of each measured point (signing costs nothing
//! while the clock runs), with each account's nonces continuing from what the chain executed
//! so a sweep can run many points on one testnet.

use anyhow::Result;
use quire_chain::{Hash, Keypair, Transaction, Transfer};

use super::Workload;

pub struct Load {
    workload: Workload,
    tx_size: usize,
    keys: Vec<Keypair>,
    chain_id: Hash,
    /// Each account's next nonce.
    next_nonce: Vec<u64>,
    /// Makes raw payloads unique across points and runs.
    run: u64,
    made: u64,
}

impl Load {
    /// `nonces` are the accounts' next nonces now (transfers).
    pub fn new(
        workload: Workload,
        tx_size: usize,
        keys: Vec<Keypair>,
        chain_id: Hash,
        nonces: Vec<u64>,
    ) -> Load {
        Load {
            workload,
            tx_size,
            keys,
            chain_id,
            next_nonce: nonces,
            run: rand::random(),
            made: 0,
        }
    }

    pub fn workload(&self) -> Workload {
        self.workload
    }

    pub fn keys(&self) -> &[Keypair] {
        &self.keys
    }

    /// Continues from `nonces` (each account's next nonce by the chain): a transfer made
    /// earlier and never executed is made again, and later ones do not wait behind a gap.
    pub fn resync(&mut self, nonces: Vec<u64>) {
        if nonces.len() == self.next_nonce.len() {
            self.next_nonce = nonces;
        }
    }

    /// The next `count` transactions, signed in parallel. Transfers go round robin over the
    /// accounts, one unit each to the next account.
    pub fn make(&mut self, count: usize) -> Result<Vec<Transaction>> {
        if self.workload == Workload::Raw {
            let first = self.made;
            self.made += count as u64;
            let (run, size) = (self.run, self.tx_size);
            return Ok((first..first + count as u64)
                .map(|i| {
                    let mut payload = vec![0u8; size];
                    let tag = [run.to_be_bytes(), i.to_be_bytes()].concat();
                    let n = tag.len().min(payload.len());
                    payload[..n].copy_from_slice(&tag[..n]);
                    Transaction::raw(payload)
                })
                .collect());
        }
        let accounts = self.keys.len();
        let plan: Vec<(usize, u64)> = (0..count)
            .map(|i| {
                let from = (self.made as usize + i) % accounts;
                let nonce = self.next_nonce[from];
                self.next_nonce[from] += 1;
                (from, nonce)
            })
            .collect();
        self.made += count as u64;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per = count.div_ceil(threads).max(1);
        let (keys, chain_id) = (&self.keys, self.chain_id);
        let parts: Vec<Vec<Transaction>> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .chunks(per)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(from, nonce)| {
                                let to = (from + 1) % keys.len();
                                Transfer {
                                    from: keys[*from].address(),
                                    to: keys[to].address(),
                                    amount: 1,
                                    nonce: *nonce,
                                }
                                .sign(&keys[*from], &chain_id)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        Ok(parts.into_iter().flatten().collect())
    }
}
