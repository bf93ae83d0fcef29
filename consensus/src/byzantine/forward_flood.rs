//! `forward-flood`: Forwards full of validly signed transactions, to every peer, every burst.
//!
//! Each transaction costs its receiver a signature check, unless the receiver notices first that
//! it has nothing to do with it. Most cost the attacker nothing: client transactions it has seen
//! committed (or pending), forwarded again. The rest are its own, from a key nobody funded:
//! pairs that conflict (same nonce, different contents) and nonces far in the future, the kind a
//! mempool parks — a handful of signatures per burst, so the attacker's own CPU stays small.

use std::collections::VecDeque;

use quire_chain::tx::{Outcome, Rejection};
use quire_chain::{Address, Hash, Keypair, Transaction, Transfer};

use crate::message::{FORWARD_MAX, Forward, Message};
use crate::replica::{Input, Output, Replica};

/// Client transactions remembered for forwarding again.
const REMEMBERED_MAX: usize = 8192;

pub(super) struct ForwardFlood {
    /// Where its own key comes from (derived when first needed: deriving costs a scalar
    /// multiplication, and most actors never flood).
    secret: [u8; 32],
    key: Option<Keypair>,
    /// The next nonce of its own key to sign for (the account stays at nonce 0: it has nothing).
    next_nonce: u64,
    /// Client transactions seen, oldest first.
    seen: VecDeque<Transaction>,
    cursor: usize,
}

impl ForwardFlood {
    pub(super) fn new(seed: u64, me: u32) -> ForwardFlood {
        let secret = Hash::tagged(
            "quire/byzantine/forward-flood",
            &[&seed.to_be_bytes(), &me.to_be_bytes()],
        );
        ForwardFlood {
            secret: secret.0,
            key: None,
            next_nonce: 0,
            seen: VecDeque::new(),
            cursor: 0,
        }
    }

    pub(super) fn clear(&mut self) {
        self.seen.clear();
        self.cursor = 0;
    }

    fn remember(&mut self, tx: &Transaction) {
        if self.seen.len() >= REMEMBERED_MAX {
            self.seen.pop_front();
        }
        self.seen.push_back(tx.clone());
    }

    /// Starts from the transactions waiting in the replica's mempool (all of them passed a
    /// signature check on the way in; a batch in the log may hold a faulty primary's forgeries,
    /// and one bad signature would have the whole Forward refused).
    pub(super) fn seed(&mut self, replica: &Replica) {
        for tx in replica.mempool.stale_queued(u64::MAX, 0, 1024) {
            self.remember(&tx);
        }
    }

    /// Client transactions reaching the replica (committed ones are seen in its outputs).
    pub(super) fn observe_input(&mut self, input: &Input) {
        match input {
            Input::Requests(txs) => txs.iter().for_each(|tx| self.remember(tx)),
            Input::Message(m) => {
                if let Message::Forward(f) = m.message() {
                    f.body.0.iter().for_each(|tx| self.remember(tx));
                }
            }
            Input::Tick { .. } => {}
        }
    }

    pub(super) fn observe_outputs(&mut self, outputs: &[Output]) {
        for o in outputs {
            if let Output::Commit(executed) = o {
                let record = &executed.record;
                for (tx, outcome) in record.block.txs.iter().zip(&record.outcomes) {
                    if *outcome != Outcome::Rejected(Rejection::BadSignature) {
                        self.remember(tx);
                    }
                }
            }
        }
    }

    /// One burst: a Forward of `size` transactions (`fresh` of them newly signed with its own
    /// key), to every peer.
    pub(super) fn burst(&mut self, replica: &Replica, size: usize, fresh: usize) -> Vec<Output> {
        let size = size.min(FORWARD_MAX);
        let mut txs = Vec::with_capacity(size);
        let chain_id = replica.verifier.chain_id;
        let key = self
            .key
            .get_or_insert_with(|| Keypair::from_secret(self.secret))
            .clone();
        let elsewhere = Address(Hash::tagged("quire/byzantine/sink", &[&self.secret]).0);
        while txs.len() + 2 <= fresh.min(size) {
            // Two transfers with one nonce: they conflict, and from an empty account both are
            // doomed; all but the first pair have nonces from the future.
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            for (amount, to) in [(1, elsewhere), (2, key.address())] {
                let transfer = Transfer {
                    from: key.address(),
                    to,
                    amount,
                    nonce,
                };
                txs.push(transfer.sign(&key, &chain_id));
            }
        }
        // The rest: what clients signed, sent again (a different slice each burst, so no two
        // Forwards are the same message).
        let room = size - txs.len();
        let replayed = room.min(self.seen.len());
        for k in 0..replayed {
            let i = (self.cursor + k) % self.seen.len();
            txs.push(self.seen[i].clone());
        }
        if !self.seen.is_empty() {
            self.cursor = (self.cursor + replayed) % self.seen.len();
        }
        if txs.is_empty() {
            return Vec::new();
        }
        let forward = replica.sign(Forward(txs));
        vec![Output::Broadcast(Message::Forward(forward))]
    }
}
