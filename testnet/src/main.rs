use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use quire_consensus::Behaviour;
use quire_testnet::generate::Plan;
use quire_testnet::ops::{self, Testnet};
use quire_testnet::sim;

#[derive(Parser)]
#[command(
    name = "quire-testnet",
    about = "Local Quire testnets: start, inspect, crash, partition and corrupt replicas; check, benchmark, simulate"
)]
struct Cli {
    /// The testnet's directory.
    #[arg(long, global = true, default_value = "testnet")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate keys, genesis and configs, start the replicas, and commit a first transfer.
    Up {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Funded accounts to create (keys under DIR/accounts/).
        #[arg(long, default_value_t = 8)]
        accounts: usize,
        /// First QUIC port (HTTP ports start 100 above); 0 lets the OS pick free ports.
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// How the network decides blocks: pbft or pow (proof of work).
        #[arg(long, default_value = "pbft", value_parser = ["pbft", "pow"])]
        consensus: String,
        /// Proof of work: each miner's hash rate (hashes per second).
        #[arg(long, default_value_t = quire_chain::pow::params::DEFAULT_HASHES_PER_S)]
        hash_rate: u64,
        /// Proof of work: the target block interval in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Do not start the dashboard (start it later with `quire-testnet dashboard`).
        #[arg(long)]
        no_dashboard: bool,
        /// The dashboard's loopback port (0: any free one).
        #[arg(long, default_value_t = 0)]
        dashboard_port: u16,
        /// Also start Prometheus (Debian's `prometheus`), scraping every replica.
        #[arg(long)]
        prometheus: bool,
    },
    /// Print the running dashboard's address, or serve it here (foreground) if none runs.
    Dashboard {
        /// Serve in the foreground even if another dashboard runs.
        #[arg(long)]
        serve: bool,
        /// The loopback port to serve on (0: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Proof of work: set replica I's miner to RATE hashes per second.
    Hashpower { replica: u32, rate: u64 },
    /// A table per replica: pid, view, height, head, peers, behaviour.
    Status,
    /// Stop every replica (their data stays; `--clean` removes the testnet).
    Down {
        #[arg(long)]
        clean: bool,
    },
    /// Kill replica I with SIGKILL (a crash).
    Kill { replica: u32 },
    /// Start replica I again from its data directory.
    Restart { replica: u32 },
    /// Print replica I's log.
    Logs {
        replica: u32,
        /// Last N lines (0 for all).
        #[arg(long, default_value_t = 50)]
        lines: usize,
    },
    /// Make replica I behave as BEHAVIOUR (see `quire-testnet behaviours`).
    Byzantine {
        replica: u32,
        behaviour: String,
        /// Replicas it colludes with (they get both sides of an equivocation), e.g. `--colluders 0,1`.
        #[arg(long, value_delimiter = ',')]
        colluders: Vec<u32>,
        /// double-spend: the account whose next transfer (the payment) is reversed.
        #[arg(long)]
        from: Option<String>,
        /// double-spend: where the conflicting transfer pays (account name, key file or address).
        #[arg(long)]
        to: Option<String>,
        /// double-spend: the conflicting transfer's amount (default: the sender's whole balance).
        #[arg(long)]
        amount: Option<u64>,
        /// double-spend: hold the private branch until the payment is K deep (default: the
        /// genesis's k), then release it as soon as it has more work.
        #[arg(long)]
        confirmations: Option<u64>,
        /// double-spend: give up when the public chain is B blocks longer.
        #[arg(long, default_value_t = 10)]
        give_up: u64,
    },
    /// Check that the honest replicas agree: same blocks, valid certificates, valid state.
    Check,
    /// Run a scenario file (testnet, load, timeline of faults) and write a report folder.
    Run {
        scenario: PathBuf,
        /// Leave the scenario's testnet running afterwards.
        #[arg(long)]
        keep: bool,
        /// Run the same load without the steps first, and measure each disruption's throughput
        /// against it (`expect.throughput_ratio_min` is judged only then).
        #[arg(long)]
        baseline: bool,
    },
    /// Make replica I honest again.
    Honest { replica: u32 },
    /// List the Byzantine behaviours.
    Behaviours,
    /// Cut the network: e.g. `partition 0,1 / 2,3` (replicas in no group are isolated).
    Partition {
        #[arg(num_args = 1.., required = true)]
        groups: Vec<String>,
    },
    /// Remove all partitions and delays.
    Heal,
    /// Delay everything replica I sends by MS milliseconds (to every peer, or `--to J`).
    Delay {
        replica: u32,
        ms: u64,
        #[arg(long)]
        to: Option<u32>,
    },
    /// Freeze replica I (SIGSTOP).
    Pause { replica: u32 },
    /// Unfreeze replica I (SIGCONT).
    Resume { replica: u32 },
    /// Open-loop load against a fresh benchmark testnet: committed tx/s and latency.
    Bench(quire_testnet::bench::BenchArgs),
    /// The same load on a PBFT testnet, then on a proof-of-work testnet: a comparison report.
    Compare(quire_testnet::compare::CompareArgs),
    /// Run the deterministic simulator over many seeds and check safety and progress.
    Sim(sim::SimArgs),
    /// A seeded random fault timeline (one replica at a time killed, paused, isolated, delayed
    /// or Byzantine) under load, written out as a scenario file and run; prints how long each
    /// fault stopped commits.
    Chaos {
        #[arg(long)]
        seed: u64,
        /// How long the load runs.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Transfers per second offered.
        #[arg(long, default_value_t = 150)]
        rate: u64,
        /// The longest a single fault may stop commits before the run fails.
        #[arg(long, default_value_t = 5.0)]
        stall_max: f64,
        /// Only write the scenario file (DIR/chaos/chaos-SEED.toml) and print its path.
        #[arg(long)]
        write_only: bool,
    },
    /// The simulator's proof-of-work experiments beside their closed forms: double-spend,
    /// selfish, network.
    SimPow(quire_testnet::pow_sim::PowSimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => run_sim(&args),
        Command::SimPow(args) => quire_testnet::pow_sim::run(&args).map(|text| {
            print!("{text}");
            ExitCode::SUCCESS
        }),
        command => run(&cli.dir, command).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(dir: &Path, command: Command) -> Result<()> {
    let mut out = std::io::stdout();
    match command {
        Command::Up {
            nodes,
            accounts,
            base_port,
            consensus,
            hash_rate,
            interval_ms,
            no_dashboard,
            dashboard_port,
            prometheus,
        } => {
            let mut plan = Plan {
                nodes,
                accounts,
                base_port,
                ..Plan::default()
            };
            if consensus == "pow" {
                plan.protocol.consensus = quire_chain::genesis::ConsensusMode::Pow;
                plan.pow_node.hashes_per_s = hash_rate;
                plan.pow = Some(quire_chain::pow::PowParams::for_hash_rate(
                    hash_rate.saturating_mul(nodes as u64),
                    interval_ms,
                ));
            }
            let net = runtime()?.block_on(ops::up(dir, &plan, &mut out))?;
            if !no_dashboard {
                let exe = std::env::current_exe().context("cannot find this executable")?;
                let url = quire_testnet::dashboard::start(&net.layout, &exe, dashboard_port)?;
                writeln!(out, "dashboard: {url}")?;
            }
            if prometheus {
                let url = quire_testnet::prometheus::start(&net)?;
                writeln!(out, "prometheus: {url}")?;
            }
            print_next_steps(&net, &mut out)?;
        }
        Command::Dashboard { serve, port } => {
            let layout = quire_testnet::layout::Layout::new(dir);
            if !serve && let Some(url) = quire_testnet::dashboard::url(&layout) {
                writeln!(out, "dashboard: {url}")?;
                return Ok(());
            }
            runtime()?.block_on(quire_testnet::dashboard::serve(dir, port, |url| {
                // Output is best effort: the server runs on without a terminal.
                let _ = writeln!(
                    std::io::stdout(),
                    "dashboard: {url} (serving until interrupted)"
                );
            }))?;
        }
        Command::Status => {
            let net = Testnet::open(dir)?;
            let statuses = runtime()?.block_on(net.status())?;
            print_status(&net, &statuses, &mut out)?;
            if let Some(url) = quire_testnet::dashboard::url(&net.layout) {
                writeln!(out, "dashboard: {url}")?;
            }
        }
        Command::Down { clean } => {
            let net = Testnet::open(dir)?;
            let dashboard = quire_testnet::dashboard::url(&net.layout);
            let stopped = net.stop_all()?;
            writeln!(out, "stopped {stopped} replicas")?;
            if let Some(url) = dashboard {
                writeln!(out, "stopped the dashboard ({url})")?;
            }
            if clean {
                for p in [net.layout.replicas(), net.layout.accounts()] {
                    let _ = std::fs::remove_dir_all(p);
                }
                for f in ["network.toml", "genesis.toml", "events.log"] {
                    let _ = std::fs::remove_file(net.layout.dir.join(f));
                }
                writeln!(out, "removed the testnet in {}", dir.display())?;
            }
        }
        Command::Kill { replica } => {
            let net = Testnet::open(dir)?;
            if net.kill(replica)? {
                writeln!(out, "killed replica {replica} (SIGKILL)")?;
            } else {
                writeln!(out, "replica {replica} was not running")?;
            }
        }
        Command::Restart { replica } => {
            let net = Testnet::open(dir)?;
            net.check_index(replica)?;
            let pid = net.start(replica)?;
            writeln!(
                out,
                "restarted replica {replica} (pid {pid}); it recovers from its data directory and catches up"
            )?;
        }
        Command::Logs { replica, lines } => {
            let net = Testnet::open(dir)?;
            net.check_index(replica)?;
            let path = net.layout.log(replica);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let all: Vec<&str> = text.lines().collect();
            let from = if lines == 0 {
                0
            } else {
                all.len().saturating_sub(lines)
            };
            for l in &all[from..] {
                writeln!(out, "{l}")?;
            }
        }
        Command::Byzantine {
            replica,
            behaviour,
            colluders,
            from,
            to,
            amount,
            confirmations,
            give_up,
        } => {
            let net = Testnet::open(dir)?;
            if quire_testnet::pow::is_pow(&net) && behaviour == "double-spend" {
                let (Some(from), Some(to)) = (from, to) else {
                    bail!(
                        "double-spend needs --from ACCOUNT (whose next transfer it reverses) and --to ACCOUNT (where the conflicting transfer pays)"
                    );
                };
                let args = quire_testnet::pow::DoubleSpendArgs {
                    from,
                    to,
                    amount,
                    confirmations,
                    give_up_behind: give_up,
                };
                let conflict =
                    runtime()?.block_on(quire_testnet::pow::double_spend(&net, replica, &args))?;
                writeln!(
                    out,
                    "replica {replica} is now double-spend: holding {} (the conflicting transfer); the sender's next transfer starts its private branch",
                    conflict.id()
                )?;
                return Ok(());
            }
            if quire_testnet::pow::is_pow(&net) {
                let b = quire_testnet::pow::set_behaviour(&net, replica, &behaviour)?;
                writeln!(out, "replica {replica} is now {}", b.name())?;
                return Ok(());
            }
            let b = Behaviour::parse(&behaviour).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (selfish-mine, double-spend and withhold need a proof-of-work testnet)"
                )
            })?;
            net.set_behaviour_with(replica, b, &colluders)?;
            writeln!(out, "replica {replica} is now {b}")?;
        }
        Command::Check => {
            let net = Testnet::open(dir)?;
            let faulty = net.ever_faulty();
            if quire_testnet::pow::is_pow(&net) {
                let report = runtime()?.block_on(quire_testnet::pow::check(&net, &faulty))?;
                write!(out, "{}", report.render())?;
                if !report.ok() {
                    bail!("the check failed");
                }
                return Ok(());
            }
            let report = runtime()?.block_on(quire_testnet::check::check(&net, &faulty))?;
            write!(out, "{}", report.render())?;
            if !report.ok() {
                bail!("the check failed");
            }
        }
        Command::Hashpower { replica, rate } => {
            let net = Testnet::open(dir)?;
            quire_testnet::pow::hashpower(&net, replica, rate)?;
            writeln!(out, "replica {replica} now mines at {rate} hashes/s")?;
        }
        Command::Honest { replica } => {
            let net = Testnet::open(dir)?;
            if quire_testnet::pow::is_pow(&net) {
                quire_testnet::pow::set_behaviour(&net, replica, "honest")?;
                writeln!(out, "replica {replica} is now honest")?;
                return Ok(());
            }
            net.set_behaviour(replica, Behaviour::Honest)?;
            writeln!(out, "replica {replica} is now honest")?;
        }
        Command::Behaviours => {
            for b in Behaviour::ALL {
                writeln!(out, "{b}")?;
            }
            writeln!(out, "proof of work (quire-testnet up --consensus pow):")?;
            for b in quire_node::pow::PowBehaviour::ALL {
                writeln!(out, "  {}", b.name())?;
            }
        }
        Command::Partition { groups } => {
            let groups = ops::parse_groups(&groups.join(" "))?;
            Testnet::open(dir)?.partition(&groups)?;
            writeln!(out, "partitioned: {groups:?}")?;
        }
        Command::Heal => {
            Testnet::open(dir)?.heal()?;
            writeln!(out, "healed: no partitions, no delays")?;
        }
        Command::Delay { replica, ms, to } => {
            Testnet::open(dir)?.delay(replica, ms, to)?;
            writeln!(out, "replica {replica} now delays what it sends by {ms} ms")?;
        }
        Command::Pause { replica } => {
            Testnet::open(dir)?.pause(replica, true)?;
            writeln!(out, "replica {replica} paused")?;
        }
        Command::Resume { replica } => {
            Testnet::open(dir)?.pause(replica, false)?;
            writeln!(out, "replica {replica} resumed")?;
        }
        Command::Run {
            scenario,
            keep,
            baseline,
        } => {
            let plan = quire_testnet::scenario::Plan::load(&scenario)?;
            let reports = dir.join("reports");
            let outcome = if baseline {
                runtime()?.block_on(quire_testnet::scenario::run_with_baseline(
                    plan, &reports, keep, &mut out,
                ))?
            } else {
                runtime()?.block_on(quire_testnet::scenario::run(plan, &reports, keep, &mut out))?
            };
            writeln!(out, "{}", outcome.judgement.verdict())?;
            writeln!(
                out,
                "report: {}",
                outcome.report_dir.join("report.md").display()
            )?;
            if !outcome.judgement.pass {
                bail!("the scenario's expectations were not met");
            }
        }
        Command::Chaos {
            seed,
            minutes,
            rate,
            stall_max,
            write_only,
        } => {
            let mut plan = quire_testnet::chaos::ChaosPlan::new(seed, minutes);
            plan.rate = rate;
            plan.stall_max_s = stall_max;
            let text = quire_testnet::chaos::scenario(&plan)?;
            let folder = dir.join("chaos");
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            let path = folder.join(format!("chaos-{seed}.toml"));
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "chaos timeline: {}", path.display())?;
            if write_only {
                return Ok(());
            }
            let scenario = quire_testnet::scenario::Plan::parse(&text)?;
            let outcome = runtime()?.block_on(quire_testnet::scenario::run(
                scenario.clone(),
                &dir.join("reports"),
                false,
                &mut out,
            ))?;
            write!(out, "{}", quire_testnet::chaos::table(&outcome.judgement))?;
            let views = quire_testnet::chaos::views(&scenario, &outcome.record);
            writeln!(
                out,
                "   highest view {}: {} scheduled rotations, {} faults hit the primary of the moment, {} view changes neither explains",
                views.highest,
                views.rotations,
                views.primary_faults,
                views.unexplained()
            )?;
            writeln!(out, "{}", outcome.judgement.verdict())?;
            writeln!(
                out,
                "report: {}
replay: quire-testnet run {}",
                outcome.report_dir.join("report.md").display(),
                path.display()
            )?;
            if !outcome.judgement.pass {
                bail!("the chaos run's expectations were not met");
            }
        }
        Command::Compare(args) => {
            runtime()?.block_on(quire_testnet::compare::run(dir, &args, &mut out))?;
        }
        Command::Bench(args) => {
            runtime()?.block_on(quire_testnet::bench::run(dir, &args, &mut out))?;
        }
        Command::Sim(_) | Command::SimPow(_) => {}
    }
    Ok(())
}

