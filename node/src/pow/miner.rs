//! The miner: its own thread, grinding nonces over the real header with sha256, at a set rate
//! (hashes per second, a token bucket refilled every 10 ms), so a replica's share of the hash
//! power is a setting. The driver hands it a template; a sealed block goes back to the driver
//! as an event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use quire_chain::Block;
use quire_chain::pow::grind;

use super::PowEvent;
use crate::driver::Event;

const SLICE: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Job {
    block: Option<Block>,
    generation: u64,
}

/// The driver's handle on its miner.
pub struct Miner {
    job: Mutex<Job>,
    wake: Condvar,
    rate: AtomicU64,
    hashes: AtomicU64,
    stop: AtomicBool,
}

impl Miner {
    pub fn new(hashes_per_s: u64) -> Arc<Miner> {
        Arc::new(Miner {
            job: Mutex::new(Job::default()),
            wake: Condvar::new(),
            rate: AtomicU64::new(hashes_per_s),
            hashes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Mine on this template from now on (`None`: stop mining until the next one).
    pub fn set_job(&self, block: Option<Block>) {
        if let Ok(mut job) = self.job.lock() {
            job.block = block;
            job.generation += 1;
        }
        self.wake.notify_all();
    }

    pub fn set_rate(&self, hashes_per_s: u64) {
        self.rate.store(hashes_per_s, Ordering::Relaxed);
        self.wake.notify_all();
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Hashes computed so far.
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }

    /// The miner thread's body.
    pub fn run(self: Arc<Self>, events: SyncSender<Event>) {
        let mut nonce: u64 = rand::random();
        let mut generation = u64::MAX;
        let mut header = None;
        while !self.stop.load(Ordering::Relaxed) {
            let slice_start = Instant::now();
            {
                let Ok(job) = self.job.lock() else { return };
                if job.generation != generation {
                    generation = job.generation;
                    header = job.block.clone();
                }
                if header.is_none() || self.rate() == 0 {
                    let _ = self.wake.wait_timeout(job, Duration::from_millis(100));
                    continue;
                }
            }
            let tries = (self.rate() / 100).max(1);
            if let Some(block) = header.as_mut() {
                let found = grind(&mut block.header, nonce, tries);
                self.hashes.fetch_add(tries, Ordering::Relaxed);
                nonce = nonce.wrapping_add(tries);
                if found {
                    let sealed = block.clone();
                    header = None;
                    if events
                        .try_send(Event::Pow(PowEvent::Mined(Box::new(sealed))))
                        .is_err()
                    {
                        tracing::warn!("driver queue full: a mined block was dropped");
                    }
                }
            }
            let spent = slice_start.elapsed();
            if spent < SLICE {
                std::thread::sleep(SLICE - spent);
            }
        }
    }
}
