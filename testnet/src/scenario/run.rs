//! Running a scenario: a fresh testnet, a steady load of transfers, the timeline of steps, then
//! the safety check and the liveness judgement. Everything observed goes into a [`Record`].

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use quire_chain::{Keypair, Transaction, Transfer, TxId};
use quire_client::{Client, Options};
use quire_wire::rpc::{Request, Response};

use super::spec::{Action, Plan};
use crate::check::{self, CheckReport};
use crate::follow::Follower;
use crate::generate;
use crate::ops::{self, Testnet};

/// One replica's state at one moment (None: it did not answer).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t_s: f64,
    pub replica: u32,
    pub state: Option<(u64, u64, bool)>,
}

/// One replica process's resident memory at one moment (`/proc/PID/status`, VmRSS).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub t_s: f64,
    pub replica: u32,
    pub rss_kib: u64,
}

/// A committed transfer of the load: when it was submitted and when it was seen committed.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    pub submitted_s: f64,
    pub committed_s: f64,
}

/// Everything a run observed.
#[derive(Debug, Default)]
pub struct Record {
    pub samples: Vec<Sample>,
    pub memory: Vec<Memory>,
    pub commits: Vec<Commit>,
    pub steps: Vec<(f64, String)>,
    pub submitted: u64,
    pub check: Option<CheckReport>,
    /// `quire_misbehaviour_total` lines by the replica that reported them.
    pub misbehaviour: BTreeMap<u32, Vec<String>>,
    pub duration_s: f64,
    pub step_errors: Vec<String>,
}

struct Load {
    keys: Vec<Keypair>,
    next_nonce: Vec<u64>,
    pending: Vec<Option<(Transaction, f64, Instant)>>,
    by_id: HashMap<TxId, usize>,
}

pub struct Runner {
    pub plan: Plan,
    pub net: Testnet,
    pub report_dir: PathBuf,
    client: Arc<Client>,
    start: Instant,
    record: Arc<Mutex<Record>>,
    load: Arc<Mutex<Load>>,
    stop: Arc<AtomicBool>,
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

impl Runner {
    /// Starts a fresh testnet for the scenario under `report_dir/net`.
    pub async fn start(plan: Plan, report_dir: &Path, out: &mut dyn Write) -> Result<Runner> {
        let s = &plan.scenario;
        let net_plan = generate::Plan {
            nodes: s.nodes,
            accounts: s.accounts,
            base_port: 0,
            ..generate::Plan::default()
        };
        let _ = writeln!(
            out,
            "starting {} replicas for scenario '{}'",
            s.nodes, s.name
        );
        let net = ops::up(&report_dir.join("net"), &net_plan, &mut std::io::sink()).await?;
        let keys: Vec<Keypair> = (0..s.accounts)
            .map(|i| net.account_key(i))
            .collect::<Result<_>>()?;
        let options = Options {
            call_timeout: Duration::from_millis(1500),
            ..Options::default()
        };
        let client = Arc::new(Client::with_options(net.network.clone(), options)?);
        let mut next_nonce = vec![0; keys.len()];
        // Account 0 sent `up`'s first transfer.
        next_nonce[0] = 1;
        Ok(Runner {
            load: Arc::new(Mutex::new(Load {
                pending: vec![None; keys.len()],
                keys,
                next_nonce,
                by_id: HashMap::new(),
            })),
            plan,
            net,
            report_dir: report_dir.to_path_buf(),
            client,
            start: Instant::now(),
            record: Arc::new(Mutex::new(Record::default())),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs load and steps for the scenario's duration, lets the replicas settle, and checks.
    pub async fn run(&mut self, out: &mut dyn Write) -> Result<Record> {
        self.start = Instant::now();
        let duration = Duration::from_secs(self.plan.scenario.load.duration);
        let settle = Duration::from_secs_f64(self.plan.scenario.expect.recover_within.min(20.0));
        let mut tasks = vec![
            tokio::spawn(sample_memory(
                self.net.layout.dir.clone(),
                self.start,
                self.record.clone(),
                self.stop.clone(),
            )),
            tokio::spawn(sample(
                self.client.clone(),
                self.net.n(),
                self.start,
                self.record.clone(),
                self.stop.clone(),
            )),
        ];
        // One follower per honest replica; a transfer counts as committed when the first of
        // them sees it. Following one replica at a time timed the follower, not the cluster:
        // when the followed replica was paused, killed or lagging, commits "stopped" for the
        // call timeout (1.5 s) or its patience on top of the protocol's own stop.
        for replica in self.honest_replicas() {
            tasks.push(tokio::spawn(follow(
                self.client.clone(),
                vec![replica],
                self.start,
                self.record.clone(),
                self.load.clone(),
                self.stop.clone(),
            )));
        }
        let load_stop = Arc::new(AtomicBool::new(false));
        let load_task = tokio::spawn(generate_load(
            self.client.clone(),
            self.plan.scenario.load.rate,
            self.start,
            self.record.clone(),
            self.load.clone(),
            load_stop.clone(),
        ));
        for (at, action) in self.plan.steps.clone() {
            tokio::time::sleep_until((self.start + Duration::from_secs_f64(at)).into()).await;
            let _ = writeln!(out, "  {:>5.1} s  {}", secs(self.start), action.label());
            let result = self.perform(&action).await;
            if let Ok(mut r) = self.record.lock() {
                r.steps.push((secs(self.start), action.label()));
                if let Err(e) = result {
                    r.step_errors.push(format!("{}: {e:#}", action.label()));
                }
            }
        }
        tokio::time::sleep_until((self.start + duration).into()).await;
        load_stop.store(true, Ordering::Relaxed);
        let _ = load_task.await;
        let _ = writeln!(
            out,
            "  {:>5.1} s  load stopped; settling for {} s",
            secs(self.start),
            settle.as_secs()
        );
        tokio::time::sleep(settle).await;
        self.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let check = check::check(&self.net, &self.plan.malicious).await?;
        let misbehaviour = self.misbehaviour();
        let mut record = std::mem::take(
            &mut *self
                .record
                .lock()
                .map_err(|_| anyhow::anyhow!("record poisoned"))?,
        );
        record.check = Some(check);
        record.misbehaviour = misbehaviour;
        record.duration_s = duration.as_secs_f64() + settle.as_secs_f64();
        Ok(record)
    }

    fn honest_replicas(&self) -> Vec<u32> {
        (0..self.net.n())
            .filter(|r| !self.plan.malicious.contains(r))
            .collect()
    }

    async fn perform(&self, action: &Action) -> Result<()> {
        let net = &self.net;
        let action = action.clone();
        // The operations block briefly (HTTP to loopback, signals); keep them off the runtime.
        let dir = net.layout.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let net = Testnet::open(&dir)?;
            apply(&net, action)
        })
        .await?
    }

    fn misbehaviour(&self) -> BTreeMap<u32, Vec<String>> {
        let mut out = BTreeMap::new();
        for r in 0..self.net.n() {
            if let Ok(text) = self.net.http(r, "GET", "/metrics") {
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| l.starts_with("quire_misbehaviour_total{"))
                    .map(str::to_string)
                    .collect();
                out.insert(r, lines);
            }
        }
        out
    }

