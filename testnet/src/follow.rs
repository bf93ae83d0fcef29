//! Reading a live chain block by block, as the benchmark and the scenario runner do to time
//! commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_chain::{Block, TxId};
use quire_client::Client;
use quire_wire::rpc::{BlockRef, Request, Response};

/// How long a replica may go without a new block before the next candidate is asked instead
/// (a replica cut off by a partition answers, but its chain does not grow).
const PATIENCE: Duration = Duration::from_secs(1);

/// Follows the chain at one of `candidates`, moving to the next when one stops answering or
/// falls behind.
pub struct Follower {
    client: Arc<Client>,
    candidates: Vec<u32>,
    which: usize,
    /// How long the replica may hold a request for a block not committed yet.
    poll: Duration,
    last_block: Instant,
    /// The height of the next block to read.
    pub next: u64,
}

impl Follower {
    /// Starts at height 1.
    pub fn new(client: Arc<Client>, candidates: Vec<u32>, poll: Duration) -> Follower {
        Follower {
            client,
            candidates,
            which: 0,
            poll,
            last_block: Instant::now(),
            next: 1,
        }
    }

    /// Starts after the head of the first candidate (blocks committed before now are skipped).
    pub async fn from_head(client: Arc<Client>, candidates: Vec<u32>, poll: Duration) -> Follower {
        let mut follower = Follower::new(client, candidates, poll);
        if let Some(replica) = follower.replica()
            && let Ok(Response::Block { block: Some(b), .. }) = follower
                .client
                .call(replica, &Request::Block(BlockRef::Latest))
                .await
        {
            follower.next = b.header.height + 1;
        }
        follower
    }

    fn replica(&self) -> Option<u32> {
        (!self.candidates.is_empty()).then(|| self.candidates[self.which % self.candidates.len()])
    }

    /// The next block, or `None` after a short wait when it is not committed yet (or the replica
    /// did not answer, or has had no new block for a while, in which case the next candidate is
    /// asked from now on).
    pub async fn next_block(&mut self) -> Option<Block> {
        let request = Request::WaitBlock {
            height: self.next,
            wait_ms: self.wait_ms(),
        };
        match self.next_answer(request).await? {
            Response::Block { block, .. } => block,
            _ => None,
        }
    }

    /// The next block's height and transaction ids, as [`Follower::next_block`] but without the
    /// payloads (what a benchmark needs to time commits; far less for the replica to send).
    pub async fn next_ids(&mut self) -> Option<(u64, Vec<TxId>)> {
        let request = Request::WaitBlockIds {
            height: self.next,
            wait_ms: self.wait_ms(),
        };
        match self.next_answer(request).await? {
            Response::BlockIds {
                header: Some(header),
                ids,
                ..
            } => Some((header.height, ids)),
            _ => None,
        }
    }

    /// How long the replica may hold a request: it answers as soon as the block commits (or
    /// `poll` passes), so measured latencies carry no polling delay.
    fn wait_ms(&self) -> u32 {
        u32::try_from(self.poll.as_millis()).unwrap_or(u32::MAX)
    }

    /// Sends `request` (for block `next`) to the current candidate; the answer if it holds the
    /// block, else `None` (moving on to the next candidate as described above).
    async fn next_answer(&mut self, request: Request) -> Option<Response> {
        let Some(replica) = self.replica() else {
            tokio::time::sleep(self.poll).await;
            return None;
        };
        match self.client.call(replica, &request).await {
            Ok(
                response @ (Response::Block { block: Some(_), .. }
                | Response::BlockIds {
                    header: Some(_), ..
                }),
            ) => {
                self.next += 1;
                self.last_block = Instant::now();
                return Some(response);
            }
            Ok(_) => {
                if self.last_block.elapsed() > PATIENCE {
                    self.which += 1;
                    self.last_block = Instant::now();
                }
            }
            Err(_) => {
                self.which += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        None
    }
}
