//! Serving clients: each client connection may open bidirectional streams; each stream carries
//! request frames and gets one response frame per request, in order. Bad frames and requests are
//! counted and close the stream; the replica keeps serving everyone else.
//!
//! Bounded everywhere a client can fill it: connections at once ([`CONNECTIONS_MAX`]), streams
//! per connection (QUIC flow control, `quire_wire::tls`), bytes of partly read requests per
//! connection ([`CONNECTION_BYTES_MAX`], grown only as bytes arrive) and over all connections
//! ([`ALL_CONNECTIONS_BYTES_MAX`]: many connections that each stall within their own budget
//! cannot add up to gigabytes), and time — a request must
//! arrive within [`REQUEST_READ_DEADLINE`] of its first byte and be answered within
//! [`REQUEST_DEADLINE`]. Store reads run on the blocking pool, not on the runtime's workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use quire_chain::codec::{Decode, Encode};
use quire_chain::merkle;
use quire_chain::store::Store;
use quire_chain::tx::Transaction;
use quire_chain::{Hash, Keypair, ReplicaId, TxId};
use quire_consensus::mempool::Refusal as MempoolRefusal;
use quire_rocks::RocksStore;
use tokio::sync::{Semaphore, oneshot};

use crate::driver::{Event, Shared};
use crate::rpc::{
    Attestation, BlockRef, HEADERS_MAX, NodeStatus, Prepared, Refusal, Request, Response,
    Statement, TxStatus, WAIT_MS_MAX,
};
use crate::transport::frame::{Budget, FrameError, read_frame_within, write_frame};

/// Largest request frame a client may send (a Submit of SUBMIT_MAX raw payloads of 1 KiB fits).
pub const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Client connections served at once; more are closed as busy.
pub const CONNECTIONS_MAX: usize = 256;
/// Bytes of partly read requests one connection may hold over all its streams.
pub const CONNECTION_BYTES_MAX: usize = 24 * 1024 * 1024;
/// Bytes of partly read requests over every client connection together.
pub const ALL_CONNECTIONS_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A request's bytes must all arrive within this long of the first byte of its frame.
pub const REQUEST_READ_DEADLINE: Duration = Duration::from_secs(10);
/// A request not answered within this long gets an error instead.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

pub struct RpcContext {
    pub id: ReplicaId,
    pub key: Keypair,
    pub chain_id: Hash,
    pub store: Arc<RocksStore>,
    pub shared: Arc<Shared>,
    pub events: SyncSender<Event>,
    pub raw_payloads: bool,
    pub peers_connected: Arc<dyn Fn() -> u32 + Send + Sync>,
    /// Signatures already checked on this replica (shared with the verification pool).
    pub signatures: Arc<crate::verify_pool::SignatureCache>,
    /// The mempool's capacity, and the room submissions being checked have claimed in it.
    pool_room: crate::pool_room::PoolRoom,
    /// Client submissions waiting for the driver at once (see [`DRIVER_SUBMISSIONS_MAX`]).
    driver_submissions: Semaphore,
    /// Submissions having their signatures checked on the blocking pool, or waiting for it
    /// (see [`CHECKS_IN_FLIGHT_MAX`]).
    checks: Semaphore,
}

impl RpcContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ReplicaId,
        key: Keypair,
        chain_id: Hash,
        store: Arc<RocksStore>,
        shared: Arc<Shared>,
        events: SyncSender<Event>,
        raw_payloads: bool,
        peers_connected: Arc<dyn Fn() -> u32 + Send + Sync>,
        signatures: Arc<crate::verify_pool::SignatureCache>,
        mempool_max: usize,
    ) -> RpcContext {
        RpcContext {
            id,
            key,
            chain_id,
            store,
            shared,
            events,
            raw_payloads,
            peers_connected,
            signatures,
            pool_room: crate::pool_room::PoolRoom::new(mempool_max),
            driver_submissions: Semaphore::new(DRIVER_SUBMISSIONS_MAX),
            checks: Semaphore::new(CHECKS_IN_FLIGHT_MAX),
        }
    }
}

