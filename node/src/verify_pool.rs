//! Verification off the consensus thread.
//!
//! Replica frames wait in the transport's per-peer [`Inbox`]; a small pool of threads takes them
//! round robin, drops what the core would drop anyway ([`prefilter`]), charges each peer for the
//! signatures its message makes us check, decodes and verifies, and hands the driver only
//! [`Verified`] messages. So a faulty replica that sends thousands of signed transactions, or
//! replays view changes, costs the consensus thread nothing and the pool at most its budget.
//!
//! Signatures found good are remembered in a [`SignatureCache`] shared with client RPC, so a
//! client's transaction is checked once per replica however often it arrives (submitted,
//! forwarded, proposed); verdicts depend only on the transaction (`quire_chain::sig`), so the
//! cache can never change one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quire_chain::codec::Decode;
use quire_chain::{Hash, ReplicaId, SignedId};
use quire_consensus::known::Generations;
use quire_consensus::message::Message;
use quire_consensus::prefilter::{self, Watermarks};
use quire_consensus::verify::{Envelope, VerdictCache};
use quire_consensus::{Behaviour, Kind, Reject, Verifier};

use crate::driver::Event;
use crate::metrics::Metrics;
use crate::transport::Inbox;

/// Good signatures by transaction id and signature (never by id alone: see
/// [`quire_chain::SignedId`]), and view changes already verified in full (replayed ones, or the
/// same ones inside several NewViews, are not checked again).
pub struct SignatureCache {
    txs: Mutex<Generations<SignedId>>,
    view_changes: Mutex<Generations<Hash>>,
}

impl SignatureCache {
    pub fn new(txs_max: usize) -> SignatureCache {
        SignatureCache {
            txs: Mutex::new(Generations::new(txs_max)),
            view_changes: Mutex::new(Generations::new(4096)),
        }
    }
}

impl VerdictCache for SignatureCache {
    fn known_good(&self, id: &SignedId) -> bool {
        let set = self.txs.lock().unwrap_or_else(PoisonError::into_inner);
        set.contains(id)
    }

    fn remember_good(&self, ids: &[SignedId]) {
        if ids.is_empty() {
            return;
        }
        let mut set = self.txs.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            set.insert(*id);
        }
    }

    fn known_view_change(&self, digest: &Hash) -> bool {
        let set = self
            .view_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.contains(digest)
    }

    fn remember_view_change(&self, digest: Hash) {
        let mut set = self
            .view_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.insert(digest);
    }
}

/// Counts the signatures a verification really checks (cache misses): for a peer's budget, and
/// for the metric of client signatures checked at admission.
pub(crate) struct Counting<'a> {
    cache: &'a SignatureCache,
    misses: std::cell::Cell<u64>,
}

impl<'a> Counting<'a> {
    pub(crate) fn new(cache: &'a SignatureCache) -> Counting<'a> {
        Counting {
            cache,
            misses: std::cell::Cell::new(0),
        }
    }

    /// Signatures not found in the cache so far.
    pub(crate) fn misses(&self) -> u64 {
        self.misses.get()
    }
}

impl VerdictCache for Counting<'_> {
    fn known_good(&self, id: &SignedId) -> bool {
        let hit = self.cache.known_good(id);
        if !hit {
            self.misses.set(self.misses.get() + 1);
        }
        hit
    }
    fn remember_good(&self, ids: &[SignedId]) {
        self.cache.remember_good(ids);
    }
    fn known_view_change(&self, digest: &Hash) -> bool {
        self.cache.known_view_change(digest)
    }
    fn remember_view_change(&self, digest: Hash) {
        self.cache.remember_view_change(digest);
    }
}

/// The replica's watermarks as the driver last published them.
#[derive(Default)]
pub struct Published {
    view: AtomicU64,
    stable_seq: AtomicU64,
    height: AtomicU64,
}

impl Published {
    pub fn set(&self, w: Watermarks) {
        self.view.store(w.view, Ordering::Relaxed);
        self.stable_seq.store(w.stable_seq, Ordering::Relaxed);
        self.height.store(w.height, Ordering::Relaxed);
    }

    fn get(&self) -> Watermarks {
        Watermarks {
            view: self.view.load(Ordering::Relaxed),
            stable_seq: self.stable_seq.load(Ordering::Relaxed),
            height: self.height.load(Ordering::Relaxed),
        }
    }
}

