//! Proof-of-work testnets: the first transfer of `up`, behaviours and hash rates through the
//! admin API, and the safety check that judges what proof of work promises — honest replicas
//! agree on every block at least `k` deep below their heads — with the forks, the deepest reorg
//! and any transfer once reported final and later reversed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use quire_chain::genesis::ConsensusMode;
use quire_chain::pow::{Limits, PowChain, PowError, Received};
use quire_chain::store::{MemoryStore, Store};
use quire_chain::{Hash, ReplicaId, Transfer, TxId};
use quire_client::Client;
use quire_client::pow::{PowTx, verify_headers};
use quire_node::pow::PowBehaviour;
use quire_wire::rpc::{BlockRef, Request, Response};

use crate::ops::Testnet;

pub fn is_pow(net: &Testnet) -> bool {
    net.network.genesis.protocol.consensus == ConsensusMode::Pow
}

/// Refuses a PoW command on a PBFT testnet (or the reverse) with a clear message.
pub fn require(net: &Testnet, mode: ConsensusMode, what: &str) -> Result<()> {
    let has = net.network.genesis.protocol.consensus;
    if has != mode {
        bail!(
            "{what} needs a {} testnet; the one in {} runs {} (its genesis says consensus = \"{}\")",
            mode.name(),
            net.layout.dir.display(),
            has.name(),
            has.name()
        );
    }
    Ok(())
}

/// Switches replica `i` to a proof-of-work behaviour.
pub fn set_behaviour(net: &Testnet, i: u32, name: &str) -> Result<PowBehaviour> {
    require(net, ConsensusMode::Pow, &format!("behaviour '{name}'"))?;
    net.check_index(i)?;
    let b = PowBehaviour::parse(name).ok_or_else(|| {
        let known: Vec<&str> = PowBehaviour::ALL.iter().map(|b| b.name()).collect();
        anyhow!(
            "unknown proof-of-work behaviour '{name}'; this testnet runs proof of work: {}",
            known.join(", ")
        )
    })?;
    if b == PowBehaviour::DoubleSpend {
        bail!(
            "double-spend needs the transfer to reverse: quire-testnet byzantine {i} double-spend --from ACCOUNT --to ACCOUNT [--amount A] [--confirmations K] [--give-up B]"
        );
    }
    net.http(i, "POST", &format!("/admin/behaviour?name={}", b.name()))?;
    net.log_event(&format!("behaviour {i} {}", b.name()))?;
    Ok(b)
}

/// What `quire-testnet byzantine I double-spend` needs: whose next transfer to reverse, where
/// the conflicting transfer pays, and when the attacker releases its branch.
#[derive(Clone, Debug)]
pub struct DoubleSpendArgs {
    /// The paying account (the testnet must hold its key): an account name or key file.
    pub from: String,
    /// Where the conflicting transfer pays: an account name, key file or `q1…` address.
    pub to: String,
    /// The conflicting transfer's amount (default: the sender's whole balance).
    pub amount: Option<u64>,
    /// The merchant's k: the branch is held until the payment is this deep (default: the
    /// genesis's `confirmations`).
    pub confirmations: Option<u64>,
    /// Give up this many blocks behind the public chain.
    pub give_up_behind: u64,
}

/// An account name of the testnet, a key file, or an address.
fn resolve_address(net: &Testnet, text: &str) -> Result<quire_chain::Address> {
    if text.starts_with("q1") {
        return Ok(quire_chain::Address::parse(text)?);
    }
    Ok(resolve_key(net, text)?.address())
}

fn resolve_key(net: &Testnet, text: &str) -> Result<quire_chain::Keypair> {
    if let Some(entry) = net.network.accounts.iter().find(|a| a.name == text) {
        return Ok(quire_chain::Keypair::read_file(std::path::Path::new(
            &entry.key,
        ))?);
    }
    let path = std::path::Path::new(text);
    if path.is_file() {
        return Ok(quire_chain::Keypair::read_file(path)?);
    }
    bail!(
        "{text:?} is not an account of the testnet in {} nor a key file",
        net.layout.dir.display()
    )
}