/// Hands an event to the driver thread, waiting (without blocking the runtime) while its queue
/// is full: back-pressure instead of unbounded buffering.
pub async fn deliver(events: &SyncSender<Event>, mut event: Event) -> bool {
    loop {
        match events.try_send(event) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(e)) => {
                event = e;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Bytes of one connection's partly read requests, and of all connections'.
struct ConnectionBytes {
    own: AtomicUsize,
    all: Arc<AtomicUsize>,
}

fn take_within(held: &AtomicUsize, bytes: usize, max: usize) -> bool {
    held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        n.checked_add(bytes).filter(|n| *n <= max)
    })
    .is_ok()
}

impl Budget for ConnectionBytes {
    fn take(&self, bytes: usize) -> bool {
        if !take_within(&self.own, bytes, CONNECTION_BYTES_MAX) {
            return false;
        }
        if !take_within(&self.all, bytes, ALL_CONNECTIONS_BYTES_MAX) {
            self.own.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }
    fn give_back(&self, bytes: usize) {
        self.own.fetch_sub(bytes, Ordering::Relaxed);
        self.all.fetch_sub(bytes, Ordering::Relaxed);
    }
    fn size(&self) -> usize {
        CONNECTION_BYTES_MAX
    }
}

/// What all client connections share: a permit each, and the bytes of partly read requests.
pub struct ConnectionSlots {
    permits: Arc<Semaphore>,
    bytes: Arc<AtomicUsize>,
}

pub fn connection_slots() -> Arc<ConnectionSlots> {
    Arc::new(ConnectionSlots {
        permits: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
        bytes: Arc::default(),
    })
}

/// Serves one client connection until it closes, if there is a slot for it.
pub async fn serve_connection(
    ctx: Arc<RpcContext>,
    slots: Arc<ConnectionSlots>,
    conn: quinn::Connection,
) {
    let Ok(_slot) = slots.permits.clone().try_acquire_owned() else {
        ctx.shared.metrics.rpc_error("too_many_connections");
        conn.close(2u32.into(), b"busy: too many client connections");
        return;
    };
    let budget = Arc::new(ConnectionBytes {
        own: AtomicUsize::new(0),
        all: slots.bytes.clone(),
    });
    let mut streams = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(serve_stream(ctx.clone(), budget.clone(), send, recv));
                }
                Err(_) => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    // The connection is gone: its streams (and what they hold) go with it.
    streams.abort_all();
}

async fn serve_stream(
    ctx: Arc<RpcContext>,
    budget: Arc<ConnectionBytes>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    loop {
        let read = read_frame_within(&mut recv, REQUEST_BYTES_MAX, &*budget);
        let frame = match tokio::time::timeout(REQUEST_READ_DEADLINE, read).await {
            Ok(Ok(Some((frame, claim)))) => {
                drop(claim);
                frame
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                ctx.shared.metrics.rpc_error(match e {
                    FrameError::OverBudget { .. } => "over_budget",
                    FrameError::TooLarge { .. } => "oversized_frame",
                    _ => "bad_frame",
                });
                tracing::debug!(error = %e, "bad client frame");
                let _ = recv.stop(1u32.into());
                break;
            }
            Err(_) => {
                ctx.shared.metrics.rpc_error("read_deadline");
                let _ = recv.stop(1u32.into());
                break;
            }
        };
        ctx.shared.metrics.rpc_request();
        let response = match Request::from_bytes(&frame) {
            Ok(request) => {
                match tokio::time::timeout(REQUEST_DEADLINE, handle(&ctx, request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        ctx.shared.metrics.rpc_error("deadline");
                        Response::Error("the replica did not answer in time".into())
                    }
                }
            }
            Err(e) => {
                ctx.shared.metrics.rpc_error("malformed_request");
                Response::Error(format!("malformed request: {e}"))
            }
        };
        if write_frame(&mut send, &response.to_bytes()).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
}

/// Runs a store read on the blocking pool.
async fn read_store<T: Send + 'static>(
    ctx: &RpcContext,
    read: impl FnOnce(&RocksStore) -> T + Send + 'static,
) -> Option<T> {
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || read(&store)).await.ok()
}