    pub fn shutdown(&self, keep: bool) {
        if !keep {
            let _ = self.net.stop_all();
        }
    }
}

async fn sample(
    client: Arc<Client>,
    n: u32,
    start: Instant,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let t = secs(start);
        let mut rows = Vec::new();
        for r in 0..n {
            let state = match client.call(r, &Request::Status).await {
                Ok(Response::Status(s)) => Some((s.view, s.height, s.changing_view)),
                _ => None,
            };
            rows.push(Sample {
                t_s: t,
                replica: r,
                state,
            });
        }
        if let Ok(mut rec) = record.lock() {
            rec.samples.extend(rows);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every quarter second, the resident memory of every replica process that is running (read
/// from /proc, so it costs the replicas nothing and works while they are under attack).
async fn sample_memory(
    dir: PathBuf,
    start: Instant,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(net) = Testnet::open(&dir) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let t = secs(start);
        let rows: Vec<Memory> = (0..net.n())
            .filter_map(|r| {
                let pid = net.running(r)?;
                Some(Memory {
                    t_s: t,
                    replica: r,
                    rss_kib: rss_kib(pid)?,
                })
            })
            .collect();
        if let Ok(mut rec) = record.lock() {
            rec.memory.extend(rows);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Follows the chain at `candidates` (the next one when one stops answering) and records when
/// each transfer of the load commits, unless another follower saw it first.
async fn follow(
    client: Arc<Client>,
    candidates: Vec<u32>,
    start: Instant,
    record: Arc<Mutex<Record>>,
    load: Arc<Mutex<Load>>,
    stop: Arc<AtomicBool>,
) {
    let mut follower = Follower::new(client, candidates, Duration::from_millis(250));
    while !stop.load(Ordering::Relaxed) {
        let Some(block) = follower.next_block().await else {
            continue;
        };
        let t = secs(start);
        let (Ok(mut l), Ok(mut rec)) = (load.lock(), record.lock()) else {
            return;
        };
        for tx in &block.txs {
            let Some(a) = l.by_id.remove(&tx.id()) else {
                continue;
            };
            if let Some((_, submitted, _)) = l.pending[a].take() {
                rec.commits.push(Commit {
                    submitted_s: submitted,
                    committed_s: t,
                });
            }
            if let Some(t) = tx.as_transfer() {
                l.next_nonce[a] = l.next_nonce[a].max(t.transfer.nonce + 1);
            }
        }
    }
}

/// Offers `rate` transfers a second, each account with at most one in flight, each transfer to
/// f+1 replicas; a transfer that has not committed after two seconds is sent to every replica.
async fn generate_load(
    client: Arc<Client>,
    rate: u64,
    start: Instant,
    record: Arc<Mutex<Record>>,
    load: Arc<Mutex<Load>>,
    stop: Arc<AtomicBool>,
) {
    if rate == 0 {
        return;
    }
    let chain_id = client.network().chain_id();
    let n = client.network().replicas.len() as u32;
    let f = n.saturating_sub(1) / 3;
    let interval = Duration::from_secs_f64(1.0 / rate as f64).max(Duration::from_micros(200));
    let mut account = 0usize;
    let mut target = 0u32;
    let mut last_resend = Instant::now();
    let mut tick = tokio::time::interval(interval);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if last_resend.elapsed() > Duration::from_millis(500) {
            last_resend = Instant::now();
            resend_stale(&client, &load);
        }
        let tx = {
            let Ok(mut l) = load.lock() else { return };
            let accounts = l.keys.len();
            let Some(a) = (0..accounts)
                .map(|k| (account + k) % accounts)
                .find(|a| l.pending[*a].is_none())
            else {
                // Every account has a transfer in flight: open loop up to that bound.
                continue;
            };
            account = a + 1;
            let tx = Transfer {
                from: l.keys[a].address(),
                to: l.keys[(a + 1) % accounts].address(),
                amount: 1,
                nonce: l.next_nonce[a],
            }
            .sign(&l.keys[a], &chain_id);
            l.pending[a] = Some((tx.clone(), secs(start), Instant::now()));
            l.by_id.insert(tx.id(), a);
            tx
        };
        if let Ok(mut r) = record.lock() {
            r.submitted += 1;
        }
        // Each transfer goes to f+1 replicas, so at least one honest replica has it whatever the
        // faulty ones do with theirs: the throughput a scenario reports is the protocol's, not
        // the time a client waits on a replica that sits on its transfer.
        target = (target + 1) % n;
        for k in 0..=f {
            let c = client.clone();
            let tx = tx.clone();
            let to = (target + k) % n;
            tokio::spawn(async move {
                let _ = c.call(to, &Request::Submit(vec![tx])).await;
            });
        }
    }
}

/// Sends every transfer that has waited two seconds to every replica (a faulty one may be
/// sitting on it, or it was lost with a crashed replica).
fn resend_stale(client: &Arc<Client>, load: &Arc<Mutex<Load>>) {
    let stale: Vec<Transaction> = load
        .lock()
        .map(|mut l| {
            l.pending
                .iter_mut()
                .flatten()
                .filter(|(_, _, at)| at.elapsed() > Duration::from_secs(2))
                .map(|(tx, _, at)| {
                    *at = Instant::now();
                    tx.clone()
                })
                .collect()
        })
        .unwrap_or_default();
    if !stale.is_empty() {
        let c = client.clone();
        tokio::spawn(async move {
            let _ = c.submit_everywhere(&stale).await;
        });
    }
}

/// Performs one step of a timeline on `net` with the CLI's operations (the scenario runner's
/// and the dashboard's).
pub fn apply(net: &Testnet, action: Action) -> Result<()> {
    match action {
        Action::Byzantine {
            replica,
            behaviour,
            colluders,
        } => net.set_behaviour_with(replica, behaviour, &colluders),
        Action::Honest(r) => net.set_behaviour(r, quire_consensus::Behaviour::Honest),
        Action::Kill(r) => net.kill(r).map(|_| ()),
        Action::Restart(r) => net.start(r).map(|_| ()),
        Action::Pause(r) => net.pause(r, true),
        Action::Resume(r) => net.pause(r, false),
        Action::Partition(groups) => net.partition(&groups),
        Action::Heal => net.heal(),
        Action::Delay { replica, ms, to } => net.delay(replica, ms, to),
    }
}