/// Arms replica `i` as a double-spender: signs the conflicting transfer (the sender's next
/// nonce on the most-work chain, so the sender's next transfer is the payment it reverses) and
/// hands it to the replica's admin API. Returns the conflicting transfer.
pub async fn double_spend(
    net: &Testnet,
    i: u32,
    args: &DoubleSpendArgs,
) -> Result<quire_chain::Transaction> {
    require(net, ConsensusMode::Pow, "behaviour 'double-spend'")?;
    net.check_index(i)?;
    let key = resolve_key(net, &args.from)
        .with_context(|| "--from must be an account whose key the testnet holds")?;
    let to = resolve_address(net, &args.to)?;
    if to == key.address() {
        bail!("--to must differ from --from: a transfer to oneself reverses nothing");
    }
    let client = Client::new(net.network.clone())?;
    let account = client.pow_account(key.address()).await?.account;
    let amount = args.amount.unwrap_or(account.balance);
    if amount == 0 || amount > account.balance {
        bail!(
            "the conflicting transfer must pay between 1 and the sender's balance ({})",
            account.balance
        );
    }
    let conflict = Transfer {
        from: key.address(),
        to,
        amount,
        nonce: account.nonce,
    }
    .sign(&key, &net.network.genesis.chain_id());
    let k = match args.confirmations {
        Some(k) => k,
        None => net
            .network
            .genesis
            .pow
            .map_or(1, |p| p.confirmations as u64),
    };
    use quire_chain::codec::Encode;
    net.http(
        i,
        "POST",
        &format!(
            "/admin/behaviour?name=double-spend&tx={}&confirmations={k}&give_up={}",
            hex::encode(conflict.to_bytes()),
            args.give_up_behind
        ),
    )?;
    net.log_event(&format!(
        "behaviour {i} double-spend nonce {} k {k}",
        account.nonce
    ))?;
    Ok(conflict)
}

/// Where `tx` is on replica `replica`'s main chain, as that replica says: (height, block hash,
/// confirmations). `None` if it is not there.
pub async fn tx_at(
    client: &Client,
    replica: ReplicaId,
    tx: TxId,
) -> Result<Option<(u64, Hash, u64)>> {
    let status = client.call(replica, &Request::TxStatus(tx)).await?;
    let Response::TxStatus(quire_wire::rpc::TxStatus::Committed { block, .. }) = status else {
        return Ok(None);
    };
    let head = match client
        .call(replica, &Request::Block(BlockRef::Latest))
        .await?
    {
        Response::Block { block: Some(b), .. } => b.header.height,
        _ => return Ok(None),
    };
    let height = block.header.height;
    Ok(Some((
        height,
        block.header.hash(),
        (head + 1).saturating_sub(height),
    )))
}