async fn handle(ctx: &RpcContext, request: Request) -> Response {
    match request {
        Request::Submit(txs) => submit(ctx, txs).await,
        Request::TxStatus(id) => tx_status(ctx, id).await,
        Request::Account(address) => {
            let (reply, answer) = oneshot::channel();
            if !deliver(&ctx.events, Event::Account { address, reply }).await {
                return Response::Error("replica is shutting down".into());
            }
            match answer.await {
                Ok((header, account, proof)) => Response::Account {
                    attestation: attest_block(ctx, &header),
                    header,
                    account,
                    proof,
                },
                Err(_) => Response::Error("replica is shutting down".into()),
            }
        }
        // The block a follower waited for has just been written: it is in RocksDB's memtable
        // and the page cache, and reading it on this task is cheaper than a hand-off to the
        // blocking pool and back (a follower's latency is the point of waiting).
        Request::WaitBlock { height, wait_ms } => {
            wait_for_height(ctx, height, wait_ms).await;
            block_response(ctx, Some(ctx.store.block(height)))
        }
        Request::WaitBlockIds { height, wait_ms } => {
            wait_for_height(ctx, height, wait_ms).await;
            match ctx.store.block(height) {
                Ok(Some(record)) => Response::BlockIds {
                    attestation: Some(attest_block(ctx, &record.block.header)),
                    header: Some(record.block.header),
                    ids: record.block.txs.iter().map(|tx| tx.id()).collect(),
                },
                Ok(None) => Response::BlockIds {
                    header: None,
                    ids: Vec::new(),
                    attestation: None,
                },
                Err(e) => storage_error(ctx, e),
            }
        }
        Request::WaitPrepared { height, wait_ms } => {
            wait_for_prepared(ctx, height, wait_ms).await;
            prepared_response(ctx, height)
        }
        Request::Block(which) => {
            let read = read_store(ctx, move |store| {
                let height = match which {
                    BlockRef::Latest => store.head().height,
                    BlockRef::Height(h) => h,
                };
                store.block(height)
            });
            block_response(ctx, read.await)
        }
        Request::Headers { from, count } => {
            let count = count.min(HEADERS_MAX);
            let read = read_store(ctx, move |store| {
                let mut out = Vec::new();
                for h in from..from.saturating_add(count) {
                    match store.block(h)? {
                        Some(r) => out.push((r.block.header, r.block.certificate)),
                        None => break,
                    }
                }
                Ok(out)
            });
            match read.await {
                Some(Ok(headers)) => Response::Headers(headers),
                Some(Err(e)) => storage_error(ctx, e),
                None => shutting_down(),
            }
        }
        Request::Attest(height) => match read_store(ctx, move |store| store.header(height)).await {
            Some(Ok(h)) => Response::Attestation(h.map(|h| attest_block(ctx, &h))),
            Some(Err(e)) => storage_error(ctx, e),
            None => shutting_down(),
        },
        Request::Checkpoint => {
            let stable = ctx.shared.stable.lock().ok().and_then(|s| s.clone());
            match stable {
                Some(s) => Response::Checkpoint {
                    seq: s.seq,
                    block_hash: s.block_hash,
                    certificate: s.certificate,
                },
                None => Response::Error("not started yet".into()),
            }
        }
        Request::Status => {
            let r = ctx.shared.metrics.replica();
            let head_hash = ctx.shared.head_hash.lock().map(|h| *h).unwrap_or_default();
            Response::Status(NodeStatus {
                replica: ctx.id,
                view: r.view,
                changing_view: r.changing_view,
                height: r.height,
                head_hash,
                stable_checkpoint: r.stable_checkpoint,
                peers_connected: (ctx.peers_connected)(),
                behaviour: r.behaviour,
                mempool: r.mempool,
                pid: std::process::id(),
            })
        }
    }
}

/// The answer to a block request, from the store's answer (`None`: the read was cut short).
fn block_response(
    ctx: &RpcContext,
    read: Option<Result<Option<quire_chain::BlockRecord>, quire_chain::store::StoreError>>,
) -> Response {
    match read {
        Some(Ok(Some(record))) => Response::Block {
            attestation: Some(attest_block(ctx, &record.block.header)),
            block: Some(record.block),
            outcomes: record.outcomes,
        },
        Some(Ok(None)) => Response::Block {
            block: None,
            outcomes: Vec::new(),
            attestation: None,
        },
        Some(Err(e)) => storage_error(ctx, e),
        None => shutting_down(),
    }
}

