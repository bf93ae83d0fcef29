//! `quire-testnet compare --attack`: what a malicious minority and a partition achieve in each
//! mode, measured on fresh testnets under the same background load.
//!
//! - PBFT with `f` replicas equivocating (the `equivocate` behaviour, set as
//!   `quire-testnet byzantine` sets it), then a `0,1 / 2,3` partition and a heal: the check's
//!   verdict (agreement, certificates, re-execution), and whether any block a replica was seen
//!   to hold was later replaced (a reversal).
//! - Proof of work with one replica holding 30% of the hash power as a live `double-spend`
//!   attacker, against a payment that a merchant accepts at k = 1 and at k = 6: whether the
//!   payment, seen k deep at an honest replica, was reversed there. Then the same partition and
//!   heal: the fork, the reorganisation and the transactions it reversed (a transfer sent to
//!   each side with the same sender and nonce, and whatever else was orphaned).
//!
//! Every number comes from the replicas and the client during the run; `render` only formats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use quire_chain::genesis::ConsensusMode;
use quire_chain::{Hash, Transaction, Transfer, TxId};
use quire_client::Client;
use quire_consensus::Behaviour;
use quire_wire::rpc::{BlockRef, Request, Response};

mod report;

pub use report::{figure, live_model, render};

use super::{CompareArgs, metrics_of};
use crate::ops::{self, Testnet};
use crate::pow;

/// Seconds each phase lasts (a run takes about four of these per mode, plus the races).
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub attack_s: u64,
    pub partition_s: u64,
    pub heal_s: u64,
    /// The longest one double-spend race may take before it is called off.
    pub race_timeout_s: u64,
}

impl Phases {
    pub fn for_args(args: &CompareArgs) -> Phases {
        let base = args.duration.clamp(5, 30);
        Phases {
            attack_s: base,
            partition_s: base.min(12),
            heal_s: base.min(15),
            race_timeout_s: 150,
        }
    }
}

/// One sighting of a replica's head.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub t_s: f64,
    pub replica: u32,
    pub height: u64,
    pub hash: Hash,
}

/// Something the run did, at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub t_s: f64,
    pub label: String,
}

/// Heights of the honest replicas over an interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Per replica: (height at the start, at the end).
    pub heights: BTreeMap<u32, (u64, u64)>,
    pub seconds: f64,
}

impl Progress {
    /// Blocks the slowest and the fastest replica added.
    pub fn blocks(&self) -> (u64, u64) {
        let added = self.heights.values().map(|(a, b)| b.saturating_sub(*a));
        let min = added.clone().min().unwrap_or(0);
        (min, added.max().unwrap_or(0))
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PbftAttack {
    pub nodes: usize,
    pub equivocators: Vec<u32>,
    pub under_attack: Progress,
    pub partitioned: Progress,
    pub healed: Progress,
    /// Seconds from the heal to the first new block at every replica (None: not within the phase).
    pub resumed_after_s: Option<f64>,
    pub check_ok: bool,
    pub findings: Vec<String>,
    pub agreed_height: u64,
    /// Misbehaviour the honest replicas detected, by kind (summed).
    pub detected: BTreeMap<String, f64>,
    /// Blocks once seen at a replica that it later no longer held (PBFT: must be 0).
    pub replaced_blocks: u64,
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
}

/// One live double-spend race.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// The merchant's k (the attacker releases only once the payment is this deep).
    pub k: u64,
    pub payment: TxId,
    pub conflict: TxId,
    /// The most confirmations the honest replica showed for the payment (polled).
    pub max_confirmations: u64,
    /// Transactions the merchant's replica reversed during the race (main-chain transactions
    /// whose nonce the new branch spent: proof it held the payment, however briefly).
    pub merchant_reversed: u64,
    /// At the end: the payment on the honest replica's chain, the conflict on it.
    pub payment_on_chain: bool,
    pub conflict_on_chain: bool,
    /// What the attacker's own counters say happened.
    pub released: bool,
    pub given_up: bool,
    pub timed_out: bool,
    pub seconds: f64,
}

impl Trial {
    /// The merchant accepted (k deep) and the payment was reversed by the conflicting transfer.
    pub fn reversed_after_acceptance(&self) -> bool {
        let accepted =
            self.max_confirmations >= self.k || self.k == 1 && self.merchant_reversed > 0;
        accepted && !self.payment_on_chain && self.conflict_on_chain
    }

