//! The client RPC protocol: requests and responses, in the canonical encoding, one frame each on
//! a bidirectional QUIC stream (a client may pipeline many requests on one stream; responses come
//! back in order).
//!
//! Replicas are not trusted: every answer that asserts a fact carries what the client needs to
//! check it — certificates, merkle proofs, and [`Attestation`]s signed by the answering replica.
//! A client accepts a header once f+1 distinct validators attest it (at least one is honest); a
//! balance by an account proof against that header's state root, and a transaction's outcome by
//! a merkle proof against its `outcomes_root`. docs/client-rpc.md gives every byte.

use quire_chain::block::{BATCH_TXS_MAX, Block, Header};
use quire_chain::cert::{CheckpointCertificate, CommitCertificate};
use quire_chain::codec::{self, Decode, DecodeError, Encode, Reader};
use quire_chain::keys::{Keypair, Signature, sign_tags};
use quire_chain::merkle::MerkleProof;
use quire_chain::smt::SmtProof;
use quire_chain::tx::{Outcome, Transaction, TxId};
use quire_chain::{Account, Address, Hash, ReplicaId, ValidatorSet};

/// Most transactions in one Submit request.
pub const SUBMIT_MAX: usize = 8192;
/// Most headers in one Headers reply.
pub const HEADERS_MAX: u64 = 512;

/// What a replica signs for a client: "my block at `height` is `block_hash`"
/// (docs/chain-format.md §13.2). Its encoding, `u64(height) ‖ block_hash`, is the signed fields.
///
/// A header vouches for everything in it — the state root (balances), and through
/// `outcomes_root` what each transaction did — so this one statement covers every fact a client
/// is told about a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement {
    pub height: u64,
    pub block_hash: Hash,
}

impl Statement {
    /// The statement about `header`.
    pub fn of(header: &Header) -> Statement {
        Statement {
            height: header.height,
            block_hash: header.hash(),
        }
    }
}

impl Encode for Statement {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.height);
        self.block_hash.encode(out);
    }
}

impl Decode for Statement {
    const MIN_LEN: usize = 40;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Statement {
            height: r.u64()?,
            block_hash: Hash::decode(r)?,
        })
    }
}

/// A statement signed by one replica (tag `quire/v1/sign/attestation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    pub replica: ReplicaId,
    pub statement: Statement,
    pub signature: Signature,
}

impl Attestation {
    pub fn sign(statement: Statement, replica: ReplicaId, key: &Keypair, chain_id: &Hash) -> Self {
        let signature = key.sign(sign_tags::ATTESTATION, chain_id, &statement.to_bytes());
        Attestation {
            replica,
            statement,
            signature,
        }
    }

    /// Checks the signature against the validator set.
    pub fn verify(&self, chain_id: &Hash, validators: &ValidatorSet) -> bool {
        validators.key(self.replica).is_some_and(|k| {
            k.verify(
                sign_tags::ATTESTATION,
                chain_id,
                &self.statement.to_bytes(),
                &self.signature,
            )
            .is_ok()
        })
    }
}

impl Encode for Attestation {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u32(out, self.replica);
        self.statement.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for Attestation {
    const MIN_LEN: usize = 4 + Statement::MIN_LEN + 64;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Attestation {
            replica: r.u32()?,
            statement: Statement::decode(r)?,
            signature: Signature::decode(r)?,
        })
    }
}

/// Which block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRef {
    Latest,
    Height(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Submit signed transactions; answered at once with their ids (or why each was refused).
    Submit(Vec<Transaction>),
    TxStatus(TxId),
    /// An account's state with a proof against the head's state root.
    Account(Address),
    Block(BlockRef),
    /// Headers and commit certificates `from..from+count` (light-client sync).
    Headers {
        from: u64,
        count: u64,
    },
    /// Sign a Block statement for this height, if the replica has it.
    Attest(u64),
    /// The latest stable checkpoint and its certificate.
    Checkpoint,
    Status,
    /// The block at `height`, waiting up to `wait_ms` (at most [`WAIT_MS_MAX`]) for it to be
    /// committed: answered `Block` as soon as it is, or with no block at the deadline. Lets a
    /// follower see each commit when it happens instead of polling.
    WaitBlock {
        height: u64,
        wait_ms: u32,
    },
    /// As [`Request::WaitBlock`], answered with the block's header and its transactions' ids
    /// only ([`Response::BlockIds`]): for a follower that needs to know what committed, not
    /// the payloads (the ids are checked against `header.tx_root`).
    WaitBlockIds {
        height: u64,
        wait_ms: u32,
    },
    /// Whether the batch for `height` is prepared here on top of the executed head (PBFT's
    /// tentative execution point) or committed, waiting up to `wait_ms` (at most
    /// [`WAIT_MS_MAX`]) for either: answered [`Response::Prepared`] as soon as it is. 2f+1
    /// replicas answering the same (height, view, digest, parent) prove the batch commits at
    /// that height, one phase before any of them has committed it.
    WaitPrepared {
        height: u64,
        wait_ms: u32,
    },
}

