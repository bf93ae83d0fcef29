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
mod corrupt;
mod equivocate;
mod forward_flood;
mod noise;
mod replay;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quire_chain::cert::CommitStatement;
use quire_chain::{Hash, ReplicaId};

use crate::message::{Body, Kind, Message, Prepare, Signed};
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
    /// Ignores the transactions other replicas forward to it (as primary: censors whatever
    /// clients did not hand it directly), and is otherwise honest.
    Censor,
    /// Opens client connections and streams to every peer and trickles frame bytes into them.
    /// That attack lives in the node's transport (`node/src/slowloris.rs`); the messages of a
    /// slowloris replica are honest. The simulator cannot model it: its network delivers whole
    /// frames and has no connections, streams, flow control or read buffers to exhaust.
    Slowloris,
}

impl Behaviour {
    pub const ALL: [Behaviour; 17] = [
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
        Behaviour::Censor,
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
            Behaviour::Censor => "censor",
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
    /// far more than the asking, and throttle its own attack); a censor never reads what is
    /// forwarded to it. Whoever delivers frames to an actor — the node's frame pump, the
    /// simulator's network — drops these before verifying.
    pub fn discards(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Behaviour::Amplify, Kind::Blocks | Kind::NewView) | (Behaviour::Censor, Kind::Forward)
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
pub(crate) const FLOOD_PER_TICK: usize = 8;

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
            Behaviour::ForwardFlood => {
                self.forward
                    .burst(&self.replica, p.forward_txs, p.fresh_txs)
            }
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
        self.replica.peers()
    }

    fn rewrite(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        let mut result = Vec::new();
        for output in outputs {
            match output {
                Output::Persist(_) | Output::PersistBatch(_) | Output::Commit(_) => {
                    result.push(output)
                }
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

    /// The messages a faulty replica sends in place of one honest message.
    fn rewrite_message(&mut self, m: Message) -> Vec<Message> {
        match self.behaviour {
            Behaviour::Honest
            | Behaviour::DelayVotes
            | Behaviour::Flood
            | Behaviour::ForwardFlood
            | Behaviour::Replay
            | Behaviour::Amplify
            | Behaviour::Censor
            | Behaviour::Slowloris => vec![m],
            Behaviour::Silent => vec![],
            Behaviour::Equivocate | Behaviour::DoubleVote => self.double_vote(m),
            Behaviour::ForgeSignature => vec![corrupt::forge(m)],
            Behaviour::Impersonate => self.impersonate(m),
            Behaviour::StaleView => vec![self.shift_view(m, false)],
            Behaviour::FutureView => vec![self.shift_view(m, true)],
            Behaviour::InvalidBatch => vec![self.corrupt_batch(m)],
            Behaviour::LyingViewChange => vec![self.lie_in_view_change(m)],
        }
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
                let expected = (b == Behaviour::Amplify
                    && matches!(k, Kind::Blocks | Kind::NewView))
                    || (b == Behaviour::Censor && k == Kind::Forward);
                assert_eq!(b.discards(k), expected, "{b} {k:?}");
            }
        }
    }
}
