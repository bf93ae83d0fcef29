//! Transactions: signed transfers, and raw payloads that are ordered but never executed.

use std::fmt;

use thiserror::Error;

use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};
use crate::keys::{Address, Keypair, Signature, sign_tags, signing_bytes};

/// Largest raw payload (bytes). Transfers are fixed-size.
pub const RAW_PAYLOAD_MAX: usize = 64 * 1024;
/// A transfer's encoding: kind, fields, signature.
pub const TRANSFER_ENCODED_LEN: usize = 1 + 80 + 64;

/// `{from, to, amount, nonce}`: move `amount` from `from` to `to`; `nonce` is `from`'s count of
/// transfers so far, so each transfer can be executed once only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transfer {
    pub from: Address,
    pub to: Address,
    pub amount: u64,
    pub nonce: u64,
}

impl Transfer {
    /// The canonical fields covered by the signature and the transaction id.
    pub fn fields(&self) -> [u8; 80] {
        let mut out = [0u8; 80];
        out[..32].copy_from_slice(&self.from.0);
        out[32..64].copy_from_slice(&self.to.0);
        out[64..72].copy_from_slice(&self.amount.to_be_bytes());
        out[72..].copy_from_slice(&self.nonce.to_be_bytes());
        out
    }

    pub fn sign(self, key: &Keypair, chain_id: &Hash) -> Transaction {
        let signature = key.sign(sign_tags::TRANSFER, chain_id, &self.fields());
        Transaction::Transfer(SignedTransfer::new(self, signature))
    }

    /// `H("quire/v1/tx-id", 0 || fields)`: see [`Transaction::id`].
    fn id(&self) -> TxId {
        TxId(Hash::tagged(tags::TX_ID, &[&[0], &self.fields()]))
    }
}

#[derive(Clone, Copy)]
pub struct SignedTransfer {
    pub transfer: Transfer,
    pub signature: Signature,
    /// The id, hashed once when the transfer was made or decoded: a replica asks for a
    /// transfer's id at admission, in the mempool, in signature verdicts, at execution and in
    /// the index, and hashing it each time was ~3% of the machine under load. The fields are
    /// public and the type is `Copy`, so a copy may be changed afterwards (a Byzantine rewrite
    /// does): the memo counts only while `transfer` still equals what was hashed, and comparing
    /// 80 bytes costs a small fraction of hashing them.
    memo: IdMemo,
}

#[derive(Clone, Copy)]
struct IdMemo {
    hashed: Transfer,
    id: TxId,
}

impl PartialEq for SignedTransfer {
    fn eq(&self, other: &SignedTransfer) -> bool {
        self.transfer == other.transfer && self.signature == other.signature
    }
}

impl Eq for SignedTransfer {}

impl fmt::Debug for SignedTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedTransfer")
            .field("transfer", &self.transfer)
            .field("signature", &self.signature)
            .finish()
    }
}

impl SignedTransfer {
    pub fn new(transfer: Transfer, signature: Signature) -> SignedTransfer {
        SignedTransfer {
            transfer,
            signature,
            memo: IdMemo {
                hashed: transfer,
                id: transfer.id(),
            },
        }
    }

    /// The transaction id (see [`Transaction::id`]).
    pub fn id(&self) -> TxId {
        if self.memo.hashed == self.transfer {
            self.memo.id
        } else {
            self.transfer.id()
        }
    }

    /// The bytes the signature must cover on chain `chain_id`.
    pub fn signing_bytes(&self, chain_id: &Hash) -> Vec<u8> {
        signing_bytes(sign_tags::TRANSFER, chain_id, &self.transfer.fields())
    }
}

// A transfer carries its remembered id (`SignedTransfer::memo`), 256 bytes in all; boxing it
// would cost an allocation for every transfer decoded, and a raw payload's extra bytes are
// small next to the payload it shares.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Transaction {
    Transfer(SignedTransfer),
    /// Opaque bytes that consensus orders and commits but the ledger does not execute: the
    /// workload other BFT systems benchmark with.
    Raw(RawPayload),
}

/// A raw payload: its bytes, shared (a clone of the transaction — into a batch, a block, a
/// message — copies no payload), and its id, hashed once when the payload is made or decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPayload {
    // `Arc<Vec>`, not `Arc<[u8]>`: the decoded Vec moves in without a copy.
    bytes: std::sync::Arc<Vec<u8>>,
    id: TxId,
}

