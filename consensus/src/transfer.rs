//! State transfer: a replica that has fallen behind (below the low watermark, or behind a weak
//! quorum of peers) fetches blocks from peers and executes them itself. Every block carries the
//! commit certificate of its batch, checked at the boundary, and re-execution derives the header,
//! so no single peer can make it accept anything false; a peer that does not answer is replaced.

use std::collections::BTreeMap;

use quire_chain::ReplicaId;

use crate::message::{BLOCKS_PER_REPLY_MAX, Blocks, FetchBlocks, Signed, Status};
use crate::replica::{Output, Replica, Reply};
use crate::stats::Drop;

#[derive(Clone, Debug)]
pub struct Fetch {
    /// Fetch at least up to this height (raised while fetching to what a weak quorum of peers
    /// reports having executed).
    pub target: u64,
    pub peer: ReplicaId,
    /// When the last request left or the last block arrived.
    pub sent_tick: u64,
    /// How many peers have been asked in turn (a fetch gives up after asking every one).
    pub attempts: u32,
    /// The ranges asked of `peer` and not answered yet, `from -> (to, order asked)`: at most
    /// [`FETCH_PIPELINE`]. A peer serves its requests in order, one reply each, so a reply
    /// answers the range that starts at its first block and tells that the ranges asked before
    /// that one will not be answered.
    pub in_flight: BTreeMap<u64, (u64, u64)>,
    /// How many ranges have been asked (numbers them for `in_flight`).
    pub asked: u64,
}

/// Block requests kept in flight at once while catching up. One at a time, every round trip
/// waited for the peer's read, the network, verification, execution and the synced write in
/// turn; with a few in flight the peer reads and the pool verifies the next replies while this
/// replica executes and writes the current one. Bounded: at most this many replies
/// (`BLOCKS_PER_REPLY_MAX` blocks each) are ever on their way to us, and a peer keeps at most
/// this many of our requests waiting (`deferred_fetch`), so none of ours is ever dropped there.
pub const FETCH_PIPELINE: u64 = 4;

impl Replica {
    pub(crate) fn start_fetch(&mut self, target: u64) {
        if target <= self.head.height {
            return;
        }
        match &mut self.fetch {
            Some(f) => f.target = f.target.max(target),
            None => {
                let peer = self.fetch_peer(target);
                self.fetch = Some(Fetch {
                    target,
                    peer,
                    sent_tick: self.tick,
                    attempts: 0,
                    in_flight: BTreeMap::new(),
                    asked: 0,
                });
            }
        }
        self.request_blocks();
    }

    /// The peer to ask: of those whose fetches timed out least often, the one reporting the
    /// highest height up to the fetch's target or the vouched one (beyond both a report is one
    /// peer's word). A peer that timed out — a liar claiming blocks it does not have, or one
    /// that was down — goes behind the others, so each attempt of a fetch asks another peer,
    /// and a liar costs one fetch timeout, not one per fetch.
    fn fetch_peer(&self, target: u64) -> ReplicaId {
        let vouched = self.vouched_height().max(target);
        self.verifier
            .validators
            .ids()
            .filter(|r| *r != self.id)
            .min_by_key(|r| {
                let failures = self.fetch_failures.get(r).copied().unwrap_or(0);
                let height = self.peers.get(r).map_or(0, |p| p.status.last_executed);
                (failures, std::cmp::Reverse(height.min(vouched)), *r)
            })
            .unwrap_or(self.id)
    }

    /// The height at least one honest peer has executed: the (f+1)-th highest any peer reports.
    /// A fetch reaching its target goes on to this instead of ending and waiting for the idle
    /// timer (which cost 250-550 ms at the end of every long catch-up).
    pub(crate) fn vouched_height(&self) -> u64 {
        self.vouched(|s| s.last_executed)
    }

    /// The (f+1)-th highest of a figure the peers report in their status: at least one honest
    /// peer reported this much, so no f liars can raise it (one could otherwise start fetches
    /// of heights nobody has, and a primary that fetches does not propose).
    pub(crate) fn vouched(&self, figure: impl Fn(&Status) -> u64) -> u64 {
        let mut reported: Vec<u64> = self
            .peers
            .iter()
            .filter(|(r, _)| **r != self.id)
            .map(|(_, p)| figure(&p.status))
            .collect();
        reported.sort_unstable_by(|a, b| b.cmp(a));
        reported
            .get(self.verifier.validators.f())
            .copied()
            .unwrap_or(0)
    }

