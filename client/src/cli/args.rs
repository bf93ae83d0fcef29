//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The Quire client: transfers and end-to-end verified reads from a Quire network.
///
/// Replicas are not trusted: every balance, status and block shown was checked against
/// certificates, merkle proofs and attestations of f+1 validators; `--json` shows that evidence,
/// in hex, so it can be checked again with other code.
#[derive(Parser, Debug)]
#[command(name = "quire", version, arg_required_else_help = true)]
pub struct Cli {
    /// The network file (default: $QUIRE_NETWORK, else ./testnet/network.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub network: Option<PathBuf>,

    /// Print one JSON object per command instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for each replica call, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// Ask this replica first (and always submit to it); the others are still asked as needed.
    #[arg(long, global = true, value_name = "REPLICA")]
    pub via: Option<u32>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a new account key and write it to a private (0600) file.
    Keygen {
        /// Where to write the key (default: ./quire-key-<first 8 hex digits of the address>.toml).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Sign and submit a transfer.
    Transfer {
        /// The sender's key file, or an account name from the network file (e.g. account-0).
        #[arg(long, value_name = "KEY_FILE")]
        from: String,
        /// The recipient: an address (q1…), an account name from the network file, or a key file
        /// (its address is used, e.g. one `quire keygen --out FILE` just wrote).
        #[arg(long, value_name = "ADDRESS")]
        to: String,
        /// A positive whole number of units.
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        amount: String,
        /// Wait until the commit and its outcome are proven.
        #[arg(long)]
        wait: bool,
        /// How long to wait, in seconds (implies --wait).
        #[arg(long, value_name = "S")]
        wait_secs: Option<u64>,
        /// Proof of work: final at this many confirmations (default: the genesis's k).
        #[arg(long, value_name = "K")]
        confirmations: Option<u64>,
    },
    /// Show an account's proven balance and nonce.
    Balance {
        /// An address (q1…) or an account name from the network file.
        #[arg(value_name = "ADDRESS")]
        account: String,
    },
    /// Show a transaction's proven status.
    Tx {
        /// The transaction hash (64 hex digits).
        #[arg(value_name = "HASH")]
        hash: String,
        /// Proof of work: final at this many confirmations (default: the genesis's k).
        #[arg(long, value_name = "K")]
        confirmations: Option<u64>,
    },
    /// Show a verified block (`--raw`: write it with its proofs in the export encoding).
    Block {
        /// A height, or "latest".
        #[arg(value_name = "HEIGHT|latest")]
        at: String,
        /// Write the block, its outcomes, attestations and merkle proofs in the documented
        /// binary encoding (docs/client-rpc.md §5) instead of showing it.
        #[arg(long)]
        raw: bool,
        /// Where `--raw` writes (default: standard output, unless it is a terminal).
        #[arg(long, value_name = "PATH", requires = "raw")]
        out: Option<PathBuf>,
    },
    /// Check a block export file (`quire block N --raw`) against the network's genesis, offline.
    VerifyExport {
        /// The export file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show what each replica says about itself (not verified).
    Status,
    /// Verify the whole chain from genesis: links, certificates, checkpoint, attestations.
    VerifyChain,
}