fn print_status(
    net: &Testnet,
    statuses: &[quire_client::ReplicaStatus],
    out: &mut dyn Write,
) -> Result<()> {
    writeln!(
        out,
        "{:>3} {:>8} {:>6} {:>8} {:<10} {:>6} {:<18} {:>8}",
        "id", "pid", "view", "height", "head", "peers", "behaviour", "mempool"
    )?;
    for s in statuses {
        let pid = net
            .running(s.replica)
            .map_or("-".to_string(), |p| p.to_string());
        match &s.status {
            Ok(st) => writeln!(
                out,
                "{:>3} {:>8} {:>6} {:>8} {:<10} {:>6} {:<18} {:>8}",
                s.replica,
                pid,
                format!("{}{}", st.view, if st.changing_view { "*" } else { "" }),
                st.height,
                st.head_hash.short(),
                st.peers_connected,
                st.behaviour,
                st.mempool
            )?,
            Err(e) => writeln!(out, "{:>3} {:>8} unreachable ({e})", s.replica, pid)?,
        }
    }
    Ok(())
}

fn print_next_steps(net: &Testnet, out: &mut dyn Write) -> Result<()> {
    let dir = net.layout.dir.display();
    let network = net.layout.network();
    writeln!(
        out,
        "\nnetwork file: {} (quire finds ./testnet/network.toml by default; else pass --network or set QUIRE_NETWORK)",
        network.display()
    )?;
    writeln!(
        out,
        "funded accounts: {} (keys in {}/accounts/)",
        net.network.accounts.len(),
        dir
    )?;
    writeln!(out, "\ntry next:")?;
    writeln!(out, "  quire-testnet status")?;
    writeln!(out, "  quire balance account-0")?;
    writeln!(
        out,
        "  quire transfer --from account-0 --to <address from `quire keygen`> --amount 10 --wait"
    )?;
    writeln!(out, "  quire-testnet kill 3 && quire-testnet restart 3")?;
    writeln!(
        out,
        "  quire-testnet byzantine 0 equivocate   (then: quire-testnet check)"
    )?;
    writeln!(out, "  quire-testnet down")?;
    Ok(())
}

fn run_sim(args: &sim::SimArgs) -> Result<ExitCode> {
    let mut stdout = std::io::stdout();
    // A running count on a terminal (many seeds take minutes); nothing in a pipe or a file.
    let tty = std::io::stderr().is_terminal();
    let total = args.seed.map_or(args.seeds, |_| 1);
    let mut done = 0u64;
    let started = std::time::Instant::now();
    let summary = sim::run(args, |report| {
        done += 1;
        if tty && (done.is_multiple_of(10) || done == total) {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprint!("\r{done}/{total} seeds  {rate:.1} seeds/s ");
            if done == total {
                eprintln!();
            }
        }
        if let Some((step, tick, violation)) = &report.violation {
            let _ = writeln!(
                stdout,
                "seed {}: VIOLATION at step {step} (tick {tick}): {violation}\n  faulty: {:?}\n  replay: {}",
                report.seed,
                report.faulty,
                args.replay_command(report.seed)
            );
        }
    })?;
    let _ = writeln!(std::io::stdout(), "{}", summary.line());
    Ok(if summary.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
