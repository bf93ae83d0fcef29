//! The accept side: sort incoming connections into replicas (by client certificate) and clients,
//! read replicas' frames into the node's channel, hand clients to the node.

use std::collections::BTreeMap;
use std::sync::Arc;

use quinn::{Connection, ConnectionError, Endpoint, RecvStream};
use quire_chain::ReplicaId;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::transport::inbox::Inbox;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{Link, Shared};
use crate::transport::stats::{add, bump};
use crate::transport::{FrameError, codes, peer_replica, read_frame};

#[derive(Clone)]
pub(super) struct Inbound {
    pub(super) shared: Arc<Shared>,
    pub(super) allowed: Arc<BTreeMap<[u8; 32], ReplicaId>>,
    pub(super) frames: Arc<Inbox>,
    pub(super) clients: mpsc::Sender<Connection>,
}

/// Accepts connections until the endpoint closes. Connection tasks live in a `JoinSet`, so
/// aborting this task aborts them all.
pub(super) async fn accept_loop(endpoint: Endpoint, inbound: Inbound) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                connections.spawn(inbound.clone().handle(incoming));
            }
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

impl Inbound {
    async fn handle(self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let conn = match incoming.await {
            Ok(conn) => conn,
            Err(error) => {
                bump(&self.shared.endpoint.handshakes_failed);
                return debug!(%remote, %error, "incoming handshake failed");
            }
        };
        match peer_replica(&conn, &self.allowed) {
            Some(peer) => self.serve_replica(conn, peer).await,
            None => self.hand_to_node(conn),
        }
    }

    /// The node serves clients; if it is not keeping up, new clients are refused at once rather
    /// than queued without bound.
    fn hand_to_node(&self, conn: Connection) {
        let counters = &self.shared.endpoint;
        match self.clients.try_send(conn) {
            Ok(()) => bump(&counters.clients_accepted),
            Err(TrySendError::Full(conn) | TrySendError::Closed(conn)) => {
                conn.close(codes::BUSY, b"busy");
                bump(&counters.clients_refused);
            }
        }
    }

    /// Reads every uni stream the replica opens, until the connection ends.
    async fn serve_replica(self, conn: Connection, peer: ReplicaId) {
        let Some(link) = self.shared.links.get(&peer).cloned() else {
            return conn.close(codes::REFUSED, b"not a peer");
        };
        debug!(peer, remote = %conn.remote_address(), "replica connected");
        link.supersede_inbound(&conn);
        let mut readers = JoinSet::new();
        let error = loop {
            tokio::select! {
                stream = conn.accept_uni() => match stream {
                    Ok(stream) => {
                        readers.spawn(self.clone().read_stream(stream, peer, link.clone(), conn.clone()));
                    }
                    Err(error) => break error,
                },
                Some(_) = readers.join_next(), if !readers.is_empty() => {}
            }
        };
        link.forget_inbound(&conn);
        if !is_orderly(&error) {
            bump(&link.counters.connection_errors);
        }
        debug!(peer, %error, "replica connection ended");
        // Let readers hand over what they already read.
        while readers.join_next().await.is_some() {}
    }

    async fn read_stream(
        self,
        mut stream: RecvStream,
        peer: ReplicaId,
        link: Arc<Link>,
        conn: Connection,
    ) {
        let counters = &link.counters;
        loop {
            let frame = match read_frame(&mut stream, self.shared.frame_bytes_max).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => return refuse(error, peer, &link, &conn),
            };
            if link.is_blocked() {
                bump(&counters.dropped_blocked_in);
                continue;
            }
            bump(&counters.frames_received);
            add(&counters.bytes_received, frame.len());
            // Waiting here is the back-pressure: QUIC flow control then slows the peer (and only
            // this peer: the inbox has a queue per peer).
            if !self.frames.push(peer, frame).await {
                return; // The node stopped listening.
            }
        }
    }
}

/// A stream that broke: an oversized frame closes the whole connection (we cannot skip it
/// without reading it); other errors end just this stream.
fn refuse(error: FrameError, peer: ReplicaId, link: &Link, conn: &Connection) {
    match error {
        FrameError::TooLarge { .. } => {
            bump(&link.counters.dropped_oversized);
            warn!(peer, %error, "closing a replica connection: oversized frame");
            conn.close(codes::FRAME_TOO_LARGE, b"frame too large");
        }
        // Counted once, by the connection's own loop.
        FrameError::Read(quinn::ReadError::ConnectionLost(_)) => {}
        error => {
            bump(&link.counters.connection_errors);
            debug!(peer, %error, "replica stream broken");
        }
    }
}

/// The peer shut down on purpose, or we did.
fn is_orderly(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::LocallyClosed => true,
        ConnectionError::ApplicationClosed(close) => close.error_code == codes::SHUTDOWN,
        _ => false,
    }
}
