//! Whether the disk can hold what a benchmark is about to write.
//!
//! Every replica keeps every block it commits, so a benchmark writes its whole offered load once
//! per replica, and more (the write-ahead log, then the tables). A sixteen-replica run of 30 s at
//! 8,000 payloads a second left 2–3 GB; a few such testnets kept with `--keep` filled this
//! machine's disk, and the next run's replicas stopped mid-run on `No space left on device` (as a
//! replica must when it cannot make a vote durable) — a figure that measured the disk, not the
//! protocol. So the benchmark says beforehand when the room looks short.

use std::path::Path;

use super::{BenchArgs, Workload};

/// Bytes a replica writes per offered transaction beyond its own size: its id and index entry,
/// its share of the block, the write-ahead log's framing; and the whole written about twice (the
/// log, then the tables).
const OVERHEAD_BYTES: u64 = 64;
const COPIES: u64 = 2;

/// About how many bytes the run described by `args` writes, over all its replicas.
pub(crate) fn estimate(args: &BenchArgs) -> u64 {
    let per_tx = super::tx_size(args) as u64 + OVERHEAD_BYTES;
    let offered = if args.sweep {
        let rates = super::sweep::rates(args);
        let swept: u64 = rates.iter().sum();
        // The overload points offer 2, 4 and 6 times the knee: at most twelve times the top.
        let overload = if args.overload {
            rates.iter().max().copied().unwrap_or(0).saturating_mul(12)
        } else {
            0
        };
        swept.saturating_add(overload).saturating_mul(args.duration)
    } else {
        let load = args.rate.saturating_mul(args.duration);
        // A catch-up run commits its blocks first (about one transaction each at this rate).
        load.saturating_add(args.catchup.unwrap_or(0))
    };
    let accounts = match args.workload {
        Workload::Transfer => args.accounts as u64,
        Workload::Raw => 0,
    };
    offered
        .saturating_add(accounts)
        .saturating_mul(per_tx)
        .saturating_mul(args.nodes as u64)
        .saturating_mul(COPIES)
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir` (or its nearest
/// existing ancestor); `None` when it cannot be told.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    // A relative path's last ancestor is "", which is the working directory.
    let existing = dir
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.exists())?;
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// A warning to print when `free` bytes look short for `needed`, else `None`.
pub(crate) fn warning(dir: &Path, free: u64, needed: u64) -> Option<String> {
    (free < needed).then(|| {
        format!(
            "warning: {} free on the disk of {}, and this run may write about {}: a replica that \
             cannot write stops, and the figures measure the disk (testnets kept with --keep \
             stay until removed)",
            gigabytes(free),
            dir.display(),
            gigabytes(needed)
        )
    })
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// `bench` with `line`'s arguments (split at spaces).
    fn args(line: &str) -> BenchArgs {
        let argv = std::iter::once("bench").chain(line.split_whitespace());
        Cli::try_parse_from(argv).expect("valid arguments").bench
    }

    /// The estimate grows with what is offered, the replicas and the payload, and a sweep
    /// counts every point; a sixteen-replica run like the one that filled the disk is
    /// gigabytes.
    #[test]
    fn the_estimate_follows_the_load() {
        let n16 = args("--nodes 16 --workload raw --rate 8000 --duration 30");
        let bytes = estimate(&n16);
        assert!((3_000_000_000..10_000_000_000).contains(&bytes), "{bytes}");
        let n4 = args("--nodes 4 --workload raw --rate 8000 --duration 30");
        assert_eq!(estimate(&n4) * 4, bytes);
        let sweep = args("--nodes 4 --workload raw --sweep --rates 8000,8000 --duration 30");
        assert_eq!(estimate(&sweep), 2 * estimate(&n4));
        let overload =
            args("--nodes 4 --workload raw --sweep --rates 8000,8000 --duration 30 --overload");
        assert_eq!(estimate(&overload), 14 * estimate(&n4));
    }

    #[test]
    fn a_short_disk_is_named_and_a_roomy_one_is_not() {
        let dir = Path::new("/tmp/quire-bench");
        let w = warning(dir, 1_000_000_000, 5_000_000_000).expect("a warning");
        assert!(
            w.contains("1.0 GB free") && w.contains("about 5.0 GB"),
            "{w}"
        );
        assert_eq!(warning(dir, 5_000_000_000, 1_000_000_000), None);
    }

    #[test]
    fn free_space_is_read_from_the_nearest_existing_folder() {
        let missing = std::env::temp_dir().join("quire-no-such-folder/below/it");
        assert!(free_bytes(&missing).is_some_and(|b| b > 0));
    }
}