/// A replica's word that the batch for `height` is decided as far as it can tell: it holds a
/// durable prepared certificate for it in `view` on top of its executed block `parent`, or it
/// committed it (then `view` and `digest` are those of the block's commit certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub height: u64,
    pub view: u64,
    pub digest: Hash,
    pub parent: Hash,
    pub committed: bool,
    /// The ids of the batch's transactions, in order.
    pub ids: Vec<TxId>,
}

impl Prepared {
    /// What 2f+1 replicas must agree on for the batch to be decided.
    pub fn key(&self) -> (u64, u64, Hash, Hash) {
        (self.height, self.view, self.digest, self.parent)
    }
}

/// The longest a [`Request::WaitBlock`] is held.
pub const WAIT_MS_MAX: u32 = 5_000;

/// Why the node refused one submitted transaction. `MempoolFull` and `Busy` are about this
/// replica now: retry later or at another replica. The others are about the transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadSignature,
    StaleNonce {
        expected: u64,
    },
    MempoolFull,
    Invalid(String),
    /// The sender already has `pending` transfers waiting here (or the nonce is too far ahead):
    /// wait for some to commit.
    SenderLimit {
        pending: u32,
    },
    /// The sender's waiting transfers would spend more than its `balance`.
    Unfunded {
        balance: u64,
    },
    /// The replica is overloaded (its consensus thread's queue is full): retry elsewhere.
    Busy,
}

impl Refusal {
    /// Whether another replica, or the same one later, may take the transaction.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Refusal::MempoolFull | Refusal::Busy | Refusal::SenderLimit { .. }
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadSignature => write!(f, "signature does not verify"),
            Refusal::StaleNonce { expected } => {
                write!(
                    f,
                    "nonce already used (the account's next nonce is {expected})"
                )
            }
            Refusal::MempoolFull => write!(f, "the replica's mempool is full; retry later"),
            Refusal::Invalid(why) => write!(f, "{why}"),
            Refusal::SenderLimit { pending } => write!(
                f,
                "the sender already has {pending} transfers waiting here; retry when some commit"
            ),
            Refusal::Unfunded { balance } => write!(
                f,
                "the sender's waiting transfers would spend more than its balance of {balance}"
            ),
            Refusal::Busy => write!(f, "the replica is overloaded; retry another replica"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a reply decoded once; boxing buys nothing
pub enum TxStatus {
    /// The replica has not seen it.
    Unknown,
    /// Received, not yet committed.
    Pending,
    /// In a committed block: the block (header, transactions, certificate), the merkle proof of
    /// the transaction against `tx_root`, its outcome with the merkle proof of its outcome leaf
    /// against `outcomes_root`, and the replica's attestation of the block's header.
    Committed {
        block: Block,
        proof: MerkleProof,
        outcome: Outcome,
        outcome_proof: MerkleProof,
        attestation: Attestation,
    },
}

/// One replica's view of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub replica: ReplicaId,
    pub view: u64,
    pub changing_view: bool,
    pub height: u64,
    pub head_hash: Hash,
    pub stable_checkpoint: u64,
    pub peers_connected: u32,
    pub behaviour: String,
    pub mempool: u64,
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Submitted(Vec<Result<TxId, Refusal>>),
    TxStatus(TxStatus),
    Account {
        header: Header,
        attestation: Attestation,
        account: Account,
        proof: SmtProof,
    },
    /// The block, the outcome of each of its transactions (they must match `outcomes_root`),
    /// and the replica's attestation of its header; `None`s when it has no such block.
    Block {
        block: Option<Block>,
        outcomes: Vec<Outcome>,
        attestation: Option<Attestation>,
    },
    Headers(Vec<(Header, Option<CommitCertificate>)>),
    Attestation(Option<Attestation>),
    Checkpoint {
        seq: u64,
        block_hash: Hash,
        certificate: Option<CheckpointCertificate>,
    },
    Status(NodeStatus),
    /// The request could not be served (bad request, storage trouble).
    Error(String),
    /// A block's header, the ids of its transactions in order (their merkle root is the
    /// header's `tx_root`), and the replica's attestation of the header; `None`s and no ids when
    /// it has no such block.
    BlockIds {
        header: Option<Header>,
        ids: Vec<TxId>,
        attestation: Option<Attestation>,
    },
    /// The answer to [`Request::WaitPrepared`]: `None` when the batch is neither prepared nor
    /// committed here yet.
    Prepared(Option<Prepared>),
}

// ---- encoding ------------------------------------------------------------------------------

impl Encode for Prepared {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.height);
        codec::put_u64(out, self.view);
        self.digest.encode(out);
        self.parent.encode(out);
        codec::put_bool(out, self.committed);
        codec::put_seq(out, &self.ids);
    }
}

