//! Every shipped scenario, against real processes: with at most f malicious replicas safety and
//! liveness hold for every behaviour; with f+1 colluders the checker catches the fork. Scenarios
//! run one at a time (each is a whole testnet under load on a two-core machine).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::path::Path;
use std::sync::Mutex;

use quire_testnet::scenario::spec::Safety;
use quire_testnet::scenario::{self, Plan};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs one shipped scenario; returns its outcome and its report (the run's folder is removed
/// when the run passes, so the report is read first).
fn run(name: &str) -> (scenario::Outcome, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    let plan = Plan::load(&path).unwrap();
    let dir = support::temp_dir(name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime
        .block_on(scenario::run(plan, &dir, false, &mut std::io::sink()))
        .unwrap();
    let report = std::fs::read_to_string(outcome.report_dir.join("report.md")).unwrap();
    assert!(report.contains("Verdict"), "{report}");
    assert!(outcome.report_dir.join("plot.svg").exists());
    if outcome.judgement.pass {
        let _ = std::fs::remove_dir_all(&dir);
        (outcome, report)
    } else {
        panic!(
            "{name}: {}\n\n{report}\n(kept in {})",
            outcome.judgement.verdict(),
            dir.display()
        );
    }
}

fn holds(name: &str) {
    let (outcome, _) = run(name);
    assert!(outcome.judgement.safety_held, "{name}");
    assert_eq!(outcome.judgement.expected, Safety::Holds);
}

#[test]
fn equivocating_primary() {
    holds("equivocating-primary");
}

#[test]
fn silent_primary() {
    holds("silent-primary");
}

#[test]
fn double_voting_backup() {
    holds("double-voting-backup");
}

#[test]
fn forged_signatures() {
    holds("forged-signatures");
}

#[test]
fn lying_view_change() {
    holds("lying-view-change");
}

#[test]
fn partition_and_heal() {
    holds("partition-and-heal");
}

#[test]
fn crash_restart_loop() {
    holds("crash-restart-loop");
}

#[test]
fn stale_view() {
    holds("stale-view");
}

#[test]
fn future_view() {
    holds("future-view");
}

#[test]
fn invalid_batch() {
    holds("invalid-batch");
}

#[test]
fn impersonate() {
    holds("impersonate");
}

#[test]
fn delay_votes() {
    holds("delay-votes");
}

#[test]
fn flood() {
    holds("flood");
}

#[test]
fn seven_replicas_two_faulty() {
    holds("seven-replicas-two-faulty");
}

/// f+1 colluders: the run passes only if the checker found the fork, and the report shows where.
#[test]
fn colluding_equivocation_is_caught() {
    let (outcome, report) = run("colluding-equivocation");
    assert!(!outcome.judgement.safety_held);
    assert!(report.contains("forked at height"), "{report}");
}

/// Every shipped scenario file is valid, and a malformed one is refused before anything starts.
#[test]
fn scenario_files_are_checked_before_anything_starts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        Plan::load(&entry.unwrap().path()).unwrap();
        count += 1;
    }
    assert!(count >= 9);
    let bad = std::env::temp_dir().join(format!("quire-bad-scenario-{}.toml", std::process::id()));
    std::fs::write(&bad, "name = \"x\"\nnodes = 4\n[load]\nrate = 1\nduration = 10\n[[steps]]\nat = 1\naction = \"byzantine\"\nreplica = 9\nbehaviour = \"silent\"\n[expect]\nsafety = \"holds\"\n").unwrap();
    let node = env!("CARGO_BIN_EXE_quire-testnet");
    let out = std::process::Command::new(node)
        .args(["--dir", "/nonexistent-quire-dir", "run"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("replica 9 is out of range"), "{stderr}");
    assert!(!std::path::Path::new("/nonexistent-quire-dir").exists());
    let _ = std::fs::remove_file(&bad);
}
