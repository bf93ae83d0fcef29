use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quire_testnet::sim;

#[derive(Parser)]
#[command(
    name = "quire-testnet",
    about = "Local Quire testnets, fault injection, checks, benchmarks and the simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the deterministic simulator over many seeds and check safety and progress.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => run_sim(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_sim(args: &sim::SimArgs) -> anyhow::Result<ExitCode> {
    let summary = sim::run(args, |report| {
        if let Some((step, tick, violation)) = &report.violation {
            println!(
                "seed {}: VIOLATION at step {step} (tick {tick}): {violation}\n  faulty: {:?}\n  replay: {}",
                report.seed,
                report.faulty,
                args.replay_command(report.seed)
            );
        }
    })?;
    println!("{}", summary.line());
    Ok(if summary.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
