//! One QUIC client endpoint and a cached connection per replica; [`Connections::call`] sends one
//! request on a fresh bidirectional stream and reads one response, within a timeout.
//!
//! A connection that fails or times out is dropped from the cache, so the next call reconnects.
//! Each replica's TLS config pins that replica's ed25519 key from the network file: a
//! man-in-the-middle cannot even complete the handshake.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quire_chain::{Decode, Encode, ReplicaId};
use quire_wire::rpc::{Request, Response};
use quire_wire::{frame, tls};
use tokio::sync::Mutex;

use crate::error::{CallError, ClientError};
use crate::health::Health;
use crate::network::Replica;

struct Slot {
    replica: Replica,
    config: quinn::ClientConfig,
    connection: Mutex<Option<quinn::Connection>>,
}

pub struct Connections {
    endpoint: quinn::Endpoint,
    slots: HashMap<ReplicaId, Slot>,
    timeout: Duration,
    /// Which replicas failed to answer lately, so fail-over can try them last for a while
    /// instead of waiting out their timeout first every time.
    health: Arc<Health>,
}

impl Connections {
    /// Binds a client endpoint on an ephemeral port. Must be called inside a tokio runtime.
    pub fn new(
        replicas: &[Replica],
        timeout: Duration,
        health: Arc<Health>,
    ) -> Result<Connections, ClientError> {
        let any_v6 = replicas.iter().any(|r| r.quic.is_ipv6());
        let bind: SocketAddr = if any_v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Endpoint(e.to_string()))?;
        let mut slots = HashMap::new();
        for replica in replicas {
            let config = tls::client_config(replica.key).map_err(|e| {
                ClientError::Endpoint(format!("TLS config for replica {}: {e}", replica.id))
            })?;
            let slot = Slot {
                replica: replica.clone(),
                config,
                connection: Mutex::new(None),
            };
            slots.insert(replica.id, slot);
        }
        Ok(Connections {
            endpoint,
            slots,
            timeout,
            health,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` to `replica` and returns its response. A `Response::Error` comes back as
    /// [`CallError::Remote`].
    pub async fn call(&self, replica: ReplicaId, request: &Request) -> Result<Response, CallError> {
        let call = self.health.call(replica);
        let result = self.call_untracked(replica, request).await;
        // A replica that answered with an error message answered.
        call.answered(matches!(result, Ok(_) | Err(CallError::Remote { .. })));
        result
    }

    /// A long poll ([`Request::WaitPrepared`], [`Request::WaitBlockIds`]): held by design, so
    /// neither how long it waits nor its being abandoned says anything about the replica's
    /// health, and neither is recorded.
    pub async fn call_held(
        &self,
        replica: ReplicaId,
        request: &Request,
    ) -> Result<Response, CallError> {
        self.call_untracked(replica, request).await
    }

    async fn call_untracked(
        &self,
        replica: ReplicaId,
        request: &Request,
    ) -> Result<Response, CallError> {
        let slot = self
            .slots
            .get(&replica)
            .ok_or(CallError::UnknownReplica { replica })?;
        let result = tokio::time::timeout(self.timeout, self.exchange(slot, request)).await;
        let result = result.unwrap_or(Err(CallError::Timeout {
            replica,
            addr: slot.replica.quic,
            timeout_ms: self.timeout.as_millis() as u64,
        }));
        match result {
            Ok(Response::Error(message)) => Err(CallError::Remote { replica, message }),
            Ok(response) => Ok(response),
            Err(e) => {
                // Whatever went wrong, the next call starts from a fresh connection. If the slot
                // is locked, another call is reconnecting already: no need to wait for it.
                if let Ok(mut cached) = slot.connection.try_lock() {
                    *cached = None;
                }
                Err(e)
            }
        }
    }

    /// Whether `replica` failed to answer lately (see [`Health`]).
    pub fn suspect(&self, replica: ReplicaId) -> bool {
        self.health.suspect(replica)
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    async fn exchange(&self, slot: &Slot, request: &Request) -> Result<Response, CallError> {
        let replica = slot.replica.id;
        let addr = slot.replica.quic;
        let lost = |reason: String| CallError::Stream {
            replica,
            addr,
            reason,
        };
        let connection = self.connection(slot).await?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| lost(e.to_string()))?;
        frame::write_frame(&mut send, &request.to_bytes())
            .await
            .map_err(|e| lost(e.to_string()))?;
        // The stream carries one request; finishing it tells the replica no more will come.
        send.finish().map_err(|e| lost(e.to_string()))?;
        let bytes = frame::read_frame(&mut recv, frame::FRAME_BYTES_MAX)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("the replica closed the stream without answering".into()))?;
        Response::from_bytes(&bytes).map_err(|source| CallError::Decode { replica, source })
    }

    async fn connection(&self, slot: &Slot) -> Result<quinn::Connection, CallError> {
        let mut cached = slot.connection.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let refused = |reason: String| CallError::Connect {
            replica: slot.replica.id,
            addr: slot.replica.quic,
            reason,
        };
        let connecting = self
            .endpoint
            .connect_with(slot.config.clone(), slot.replica.quic, tls::SERVER_NAME)
            .map_err(|e| refused(e.to_string()))?;
        let connection = connecting.await.map_err(|e| refused(e.to_string()))?;
        *cached = Some(connection.clone());
        Ok(connection)
    }
}

/// The name of a request's kind, for error messages.
pub fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Submit(_) => "Submit",
        Request::TxStatus(_) => "TxStatus",
        Request::Account(_) => "Account",
        Request::Block(_) => "Block",
        Request::Headers { .. } => "Headers",
        Request::Attest(_) => "Attest",
        Request::Checkpoint => "Checkpoint",
        Request::Status => "Status",
        Request::WaitBlock { .. } => "WaitBlock",
        Request::WaitBlockIds { .. } => "WaitBlockIds",
        Request::WaitPrepared { .. } => "WaitPrepared",
    }
}

/// The name of a response's kind, for error messages.
pub fn response_kind(response: &Response) -> &'static str {
    match response {
        Response::Submitted(_) => "Submitted",
        Response::TxStatus(_) => "TxStatus",
        Response::Account { .. } => "Account",
        Response::Block { .. } => "Block",
        Response::Headers(_) => "Headers",
        Response::Attestation(_) => "Attestation",
        Response::Checkpoint { .. } => "Checkpoint",
        Response::Status(_) => "Status",
        Response::Error(_) => "Error",
        Response::BlockIds { .. } => "BlockIds",
        Response::Prepared(_) => "Prepared",
    }
}

/// The error for a response of the wrong kind.
pub fn unexpected(replica: ReplicaId, request: &Request, response: &Response) -> CallError {
    CallError::Unexpected {
        replica,
        asked: request_kind(request),
        got: response_kind(response),
    }
}