/// Until this replica has committed `height`, or `wait_ms` (at most [`WAIT_MS_MAX`]) passed.
async fn wait_for_height(ctx: &RpcContext, height: u64, wait_ms: u32) {
    let mut committed = ctx.shared.height.subscribe();
    let wait = Duration::from_millis(u64::from(wait_ms.min(WAIT_MS_MAX)));
    let _ = tokio::time::timeout(wait, committed.wait_for(|h| *h >= height)).await;
}

/// Waits until the batch for `height` is prepared after the head or committed here, or
/// `wait_ms` (at most `WAIT_MS_MAX`) passed.
async fn wait_for_prepared(ctx: &RpcContext, height: u64, wait_ms: u32) {
    let mut committed = ctx.shared.height.subscribe();
    let mut prepared = ctx.shared.prepared.subscribe();
    let wait = Duration::from_millis(u64::from(wait_ms.min(WAIT_MS_MAX)));
    let reached = async {
        loop {
            if *committed.borrow_and_update() >= height
                || prepared
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|p| p.height >= height)
            {
                return;
            }
            tokio::select! {
                changed = committed.changed() => if changed.is_err() { return },
                changed = prepared.changed() => if changed.is_err() { return },
            }
        }
    };
    let _ = tokio::time::timeout(wait, reached).await;
}

/// What this replica can say about the batch for `height`: prepared after its head (a prepared
/// report for a later height means this one is committed), committed, or nothing yet.
fn prepared_response(ctx: &RpcContext, height: u64) -> Response {
    let next = ctx.shared.prepared.borrow().clone();
    if let Some(p) = next.filter(|p| p.height == height) {
        return Response::Prepared(Some(Prepared {
            height,
            view: p.view,
            digest: p.digest,
            parent: p.parent,
            committed: false,
            ids: p.batch.txs.iter().map(|tx| tx.id()).collect(),
        }));
    }
    match ctx.store.block(height) {
        // A block without a commit certificate (the genesis, proof of work) was never prepared.
        Ok(Some(record)) => {
            Response::Prepared(record.block.certificate.as_ref().map(|cert| Prepared {
                height,
                view: cert.statement.view,
                digest: cert.statement.digest,
                parent: record.block.header.parent_hash,
                committed: true,
                ids: record.block.txs.iter().map(|tx| tx.id()).collect(),
            }))
        }
        Ok(None) => Response::Prepared(None),
        Err(e) => storage_error(ctx, e),
    }
}

fn shutting_down() -> Response {
    Response::Error("replica is shutting down".into())
}

fn storage_error(ctx: &RpcContext, e: quire_chain::store::StoreError) -> Response {
    ctx.shared.metrics.rpc_error("storage");
    tracing::error!(error = %e, "storage error while serving a client");
    Response::Error(format!("storage error: {e}"))
}

fn attest_block(ctx: &RpcContext, header: &quire_chain::Header) -> Attestation {
    Attestation::sign(Statement::of(header), ctx.id, &ctx.key, &ctx.chain_id)
}

/// Client submissions in the driver's queue at once. The queue is shared with the peers'
/// verified messages: filled with client batches under overload, it held the consensus
/// messages back until the view timed out. A few batches keep the driver busy; the rest of
/// the clients wait here (then hear `Busy`), not in front of the votes.
pub const DRIVER_SUBMISSIONS_MAX: usize = 4;

/// Submissions of at most this many transactions have their signatures checked on the task that
/// received them.
const INLINE_CHECKS: usize = 4;

/// Submissions being checked on the blocking pool (two threads, `node.rs`) or waiting for it.
/// Under overload, an unbounded line of them waited while the mempool filled, were checked, and
/// were then refused as busy or full: most of a primary's CPU for nothing. So under pressure
/// (the early share taken, or the pool nearly full) a submission finding the line full is
/// refused; otherwise it waits: refusing at a moderate load whenever the pool's threads
/// stalled for a moment (store reads, a compaction) cost thousands of retries at 7.5k
/// transfers/s and a p99 of 700 ms.
pub const CHECKS_IN_FLIGHT_MAX: usize = 6;

