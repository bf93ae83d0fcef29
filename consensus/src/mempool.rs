//! Transactions waiting to be proposed and executed.
//!
//! Every replica keeps the transactions it has heard of until they execute: the primary proposes
//! from it, a backup times it (a ready transaction that waits too long means a faulty primary) and
//! re-proposes from it once it becomes primary. A transfer is *ready* when its nonce is the
//! sender's next one, counting transfers already proposed; a transfer from the future is parked
//! until its predecessors execute, so nonce gaps neither block others nor trigger view changes.
//!
//! What a replica proposes depends only on what it received, in the order it arrived (the
//! arrival-ordered queue), never on the iteration order of a map, so a simulator seed replays
//! byte for byte. The maps looked up per transaction are hashed, with the process's random keys
//! (a client cannot aim its ids at one bucket): ordered maps of random 32-byte keys were most of
//! a primary's time under load.
//!
//! Admission tells the truth (PBFT.md trap 12): a transaction the pool cannot hold is refused at
//! once with the reason, never accepted and dropped later. The pool is bounded in transactions
//! and in bytes, and per sender: a sender may have at most [`SENDER_PENDING_MAX`] transfers
//! waiting, none with a nonce that far ahead, and only as much in flight as its balance covers —
//! so a fresh, unfunded key cannot park thousands of future-nonce transfers.
//!
//! Transfers that arrive ahead of their sender's next nonce may fill at most a quarter of the
//! pool ([`EARLY_SHARE`]). Under overload, clients' retries arrive out of order: a full pool of
//! transfers whose predecessors had been refused held nothing ready, refused everything else,
//! and the network committed nothing until they expired.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use quire_chain::{Address, Ledger, Transaction, Transfer, TxId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Queued,
    Proposed,
    Parked,
}

#[derive(Clone, Debug)]
struct Entry {
    tx: Transaction,
    order: u64,
    tick: u64,
    state: State,
    /// It arrived early (counted in `Mempool::early`; see [`EARLY_SHARE`]).
    early: bool,
    /// The view whose primary this replica first handed it to, and when (see
    /// [`Mempool::forwarded`]).
    forwarded: Option<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Duplicate,
    /// No room (transactions or bytes): retry later, or elsewhere.
    Full,
    /// The sender's nonce is already used: `expected` is its next one.
    StaleNonce {
        expected: u64,
    },
    /// The sender already has `pending` transfers waiting (or this nonce is that far ahead).
    SenderLimit {
        pending: u32,
    },
    /// The sender's waiting transfers would spend more than its balance.
    Unfunded {
        balance: u64,
    },
}

/// Transfers one sender may have waiting (and how far ahead of its next nonce one may be).
pub const SENDER_PENDING_MAX: u32 = 1024;

/// What one sender has waiting.
#[derive(Clone, Copy, Debug, Default)]
struct Sender {
    pending: u32,
    amount: u128,
    /// The nonce after the last transfer of this sender admitted in order: a transfer with it
    /// follows one that is held, and is not early.
    next: Option<u64>,
    /// When one of this sender's transfers last executed here (0: none yet): its parked
    /// transfers expire only a TTL after this or their own arrival, whichever is later.
    progress_tick: u64,
}

#[derive(Clone, Debug)]
pub struct Mempool {
    max: usize,
    bytes_max: usize,
    bytes: usize,
    entries: HashMap<TxId, Entry>,
    senders: HashMap<Address, Sender>,
    /// Queued transactions by arrival order.
    queue: BTreeMap<u64, TxId>,
    /// Parked transfers by (sender, nonce).
    parked: BTreeMap<(Address, u64), TxId>,
    /// The sender's next nonce after the transfers this replica proposed.
    proposed_nonce: HashMap<Address, u64>,
    next_order: u64,
    /// Entries that arrived early (ahead of their sender's next nonce).
    early: usize,
}

/// At most `1/EARLY_SHARE` of the pool may be transfers that arrived early: ahead of their
/// sender's next nonce, and not right after a transfer of that sender admitted in order. Every
/// other transfer was ready when it arrived or follows a chain of held ones back to one that
/// was; such a chain stays until it is proposed (a link made stale by a conflicting transfer
/// goes, and the nonce moves past it), so a full pool always has work to propose.
pub const EARLY_SHARE: usize = 4;

