//! Serving an `axum` router over HTTP/1.1 with limits: at most `connections_max` connections at
//! once (accepting waits for a free slot, so a flood of sockets queues in the kernel rather than
//! in memory), a deadline for a request's head (a client that trickles its headers is cut off)
//! and, optionally, a deadline for a whole connection. `axum::serve` has none of these, so the
//! accept loop is hyper's own connection builder; routing, extraction and responses are axum's.
//! Handlers see the peer's address as `ConnectInfo<SocketAddr>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    /// `None` for servers with long-lived streams (server-sent events).
    pub connection_time_max: Option<Duration>,
}

impl Limits {
    /// A replica's metrics and admin endpoint: short requests, few clients.
    pub const REPLICA: Limits = Limits {
        connections_max: 64,
        header_read_timeout: Duration::from_secs(5),
        connection_time_max: Some(Duration::from_secs(30)),
    };
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            connection(stream, peer, router, limits).await;
            drop(permit);
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let result = match limits.connection_time_max {
        Some(limit) => match tokio::time::timeout(limit, conn).await {
            Ok(r) => r,
            Err(_) => return,
        },
        None => conn.await,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        tokio::spawn(serve(listener, router, limits));
        addr
    }

    async fn get_root(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Handlers see who connected; a client trickling its request head loses its slot to the
    /// deadline, and the server serves the next one.
    #[tokio::test]
    async fn a_slow_client_cannot_hold_the_only_slot() {
        let addr = start(Limits {
            connections_max: 1,
            header_read_timeout: Duration::from_millis(300),
            connection_time_max: Some(Duration::from_secs(5)),
        })
        .await;
        assert!(get_root(addr).await.ends_with("127.0.0.1"));
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(3), get_root(addr)).await;
        assert!(answer.unwrap().contains("200 OK"));
    }
}
