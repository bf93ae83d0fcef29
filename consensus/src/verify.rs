//! Verification at the boundary: every message is decoded and every signature in it checked
//! (nested ones included) before the core sees it, as a [`Verified`] message. The core never
//! handles unchecked input; what remains for it are the checks that need its state (view,
//! watermarks, duplicates).
//!
//! Client signatures inside a message (forwarded transactions, a proposal's batch, blocks in
//! state transfer) are checked here too, so the node can do it on a pool off the consensus
//! thread; the transactions found good travel with the message, and the core does not check them
//! again when it executes. A transaction's verdict depends on it alone (`quire_chain::sig`), so a
//! [`VerdictCache`] lets a replica check each signature once however it arrives.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use quire_chain::block::Batch;
use quire_chain::cert::CheckpointStatement;
use quire_chain::codec::{Decode, Encode};
use quire_chain::genesis::Protocol;
use quire_chain::keys::{PublicKey, Signature, signing_bytes};
use quire_chain::{Genesis, Hash, ReplicaId, SignedId, Transaction, ValidatorSet};

use crate::message::{
    BLOCKS_PER_REPLY_MAX, Blocks, Body, FetchBlocks, Message, NewView, Prepare, PreparedProof,
    Proposal, Signed, StableCheckpoint, ViewChange,
};
use crate::view_change;

/// Why a message was refused at the boundary. Every one is the sender's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    /// The bytes are not a message.
    Malformed,
    /// The claimed sender is not a validator.
    UnknownSender,
    /// The claimed sender is not the authenticated peer that sent it.
    Impersonation,
    BadSignature,
    /// A PrePrepare or NewView not from the primary of its view.
    WrongPrimary,
    /// A Prepare from the primary (its PrePrepare stands for its vote).
    PrimaryPrepare,
    /// A batch that does not hash to the digest it comes with.
    DigestMismatch,
    BadCheckpointProof,
    BadPreparedProof,
    BadViewChange,
    /// A NewView whose proposals are not what its view changes imply.
    BadNewView,
    BadBlock,
    /// A forwarded client transaction whose signature does not verify.
    BadTransaction,
    /// A batch, block or forward that breaks the genesis's rules: more transactions than
    /// `batch_txs_max`, or raw payloads on a network that forbids them.
    BreaksProtocol,
}

impl Reject {
    pub const ALL: [Reject; 14] = [
        Reject::Malformed,
        Reject::UnknownSender,
        Reject::Impersonation,
        Reject::BadSignature,
        Reject::WrongPrimary,
        Reject::PrimaryPrepare,
        Reject::DigestMismatch,
        Reject::BadCheckpointProof,
        Reject::BadPreparedProof,
        Reject::BadViewChange,
        Reject::BadNewView,
        Reject::BadBlock,
        Reject::BadTransaction,
        Reject::BreaksProtocol,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::UnknownSender => "unknown_sender",
            Reject::Impersonation => "impersonation",
            Reject::BadSignature => "bad_signature",
            Reject::WrongPrimary => "wrong_primary",
            Reject::PrimaryPrepare => "primary_prepare",
            Reject::DigestMismatch => "digest_mismatch",
            Reject::BadCheckpointProof => "bad_checkpoint_proof",
            Reject::BadPreparedProof => "bad_prepared_proof",
            Reject::BadViewChange => "bad_view_change",
            Reject::BadNewView => "bad_new_view",
            Reject::BadBlock => "bad_block",
            Reject::BadTransaction => "bad_transaction",
            Reject::BreaksProtocol => "breaks_protocol",
        }
    }
}

/// A message whose every signature and every self-contained rule has been checked.
#[derive(Clone, Debug)]
pub struct Verified {
    message: Message,
    /// Transfers inside the message whose client signatures verified.
    good_txs: Vec<SignedId>,
    /// Whether every client signature the message carries was checked here and holds: a
    /// PrePrepare's batch, a Forward's or a Blocks reply's transactions. False for ViewChanges
    /// and NewViews, whose batches are not checked here; true for messages without transactions.
    all_signed: bool,
}

