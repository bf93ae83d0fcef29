//! One peer's sender task: dial, open one long-lived stream, write queued frames; on any error,
//! back off and dial again, for as long as the mesh lives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::{Connection, Endpoint, SendStream};
use quire_chain::ReplicaId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{Link, Outgoing};
use crate::transport::stats::{add, bump};
use crate::transport::tls::SERVER_NAME;
use crate::transport::{TransportError, write_frame};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection that lived this long counts as a success and resets the back-off; one that dies
/// at once (say, the peer refuses our certificate after the handshake) does not, so a
/// misconfigured link is retried slowly rather than twenty times a second.
const CONNECTION_HEALTHY: Duration = Duration::from_secs(1);
/// A coalesced write holds at most this many frames…
const COALESCE_FRAMES_MAX: u64 = 256;
/// …and about this many bytes.
const COALESCE_BYTES_MAX: usize = 4 << 20;

/// A frame shared by several peers' queues, as a buffer quinn can take without copying.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

pub(super) struct Outbound {
    pub(super) peer: ReplicaId,
    /// "host:port", resolved at every dial so a peer may move.
    pub(super) address: String,
    pub(super) client: quinn::ClientConfig,
    pub(super) endpoint: Endpoint,
    pub(super) link: Arc<Link>,
    pub(super) queue: mpsc::Receiver<Outgoing>,
    /// See [`super::STALE_AFTER`].
    pub(super) stale_after: Duration,
}

