//! The README's shell snippets, as a new user would type them. Blocks that drive a running testnet
//! are run for real, each as one `sh -e` script, against a testnet of real processes in
//! `./testnet` (the README's default); blocks that start testnets of their own, build, or run
//! scripts are checked against the real programs instead: every subcommand and flag they use must
//! be one the binary's `--help` lists, and every file they name must exist.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use quire_testnet::generate::Plan;

const README: &str = include_str!("../../README.md");

/// The ```sh blocks of the README, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The commands of a block: comments dropped, `;` separated, split into words.
fn commands(block: &str) -> Vec<Vec<String>> {
    block
        .lines()
        .map(|l| match l.find(" #") {
            Some(i) => &l[..i],
            None => l,
        })
        .flat_map(|l| l.split(';'))
        .map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
        .collect()
}

/// Subcommands that start testnets of their own or build: checked, not run.
const NOT_RUN: [&str; 4] = ["up", "run", "bench", "sim"];

fn runnable(block: &str) -> bool {
    commands(block).iter().all(|words| {
        let first = words[0].as_str();
        let program = first
            .rsplit('=')
            .next()
            .unwrap_or(first)
            .trim_start_matches("$(");
        match program {
            "quire" => true,
            "quire-testnet" => !NOT_RUN.contains(&words.get(1).map_or("", String::as_str)),
            _ => false,
        }
    })
}

fn help(program: &Path, sub: &str) -> String {
    let out = Command::new(program)
        .args([sub, "--help"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {sub} --help failed",
        program.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks a command that is not run: its program exists, and its subcommand, flags and files
/// are real.
fn check(words: &[String], repo: &Path) {
    match words[0].as_str() {
        "quire" | "quire-testnet" => {
            let program = support::binary(&words[0]);
            let sub = words.get(1).expect("a subcommand");
            let text = help(&program, sub);
            for word in &words[2..] {
                if let Some(flag) = word.strip_prefix("--") {
                    let flag = flag.split('=').next().unwrap_or(flag);
                    assert!(
                        text.contains(&format!("--{flag}")),
                        "`{}` has no --{flag}:\n{text}",
                        words.join(" ")
                    );
                } else if word.ends_with(".toml") {
                    assert!(repo.join(word).is_file(), "{word} does not exist");
                }
            }
        }
        "cargo" => {
            let at = words
                .iter()
                .position(|w| w == "--path")
                .expect("cargo --path");
            let path = repo.join(&words[at + 1]).join("Cargo.toml");
            assert!(path.is_file(), "{} does not exist", path.display());
        }
        script if script.starts_with("scripts/") => {
            let path = repo.join(script);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions(),
            );
            assert!(mode & 0o111 != 0, "{script} is not executable");
        }
        other => panic!("the README runs `{other}`, which this test does not know"),
    }
}

/// Runs a block as one script in `dir`, with the workspace's binaries first on the PATH.
fn run(block: &str, dir: &Path, cache: &Path) {
    let bin = support::binary("quire");
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-e", "-x", "-c", block])
        .current_dir(dir)
        .env("PATH", path)
        .env("QUIRE_CACHE_DIR", cache)
        .env_remove("QUIRE_NETWORK")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("---- block ----\n{block}---- stdout ----\n{stdout}---- stderr ----\n{stderr}");
    assert!(
        out.status.success(),
        "a README block failed:\n{block}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Starts every replica that is not running (a block may end with `quire-testnet down`).
async fn ensure_up(net: &support::Net) {
    for i in 0..net.tn.n() {
        if net.tn.running(i).is_none() {
            net.tn.start(i).unwrap();
        }
    }
    net.tn.wait_ready(Duration::from_secs(60)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_snippets_run_against_a_real_testnet() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = support::temp_dir("readme");
    let cache = scratch.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let plan = Plan {
        nodes: 4,
        accounts: 8,
        base_port: 0,
        ..Plan::default()
    };
    let net = support::start_at(scratch.join("testnet"), plan).await;
    let blocks = sh_blocks(README);
    assert!(blocks.len() >= 5, "{} sh blocks", blocks.len());
    let mut ran = 0;
    for block in &blocks {
        if runnable(block) {
            ensure_up(&net).await;
            run(block, &scratch, &cache);
            ran += 1;
        } else {
            for words in commands(block) {
                check(&words, &repo);
            }
        }
    }
    assert!(ran >= 3, "only {ran} blocks ran");
    // The README's transfer to a fresh key file arrived.
    let me = quire_chain::Keypair::read_file(&scratch.join("me.toml")).unwrap();
    ensure_up(&net).await;
    let proven = net.client.account(me.address()).await.unwrap();
    assert_eq!(proven.account.balance, 25);
    drop(net);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn the_snippet_parser_sees_commands_and_comments() {
    let block = "quire-testnet kill 2; quire-testnet restart 2   # crash it\nquire balance x\n";
    assert_eq!(
        commands(block),
        vec![
            vec!["quire-testnet", "kill", "2"],
            vec!["quire-testnet", "restart", "2"],
            vec!["quire", "balance", "x"]
        ]
    );
    assert!(runnable(block));
    assert!(!runnable("quire-testnet up --nodes 4\n"));
    assert!(!runnable("scripts/demo\n"));
}
