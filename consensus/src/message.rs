//! The messages replicas exchange, their canonical encoding and what each signature covers.
//!
//! Every message travels in a [`Signed`] envelope: the sender's replica id, the body, and the
//! sender's signature over `tag || chain_id || signed fields` (see `docs/chain-format.md`). Votes
//! (Commit, Checkpoint) sign exactly the statement a certificate carries, so they can be bundled
//! into certificates as they are. A PrePrepare signs `(view, seq, digest)`; its batch travels
//! beside it and is checked against the digest.

use quire_chain::block::{Batch, Block};
use quire_chain::cert::{CheckpointCertificate, CheckpointStatement, CommitStatement, Vote};
use quire_chain::codec::{self, Decode, DecodeError, Encode, Reader};
use quire_chain::keys::{Keypair, Signature, sign_tags};
use quire_chain::tx::Transaction;
use quire_chain::{Hash, ReplicaId};

/// Most items in any list inside a message; a frame cap bounds bytes, this bounds counts.
pub const LIST_MAX: usize = 4096;
/// Most blocks in one state-transfer reply.
pub const BLOCKS_PER_REPLY_MAX: usize = 64;
/// Most transactions in one Forward.
pub const FORWARD_MAX: usize = 4096;

/// Reads the sub-tag that separates the bodies signed under the generic message tag; any other
/// value is refused, so every body has exactly one encoding.
fn expect_tag(r: &mut Reader<'_>, tag: u8, what: &'static str) -> Result<(), DecodeError> {
    match r.u8()? {
        t if t == tag => Ok(()),
        t => Err(DecodeError::BadTag { what, tag: t }),
    }
}

/// What a signed body must say about its signature.
pub trait Body: Encode + Decode + Clone + std::fmt::Debug {
    const TAG: &'static str;
    /// The fields the signature covers (by default, the whole canonical encoding).
    fn signed_fields(&self) -> Vec<u8> {
        self.to_bytes()
    }
}

/// A body, who sent it, and their signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed<T> {
    pub from: ReplicaId,
    pub body: T,
    pub signature: Signature,
}

impl<T: Body> Signed<T> {
    pub fn sign(body: T, from: ReplicaId, key: &Keypair, chain_id: &Hash) -> Signed<T> {
        let signature = key.sign(T::TAG, chain_id, &body.signed_fields());
        Signed {
            from,
            body,
            signature,
        }
    }
}

impl<T: Encode> Encode for Signed<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u32(out, self.from);
        self.body.encode(out);
        self.signature.encode(out);
    }
}

impl<T: Decode> Decode for Signed<T> {
    const MIN_LEN: usize = 4 + T::MIN_LEN + 64;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signed {
            from: r.u32()?,
            body: T::decode(r)?,
            signature: Signature::decode(r)?,
        })
    }
}

/// `(view, seq, digest)`: the primary's proposal (PrePrepare), or a backup's Prepare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotVote {
    pub view: u64,
    pub seq: u64,
    pub digest: Hash,
}

impl Encode for SlotVote {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.view);
        codec::put_u64(out, self.seq);
        self.digest.encode(out);
    }
}

impl Decode for SlotVote {
    const MIN_LEN: usize = 48;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SlotVote {
            view: r.u64()?,
            seq: r.u64()?,
            digest: Hash::decode(r)?,
        })
    }
}

/// The PrePrepare body: signed under its own tag so it can never pass for a Prepare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal(pub SlotVote);

/// The Prepare body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepare(pub SlotVote);

macro_rules! slot_vote_body {
    ($t:ident, $tag:expr) => {
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                self.0.encode(out)
            }
        }
        impl Decode for $t {
            const MIN_LEN: usize = SlotVote::MIN_LEN;
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($t(SlotVote::decode(r)?))
            }
        }
        impl Body for $t {
            const TAG: &'static str = $tag;
        }
    };
}
slot_vote_body!(Proposal, sign_tags::PRE_PREPARE);
slot_vote_body!(Prepare, sign_tags::PREPARE);

impl Body for CommitStatement {
    const TAG: &'static str = sign_tags::COMMIT;
}

impl Body for CheckpointStatement {
    const TAG: &'static str = sign_tags::CHECKPOINT;
}

/// A stable checkpoint: sequence number, the block hash there, and its certificate (none for the
/// genesis, sequence number 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StableCheckpoint {
    pub seq: u64,
    pub block_hash: Hash,
    pub certificate: Option<CheckpointCertificate>,
}

impl Encode for StableCheckpoint {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.seq);
        self.block_hash.encode(out);
        codec::put_option(out, &self.certificate);
    }
}

impl Decode for StableCheckpoint {
    const MIN_LEN: usize = 41;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(StableCheckpoint {
            seq: r.u64()?,
            block_hash: Hash::decode(r)?,
            certificate: r.option()?,
        })
    }
}

/// Evidence that a batch was *prepared*: the primary's signed proposal and the Prepare votes of
/// a quorum minus one distinct backups, all for the same (view, seq, digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedProof {
    pub proposal: Signed<Proposal>,
    pub prepares: Vec<Vote>,
}

