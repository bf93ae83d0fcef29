//! The proof-of-work replica: the same RocksDB store, QUIC mesh, client RPC and admin API as a
//! PBFT replica, around a [`PowChain`](quire_chain::pow::PowChain) instead of the PBFT core. A
//! [`driver`] thread owns the chain; a [`miner`] thread grinds real sha256 at a set rate; blocks
//! travel as [`message`]s over the mesh.

pub mod admin;
pub mod double_spend;
pub mod driver;
pub mod message;
pub mod miner;

use std::sync::Arc;
use std::time::Duration;

use quire_chain::Block;
use quire_chain::pow::{Limits, PowChain};
use tokio::net::TcpListener;

use crate::driver::{Event, Shared};
use crate::http::{self, HttpContext, Links};
use crate::metrics::transport::connected_peers;
use crate::node::{Loaded, MeshLinks, MeshTransport, StartError, wait_for_exit};
use crate::rpc_server::{self, RpcContext};
use crate::transport::{Mesh, MeshConfig};
use driver::{PowDriver, PowShared};
use miner::Miner;

/// How a proof-of-work replica behaves; toggled at run time like the PBFT behaviours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowBehaviour {
    Honest,
    /// Eyal & Sirer's selfish mining: withholds its blocks and publishes to orphan others'.
    SelfishMine,
    /// Mines and never publishes.
    Withhold,
    /// Reverses a chosen payment with a private branch holding a conflicting transfer
    /// ([`double_spend`]); set with an [`double_spend::Order`] ([`PowEvent::DoubleSpend`]).
    DoubleSpend,
}

impl PowBehaviour {
    pub const ALL: [PowBehaviour; 4] = [
        PowBehaviour::Honest,
        PowBehaviour::SelfishMine,
        PowBehaviour::Withhold,
        PowBehaviour::DoubleSpend,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            PowBehaviour::Honest => "honest",
            PowBehaviour::SelfishMine => "selfish-mine",
            PowBehaviour::Withhold => "withhold",
            PowBehaviour::DoubleSpend => "double-spend",
        }
    }

    pub fn parse(s: &str) -> Option<PowBehaviour> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// Events only a proof-of-work driver handles.
#[derive(Debug)]
pub enum PowEvent {
    /// A frame from an authenticated replica connection.
    Frame {
        from: quire_chain::ReplicaId,
        bytes: Vec<u8>,
    },
    Mined(Box<Block>),
    SetBehaviour(PowBehaviour),
    /// Arm the `double-spend` behaviour with this order.
    DoubleSpend(Box<double_spend::Order>),
    SetHashRate(u64),
}

/// The mesh's metrics and this mode's, for `/metrics`.
struct PowLinks {
    mesh: MeshLinks,
    pow: Arc<PowShared>,
}

