//! Byzantine behaviours, as pure rewrites of an honest replica's inputs and outputs.
//!
//! The honest core never knows: an [`Actor`] wraps a [`Replica`] and, depending on its
//! [`Behaviour`], drops, alters, duplicates, delays or invents messages around each step. The
//! simulator and the real node both drive `Actor`s, so an attack tried in one is the same attack
//! in the other, and a node can switch behaviour at run time.
//!
//! Most behaviours go for safety (equivocation, double votes, lies in view changes). Those in
//! the submodules go for liveness: they send only validly signed messages that cost the receiver
//! far more than the sender — [`forward_flood`] (transactions to verify), [`replay`] (old view
//! changes and checkpoints to verify again) and [`amplify`] (cheap requests with expensive
//! answers). `slowloris` is about connections and bytes, not messages: the node runs it as a
//! transport task (`node/src/slowloris.rs`), and at the message level it is honest (see
//! [`Behaviour::Slowloris`]).

mod amplify;
mod forward_flood;
mod replay;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quire_chain::cert::{CheckpointStatement, CommitStatement};
use quire_chain::tx::Transaction;
use quire_chain::{Batch, Hash, ReplicaId};

use crate::message::{
    Body, Kind, Message, NewView, Prepare, Proposal, Signed, SlotVote, ViewChange,
};
use crate::replica::{Input, Output, Replica};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    Honest,
    /// Sends nothing at all.
    Silent,
    /// As primary, proposes different batches to different backups (and votes for both); as a
    /// backup, votes for every digest it sees.
    Equivocate,
    /// Sends Prepares and Commits for two digests in the same slot.
    DoubleVote,
    /// Every signature it sends is corrupted.
    ForgeSignature,
    /// Sends its votes a second time claiming to be another replica.
    Impersonate,
    /// Votes in a view that is already over.
    StaleView,
    /// Votes in views far ahead, and asks for view changes nobody else wants.
    FutureView,
    /// As primary, slips transactions with bad signatures and double spends into its batches.
    InvalidBatch,
    /// Hides its prepared certificates in ViewChanges, and as new primary drops them from its
    /// NewView.
    LyingViewChange,
    /// Holds every message it sends for a while (a slow primary).
    DelayVotes,
    /// Floods its peers with junk bytes and useless but validly signed messages.
    Flood,
    /// Forwards floods of validly signed transactions: already committed ones (free to replay),
    /// and conflicting and future-nonce ones from an unfunded key of its own.
    ForwardFlood,
    /// Replays old, validly signed ViewChanges, NewViews and Checkpoints, over and over.
    Replay,
    /// Asks for expensive answers: Status claiming a stale view (the answer is a whole NewView)
    /// and endless FetchBlocks (each answer up to a reply's worth of blocks).
    Amplify,
    /// Opens client connections and streams to every peer and trickles frame bytes into them.
    /// That attack lives in the node's transport (`node/src/slowloris.rs`); the messages of a
    /// slowloris replica are honest. The simulator cannot model it: its network delivers whole
    /// frames and has no connections, streams, flow control or read buffers to exhaust.
    Slowloris,
}

