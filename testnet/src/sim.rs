//! `quire-testnet sim`: runs the simulator (`quire_sim`) over many seeds in parallel
//! and reports violations with the command that replays them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use quire_sim::{Choice, Report, SimConfig};

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Replicas in the cluster.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// How many replicas are faulty.
    #[arg(long, default_value_t = 1)]
    pub faulty: usize,
    /// The faulty replicas' behaviour, or `mixed` (each draws one, and draws again every 500 ticks).
    #[arg(long, default_value = "mixed", value_parser = Choice::parse)]
    pub behaviour: Choice,
    /// Run this many seeds (first-seed, first-seed+1, …).
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Replay exactly this seed (prints its trace with --trace).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Virtual ticks per seed (a tick is 10 virtual ms).
    #[arg(long, default_value_t = 2400)]
    pub ticks: u64,
    /// The tick at which drops, partitions and crashes stop for good; progress is required after.
    #[arg(long)]
    pub heal_at: Option<u64>,
    /// Messages dropped, per thousand (before the network heals).
    #[arg(long, default_value_t = 20)]
    pub drop: u64,
    /// Messages duplicated, per thousand.
    #[arg(long, default_value_t = 20)]
    pub duplicate: u64,
    /// Message delay range, in ticks (delays also reorder).
    #[arg(long, default_value_t = 1)]
    pub delay_min: u64,
    #[arg(long, default_value_t = 6)]
    pub delay_max: u64,
    /// No partitions.
    #[arg(long)]
    pub no_partitions: bool,
    /// No crash-restarts of honest replicas.
    #[arg(long)]
    pub no_crashes: bool,
    /// Chance per account per tick (‰) that a client sends a transfer.
    #[arg(long, default_value_t = 15)]
    pub load: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// With --seed: write the full trace to this file.
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
    /// Sign and verify with ed25519 instead of the simulator's keyed-hash signatures (every
    /// check is made either way; ed25519 makes a seed ~10× slower).
    #[arg(long)]
    pub real_signatures: bool,
}

impl SimArgs {
    pub fn config(&self, seed: u64) -> SimConfig {
        let mut cfg = SimConfig::new(self.nodes, self.faulty, self.behaviour, seed);
        cfg.ticks = self.ticks;
        cfg.heal_tick = self.heal_at.unwrap_or(self.ticks * 7 / 12);
        cfg.faults.drop_per_mille = self.drop;
        cfg.faults.duplicate_per_mille = self.duplicate;
        cfg.faults.delay_min_ticks = self.delay_min;
        cfg.faults.delay_max_ticks = self.delay_max.max(self.delay_min);
        cfg.partitions = !self.no_partitions;
        cfg.crashes = !self.no_crashes;
        cfg.load_per_mille = self.load;
        cfg.trace = self.trace.is_some();
        cfg.real_signatures = self.real_signatures;
        cfg
    }

    /// The command line that replays one seed.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!(
            "quire-testnet sim --seed {seed} --nodes {} --faulty {} --behaviour {} --ticks {}",
            self.nodes,
            self.faulty,
            self.behaviour.name(),
            self.ticks
        );
        if let Some(h) = self.heal_at {
            cmd += &format!(" --heal-at {h}");
        }
        cmd += &format!(
            " --drop {} --duplicate {} --delay-min {} --delay-max {} --load {}",
            self.drop, self.duplicate, self.delay_min, self.delay_max, self.load
        );
        if self.no_partitions {
            cmd += " --no-partitions";
        }
        if self.no_crashes {
            cmd += " --no-crashes";
        }
        if self.real_signatures {
            cmd += " --real-signatures";
        }
        cmd + " --trace trace.txt"
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes >= 1, "--nodes must be at least 1");
        anyhow::ensure!(self.nodes <= 64, "--nodes is at most 64 in the simulator");
        anyhow::ensure!(self.faulty <= self.nodes, "--faulty cannot exceed --nodes");
        anyhow::ensure!(self.ticks >= 100, "--ticks must be at least 100");
        anyhow::ensure!(
            self.drop <= 1000 && self.duplicate <= 1000,
            "--drop and --duplicate are per thousand (0..=1000)"
        );
        Ok(())
    }
}

/// What a sim run found.
pub struct Summary {
    pub seeds: u64,
    pub violations: Vec<Report>,
    pub heights: Vec<u64>,
    pub deepest_cascade: u32,
    pub max_view: u64,
    pub disk_faults: u64,
    pub multi_block_disk_faults: u64,
    pub seconds: f64,
}

impl Summary {
    fn add(&mut self, r: &Report) {
        self.seeds += 1;
        self.heights
            .push(r.heights.iter().copied().max().unwrap_or(0));
        self.deepest_cascade = self.deepest_cascade.max(r.view_change_streak_max);
        self.max_view = self.max_view.max(r.max_view);
        self.disk_faults += r.disk_faults;
        self.multi_block_disk_faults += r.multi_block_disk_faults;
    }

    pub fn line(&self) -> String {
        let mut h = self.heights.clone();
        h.sort_unstable();
        let (min, med, max) = if h.is_empty() {
            (0, 0, 0)
        } else {
            (h[0], h[h.len() / 2], h[h.len() - 1])
        };
        format!(
            "seeds {}, violations {}, committed height min/median/max {min}/{med}/{max}, deepest view-change cascade {}, highest view {}, disk faults {} ({} in multi-block writes), {:.1} s, {:.1} seeds/s",
            self.seeds,
            self.violations.len(),
            self.deepest_cascade,
            self.max_view,
            self.disk_faults,
            self.multi_block_disk_faults,
            self.seconds,
            self.seeds as f64 / self.seconds.max(1e-9)
        )
    }
}

pub fn run(args: &SimArgs, mut progress: impl FnMut(&Report) + Send) -> anyhow::Result<Summary> {
    args.validate()?;
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed + args.seeds).collect(),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let start = Instant::now();
    let next = AtomicU64::new(0);
    // Only a few numbers are kept per seed, so a run of a million seeds stays small; a seed's
    // whole report is kept if it found a violation (or carries the requested trace).
    let summary = Mutex::new(Summary {
        seeds: 0,
        violations: Vec::new(),
        heights: Vec::with_capacity(seeds.len()),
        deepest_cascade: 0,
        max_view: 0,
        disk_faults: 0,
        multi_block_disk_faults: 0,
        seconds: 0.0,
    });
    let traced: Mutex<Option<Report>> = Mutex::new(None);
    let progress = Mutex::new(&mut progress);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = seeds.get(i) else { break };
                    let report = quire_sim::run(args.config(seed));
                    if let Ok(mut p) = progress.lock() {
                        (*p)(&report);
                    }
                    if let Ok(mut s) = summary.lock() {
                        s.add(&report);
                    }
                    if args.trace.is_some() {
                        if let Ok(mut t) = traced.lock() {
                            *t = Some(report);
                        }
                    } else if report.violation.is_some()
                        && let Ok(mut s) = summary.lock()
                    {
                        s.violations.push(report);
                    }
                }
            });
        }
    });
    let mut summary = summary
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a simulator thread panicked"))?;
    if let Some(report) = traced.into_inner().ok().flatten() {
        if let Some(path) = &args.trace {
            std::fs::write(path, report.trace.join("\n") + "\n")?;
        }
        if report.violation.is_some() {
            summary.violations.push(report);
        }
    }
    summary.violations.sort_by_key(|r| r.seed);
    Ok(Summary {
        seconds: start.elapsed().as_secs_f64(),
        ..summary
    })
}