impl Verified {
    pub fn message(&self) -> &Message {
        &self.message
    }

    pub fn into_message(self) -> Message {
        self.message
    }

    /// The message, and the transfers in it whose signatures were found valid.
    pub fn into_parts(self) -> (Message, Vec<SignedId>) {
        (self.message, self.good_txs)
    }

    /// Whether every client signature in the message holds (see the field): the replica then
    /// need not look each of them up again before it votes for or executes the batch.
    pub fn all_signed(&self) -> bool {
        self.all_signed
    }
}

/// Signatures already found valid, by transaction id: lets a replica check a client's signature
/// once, whether the transaction reached it from the client, a peer's forward, a proposal or a
/// block. Only `true` verdicts are remembered; a cache may forget at any time.
/// Keyed by [`SignedId`] (id and signature), never by id alone.
pub trait VerdictCache {
    fn known_good(&self, id: &SignedId) -> bool;
    fn remember_good(&self, ids: &[SignedId]);
    /// A ViewChange (by the digest of its signed encoding) that verified in full before.
    fn known_view_change(&self, _digest: &Hash) -> bool {
        false
    }
    fn remember_view_change(&self, _digest: Hash) {}
}

fn good_of<T: Borrow<Transaction>>(txs: &[T], verdicts: &[bool]) -> Vec<SignedId> {
    txs.iter()
        .zip(verdicts)
        .filter(|(_, ok)| **ok)
        .filter_map(|(tx, _)| tx.borrow().signed_id())
        .collect()
}

/// No cache: every signature is checked where it is met.
pub struct NoCache;

impl VerdictCache for NoCache {
    fn known_good(&self, _: &SignedId) -> bool {
        false
    }
    fn remember_good(&self, _: &[SignedId]) {}
}

/// The verdicts of `txs`' signatures (raw payloads carry none and count as good), checking only
/// those `cache` does not know, in batches; the good ones are remembered.
pub fn check_transactions(
    chain_id: &Hash,
    txs: &[Transaction],
    cache: &dyn VerdictCache,
) -> Vec<bool> {
    check_all(chain_id, txs, cache)
}

/// [`check_transactions`] over transactions from several places (a reply's blocks): checked
/// together, in as few batches as they fill. Grouping changes no verdict
/// (`quire_chain::sig::verify_many`), only the cost.
fn check_all<T: Borrow<Transaction>>(
    chain_id: &Hash,
    txs: &[T],
    cache: &dyn VerdictCache,
) -> Vec<bool> {
    let mut verdicts: Vec<bool> = txs
        .iter()
        .map(|tx| tx.borrow().signed_id().is_none_or(|k| cache.known_good(&k)))
        .collect();
    let unknown: Vec<usize> = (0..txs.len()).filter(|i| !verdicts[*i]).collect();
    if unknown.is_empty() {
        return verdicts;
    }
    let items: Vec<_> = unknown
        .iter()
        .filter_map(|i| txs[*i].borrow().as_transfer())
        .map(|t| (t.signing_bytes(chain_id), t.signature, t.transfer.from))
        .collect();
    let checked = quire_chain::keys::verify_many(&items);
    let mut good = Vec::new();
    for (i, ok) in unknown.into_iter().zip(checked) {
        verdicts[i] = ok;
        if ok && let Some(k) = txs[i].borrow().signed_id() {
            good.push(k);
        }
    }
    cache.remember_good(&good);
    verdicts
}

/// A vote's envelope: the bytes its sender signed, the signature, the sender's key.
pub type Envelope = (Vec<u8>, Signature, PublicKey);

/// The fixed context verification needs: the chain, the validators, and the protocol rules,
/// all from the genesis.
#[derive(Clone, Debug)]
pub struct Verifier {
    pub chain_id: Hash,
    pub validators: ValidatorSet,
    pub genesis_hash: Hash,
    pub protocol: Protocol,
}