impl Behaviour {
    pub const ALL: [Behaviour; 16] = [
        Behaviour::Honest,
        Behaviour::Silent,
        Behaviour::Equivocate,
        Behaviour::DoubleVote,
        Behaviour::ForgeSignature,
        Behaviour::Impersonate,
        Behaviour::StaleView,
        Behaviour::FutureView,
        Behaviour::InvalidBatch,
        Behaviour::LyingViewChange,
        Behaviour::DelayVotes,
        Behaviour::Flood,
        Behaviour::ForwardFlood,
        Behaviour::Replay,
        Behaviour::Amplify,
        Behaviour::Slowloris,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Silent => "silent",
            Behaviour::Equivocate => "equivocate",
            Behaviour::DoubleVote => "double-vote",
            Behaviour::ForgeSignature => "forge-signature",
            Behaviour::Impersonate => "impersonate",
            Behaviour::StaleView => "stale-view",
            Behaviour::FutureView => "future-view",
            Behaviour::InvalidBatch => "invalid-batch",
            Behaviour::LyingViewChange => "lying-view-change",
            Behaviour::DelayVotes => "delay-votes",
            Behaviour::Flood => "flood",
            Behaviour::ForwardFlood => "forward-flood",
            Behaviour::Replay => "replay",
            Behaviour::Amplify => "amplify",
            Behaviour::Slowloris => "slowloris",
        }
    }

    pub fn parse(name: &str) -> Result<Behaviour, String> {
        Behaviour::ALL
            .iter()
            .find(|b| b.name() == name.trim())
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = Behaviour::ALL.iter().map(|b| b.name()).collect();
                format!("unknown behaviour '{name}' (known: {})", names.join(", "))
            })
    }

    pub fn is_honest(&self) -> bool {
        *self == Behaviour::Honest
    }

    /// Frames of `kind` this behaviour throws away unread: an amplifier asks for NewViews and
    /// blocks to make others send them, not to read them (checking every answer would cost it
    /// far more than the asking, and throttle its own attack). Whoever delivers frames to an
    /// actor — the node's frame pump, the simulator's network — drops these before verifying.
    pub fn discards(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Behaviour::Amplify, Kind::Blocks | Kind::NewView)
        )
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long `delay-votes` holds a message, in ticks (below the base view timeout, so the primary
/// is slow but not replaced).
pub const DELAY_TICKS: u64 = 30;
/// Junk messages `flood` sends per tick.
const FLOOD_PER_TICK: usize = 8;

/// How hard the liveness attacks (`forward-flood`, `replay`, `amplify`) push.
///
/// The node uses [`Pressure::NODE`]: with its 10 ms tick, per second and to every peer, 100
/// Forwards of 1,024 transactions, 6,400 replayed messages, 100 stale Status and 400 FetchBlocks —
/// for a few percent of one core of the attacker's own (it signs a message once and sends it
/// many times). The simulator uses [`Pressure::SIM`]: the same attacks with fewer messages, since
/// in virtual time a victim's work costs nothing and volume would only slow the machine that runs
/// the seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pressure {
    /// Ticks between two bursts.
    pub every_ticks: u64,
    /// Transactions in each forward-flood Forward (at most `FORWARD_MAX`).
    pub forward_txs: usize,
    /// Of those, freshly signed with its own key (conflicting pairs, future nonces).
    pub fresh_txs: usize,
    /// Archived messages replayed to every peer per burst.
    pub replays: usize,
    /// FetchBlocks per burst, each to the next peer in turn.
    pub fetches: usize,
}

impl Pressure {
    pub const NODE: Pressure = Pressure {
        every_ticks: 1,
        forward_txs: 1024,
        fresh_txs: 32,
        replays: 64,
        fetches: 12,
    };
    pub const SIM: Pressure = Pressure {
        every_ticks: 10,
        forward_txs: 32,
        fresh_txs: 4,
        replays: 2,
        fetches: 1,
    };
}

/// A replica with a behaviour: honest by default, switchable at any time.
pub struct Actor {
    pub replica: Replica,
    behaviour: Behaviour,
    /// Replicas it conspires with (they receive both sides of an equivocation).
    colluders: BTreeSet<ReplicaId>,
    rng: u64,
    /// Digests seen per (view, seq), with their batch timestamps, for double votes. (An
    /// equivocating primary sends the earlier-stamped batch to one side, the later to the other.)
    seen: BTreeMap<(u64, u64), BTreeMap<Hash, u64>>,
    /// A colluding backup's votes, held until it knows which side each digest went to.
    held: Vec<Message>,
    delayed: VecDeque<(u64, Output)>,
    tick: u64,
    pressure: Pressure,
    forward: forward_flood::ForwardFlood,
    archive: replay::Archive,
    amplifier: amplify::Amplifier,
}

