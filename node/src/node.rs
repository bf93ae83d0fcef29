//! Starting a replica: load and check its files, recover its state from RocksDB, and wire the
//! transport, the driver thread, client RPC and the HTTP endpoint together.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quire_chain::Genesis;
use quire_chain::keys::Keypair;
use quire_chain::store::Store;
use quire_consensus::{Actor, Behaviour, Durable, Replica, Verifier};
use quire_rocks::RocksStore;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::driver::{Driver, Event, Shared, Transport};
use crate::http::{self, HttpContext, Links};
use crate::metrics::Metrics;
use crate::metrics::transport::{TransportCollector, connected_peers};
use crate::rpc_server::{self, RpcContext};
use crate::slowloris::Slowloris;
use crate::transport::{Mesh, MeshConfig};
use crate::verify_pool;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}")]
    Genesis(#[from] quire_chain::genesis::GenesisError),
    #[error("{0}")]
    Key(#[from] quire_chain::keys::KeyFileError),
    #[error("replica {id}: the key in {path} is not validator {id} of the genesis")]
    WrongKey { id: u32, path: PathBuf },
    #[error("replica id {0} is not in the genesis (it has {1} validators)")]
    UnknownId(u32, usize),
    #[error("data directory {path}: {source}")]
    Store {
        path: PathBuf,
        source: quire_chain::store::StoreError,
    },
    #[error("cannot start the consensus core: {0}")]
    Core(#[from] quire_consensus::ReplicaError),
    #[error("storage failure, replica stopped: {0}")]
    Storage(quire_chain::store::StoreError),
    #[error("transport: {0}")]
    Transport(String),
    #[error("cannot listen for HTTP on {0}: {1}")]
    Http(std::net::SocketAddr, std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Everything a replica needs, loaded and checked before anything starts.
pub struct Loaded {
    pub config: Config,
    pub genesis: Genesis,
    pub key: Keypair,
    pub store: Arc<RocksStore>,
}

pub fn load(config: Config) -> Result<Loaded, StartError> {
    let genesis = Genesis::load(&config.genesis)?;
    let key = Keypair::read_file(&config.key)?;
    let n = genesis.validators.n();
    let validator = genesis
        .validators
        .get(config.id)
        .ok_or(StartError::UnknownId(config.id, n))?;
    if validator.key != key.public() {
        return Err(StartError::WrongKey {
            id: config.id,
            path: config.key.clone(),
        });
    }
    // Local parameters are checked against the network's rules (a pipeline deeper than the
    // genesis's watermark window could never fill).
    config
        .params
        .validate(&genesis.protocol)
        .map_err(quire_consensus::ReplicaError::from)?;
    let store =
        RocksStore::open(&config.data_dir, &genesis).map_err(|source| StartError::Store {
            path: config.data_dir.clone(),
            source,
        })?;
    Ok(Loaded {
        config,
        genesis,
        key,
        store: Arc::new(store),
    })
}

/// Rebuilds the consensus core from the store: chain head, ledger, and consensus log.
fn recover_core(loaded: &Loaded) -> Result<Actor, StartError> {
    let store_err = |source| StartError::Store {
        path: loaded.config.data_dir.clone(),
        source,
    };
    let durable = Durable::read(&*loaded.store, loaded.genesis.chain_id()).map_err(store_err)?;
    let verifier = Verifier::new(&loaded.genesis);
    let replica = Replica::recover(
        loaded.config.id,
        loaded.key.clone(),
        verifier,
        loaded.config.params.clone(),
        durable,
    )?;
    Ok(Actor::new(replica, rand::random()))
}

pub(crate) struct MeshTransport(pub(crate) Arc<Mesh>);

impl Transport for MeshTransport {
    fn send(&self, to: u32, frame: Arc<Vec<u8>>) {
        self.0.send(to, frame);
    }
    fn broadcast(&self, frame: Arc<Vec<u8>>) {
        self.0.broadcast(frame);
    }
    fn is_blocked(&self, to: u32) -> bool {
        self.0.is_blocked(to)
    }
}

/// The admin API's handle on the transport: link faults, the slowloris attack, and what the
/// verification pool throws away unread.
pub(crate) struct MeshLinks {
    pub(crate) mesh: Arc<Mesh>,
    pub(crate) slowloris: Slowloris,
    pub(crate) discarding: Arc<verify_pool::Discarding>,
}

impl Links for MeshLinks {
    fn set_blocked(&self, peers: std::collections::BTreeSet<u32>) {
        self.mesh.set_blocked(peers);
    }
    fn set_delay(&self, peer: u32, delay: Duration) {
        self.mesh.set_delay(peer, delay);
    }
    fn extra_metrics(&self) -> String {
        self.slowloris.metrics()
    }
    fn set_behaviour(&self, behaviour: Behaviour) {
        self.slowloris.set(behaviour == Behaviour::Slowloris);
        self.discarding.set(behaviour);
    }
}

/// Runs the replica until SIGINT/SIGTERM or a fatal error.
pub fn run(loaded: Loaded) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loaded.config.worker_threads)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(serve(loaded))
}

async fn serve(loaded: Loaded) -> Result<(), StartError> {
    if loaded.genesis.protocol.consensus == quire_chain::genesis::ConsensusMode::Pow {
        return crate::pow::serve(loaded).await;
    }
    let actor = recover_core(&loaded)?;
    let config = &loaded.config;
    tracing::info!(
        id = config.id,
        height = loaded.store.head().height,
        view = actor.replica.view(),
        listen = %config.listen,
        "replica starting"
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
    let metrics = Metrics::new(config.id, loaded.genesis.validators.n())
        .with_collector(Box::new(TransportCollector(mesh.clone())));
    let shared = Arc::new(Shared {
        metrics: Arc::new(metrics),
        ..Shared::default()
    });
    shared.height.send_replace(loaded.store.head().height);
    let signatures = Arc::new(verify_pool::SignatureCache::new(1 << 18));
    let (events, inbox) = std::sync::mpsc::sync_channel::<Event>(16_384);
    let transport: Arc<dyn Transport> = Arc::new(MeshTransport(mesh.clone()));
    let (block_requests, block_server) = crate::block_server::BlockServer {
        id: config.id,
        key: loaded.key.clone(),
        chain_id: loaded.genesis.chain_id(),
        store: loaded.store.clone(),
        transport: transport.clone(),
        metrics: shared.metrics.clone(),
    }
    .start()
    .map_err(StartError::Runtime)?;
    let driver = Driver::new(
        actor,
        loaded.genesis.clone(),
        loaded.store.clone(),
        transport,
        shared.clone(),
        Duration::from_millis(config.tick_ms),
    )
    .with_block_server(block_requests);
    let driver_thread = std::thread::Builder::new()
        .name(format!("driver-{}", config.id))
        .spawn(move || driver.run(inbox))
        .map_err(StartError::Runtime)?;

    // What the behaviour throws away unread (an amplifier's answers), before any verifying.
    let discarding = Arc::new(verify_pool::Discarding::default());
    // Replica frames → verification pool → driver.
    let pool = verify_pool::start(
        verify_pool::PoolContext {
            inbox: mesh_events.frames.clone(),
            verifier: Verifier::new(&loaded.genesis),
            watermarks: shared.watermarks.clone(),
            cache: signatures.clone(),
            events: events.clone(),
            metrics: shared.metrics.clone(),
            budget: verify_pool::Budget {
                signatures_per_s: config.peer_signatures_per_s,
                burst_signatures: config.peer_signatures_per_s.saturating_mul(2),
            },
            discarding: discarding.clone(),
            block_credits: shared.block_credits.clone(),
        },
        config.verify_threads,
    )
    .map_err(StartError::Runtime)?;

    // Clients.
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
        signatures.clone(),
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

    // Metrics and admin.
    let listener = TcpListener::bind(config.http)
        .await
        .map_err(|e| StartError::Http(config.http, e))?;
    let http_ctx = Arc::new(HttpContext::new(
        config.id,
        config.admin,
        shared.clone(),
        events.clone(),
        Arc::new(MeshLinks {
            mesh: mesh.clone(),
            slowloris: Slowloris::start(config.id, &loaded.genesis.validators),
            discarding,
        }),
        loaded.genesis.validators.n(),
    ));
    tokio::spawn(http::serve(listener, http_ctx));

    tracing::info!(id = config.id, "replica ready");
    let result = wait_for_exit(&driver_thread).await;
    let _ = events.try_send(Event::Shutdown);
    mesh.shutdown().await;
    // The inbox is closed now; the pool's threads stop within a pop timeout. The block server
    // stops once the driver, its only sender, is gone.
    let _ =
        tokio::task::spawn_blocking(move || pool.into_iter().for_each(|t| drop(t.join()))).await;
    drop(block_server);
    match tokio::task::spawn_blocking(move || driver_thread.join()).await {
        Ok(Ok(Err(e))) => Err(StartError::Storage(e)),
        _ => result,
    }
}

/// Waits for SIGINT or SIGTERM, or for the driver to stop on its own (a storage failure).
pub(crate) async fn wait_for_exit(
    driver: &std::thread::JoinHandle<Result<(), quire_chain::store::StoreError>>,
) -> Result<(), StartError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(StartError::Runtime)?;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = ticker.tick() => {
                if driver.is_finished() {
                    tracing::error!("the driver stopped (storage failure?); shutting down");
                    return Ok(());
                }
            }
        }
    }
}