impl Verifier {
    pub fn new(genesis: &Genesis) -> Verifier {
        Verifier {
            chain_id: genesis.chain_id(),
            validators: genesis.validators.clone(),
            genesis_hash: genesis.block().hash(),
            protocol: genesis.protocol,
        }
    }

    /// The genesis's rules for what may enter a block: at most `batch_txs_max` transactions,
    /// and raw payloads only where the genesis allows them.
    pub fn admissible(&self, txs: &[Transaction]) -> Result<(), Reject> {
        if txs.len() > self.protocol.batch_txs_max as usize {
            return Err(Reject::BreaksProtocol);
        }
        self.raw_allowed(txs)
    }

    /// Raw payloads are refused unless the genesis allows them.
    pub fn raw_allowed(&self, txs: &[Transaction]) -> Result<(), Reject> {
        if !self.protocol.raw_payloads && txs.iter().any(|t| t.as_transfer().is_none()) {
            return Err(Reject::BreaksProtocol);
        }
        Ok(())
    }

    /// Decodes and verifies a frame received from `peer` (the sender the transport authenticated,
    /// if it knows one).
    pub fn decode(&self, bytes: &[u8], peer: Option<ReplicaId>) -> Result<Verified, Reject> {
        self.decode_with(bytes, peer, &NoCache)
    }

    /// As [`decode`](Self::decode), skipping client signatures `cache` already knows are good.
    pub fn decode_with(
        &self,
        bytes: &[u8],
        peer: Option<ReplicaId>,
        cache: &dyn VerdictCache,
    ) -> Result<Verified, Reject> {
        let message = Message::from_bytes(bytes).map_err(|_| Reject::Malformed)?;
        self.verify_with(message, peer, cache)
    }

    pub fn verify(&self, message: Message, peer: Option<ReplicaId>) -> Result<Verified, Reject> {
        self.verify_with(message, peer, &NoCache)
    }

    pub fn verify_with(
        &self,
        message: Message,
        peer: Option<ReplicaId>,
        cache: &dyn VerdictCache,
    ) -> Result<Verified, Reject> {
        self.verify_envelope_known(message, peer, cache, None)
    }

    /// A vote's envelope — the bytes its sender signed, the signature, the sender's key — for
    /// checking the envelopes of several votes at once (`quire_chain::sig::verify_many`, whose
    /// verdicts are those of checking each alone). `None` for other messages, and for senders
    /// not in the validator set.
    pub fn envelope(&self, message: &Message) -> Option<Envelope> {
        fn of<T: Body>(v: &Verifier, m: &Signed<T>) -> Option<Envelope> {
            let key = v.validators.key(m.from)?;
            let bytes = signing_bytes(T::TAG, &v.chain_id, &m.body.signed_fields());
            Some((bytes, m.signature, *key))
        }
        match message {
            Message::Prepare(m) => of(self, m),
            Message::Commit(m) => of(self, m),
            Message::Checkpoint(m) => of(self, m),
            Message::Status(m) => of(self, m),
            _ => None,
        }
    }

