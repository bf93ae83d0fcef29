//! `quire-node --config replica.toml`: runs one Quire replica.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use quire_node::config::Config;

#[derive(Parser)]
#[command(
    name = "quire-node",
    about = "Run one Quire replica (PBFT over QUIC, RocksDB chain store)"
)]
struct Cli {
    /// The replica's configuration file.
    #[arg(long)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let loaded = match quire_node::node::load(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match quire_node::node::run(loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