/// How long a Submit may wait for room in the driver's queue before it is refused as `Busy`.
const SUBMIT_QUEUE_WAIT: Duration = Duration::from_millis(50);

/// Admission, and a truthful answer: static checks and signatures here (off the runtime, each
/// signature once per replica thanks to the shared cache), then the mempool's own verdict from
/// the driver (nonce, funds, per-sender limits, room). A transaction answered `Ok` is in the
/// mempool; one that is not gets the reason, so a client can retry elsewhere or later.
async fn submit(ctx: &RpcContext, txs: Vec<Transaction>) -> Response {
    let received = Instant::now();
    // Overload costs the client a retry, not this replica a signature check per refused
    // transaction: a submission claims room in the mempool before anything is verified, and
    // holds it until the driver has answered (`pool_room`).
    let held = crate::pool_room::Held {
        all: ctx.shared.mempool_len.load(Ordering::Relaxed),
        in_order: ctx.shared.mempool_in_order.load(Ordering::Relaxed),
    };
    let limit = ctx.shared.admission_limit.load(Ordering::Relaxed);
    let Some(_room) = ctx.pool_room.claim(held, txs.len() as u64, limit) else {
        ctx.shared
            .metrics
            .refused_many("mempool_full", txs.len() as u64);
        return Response::Submitted(vec![Err(Refusal::MempoolFull); txs.len()]);
    };
    // Under overload most offered transfers are early (their predecessors were refused) and
    // the mempool refuses them all once its early share is taken: it is asked first which it
    // would refuse, and only the rest have their signatures checked.
    let pressure = ctx.shared.mempool_pressure.load(Ordering::Relaxed);
    let screened = if pressure {
        screen(ctx, &txs).await
    } else {
        vec![None; txs.len()]
    };
    let mut results: Vec<Result<TxId, Refusal>> = Vec::with_capacity(txs.len());
    let mut checking = Vec::new();
    let mut checking_slots = Vec::new();
    for (tx, screened) in txs.into_iter().zip(screened) {
        if let Some(refusal) = screened {
            results.push(mempool_answer(Err(refusal)).map(|()| tx.id()));
        } else {
            // Filled in below, once checked (or refused busy): no id to hash yet.
            checking_slots.push(results.len());
            results.push(Err(Refusal::Busy));
            checking.push(tx);
        }
    }
    // Under pressure, checks beyond a short line for the blocking pool would wait long, holding
    // room in the mempool, and be refused as busy or full afterwards: they are refused before.
    // Otherwise a submission waits its turn (a moment's stall of the pool is no overload).
    let inline = checking.len() <= INLINE_CHECKS;
    let pressed = pressure || ctx.pool_room.is_nearly_full(held, limit);
    let permit = match (inline, pressed) {
        (true, _) => None,
        (false, true) => ctx.checks.try_acquire().ok(),
        (false, false) => ctx.checks.acquire().await.ok(),
    };
    if !inline && permit.is_none() {
        for slot in checking_slots.drain(..) {
            results[slot] = Err(Refusal::Busy);
        }
        checking.clear();
    }
    let Some(verdicts) = check_signatures(ctx, &checking).await else {
        return Response::Error("replica is shutting down".into());
    };
    // The line is for checks only, not for the driver's answer.
    drop(permit);
    let mut admitted = Vec::new();
    let mut slots = Vec::new();
    for ((slot, tx), ok) in checking_slots.into_iter().zip(checking).zip(verdicts) {
        let result = admit(ctx, &tx, ok);
        if result.is_ok() {
            slots.push(slot);
            admitted.push(tx);
        }
        results[slot] = result;
    }
    if !admitted.is_empty() {
        // `results[slot]` holds the id `admit` computed; the mempool's answer may refuse it.
        let answers = ask_mempool(ctx, admitted, received).await;
        let mut taken = 0u64;
        for (slot, answer) in slots.into_iter().zip(answers) {
            match answer {
                Ok(()) => taken += 1,
                Err(refusal) => results[slot] = Err(refusal),
            }
        }
        ctx.shared.metrics.submitted(taken);
    }
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        ctx.shared.metrics.refused(refusal_name(r));
    }
    Response::Submitted(results)
}