    /// The confirmations the merchant is known to have shown.
    pub fn confirmations_shown(&self) -> u64 {
        if self.merchant_reversed > 0 {
            self.max_confirmations.max(1)
        } else {
            self.max_confirmations
        }
    }
}

/// A transaction of an orphaned block.
#[derive(Clone, Debug, PartialEq)]
pub struct Orphaned {
    pub tx: TxId,
    pub from_side: u32,
    pub height: u64,
    /// Where it is on the final chain (None: reversed or waiting).
    pub final_height: Option<u64>,
    /// The sender's nonce was spent by another transfer on the final chain.
    pub reversed: bool,
    pub summary: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PowPartition {
    /// Per side (its first replica): blocks each side mined during the partition.
    pub side_blocks: BTreeMap<u32, u64>,
    /// The two sides' heads differed when the heal came.
    pub forked: bool,
    /// Seconds from the heal until every replica held the same head (None: not within the phase).
    pub converged_after_s: Option<f64>,
    /// Reorganisations during the heal phase, by depth (summed over replicas).
    pub reorg_depths: BTreeMap<u64, u64>,
    pub orphaned: Vec<Orphaned>,
    pub check_ok: bool,
    pub check_summary: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PowAttack {
    pub nodes: usize,
    pub attacker: u32,
    /// The attacker's share of the hash power.
    pub share: f64,
    pub trials: Vec<Trial>,
    pub partition: PowPartition,
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
}

/// Pre-signed transfers from accounts `first..first + count`, sent at `rate` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Load {
    fn start(
        net: &Testnet,
        client: Arc<Client>,
        first: usize,
        count: usize,
        rate: u64,
    ) -> Result<Load> {
        let chain_id = net.network.genesis.chain_id();
        let keys: Vec<_> = (first..first + count)
            .map(|i| net.account_key(i))
            .collect::<Result<_>>()?;
        let total = (rate * 600) as usize;
        let txs: Vec<Transaction> = (0..total.min(200_000))
            .map(|i| {
                let a = i % keys.len();
                Transfer {
                    from: keys[a].address(),
                    to: keys[(a + 1) % keys.len()].address(),
                    amount: 1,
                    nonce: (i / keys.len()) as u64,
                }
                .sign(&keys[a], &chain_id)
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let step = Duration::from_millis(50);
            let per_step = (rate as f64 * step.as_secs_f64()).max(1.0);
            let (mut sent, mut owed) = (0usize, 0.0);
            let start = Instant::now();
            while sent < txs.len() && !flag.load(Ordering::Relaxed) {
                owed += per_step;
                let count = (owed as usize).min(txs.len() - sent);
                owed -= count as f64;
                if count > 0 {
                    let _ = client.submit(&txs[sent..sent + count]).await;
                    sent += count;
                }
                let next = start + step.mul_f64((sent as f64 / per_step).ceil());
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            }
            sent as u64
        });
        Ok(Load { stop, task })
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// Records every replica's head, with the time since `start`.
struct Watch {
    start: Instant,
    samples: Vec<Sample>,
    events: Vec<Event>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            start: Instant::now(),
            samples: Vec::new(),
            events: Vec::new(),
        }
    }

    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn event(&mut self, label: impl Into<String>) {
        let t = self.t();
        self.events.push(Event {
            t_s: t,
            label: label.into(),
        });
    }

    async fn poll(&mut self, client: &Client, n: u32) -> BTreeMap<u32, (u64, Hash)> {
        let mut heads = BTreeMap::new();
        for replica in 0..n {
            if let Ok(Response::Block { block: Some(b), .. }) = client
                .call(replica, &Request::Block(BlockRef::Latest))
                .await
            {
                let t = self.t();
                self.samples.push(Sample {
                    t_s: t,
                    replica,
                    height: b.header.height,
                    hash: b.hash(),
                });
                heads.insert(replica, (b.header.height, b.hash()));
            }
        }
        heads
    }

    /// Polls every 250 ms for `secs` seconds, or until `done` says so; returns the last heads.
    async fn run_for(&mut self, client: &Client, n: u32, secs: f64) -> BTreeMap<u32, (u64, Hash)> {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let mut heads = self.poll(client, n).await;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            heads = self.poll(client, n).await;
        }
        heads
    }
}

fn progress(
    before: &BTreeMap<u32, (u64, Hash)>,
    after: &BTreeMap<u32, (u64, Hash)>,
    secs: f64,
) -> Progress {
    Progress {
        heights: before
            .iter()
            .filter_map(|(r, (h, _))| after.get(r).map(|(a, _)| (*r, (*h, *a))))
            .collect(),
        seconds: secs,
    }
}

/// Sampled blocks (height, hash) that the replica no longer holds at that height.
async fn replaced_blocks(client: &Client, samples: &[Sample], skip: &BTreeSet<u32>) -> u64 {
    let mut by_replica: BTreeMap<u32, BTreeMap<u64, Hash>> = BTreeMap::new();
    for s in samples.iter().filter(|s| !skip.contains(&s.replica)) {
        by_replica
            .entry(s.replica)
            .or_default()
            .insert(s.height, s.hash);
    }
    let mut replaced = 0;
    for (replica, seen) in by_replica {
        for (height, hash) in seen {
            if let Ok(Response::Block { block: Some(b), .. }) = client
                .call(replica, &Request::Block(BlockRef::Height(height)))
                .await
                && b.hash() != hash
            {
                replaced += 1;
            }
        }
    }
    replaced
}

fn metric_by_label(texts: &[String], name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in texts.iter().flat_map(|t| t.lines()) {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let label = rest.split('"').nth(1).unwrap_or("").to_string();
        if let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *out.entry(label).or_insert(0.0) += v;
        }
    }
    out
}

