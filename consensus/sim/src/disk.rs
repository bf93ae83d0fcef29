//! A replica's disk in the simulator: the in-memory store, and the faults a process meets around
//! the executor's one durable write per step — the process dies while the write is on its way,
//! right after it, or halfway through the sends that follow; or the disk refuses the write.
//!
//! The store is atomic, as RocksDB's synced write batch is: a crash in the middle of a write (of
//! many blocks, say, from state transfer) leaves all of it or none of it, never a prefix. What
//! the fault tests is the replica: that after any of these it restarts from what is durable and
//! never contradicts what it may or may not have sent.
//!
//! A power cut is the other way to lose a write: the real store forces a write to disk only when
//! it holds consensus entries or accepted batches (votes, and what they vote for, must be
//! durable before they are sent); blocks written alone
//! sit in the kernel's cache until the next synced write. With [`Disk::model_power_cuts`] on,
//! [`Disk::power_cut`] throws away what was written since the last synced write, as the machine
//! losing power would.

use std::sync::{Mutex, MutexGuard};

use quire_chain::block::{BlockRecord, Executed, Header};
use quire_chain::pow::Undo;
use quire_chain::store::{
    ConsensusEntries, MemoryStore, PowWrite, Store, StoreError, TxLocation, WriteSet,
};
use quire_chain::{Account, Address, Genesis, Hash, TxId};

/// Where a step is cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The process dies while its write is on the way to the disk: the write is then wholly
    /// durable (`lands`) or wholly lost.
    MidWrite { lands: bool },
    /// The write is durable; the process dies before any message of the step leaves.
    AfterWrite,
    /// The write is durable; the process dies after only the first `frames` messages left.
    MidSends { frames: usize },
    /// The disk refuses the write (full, failing): the replica must stop, having sent nothing.
    WriteFails,
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::MidWrite { lands: true } => f.write_str("crash mid-write (write lands)"),
            CrashPoint::MidWrite { lands: false } => f.write_str("crash mid-write (write lost)"),
            CrashPoint::AfterWrite => f.write_str("crash after the write, before the sends"),
            CrashPoint::MidSends { frames } => write!(f, "crash after {frames} frames sent"),
            CrashPoint::WriteFails => f.write_str("disk refuses the write"),
        }
    }
}

/// Which write a fault waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The next write.
    NextWrite,
    /// The next write of two blocks or more.
    MultiBlockWrite,
}

impl Trigger {
    fn matches(&self, writes: &WriteSet) -> bool {
        match self {
            Trigger::NextWrite => !writes.is_empty(),
            Trigger::MultiBlockWrite => writes.blocks.len() >= 2,
        }
    }
}

/// The error a faulty write returns: the executor then sends nothing, and the simulator ends the
/// replica's process.
pub const CRASH_MESSAGE: &str = "simulated fault";

#[derive(Default)]
struct State {
    armed: Option<(Trigger, CrashPoint)>,
    /// The fault that went off at the last write, and the blocks that write made durable.
    fired: Option<(CrashPoint, Vec<Executed>)>,
    /// Whether writes since the last synced one are tracked (it costs a copy of the store).
    power_cuts: bool,
    /// The store as of the last synced write, kept while unsynced writes followed it.
    since_sync: Option<MemoryStore>,
}

pub struct Disk {
    store: MemoryStore,
    state: Mutex<State>,
}