    /// As [`verify_with`](Self::verify_with), with the verdict on a vote's envelope signature
    /// already known (`Some`, from [`envelope`](Self::envelope)'s bytes checked together with
    /// others'); every other check is made here as usual.
    pub fn verify_envelope_known(
        &self,
        message: Message,
        peer: Option<ReplicaId>,
        cache: &dyn VerdictCache,
        envelope_holds: Option<bool>,
    ) -> Result<Verified, Reject> {
        let from = message.from();
        if self.validators.get(from).is_none() {
            return Err(Reject::UnknownSender);
        }
        // A NewView is relayed, as signed by its primary, to replicas that missed it; every
        // other message comes from its signer.
        let relayable = matches!(message, Message::NewView { .. });
        if peer.is_some_and(|p| p != from) && !relayable {
            return Err(Reject::Impersonation);
        }
        let mut good_txs = Vec::new();
        let mut all_signed = true;
        match &message {
            Message::PrePrepare { proposal, batch } => {
                self.signed(proposal)?;
                let slot = proposal.body.0;
                if self.validators.primary(slot.view) != from {
                    return Err(Reject::WrongPrimary);
                }
                if batch.digest() != slot.digest {
                    return Err(Reject::DigestMismatch);
                }
                self.admissible(&batch.txs)?;
                // A bad client signature does not void the proposal (execution records it as
                // rejected and blames the primary); only the good ones are listed.
                let verdicts = check_transactions(&self.chain_id, &batch.txs, cache);
                all_signed = verdicts.iter().all(|ok| *ok);
                good_txs = good_of(&batch.txs, &verdicts);
            }
            Message::Prepare(m) => {
                self.signed_known(m, envelope_holds)?;
                if self.validators.primary(m.body.0.view) == from {
                    return Err(Reject::PrimaryPrepare);
                }
            }
            Message::Commit(m) => self.signed_known(m, envelope_holds)?,
            Message::Checkpoint(m) => self.signed_known(m, envelope_holds)?,
            Message::ViewChange {
                view_change,
                batches,
            } => {
                all_signed = false;
                self.view_change(view_change, cache)?;
                // Its batches travel to the new primary alone (`Replica::send_view_change`):
                // none, or exactly those of its prepared proofs.
                if !batches.is_empty() {
                    self.batches_of(
                        view_change.body.prepared.iter().map(|p| p.slot().digest),
                        batches,
                        true,
                    )
                    .map_err(|_| Reject::BadViewChange)?;
                }
            }
            Message::NewView { new_view, batches } => {
                all_signed = false;
                self.new_view(new_view, batches, cache)?;
            }
            Message::Status(m) => self.signed_known(m, envelope_holds)?,
            Message::Forward(m) => {
                self.signed(m)?;
                self.raw_allowed(&m.body.0)?;
                let verdicts = check_transactions(&self.chain_id, &m.body.0, cache);
                if !verdicts.iter().all(|ok| *ok) {
                    return Err(Reject::BadTransaction);
                }
                good_txs = good_of(&m.body.0, &verdicts);
            }
            Message::FetchBlocks(m) => self.fetch(m)?,
            Message::Blocks(m) => {
                self.blocks(m)?;
                // The whole reply's transactions at once. Block by block, a chain built at low
                // load (a transaction or a few per block) gave batches of one or a few: a block
                // of one transfer was a single check (~40 µs here) where a batch costs ~16–21 µs
                // a signature (../shared/STACK.md), ~1.5 ms more per reply of 64 such blocks.
                let txs: Vec<&Transaction> = m.body.0.iter().flat_map(|b| &b.txs).collect();
                let verdicts = check_all(&self.chain_id, &txs, cache);
                all_signed = verdicts.iter().all(|ok| *ok);
                good_txs = good_of(&txs, &verdicts);
            }
        }
        Ok(Verified {
            message,
            good_txs,
            all_signed,
        })
    }

    /// [`signed`](Self::signed), unless the verdict is already known.
    fn signed_known<T: Body>(&self, m: &Signed<T>, holds: Option<bool>) -> Result<(), Reject> {
        match holds {
            None => self.signed(m),
            Some(true) => Ok(()),
            Some(false) => Err(Reject::BadSignature),
        }
    }

    fn signed<T: Body>(&self, m: &Signed<T>) -> Result<(), Reject> {
        let key = self.validators.key(m.from).ok_or(Reject::UnknownSender)?;
        key.verify(
            T::TAG,
            &self.chain_id,
            &m.body.signed_fields(),
            &m.signature,
        )
        .map_err(|_| Reject::BadSignature)
    }

