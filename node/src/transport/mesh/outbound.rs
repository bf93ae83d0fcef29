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

pub(super) struct Outbound {
    pub(super) peer: ReplicaId,
    /// "host:port", resolved at every dial so a peer may move.
    pub(super) address: String,
    pub(super) client: quinn::ClientConfig,
    pub(super) endpoint: Endpoint,
    pub(super) link: Arc<Link>,
    pub(super) queue: mpsc::Receiver<Outgoing>,
}

impl Outbound {
    /// Runs until the mesh drops the queue's sender (or aborts the task).
    pub(super) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        while !self.queue.is_closed() {
            let healthy = match self.connect().await {
                Ok(conn) => {
                    let started = Instant::now();
                    match self.pump(&conn).await {
                        Ok(()) => return,
                        Err(error) => self.lost(&error),
                    }
                    started.elapsed() >= CONNECTION_HEALTHY
                }
                Err(error) => {
                    self.lost(&error);
                    false
                }
            };
            backoff = if healthy { BACKOFF_MIN } else { backoff };
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
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
            self.write(&mut stream, outgoing).await?;
        }
    }

    async fn write(
        &self,
        stream: &mut SendStream,
        outgoing: Outgoing,
    ) -> Result<(), TransportError> {
        self.link
            .queued_bytes
            .fetch_sub(outgoing.frame.len() as u64, Ordering::Relaxed);
        tokio::time::sleep_until(outgoing.queued_at + self.link.delay()).await;
        let counters = &self.link.counters;
        // Checked again here: the link may have been blocked while the frame waited.
        if self.link.is_blocked() {
            bump(&counters.dropped_blocked_out);
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
