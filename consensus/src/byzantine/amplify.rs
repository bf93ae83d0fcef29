//! `amplify`: small, validly signed requests whose answers are large.
//!
//! A Status claiming view 0 tells every peer in a later view that it missed the NewView, and an
//! honest peer hands it over — a quorum of ViewChanges with their proofs, for ~100 bytes. A
//! FetchBlocks asks for a reply's worth of blocks, read from the store and signed. The requests
//! are signed once and sent again and again: they carry no nonce, so a replay is as good as new.

use std::collections::BTreeMap;

use quire_chain::ReplicaId;

use crate::message::{BLOCKS_PER_REPLY_MAX, Message, Status};
use crate::replica::{Output, Replica};

/// Signed FetchBlocks kept for sending again (one per range).
const FETCHES_KEPT_MAX: usize = 1024;

#[derive(Default)]
pub(super) struct Amplifier {
    stale_status: Option<Message>,
    /// Signed FetchBlocks by the first height they ask for.
    fetches: BTreeMap<u64, Message>,
    /// Requests sent so far (which peer and which range come next).
    next_range: u64,
}

impl Amplifier {
    pub(super) fn clear(&mut self) {
        *self = Amplifier::default();
    }

    /// One burst: a stale Status to every peer, and `fetches` FetchBlocks for ranges the peers
    /// have (every executed block, a reply's worth at a time, round and round), each to the next
    /// peer in turn.
    pub(super) fn burst(
        &mut self,
        replica: &Replica,
        peers: &[ReplicaId],
        fetches: usize,
    ) -> Vec<Output> {
        let status = self
            .stale_status
            .get_or_insert_with(|| {
                Message::Status(replica.sign(Status {
                    view: 0,
                    changing_view: false,
                    last_executed: 0,
                    stable_seq: 0,
                }))
            })
            .clone();
        let mut out = vec![Output::Broadcast(status)];
        let per_reply = BLOCKS_PER_REPLY_MAX as u64;
        let ranges = replica.head.height.div_ceil(per_reply);
        if ranges == 0 || peers.is_empty() {
            return out;
        }
        for _ in 0..fetches {
            // Every peer in turn, and each peer every range in turn.
            let n = peers.len() as u64;
            let to = peers[(self.next_range % n) as usize];
            let from = (self.next_range / n % ranges) * per_reply + 1;
            self.next_range += 1;
            if self.fetches.len() >= FETCHES_KEPT_MAX && !self.fetches.contains_key(&from) {
                self.fetches.clear();
            }
            let request = self
                .fetches
                .entry(from)
                .or_insert_with(|| replica.fetch_request(from, from + per_reply - 1));
            out.push(Output::Send(to, request.clone()));
        }
        out
    }
}