impl PreparedProof {
    pub fn slot(&self) -> SlotVote {
        self.proposal.body.0
    }
}

impl Encode for PreparedProof {
    fn encode(&self, out: &mut Vec<u8>) {
        self.proposal.encode(out);
        codec::put_seq(out, &self.prepares);
    }
}

impl Decode for PreparedProof {
    const MIN_LEN: usize = Signed::<Proposal>::MIN_LEN + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PreparedProof {
            proposal: Signed::decode(r)?,
            prepares: r.seq("prepares", LIST_MAX)?,
        })
    }
}

/// `ViewChange(v+1, stable checkpoint, prepared proofs)` (PBFT §4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewChange {
    pub new_view: u64,
    pub checkpoint: StableCheckpoint,
    pub prepared: Vec<PreparedProof>,
}

impl Encode for ViewChange {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.new_view);
        self.checkpoint.encode(out);
        codec::put_seq(out, &self.prepared);
    }
}

impl Decode for ViewChange {
    const MIN_LEN: usize = 8 + StableCheckpoint::MIN_LEN + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ViewChange {
            new_view: r.u64()?,
            checkpoint: StableCheckpoint::decode(r)?,
            prepared: r.seq("prepared proofs", LIST_MAX)?,
        })
    }
}

impl Body for ViewChange {
    const TAG: &'static str = sign_tags::VIEW_CHANGE;
}

/// `NewView(v, V, O)`: the view changes the new primary based the view on, and its proposals for
/// every sequence number from the highest stable checkpoint in V to the highest prepared one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewView {
    pub view: u64,
    pub view_changes: Vec<Signed<ViewChange>>,
    pub proposals: Vec<Signed<Proposal>>,
}

impl Encode for NewView {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.view);
        codec::put_seq(out, &self.view_changes);
        codec::put_seq(out, &self.proposals);
    }
}

impl Decode for NewView {
    const MIN_LEN: usize = 16;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NewView {
            view: r.u64()?,
            view_changes: r.seq("view changes", 1024)?,
            proposals: r.seq("proposals", LIST_MAX)?,
        })
    }
}

impl Body for NewView {
    const TAG: &'static str = sign_tags::NEW_VIEW;
}

/// A replica's periodic report of where it is; also the primary's heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub view: u64,
    pub changing_view: bool,
    pub last_executed: u64,
    pub stable_seq: u64,
}

impl Encode for Status {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u8(out, 0);
        codec::put_u64(out, self.view);
        codec::put_bool(out, self.changing_view);
        codec::put_u64(out, self.last_executed);
        codec::put_u64(out, self.stable_seq);
    }
}

impl Decode for Status {
    const MIN_LEN: usize = 26;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_tag(r, 0, "status")?;
        Ok(Status {
            view: r.u64()?,
            changing_view: r.bool()?,
            last_executed: r.u64()?,
            stable_seq: r.u64()?,
        })
    }
}

impl Body for Status {
    const TAG: &'static str = sign_tags::MESSAGE;
}

/// Client transactions a backup passes on to the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward(pub Vec<Transaction>);

impl Encode for Forward {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u8(out, 1);
        codec::put_seq(out, &self.0);
    }
}

impl Decode for Forward {
    const MIN_LEN: usize = 5;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_tag(r, 1, "forward")?;
        Ok(Forward(r.seq("forwarded transactions", FORWARD_MAX)?))
    }
}

impl Body for Forward {
    const TAG: &'static str = sign_tags::MESSAGE;
}

/// State transfer: "send me blocks `from..=to`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchBlocks {
    pub from: u64,
    pub to: u64,
}

impl Encode for FetchBlocks {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u8(out, 2);
        codec::put_u64(out, self.from);
        codec::put_u64(out, self.to);
    }
}

impl Decode for FetchBlocks {
    const MIN_LEN: usize = 17;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_tag(r, 2, "fetch blocks")?;
        Ok(FetchBlocks {
            from: r.u64()?,
            to: r.u64()?,
        })
    }
}

impl Body for FetchBlocks {
    const TAG: &'static str = sign_tags::MESSAGE;
}

/// State transfer: certified blocks, in height order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocks(pub Vec<Block>);

impl Encode for Blocks {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u8(out, 3);
        codec::put_seq(out, &self.0);
    }
}

impl Decode for Blocks {
    const MIN_LEN: usize = 5;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_tag(r, 3, "blocks")?;
        Ok(Blocks(r.seq("blocks", BLOCKS_PER_REPLY_MAX)?))
    }
}

impl Body for Blocks {
    const TAG: &'static str = sign_tags::MESSAGE;
}

/// Every message one replica sends another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    PrePrepare {
        proposal: Signed<Proposal>,
        batch: Batch,
    },
    Prepare(Signed<Prepare>),
    Commit(Signed<CommitStatement>),
    Checkpoint(Signed<CheckpointStatement>),
    /// With the batches of its prepared proofs when sent to the new primary, which re-proposes
    /// them; to every other replica without (see `Replica::send_view_change`).
    ViewChange {
        view_change: Signed<ViewChange>,
        batches: Vec<Batch>,
    },
    /// With the batches of its proposals.
    NewView {
        new_view: Signed<NewView>,
        batches: Vec<Batch>,
    },
    Status(Signed<Status>),
    Forward(Signed<Forward>),
    FetchBlocks(Signed<FetchBlocks>),
    Blocks(Signed<Blocks>),
}