impl Decode for Prepared {
    const MIN_LEN: usize = 8 + 8 + 32 + 32 + 1 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Prepared {
            height: r.u64()?,
            view: r.u64()?,
            digest: Hash::decode(r)?,
            parent: Hash::decode(r)?,
            committed: r.bool()?,
            ids: r.seq("transaction ids", BATCH_TXS_MAX)?,
        })
    }
}

impl Encode for BlockRef {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BlockRef::Latest => out.push(0),
            BlockRef::Height(h) => {
                out.push(1);
                codec::put_u64(out, *h);
            }
        }
    }
}

impl Decode for BlockRef {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(BlockRef::Latest),
            1 => Ok(BlockRef::Height(r.u64()?)),
            tag => Err(DecodeError::BadTag {
                what: "block ref",
                tag,
            }),
        }
    }
}

impl Encode for Request {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Submit(txs) => {
                out.push(0);
                codec::put_seq(out, txs);
            }
            Request::TxStatus(id) => {
                out.push(1);
                id.encode(out);
            }
            Request::Account(a) => {
                out.push(2);
                a.encode(out);
            }
            Request::Block(b) => {
                out.push(3);
                b.encode(out);
            }
            Request::Headers { from, count } => {
                out.push(4);
                codec::put_u64(out, *from);
                codec::put_u64(out, *count);
            }
            Request::Attest(h) => {
                out.push(5);
                codec::put_u64(out, *h);
            }
            Request::Checkpoint => out.push(6),
            Request::Status => out.push(7),
            Request::WaitBlock { height, wait_ms } => {
                out.push(8);
                codec::put_u64(out, *height);
                codec::put_u32(out, *wait_ms);
            }
            Request::WaitBlockIds { height, wait_ms } => {
                out.push(9);
                codec::put_u64(out, *height);
                codec::put_u32(out, *wait_ms);
            }
            Request::WaitPrepared { height, wait_ms } => {
                out.push(10);
                codec::put_u64(out, *height);
                codec::put_u32(out, *wait_ms);
            }
        }
    }
}

impl Decode for Request {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Request::Submit(r.seq("transactions", SUBMIT_MAX)?),
            1 => Request::TxStatus(TxId::decode(r)?),
            2 => Request::Account(Address::decode(r)?),
            3 => Request::Block(BlockRef::decode(r)?),
            4 => Request::Headers {
                from: r.u64()?,
                count: r.u64()?,
            },
            5 => Request::Attest(r.u64()?),
            6 => Request::Checkpoint,
            7 => Request::Status,
            8 => Request::WaitBlock {
                height: r.u64()?,
                wait_ms: r.u32()?,
            },
            9 => Request::WaitBlockIds {
                height: r.u64()?,
                wait_ms: r.u32()?,
            },
            10 => Request::WaitPrepared {
                height: r.u64()?,
                wait_ms: r.u32()?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "request",
                    tag,
                });
            }
        })
    }
}

impl Encode for Refusal {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Refusal::BadSignature => out.push(0),
            Refusal::StaleNonce { expected } => {
                out.push(1);
                codec::put_u64(out, *expected);
            }
            Refusal::MempoolFull => out.push(2),
            Refusal::Invalid(why) => {
                out.push(3);
                codec::put_bytes(out, why.as_bytes());
            }
            Refusal::SenderLimit { pending } => {
                out.push(4);
                codec::put_u32(out, *pending);
            }
            Refusal::Unfunded { balance } => {
                out.push(5);
                codec::put_u64(out, *balance);
            }
            Refusal::Busy => out.push(6),
        }
    }
}