/// Parked transfers whose predecessors never arrive are dropped after this many ticks without
/// their sender's chain moving. Counted from their own arrival instead, under overload a
/// transfer admitted early expired just before its turn came — its predecessors had been
/// executing all along, only slower than 30 s for the whole queue — and the client, told it was
/// accepted, had no reason to send it again: every later transfer of that sender then waited
/// for a nonce no replica held, and a benchmark at six times the knee committed a third of it.
const PARKED_TTL_TICKS: u64 = 3000;
/// The default byte bound (raw payloads can be 64 KiB each; transfers are 145 bytes).
pub const MEMPOOL_BYTES_MAX: usize = 256 << 20;

impl Mempool {
    pub fn new(max: usize) -> Mempool {
        Self::with_bytes(max, MEMPOOL_BYTES_MAX)
    }

    pub fn with_bytes(max: usize, bytes_max: usize) -> Mempool {
        Mempool {
            max,
            bytes_max,
            bytes: 0,
            entries: HashMap::new(),
            senders: HashMap::new(),
            queue: BTreeMap::new(),
            parked: BTreeMap::new(),
            proposed_nonce: HashMap::new(),
            next_order: 0,
            early: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.entries.contains_key(id)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Transactions held that did not arrive early: work a primary can propose now or once the
    /// in-order chain before it is proposed. Early ones are bounded by their own share
    /// ([`EARLY_SHARE`]) and may never become proposable.
    pub fn in_order(&self) -> usize {
        self.entries.len().saturating_sub(self.early)
    }

    /// Admits `tx` (its signature already checked) or says why not, judging its nonce and
    /// funds against `ledger` (the executed state).
    pub fn insert(&mut self, tx: Transaction, tick: u64, ledger: &Ledger) -> Result<(), Refusal> {
        let id = tx.id();
        if self.entries.contains_key(&id) {
            return Err(Refusal::Duplicate);
        }
        let size = tx.encoded_len();
        if self.entries.len() >= self.max || self.bytes + size > self.bytes_max {
            return Err(Refusal::Full);
        }
        let mut early = false;
        if let Some(t) = tx.as_transfer() {
            let t = t.transfer;
            let account = ledger.account(&t.from);
            let sender = self.senders.get(&t.from).copied().unwrap_or_default();
            early = self.judge_nonce(&t, ledger, sender.next, sender.pending, self.early)?;
            if sender.amount + u128::from(t.amount) > u128::from(account.balance) {
                return Err(Refusal::Unfunded {
                    balance: account.balance,
                });
            }
            let s = self.senders.entry(t.from).or_default();
            s.pending += 1;
            s.amount += u128::from(t.amount);
            if !early {
                let after = t.nonce.saturating_add(1);
                s.next = Some(s.next.map_or(after, |n| n.max(after)));
            }
        }
        self.bytes += size;
        self.early += usize::from(early);
        let order = self.next_order;
        self.next_order += 1;
        self.queue.insert(order, id);
        self.entries.insert(
            id,
            Entry {
                tx,
                order,
                tick,
                state: State::Queued,
                early,
                forwarded: None,
            },
        );
        Ok(())
    }

    /// Whether the early share is taken: from now on a transfer ahead of its sender's next
    /// nonce is refused.
    pub fn early_is_full(&self) -> bool {
        self.early >= self.early_max()
    }

    /// Whether half the early share is taken: submissions are then worth screening before
    /// their signatures are checked ([`Mempool::screen`]). Waiting until the share was full
    /// was too late: under overload it empties and fills by the block, and while it had room
    /// whole submissions of early transfers were checked and then refused (six times the
    /// knee: 1.0M signatures checked for 0.47M transfers admitted; with half, 0.58M for 0.48M,
    /// and 11k → 14k transfers/s committed).
    pub fn early_is_half_taken(&self) -> bool {
        self.early.saturating_mul(2) >= self.early_max()
    }

    /// Which of `txs` [`Mempool::insert`] would refuse if they came in this order now, and why
    /// — admitting none. Only refusals that are certain: a copy already held, a used nonce, an
    /// early transfer with the early share taken, a sender over its limit; room and funds are
    /// left to `insert`. A replica asks this before it spends a signature check on a submission
    /// under overload, when most offered transfers are early (their predecessors were refused)
    /// and would be checked only to be refused.
    pub fn screen(&self, txs: &[Transaction], ledger: &Ledger) -> Vec<Option<Refusal>> {
        let mut early = self.early;
        // What the submission's own transfers change as `insert` would admit them in turn.
        let mut next: HashMap<Address, u64> = HashMap::new();
        let mut pending: HashMap<Address, u32> = HashMap::new();
        txs.iter()
            .map(|tx| {
                if self.holds_this_copy(tx) {
                    return Some(Refusal::Duplicate);
                }
                let t = tx.as_transfer()?.transfer;
                let sender = self.senders.get(&t.from).copied().unwrap_or_default();
                let sender_next = next.get(&t.from).copied().or(sender.next);
                let waiting = sender
                    .pending
                    .saturating_add(pending.get(&t.from).copied().unwrap_or(0));
                let is_early = match self.judge_nonce(&t, ledger, sender_next, waiting, early) {
                    Ok(is_early) => is_early,
                    Err(refusal) => return Some(refusal),
                };
                *pending.entry(t.from).or_default() += 1;
                if is_early {
                    early += 1;
                } else {
                    let after = t.nonce.saturating_add(1);
                    let n = next.entry(t.from).or_insert(after);
                    *n = (*n).max(after).max(sender.next.unwrap_or(0));
                }
                None
            })
            .collect()
    }

    /// The nonce rules `insert` and `screen` share: a used nonce, an early transfer while
    /// `early_held` take the early share, a sender with `pending` transfers waiting (or this
    /// nonce too far ahead). `sender_next` is the nonce after the sender's last transfer
    /// admitted in order. Whether the transfer is early, if it may wait.
    fn judge_nonce(
        &self,
        t: &Transfer,
        ledger: &Ledger,
        sender_next: Option<u64>,
        pending: u32,
        early_held: usize,
    ) -> Result<bool, Refusal> {
        let account = ledger.account(&t.from);
        if t.nonce < account.nonce {
            return Err(Refusal::StaleNonce {
                expected: account.nonce,
            });
        }
        let early = t.nonce > self.expected_nonce(ledger, &t.from) && sender_next != Some(t.nonce);
        if early && early_held >= self.early_max() {
            return Err(Refusal::Full);
        }
        if pending >= SENDER_PENDING_MAX || t.nonce - account.nonce >= u64::from(SENDER_PENDING_MAX)
        {
            return Err(Refusal::SenderLimit { pending });
        }
        Ok(early)
    }

    fn early_max(&self) -> usize {
        (self.max / EARLY_SHARE).max(1)
    }

    fn expected_nonce(&self, ledger: &Ledger, from: &Address) -> u64 {
        let executed = ledger.account(from).nonce;
        self.proposed_nonce
            .get(from)
            .map_or(executed, |n| (*n).max(executed))
    }

    /// Whether the mempool holds `tx` itself: the same id and, for a transfer, the same
    /// signature (the id does not cover the signature).
    fn holds_this_copy(&self, tx: &Transaction) -> bool {
        self.entries
            .get(&tx.id())
            .is_some_and(|e| e.tx.signed_id() == tx.signed_id())
    }

    fn remove(&mut self, id: &TxId) {
        self.detach(id);
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(entry.tx.encoded_len());
        self.early = self.early.saturating_sub(usize::from(entry.early));
        if let Some(t) = entry.tx.as_transfer() {
            let t = t.transfer;
            if let Some(s) = self.senders.get_mut(&t.from) {
                s.pending = s.pending.saturating_sub(1);
                s.amount = s.amount.saturating_sub(u128::from(t.amount));
                if s.pending == 0 {
                    self.senders.remove(&t.from);
                }
            }
        }
    }

    /// Takes a transaction out of the queue or the parking lot, keeping its entry.
    fn detach(&mut self, id: &TxId) {
        if let Some(e) = self.entries.get(id) {
            match e.state {
                State::Queued => {
                    self.queue.remove(&e.order);
                }
                State::Parked => {
                    if let Some(t) = e.tx.as_transfer() {
                        self.parked.remove(&(t.transfer.from, t.transfer.nonce));
                    }
                }
                State::Proposed => {}
            }
        }
    }

    fn park(&mut self, id: TxId) {
        if let Some(e) = self.entries.get_mut(&id) {
            self.queue.remove(&e.order);
            e.state = State::Parked;
            if let Some(t) = e.tx.as_transfer() {
                self.parked.insert((t.transfer.from, t.transfer.nonce), id);
            }
        }
    }

    fn unpark(&mut self, from: Address, nonce: u64) {
        if let Some(id) = self.parked.remove(&(from, nonce))
            && let Some(e) = self.entries.get_mut(&id)
        {
            e.state = State::Queued;
            self.queue.insert(e.order, id);
        }
    }

    /// Sorts the head of the queue: drops stale transfers, parks future ones, and returns the id
    /// of the first ready transaction, if any.
    fn first_ready(&mut self, ledger: &Ledger) -> Option<TxId> {
        while let Some((_, id)) = self.queue.first_key_value() {
            let id = *id;
            let Some(entry) = self.entries.get(&id) else {
                self.queue.pop_first();
                continue;
            };
            let Some(t) = entry.tx.as_transfer() else {
                return Some(id);
            };
            let expected = self.expected_nonce(ledger, &t.transfer.from);
            match t.transfer.nonce.cmp(&expected) {
                std::cmp::Ordering::Equal => return Some(id),
                std::cmp::Ordering::Less => self.remove(&id),
                std::cmp::Ordering::Greater => self.park(id),
            }
        }
        None
    }

    /// Takes up to `max` ready transactions, in arrival order, and marks them proposed.
    pub fn take_batch(&mut self, max: usize, ledger: &Ledger) -> Vec<Transaction> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(id) = self.first_ready(ledger) else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&id) else {
                break;
            };
            self.queue.remove(&entry.order);
            entry.state = State::Proposed;
            let tx = entry.tx.clone();
            if let Some(t) = tx.as_transfer() {
                let (from, nonce) = (t.transfer.from, t.transfer.nonce);
                // Admission bounded the nonce (never u64::MAX away from an executed one).
                let next = nonce.saturating_add(1);
                self.proposed_nonce.insert(from, next);
                self.unpark(from, next);
            }
            out.push(tx);
        }
        out
    }

    /// How many ticks ago the oldest ready transaction arrived.
    pub fn oldest_ready_tick(&mut self, ledger: &Ledger) -> Option<u64> {
        let id = self.first_ready(ledger)?;
        self.entries.get(&id).map(|e| e.tick)
    }

    /// When the oldest ready transaction was first handed to the primary of `view`, if it was:
    /// a backup blames a primary only for what that primary was given. A former primary holds a
    /// backlog its successor never saw and that it can only pass on a chunk at a time; timed
    /// from the start of the view, that backlog read as censorship and, under overload, started
    /// a view change.
    pub fn oldest_ready_forwarded(&mut self, ledger: &Ledger, view: u64) -> Option<u64> {
        let id = self.first_ready(ledger)?;
        let (v, tick) = self.entries.get(&id)?.forwarded?;
        (v == view).then_some(tick)
    }

    /// Notes that `txs` were handed to the primary of `view` at `tick` (the first time per view
    /// counts: passing a transaction on again does not restart its clock).
    pub fn forwarded<'a>(
        &mut self,
        txs: impl IntoIterator<Item = &'a Transaction>,
        view: u64,
        tick: u64,
    ) {
        for tx in txs {
            if let Some(e) = self.entries.get_mut(&tx.id())
                && e.forwarded.is_none_or(|(v, _)| v != view)
            {
                e.forwarded = Some((view, tick));
            }
        }
    }

    /// Forgets executed transactions, and lets parked successors of their senders queue again;
    /// their senders' chains moved at `tick`.
    pub fn executed(&mut self, txs: &[Transaction], ledger: &Ledger, tick: u64) {
        let mut senders = BTreeSet::new();
        for tx in txs {
            // A copy of a held transfer with another signature (a faulty primary's forgery,
            // rejected at execution) must not evict the real one: that would let a primary
            // censor any transfer by proposing a broken copy of it.
            if self.holds_this_copy(tx) {
                self.remove(&tx.id());
            }
            if let Some(t) = tx.as_transfer() {
                senders.insert(t.transfer.from);
            }
        }
        for from in senders {
            if let Some(s) = self.senders.get_mut(&from) {
                s.progress_tick = tick;
            }
            let next = ledger.account(&from).nonce;
            self.unpark(from, next);
        }
    }

    /// A new view began: only the batches it re-proposes (`kept`) are in flight; every other
    /// transaction this replica had proposed waits again, in its original order.
    pub fn new_view(&mut self, kept: &[&Transaction]) {
        self.proposed_nonce.clear();
        let kept_ids: BTreeSet<TxId> = kept.iter().map(|t| t.id()).collect();
        // Any order: each goes back to the queue under its arrival number.
        for (id, e) in self.entries.iter_mut() {
            if e.state == State::Proposed && !kept_ids.contains(id) {
                e.state = State::Queued;
                self.queue.insert(e.order, *id);
            }
        }
        self.mark_proposed(kept);
    }

    /// Transactions proposed by someone else (re-proposals of a new view) are in flight.
    pub fn mark_proposed(&mut self, txs: &[&Transaction]) {
        for tx in txs {
            let id = tx.id();
            if self.holds_this_copy(tx) {
                self.detach(&id);
                if let Some(e) = self.entries.get_mut(&id) {
                    e.state = State::Proposed;
                }
            } else if self.entries.contains_key(&id) {
                // We hold this transfer with a signature we checked, and the proposal carries
                // another: a forged copy that execution will reject. Ours is not in flight, and
                // its nonce is not taken (else ours would look stale and be dropped).
                continue;
            }
            if let Some(t) = tx.as_transfer() {
                let next = self.proposed_nonce.entry(t.transfer.from).or_insert(0);
                *next = (*next).max(t.transfer.nonce.saturating_add(1));
            }
        }
    }

    /// Up to `max` queued transactions that have waited at least `min_age_ticks`, oldest first:
    /// a backup passes them to the primary again in case the first forward was lost.
    pub fn stale_queued(&self, now_tick: u64, min_age_ticks: u64, max: usize) -> Vec<Transaction> {
        self.queue
            .values()
            .filter_map(|id| self.entries.get(id))
            .take_while(|e| now_tick.saturating_sub(e.tick) >= min_age_ticks)
            .take(max)
            .map(|e| e.tx.clone())
            .collect()
    }

    /// Drops parked transfers whose predecessors never came: neither the transfer nor its
    /// sender's chain moved for [`PARKED_TTL_TICKS`].
    pub fn expire(&mut self, now_tick: u64) {
        let old: Vec<TxId> = self
            .parked
            .iter()
            .filter(|((from, _), id)| {
                let progress = self.senders.get(from).map_or(0, |s| s.progress_tick);
                self.entries.get(id).is_some_and(|e| {
                    now_tick.saturating_sub(e.tick.max(progress)) > PARKED_TTL_TICKS
                })
            })
            .map(|(_, id)| *id)
            .collect();
        for id in old {
            self.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quire_chain::testkit::TestNet;

    #[test]
    fn early_transfers_fill_at_most_a_quarter_and_a_full_pool_has_work() {
        let net = TestNet::new(4, 4);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(8);
        // Predecessors refused elsewhere, these arrive first: two may wait (8 / EARLY_SHARE).
        pool.insert(net.transfer(0, 1, 1, 1), 0, &ledger).unwrap();
        pool.insert(net.transfer(0, 1, 1, 2), 0, &ledger).unwrap();
        assert_eq!(
            pool.insert(net.transfer(1, 2, 1, 1), 0, &ledger),
            Err(Refusal::Full)
        );
        // Ready ones, and those that follow them in order, still get in up to the pool's bound.
        for sender in 1..3 {
            for nonce in 0..3 {
                pool.insert(net.transfer(sender, 3, 1, nonce), 0, &ledger)
                    .unwrap();
            }
        }
        assert_eq!(pool.len(), 8);
        // What admission limits (`in_order`) leaves the early two out.
        assert_eq!(pool.in_order(), 6);
        // A full pool has work: sender 0's early two wait, the other six go.
        assert_eq!(pool.take_batch(8, &ledger).len(), 6);
        // Executing frees the early places.
        let gone: Vec<Transaction> = (1..3)
            .flat_map(|s| (0..3).map(move |n| (s, n)))
            .map(|(s, n)| net.transfer(s, 3, 1, n))
            .collect();
        pool.executed(&gone, &ledger, 0);
        pool.remove(&net.transfer(0, 1, 1, 1).id());
        assert_eq!((pool.len(), pool.in_order()), (1, 0));
        pool.insert(net.transfer(1, 2, 1, 5), 0, &ledger).unwrap();
    }

    /// Submissions are screened from the moment half the early share is taken, not only once
    /// it is full: under overload the share empties and refills by the block, and a rule that
    /// waited for it to be full let whole submissions of early transfers be checked for nothing.
    /// Transfers admitted in order take none of it.
    #[test]
    fn pressure_starts_at_half_the_early_share() {
        let net = TestNet::new(4, 6);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(16); // an early share of 4
        pool.insert(net.transfer(1, 2, 1, 0), 0, &ledger).unwrap();
        pool.insert(net.transfer(1, 2, 1, 1), 0, &ledger).unwrap();
        assert!(!pool.early_is_half_taken());
        pool.insert(net.transfer(0, 1, 1, 2), 0, &ledger).unwrap();
        assert!(!pool.early_is_half_taken());
        pool.insert(net.transfer(2, 1, 1, 5), 0, &ledger).unwrap();
        assert!(pool.early_is_half_taken());
        assert!(!pool.early_is_full());
        // It lifts as early transfers leave the pool.
        pool.remove(&net.transfer(2, 1, 1, 5).id());
        assert!(!pool.early_is_half_taken());
    }

    /// What the screen refuses, `insert` refuses for the same reason, judging a submission in
    /// order (a transfer right after one of the same submission is not early); so checking
    /// signatures only for what passes the screen never changes an answer.
    #[test]
    fn the_screen_refuses_only_what_insert_would() {
        let net = TestNet::new(4, 6);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(8);
        // Sender 0's nonces 0 and 1 were refused elsewhere: its 2 and 3 take the early share.
        pool.insert(net.transfer(0, 1, 1, 2), 0, &ledger).unwrap();
        pool.insert(net.transfer(0, 1, 1, 3), 0, &ledger).unwrap();
        assert!(pool.early_is_full());
        let submission = vec![
            net.transfer(0, 1, 1, 2),    // this very copy is held
            net.transfer(2, 1, 1, 1),    // early, and the early share is taken
            net.transfer(1, 2, 1, 0),    // ready
            net.transfer(1, 2, 1, 1),    // follows the one before it
            net.transfer(3, 1, 1, 4000), // early (and far too far ahead)
            net.transfer(4, 1, 1, 0),    // ready
        ];
        let screened = pool.screen(&submission, &ledger);
        assert_eq!(
            screened,
            vec![
                Some(Refusal::Duplicate),
                Some(Refusal::Full),
                None,
                None,
                Some(Refusal::Full),
                None
            ]
        );
        for (tx, screen) in submission.into_iter().zip(screened) {
            let inserted = pool.insert(tx, 0, &ledger);
            match screen {
                Some(refusal) => assert_eq!(inserted, Err(refusal)),
                None => assert_eq!(inserted, Ok(())),
            }
        }
        // Nothing early waits any more: a sender far ahead is refused for its limit instead.
        let mut roomy = Mempool::new(100);
        let far = net.transfer(5, 1, 1, u64::from(SENDER_PENDING_MAX));
        let screened = roomy.screen(std::slice::from_ref(&far), &ledger);
        assert_eq!(screened, vec![Some(Refusal::SenderLimit { pending: 0 })]);
        assert_eq!(
            roomy.insert(far, 0, &ledger),
            Err(Refusal::SenderLimit { pending: 0 })
        );
    }

    #[test]
    fn the_censorship_clock_starts_when_the_primary_of_the_view_was_handed_the_transaction() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100);
        let (a, b) = (net.transfer(0, 1, 5, 0), net.transfer(1, 2, 5, 0));
        pool.insert(a.clone(), 3, &ledger).unwrap();
        pool.insert(b.clone(), 4, &ledger).unwrap();
        // Held since tick 3, never handed to anyone: nobody to blame.
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 0), None);
        // Only the newer one handed over: the oldest is what a primary is judged by.
        pool.forwarded([&b], 0, 10);
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 0), None);
        pool.forwarded([&a], 0, 12);
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 0), Some(12));
        // Handing it over again does not restart the clock.
        pool.forwarded([&a], 0, 40);
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 0), Some(12));
        // The next view's primary was given nothing yet; once it is, its clock starts then.
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 1), None);
        pool.forwarded([&a], 1, 50);
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 1), Some(50));
        // Executed, the next one is judged.
        pool.executed(std::slice::from_ref(&a), &ledger, 0);
        assert_eq!(pool.oldest_ready_forwarded(&ledger, 0), Some(10));
    }

    #[test]
    fn ready_transfers_come_out_in_order_and_future_ones_wait() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100);
        pool.insert(net.transfer(0, 1, 5, 1), 0, &ledger).unwrap();
        pool.insert(net.transfer(1, 2, 5, 0), 0, &ledger).unwrap();
        pool.insert(net.transfer(0, 1, 5, 0), 1, &ledger).unwrap();
        assert_eq!(
            pool.insert(net.transfer(0, 1, 5, 0), 1, &ledger),
            Err(Refusal::Duplicate)
        );
        let batch = pool.take_batch(10, &ledger);
        let nonces: Vec<(usize, u64)> = batch
            .iter()
            .map(|t| {
                let t = t.as_transfer().unwrap().transfer;
                (
                    net.account_keys
                        .iter()
                        .position(|k| k.address() == t.from)
                        .unwrap(),
                    t.nonce,
                )
            })
            .collect();
        // Sender 0's nonce 1 waits for its nonce 0, then follows it at once.
        assert_eq!(nonces, vec![(1, 0), (0, 0), (0, 1)]);
        assert!(pool.take_batch(10, &ledger).is_empty());
    }

    #[test]
    fn a_new_view_requeues_what_was_proposed_but_not_kept() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100);
        let a = net.transfer(0, 1, 5, 0);
        let b = net.transfer(1, 2, 5, 0);
        pool.insert(a.clone(), 0, &ledger).unwrap();
        pool.insert(b.clone(), 0, &ledger).unwrap();
        assert_eq!(pool.take_batch(10, &ledger).len(), 2);
        pool.new_view(&[&b]);
        assert_eq!(pool.take_batch(10, &ledger), vec![a]);
    }

    /// A faulty primary proposes a copy of a held transfer with a broken signature; the copy is
    /// ordered, rejected at execution, and the real transfer stays, ready to be proposed.
    #[test]
    fn a_forged_copy_neither_marks_nor_evicts_the_real_transfer() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100);
        let real = net.transfer(0, 1, 5, 0);
        let mut forged = real.clone();
        if let Transaction::Transfer(t) = &mut forged {
            t.signature.0[0] ^= 1;
        }
        assert_eq!(forged.id(), real.id());
        pool.insert(real.clone(), 0, &ledger).unwrap();
        pool.mark_proposed(&[&forged]);
        assert_eq!(
            pool.oldest_ready_tick(&ledger),
            Some(0),
            "still ready, same view"
        );
        pool.executed(std::slice::from_ref(&forged), &ledger, 0);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take_batch(10, &ledger), vec![real.clone()]);
        // The real one executing does remove it.
        pool.executed(std::slice::from_ref(&real), &ledger, 0);
        assert_eq!(pool.len(), 0);
    }

    /// A parked transfer expires after [`PARKED_TTL_TICKS`] without its sender's chain moving,
    /// not after that long since it arrived: one whose predecessors keep executing stays until
    /// its turn (under overload the turn can take longer than the TTL, and the client was told
    /// it was accepted); one whose predecessors never come still goes.
    #[test]
    fn a_parked_transfer_waits_while_its_sender_moves_and_expires_when_it_stops() {
        let net = TestNet::new(4, 3);
        let mut ledger = net.genesis.ledger();
        let mut pool = Mempool::new(64);
        // Sender 0's nonce 3 arrives first and parks; so does sender 1's nonce 2.
        let late = net.transfer(0, 2, 1, 3);
        let stuck = net.transfer(1, 2, 1, 2);
        pool.insert(late.clone(), 0, &ledger).unwrap();
        pool.insert(stuck.clone(), 0, &ledger).unwrap();
        assert_eq!(pool.take_batch(10, &ledger), Vec::<Transaction>::new());
        // Sender 0's predecessors arrive and execute one at a time, each a TTL apart less one.
        let mut tick = 0;
        for nonce in 0..2 {
            tick += PARKED_TTL_TICKS - 1;
            let tx = net.transfer(0, 2, 1, nonce);
            pool.insert(tx.clone(), tick, &ledger).unwrap();
            assert_eq!(pool.take_batch(10, &ledger), vec![tx.clone()]);
            ledger.apply(std::slice::from_ref(&tx), &[true]);
            pool.executed(std::slice::from_ref(&tx), &ledger, tick);
            pool.expire(tick);
        }
        // Nearly two TTLs after it arrived, sender 0's transfer is still there, and goes right
        // after its last predecessor.
        assert!(pool.contains(&late.id()));
        assert!(!pool.contains(&stuck.id()), "sender 1 never moved");
        let last = net.transfer(0, 2, 1, 2);
        pool.insert(last.clone(), tick, &ledger).unwrap();
        assert_eq!(pool.take_batch(10, &ledger), vec![last, late.clone()]);
        // A parked one of a sender that stops moving goes a TTL after its chain's last move.
        let next = net.transfer(0, 2, 1, 5);
        pool.insert(next.clone(), tick, &ledger).unwrap();
        assert_eq!(pool.take_batch(10, &ledger), Vec::<Transaction>::new());
        pool.expire(tick + PARKED_TTL_TICKS);
        assert!(pool.contains(&next.id()));
        pool.expire(tick + PARKED_TTL_TICKS + 1);
        assert!(!pool.contains(&next.id()));
    }

    #[test]
    fn stale_transfers_are_dropped_and_the_pool_is_bounded() {
        let net = TestNet::new(4, 3);
        let mut ledger = net.genesis.ledger();
        let tx = net.transfer(0, 1, 5, 0);
        let mut pool = Mempool::new(2);
        pool.insert(tx.clone(), 0, &ledger).unwrap();
        pool.insert(net.transfer(1, 0, 5, 0), 0, &ledger).unwrap();
        assert_eq!(
            pool.insert(net.transfer(2, 0, 5, 0), 0, &ledger),
            Err(Refusal::Full)
        );
        // Executed elsewhere (a block from state transfer): its nonce is used now.
        let ok = ledger.verify_signatures(std::slice::from_ref(&tx));
        ledger.apply(std::slice::from_ref(&tx), &ok);
        assert_eq!(pool.take_batch(10, &ledger).len(), 1);
        assert_eq!(pool.len(), 1);
        assert_eq!(
            pool.insert(net.transfer(0, 1, 6, 0), 0, &ledger),
            Err(Refusal::StaleNonce { expected: 1 })
        );
    }

    /// Trap 12: an unfunded key cannot park future-nonce transfers, a funded one only as many
    /// as its balance and the per-sender limit allow, and nonces far ahead are refused.
    #[test]
    fn senders_are_limited_by_balance_count_and_nonce_distance() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::new(100_000);
        let stranger = quire_chain::Keypair::from_secret([77; 32]);
        let unfunded = quire_chain::Transfer {
            from: stranger.address(),
            to: net.account_keys[0].address(),
            amount: 1,
            nonce: 5,
        }
        .sign(&stranger, &net.chain_id());
        assert_eq!(
            pool.insert(unfunded, 0, &ledger),
            Err(Refusal::Unfunded { balance: 0 })
        );
        let balance = quire_chain::testkit::TEST_BALANCE;
        pool.insert(net.transfer(0, 1, balance - 10, 0), 0, &ledger)
            .unwrap();
        assert_eq!(
            pool.insert(net.transfer(0, 1, 11, 1), 0, &ledger),
            Err(Refusal::Unfunded { balance })
        );
        pool.insert(net.transfer(0, 1, 10, 1), 0, &ledger).unwrap();
        assert_eq!(
            pool.insert(
                net.transfer(1, 2, 1, u64::from(SENDER_PENDING_MAX)),
                0,
                &ledger
            ),
            Err(Refusal::SenderLimit { pending: 0 })
        );
        for nonce in 0..u64::from(SENDER_PENDING_MAX) {
            pool.insert(net.transfer(1, 2, 1, nonce), 0, &ledger)
                .unwrap();
        }
        assert!(matches!(
            pool.insert(net.transfer(1, 2, 2, 3), 0, &ledger),
            Err(Refusal::SenderLimit { .. })
        ));
        // Executing releases the sender's share.
        let batch = pool.take_batch(10_000, &ledger);
        let mut after = ledger.clone();
        let ok = after.verify_signatures(&batch);
        after.apply(&batch, &ok);
        pool.executed(&batch, &after, 0);
        assert!(pool.is_empty());
        pool.insert(
            net.transfer(1, 2, 1, u64::from(SENDER_PENDING_MAX)),
            0,
            &after,
        )
        .unwrap();
    }

    #[test]
    fn the_pool_is_bounded_in_bytes() {
        let net = TestNet::new(4, 3);
        let ledger = net.genesis.ledger();
        let mut pool = Mempool::with_bytes(100, 2 * 1029);
        pool.insert(Transaction::raw(vec![1; 1024]), 0, &ledger)
            .unwrap();
        pool.insert(Transaction::raw(vec![2; 1024]), 0, &ledger)
            .unwrap();
        assert_eq!(
            pool.insert(Transaction::raw(vec![3; 1024]), 0, &ledger),
            Err(Refusal::Full)
        );
    }
}
