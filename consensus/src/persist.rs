//! What a replica writes to its consensus log before it sends, and how it reads it back.
//!
//! The rule (PBFT.md trap 1): a replica persists every vote before sending it — the PrePrepare it
//! accepted (which it answers with a Prepare), the prepared certificate behind each Commit, the
//! ViewChange it sent — so that after a crash it never signs a different digest for a (view, seq)
//! it already voted on, and never returns to a view it left.
//!
//! Keys: `view` → (view, changing); `acc/<seq>` → accepted PrePrepare; `prep/<seq>` → prepared
//! certificate (its batch is the accepted one); `stable` → stable checkpoint; `vc` → the last
//! ViewChange sent; `nv` → the NewView of the current view.
//!
//! The batch of an accepted PrePrepare is not in its `acc/` entry: it goes to the chain store in
//! the same atomic write ([`crate::Output::PersistBatch`], stored under `(seq, digest)`), where
//! it later is the body of the block that executes it — so a batch reaches the disk once.

use quire_chain::Batch;
use quire_chain::codec::{self, Decode, DecodeError, Encode, Reader};
use thiserror::Error;

use crate::message::{
    LIST_MAX, NewView, PreparedProof, Proposal, Signed, StableCheckpoint, ViewChange,
};

pub type Op = (Vec<u8>, Option<Vec<u8>>);

pub const KEY_VIEW: &[u8] = b"view";
pub const KEY_STABLE: &[u8] = b"stable";
pub const KEY_VIEW_CHANGE: &[u8] = b"vc";
pub const KEY_NEW_VIEW: &[u8] = b"nv";
const PREFIX_ACCEPTED: &[u8] = b"acc/";
const PREFIX_PREPARED: &[u8] = b"prep/";

fn seq_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn view(view: u64, changing: bool) -> Op {
    let mut v = Vec::new();
    codec::put_u64(&mut v, view);
    codec::put_bool(&mut v, changing);
    (KEY_VIEW.to_vec(), Some(v))
}

/// The accepted PrePrepare; its batch is persisted with it by `(seq, digest)`
/// ([`crate::Output::PersistBatch`]).
pub fn accepted(proposal: &Signed<Proposal>) -> Op {
    (
        seq_key(PREFIX_ACCEPTED, proposal.body.0.seq),
        Some(proposal.to_bytes()),
    )
}

/// The prepared certificate alone: its batch is the one in the slot's `acc/` entry (a replica
/// prepares only what it accepted). If a later view's PrePrepare replaces that entry with another
/// digest, the certificate loses its batch and is dropped on recovery — which is safe: a NewView
/// re-proposing another digest at this seq proves this one was never committed.
pub fn prepared(proof: &PreparedProof) -> Op {
    (
        seq_key(PREFIX_PREPARED, proof.slot().seq),
        Some(proof.to_bytes()),
    )
}

pub fn forget_slot(seq: u64) -> [Op; 2] {
    [
        (seq_key(PREFIX_ACCEPTED, seq), None),
        (seq_key(PREFIX_PREPARED, seq), None),
    ]
}

pub fn stable(checkpoint: &StableCheckpoint) -> Op {
    (KEY_STABLE.to_vec(), Some(checkpoint.to_bytes()))
}

pub fn view_change(vc: &Signed<ViewChange>, batches: &[Batch]) -> Op {
    let mut v = vc.to_bytes();
    codec::put_seq(&mut v, batches);
    (KEY_VIEW_CHANGE.to_vec(), Some(v))
}

pub fn new_view(nv: &Signed<NewView>, batches: &[Batch]) -> Op {
    let mut v = nv.to_bytes();
    codec::put_seq(&mut v, batches);
    (KEY_NEW_VIEW.to_vec(), Some(v))
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("consensus log entry '{key}' is corrupt: {source}")]
pub struct CorruptEntry {
    pub key: String,
    pub source: DecodeError,
}

/// Everything read back from the consensus log.
#[derive(Debug, Default)]
pub struct Recovered {
    pub view: u64,
    pub changing: bool,
    pub stable: Option<StableCheckpoint>,
    /// Accepted PrePrepares; their batches are in the chain store.
    pub accepted: Vec<Signed<Proposal>>,
    pub prepared: Vec<PreparedProof>,
    pub view_change: Option<(Signed<ViewChange>, Vec<Batch>)>,
    pub new_view: Option<(Signed<NewView>, Vec<Batch>)>,
}

fn decode_all<T>(
    bytes: &[u8],
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let value = f(&mut r)?;
    r.finish()?;
    Ok(value)
}

/// The (seq, digest) of every accepted PrePrepare in `entries`: the batches to read back from
/// the chain store. An entry that does not decode is left to [`recover`] to report.
pub fn accepted_slots(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<(u64, quire_chain::Hash)> {
    entries
        .iter()
        .filter(|(key, _)| key.starts_with(PREFIX_ACCEPTED))
        .filter_map(|(_, value)| decode_all(value, Signed::<Proposal>::decode).ok())
        .map(|pp| (pp.body.0.seq, pp.body.0.digest))
        .collect()
}

pub fn recover(entries: &[(Vec<u8>, Vec<u8>)]) -> Result<Recovered, CorruptEntry> {
    let mut out = Recovered::default();
    for (key, value) in entries {
        let corrupt = |source| CorruptEntry {
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        };
        if key == KEY_VIEW {
            let (v, c) = decode_all(value, |r| Ok((r.u64()?, r.bool()?))).map_err(corrupt)?;
            out.view = v;
            out.changing = c;
        } else if key == KEY_STABLE {
            out.stable = Some(StableCheckpoint::from_bytes(value).map_err(corrupt)?);
        } else if key == KEY_VIEW_CHANGE {
            let vc = decode_all(value, |r| {
                Ok((Signed::decode(r)?, r.seq("batches", LIST_MAX)?))
            })
            .map_err(corrupt)?;
            out.view_change = Some(vc);
        } else if key == KEY_NEW_VIEW {
            let nv = decode_all(value, |r| {
                Ok((Signed::decode(r)?, r.seq("batches", LIST_MAX)?))
            })
            .map_err(corrupt)?;
            out.new_view = Some(nv);
        } else if key.starts_with(PREFIX_ACCEPTED) {
            let pp = decode_all(value, Signed::decode).map_err(corrupt)?;
            out.accepted.push(pp);
        } else if key.starts_with(PREFIX_PREPARED) {
            out.prepared
                .push(PreparedProof::from_bytes(value).map_err(corrupt)?);
        } else {
            return Err(corrupt(DecodeError::Invalid {
                what: "consensus log",
                reason: "unknown key",
            }));
        }
    }
    Ok(out)
}
