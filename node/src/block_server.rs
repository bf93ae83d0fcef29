//! Serving blocks to replicas that catch up (state transfer), on a thread of its own: reading up
//! to 64 blocks from RocksDB and encoding them takes milliseconds, which the consensus thread
//! should spend on consensus. Requests beyond a small queue are dropped (the peer asks again);
//! the core already rate-limits them per peer.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use quire_chain::codec::Encode;
use quire_chain::{Hash, Keypair, ReplicaId};
use quire_consensus::exec::read_blocks;
use quire_consensus::message::{Blocks, Message, Signed};
use quire_rocks::RocksStore;

use crate::driver::Transport;
use crate::metrics::Metrics;

/// One request: blocks `from..=to_height` for replica `to`.
pub struct Request {
    pub to: ReplicaId,
    pub from: u64,
    pub to_height: u64,
}

/// Requests waiting to be served, at most.
const QUEUE: usize = 16;

pub struct BlockServer {
    pub id: ReplicaId,
    pub key: Keypair,
    pub chain_id: Hash,
    pub store: Arc<RocksStore>,
    pub transport: Arc<dyn Transport>,
    pub metrics: Arc<Metrics>,
}

/// The sending end the driver uses.
#[derive(Clone)]
pub struct Requests(SyncSender<Request>);

impl Requests {
    /// Queues a request; `false` if the queue is full (the request is dropped and counted).
    pub fn offer(&self, request: Request) -> bool {
        match self.0.try_send(request) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

impl BlockServer {
    pub fn start(self) -> std::io::Result<(Requests, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let handle = std::thread::Builder::new()
            .name(format!("blocks-{}", self.id))
            .spawn(move || self.run(rx))?;
        Ok((Requests(tx), handle))
    }

    fn run(self, requests: Receiver<Request>) {
        while let Ok(r) = requests.recv() {
            let blocks = read_blocks(&*self.store, r.from, r.to_height);
            if blocks.is_empty() {
                continue;
            }
            let reply = Message::Blocks(Signed::sign(
                Blocks(blocks),
                self.id,
                &self.key,
                &self.chain_id,
            ));
            let frame = reply.to_bytes();
            self.metrics.sent(reply.kind(), 1, frame.len());
            self.transport.send(r.to, Arc::new(frame));
        }
    }
}