impl Decode for Refusal {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Refusal::BadSignature,
            1 => Refusal::StaleNonce { expected: r.u64()? },
            2 => Refusal::MempoolFull,
            3 => Refusal::Invalid(r.string("refusal", 1024)?),
            4 => Refusal::SenderLimit { pending: r.u32()? },
            5 => Refusal::Unfunded { balance: r.u64()? },
            6 => Refusal::Busy,
            tag => {
                return Err(DecodeError::BadTag {
                    what: "refusal",
                    tag,
                });
            }
        })
    }
}

/// `Result<TxId, Refusal>` as one tagged item.
struct SubmitResult(Result<TxId, Refusal>);

impl Encode for SubmitResult {
    fn encode(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Ok(id) => {
                out.push(0);
                id.encode(out);
            }
            Err(r) => {
                out.push(1);
                r.encode(out);
            }
        }
    }
}

impl Decode for SubmitResult {
    const MIN_LEN: usize = 2;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SubmitResult(match r.u8()? {
            0 => Ok(TxId::decode(r)?),
            1 => Err(Refusal::decode(r)?),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "submit result",
                    tag,
                });
            }
        }))
    }
}

/// A header with its optional certificate, as one item.
struct HeaderItem(Header, Option<CommitCertificate>);

impl Encode for HeaderItem {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        codec::put_option(out, &self.1);
    }
}

impl Decode for HeaderItem {
    const MIN_LEN: usize = Header::MIN_LEN + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HeaderItem(Header::decode(r)?, r.option()?))
    }
}

impl Encode for NodeStatus {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u32(out, self.replica);
        codec::put_u64(out, self.view);
        codec::put_bool(out, self.changing_view);
        codec::put_u64(out, self.height);
        self.head_hash.encode(out);
        codec::put_u64(out, self.stable_checkpoint);
        codec::put_u32(out, self.peers_connected);
        codec::put_bytes(out, self.behaviour.as_bytes());
        codec::put_u64(out, self.mempool);
        codec::put_u32(out, self.pid);
    }
}

impl Decode for NodeStatus {
    const MIN_LEN: usize = 4 + 8 + 1 + 8 + 32 + 8 + 4 + 4 + 8 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NodeStatus {
            replica: r.u32()?,
            view: r.u64()?,
            changing_view: r.bool()?,
            height: r.u64()?,
            head_hash: Hash::decode(r)?,
            stable_checkpoint: r.u64()?,
            peers_connected: r.u32()?,
            behaviour: r.string("behaviour", 64)?,
            mempool: r.u64()?,
            pid: r.u32()?,
        })
    }
}

impl Encode for TxStatus {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TxStatus::Unknown => out.push(0),
            TxStatus::Pending => out.push(1),
            TxStatus::Committed {
                block,
                proof,
                outcome,
                outcome_proof,
                attestation,
            } => {
                out.push(2);
                block.encode(out);
                proof.encode(out);
                outcome.encode(out);
                outcome_proof.encode(out);
                attestation.encode(out);
            }
        }
    }
}

impl Decode for TxStatus {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => TxStatus::Unknown,
            1 => TxStatus::Pending,
            2 => TxStatus::Committed {
                block: Block::decode(r)?,
                proof: MerkleProof::decode(r)?,
                outcome: Outcome::decode(r)?,
                outcome_proof: MerkleProof::decode(r)?,
                attestation: Attestation::decode(r)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "tx status",
                    tag,
                });
            }
        })
    }
}

impl Encode for Response {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Submitted(results) => {
                out.push(0);
                let items: Vec<SubmitResult> = results.iter().cloned().map(SubmitResult).collect();
                codec::put_seq(out, &items);
            }
            Response::TxStatus(s) => {
                out.push(1);
                s.encode(out);
            }
            Response::Account {
                header,
                attestation,
                account,
                proof,
            } => {
                out.push(2);
                header.encode(out);
                attestation.encode(out);
                account.encode(out);
                proof.encode(out);
            }
            Response::Block {
                block,
                outcomes,
                attestation,
            } => {
                out.push(3);
                codec::put_option(out, block);
                codec::put_seq(out, outcomes);
                codec::put_option(out, attestation);
            }
            Response::Headers(items) => {
                out.push(4);
                let items: Vec<HeaderItem> = items
                    .iter()
                    .map(|(h, c)| HeaderItem(*h, c.clone()))
                    .collect();
                codec::put_seq(out, &items);
            }
            Response::Attestation(a) => {
                out.push(5);
                codec::put_option(out, a);
            }
            Response::Checkpoint {
                seq,
                block_hash,
                certificate,
            } => {
                out.push(6);
                codec::put_u64(out, *seq);
                block_hash.encode(out);
                codec::put_option(out, certificate);
            }
            Response::Status(s) => {
                out.push(7);
                s.encode(out);
            }
            Response::Error(e) => {
                out.push(8);
                codec::put_bytes(out, e.as_bytes());
            }
            Response::BlockIds {
                header,
                ids,
                attestation,
            } => {
                out.push(9);
                codec::put_option(out, header);
                codec::put_seq(out, ids);
                codec::put_option(out, attestation);
            }
            Response::Prepared(p) => {
                out.push(10);
                codec::put_option(out, p);
            }
        }
    }
}