/// Each transaction's signature verdict (`None` once the runtime is shutting down). A few
/// signatures are checked right here (tens of microseconds): a hand-off to the blocking pool
/// and back costs a lone transaction more than that, twice over. Larger submissions go to the
/// pool, off the runtime's threads.
async fn check_signatures(ctx: &RpcContext, txs: &[Transaction]) -> Option<Vec<bool>> {
    let chain_id = ctx.chain_id;
    let check = move |txs: &[Transaction], cache: &crate::verify_pool::SignatureCache| {
        let counting = crate::verify_pool::Counting::new(cache);
        let verdicts = quire_consensus::verify::check_transactions(&chain_id, txs, &counting);
        (verdicts, counting.misses())
    };
    let (verdicts, checked) = if txs.len() <= INLINE_CHECKS {
        check(txs, &ctx.signatures)
    } else {
        let txs = txs.to_vec();
        let cache = ctx.signatures.clone();
        tokio::task::spawn_blocking(move || check(&txs, &cache))
            .await
            .ok()?
    };
    ctx.shared.metrics.client_signatures_checked(checked);
    Some(verdicts)
}

/// Hands the driver an event built around a reply channel and waits for the answer; `None`
/// when the driver's queue stays full (or the driver is gone).
async fn ask_driver<T>(
    ctx: &RpcContext,
    event: impl FnOnce(oneshot::Sender<T>) -> Event,
) -> Option<T> {
    let Ok(Ok(_permit)) =
        tokio::time::timeout(SUBMIT_QUEUE_WAIT, ctx.driver_submissions.acquire()).await
    else {
        return None;
    };
    let (reply, answer) = oneshot::channel();
    let mut event = event(reply);
    let deadline = Instant::now() + SUBMIT_QUEUE_WAIT;
    loop {
        match ctx.events.try_send(event) {
            Ok(()) => break,
            Err(TrySendError::Full(e)) if Instant::now() < deadline => {
                event = e;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => return None,
        }
    }
    answer.await.ok()
}

/// What the mempool would certainly refuse of `txs`; nothing when the driver cannot say in
/// time (then every signature is checked, and the mempool answers as usual).
async fn screen(ctx: &RpcContext, txs: &[Transaction]) -> Vec<Option<MempoolRefusal>> {
    let screened = ask_driver(ctx, |reply| Event::Screen {
        txs: txs.to_vec(),
        reply,
    })
    .await;
    match screened {
        Some(s) if s.len() == txs.len() => s,
        _ => vec![None; txs.len()],
    }
}

/// The mempool's verdict on each transaction, from the driver; `Busy` for all of them when the
/// driver's queue stays full.
async fn ask_mempool(
    ctx: &RpcContext,
    txs: Vec<Transaction>,
    received: Instant,
) -> Vec<Result<(), Refusal>> {
    let count = txs.len();
    let answer = ask_driver(ctx, |reply| Event::Requests {
        txs,
        received,
        reply,
    })
    .await;
    match answer {
        Some(admissions) => admissions.into_iter().map(mempool_answer).collect(),
        None => vec![Err(Refusal::Busy); count],
    }
}

fn mempool_answer(admission: quire_consensus::Admission) -> Result<(), Refusal> {
    use quire_consensus::mempool::Refusal as Mempool;
    match admission {
        // Already waiting here: the client's retry of a transfer it sent before.
        Ok(()) | Err(Mempool::Duplicate) => Ok(()),
        Err(Mempool::Full) => Err(Refusal::MempoolFull),
        Err(Mempool::StaleNonce { expected }) => Err(Refusal::StaleNonce { expected }),
        Err(Mempool::SenderLimit { pending }) => Err(Refusal::SenderLimit { pending }),
        Err(Mempool::Unfunded { balance }) => Err(Refusal::Unfunded { balance }),
    }
}

fn admit(ctx: &RpcContext, tx: &Transaction, signature_ok: bool) -> Result<TxId, Refusal> {
    let Some(t) = tx.as_transfer() else {
        return if ctx.raw_payloads {
            Ok(tx.id())
        } else {
            Err(Refusal::Invalid(
                "this network's genesis does not allow raw payloads (raw_payloads = false)".into(),
            ))
        };
    };
    if !signature_ok {
        return Err(Refusal::BadSignature);
    }
    if t.transfer.amount == 0 {
        return Err(Refusal::Invalid("amount must be positive".into()));
    }
    // Money sent to bytes that are not a public key could never be spent again.
    if t.transfer.to.public_key().is_err() {
        return Err(Refusal::Invalid(
            "the recipient is not a valid address".into(),
        ));
    }
    Ok(tx.id())
}

fn refusal_name(r: &Refusal) -> &'static str {
    match r {
        Refusal::BadSignature => "bad_signature",
        Refusal::StaleNonce { .. } => "stale_nonce",
        Refusal::MempoolFull => "mempool_full",
        Refusal::Invalid(_) => "invalid",
        Refusal::SenderLimit { .. } => "sender_limit",
        Refusal::Unfunded { .. } => "unfunded",
        Refusal::Busy => "busy",
    }
}