impl Links for PowLinks {
    fn set_blocked(&self, peers: std::collections::BTreeSet<u32>) {
        self.mesh.set_blocked(peers);
    }
    fn set_delay(&self, peer: u32, delay: Duration) {
        self.mesh.set_delay(peer, delay);
    }
    fn extra_metrics(&self) -> String {
        self.pow
            .metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
    fn pow_tree(&self) -> Option<String> {
        self.pow.tree.lock().ok().map(|t| t.clone())
    }
}

/// Runs a proof-of-work replica until SIGINT/SIGTERM or a storage failure.
pub async fn serve(loaded: Loaded) -> Result<(), StartError> {
    let config = &loaded.config;
    let limits = Limits {
        undo_depth: config.pow.undo_depth,
        ..Limits::default()
    };
    let chain =
        PowChain::open(&loaded.genesis, &*loaded.store, limits).map_err(|e| StartError::Store {
            path: config.data_dir.clone(),
            source: quire_chain::store::StoreError::Corrupt(e.to_string()),
        })?;
    tracing::info!(
        id = config.id,
        height = chain.head().height,
        hashes_per_s = config.pow.hashes_per_s,
        listen = %config.listen,
        "proof-of-work replica starting"
    );
    let mesh_config = MeshConfig::new(
        config.id,
        loaded.key.clone(),
        config.listen,
        loaded.genesis.validators.clone(),
    );
    let (mesh, mut mesh_events) =
        Mesh::start(mesh_config).map_err(|e| StartError::Transport(e.to_string()))?;
    let mesh = Arc::new(mesh);
    let metrics = crate::metrics::Metrics::new(config.id, loaded.genesis.validators.n())
        .with_collector(Box::new(crate::metrics::transport::TransportCollector(
            mesh.clone(),
        )));
    let shared = Arc::new(Shared {
        metrics: Arc::new(metrics),
        ..Shared::default()
    });
    let pow_shared = Arc::new(PowShared::default());
    let (events, inbox) = std::sync::mpsc::sync_channel::<Event>(16_384);
    let miner = Miner::new(config.pow.hashes_per_s);
    let miner_thread = {
        let miner = miner.clone();
        let events = events.clone();
        std::thread::Builder::new()
            .name(format!("miner-{}", config.id))
            .spawn(move || miner.run(events))
            .map_err(StartError::Runtime)?
    };
    let driver = PowDriver::new(
        config.id,
        chain,
        loaded.store.clone(),
        Arc::new(MeshTransport(mesh.clone())),
        shared.clone(),
        pow_shared.clone(),
        miner.clone(),
        config.params.mempool_max,
    );
    let driver_thread = std::thread::Builder::new()
        .name(format!("pow-driver-{}", config.id))
        .spawn(move || driver.run(inbox))
        .map_err(StartError::Runtime)?;

    // Replica frames → driver. Blocks verify themselves (work, then execution) in the driver;
    // the inbox bounds what each peer can queue in bytes.
    let frames = mesh_events.frames.clone();
    let frames_to = events.clone();
    let frame_thread = std::thread::Builder::new()
        .name(format!("pow-frames-{}", config.id))
        .spawn(move || {
            while !frames.is_closed() {
                if let Some((from, bytes)) = frames.pop(Duration::from_millis(100))
                    && frames_to
                        .send(Event::Pow(PowEvent::Frame { from, bytes }))
                        .is_err()
                {
                    return;
                }
            }
        })
        .map_err(StartError::Runtime)?;
    let peers_mesh = mesh.clone();
    let rpc = Arc::new(RpcContext::new(
        config.id,
        loaded.key.clone(),
        loaded.genesis.chain_id(),
        loaded.store.clone(),
        shared.clone(),
        events.clone(),
        loaded.genesis.protocol.raw_payloads,
        Arc::new(move || connected_peers(&peers_mesh.stats()) as u32),
        Arc::new(crate::verify_pool::SignatureCache::new(1 << 16)),
        config.params.mempool_max,
    ));
    let client_slots = rpc_server::connection_slots();
    tokio::spawn(async move {
        while let Some(conn) = mesh_events.clients.recv().await {
            tokio::spawn(rpc_server::serve_connection(
                rpc.clone(),
                client_slots.clone(),
                conn,
            ));
        }
    });
    let listener = TcpListener::bind(config.http)
        .await
        .map_err(|e| StartError::Http(config.http, e))?;
    let links = PowLinks {
        mesh: MeshLinks {
            mesh: mesh.clone(),
            slowloris: crate::slowloris::Slowloris::start(config.id, &loaded.genesis.validators),
            discarding: Arc::default(),
        },
        pow: pow_shared,
    };
    let http_ctx = Arc::new(
        HttpContext::new(
            config.id,
            config.admin,
            shared.clone(),
            events.clone(),
            Arc::new(links),
            loaded.genesis.validators.n(),
        )
        .with_consensus(quire_chain::genesis::ConsensusMode::Pow),
    );
    tokio::spawn(http::serve(listener, http_ctx));

    tracing::info!(id = config.id, "replica ready");
    let result = wait_for_exit(&driver_thread).await;
    let _ = events.try_send(Event::Shutdown);
    miner.stop();
    mesh.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = miner_thread.join();
        let _ = frame_thread.join();
    })
    .await;
    match tokio::task::spawn_blocking(move || driver_thread.join()).await {
        Ok(Ok(Err(e))) => Err(StartError::Storage(e)),
        _ => result,
    }
}
