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
use quire_chain::pow::PowParams;
use quire_chain::{Hash, Transaction, Transfer, TxId};
use quire_client::Client;
use quire_consensus::Behaviour;
use quire_node::config::PowFile;
use quire_wire::rpc::{BlockRef, Request, Response};

use super::CompareArgs;
use crate::generate::Plan;
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

fn metrics_of(net: &Testnet, replicas: impl Iterator<Item = u32>) -> Vec<String> {
    replicas
        .map(|i| net.http(i, "GET", "/metrics").unwrap_or_default())
        .collect()
}

/// PBFT: f equivocators, then a partition and a heal.
pub async fn pbft(dir: &Path, args: &CompareArgs, phases: Phases) -> Result<PbftAttack> {
    let run_dir = dir
        .join("compare")
        .join(format!("pbft-attack-{}", std::process::id()));
    let plan = Plan {
        nodes: args.nodes,
        accounts: args.accounts + 1,
        base_port: 0,
        log: "warn".into(),
        ..Plan::default()
    };
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
    let mut plan = Plan {
        nodes: args.nodes,
        accounts: args.accounts + 1,
        base_port: 0,
        log: "warn".into(),
        pow_node: PowFile {
            hashes_per_s: args.hash_rate,
            ..PowFile::default()
        },
        ..Plan::default()
    };
    plan.protocol.consensus = ConsensusMode::Pow;
    plan.pow = Some(PowParams::for_hash_rate(
        args.hash_rate.saturating_mul(args.nodes as u64),
        args.interval_ms,
    ));
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

/// The success probability of the live attack's model: no pre-mined block; the attacker has
/// `m ~ NegBin(k, q)` blocks when the payment's block gets its `k`-th confirmation, is then
/// `k − m` behind in blocks and must get one ahead before `give_up` behind (a gambler's ruin
/// with `r = q/p`). Fixed difficulty and no delay: the live run has neither, so it is a guide.
pub fn live_model(q: f64, k: u64, give_up: u64) -> f64 {
    let p = 1.0 - q;
    if q <= 0.0 {
        return 0.0;
    }
    if q >= p {
        return 1.0;
    }
    let r = q / p;
    let ends = (give_up + 1) as i32;
    let catch_up = |behind: i64| -> f64 {
        if behind < 0 {
            1.0
        } else if behind >= give_up as i64 {
            0.0
        } else {
            let steps = (behind + 1) as i32;
            (r.powi(steps) - r.powi(ends)) / (1.0 - r.powi(ends))
        }
    };
    let (mut total, mut mass) = (0.0, 0.0);
    // P(m) = C(m+k−1, m) p^k q^m, built up term by term.
    let mut pm = p.powi(k as i32);
    for m in 0..=k {
        if m > 0 {
            pm *= (m + k - 1) as f64 / m as f64 * q;
        }
        mass += pm;
        total += pm * catch_up(k as i64 - m as i64);
    }
    total + (1.0 - mass)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn range((min, max): (u64, u64)) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min}–{max}")
    }
}