/// Block replies this replica asked each peer for and has not yet received. A reply it asked
/// for is not a flood: it bypasses the peer's signature budget. Catching up from one peer checks
/// a certificate and every transaction of up to ~6,400 blocks a second — 40-65k signatures, over
/// the 30k budget a second — so the budget ran out after ~2 s of a catch-up and throttled the
/// replies it had asked for (each a fetch timeout): the last sixth of a 20,000-block catch-up
/// ran at under half the speed. A peer can bypass its budget only with as many replies as were
/// asked of it (at most [`CREDITS_MAX`] outstanding, each at most 64 blocks).
#[derive(Default)]
pub struct BlockCredits(Mutex<BTreeMap<ReplicaId, u32>>);

/// Outstanding requests per peer that count: a fetch keeps 4 in flight; unanswered ones (a
/// timeout) are not remembered forever.
pub const CREDITS_MAX: u32 = 8;

impl BlockCredits {
    /// A block request went to `peer`.
    pub fn asked(&self, peer: ReplicaId) {
        let mut credits = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let c = credits.entry(peer).or_default();
        *c = (*c + 1).min(CREDITS_MAX);
    }

    /// A block reply came from `peer`: whether it was asked for (and one credit is spent).
    pub fn take(&self, peer: ReplicaId) -> bool {
        let mut credits = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match credits.get_mut(&peer) {
            Some(c) if *c > 0 => {
                *c -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Per-peer budgets: signature checks per second, as token buckets.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub signatures_per_s: u64,
    pub burst_signatures: u64,
}

impl Default for Budget {
    fn default() -> Self {
        // Above what an honest peer makes us check at this machine's ceiling (every transaction
        // of a 20k tx/s load arriving from one peer), far below what a flood could.
        Budget {
            signatures_per_s: 30_000,
            burst_signatures: 60_000,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, budget: &Budget) {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * budget.signatures_per_s as f64;
        self.tokens = (self.tokens + earned).min(budget.burst_signatures as f64);
        self.at = now;
    }
}

/// Frames the replica's behaviour throws away unread ([`Behaviour::discards`]: an amplifier's
/// answers), dropped before any decoding, as a real attacker would.
pub struct Discarding(Mutex<Behaviour>);

impl Default for Discarding {
    fn default() -> Self {
        Discarding(Mutex::new(Behaviour::Honest))
    }
}

impl Discarding {
    pub fn set(&self, behaviour: Behaviour) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    fn frame(&self, frame: &[u8]) -> bool {
        let behaviour = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Kind::of_frame(frame).is_some_and(|k| behaviour.discards(k))
    }
}

pub struct PoolContext {
    pub inbox: Arc<Inbox>,
    pub verifier: Verifier,
    pub watermarks: Arc<Published>,
    pub cache: Arc<SignatureCache>,
    pub events: SyncSender<Event>,
    pub metrics: Arc<Metrics>,
    pub budget: Budget,
    pub discarding: Arc<Discarding>,
    pub block_credits: Arc<BlockCredits>,
}

/// Starts `threads` verification threads; they stop when the inbox closes or the driver goes.
pub fn start(ctx: PoolContext, threads: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    let ctx = Arc::new(ctx);
    let buckets: Arc<Mutex<BTreeMap<ReplicaId, Bucket>>> = Arc::default();
    (0..threads.max(1))
        .map(|i| {
            let ctx = ctx.clone();
            let buckets = buckets.clone();
            std::thread::Builder::new()
                .name(format!("verify-{i}"))
                .spawn(move || run(&ctx, &buckets))
        })
        .collect()
}

/// Frames taken from the inbox in one go when several are waiting. The envelope signatures of
/// the votes among them are checked together: a multiscalar multiplication for two or three
/// costs ≈ 28–33 µs a signature here, one alone ≈ 41–46 µs, and a busy replica finds the
/// Prepares and Commits of a phase queued side by side. Bounded, so one thread does not hoard
/// what a second could take (and a peer's budget is checked before the frames taken with it
/// are charged: at most this many frames over).
const FRAMES_TOGETHER_MAX: usize = 8;

fn run(ctx: &PoolContext, buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>) {
    loop {
        let Some(first) = ctx.inbox.pop(Duration::from_millis(200)) else {
            if ctx.inbox.is_closed() {
                return;
            }
            continue;
        };
        let mut frames = vec![first];
        while frames.len() < FRAMES_TOGETHER_MAX
            && let Some(next) = ctx.inbox.pop(Duration::ZERO)
        {
            frames.push(next);
        }
        if !verify_frames(ctx, buckets, &frames, |event| {
            ctx.events.send(event).is_ok()
        }) {
            return;
        }
    }
}

/// A frame decoded and let through the cheap checks, its signatures not yet checked.
struct Screened {
    peer: ReplicaId,
    message: Message,
    /// A block reply this replica asked `peer` for (outside the peer's budget).
    asked_for: bool,
}

/// What the driver should hear about one frame, if anything.
#[cfg(test)]
fn verify(
    ctx: &PoolContext,
    buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>,
    peer: ReplicaId,
    frame: &[u8],
) -> Option<Event> {
    match screen(ctx, buckets, peer, frame) {
        Screen::Passed(screened) => Some(check(ctx, buckets, screened, None)),
        Screen::Answered(event) => Some(event),
        Screen::Dropped => None,
    }
}

/// Verifies `frames` in order and hands `emit` what the driver should hear of each, stopping
/// (with `false`) when `emit` says the driver is gone. The votes' envelope signatures are
/// checked together first; each verdict is the one checking it alone would give.
fn verify_frames(
    ctx: &PoolContext,
    buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>,
    frames: &[(ReplicaId, Vec<u8>)],
    mut emit: impl FnMut(Event) -> bool,
) -> bool {
    let screened: Vec<Screen> = frames
        .iter()
        .map(|(peer, frame)| screen(ctx, buckets, *peer, frame))
        .collect();
    let mut known = vec![None; screened.len()];
    let envelopes: Vec<(usize, Envelope)> = screened
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Screen::Passed(s) => Some((i, ctx.verifier.envelope(&s.message)?)),
            _ => None,
        })
        .collect();
    // Every envelope goes through here, a lone one too (`verify_many` checks one item alone):
    // its signed bytes, built once, are not built again by the verifier.
    if !envelopes.is_empty() {
        let items: Vec<quire_chain::sig::Item<'_>> = envelopes
            .iter()
            .map(|(_, (bytes, sig, key))| (bytes.as_slice(), sig, Some(*key)))
            .collect();
        let verdicts = quire_chain::sig::verify_many(&items);
        for ((i, _), holds) in envelopes.iter().zip(verdicts) {
            known[*i] = Some(holds);
        }
    }
    for (screened, holds) in screened.into_iter().zip(known) {
        let event = match screened {
            Screen::Passed(screened) => Some(check(ctx, buckets, screened, holds)),
            Screen::Answered(event) => Some(event),
            Screen::Dropped => None,
        };
        if let Some(event) = event
            && !emit(event)
        {
            return false;
        }
    }
    true
}

/// What the checks that need no signature made of a frame.
enum Screen {
    /// On to the signature checks.
    Passed(Screened),
    /// Refused already: what the driver should hear.
    Answered(Event),
    /// Dropped (and counted).
    Dropped,
}

/// Decodes a frame and applies the checks that need no signature: the behaviour's discards,
/// staleness, the peer's budget.
fn screen(
    ctx: &PoolContext,
    buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>,
    peer: ReplicaId,
    frame: &[u8],
) -> Screen {
    if ctx.discarding.frame(frame) {
        return Screen::Dropped;
    }
    let message = match Message::from_bytes(frame) {
        Ok(m) => m,
        Err(_) => {
            return Screen::Answered(Event::Rejected {
                from: peer,
                reject: Reject::Malformed,
            });
        }
    };
    if let Some(reason) = prefilter::stale(&message, &ctx.watermarks.get()) {
        ctx.metrics.ingress_dropped(peer, reason.name());
        return Screen::Dropped;
    }
    let asked_for = matches!(message, Message::Blocks(_)) && ctx.block_credits.take(peer);
    if !asked_for && !has_budget(ctx, buckets, peer) {
        ctx.metrics.ingress_dropped(peer, "throttled");
        return Screen::Dropped;
    }
    Screen::Passed(Screened {
        peer,
        message,
        asked_for,
    })
}

/// Checks a screened frame's signatures (the envelope's verdict `envelope_holds` if already
/// known) and its rules, and charges the peer for the signatures it cost.
fn check(
    ctx: &PoolContext,
    buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>,
    screened: Screened,
    envelope_holds: Option<bool>,
) -> Event {
    let Screened {
        peer,
        message,
        asked_for,
    } = screened;
    let envelope_signatures = signatures_in(&message);
    let counting = Counting::new(&ctx.cache);
    let result = ctx
        .verifier
        .verify_envelope_known(message, Some(peer), &counting, envelope_holds);
    let signatures = envelope_signatures + counting.misses();
    if asked_for {
        ctx.metrics.ingress_signatures(peer, signatures);
    } else {
        charge(ctx, buckets, peer, signatures);
    }
    match result {
        Ok(verified) => Event::Verified {
            from: peer,
            verified,
        },
        Err(reject) => Event::Rejected { from: peer, reject },
    }
}

fn has_budget(
    ctx: &PoolContext,
    buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>,
    peer: ReplicaId,
) -> bool {
    let mut buckets = buckets.lock().unwrap_or_else(PoisonError::into_inner);
    let bucket = buckets.entry(peer).or_insert_with(|| Bucket {
        tokens: ctx.budget.burst_signatures as f64,
        at: Instant::now(),
    });
    bucket.refill(&ctx.budget);
    bucket.tokens > 0.0
}

fn charge(
    ctx: &PoolContext,
    buckets: &Mutex<BTreeMap<ReplicaId, Bucket>>,
    peer: ReplicaId,
    signatures: u64,
) {
    ctx.metrics.ingress_signatures(peer, signatures);
    let mut buckets = buckets.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(bucket) = buckets.get_mut(&peer) {
        bucket.tokens -= signatures as f64;
    }
}

/// Signatures of the message itself and of the votes it carries (client signatures of the
/// transactions inside are counted as they are really checked).
fn signatures_in(message: &Message) -> u64 {
    let proof = |p: &quire_consensus::message::PreparedProof| 1 + p.prepares.len() as u64;
    let checkpoint = |c: &quire_consensus::message::StableCheckpoint| {
        c.certificate.as_ref().map_or(0, |c| c.votes.len() as u64)
    };
    let view_change =
        |vc: &quire_consensus::message::Signed<quire_consensus::message::ViewChange>| {
            1 + checkpoint(&vc.body.checkpoint) + vc.body.prepared.iter().map(proof).sum::<u64>()
        };
    match message {
        Message::ViewChange {
            view_change: vc, ..
        } => view_change(vc),
        Message::NewView { new_view, .. } => {
            1 + new_view.body.proposals.len() as u64
                + new_view
                    .body
                    .view_changes
                    .iter()
                    .map(view_change)
                    .sum::<u64>()
        }
        Message::Blocks(m) => {
            1 + m
                .body
                .0
                .iter()
                .map(|b| b.certificate.as_ref().map_or(0, |c| c.votes.len() as u64))
                .sum::<u64>()
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, sync_channel};

    use quire_chain::codec::Encode;
    use quire_chain::testkit::TestNet;
    use quire_consensus::message::{Blocks, Signed};

    use super::*;

    /// Replica 1's pool, with a budget of one signature a peer.
    fn context(net: &TestNet) -> (PoolContext, Receiver<Event>) {
        let (events, received) = sync_channel(16);
        let ctx = PoolContext {
            inbox: Arc::new(Inbox::new([0, 2, 3], 1 << 20)),
            verifier: Verifier::new(&net.genesis),
            watermarks: Arc::default(),
            cache: Arc::new(SignatureCache::new(1024)),
            events,
            metrics: Arc::new(Metrics::new(1, 4)),
            budget: Budget {
                signatures_per_s: 1,
                burst_signatures: 1,
            },
            discarding: Arc::default(),
            block_credits: Arc::default(),
        };
        (ctx, received)
    }

    /// Votes queued side by side are checked together, and each gets the verdict it gets alone,
    /// in the order the frames came: a broken envelope among good ones is rejected by itself, a
    /// vote signed by a key not its sender's too, and other messages pass between them.
    #[test]
    fn votes_checked_together_get_the_verdicts_they_get_alone() {
        use quire_chain::cert::CommitStatement;
        use quire_consensus::message::{Prepare, SlotVote, Status};
        let net = TestNet::new(4, 2);
        let (mut ctx, _events) = context(&net);
        ctx.budget = Budget::default();
        let chain = net.chain_id();
        let key = |i: u32| &net.validator_keys[i as usize];
        let vote = SlotVote {
            view: 0,
            seq: 1,
            digest: Hash([9; 32]),
        };
        let statement = CommitStatement {
            view: 0,
            seq: 1,
            digest: Hash([9; 32]),
        };
        let prepare =
            |from: u32| Message::Prepare(Signed::sign(Prepare(vote), from, key(from), &chain));
        let commit = |from: u32| Message::Commit(Signed::sign(statement, from, key(from), &chain));
        let mut broken = Signed::sign(statement, 3, key(3), &chain);
        broken.signature.0[5] ^= 1;
        let status = Message::Status(Signed::sign(
            Status {
                view: 0,
                changing_view: false,
                last_executed: 0,
                stable_seq: 0,
            },
            0,
            key(0),
            &chain,
        ));
        // Signed by 0's key, claimed as 2's.
        let mut stolen = Signed::sign(statement, 0, key(0), &chain);
        stolen.from = 2;
        let frames: Vec<(ReplicaId, Vec<u8>)> = vec![
            (2, prepare(2).to_bytes()),
            (3, prepare(3).to_bytes()),
            (0, blocks_from(&net, 0)),
            (3, Message::Commit(broken).to_bytes()),
            (0, commit(0).to_bytes()),
            (2, Message::Commit(stolen).to_bytes()),
            (0, status.to_bytes()),
            (2, commit(2).to_bytes()),
        ];
        let buckets = Mutex::new(BTreeMap::new());
        let outcome = |e: Event| match e {
            Event::Verified { from, .. } => Ok(from),
            Event::Rejected { from, reject } => Err((from, reject)),
            _ => panic!("a verdict"),
        };
        let alone: Vec<_> = frames
            .iter()
            .map(|(peer, f)| verify(&ctx, &buckets, *peer, f).map(outcome))
            .collect();
        let mut together = Vec::new();
        assert!(verify_frames(&ctx, &buckets, &frames, |e| {
            together.push(Some(outcome(e)));
            true
        }));
        assert_eq!(together, alone);
        assert_eq!(
            alone,
            vec![
                Some(Ok(2)),
                Some(Ok(3)),
                Some(Ok(0)),
                Some(Err((3, Reject::BadSignature))),
                Some(Ok(0)),
                Some(Err((2, Reject::BadSignature))),
                Some(Ok(0)),
                Some(Ok(2)),
            ]
        );
    }

    /// Two certified blocks (seven signatures with the envelope's), as peer `from` sends them.
    fn blocks_from(net: &TestNet, from: u32) -> Vec<u8> {
        let blocks = net.certified_chain(2);
        let reply = Signed::sign(
            Blocks(blocks),
            from,
            &net.validator_keys[from as usize],
            &net.chain_id(),
        );
        Message::Blocks(reply).to_bytes()
    }

    /// A peer over its signature budget is throttled, block replies included, except for the
    /// replies this replica asked that peer for: as many as it asked, and no one else's.
    #[test]
    fn a_block_reply_asked_for_bypasses_the_budget_and_no_other_does() {
        let net = TestNet::new(4, 2);
        let (ctx, _events) = context(&net);
        let buckets = Mutex::new(BTreeMap::new());
        let verified = |peer: u32| {
            let frame = blocks_from(&net, peer);
            matches!(
                verify(&ctx, &buckets, peer, &frame),
                Some(Event::Verified { .. })
            )
        };
        // The burst of one lets each peer's first reply through; it costs seven.
        for peer in [2, 3] {
            assert!(verified(peer));
            assert!(!verified(peer), "over budget");
        }
        ctx.block_credits.asked(2);
        ctx.block_credits.asked(2);
        assert!(!verified(3), "asked of 2, not of 3");
        assert!(verified(2));
        assert!(verified(2));
        assert!(!verified(2), "asked twice, answered twice");
        // Unanswered requests do not pile up credit without bound.
        for _ in 0..100 {
            ctx.block_credits.asked(2);
        }
        let through = (0..20).filter(|_| verified(2)).count();
        assert_eq!(through as u32, CREDITS_MAX);
    }
}