    /// Everything a stable checkpoint's proof needs but the signatures of its votes, which go
    /// into `signatures`.
    fn checkpoint_unsigned(
        &self,
        c: &StableCheckpoint,
        signatures: &mut Signatures,
    ) -> Result<(), Reject> {
        if !c.seq.is_multiple_of(self.protocol.checkpoint_interval) {
            return Err(Reject::BadCheckpointProof);
        }
        match &c.certificate {
            None if c.seq == 0 && c.block_hash == self.genesis_hash => Ok(()),
            None => Err(Reject::BadCheckpointProof),
            Some(cert) => {
                let expected = CheckpointStatement {
                    seq: c.seq,
                    block_hash: c.block_hash,
                };
                if cert.statement != expected {
                    return Err(Reject::BadCheckpointProof);
                }
                let votes = cert
                    .votes_to_check(&self.chain_id, &self.validators)
                    .map_err(|_| Reject::BadCheckpointProof)?;
                for v in votes {
                    signatures.add(v.signed, v.signature, v.key, Reject::BadCheckpointProof);
                }
                Ok(())
            }
        }
    }

    /// A prepared proof: the right primary's proposal and a quorum minus one distinct backups'
    /// Prepares for the same (view, seq, digest), all validly signed.
    pub fn prepared_proof(&self, p: &PreparedProof) -> Result<(), Reject> {
        let mut signatures = Signatures::default();
        self.prepared_proof_unsigned(p, &mut signatures)?;
        signatures.check()
    }

    /// Everything [`prepared_proof`](Self::prepared_proof) checks but the signatures, which go
    /// into `signatures`.
    fn prepared_proof_unsigned(
        &self,
        p: &PreparedProof,
        signatures: &mut Signatures,
    ) -> Result<(), Reject> {
        let slot = p.slot();
        let primary = self.validators.primary(slot.view);
        if p.proposal.from != primary {
            return Err(Reject::BadPreparedProof);
        }
        let key = self
            .validators
            .key(primary)
            .ok_or(Reject::BadPreparedProof)?;
        signatures.add(
            signing_bytes(
                Proposal::TAG,
                &self.chain_id,
                &p.proposal.body.signed_fields(),
            ),
            p.proposal.signature,
            *key,
            Reject::BadPreparedProof,
        );
        if p.prepares.len() < self.validators.quorum() - 1 {
            return Err(Reject::BadPreparedProof);
        }
        let signed = signing_bytes(Prepare::TAG, &self.chain_id, &Prepare(slot).signed_fields());
        let mut previous = None;
        for vote in &p.prepares {
            if vote.replica == primary || previous.is_some_and(|prev| vote.replica <= prev) {
                return Err(Reject::BadPreparedProof);
            }
            previous = Some(vote.replica);
            let key = self
                .validators
                .key(vote.replica)
                .ok_or(Reject::BadPreparedProof)?;
            signatures.add(
                signed.clone(),
                vote.signature,
                *key,
                Reject::BadPreparedProof,
            );
        }
        Ok(())
    }

    /// A ViewChange is checked in full once (its checkpoint proof and every prepared proof: up to
    /// window × quorum signatures); a replay, or the same one inside another NewView, is known
    /// by the digest of its bytes.
    fn view_change(&self, m: &Signed<ViewChange>, cache: &dyn VerdictCache) -> Result<(), Reject> {
        let digest = Hash::tagged("quire/v1/verified-view-change", &[&m.to_bytes()]);
        if cache.known_view_change(&digest) {
            return Ok(());
        }
        self.check_view_change(m)?;
        cache.remember_view_change(digest);
        Ok(())
    }

    /// Its own signature first (a forged ViewChange costs one check), then its structure, then
    /// every signature inside — the checkpoint's votes, each prepared proof's proposal and
    /// Prepares, up to window × quorum of them — checked together (`sig::verify_many`: each
    /// verdict is the one it gets alone, at about 40% of the cost a signature in batches of a
    /// few hundred). At 16 replicas a ViewChange under load held ≈ 400 signatures, and every
    /// replica checks every other replica's.
    fn check_view_change(&self, m: &Signed<ViewChange>) -> Result<(), Reject> {
        self.signed(m)?;
        let vc = &m.body;
        let mut signatures = Signatures::default();
        self.checkpoint_unsigned(&vc.checkpoint, &mut signatures)?;
        let low = vc.checkpoint.seq;
        let mut seqs = BTreeSet::new();
        for proof in &vc.prepared {
            let slot = proof.slot();
            if slot.view >= vc.new_view
                || slot.seq <= low
                || slot.seq > low + self.protocol.log_window
                || !seqs.insert(slot.seq)
            {
                return Err(Reject::BadViewChange);
            }
            self.prepared_proof_unsigned(proof, &mut signatures)?;
        }
        signatures.check()
    }