impl RawPayload {
    pub fn new(bytes: Vec<u8>) -> RawPayload {
        let id = TxId(Hash::tagged(
            tags::TX_ID,
            &[&[1], &(bytes.len() as u32).to_be_bytes(), &bytes],
        ));
        RawPayload {
            bytes: std::sync::Arc::new(bytes),
            id,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for RawPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raw({} bytes, {:?})", self.bytes.len(), self.id)
    }
}

impl Transaction {
    /// The transaction id: `H("quire/v1/tx-id", kind || fields)`. The signature is not part of it
    /// (strict ed25519 signatures are not malleable, and a transfer is the same transfer whoever
    /// re-signs it).
    pub fn id(&self) -> TxId {
        match self {
            Transaction::Transfer(t) => t.id(),
            // Hashed once, when the payload was made (a payload can be 64 KiB).
            Transaction::Raw(payload) => payload.id,
        }
    }

    /// A raw payload transaction.
    pub fn raw(bytes: Vec<u8>) -> Transaction {
        Transaction::Raw(RawPayload::new(bytes))
    }

    /// The key of this transfer's signature verdict (raw payloads carry no signature).
    pub fn signed_id(&self) -> Option<SignedId> {
        self.as_transfer().map(|t| SignedId {
            id: self.id(),
            signature: t.signature,
        })
    }

    pub fn as_transfer(&self) -> Option<&SignedTransfer> {
        match self {
            Transaction::Transfer(t) => Some(t),
            Transaction::Raw(_) => None,
        }
    }

    /// Strict signature check (raw payloads carry none and pass). For admission at a replica's
    /// boundary; block execution uses the canonical batch verdicts of
    /// [`Ledger::verify_signatures`](crate::Ledger::verify_signatures).
    pub fn verify_signature(&self, chain_id: &Hash) -> bool {
        match self {
            Transaction::Raw(_) => true,
            Transaction::Transfer(t) => t.transfer.from.public_key().is_ok_and(|k| {
                k.verify_raw(&t.signing_bytes(chain_id), &t.signature)
                    .is_ok()
            }),
        }
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Transaction::Transfer(_) => TRANSFER_ENCODED_LEN,
            Transaction::Raw(payload) => 1 + 4 + payload.len(),
        }
    }
}

impl Encode for Transaction {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Transaction::Transfer(t) => {
                out.push(0);
                out.extend_from_slice(&t.transfer.fields());
                t.signature.encode(out);
            }
            Transaction::Raw(payload) => {
                out.push(1);
                codec::put_bytes(out, payload.bytes());
            }
        }
    }
}

impl Decode for Transaction {
    const MIN_LEN: usize = 5;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => {
                let transfer = Transfer {
                    from: Address::decode(r)?,
                    to: Address::decode(r)?,
                    amount: r.u64()?,
                    nonce: r.u64()?,
                };
                let signature = Signature::decode(r)?;
                Ok(Transaction::Transfer(SignedTransfer::new(
                    transfer, signature,
                )))
            }
            1 => Ok(Transaction::raw(r.bytes("raw payload", RAW_PAYLOAD_MAX)?)),
            tag => Err(DecodeError::BadTag {
                what: "transaction",
                tag,
            }),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub Hash);

/// What a signature verdict is about: a transfer's id *and* its signature. The id does not cover
/// the signature, so a copy of a transfer with a forged signature has the same id; a verdict
/// remembered by id alone would let that copy pass wherever the genuine one had been seen, and
/// replicas that had seen it would apply a transfer the others reject.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct SignedId {
    pub id: TxId,
    pub signature: Signature,
}

/// Hashes 16 of the 96 bytes: the id's first eight and the signature's first eight (of `R`).
/// Every replica looks each transfer up in its verdict caches several times, and hashing all 96
/// bytes with the process's SipHash was most of the caches' cost (≈ 5% of the box at 13k
/// transfers/s). Equality still compares all 96 bytes; the hash only picks the bucket.
///
/// Why an attacker cannot pile keys into one bucket (HashDoS): the caches hold only signatures
/// found good, and the hasher's keys are random per process, so only keys with the *same* 16
/// bytes share a bucket for sure. Those are either one transfer with several valid signatures
/// whose `R` agree in eight bytes (for a fixed message and key, `S` follows from `R`, and each
/// extra `R` with a given prefix costs ≈ 2^64 signing attempts), or transfers whose SHA-256 ids
/// agree in eight bytes (≈ 2^64 attempts per extra member of a group; a birthday search gives
/// pairs, not piles).
impl std::hash::Hash for SignedId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let id = &self.id.0.0;
        let sig = &self.signature.0;
        let prefix = |b: &[u8]| {
            let mut p = [0u8; 8];
            p.copy_from_slice(&b[..8]);
            u64::from_le_bytes(p)
        };
        state.write_u64(prefix(id));
        state.write_u64(prefix(sig));
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx:{}", self.0.short())
    }
}