/// PBFT: f equivocators, then a partition and a heal.
pub async fn pbft(dir: &Path, args: &CompareArgs, phases: Phases) -> Result<PbftAttack> {
    let run_dir = dir
        .join("compare")
        .join(format!("pbft-attack-{}", std::process::id()));
    let plan = super::testnet_plan(args, ConsensusMode::Pbft);
    let net = ops::up(&run_dir, &plan, &mut std::io::sink()).await?;
    let result = pbft_on(&net, args, phases).await;
    net.stop_all()?;
    let _ = std::fs::remove_dir_all(&run_dir);
    result
}

async fn pbft_on(net: &Testnet, args: &CompareArgs, phases: Phases) -> Result<PbftAttack> {
    let n = net.n();
    let f = (n - 1) / 3;
    let client = Arc::new(Client::new(net.network.clone())?);
    let load = Load::start(net, client.clone(), 1, args.accounts, args.rate)?;
    let mut watch = Watch::new();
    let start = watch.run_for(&client, n, 2.0).await;
    let equivocators: Vec<u32> = (0..f).collect();
    for i in &equivocators {
        net.set_behaviour(*i, Behaviour::Equivocate)?;
        watch.event(format!("{i} equivocate"));
    }
    let honest: BTreeSet<u32> = (f..n).collect();
    let attacked = watch.run_for(&client, n, phases.attack_s as f64).await;
    for i in &equivocators {
        net.set_behaviour(*i, Behaviour::Honest)?;
    }
    watch.event("honest again");
    let before_cut = watch.run_for(&client, n, 3.0).await;
    let half = n / 2;
    let groups = vec![(0..half).collect::<Vec<_>>(), (half..n).collect()];
    net.partition(&groups)?;
    watch.event("partition");
    let cut = watch.run_for(&client, n, phases.partition_s as f64).await;
    net.heal()?;
    watch.event("heal");
    let healed_at = Instant::now();
    let mut resumed_after_s = None;
    let mut heads = cut.clone();
    while healed_at.elapsed() < Duration::from_secs(phases.heal_s) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        heads = watch.poll(&client, n).await;
        let all_moved = cut
            .iter()
            .all(|(r, (h, _))| heads.get(r).is_some_and(|(now, _)| now > h));
        if resumed_after_s.is_none() && all_moved {
            resumed_after_s = Some(healed_at.elapsed().as_secs_f64());
        }
    }
    load.stop().await;
    let honest_filter = |m: &BTreeMap<u32, (u64, Hash)>| -> BTreeMap<u32, (u64, Hash)> {
        m.iter()
            .filter(|(r, _)| honest.contains(r))
            .map(|(r, v)| (*r, *v))
            .collect()
    };
    let faulty = net.ever_faulty();
    let report = crate::check::check(net, &faulty).await?;
    let replaced = replaced_blocks(&client, &watch.samples, &faulty).await;
    let texts = metrics_of(net, honest.iter().copied());
    Ok(PbftAttack {
        nodes: args.nodes,
        equivocators,
        under_attack: progress(
            &honest_filter(&start),
            &honest_filter(&attacked),
            phases.attack_s as f64,
        ),
        partitioned: progress(&before_cut, &cut, phases.partition_s as f64),
        healed: progress(&cut, &heads, phases.heal_s as f64),
        resumed_after_s,
        check_ok: report.ok(),
        findings: report.findings.iter().map(|f| f.to_string()).collect(),
        agreed_height: report.agreed_height,
        detected: metric_by_label(&texts, "quire_misbehaviour_total"),
        replaced_blocks: replaced,
        samples: watch.samples,
        events: watch.events,
    })
}