    /// Checks that `batches` hold at most one batch for each distinct non-null digest and nothing
    /// else — and, if `every`, one for each of them.
    fn batches_of(
        &self,
        digests: impl Iterator<Item = Hash>,
        batches: &[Batch],
        every: bool,
    ) -> Result<(), Reject> {
        let null = Batch::null().digest();
        let needed: BTreeSet<Hash> = digests.filter(|d| *d != null).collect();
        let given: BTreeMap<Hash, &Batch> = batches.iter().map(|b| (b.digest(), b)).collect();
        if given.len() != batches.len()
            || !given.keys().all(|d| needed.contains(d))
            || (every && given.len() != needed.len())
        {
            return Err(Reject::DigestMismatch);
        }
        batches.iter().try_for_each(|b| self.admissible(&b.txs))
    }

    fn new_view(
        &self,
        m: &Signed<NewView>,
        batches: &[Batch],
        cache: &dyn VerdictCache,
    ) -> Result<(), Reject> {
        self.signed(m)?;
        let nv = &m.body;
        if self.validators.primary(nv.view) != m.from {
            return Err(Reject::WrongPrimary);
        }
        if nv.view_changes.len() < self.validators.quorum() {
            return Err(Reject::BadNewView);
        }
        let mut senders = BTreeSet::new();
        for vc in &nv.view_changes {
            if vc.body.new_view != nv.view || !senders.insert(vc.from) {
                return Err(Reject::BadNewView);
            }
            self.view_change(vc, cache)
                .map_err(|_| Reject::BadNewView)?;
        }
        // Recompute O from V (trap 3): the proposals must be exactly the plan.
        let vcs: Vec<&ViewChange> = nv.view_changes.iter().map(|vc| &vc.body).collect();
        let plan = view_change::plan(&vcs);
        if plan.proposals.len() != nv.proposals.len() {
            return Err(Reject::BadNewView);
        }
        // The primary's proposals, one per slot of the window, are checked together.
        let key = self.validators.key(m.from).ok_or(Reject::UnknownSender)?;
        let mut signatures = Signatures::default();
        for ((seq, digest), proposal) in plan.proposals.iter().zip(&nv.proposals) {
            let slot = proposal.body.0;
            if proposal.from != m.from
                || slot.view != nv.view
                || slot.seq != *seq
                || slot.digest != *digest
            {
                return Err(Reject::BadNewView);
            }
            signatures.add(
                signing_bytes(
                    Proposal::TAG,
                    &self.chain_id,
                    &proposal.body.signed_fields(),
                ),
                proposal.signature,
                *key,
                Reject::BadNewView,
            );
        }
        signatures.check()?;
        // Sent to a replica whose ViewChange is in it, it leaves out the batches that replica
        // prepared (`Replica::try_new_view`): any subset of the proposals' batches, each once.
        self.batches_of(plan.proposals.iter().map(|(_, d)| *d), batches, false)
            .map_err(|_| Reject::BadNewView)
    }

    fn fetch(&self, m: &Signed<FetchBlocks>) -> Result<(), Reject> {
        self.signed(m)?;
        if m.body.to < m.body.from || m.body.from == 0 {
            return Err(Reject::Malformed);
        }
        Ok(())
    }