impl Encode for TxId {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out)
    }
}

impl Decode for TxId {
    const MIN_LEN: usize = 32;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxId(Hash::decode(r)?))
    }
}

/// Why a transaction was not applied. Recorded in the block's receipts, so every replica records
/// the same reason.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum Rejection {
    #[error("signature does not verify")]
    BadSignature,
    #[error("nonce {got} is not the account's next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("balance {balance} does not cover {amount}")]
    InsufficientBalance { balance: u64, amount: u64 },
    #[error("recipient balance would overflow")]
    Overflow,
    #[error("amount must be positive")]
    ZeroAmount,
}

impl Rejection {
    pub fn code(&self) -> u8 {
        match self {
            Rejection::BadSignature => 1,
            Rejection::BadNonce { .. } => 2,
            Rejection::InsufficientBalance { .. } => 3,
            Rejection::Overflow => 4,
            Rejection::ZeroAmount => 5,
        }
    }

    /// A short name for metrics and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::BadSignature => "bad_signature",
            Rejection::BadNonce { .. } => "bad_nonce",
            Rejection::InsufficientBalance { .. } => "insufficient_balance",
            Rejection::Overflow => "overflow",
            Rejection::ZeroAmount => "zero_amount",
        }
    }
}

/// What executing one transaction did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Applied,
    Rejected(Rejection),
    /// A raw payload: ordered and committed, not executed.
    Ordered,
}

impl Encode for Outcome {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Outcome::Applied => out.push(0),
            Outcome::Ordered => out.push(1),
            Outcome::Rejected(r) => {
                out.push(2);
                out.push(r.code());
                let (a, b) = match *r {
                    Rejection::BadNonce { expected, got } => (expected, got),
                    Rejection::InsufficientBalance { balance, amount } => (balance, amount),
                    _ => (0, 0),
                };
                codec::put_u64(out, a);
                codec::put_u64(out, b);
            }
        }
    }
}