impl Outbound {
    /// Runs until the mesh drops the queue's sender (or aborts the task).
    pub(super) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        while !self.queue.is_closed() {
            let link = self.link.clone();
            // The peer dialling us means it is up: a dial still under way (perhaps to its dead
            // incarnation) is dropped and made again at once.
            let attempt = tokio::select! {
                attempt = self.connect() => Some(attempt),
                () = link.wake.notified() => None,
            };
            let healthy = match attempt {
                None => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Some(Ok(conn)) => {
                    let started = Instant::now();
                    match self.pump(&conn).await {
                        Ok(()) => return,
                        Err(error) => self.lost(&error),
                    }
                    started.elapsed() >= CONNECTION_HEALTHY
                }
                Some(Err(error)) => {
                    self.lost(&error);
                    false
                }
            };
            backoff = if healthy { BACKOFF_MIN } else { backoff };
            let woken = tokio::select! {
                () = tokio::time::sleep(backoff) => false,
                () = link.wake.notified() => true,
            };
            backoff = if woken {
                BACKOFF_MIN
            } else {
                (backoff * 2).min(BACKOFF_MAX)
            };
        }
    }

    fn lost(&self, error: &TransportError) {
        bump(&self.link.counters.connection_errors);
        self.link.counters.connected.store(0, Ordering::Relaxed);
        debug!(peer = self.peer, %error, "link to replica down; reconnecting");
    }

    async fn connect(&self) -> Result<Connection, TransportError> {
        let peer = self.peer;
        let addr = self.resolve().await?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, SERVER_NAME)
            .map_err(|source| TransportError::Dial { peer, addr, source })?;
        let conn = connecting
            .await
            .map_err(|source| TransportError::Connection { peer, source })?;
        let counters = &self.link.counters;
        if counters.connects.fetch_add(1, Ordering::Relaxed) > 0 {
            bump(&counters.reconnects);
        }
        counters.connected.store(1, Ordering::Relaxed);
        info!(peer, %addr, "connected to replica");
        Ok(conn)
    }

    /// The peer's address, in the IP family of our socket (a v4 socket cannot reach v6).
    async fn resolve(&self) -> Result<SocketAddr, TransportError> {
        let error = |reason: String| TransportError::Resolve {
            peer: self.peer,
            address: self.address.clone(),
            reason,
        };
        let local_v4 = self.endpoint.local_addr().is_ok_and(|a| a.is_ipv4());
        let mut addrs = tokio::net::lookup_host(self.address.as_str())
            .await
            .map_err(|e| error(e.to_string()))?;
        addrs
            .find(|a| a.is_ipv4() || !local_v4)
            .ok_or_else(|| error("no IPv4 address for an IPv4 socket".to_string()))
    }

    /// Writes queued frames on one stream until the connection fails (`Err`) or the mesh is gone
    /// (`Ok`).
    async fn pump(&mut self, conn: &Connection) -> Result<(), TransportError> {
        let peer = self.peer;
        let mut stream = conn
            .open_uni()
            .await
            .map_err(|source| TransportError::Connection { peer, source })?;
        loop {
            // Watching `closed` too notices a dead link while idle, so the reconnect happens
            // before the next frame rather than costing it.
            let next = tokio::select! {
                next = self.queue.recv() => next,
                source = conn.closed() => return Err(TransportError::Connection { peer, source }),
            };
            let Some(outgoing) = next else {
                // Best effort: the connection is about to go away with the mesh anyway.
                let _ = stream.finish();
                return Ok(());
            };
            if self.link.delay().is_zero() {
                self.write_coalesced(&mut stream, outgoing).await?;
            } else {
                self.write(&mut stream, outgoing).await?;
            }
        }
    }

    /// Writes `first` and whatever else is already queued (up to a bound) in one call, handing
    /// quinn the frames' buffers without copying them: an isolated message costs tens of
    /// microseconds of CPU, a coalesced one a fraction (../shared/STACK.md).
    async fn write_coalesced(
        &mut self,
        stream: &mut SendStream,
        first: Outgoing,
    ) -> Result<(), TransportError> {
        let counters = &self.link.counters;
        let mut chunks = Vec::new();
        let (mut frames, mut bytes) = (0u64, 0usize);
        let mut next = Some(first);
        let now = Instant::now();
        while let Some(outgoing) = next.take() {
            let len = outgoing.frame.len();
            self.link
                .queued_bytes
                .fetch_sub(len as u64, Ordering::Relaxed);
            if self.link.is_blocked() {
                bump(&counters.dropped_blocked_out);
            } else if now.saturating_duration_since(outgoing.queued_at) > self.stale_after {
                bump(&counters.dropped_stale);
            } else {
                chunks.push(bytes::Bytes::copy_from_slice(&(len as u32).to_be_bytes()));
                chunks.push(bytes::Bytes::from_owner(Shared(outgoing.frame)));
                frames += 1;
                bytes += len;
            }
            if frames < COALESCE_FRAMES_MAX && bytes < COALESCE_BYTES_MAX {
                next = self.queue.try_recv().ok();
            }
        }
        if chunks.is_empty() {
            return Ok(());
        }
        if let Err(source) = stream.write_all_chunks(&mut chunks).await {
            counters
                .dropped_connection
                .fetch_add(frames, Ordering::Relaxed);
            return Err(TransportError::Send {
                peer: self.peer,
                source: crate::transport::FrameError::Write(source),
            });
        }
        counters.frames_sent.fetch_add(frames, Ordering::Relaxed);
        add(&counters.bytes_sent, bytes);
        Ok(())
    }

    async fn write(
        &self,
        stream: &mut SendStream,
        outgoing: Outgoing,
    ) -> Result<(), TransportError> {
        self.link
            .queued_bytes
            .fetch_sub(outgoing.frame.len() as u64, Ordering::Relaxed);
        let due = outgoing.queued_at + self.link.delay();
        tokio::time::sleep_until(due).await;
        let counters = &self.link.counters;
        // Checked again here: the link may have been blocked while the frame waited.
        if self.link.is_blocked() {
            bump(&counters.dropped_blocked_out);
            return Ok(());
        }
        if Instant::now().saturating_duration_since(due) > self.stale_after {
            bump(&counters.dropped_stale);
            return Ok(());
        }
        if let Err(source) = write_frame(stream, &outgoing.frame).await {
            bump(&counters.dropped_connection);
            return Err(TransportError::Send {
                peer: self.peer,
                source,
            });
        }
        bump(&counters.frames_sent);
        add(&counters.bytes_sent, outgoing.frame.len());
        Ok(())
    }
}