    fn blocks(&self, m: &Signed<Blocks>) -> Result<(), Reject> {
        self.signed(m)?;
        let blocks = &m.body.0;
        if blocks.len() > BLOCKS_PER_REPLY_MAX {
            return Err(Reject::BadBlock);
        }
        for (i, block) in blocks.iter().enumerate() {
            if i > 0 && block.header.height != blocks[i - 1].header.height + 1 {
                return Err(Reject::BadBlock);
            }
            self.admissible(&block.txs).map_err(|_| Reject::BadBlock)?;
        }
        // Every certificate's votes in one batch.
        quire_chain::block::verify_certified_all(blocks, &self.chain_id, &self.validators)
            .map_err(|_| Reject::BadBlock)
    }
}

/// Signatures found while a message's structure is checked, checked together at the end; each
/// with the refusal its failure means.
#[derive(Default)]
struct Signatures {
    items: Vec<(Vec<u8>, Signature, PublicKey)>,
    refusals: Vec<Reject>,
}

impl Signatures {
    fn add(&mut self, signed: Vec<u8>, signature: Signature, key: PublicKey, refusal: Reject) {
        self.items.push((signed, signature, key));
        self.refusals.push(refusal);
    }

    /// The refusal of the first signature that does not hold, if any.
    fn check(self) -> Result<(), Reject> {
        let items: Vec<quire_chain::sig::Item<'_>> = self
            .items
            .iter()
            .map(|(signed, signature, key)| (signed.as_slice(), signature, Some(*key)))
            .collect();
        let verdicts = quire_chain::sig::verify_many(&items);
        match self.refusals.iter().zip(verdicts).find(|(_, ok)| !ok) {
            Some((refusal, _)) => Err(*refusal),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use quire_chain::Batch;
    use quire_chain::store::{MemoryStore, Store};
    use quire_chain::testkit::TestNet;

    use super::*;

    #[derive(Default)]
    struct Remembering(RefCell<HashSet<SignedId>>);

    impl VerdictCache for Remembering {
        fn known_good(&self, id: &SignedId) -> bool {
            self.0.borrow().contains(id)
        }
        fn remember_good(&self, ids: &[SignedId]) {
            self.0.borrow_mut().extend(ids.iter().copied());
        }
    }

    /// A reply of eight certified blocks of eight transfers, signed by replica 2; the fourth
    /// transfer of the seventh block carries a signature over another amount.
    fn reply_with_a_forgery(net: &TestNet) -> Signed<Blocks> {
        let store = MemoryStore::new(&net.genesis);
        let mut ledger = store.ledger(net.chain_id()).unwrap();
        let mut head = store.head();
        let mut blocks = Vec::new();
        for b in 0..8u64 {
            let mut txs: Vec<Transaction> =
                (0..8).map(|i| net.transfer(0, 1, 1, b * 8 + i)).collect();
            if b == 6
                && let Transaction::Transfer(t) = &mut txs[3]
            {
                t.transfer.amount += 1;
            }
            let batch = Batch {
                view: 0,
                proposer: 0,
                timestamp_ms: b,
                txs,
            };
            let executed = net.certified_block(&mut ledger, &head, &batch);
            head = executed.record.block.header;
            blocks.push(executed.record.block);
        }
        Signed::sign(Blocks(blocks), 2, &net.validator_keys[2], &net.chain_id())
    }

    /// A reply's transactions are checked together, and the verdicts are the ones checking
    /// block by block gives: every transfer good but the forged one.
    #[test]
    fn a_reply_checked_at_once_gives_the_verdicts_of_block_by_block() {
        let net = TestNet::new(4, 4);
        let reply = reply_with_a_forgery(&net);
        let mut alone = Vec::new();
        let cache = Remembering::default();
        for block in &reply.body.0 {
            let verdicts = check_transactions(&net.chain_id(), &block.txs, &cache);
            alone.extend(good_of(&block.txs, &verdicts));
        }
        assert_eq!(alone.len(), 63);
        let forged = reply.body.0[6].txs[3].signed_id();
        assert!(forged.is_some_and(|f| !alone.contains(&f)));
        let verified = Verifier::new(&net.genesis)
            .verify_with(Message::Blocks(reply), Some(2), &Remembering::default())
            .expect("the certificates hold");
        assert_eq!(verified.into_parts().1, alone);
    }
}
