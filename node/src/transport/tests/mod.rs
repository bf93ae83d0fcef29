//! Transport tests over real QUIC on 127.0.0.1. Every await that depends on the network is
//! bounded by a timeout of several seconds; nothing asserts on a sleep.

mod frame;
mod mesh;
mod tls;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint};
use quire_chain::validators::Validator;
use quire_chain::{Keypair, ReplicaId, ValidatorSet};

use super::mesh::{Mesh, MeshConfig, MeshEvents};
use super::tls::{SERVER_NAME, replica_client_config, server_config};

/// Generous: a loaded 2-core machine must not make these tests flake.
const WAIT: Duration = Duration::from_secs(10);

fn key(i: u8) -> Keypair {
    Keypair::from_secret([i + 1; 32])
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Awaits `future` or fails the test after [`WAIT`].
async fn within<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn next_frame(events: &mut MeshEvents) -> (ReplicaId, Vec<u8>) {
    within("a frame", events.frames.recv())
        .await
        .expect("frames channel closed")
}

fn frame(text: &str) -> Arc<Vec<u8>> {
    Arc::new(text.as_bytes().to_vec())
}

/// A validator set of `n` replicas on localhost ports that were free a moment ago (held together
/// so they are distinct, then released for the meshes to bind).
struct Net {
    validators: ValidatorSet,
    ports: Vec<u16>,
}

impl Net {
    fn new(n: u8) -> Net {
        let sockets: Vec<_> = (0..n)
            .map(|_| std::net::UdpSocket::bind(localhost()).unwrap())
            .collect();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        let validators = (0..n)
            .map(|i| Validator {
                id: u32::from(i),
                key: key(i).public(),
                address: format!("127.0.0.1:{}", ports[usize::from(i)]),
            })
            .collect();
        Net {
            validators: ValidatorSet::new(validators, None).unwrap(),
            ports,
        }
    }

    fn config(&self, id: ReplicaId) -> MeshConfig {
        let listen = SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize]));
        MeshConfig::new(id, key(id as u8), listen, self.validators.clone())
    }

    fn start(&self, id: ReplicaId) -> (Mesh, MeshEvents) {
        Mesh::start(self.config(id)).unwrap()
    }

    fn start_all(&self) -> (Vec<Mesh>, Vec<MeshEvents>) {
        (0..self.validators.n() as u32)
            .map(|id| self.start(id))
            .unzip()
    }

    fn addr(&self, id: ReplicaId) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize]))
    }
}

/// Every mesh broadcasts once and hears everyone once, so all links are up afterwards.
async fn warm_up(meshes: &[Mesh], events: &mut [MeshEvents]) {
    for mesh in meshes {
        mesh.broadcast(frame("warm-up"));
    }
    for events in events.iter_mut() {
        for _ in 1..meshes.len() {
            assert_eq!(next_frame(events).await.1, b"warm-up");
        }
    }
}

/// A client-only endpoint for tests that play a peer or a client by hand.
fn client_endpoint() -> Endpoint {
    Endpoint::client(localhost()).unwrap()
}

/// A bare server (replica 0 of `allowed`) and a replica-1 client connected to it: the two ends of
/// one connection, for tests below the mesh.
async fn raw_pair() -> (Endpoint, Endpoint, Connection, Connection) {
    let allowed = Arc::new(BTreeMap::from([(key(1).public().to_bytes(), 1)]));
    let server = Endpoint::server(server_config(&key(0), allowed).unwrap(), localhost()).unwrap();
    let client = client_endpoint();
    let config = replica_client_config(&key(1), key(0).public()).unwrap();
    let connecting = client
        .connect_with(config, server.local_addr().unwrap(), SERVER_NAME)
        .unwrap();
    // The server answers only once the incoming connection is awaited, so drive both at once.
    let accepting = async { server.accept().await.unwrap().await };
    let (client_conn, server_conn) =
        within("handshake", async { tokio::join!(connecting, accepting) }).await;
    (server, client, client_conn.unwrap(), server_conn.unwrap())
}