/// The kinds of message, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    NewView,
    Status,
    Forward,
    FetchBlocks,
    Blocks,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::PrePrepare,
        Kind::Prepare,
        Kind::Commit,
        Kind::Checkpoint,
        Kind::ViewChange,
        Kind::NewView,
        Kind::Status,
        Kind::Forward,
        Kind::FetchBlocks,
        Kind::Blocks,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Kind::PrePrepare => "pre_prepare",
            Kind::Prepare => "prepare",
            Kind::Commit => "commit",
            Kind::Checkpoint => "checkpoint",
            Kind::ViewChange => "view_change",
            Kind::NewView => "new_view",
            Kind::Status => "status",
            Kind::Forward => "forward",
            Kind::FetchBlocks => "fetch_blocks",
            Kind::Blocks => "blocks",
        }
    }
}

impl Message {
    pub fn from(&self) -> ReplicaId {
        match self {
            Message::PrePrepare { proposal, .. } => proposal.from,
            Message::Prepare(m) => m.from,
            Message::Commit(m) => m.from,
            Message::Checkpoint(m) => m.from,
            Message::ViewChange { view_change, .. } => view_change.from,
            Message::NewView { new_view, .. } => new_view.from,
            Message::Status(m) => m.from,
            Message::Forward(m) => m.from,
            Message::FetchBlocks(m) => m.from,
            Message::Blocks(m) => m.from,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Message::PrePrepare { .. } => Kind::PrePrepare,
            Message::Prepare(_) => Kind::Prepare,
            Message::Commit(_) => Kind::Commit,
            Message::Checkpoint(_) => Kind::Checkpoint,
            Message::ViewChange { .. } => Kind::ViewChange,
            Message::NewView { .. } => Kind::NewView,
            Message::Status(_) => Kind::Status,
            Message::Forward(_) => Kind::Forward,
            Message::FetchBlocks(_) => Kind::FetchBlocks,
            Message::Blocks(_) => Kind::Blocks,
        }
    }

    /// The view a message belongs to, for the kinds that have one.
    pub fn view(&self) -> Option<u64> {
        match self {
            Message::PrePrepare { proposal, .. } => Some(proposal.body.0.view),
            Message::Prepare(m) => Some(m.body.0.view),
            Message::Commit(m) => Some(m.body.view),
            Message::ViewChange { view_change, .. } => Some(view_change.body.new_view),
            Message::NewView { new_view, .. } => Some(new_view.body.view),
            Message::Status(m) => Some(m.body.view),
            _ => None,
        }
    }
}

impl Encode for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::PrePrepare { proposal, batch } => {
                out.push(0);
                proposal.encode(out);
                batch.encode(out);
            }
            Message::Prepare(m) => {
                out.push(1);
                m.encode(out)
            }
            Message::Commit(m) => {
                out.push(2);
                m.encode(out)
            }
            Message::Checkpoint(m) => {
                out.push(3);
                m.encode(out)
            }
            Message::ViewChange {
                view_change,
                batches,
            } => {
                out.push(4);
                view_change.encode(out);
                codec::put_seq(out, batches);
            }
            Message::NewView { new_view, batches } => {
                out.push(5);
                new_view.encode(out);
                codec::put_seq(out, batches);
            }
            Message::Status(m) => {
                out.push(6);
                m.encode(out)
            }
            Message::Forward(m) => {
                out.push(7);
                m.encode(out)
            }
            Message::FetchBlocks(m) => {
                out.push(8);
                m.encode(out)
            }
            Message::Blocks(m) => {
                out.push(9);
                m.encode(out)
            }
        }
    }
}

impl Kind {
    /// The kind a frame claims by its first byte (the message tag), before any decoding: for
    /// cheap decisions about frames nobody will read (what it says is checked when decoded).
    pub fn of_frame(bytes: &[u8]) -> Option<Kind> {
        Kind::ALL.get(usize::from(*bytes.first()?)).copied()
    }
}

impl Decode for Message {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Message::PrePrepare {
                proposal: Signed::decode(r)?,
                batch: Batch::decode(r)?,
            },
            1 => Message::Prepare(Signed::decode(r)?),
            2 => Message::Commit(Signed::decode(r)?),
            3 => Message::Checkpoint(Signed::decode(r)?),
            4 => Message::ViewChange {
                view_change: Signed::decode(r)?,
                batches: r.seq("batches", LIST_MAX)?,
            },
            5 => Message::NewView {
                new_view: Signed::decode(r)?,
                batches: r.seq("batches", LIST_MAX)?,
            },
            6 => Message::Status(Signed::decode(r)?),
            7 => Message::Forward(Signed::decode(r)?),
            8 => Message::FetchBlocks(Signed::decode(r)?),
            9 => Message::Blocks(Signed::decode(r)?),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "message",
                    tag,
                });
            }
        })
    }
}