/// A transaction is `Pending` only while this replica's mempool holds it: a transfer the mempool
/// dropped (its nonce was used meanwhile, or it never became ready) must read `Unknown`, so the
/// client learns that nobody holds it and submits it again, instead of waiting for it forever.
async fn tx_status(ctx: &RpcContext, id: TxId) -> Response {
    if let Some(response) = committed_status(ctx, id).await {
        return response;
    }
    let (reply, answer) = oneshot::channel();
    if !deliver(&ctx.events, Event::Pending { id, reply }).await {
        return shutting_down();
    }
    if answer.await.unwrap_or(false) {
        return Response::TxStatus(TxStatus::Pending);
    }
    // It may have committed between the store read and the mempool's answer.
    committed_status(ctx, id)
        .await
        .unwrap_or(Response::TxStatus(TxStatus::Unknown))
}

/// The committed status of `id` with its evidence — the block, the merkle proofs of the
/// transaction and of its outcome, and an attestation of the header — if the store has it.
async fn committed_status(ctx: &RpcContext, id: TxId) -> Option<Response> {
    let location = match read_store(ctx, move |store| store.tx_location(&id)).await {
        Some(Ok(l)) => l?,
        Some(Err(e)) => return Some(storage_error(ctx, e)),
        None => return Some(shutting_down()),
    };
    let height = location.height;
    let record = match read_store(ctx, move |store| store.block(height)).await {
        Some(Ok(Some(r))) => r,
        // The index is written behind the blocks and survives a power cut that loses the newest
        // blocks (unsynced) until they are fetched back: not committed here, for now.
        Some(Ok(None)) => return None,
        Some(Err(e)) => return Some(storage_error(ctx, e)),
        None => return Some(shutting_down()),
    };
    let index = location.index as usize;
    let ids: Vec<Hash> = record.block.tx_ids();
    let (Some(proof), Some(outcome), Some(outcome_proof)) = (
        merkle::prove(&ids, index),
        record.outcomes.get(index).copied(),
        record.outcome_proof(index),
    ) else {
        return Some(Response::Error(
            "indexed transaction is missing from its block".into(),
        ));
    };
    Some(Response::TxStatus(TxStatus::Committed {
        attestation: attest_block(ctx, &record.block.header),
        outcome,
        outcome_proof,
        proof,
        block: record.block,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each connection has its own budget, and together they have one: connections that each
    /// stay within theirs cannot add up past the shared bound; what one gives back, another can
    /// take.
    #[test]
    fn connections_share_one_byte_bound() {
        let slots = connection_slots();
        let conns: Vec<ConnectionBytes> = (0..4)
            .map(|_| ConnectionBytes {
                own: AtomicUsize::new(0),
                all: slots.bytes.clone(),
            })
            .collect();
        assert!(!conns[0].take(CONNECTION_BYTES_MAX + 1), "own bound");
        let mut taken = 0;
        for c in &conns {
            while c.take(1 << 20) {
                taken += 1 << 20;
            }
        }
        assert_eq!(taken, ALL_CONNECTIONS_BYTES_MAX);
        assert_eq!(
            conns[3].own.load(Ordering::Relaxed),
            0,
            "nothing left for the last"
        );
        conns[0].give_back(1 << 20);
        assert!(conns[3].take(1 << 20));
        assert_eq!(conns[3].own.load(Ordering::Relaxed), 1 << 20);
    }
}