/// The hash rate that gives one miner `share` of the total when the others mine at `rate`.
pub fn rate_for_share(rate: u64, others: usize, share: f64) -> u64 {
    (rate as f64 * others as f64 * share / (1.0 - share)).round() as u64
}

/// Proof of work: a 30% double-spender against k = 1 and k = 6, then a partition and a heal.
pub async fn pow(
    dir: &Path,
    args: &CompareArgs,
    phases: Phases,
    trials: usize,
) -> Result<PowAttack> {
    let run_dir = dir
        .join("compare")
        .join(format!("pow-attack-{}", std::process::id()));
    let plan = super::testnet_plan(args, ConsensusMode::Pow);
    let net = ops::up(&run_dir, &plan, &mut std::io::sink()).await?;
    let result = pow_on(&net, args, phases, trials).await;
    net.stop_all()?;
    let _ = std::fs::remove_dir_all(&run_dir);
    result
}

async fn pow_on(
    net: &Testnet,
    args: &CompareArgs,
    phases: Phases,
    trials: usize,
) -> Result<PowAttack> {
    let n = net.n();
    let attacker = n - 1;
    let share = 0.3;
    let client = Arc::new(Client::new(net.network.clone())?);
    let load = Load::start(net, client.clone(), 1, args.accounts, args.rate)?;
    let mut watch = Watch::new();
    watch.run_for(&client, n, 2.0).await;
    let attack_rate = rate_for_share(args.hash_rate, n as usize - 1, share);
    pow::hashpower(net, attacker, attack_rate)?;
    watch.event(format!("{attacker} at 30% hash power"));
    let mut results = Vec::new();
    for k in [1u64, 6] {
        for _ in 0..trials.max(1) {
            results.push(race(net, &client, &mut watch, attacker, k, phases).await?);
        }
    }
    pow::set_behaviour(net, attacker, "honest")?;
    pow::hashpower(net, attacker, args.hash_rate)?;
    watch.event("honest, equal hash power");
    watch.run_for(&client, n, 3.0).await;
    let partition = pow_partition(net, &client, &mut watch, phases).await?;
    load.stop().await;
    Ok(PowAttack {
        nodes: args.nodes,
        attacker,
        share,
        trials: results,
        partition,
        samples: watch.samples,
        events: watch.events,
    })
}