impl Actor {
    pub fn new(replica: Replica, seed: u64) -> Actor {
        let rng = seed ^ (replica.id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Actor {
            forward: forward_flood::ForwardFlood::new(seed, replica.id()),
            archive: replay::Archive::default(),
            amplifier: amplify::Amplifier::default(),
            pressure: Pressure::NODE,
            replica,
            behaviour: Behaviour::Honest,
            colluders: BTreeSet::new(),
            rng,
            seen: BTreeMap::new(),
            held: Vec::new(),
            delayed: VecDeque::new(),
            tick: 0,
        }
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    pub fn set_behaviour(&mut self, behaviour: Behaviour) {
        let previous = std::mem::replace(&mut self.behaviour, behaviour);
        if behaviour.is_honest() {
            self.seen.clear();
            self.held.clear();
        }
        if behaviour != previous {
            // What a liveness attack remembers is for that attack only.
            self.forward.clear();
            self.archive.clear();
            self.amplifier.clear();
            match behaviour {
                Behaviour::ForwardFlood => self.forward.seed(&self.replica),
                Behaviour::Replay => self.archive.seed(&self.replica),
                _ => {}
            }
        }
    }

    pub fn pressure(&self) -> Pressure {
        self.pressure
    }

    pub fn set_pressure(&mut self, pressure: Pressure) {
        self.pressure = pressure;
    }

    /// Messages the `replay` behaviour holds (for tests).
    pub fn archived(&self) -> usize {
        self.archive.len()
    }

    pub fn set_colluders(&mut self, colluders: BTreeSet<ReplicaId>) {
        self.colluders = colluders;
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn step(&mut self, input: Input) -> Vec<Output> {
        if let Input::Tick { .. } = input {
            self.tick += 1;
        }
        self.observe_input(&input);
        let mut extra = self.on_input(&input);
        let outputs = self.replica.step(input);
        self.observe_outputs(&outputs);
        let mut outputs = match self.behaviour {
            Behaviour::Honest => outputs,
            _ => self.rewrite(outputs),
        };
        outputs.append(&mut extra);
        if self.behaviour == Behaviour::DelayVotes || !self.delayed.is_empty() {
            outputs = self.delay(outputs);
        }
        outputs
    }

    /// What the liveness attacks remember of a replica's inputs…
    fn observe_input(&mut self, input: &Input) {
        match self.behaviour {
            Behaviour::ForwardFlood => self.forward.observe_input(input),
            Behaviour::Replay => self.archive.observe_input(input),
            _ => {}
        }
    }

    /// …and of its outputs.
    fn observe_outputs(&mut self, outputs: &[Output]) {
        match self.behaviour {
            Behaviour::ForwardFlood => self.forward.observe_outputs(outputs),
            Behaviour::Replay => self.archive.observe_outputs(outputs, self.replica.id()),
            _ => {}
        }
    }

    /// A burst of a liveness attack, every `pressure.every_ticks` ticks.
    fn liveness_burst(&mut self) -> Vec<Output> {
        let p = self.pressure;
        if !self.tick.is_multiple_of(p.every_ticks.max(1)) {
            return Vec::new();
        }
        match self.behaviour {
            Behaviour::ForwardFlood => self
                .forward
                .burst(&self.replica, p.forward_txs, p.fresh_txs),
            Behaviour::Replay => self.archive.burst(&self.replica, p.replays),
            Behaviour::Amplify => {
                let peers = self.others();
                self.amplifier.burst(&self.replica, &peers, p.fetches)
            }
            _ => Vec::new(),
        }
    }

    /// Messages a faulty replica sends in reaction to what it receives.
    fn on_input(&mut self, input: &Input) -> Vec<Output> {
        let mut out = Vec::new();
        match (self.behaviour, input) {
            (Behaviour::Equivocate | Behaviour::DoubleVote, Input::Message(m)) => {
                if let Message::PrePrepare { proposal, batch } = m.message() {
                    let vote = proposal.body.0;
                    let digests = self.seen.entry((vote.view, vote.seq)).or_default();
                    let fresh = digests.insert(vote.digest, batch.timestamp_ms).is_none();
                    if fresh && digests.len() > 1 {
                        // A second digest for the slot: vote for it too.
                        let prepare = Message::Prepare(self.sign(Prepare(vote)));
                        let commit = Message::Commit(self.sign(CommitStatement {
                            view: vote.view,
                            seq: vote.seq,
                            digest: vote.digest,
                        }));
                        if self.colluding_backup() {
                            out.extend(self.directed(prepare));
                            out.extend(self.directed(commit));
                            let held = std::mem::take(&mut self.held);
                            for m in held {
                                out.extend(self.directed(m));
                            }
                        } else {
                            out.push(Output::Broadcast(prepare));
                            out.push(Output::Broadcast(commit));
                        }
                    }
                    self.prune_seen();
                }
            }
            (Behaviour::Flood, Input::Tick { .. }) => out = self.flood(),
            (
                Behaviour::ForwardFlood | Behaviour::Replay | Behaviour::Amplify,
                Input::Tick { .. },
            ) => out = self.liveness_burst(),
            _ => {}
        }
        out
    }

    fn prune_seen(&mut self) {
        while self.seen.len() > 1024 {
            self.seen.pop_first();
        }
    }

    fn sign<T: Body>(&self, body: T) -> Signed<T> {
        self.replica.sign(body)
    }

    fn others(&self) -> Vec<ReplicaId> {
        let me = self.replica.id();
        self.replica
            .verifier()
            .validators
            .ids()
            .filter(|r| *r != me)
            .collect()
    }

    fn rewrite(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        let mut result = Vec::new();
        for output in outputs {
            match output {
                Output::Persist(_) | Output::Commit(_) => result.push(output),
                Output::Send(to, m) => {
                    for m in self.rewrite_message(m) {
                        result.push(Output::Send(to, m));
                    }
                }
                Output::Broadcast(m) => result.extend(self.rewrite_broadcast(m)),
                Output::ServeBlocks { .. } | Output::SendRaw(..) => {
                    if self.behaviour != Behaviour::Silent {
                        result.push(output);
                    }
                }
            }
        }
        result
    }

    /// An equivocating backup working with an equivocating primary (it has colluders).
    fn colluding_backup(&self) -> bool {
        self.behaviour == Behaviour::Equivocate
            && !self.colluders.is_empty()
            && !self.replica.is_primary()
    }

    /// Sends a vote only to the side whose PrePrepare carried its digest (and to colluders), so
    /// that each honest replica hears the accomplice vote for what it was told, first.
    /// Until both digests of the slot are known, the vote is held.
    fn directed(&mut self, m: Message) -> Vec<Output> {
        let (view, seq, digest) = match &m {
            Message::Prepare(p) => (p.body.0.view, p.body.0.seq, p.body.0.digest),
            Message::Commit(c) => (c.body.view, c.body.seq, c.body.digest),
            _ => return vec![Output::Broadcast(m)],
        };
        let Some(digests) = self.seen.get(&(view, seq)).filter(|d| d.len() > 1) else {
            self.held.push(m);
            if self.held.len() > 4096 {
                self.held.remove(0);
            }
            return Vec::new();
        };
        let earliest = digests.iter().min_by_key(|(_, ts)| **ts).map(|(d, _)| *d);
        let (a, b) = self.sides();
        // Colluders (the primary among them) hear the vote for the original batch only: the
        // primary needs it to prepare, commit, and so hand out both sides' commits.
        let side: Vec<ReplicaId> = if earliest == Some(digest) {
            a
        } else {
            b.into_iter()
                .filter(|r| !self.colluders.contains(r))
                .collect()
        };
        side.into_iter()
            .map(|to| Output::Send(to, m.clone()))
            .collect()
    }

    fn rewrite_broadcast(&mut self, m: Message) -> Vec<Output> {
        if self.colluding_backup() && matches!(m, Message::Prepare(_) | Message::Commit(_)) {
            return self.directed(m);
        }
        match (self.behaviour, &m) {
            (Behaviour::Equivocate, Message::PrePrepare { proposal, batch }) => {
                self.equivocate(proposal.clone(), batch.clone())
            }
            (Behaviour::Equivocate, Message::Commit(c)) if self.replica.is_primary() => {
                self.split_commit(c.body)
            }
            _ => self
                .rewrite_message(m)
                .into_iter()
                .map(Output::Broadcast)
                .collect(),
        }
    }

    /// Splits the honest replicas into two sides; colluders get both.
    fn sides(&self) -> (Vec<ReplicaId>, Vec<ReplicaId>) {
        let honest: Vec<ReplicaId> = self
            .others()
            .into_iter()
            .filter(|r| !self.colluders.contains(r))
            .collect();
        let half = honest.len().div_ceil(2);
        let mut a = honest[..half].to_vec();
        let mut b = honest[half..].to_vec();
        a.extend(self.colluders.iter().filter(|r| **r != self.replica.id()));
        b.extend(self.colluders.iter().filter(|r| **r != self.replica.id()));
        (a, b)
    }

    fn alternative(&self, batch: &Batch) -> Batch {
        let mut alt = batch.clone();
        alt.timestamp_ms = alt.timestamp_ms.wrapping_add(1);
        alt
    }

    fn equivocate(&mut self, proposal: Signed<Proposal>, batch: Batch) -> Vec<Output> {
        let vote = proposal.body.0;
        let alt = self.alternative(&batch);
        let alt_vote = SlotVote {
            digest: alt.digest(),
            ..vote
        };
        let alt_proposal = self.sign(Proposal(alt_vote));
        self.seen.entry((vote.view, vote.seq)).or_default().extend([
            (vote.digest, batch.timestamp_ms),
            (alt_vote.digest, alt.timestamp_ms),
        ]);
        self.prune_seen();
        let (a, b) = self.sides();
        let mut out: Vec<Output> = a
            .into_iter()
            .map(|r| {
                Output::Send(
                    r,
                    Message::PrePrepare {
                        proposal: proposal.clone(),
                        batch: batch.clone(),
                    },
                )
            })
            .collect();
        out.extend(b.into_iter().map(|r| {
            Output::Send(
                r,
                Message::PrePrepare {
                    proposal: alt_proposal.clone(),
                    batch: alt.clone(),
                },
            )
        }));
        out
    }

    fn split_commit(&mut self, c: CommitStatement) -> Vec<Output> {
        let digests = self.seen.get(&(c.view, c.seq)).cloned().unwrap_or_default();
        let other = digests.into_keys().find(|d| *d != c.digest);
        let (a, b) = self.sides();
        let mine = Message::Commit(self.sign(c));
        let mut out: Vec<Output> = a
            .into_iter()
            .map(|r| Output::Send(r, mine.clone()))
            .collect();
        let theirs = match other {
            Some(digest) => Message::Commit(self.sign(CommitStatement { digest, ..c })),
            None => mine,
        };
        out.extend(b.into_iter().map(|r| Output::Send(r, theirs.clone())));
        out
    }

    /// The messages a faulty replica sends in place of one honest message.
    fn rewrite_message(&mut self, m: Message) -> Vec<Message> {
        match self.behaviour {
            Behaviour::Honest
            | Behaviour::DelayVotes
            | Behaviour::Flood
            | Behaviour::ForwardFlood
            | Behaviour::Replay
            | Behaviour::Amplify
            | Behaviour::Slowloris => vec![m],
            Behaviour::Silent => vec![],
            Behaviour::Equivocate | Behaviour::DoubleVote => self.double_vote(m),
            Behaviour::ForgeSignature => vec![forge(m)],
            Behaviour::Impersonate => self.impersonate(m),
            Behaviour::StaleView => vec![self.shift_view(m, false)],
            Behaviour::FutureView => vec![self.shift_view(m, true)],
            Behaviour::InvalidBatch => vec![self.corrupt_batch(m)],
            Behaviour::LyingViewChange => vec![self.lie_in_view_change(m)],
        }
    }

    fn double_vote(&mut self, m: Message) -> Vec<Message> {
        let (vote, commit) = match &m {
            Message::Prepare(p) => (p.body.0, false),
            Message::Commit(c) => (
                SlotVote {
                    view: c.body.view,
                    seq: c.body.seq,
                    digest: c.body.digest,
                },
                true,
            ),
            _ => return vec![m],
        };
        let mut digests: BTreeSet<Hash> = self
            .seen
            .get(&(vote.view, vote.seq))
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default();
        digests.remove(&vote.digest);
        if digests.is_empty() {
            // No rival digest known: invent one, so honest replicas see conflicting votes.
            let mut fake = [0u8; 32];
            fake[..8].copy_from_slice(&self.random().to_be_bytes());
            digests.insert(Hash(fake));
        }
        let mut out = vec![m];
        for digest in digests {
            let v = SlotVote { digest, ..vote };
            out.push(if commit {
                Message::Commit(self.sign(CommitStatement {
                    view: v.view,
                    seq: v.seq,
                    digest,
                }))
            } else {
                Message::Prepare(self.sign(Prepare(v)))
            });
        }
        out
    }

    fn impersonate(&mut self, m: Message) -> Vec<Message> {
        let others = self.others();
        if others.is_empty() {
            return vec![m];
        }
        let victim = others[(self.random() % others.len() as u64) as usize];
        let mut fake = m.clone();
        set_from(&mut fake, victim);
        vec![m, fake]
    }

    fn shift_view(&mut self, m: Message, forward: bool) -> Message {
        let shift = |v: u64| {
            if forward { v + 5 } else { v.saturating_sub(1) }
        };
        match m {
            Message::Prepare(p) => {
                let v = SlotVote {
                    view: shift(p.body.0.view),
                    ..p.body.0
                };
                Message::Prepare(self.sign(Prepare(v)))
            }
            Message::Commit(c) => Message::Commit(self.sign(CommitStatement {
                view: shift(c.body.view),
                ..c.body
            })),
            Message::PrePrepare { proposal, batch } => {
                let v = SlotVote {
                    view: shift(proposal.body.0.view),
                    ..proposal.body.0
                };
                Message::PrePrepare {
                    proposal: self.sign(Proposal(v)),
                    batch,
                }
            }
            other => other,
        }
    }

    fn corrupt_batch(&mut self, m: Message) -> Message {
        let Message::PrePrepare { proposal, batch } = m else {
            return m;
        };
        let mut bad = batch.clone();
        if let Some(first) = batch.txs.iter().find_map(Transaction::as_transfer) {
            // A replay of a transfer already in the batch (a double spend)…
            bad.txs.push(Transaction::Transfer(*first));
            // …and a transfer whose signature does not verify.
            let mut forged = *first;
            forged.transfer.amount = forged.transfer.amount.wrapping_add(1);
            bad.txs.push(Transaction::Transfer(forged));
        } else {
            return Message::PrePrepare { proposal, batch };
        }
        let v = SlotVote {
            digest: bad.digest(),
            ..proposal.body.0
        };
        Message::PrePrepare {
            proposal: self.sign(Proposal(v)),
            batch: bad,
        }
    }

    fn lie_in_view_change(&mut self, m: Message) -> Message {
        match m {
            Message::ViewChange { view_change, .. } => {
                let vc = ViewChange {
                    prepared: Vec::new(),
                    ..view_change.body
                };
                Message::ViewChange {
                    view_change: self.sign(vc),
                    batches: Vec::new(),
                }
            }
            Message::NewView { new_view, .. } => {
                // Replace every re-proposal with a null batch: drops prepared certificates.
                let null = Batch::null().digest();
                let proposals = new_view
                    .body
                    .proposals
                    .iter()
                    .map(|p| {
                        self.sign(Proposal(SlotVote {
                            digest: null,
                            ..p.body.0
                        }))
                    })
                    .collect();
                let nv = NewView {
                    proposals,
                    ..new_view.body
                };
                Message::NewView {
                    new_view: self.sign(nv),
                    batches: Vec::new(),
                }
            }
            other => other,
        }
    }

    fn delay(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        let mut now = Vec::new();
        for o in outputs {
            match o {
                Output::Send(..) | Output::Broadcast(..)
                    if self.behaviour == Behaviour::DelayVotes =>
                {
                    self.delayed.push_back((self.tick + DELAY_TICKS, o));
                }
                other => now.push(other),
            }
        }
        while self.delayed.front().is_some_and(|(t, _)| *t <= self.tick) {
            if let Some((_, o)) = self.delayed.pop_front() {
                now.push(o);
            }
        }
        // Switching back to honest releases everything at once.
        if self.behaviour != Behaviour::DelayVotes {
            now.extend(self.delayed.drain(..).map(|(_, o)| o));
        }
        now
    }

    fn flood(&mut self) -> Vec<Output> {
        let others = self.others();
        let mut out = Vec::new();
        let view = self.replica.view();
        for _ in 0..FLOOD_PER_TICK {
            if others.is_empty() {
                break;
            }
            let to = others[(self.random() % others.len() as u64) as usize];
            let (r1, r2) = (self.random(), self.random());
            let junk = match r1 % 4 {
                0 => {
                    let len = (r2 % 512) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| self.random() as u8).collect();
                    out.push(Output::SendRaw(to, bytes));
                    continue;
                }
                1 => Message::Prepare(self.sign(Prepare(SlotVote {
                    view,
                    seq: r2 % 1_000_000 + 1_000,
                    digest: Hash([7; 32]),
                }))),
                2 => Message::Checkpoint(self.sign(CheckpointStatement {
                    seq: r2 % 1_000_000,
                    block_hash: Hash([9; 32]),
                })),
                _ => Message::ViewChange {
                    view_change: self.sign(ViewChange {
                        new_view: view + 1_000 + r2 % 1_000,
                        checkpoint: self.replica.stable_checkpoint().clone(),
                        prepared: Vec::new(),
                    }),
                    batches: Vec::new(),
                },
            };
            out.push(Output::Send(to, junk));
        }
        out
    }
}

fn forge(mut m: Message) -> Message {
    let flip = |s: &mut quire_chain::Signature| s.0[0] ^= 0x55;
    match &mut m {
        Message::PrePrepare { proposal, .. } => flip(&mut proposal.signature),
        Message::Prepare(x) => flip(&mut x.signature),
        Message::Commit(x) => flip(&mut x.signature),
        Message::Checkpoint(x) => flip(&mut x.signature),
        Message::ViewChange { view_change, .. } => flip(&mut view_change.signature),
        Message::NewView { new_view, .. } => flip(&mut new_view.signature),
        Message::Status(x) => flip(&mut x.signature),
        Message::Forward(x) => flip(&mut x.signature),
        Message::FetchBlocks(x) => flip(&mut x.signature),
        Message::Blocks(x) => flip(&mut x.signature),
    }
    m
}

fn set_from(m: &mut Message, from: ReplicaId) {
    match m {
        Message::PrePrepare { proposal, .. } => proposal.from = from,
        Message::Prepare(x) => x.from = from,
        Message::Commit(x) => x.from = from,
        Message::Checkpoint(x) => x.from = from,
        Message::ViewChange { view_change, .. } => view_change.from = from,
        Message::NewView { new_view, .. } => new_view.from = from,
        Message::Status(x) => x.from = from,
        Message::Forward(x) => x.from = from,
        Message::FetchBlocks(x) => x.from = from,
        Message::Blocks(x) => x.from = from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Status;
    use quire_chain::Keypair;
    use quire_chain::codec::Encode;

    /// Every behaviour is named on the command line and in scenario files as it is parsed.
    #[test]
    fn every_behaviour_parses_from_its_name() {
        for b in Behaviour::ALL {
            assert_eq!(Behaviour::parse(b.name()), Ok(b));
        }
        for name in ["forward-flood", "replay", "amplify", "slowloris"] {
            assert!(Behaviour::parse(name).is_ok(), "{name}");
        }
    }

    /// Only an amplifier throws its answers away, and it can tell them by their first byte.
    #[test]
    fn an_amplifier_discards_the_answers_it_provoked_unread() {
        let status = Message::Status(Signed::sign(
            Status {
                view: 0,
                changing_view: false,
                last_executed: 0,
                stable_seq: 0,
            },
            0,
            &Keypair::from_secret([1; 32]),
            &Hash([2; 32]),
        ));
        assert_eq!(Kind::of_frame(&status.to_bytes()), Some(Kind::Status));
        assert_eq!(Kind::of_frame(&[9]), Some(Kind::Blocks));
        assert_eq!(Kind::of_frame(&[10]), None);
        assert_eq!(Kind::of_frame(&[]), None);
        for b in Behaviour::ALL {
            for k in Kind::ALL {
                let expected = b == Behaviour::Amplify && matches!(k, Kind::Blocks | Kind::NewView);
                assert_eq!(b.discards(k), expected, "{b} {k:?}");
            }
        }
    }
}