    /// Tops the requests in flight up to [`FETCH_PIPELINE`], asking for the lowest heights above
    /// the head that no request in flight covers, in whole replies (the peer caps a reply at
    /// what it has), all to the chosen peer (its replies then arrive in order).
    fn request_blocks(&mut self) {
        let head = self.head.height;
        let vouched = self.vouched_height();
        let per = BLOCKS_PER_REPLY_MAX as u64;
        let Some(f) = &mut self.fetch else {
            return;
        };
        f.target = f.target.max(vouched);
        let mut ranges = Vec::new();
        let mut cursor = head + 1;
        while f.in_flight.len() < FETCH_PIPELINE as usize && cursor <= f.target {
            if let Some((_, &(to, _))) = f.in_flight.range(..=cursor).next_back()
                && to >= cursor
            {
                cursor = to + 1;
                continue;
            }
            let next_asked = f.in_flight.range(cursor..).next().map(|(&from, _)| from);
            let to = next_asked
                .map_or(u64::MAX, |from| from - 1)
                .min(cursor + per - 1);
            f.in_flight.insert(cursor, (to, f.asked));
            f.asked += 1;
            ranges.push((cursor, to));
            cursor = to + 1;
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
        *self.fetch_failures.entry(f.peer).or_default() += 1;
        if attempts as usize >= self.verifier.validators.n() {
            // Every peer was asked and none helped (someone claimed blocks it does not have):
            // give up for a while rather than let a liar keep us busy.
            self.fetch = None;
            self.fetch_quiet_until = self.tick + 4 * timeout;
            return;
        }
        let peer = self.fetch_peer(f.target);
        if let Some(f) = &mut self.fetch {
            f.attempts = attempts;
            f.peer = peer;
            f.sent_tick = self.tick;
            // What the last peer was asked is forgotten: the next one is asked from the head.
            f.in_flight.clear();
        }
        self.request_blocks();
    }

    /// If peers report having executed beyond us and we have not executed anything for a
    /// while, fetch what they have. Blocks are certified, so a liar could cost a request, never
    /// a wrong block; the height is one at least an honest peer vouches for (see [`Self::vouched`]).
    /// Peers whose stable checkpoint is a whole watermark window above our head are past
    /// anything our log can hold (those slots' messages were out of our window): that is reason
    /// enough at once, where a restarted replica otherwise waited the idle timer first.
    pub(crate) fn catch_up_if_behind(&mut self) {
        if self.fetch.is_some() || self.tick < self.fetch_quiet_until {
            return;
        }
        let past_our_log =
            self.vouched(|s| s.stable_seq) > self.head.height + self.verifier.protocol.log_window;
        if !past_our_log
            && self.tick.saturating_sub(self.executed_tick) < self.params.retransmit_ticks
        {
            return;
        }
        let mut height = self.vouched_height();
        if self.stuck_behind_one_peer() {
            height = height.max(self.highest_reported());
        }
        if height > self.head.height {
            self.start_fetch(height);
        }
    }

    /// A backup whose accepted proposals have waited a whole view timeout without one
    /// execution, while a peer reports executing past it: that peer's word is enough to ask it.
    ///
    /// Without this, one honest replica could be the only one ahead for good: it executed with
    /// the votes of a faulty replica that then went quiet, drops votes for what it executed (a
    /// duplicate to it), and the others, each a vote short, never heard f + 1 peers vouch for a
    /// height to fetch — a view change does not help (the new view re-proposes the same slots
    /// to the same voters). Found by the simulator (mixed faults, 7 replicas: 4 seeds in 600).
    /// Blocks are certified, so a liar costs this backup a fetch timeout, not a wrong block; and
    /// never the primary, which proposes nothing while it fetches (it follows once f + 1 peers
    /// vouch, as the backups that caught up now do).
    fn stuck_behind_one_peer(&self) -> bool {
        !self.is_primary()
            && self.tick.saturating_sub(self.executed_tick) > self.view_timeout()
            && self
                .log
                .range(self.head.height + 1..)
                .any(|(_, s)| s.pre_prepare.is_some())
    }

    /// The highest height any peer reports executing (one peer's word).
    fn highest_reported(&self) -> u64 {
        self.peers
            .iter()
            .filter(|(r, _)| **r != self.id)
            .map(|(_, p)| p.status.last_executed)
            .max()
            .unwrap_or(0)
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

    /// `all_signed`: the verifier found every transaction's signature in the reply valid.
    pub(crate) fn on_blocks(&mut self, m: Signed<Blocks>, all_signed: bool) {
        self.account_reply(&m);
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
            if !(all_signed || self.all_signed(&batch)) {
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
            // A reply that overtook a lost one leaves a gap below it: ask for it now.
            self.request_blocks();
            return;
        }
        // Slots at or below the new head are done; execution may continue from the log.
        let vouched = self.vouched_height();
        let head = self.head.height;
        let Some(f) = &mut self.fetch else {
            self.try_execute();
            return;
        };
        if head >= f.target.max(vouched) {
            self.fetch = None;
            self.try_execute();
        } else {
            f.sent_tick = self.tick;
            self.request_blocks();
        }
    }

    /// Strikes the ranges a reply from the fetch's peer settles: the one it answers and, since
    /// the peer serves in order, every one asked before it (lost: asked again from the head).
    /// A reply that ends short of its range means the peer has nothing higher yet: the ranges
    /// asked beyond will not be answered either.
    fn account_reply(&mut self, m: &Signed<Blocks>) {
        let Some(f) = &mut self.fetch else {
            return;
        };
        let (Some(first), Some(last)) = (m.body.0.first(), m.body.0.last()) else {
            return;
        };
        let (first, last) = (first.header.height, last.header.height);
        if m.from != f.peer {
            return;
        }
        let Some(&(to, order)) = f.in_flight.get(&first) else {
            // Not an answer to anything in flight (asked of this peer before a timeout).
            return;
        };
        f.in_flight
            .retain(|&from, &mut (_, o)| o > order && (last >= to || from <= last));
    }
}

#[cfg(test)]
mod tests {
    use quire_chain::Block;
    use quire_chain::store::MemoryStore;
    use quire_chain::testkit::TestNet;

    use crate::message::{Blocks, FetchBlocks, Message, Signed, Status};
    use crate::replica::{Input, Output, Replica};

    fn replica(net: &TestNet) -> Replica {
        crate::exec::tests::replica(net, &MemoryStore::new(&net.genesis))
    }

    /// Replica 1 hears the status of peer `from`.
    fn status(r: &mut Replica, net: &TestNet, from: u32, last_executed: u64, stable_seq: u64) {
        r.on_status(Signed::sign(
            Status {
                view: 0,
                changing_view: false,
                last_executed,
                stable_seq,
            },
            from,
            &net.validator_keys[from as usize],
            &net.chain_id(),
        ));
    }

    /// The block requests among `outputs`: (peer, from, to).
    fn requests(outputs: &[Output]) -> Vec<(u32, u64, u64)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send(to, Message::FetchBlocks(m)) => Some((*to, m.body.from, m.body.to)),
                _ => None,
            })
            .collect()
    }

    /// Peer `from`'s reply with blocks `first..=last` (1-based heights).
    fn reply(net: &TestNet, chain: &[Block], from: u32, first: u64, last: u64) -> Signed<Blocks> {
        let blocks = chain[(first - 1) as usize..last as usize].to_vec();
        Signed::sign(
            Blocks(blocks),
            from,
            &net.validator_keys[from as usize],
            &net.chain_id(),
        )
    }

    /// A fetch keeps four whole replies' worth in flight to one peer, asks for one more per
    /// reply, and goes on past the height that started it to what a weak quorum of peers says
    /// it executed (not to what one peer claims): no request is sent beyond, none is waiting
    /// at the end, and the fetch ends at the vouched height without waiting for a timer.
    #[test]
    fn a_fetch_keeps_four_requests_in_flight_and_goes_on_to_the_vouched_height() {
        let net = TestNet::new(4, 2);
        let blocks = net.certified_chain(300);
        let mut r = replica(&net);
        status(&mut r, &net, 0, 300, 0);
        status(&mut r, &net, 2, 300, 0);
        // One peer claims far more than anyone has.
        status(&mut r, &net, 3, 10_000, 0);
        r.out.clear();
        r.start_fetch(64);
        let sent = requests(&std::mem::take(&mut r.out));
        assert_eq!(
            sent,
            vec![(0, 1, 64), (0, 65, 128), (0, 129, 192), (0, 193, 256)]
        );
        // The peer answers what it has, in order.
        let mut asked = sent;
        for first in (1..=300).step_by(64) {
            let last = (first + 63).min(300);
            r.on_blocks(reply(&net, &blocks, 0, first, last), false);
            assert_eq!(r.head.height, last);
            asked.extend(requests(&std::mem::take(&mut r.out)));
            let in_flight = r.fetch.as_ref().map_or(0, |f| f.in_flight.len());
            assert!(in_flight as u64 <= super::FETCH_PIPELINE);
        }
        assert_eq!(asked.last(), Some(&(0, 257, 320)));
        assert_eq!(asked.len(), 5, "{asked:?}");
        assert!(r.fetch.is_none(), "done at the vouched height 300");
    }

    /// A peer that lets a fetch time out is asked last from then on: the fetch's next attempt
    /// goes to another peer, and so does the next fetch's first request.
    #[test]
    fn a_peer_that_let_a_fetch_time_out_is_asked_last() {
        let net = TestNet::new(4, 2);
        let blocks = net.certified_chain(128);
        let mut r = replica(&net);
        for peer in [0, 2, 3] {
            status(&mut r, &net, peer, 128, 0);
        }
        r.out.clear();
        r.start_fetch(64);
        assert_eq!(requests(&std::mem::take(&mut r.out))[0].0, 0);
        // Peer 0 never answers.
        let mut now_ms = 0;
        let retried = loop {
            now_ms += 10;
            let sent = requests(&r.step(Input::Tick { now_ms }));
            if !sent.is_empty() {
                break sent;
            }
            assert!(now_ms < 10_000, "no retry");
        };
        assert!(retried.iter().all(|(peer, ..)| *peer == 2), "{retried:?}");
        r.on_blocks(reply(&net, &blocks, 2, 1, 64), false);
        r.on_blocks(reply(&net, &blocks, 2, 65, 128), false);
        assert_eq!(r.head.height, 128);
        assert!(r.fetch.is_none());
        // The next fetch starts with a peer that never failed, though all report the same
        // height (without the memory, the tie would go to peer 0 again).
        for peer in [0, 2, 3] {
            status(&mut r, &net, peer, 1_000, 0);
        }
        r.out.clear();
        r.start_fetch(1_000);
        let sent = requests(&r.out);
        assert!(
            !sent.is_empty() && sent.iter().all(|(peer, ..)| *peer == 2),
            "{sent:?}"
        );
    }

    /// A reply that overtakes a lost one is of no use yet (blocks execute in order), but says
    /// the lost one is not coming: its range is asked again at once, not after a fetch timeout.
    /// The peer here serves every request in the order it came, as an honest one does.
    #[test]
    fn a_lost_reply_is_asked_again_as_soon_as_the_next_one_arrives() {
        let net = TestNet::new(4, 2);
        let blocks = net.certified_chain(256);
        let mut r = replica(&net);
        for peer in [0, 2, 3] {
            status(&mut r, &net, peer, 256, 0);
        }
        r.out.clear();
        r.start_fetch(256);
        let peer = r.fetch.as_ref().map(|f| f.peer).unwrap();
        let mut queue: std::collections::VecDeque<(u64, u64)> =
            requests(&std::mem::take(&mut r.out))
                .into_iter()
                .map(|(_, from, to)| (from, to))
                .collect();
        assert_eq!(queue.pop_front(), Some((1, 64)), "lost");
        let mut answered = Vec::new();
        while let Some((from, to)) = queue.pop_front() {
            r.on_blocks(reply(&net, &blocks, peer, from, to.min(256)), false);
            answered.push(from);
            queue.extend(
                requests(&std::mem::take(&mut r.out))
                    .into_iter()
                    .map(|(_, from, to)| (from, to)),
            );
            assert!(answered.len() < 20, "{answered:?}");
        }
        assert_eq!(r.head.height, 256);
        assert!(r.fetch.is_none());
        // The three replies behind the lost one came too early to use and were asked again.
        assert_eq!(answered, vec![65, 129, 193, 1, 65, 129, 193]);
    }

    /// A weak quorum whose stable checkpoint is a watermark window past our head starts a fetch
    /// as its status arrives (a restarted replica used to wait the idle timer first); one peer
    /// saying so starts nothing.
    #[test]
    fn a_weak_quorum_far_ahead_starts_a_fetch_at_once_and_one_liar_does_not() {
        let net = TestNet::new(4, 2);
        let mut r = replica(&net);
        r.step(Input::Tick { now_ms: 10 });
        let far = 10 * net.genesis.protocol.log_window;
        status(&mut r, &net, 3, far, far);
        assert!(r.fetch.is_none(), "one peer's word");
        status(&mut r, &net, 2, far, far);
        assert_eq!(r.fetch.as_ref().map(|f| f.target), Some(far));
        assert_eq!(requests(&r.out).len() as u64, super::FETCH_PIPELINE);
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

    /// A backup whose work waits while it executes nothing starts a view change (`stalled`)
    /// only if nobody else executes either: while a weak quorum of peers reports executing past
    /// it, the primary is at work and this replica is the one behind (it fetches; here nobody
    /// answers). Once the peers stop moving too, the timer runs as before.
    #[test]
    fn a_replica_behind_a_network_that_progresses_does_not_blame_the_primary() {
        use crate::stats::ViewChangeCause;
        let net = TestNet::new(4, 2);
        let mut r = replica(&net);
        let timeout = r.params.view_timeout_ticks;
        r.step(Input::Requests(vec![net.transfer(0, 1, 1, 0)]));
        let mut now_ms = 0;
        let mut peers_at = 5;
        // Past the start-up grace (three timeouts), then seven more, the peers moving on.
        for tick in 1..=10 * timeout {
            now_ms += 10;
            r.step(Input::Tick { now_ms });
            if tick % r.params.status_interval_ticks == 0 {
                peers_at += 1;
                for peer in [0, 2, 3] {
                    status(&mut r, &net, peer, peers_at, 0);
                }
            }
            assert!(!r.changing, "view change at tick {tick}, peers moving");
        }
        assert_eq!(r.head.height, 0, "nobody served a block");
        // The peers stop too (the primary still sends its heartbeat): the replica's work
        // waits with no progress anywhere.
        let mut ticks = 0;
        while !r.changing {
            now_ms += 10;
            ticks += 1;
            r.step(Input::Tick { now_ms });
            if ticks % r.params.status_interval_ticks == 0 {
                for peer in [0, 2, 3] {
                    status(&mut r, &net, peer, peers_at, 0);
                }
            }
            assert!(
                ticks <= 2 * timeout,
                "no view change once the peers stopped"
            );
        }
        assert!(ticks > timeout, "after {ticks} ticks");
        assert_eq!(
            r.stats().view_change_causes.get(&ViewChangeCause::Stalled),
            Some(&1)
        );
    }

    /// A backup whose accepted proposal has waited a view timeout with nothing executed asks
    /// the one peer that reports executing past it, though no weak quorum vouches for that
    /// height; before the timeout it does not take one peer's word.
    #[test]
    fn a_stuck_backup_asks_the_one_peer_ahead_of_it() {
        let net = TestNet::new(4, 2);
        let mut r = replica(&net);
        let (batch, proposal) = crate::exec::tests::proposal_at_height_one(&net);
        let verified = crate::verify::Verifier::new(&net.genesis)
            .verify(Message::PrePrepare { proposal, batch }, Some(0))
            .unwrap();
        r.step(Input::Message(verified));
        assert!(r.log.get(&1).is_some_and(|s| s.pre_prepare.is_some()));
        let timeout = r.params.view_timeout_ticks;
        let mut now_ms = 0;
        let mut asked = None;
        for tick in 1..=timeout + 5 * r.params.status_interval_ticks {
            now_ms += 10;
            let mut out = r.step(Input::Tick { now_ms });
            if tick % r.params.status_interval_ticks == 0 {
                // The primary's heartbeat, and one peer far ahead.
                for (peer, height) in [(0, 0), (2, 10), (3, 0)] {
                    status(&mut r, &net, peer, height, 0);
                }
                out.append(&mut r.out);
            }
            let sent = requests(&out);
            if let Some(&(peer, from, _)) = sent.first() {
                asked = Some((tick, peer, from));
                break;
            }
        }
        let (tick, peer, from) = asked.expect("no block request");
        assert!(
            tick > timeout,
            "asked at tick {tick}, before the view timeout"
        );
        assert_eq!((peer, from), (2, 1));
    }
}