impl Disk {
    pub fn new(genesis: &Genesis) -> Disk {
        Disk {
            store: MemoryStore::new(genesis),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is two options, consistent whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Overwrites one account, as a corrupted disk might (see [`MemoryStore::tamper_account`]).
    pub fn tamper_account(&self, address: Address, account: Account) {
        self.store.tamper_account(address, account);
    }

    /// The next write that `trigger` matches meets `point`.
    pub fn arm(&self, trigger: Trigger, point: CrashPoint) {
        self.state().armed = Some((trigger, point));
    }

    pub fn is_armed(&self) -> bool {
        self.state().armed.is_some()
    }

    pub fn disarm(&self) {
        self.state().armed = None;
    }

    /// From now on, remember what a power cut would lose (see [`Disk::power_cut`]).
    pub fn model_power_cuts(&self) {
        self.state().power_cuts = true;
    }

    /// Blocks written since the last synced write, which a power cut now would lose.
    pub fn unsynced_blocks(&self) -> u64 {
        let state = self.state();
        match &state.since_sync {
            Some(synced) => self.store.head().height - synced.head().height,
            None => 0,
        }
    }

    /// The machine loses power: what was written since the last synced write is gone. Returns
    /// how many blocks were lost. (The replica's process must be crashed with it.)
    pub fn power_cut(&mut self) -> u64 {
        let lost = self.unsynced_blocks();
        let synced = self.state().since_sync.take();
        if let Some(synced) = synced {
            self.store = synced;
        }
        lost
    }

    /// The RocksDB store's rule: a write is synced when it holds votes or what they vote for.
    fn track_sync(&self, state: &mut State, writes: &WriteSet) {
        if !state.power_cuts {
            return;
        }
        if writes.must_sync() {
            state.since_sync = None;
        } else if state.since_sync.is_none() {
            state.since_sync = Some(self.store.snapshot());
        }
    }

    /// How many frames may leave before the process dies, when the last write met a
    /// [`CrashPoint::MidSends`].
    pub fn frames_before_crash(&self) -> Option<usize> {
        match self.state().fired {
            Some((CrashPoint::MidSends { frames }, _)) => Some(frames),
            _ => None,
        }
    }

    /// The fault the last write met, if any, with the blocks it made durable anyway.
    pub fn take_fired(&self) -> Option<(CrashPoint, Vec<Executed>)> {
        self.state().fired.take()
    }
}

impl Store for Disk {
    fn head(&self) -> Header {
        self.store.head()
    }
    fn block(&self, height: u64) -> Result<Option<BlockRecord>, StoreError> {
        self.store.block(height)
    }
    fn tx_location(&self, id: &TxId) -> Result<Option<TxLocation>, StoreError> {
        self.store.tx_location(id)
    }
    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        self.store.account(address)
    }
    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        self.store.accounts()
    }
    fn consensus_entries(&self) -> Result<ConsensusEntries, StoreError> {
        self.store.consensus_entries()
    }
    fn batch(&self, seq: u64, digest: &Hash) -> Result<Option<quire_chain::Batch>, StoreError> {
        self.store.batch(seq, digest)
    }
    fn reset_chain(&self, genesis: &Genesis) -> Result<(), StoreError> {
        // A synced write in the real store.
        self.state().since_sync = None;
        self.store.reset_chain(genesis)
    }
    // The simulator runs PBFT only; proof-of-work writes pass through untouched.
    fn write_pow(&self, write: &PowWrite) -> Result<(), StoreError> {
        self.store.write_pow(write)
    }
    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError> {
        self.store.undo(hash)
    }

    fn write(&self, writes: &WriteSet) -> Result<(), StoreError> {
        let mut state = self.state();
        let point = match state.armed {
            Some((trigger, point)) if trigger.matches(writes) => point,
            _ => {
                self.track_sync(&mut state, writes);
                return self.store.write(writes);
            }
        };
        state.armed = None;
        let lands = match point {
            CrashPoint::MidWrite { lands } => lands,
            CrashPoint::AfterWrite | CrashPoint::MidSends { .. } => true,
            CrashPoint::WriteFails => false,
        };
        if lands {
            self.track_sync(&mut state, writes);
            self.store.write(writes)?;
        }
        let durable = if lands {
            writes.blocks.clone()
        } else {
            Vec::new()
        };
        state.fired = Some((point, durable));
        match point {
            // The process lives on until its sends are cut.
            CrashPoint::MidSends { .. } => Ok(()),
            _ => Err(StoreError::Engine(format!("{CRASH_MESSAGE}: {point}"))),
        }
    }
}