/// The `--attack` section of report.md, from what was measured.
pub fn render(pbft: &PbftAttack, pow: &PowAttack, give_up: u64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "\n## Under attack\n");
    let _ = writeln!(
        s,
        "Fresh testnets of {} replicas, each under the same background load. Figure: `attack.svg` (every replica's height over time, with the run's events).\n",
        pbft.nodes
    );
    let _ = writeln!(
        s,
        "### PBFT: f = {} equivocating, then a partition\n",
        pbft.equivocators.len()
    );
    let _ = writeln!(s, "| | measured |\n|---|---|");
    let _ = writeln!(
        s,
        "| equivocators (`byzantine I equivocate`) | {:?} for {:.0} s |",
        pbft.equivocators, pbft.under_attack.seconds
    );
    let _ = writeln!(
        s,
        "| blocks committed by the honest replicas meanwhile | {} |",
        range(pbft.under_attack.blocks())
    );
    let detected: Vec<String> = pbft
        .detected
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| format!("{k}: {v:.0}"))
        .collect();
    let _ = writeln!(
        s,
        "| misbehaviour detected by the honest replicas | {} |",
        if detected.is_empty() {
            "none".into()
        } else {
            detected.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "| blocks committed during the {:.0} s partition (0,1 / 2,3) | {} |",
        pbft.partitioned.seconds,
        range(pbft.partitioned.blocks())
    );
    let _ = writeln!(
        s,
        "| after the heal: blocks in {:.0} s, first new block at every replica | {}, {} |",
        pbft.healed.seconds,
        range(pbft.healed.blocks()),
        pbft.resumed_after_s
            .map_or("not within the phase".into(), |t| format!("{t:.1} s"))
    );
    let _ = writeln!(
        s,
        "| forks (check: agreement, certificates, re-execution) | {} (verdict {}, agreed up to height {}) |",
        pbft.findings.len(),
        if pbft.check_ok { "OK" } else { "FAILED" },
        pbft.agreed_height
    );
    let _ = writeln!(
        s,
        "| blocks seen at a replica and later replaced (reversals) | {} |",
        pbft.replaced_blocks
    );
    for f in &pbft.findings {
        let _ = writeln!(s, "\n- finding: {f}");
    }
    let _ = writeln!(
        s,
        "\n### Proof of work: a {:.0}% double-spender (replica {}), then a partition\n",
        pow.share * 100.0,
        pow.attacker
    );
    let _ = writeln!(
        s,
        "Each race: `byzantine {} double-spend --from account-0 --confirmations K`, then account 0 pays account 1; replica 0 is the merchant. The attacker releases its branch once the payment is K deep and the branch has more work, and gives up {give_up} blocks behind.\n",
        pow.attacker
    );
    let _ = writeln!(
        s,
        "| k | payment's most confirmations at the merchant | attacker | payment reversed after k confirmations | seconds | live model P(success) | Nakamoto |\n|---|---|---|---|---|---|---|"
    );
    for t in &pow.trials {
        let outcome = if t.released {
            "released its branch"
        } else if t.given_up {
            "gave up"
        } else {
            "called off (timeout)"
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} |",
            t.k,
            t.confirmations_shown(),
            outcome,
            yes(t.reversed_after_acceptance()),
            t.seconds,
            live_model(pow.share, t.k, give_up),
            quire_sim::pow::analysis::nakamoto(pow.share, t.k)
        );
    }
    let _ = writeln!(
        s,
        "\nThe merchant's confirmations are polled every 200 ms; a payment the merchant's replica held on its main chain and reversed (its own count) had at least one even if no poll saw it. One race per row: a single outcome, not a rate (`quire-testnet sim-pow double-spend` measures the rates over 20,000 trials). The live model: the attacker starts when the payment is sent, with no pre-mined block.\n"
    );
    let p = &pow.partition;
    let sides: Vec<String> = p
        .side_blocks
        .iter()
        .map(|(side, b)| format!("side of {side}: {b}"))
        .collect();
    let depths: Vec<String> = p
        .reorg_depths
        .iter()
        .map(|(d, c)| format!("depth {d}: {c}"))
        .collect();
    let reversed: Vec<&Orphaned> = p.orphaned.iter().filter(|o| o.reversed).collect();
    let reincluded = p
        .orphaned
        .iter()
        .filter(|o| o.final_height.is_some())
        .count();
    let _ = writeln!(
        s,
        "| partition 0,1 / 2,3, then heal | measured |\n|---|---|"
    );
    let _ = writeln!(s, "| blocks mined on each side | {} |", sides.join(", "));
    let _ = writeln!(
        s,
        "| the sides' heads differed at the heal (a fork) | {} |",
        yes(p.forked)
    );
    let _ = writeln!(
        s,
        "| reorganisations on heal (summed over replicas) | {} |",
        if depths.is_empty() {
            "none".into()
        } else {
            depths.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "| every replica on one head | {} |",
        p.converged_after_s
            .map_or("not within the phase".into(), |t| format!(
                "{t:.1} s after the heal"
            ))
    );
    let _ = writeln!(
        s,
        "| transactions of orphaned blocks: re-included / reversed / waiting | {} / {} / {} |",
        reincluded,
        reversed.len(),
        p.orphaned.len() - reincluded - reversed.len()
    );
    let _ = writeln!(
        s,
        "| check (k-deep agreement) | {} ({}) |",
        if p.check_ok { "OK" } else { "FAILED" },
        p.check_summary
    );
    if !reversed.is_empty() {
        let _ = writeln!(
            s,
            "\nReversed by the heal (on the losing side's chain, their nonce spent otherwise on the final chain):\n"
        );
        for o in reversed {
            let _ = writeln!(
                s,
                "- `{}` at height {} on the side of replica {}: {}",
                o.tx, o.height, o.from_side, o.summary
            );
        }
    }
    s
}