impl Decode for Response {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Response::Submitted(
                r.seq::<SubmitResult>("submit results", SUBMIT_MAX)?
                    .into_iter()
                    .map(|s| s.0)
                    .collect(),
            ),
            1 => Response::TxStatus(TxStatus::decode(r)?),
            2 => Response::Account {
                header: Header::decode(r)?,
                attestation: Attestation::decode(r)?,
                account: Account::decode(r)?,
                proof: SmtProof::decode(r)?,
            },
            3 => Response::Block {
                block: r.option()?,
                outcomes: r.seq("outcomes", BATCH_TXS_MAX)?,
                attestation: r.option()?,
            },
            4 => Response::Headers(
                r.seq::<HeaderItem>("headers", HEADERS_MAX as usize)?
                    .into_iter()
                    .map(|h| (h.0, h.1))
                    .collect(),
            ),
            5 => Response::Attestation(r.option()?),
            6 => Response::Checkpoint {
                seq: r.u64()?,
                block_hash: Hash::decode(r)?,
                certificate: r.option()?,
            },
            7 => Response::Status(NodeStatus::decode(r)?),
            8 => Response::Error(r.string("error", 4096)?),
            9 => Response::BlockIds {
                header: r.option()?,
                ids: r.seq("transaction ids", BATCH_TXS_MAX)?,
                attestation: r.option()?,
            },
            10 => Response::Prepared(r.option()?),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "response",
                    tag,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quire_chain::testkit::TestNet;

    #[test]
    fn requests_and_responses_round_trip() {
        let net = TestNet::new(4, 2);
        let tx = net.transfer(0, 1, 5, 0);
        let requests = vec![
            Request::Submit(vec![tx.clone()]),
            Request::TxStatus(tx.id()),
            Request::Account(net.account_keys[0].address()),
            Request::Block(BlockRef::Latest),
            Request::Block(BlockRef::Height(7)),
            Request::Headers { from: 1, count: 9 },
            Request::Attest(3),
            Request::Checkpoint,
            Request::Status,
            Request::WaitBlock {
                height: 4,
                wait_ms: 250,
            },
            Request::WaitBlockIds {
                height: 4,
                wait_ms: 250,
            },
            Request::WaitPrepared {
                height: 4,
                wait_ms: 250,
            },
        ];
        for r in requests {
            assert_eq!(Request::from_bytes(&r.to_bytes()).unwrap(), r);
        }
        let att = Attestation::sign(
            Statement {
                height: 1,
                block_hash: Hash([1; 32]),
            },
            2,
            &net.validator_keys[2],
            &net.chain_id(),
        );
        assert!(att.verify(&net.chain_id(), &net.genesis.validators));
        let mut forged = att.clone();
        forged.replica = 1;
        assert!(!forged.verify(&net.chain_id(), &net.genesis.validators));
        let responses = vec![
            Response::Submitted(vec![Ok(tx.id()), Err(Refusal::StaleNonce { expected: 3 })]),
            Response::TxStatus(TxStatus::Pending),
            Response::Attestation(Some(att)),
            Response::Error("nope".into()),
            Response::Headers(vec![(net.genesis.block().header, None)]),
            Response::BlockIds {
                header: Some(net.genesis.block().header),
                ids: vec![tx.id()],
                attestation: None,
            },
            Response::Prepared(None),
            Response::Prepared(Some(Prepared {
                height: 3,
                view: 1,
                digest: Hash([7; 32]),
                parent: Hash([8; 32]),
                committed: true,
                ids: vec![tx.id()],
            })),
        ];
        for r in responses {
            assert_eq!(Response::from_bytes(&r.to_bytes()).unwrap(), r);
        }
        assert!(Request::from_bytes(&[42]).is_err());
        assert!(Response::from_bytes(&[0, 255, 255, 255, 255]).is_err());
    }
}