/// Sets replica `i`'s miner rate (hashes per second).
pub fn hashpower(net: &Testnet, i: u32, rate: u64) -> Result<()> {
    require(net, ConsensusMode::Pow, "hashpower")?;
    net.check_index(i)?;
    net.http(i, "POST", &format!("/admin/hashpower?rate={rate}"))?;
    net.log_event(&format!("hashpower {i} {rate}"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Remembers that a transfer was reported final, so `check` can tell if it is ever reversed.
pub fn record_final(net: &Testnet, tx: &PowTx) -> Result<()> {
    let path = net.layout.dir.join("finals.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{} {} {} {}", tx.tx, tx.height, tx.block_hash, tx.k)?;
    Ok(())
}

fn finals(net: &Testnet) -> Vec<(TxId, u64, Hash, u64)> {
    let text = std::fs::read_to_string(net.layout.dir.join("finals.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            Some((
                TxId(Hash::from_hex(p.first()?).ok()?),
                p.get(1)?.parse().ok()?,
                Hash::from_hex(p.get(2)?).ok()?,
                p.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// `up`'s proof that the network works: one transfer, found by the client on the most-work
/// chain it verified itself.
pub async fn first_transfer(net: &Testnet) -> Result<(u64, u128)> {
    let client = Client::new(net.network.clone())?;
    let from = net.account_key(0)?;
    let to = net
        .account_key(1)
        .or_else(|_| net.account_key(0))?
        .address();
    let start = Instant::now();
    let tx = Transfer {
        from: from.address(),
        to,
        amount: 1,
        nonce: 0,
    }
    .sign(&from, &net.network.genesis.chain_id());
    client.submit_one(&tx).await?;
    let found = client
        .pow_wait_final(tx.id(), Some(1), Duration::from_secs(60))
        .await?;
    Ok((found.height, start.elapsed().as_millis()))
}

/// A number from a replica's `/metrics`.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub struct ReplicaChain {
    pub id: ReplicaId,
    pub height: u64,
    pub hashes: Vec<Hash>,
    pub stale_blocks: Option<u64>,
    pub reorgs: Option<u64>,
    pub reorg_depth_max: Option<u64>,
    pub problem: Option<String>,
}

pub struct PowCheckReport {
    pub k: u64,
    pub replicas: Vec<ReplicaChain>,
    pub faulty: BTreeSet<ReplicaId>,
    /// Heights at which two honest replicas differ although both hold the block k deep.
    pub disagreements: Vec<(u64, ReplicaId, ReplicaId)>,
    pub agreed_up_to: u64,
    pub reexecuted: Result<u64, String>,
    pub finals_checked: usize,
    pub reversed: Vec<(TxId, u64)>,
}

impl PowCheckReport {
    pub fn ok(&self) -> bool {
        self.disagreements.is_empty()
            && self.reversed.is_empty()
            && self.reexecuted.is_ok()
            && self.replicas.iter().all(|r| r.problem.is_none())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "proof-of-work check (k = {}): {} replicas, faulty (not judged): {:?}",
            self.k,
            self.replicas.len(),
            self.faulty
        );
        let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        for r in &self.replicas {
            let _ = writeln!(
                out,
                "  replica {}: height {}, stale blocks {}, reorgs {}, deepest reorg {}{}",
                r.id,
                r.height,
                show(r.stale_blocks),
                show(r.reorgs),
                show(r.reorg_depth_max),
                r.problem
                    .as_ref()
                    .map_or(String::new(), |p| format!(" — {p}"))
            );
        }
        if self.disagreements.is_empty() {
            let _ = writeln!(
                out,
                "  agreement: honest replicas hold the same block at every height at least {} deep (up to height {})",
                self.k, self.agreed_up_to
            );
        }
        for (h, a, b) in &self.disagreements {
            let _ = writeln!(
                out,
                "  FORK k deep: replicas {a} and {b} differ at height {h}"
            );
        }
        match &self.reexecuted {
            Ok(h) => {
                let _ = writeln!(
                    out,
                    "  re-execution: blocks 1..={h} re-executed from the genesis through the real rules: state roots match"
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  RE-EXECUTION FAILED: {e}");
            }
        }
        let _ = writeln!(
            out,
            "  transfers reported final: {}, reversed since: {}",
            self.finals_checked,
            self.reversed.len()
        );
        for (tx, h) in &self.reversed {
            let _ = writeln!(out, "  REVERSED: {tx} was final at height {h}");
        }
        let _ = writeln!(out, "verdict: {}", if self.ok() { "OK" } else { "FAILED" });
        out
    }
}

/// Checks a proof-of-work testnet; `faulty` replicas are reported but not judged.
pub async fn check(net: &Testnet, faulty: &BTreeSet<ReplicaId>) -> Result<PowCheckReport> {
    require(net, ConsensusMode::Pow, "the proof-of-work check")?;
    let client = Client::new(net.network.clone())?;
    let genesis = &net.network.genesis;
    let rules = quire_chain::pow::PowRules::new(genesis).ok_or_else(|| anyhow!("not PoW"))?;
    let k = rules.params.confirmations as u64;
    let mut replicas = Vec::new();
    for i in 0..net.n() {
        let metrics = net.http(i, "GET", "/metrics").unwrap_or_default();
        let mut r = ReplicaChain {
            id: i,
            height: 0,
            hashes: Vec::new(),
            stale_blocks: metric(&metrics, "quire_pow_stale_blocks"),
            reorgs: metric(&metrics, "quire_pow_reorgs_total"),
            reorg_depth_max: metric(&metrics, "quire_pow_reorg_depth_max"),
            problem: None,
        };
        match client.pow_headers(i).await {
            Ok(headers) => {
                if let Err(fault) = verify_headers(&rules, &genesis.block().header, &headers) {
                    r.problem = Some(format!("its chain does not verify: {fault}"));
                }
                r.height = headers.len().saturating_sub(1) as u64;
                r.hashes = headers.iter().map(|h| h.hash()).collect();
            }
            Err(e) => r.problem = Some(format!("unreachable: {e}")),
        }
        if faulty.contains(&i) {
            r.problem = None;
        }
        replicas.push(r);
    }
    let honest: Vec<&ReplicaChain> = replicas
        .iter()
        .filter(|r| !faulty.contains(&r.id) && !r.hashes.is_empty())
        .collect();
    // A block is k deep at a replica when its head is k − 1 blocks above it.
    let deep = |r: &ReplicaChain| (r.height + 1).saturating_sub(k);
    let mut disagreements = Vec::new();
    let agreed_up_to = honest.iter().map(|r| deep(r)).min().unwrap_or(0);
    for (x, a) in honest.iter().enumerate() {
        for b in &honest[x + 1..] {
            let top = deep(a).min(deep(b));
            if let Some(h) =
                (0..=top).find(|h| a.hashes.get(*h as usize) != b.hashes.get(*h as usize))
            {
                disagreements.push((h, a.id, b.id));
            }
        }
    }
    let reexecuted = match honest.first() {
        Some(r) => reexecute(&client, genesis, r).await,
        None => Err("no honest replica answered".into()),
    };
    let recorded = finals(net);
    let mut reversed = Vec::new();
    for (tx, height, hash, _) in &recorded {
        let gone = honest
            .iter()
            .any(|r| r.height >= *height && r.hashes.get(*height as usize) != Some(hash));
        if gone {
            reversed.push((*tx, *height));
        }
    }
    Ok(PowCheckReport {
        k,
        replicas,
        faulty: faulty.clone(),
        disagreements,
        agreed_up_to,
        reexecuted,
        finals_checked: recorded.len(),
        reversed,
    })
}

/// Fetches `r`'s blocks and executes them from the genesis with the real rules, in memory.
async fn reexecute(
    client: &Client,
    genesis: &quire_chain::Genesis,
    r: &ReplicaChain,
) -> Result<u64, String> {
    let store = MemoryStore::new(genesis);
    let mut chain =
        PowChain::open(genesis, &store, Limits::default()).map_err(|e| e.to_string())?;
    for h in 1..=r.height {
        let block = match client
            .call(r.id, &Request::Block(BlockRef::Height(h)))
            .await
        {
            Ok(Response::Block { block: Some(b), .. }) => b,
            // The replica moved on (a reorg under our feet): judge what we have.
            Ok(_) => break,
            Err(e) => return Err(format!("replica {}: {e}", r.id)),
        };
        match chain.receive(&store, block, unix_ms()) {
            Ok(Received::NewHead(change)) => {
                store.write_pow(&change.write).map_err(|e| e.to_string())?;
            }
            Ok(other) => return Err(format!("block {h} did not extend the chain: {other:?}")),
            Err(PowError::Refused(e)) => return Err(format!("block {h}: {e}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut ledger = store
        .ledger(genesis.chain_id())
        .map_err(|e| e.to_string())?;
    if ledger.state_root() != store.head().state_root {
        return Err("the re-executed state does not match the head's state root".into());
    }
    Ok(store.head().height)
}