/// Every replica's height over time on each testnet, with the run's events.
pub fn figure(pbft: &PbftAttack, pow: &PowAttack) -> crate::plot::Figure {
    use crate::plot::{Figure, Marker, Panel, Series};
    let heights = |samples: &[Sample], n: usize, label: &dyn Fn(u32) -> String| -> Vec<Series> {
        (0..n as u32)
            .map(|r| Series {
                name: label(r),
                points: samples
                    .iter()
                    .filter(|s| s.replica == r)
                    .map(|s| (s.t_s, s.height as f64))
                    .collect(),
            })
            .collect()
    };
    let faulty: BTreeSet<u32> = pbft.equivocators.iter().copied().collect();
    let pbft_label = |r: u32| {
        if faulty.contains(&r) {
            format!("replica {r} (equivocated)")
        } else {
            format!("replica {r}")
        }
    };
    let pow_label = |r: u32| {
        if r == pow.attacker {
            format!("replica {r} (double-spender)")
        } else {
            format!("replica {r}")
        }
    };
    let pbft_end = pbft.samples.last().map_or(1.0, |s| s.t_s);
    let offset = pbft_end + 5.0;
    let mut markers: Vec<Marker> = pbft
        .events
        .iter()
        .map(|e| Marker {
            t_s: e.t_s,
            label: format!("PBFT: {}", e.label),
        })
        .collect();
    markers.extend(pow.events.iter().map(|e| Marker {
        t_s: offset + e.t_s,
        label: format!("PoW: {}", e.label),
    }));
    let shifted: Vec<Sample> = pow
        .samples
        .iter()
        .map(|s| Sample {
            t_s: offset + s.t_s,
            ..s.clone()
        })
        .collect();
    let end = shifted.last().map_or(offset, |s| s.t_s);
    Figure {
        title: "Under attack: PBFT (left), then proof of work (right)".into(),
        duration_s: end,
        panels: vec![
            Panel {
                title: "PBFT: executed height (equivocators, then a 0,1 / 2,3 partition)".into(),
                y_label: "height".into(),
                series: heights(&pbft.samples, pbft.nodes, &pbft_label),
            },
            Panel {
                title: "Proof of work: main-chain height (double-spend races, then a partition)"
                    .into(),
                y_label: "height".into(),
                series: heights(&shifted, pow.nodes, &pow_label),
            },
        ],
        markers,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn trial(k: u64, max_confirmations: u64, payment_on_chain: bool, released: bool) -> Trial {
        Trial {
            k,
            payment: TxId(Hash([1; 32])),
            conflict: TxId(Hash([2; 32])),
            max_confirmations,
            merchant_reversed: 0,
            payment_on_chain,
            conflict_on_chain: !payment_on_chain,
            released,
            given_up: !released,
            timed_out: false,
            seconds: 12.0,
        }
    }

    fn measured() -> (PbftAttack, PowAttack) {
        let sample = |t_s: f64, replica: u32, height: u64| Sample {
            t_s,
            replica,
            height,
            hash: Hash([height as u8; 32]),
        };
        let pbft = PbftAttack {
            nodes: 4,
            equivocators: vec![0],
            under_attack: Progress {
                heights: [(1, (10, 400)), (2, (10, 410))].into(),
                seconds: 10.0,
            },
            partitioned: Progress {
                heights: [(0, (500, 500)), (2, (500, 501))].into(),
                seconds: 8.0,
            },
            healed: Progress {
                heights: [(0, (500, 900)), (2, (501, 900))].into(),
                seconds: 10.0,
            },
            resumed_after_s: Some(1.5),
            check_ok: true,
            agreed_height: 900,
            detected: [("equivocation".to_string(), 3.0)].into(),
            samples: vec![sample(0.0, 0, 10), sample(1.0, 0, 20)],
            events: vec![Event {
                t_s: 0.5,
                label: "0 equivocate".into(),
            }],
            ..PbftAttack::default()
        };
        let orphan = |reversed: bool, final_height: Option<u64>| Orphaned {
            tx: TxId(Hash([if reversed { 7 } else { 8 }; 32])),
            from_side: 2,
            height: 40,
            final_height,
            reversed,
            summary: "q1a → q1b, 1 (nonce 3)".into(),
        };
        let pow = PowAttack {
            nodes: 4,
            attacker: 3,
            share: 0.3,
            trials: vec![trial(1, 1, false, true), trial(6, 6, true, false)],
            partition: PowPartition {
                side_blocks: [(0, 5), (2, 7)].into(),
                forked: true,
                converged_after_s: Some(0.8),
                reorg_depths: [(5, 2)].into(),
                orphaned: vec![orphan(true, None), orphan(false, Some(45))],
                check_ok: true,
                check_summary: "agreed".into(),
            },
            samples: vec![sample(0.0, 3, 1), sample(2.0, 3, 3)],
            events: vec![Event {
                t_s: 1.0,
                label: "payment (k = 1)".into(),
            }],
        };
        (pbft, pow)
    }

    /// The report says what was measured: no fork and no reversal for PBFT, the k = 1 payment
    /// reversed and the k = 6 one not, the partition's fork, reorg and reversed transfer.
    #[test]
    fn the_attack_report_renders_the_measured_outcomes() {
        let (pbft, pow) = measured();
        let md = render(&pbft, &pow, 10);
        assert!(
            md.contains("| blocks committed by the honest replicas meanwhile | 390–400 |"),
            "{md}"
        );
        assert!(md.contains("equivocation: 3"), "{md}");
        assert!(
            md.contains("| blocks committed during the 8 s partition (0,1 / 2,3) | 0–1 |"),
            "{md}"
        );
        assert!(md.contains("1.5 s"), "{md}");
        assert!(
            md.contains("| 0 (verdict OK, agreed up to height 900) |"),
            "{md}"
        );
        assert!(md.contains("| 1 | 1 | released its branch | yes |"), "{md}");
        assert!(md.contains("| 6 | 6 | gave up | no |"), "{md}");
        assert!(md.contains("depth 5: 2"), "{md}");
        assert!(md.contains("| 1 / 1 / 0 |"), "{md}");
        assert!(
            md.contains(&format!("`{}` at height 40", TxId(Hash([7; 32])))),
            "{md}"
        );
        let svg = figure(&pbft, &pow).to_svg();
        assert!(svg.contains("double-spender") && svg.contains("PoW: payment (k = 1)"));
    }

    /// The live model: certain above half the hash power, Rosenfeld-like below, falling with k;
    /// and the share the hashpower setting gives.
    #[test]
    fn the_live_model_and_the_hash_share() {
        assert_eq!(live_model(0.6, 3, 10), 1.0);
        assert_eq!(live_model(0.0, 1, 10), 0.0);
        let k1 = live_model(0.3, 1, 10);
        let k6 = live_model(0.3, 6, 10);
        assert!(k1 > k6 && k6 > 0.0, "{k1} {k6}");
        // k = 1: the attacker wins at once with 2+ blocks first (q²), else catches up.
        assert!(
            (k1 - 0.3 * 0.3 - 0.3 * 0.7 * live_step(0.3, 0) - 0.7 * live_step(0.3, 1)).abs() < 1e-9
        );
        let rate = rate_for_share(20_000, 3, 0.3);
        assert!((rate as f64 / (rate as f64 + 60_000.0) - 0.3).abs() < 1e-4);
    }

    fn live_step(q: f64, behind: i32) -> f64 {
        let r: f64 = q / (1.0 - q);
        (r.powi(behind + 1) - r.powi(11)) / (1.0 - r.powi(11))
    }
}
