//! State transfer: a replica that has fallen behind (below the low watermark, or behind a weak
//! quorum of peers) fetches blocks from peers and executes them itself. Every block carries the
//! commit certificate of its batch, checked at the boundary, and re-execution derives the header,
//! so no single peer can make it accept anything false; a peer that does not answer is replaced.

use quire_chain::ReplicaId;

use crate::message::{BLOCKS_PER_REPLY_MAX, Blocks, FetchBlocks, Signed};
use crate::replica::{Output, Replica, Reply};
use crate::stats::Drop;

#[derive(Clone, Debug)]
pub struct Fetch {
    /// Fetch at least up to this height.
    pub target: u64,
    pub peer: ReplicaId,
    pub sent_tick: u64,
    /// How many peers have been asked in turn (rotates the choice).
    pub attempts: u32,
}

impl Replica {
    pub(crate) fn start_fetch(&mut self, target: u64) {
        if target <= self.head.height {
            return;
        }
        match &mut self.fetch {
            Some(f) => f.target = f.target.max(target),
            None => {
                let peer = self.fetch_peer(0);
                self.fetch = Some(Fetch {
                    target,
                    peer,
                    sent_tick: self.tick,
                    attempts: 0,
                });
                self.request_blocks();
            }
        }
    }

    /// Peers in order of the height they report, highest first; then the rest. Each attempt
    /// asks the next one.
    fn fetch_peer(&self, attempt: u32) -> ReplicaId {
        let mut peers: Vec<(u64, ReplicaId)> = self
            .verifier
            .validators
            .ids()
            .filter(|r| *r != self.id)
            .map(|r| (self.peers.get(&r).map_or(0, |p| p.status.last_executed), r))
            .collect();
        peers.sort_by(|a, b| b.cmp(a));
        if peers.is_empty() {
            return self.id;
        }
        peers[attempt as usize % peers.len()].1
    }

    fn request_blocks(&mut self) {
        let Some(f) = &self.fetch else {
            return;
        };
        let from = self.head.height + 1;
        let to = f
            .target
            .max(from)
            .min(from + BLOCKS_PER_REPLY_MAX as u64 - 1);
        let peer = f.peer;
        let request = self.fetch_request(from, to);
        self.out.push(Output::Send(peer, request));
    }

    pub(crate) fn check_fetch_timeout(&mut self) {
        let timeout = self.params.fetch_timeout_ticks;
        let Some(f) = &self.fetch else {
            return;
        };
        if self.tick.saturating_sub(f.sent_tick) <= timeout {
            return;
        }
        let attempts = f.attempts + 1;
        if attempts as usize >= self.verifier.validators.n() {
            // Every peer was asked and none helped (someone claimed blocks it does not have):
            // give up for a while rather than let a liar keep us busy.
            self.fetch = None;
            self.fetch_quiet_until = self.tick + 4 * timeout;
            return;
        }
        let peer = self.fetch_peer(attempts);
        if let Some(f) = &mut self.fetch {
            f.attempts = attempts;
            f.peer = peer;
            f.sent_tick = self.tick;
        }
        self.request_blocks();
    }

    /// If a peer reports having executed beyond us and we have not executed anything for a
    /// while, fetch what it has. Blocks are certified, so one peer's word is enough to try: a
    /// liar costs a request, never a wrong block.
    pub(crate) fn catch_up_if_behind(&mut self) {
        if self.fetch.is_some()
            || self.tick < self.fetch_quiet_until
            || self.tick.saturating_sub(self.executed_tick) < self.params.retransmit_ticks
        {
            return;
        }
        let highest = self
            .peers
            .iter()
            .filter(|(r, _)| **r != self.id)
            .map(|(_, p)| p.status.last_executed)
            .max();
        if let Some(height) = highest
            && height > self.head.height
        {
            self.start_fetch(height);
        }
    }

    pub(crate) fn on_fetch(&mut self, m: Signed<FetchBlocks>) {
        let FetchBlocks { from, to } = m.body;
        if from > self.head.height || !self.may_reply(m.from, Reply::Blocks) {
            return;
        }
        let to_height = to
            .min(self.head.height)
            .min(from + BLOCKS_PER_REPLY_MAX as u64 - 1);
        self.out.push(Output::ServeBlocks {
            to: m.from,
            from,
            to_height,
        });
    }

    pub(crate) fn on_blocks(&mut self, m: Signed<Blocks>) {
        let mut progressed = false;
        for block in m.body.0 {
            if block.header.height != self.head.height + 1 {
                continue;
            }
            let Some(cert) = block.certificate.clone() else {
                continue;
            };
            let batch = block.batch();
            // A certified digest does not vouch for the signatures (see `all_signed`).
            if !self.all_signed(&batch) {
                self.stats
                    .blame(crate::stats::Misbehaviour::WrongHeader, m.from);
                break;
            }
            self.execute_block(&batch, cert, Some((&block.header, m.from)));
            self.stats.blocks_fetched += 1;
            progressed = true;
        }
        if !progressed {
            self.stats.drop(Drop::UnwantedBlocks);
            return;
        }
        // Slots at or below the new head are done; execution may continue from the log.
        let Some(f) = &mut self.fetch else {
            self.try_execute();
            return;
        };
        if self.head.height >= f.target {
            self.fetch = None;
            self.try_execute();
        } else {
            f.sent_tick = self.tick;
            self.request_blocks();
        }
    }
}
