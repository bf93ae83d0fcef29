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
    /// When the last request left or the last block arrived.
    pub sent_tick: u64,
    /// How many peers have been asked in turn (rotates the choice).
    pub attempts: u32,
    /// The highest height asked for: requests in flight cover `head + 1..=asked`.
    pub asked: u64,
}

/// Block requests kept in flight at once while catching up. One at a time, every round trip
/// waited for the peer's read, the network, verification, execution and the synced write in
/// turn; with a few in flight the peer reads and the pool verifies the next replies while this
/// replica executes and writes the current one. Bounded: at most this many replies
/// (`BLOCKS_PER_REPLY_MAX` blocks each) are ever on their way to us.
pub const FETCH_PIPELINE: u64 = 4;

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
                    asked: self.head.height,
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

    /// Tops the requests in flight up to [`FETCH_PIPELINE`] replies' worth past the head, in
    /// consecutive ranges, all to the chosen peer (its replies then arrive in order).
    fn request_blocks(&mut self) {
        let head = self.head.height;
        let per = BLOCKS_PER_REPLY_MAX as u64;
        let Some(f) = &mut self.fetch else {
            return;
        };
        // Nothing asked beyond the head is still coming (a timeout, a short reply): ask again.
        f.asked = f.asked.max(head);
        let window_end = head + FETCH_PIPELINE * per;
        let mut ranges = Vec::new();
        // At least one request, even at the target: a peer may have more than it claimed.
        while ranges.is_empty() || (f.asked < f.target && f.asked < window_end) {
            let from = f.asked + 1;
            let to = f.target.max(from).min(from + per - 1);
            ranges.push((from, to));
            f.asked = to;
        }
        let peer = f.peer;
        for (from, to) in ranges {
            let request = self.fetch_request(from, to);
            self.out.push(Output::Send(peer, request));
        }
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
        let head = self.head.height;
        if let Some(f) = &mut self.fetch {
            f.attempts = attempts;
            f.peer = peer;
            f.sent_tick = self.tick;
            // What the last peer was asked is forgotten: the next one is asked from the head.
            f.asked = head;
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
        if m.body.from > self.head.height {
            return;
        }
        let waiting = self
            .deferred_fetch
            .get(&m.from)
            .is_some_and(|q| !q.is_empty());
        if !waiting && self.may_reply(m.from, Reply::Blocks) {
            self.serve_fetch(m.from, m.body);
        } else if self.verifier.validators.get(m.from).is_some() {
            // At most one reply per peer per tick still holds; the request waits its turn.
            let queue = self.deferred_fetch.entry(m.from).or_default();
            if queue.len() as u64 >= FETCH_PIPELINE {
                queue.pop_front();
                self.stats.drop(Drop::RateLimited);
            }
            queue.push_back(m.body);
        }
    }

    /// At each tick: one of each peer's block requests that came too soon after the last reply.
    pub(crate) fn serve_deferred_fetches(&mut self) {
        if self.deferred_fetch.is_empty() {
            return;
        }
        let peers: Vec<ReplicaId> = self.deferred_fetch.keys().copied().collect();
        for peer in peers {
            if !self.may_reply(peer, Reply::Blocks) {
                continue;
            }
            let Some(queue) = self.deferred_fetch.get_mut(&peer) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                self.deferred_fetch.remove(&peer);
            }
            if let Some(request) = next
                && request.from <= self.head.height
            {
                self.serve_fetch(peer, request);
            }
        }
    }

    fn serve_fetch(&mut self, peer: ReplicaId, request: FetchBlocks) {
        let FetchBlocks { from, to } = request;
        let to_height = to
            .min(self.head.height)
            .min(from + BLOCKS_PER_REPLY_MAX as u64 - 1);
        self.out.push(Output::ServeBlocks {
            to: peer,
            from,
            to_height,
        });
    }

    pub(crate) fn on_blocks(&mut self, m: Signed<Blocks>) {
        let mut progressed = false;
        let mut skipped_ahead = false;
        for block in m.body.0 {
            if block.header.height != self.head.height + 1 {
                skipped_ahead |= block.header.height > self.head.height + 1;
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
        if skipped_ahead && let Some(f) = &mut self.fetch {
            // A reply overtook an earlier one and its blocks were skipped: the ranges in flight
            // no longer cover the head's successors. The next request starts at the head.
            f.asked = self.head.height;
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

#[cfg(test)]
mod tests {
    use quire_chain::store::MemoryStore;
    use quire_chain::testkit::TestNet;

    use crate::message::{FetchBlocks, Signed};
    use crate::replica::{Input, Output, Replica};

    fn replica(net: &TestNet) -> Replica {
        crate::exec::tests::replica(net, &MemoryStore::new(&net.genesis))
    }

    fn served(outputs: &[Output]) -> usize {
        outputs
            .iter()
            .filter(|o| matches!(o, Output::ServeBlocks { to: 2, .. }))
            .count()
    }

    /// A peer catching up on a fast link asks again within a tick of the last reply: the
    /// request waits for the next tick (one reply per peer per tick still holds) instead of
    /// being dropped, which cost the peer a fetch timeout every other round trip.
    #[test]
    fn a_block_request_within_a_tick_of_the_last_reply_is_served_at_the_next_tick() {
        let net = TestNet::new(4, 2);
        let mut r = replica(&net);
        r.step(Input::Tick { now_ms: 10 });
        let request = || {
            Signed::sign(
                FetchBlocks { from: 0, to: 0 },
                2,
                &net.validator_keys[2],
                &net.chain_id(),
            )
        };
        r.on_fetch(request());
        assert_eq!(served(&std::mem::take(&mut r.out)), 1);
        r.on_fetch(request());
        r.on_fetch(request());
        assert_eq!(served(&std::mem::take(&mut r.out)), 0, "one reply per tick");
        // The two that waited go out one per tick, and nothing more.
        for now_ms in [20, 30] {
            let outputs = r.step(Input::Tick { now_ms });
            assert_eq!(served(&outputs), 1, "at {now_ms} ms");
        }
        let outputs = r.step(Input::Tick { now_ms: 40 });
        assert_eq!(served(&outputs), 0);
    }

    /// A peer that asks far more often than once a tick gets one reply a tick and no more
    /// than `FETCH_PIPELINE` of its requests are kept waiting.
    #[test]
    fn block_requests_wait_in_a_bounded_queue_and_go_one_per_tick() {
        let net = TestNet::new(4, 2);
        let mut r = replica(&net);
        r.step(Input::Tick { now_ms: 10 });
        for _ in 0..100 {
            r.on_fetch(Signed::sign(
                FetchBlocks { from: 0, to: 0 },
                2,
                &net.validator_keys[2],
                &net.chain_id(),
            ));
        }
        assert_eq!(served(&std::mem::take(&mut r.out)), 1);
        assert_eq!(
            r.deferred_fetch.get(&2).map(|q| q.len() as u64),
            Some(super::FETCH_PIPELINE)
        );
        let mut total = 0;
        for t in 2..20 {
            let outputs = r.step(Input::Tick { now_ms: t * 10 });
            assert!(served(&outputs) <= 1);
            total += served(&outputs);
        }
        assert_eq!(total as u64, super::FETCH_PIPELINE);
    }
}