fn metric(net: &Testnet, i: u32, name: &str) -> u64 {
    let text = net.http(i, "GET", "/metrics").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// One race: arm the attacker, send the payment, watch honest replica 0 until the attacker's
/// race is over (released or given up) and the network has settled.
async fn race(
    net: &Testnet,
    client: &Client,
    watch: &mut Watch,
    attacker: u32,
    k: u64,
    phases: Phases,
) -> Result<Trial> {
    let merchant = 0;
    let released_before = metric(net, attacker, "quire_pow_double_spend_released_total");
    let given_up_before = metric(net, attacker, "quire_pow_double_spend_given_up_total");
    let reversed_before = metric(net, merchant, "quire_pow_txs_reversed_total");
    let args = pow::DoubleSpendArgs {
        from: "account-0".into(),
        to: format!("account-{}", net.network.accounts.len() - 1),
        amount: Some(1),
        confirmations: Some(k),
        give_up_behind: 10,
    };
    let conflict = pow::double_spend(net, attacker, &args).await?;
    let nonce = conflict.as_transfer().map_or(0, |t| t.transfer.nonce);
    let payer = net.account_key(0)?;
    let payment = Transfer {
        from: payer.address(),
        to: net.account_key(1)?.address(),
        amount: 1,
        nonce,
    }
    .sign(&payer, &net.network.genesis.chain_id());
    let start = Instant::now();
    client.submit_one(&payment).await?;
    watch.event(format!("payment (k = {k})"));
    let mut max_confirmations = 0;
    let (mut released, mut given_up, mut timed_out) = (false, false, false);
    let mut settled_at: Option<Instant> = None;
    loop {
        watch.poll(client, net.n()).await;
        if let Some((_, _, c)) = pow::tx_at(client, merchant, payment.id()).await? {
            max_confirmations = max_confirmations.max(c);
        }
        if settled_at.is_none() {
            released =
                metric(net, attacker, "quire_pow_double_spend_released_total") > released_before;
            given_up =
                metric(net, attacker, "quire_pow_double_spend_given_up_total") > given_up_before;
            if released || given_up {
                watch.event(if released { "released" } else { "given up" });
                settled_at = Some(Instant::now());
            }
        }
        // After the race, two seconds for the branch to reach and reorganise every replica.
        if settled_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            break;
        }
        if start.elapsed() >= Duration::from_secs(phases.race_timeout_s) {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if timed_out {
        // Call the race off: the attacker abandons its branch.
        pow::set_behaviour(net, attacker, "honest")?;
        watch.event("race called off");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let payment_on_chain = pow::tx_at(client, merchant, payment.id()).await?.is_some();
    let conflict_on_chain = pow::tx_at(client, merchant, conflict.id()).await?.is_some();
    let merchant_reversed =
        metric(net, merchant, "quire_pow_txs_reversed_total").saturating_sub(reversed_before);
    Ok(Trial {
        merchant_reversed,
        k,
        payment: payment.id(),
        conflict: conflict.id(),
        max_confirmations,
        payment_on_chain,
        conflict_on_chain,
        released,
        given_up,
        timed_out,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Blocks of a replica's main chain above `from`.
async fn blocks_above(
    client: &Client,
    replica: u32,
    from: u64,
    to: u64,
) -> Vec<quire_chain::Block> {
    let mut out = Vec::new();
    for h in from + 1..=to {
        if let Ok(Response::Block { block: Some(b), .. }) = client
            .call(replica, &Request::Block(BlockRef::Height(h)))
            .await
        {
            out.push(b);
        }
    }
    out
}

async fn pow_partition(
    net: &Testnet,
    client: &Client,
    watch: &mut Watch,
    phases: Phases,
) -> Result<PowPartition> {
    let n = net.n();
    let half = n / 2;
    let sides = [0u32, half];
    let before = watch.poll(client, n).await;
    let fork_height = before.values().map(|(h, _)| *h).min().unwrap_or(0);
    let reorgs_before = metric_by_label(&metrics_of(net, 0..n), "quire_pow_reorg_depth");
    net.partition(&[(0..half).collect(), (half..n).collect()])?;
    watch.event("partition");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One sender, one nonce, a different recipient on each side: the heal must reverse one.
    let payer = net.account_key(0)?;
    let nonce = client.pow_account(payer.address()).await?.account.nonce;
    let chain_id = net.network.genesis.chain_id();
    for (side, to) in sides.iter().zip([1usize, 2]) {
        let tx = Transfer {
            from: payer.address(),
            to: net.account_key(to)?.address(),
            amount: 1,
            nonce,
        }
        .sign(&payer, &chain_id);
        let _ = client.call(*side, &Request::Submit(vec![tx])).await;
    }
    let cut = watch.run_for(client, n, phases.partition_s as f64).await;
    let mut side_blocks = BTreeMap::new();
    let mut side_chains: HashMap<u32, Vec<quire_chain::Block>> = HashMap::new();
    for side in sides {
        let top = cut.get(&side).map_or(0, |(h, _)| *h);
        side_blocks.insert(side, top.saturating_sub(fork_height));
        side_chains.insert(side, blocks_above(client, side, fork_height, top).await);
    }
    let forked = cut.get(&sides[0]).map(|x| x.1) != cut.get(&sides[1]).map(|x| x.1);
    net.heal()?;
    watch.event("heal");
    let healed_at = Instant::now();
    let mut converged_after_s = None;
    while healed_at.elapsed() < Duration::from_secs(phases.heal_s) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let heads = watch.poll(client, n).await;
        let distinct: BTreeSet<Hash> = heads.values().map(|(_, h)| *h).collect();
        if converged_after_s.is_none() && heads.len() == n as usize && distinct.len() == 1 {
            converged_after_s = Some(healed_at.elapsed().as_secs_f64());
        }
    }
    let after = metric_by_label(&metrics_of(net, 0..n), "quire_pow_reorg_depth");
    let mut reorg_depths = BTreeMap::new();
    for (d, v) in &after {
        let grown = v - reorgs_before.get(d).copied().unwrap_or(0.0);
        if let (Ok(depth), true) = (d.parse::<u64>(), grown > 0.0) {
            reorg_depths.insert(depth, grown.round() as u64);
        }
    }
    let mut orphaned = Vec::new();
    for side in sides {
        for block in side_chains.get(&side).into_iter().flatten() {
            let on_final = matches!(
                client.call(0, &Request::Block(BlockRef::Height(block.header.height))).await,
                Ok(Response::Block { block: Some(b), .. }) if b.hash() == block.hash()
            );
            if on_final {
                continue;
            }
            for tx in &block.txs {
                let final_height = pow::tx_at(client, 0, tx.id()).await?.map(|(h, _, _)| h);
                let (reversed, summary) = match tx.as_transfer() {
                    Some(t) => {
                        let next = client
                            .pow_account(t.transfer.from)
                            .await
                            .map_or(0, |a| a.account.nonce);
                        (
                            final_height.is_none() && t.transfer.nonce < next,
                            format!(
                                "{} → {}, {} (nonce {})",
                                t.transfer.from, t.transfer.to, t.transfer.amount, t.transfer.nonce
                            ),
                        )
                    }
                    None => (false, "raw payload".into()),
                };
                orphaned.push(Orphaned {
                    tx: tx.id(),
                    from_side: side,
                    height: block.header.height,
                    final_height,
                    reversed,
                    summary,
                });
            }
        }
    }
    let report = pow::check(net, &net.ever_faulty()).await?;
    Ok(PowPartition {
        side_blocks,
        forked,
        converged_after_s,
        reorg_depths,
        orphaned,
        check_ok: report.ok(),
        check_summary: format!(
            "agreed {} deep up to height {}; {} disagreements",
            report.k,
            report.agreed_up_to,
            report.disagreements.len()
        ),
    })
}