impl Decode for Outcome {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Outcome::Applied),
            1 => Ok(Outcome::Ordered),
            2 => {
                let code = r.u8()?;
                let (a, b) = (r.u64()?, r.u64()?);
                // Reasons without numbers carry zeros; anything else is not canonical.
                if matches!(code, 1 | 4 | 5) && (a, b) != (0, 0) {
                    return Err(DecodeError::Invalid {
                        what: "rejection",
                        reason: "unused fields must be zero",
                    });
                }
                let rejection = match code {
                    1 => Rejection::BadSignature,
                    2 => Rejection::BadNonce {
                        expected: a,
                        got: b,
                    },
                    3 => Rejection::InsufficientBalance {
                        balance: a,
                        amount: b,
                    },
                    4 => Rejection::Overflow,
                    5 => Rejection::ZeroAmount,
                    tag => {
                        return Err(DecodeError::BadTag {
                            what: "rejection",
                            tag,
                        });
                    }
                };
                Ok(Outcome::Rejected(rejection))
            }
            tag => Err(DecodeError::BadTag {
                what: "outcome",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash reads a prefix of each half; equality reads every byte. So a key that differs
    /// from a remembered one only past the prefixes (a forged copy with a different `S`) lands
    /// in the same bucket and is still a different key.
    #[test]
    fn signed_ids_differing_past_the_hashed_prefix_stay_distinct() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let genuine = SignedId {
            id: TxId(Hash([1; 32])),
            signature: Signature([2; 64]),
        };
        let mut other_s = genuine;
        other_s.signature.0[40] ^= 1;
        let mut other_id = genuine;
        other_id.id.0.0[31] ^= 1;
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(state.hash_one(genuine), state.hash_one(other_s));
        let known: HashSet<SignedId> = [genuine].into_iter().collect();
        assert!(known.contains(&genuine));
        assert!(!known.contains(&other_s));
        assert!(!known.contains(&other_id));
        let mut other_r = genuine;
        other_r.signature.0[3] ^= 1;
        assert_ne!(state.hash_one(genuine), state.hash_one(other_r));
    }

    /// The id a transfer remembers is the one its fields hash to, however the transfer came to
    /// be — made, decoded, or copied and changed afterwards (as a Byzantine rewrite does): a
    /// stale memo would give a forged copy the genuine transfer's id.
    #[test]
    fn a_remembered_id_is_the_hash_of_the_fields_as_they_are() {
        let k = Keypair::generate();
        let chain = Hash([7; 32]);
        let transfer = Transfer {
            from: k.address(),
            to: Keypair::generate().address(),
            amount: 5,
            nonce: 3,
        };
        let by_definition = |t: &Transfer| TxId(Hash::tagged(tags::TX_ID, &[&[0], &t.fields()]));
        let tx = transfer.sign(&k, &chain);
        assert_eq!(tx.id(), by_definition(&transfer));
        let decoded = Transaction::from_bytes(&tx.to_bytes()).unwrap();
        assert_eq!(decoded.id(), by_definition(&transfer));
        let Some(&genuine) = tx.as_transfer() else {
            panic!("a transfer");
        };
        let mut forged = genuine;
        forged.transfer.amount += 1;
        assert_eq!(
            Transaction::Transfer(forged).id(),
            by_definition(&forged.transfer)
        );
        assert_ne!(Transaction::Transfer(forged).id(), tx.id());
        // Changed back, it is the same transfer again, with the same id; equality ignores the
        // memo.
        forged.transfer.amount -= 1;
        assert_eq!(Transaction::Transfer(forged).id(), tx.id());
        assert_eq!(forged, genuine);
        // The signature is not part of the id.
        let mut resigned = genuine;
        resigned.signature.0[0] ^= 1;
        assert_eq!(Transaction::Transfer(resigned).id(), tx.id());
        assert_ne!(resigned, genuine);
    }

    #[test]
    fn transactions_round_trip_and_garbage_is_refused() {
        let k = Keypair::generate();
        let chain = Hash([7; 32]);
        let tx = Transfer {
            from: k.address(),
            to: Keypair::generate().address(),
            amount: 5,
            nonce: 0,
        }
        .sign(&k, &chain);
        let bytes = tx.to_bytes();
        assert_eq!(bytes.len(), tx.encoded_len());
        assert_eq!(Transaction::from_bytes(&bytes).unwrap(), tx);
        for cut in 0..bytes.len() {
            assert!(Transaction::from_bytes(&bytes[..cut]).is_err());
        }
        let raw = Transaction::raw(vec![1, 2, 3]);
        assert_eq!(Transaction::from_bytes(&raw.to_bytes()).unwrap(), raw);
        assert!(Transaction::from_bytes(&[9]).is_err());
        // An oversized raw payload is refused from its length alone.
        let mut big = vec![1];
        codec::put_u32(&mut big, (RAW_PAYLOAD_MAX + 1) as u32);
        assert!(matches!(
            Transaction::from_bytes(&big),
            Err(DecodeError::TooLong { .. })
        ));
    }

    /// A raw payload's id is hashed once, when it is made or decoded; it is the id of its
    /// encoding (docs/chain-format.md §6.3) however the payload reached us, and clones share the
    /// bytes.
    #[test]
    fn a_payload_hashed_once_has_the_id_of_its_bytes() {
        let bytes = vec![0xab; 700];
        let made = Transaction::raw(bytes.clone());
        let expected = TxId(Hash::tagged(
            tags::TX_ID,
            &[&[1], &700u32.to_be_bytes(), &bytes],
        ));
        assert_eq!(made.id(), expected);
        let decoded = Transaction::from_bytes(&made.to_bytes()).unwrap();
        assert_eq!(decoded.id(), expected);
        assert_eq!(decoded, made);
        let (Transaction::Raw(a), Transaction::Raw(b)) = (&made, &made.clone()) else {
            unreachable!()
        };
        assert!(std::ptr::eq(a.bytes().as_ptr(), b.bytes().as_ptr()));
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [
            Outcome::Applied,
            Outcome::Ordered,
            Outcome::Rejected(Rejection::BadNonce {
                expected: 3,
                got: 1,
            }),
            Outcome::Rejected(Rejection::InsufficientBalance {
                balance: 1,
                amount: 9,
            }),
            Outcome::Rejected(Rejection::BadSignature),
        ] {
            assert_eq!(Outcome::from_bytes(&o.to_bytes()).unwrap(), o);
        }
    }
}
