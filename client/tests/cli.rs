//! The `quire` binary on bad input: one `error: …` line on stderr, exit status 2, never a panic.
//! None of these needs a running network.

// Tests may unwrap: a failure here is a failed test, not a user-facing error.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use quire_chain::{Address, Keypair};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn quire(args: &[&str], cwd: &Path) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(args)
        .current_dir(cwd)
        .env_remove("QUIRE_NETWORK")
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Asserts a usage error: exit 2 and exactly one stderr line, starting with `expected`.
fn assert_usage_error(run: &Run, expected: &str) {
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {:?}", run.stderr);
    assert!(
        lines[0].starts_with(&format!("error: {expected}")),
        "got {:?}, expected it to start with {expected:?}",
        lines[0]
    );
    assert!(!run.stderr.contains("panicked"));
}

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "quire-cli-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A valid address with one hex digit changed: the checksum must catch it.
fn mistyped_address() -> String {
    let good = Keypair::from_secret([7; 32]).address().to_string();
    let mut chars: Vec<char> = good.chars().collect();
    chars[10] = if chars[10] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

fn good_address() -> String {
    Keypair::from_secret([8; 32]).address().to_string()
}

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("key.toml");
    Keypair::from_secret([9; 32]).write_file(&path).unwrap();
    path
}

#[test]
fn a_mistyped_address_is_caught_by_its_checksum() {
    let dir = scratch("address");
    let key = key_file(&dir);
    let to = mistyped_address();
    let run = quire(
        &[
            "transfer",
            "--from",
            key.to_str().unwrap(),
            "--to",
            &to,
            "--amount",
            "5",
        ],
        &dir,
    );
    assert_usage_error(&run, "bad address: checksum mismatch (mistyped?)");
    let run = quire(&["balance", "q1abc"], &dir);
    assert_usage_error(&run, "bad address:");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn amounts_must_be_positive_whole_numbers() {
    let dir = scratch("amount");
    let key = key_file(&dir);
    let to = good_address();
    for bad in ["-5", "0", "12x", "1.5", ""] {
        let run = quire(
            &[
                "transfer",
                "--from",
                key.to_str().unwrap(),
                "--to",
                &to,
                "--amount",
                bad,
            ],
            &dir,
        );
        assert_usage_error(
            &run,
            &format!("amount must be a positive whole number, got {bad:?}"),
        );
    }
    let run = quire(
        &[
            "transfer",
            "--from",
            key.to_str().unwrap(),
            "--to",
            &to,
            "--amount",
            "18446744073709551616",
        ],
        &dir,
    );
    assert_usage_error(&run, "amount 18446744073709551616 is too large");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_key_file_is_named() {
    let dir = scratch("nokey");
    let run = quire(
        &[
            "transfer",
            "--from",
            "./k.toml",
            "--to",
            &good_address(),
            "--amount",
            "5",
        ],
        &dir,
    );
    assert_usage_error(
        &run,
        "cannot read key file ./k.toml: No such file or directory",
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_world_readable_key_file_is_refused() {
    let dir = scratch("mode");
    let key = key_file(&dir);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let run = quire(
        &[
            "transfer",
            "--from",
            key.to_str().unwrap(),
            "--to",
            &good_address(),
            "--amount",
            "5",
        ],
        &dir,
    );
    assert_usage_error(&run, &format!("key file {} has mode 644", key.display()));
    assert!(run.stderr.contains("chmod 600"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_network_file_says_how_to_start_one() {
    let dir = scratch("nonet");
    let key = key_file(&dir);
    let address = good_address();
    // Explicit --network, the default path, and $QUIRE_NETWORK.
    let run = quire(
        &[
            "--network",
            "/nonexistent/network.toml",
            "balance",
            &address,
        ],
        &dir,
    );
    assert_usage_error(&run, "cannot read network file /nonexistent/network.toml");
    assert!(run.stderr.contains("quire-testnet up"), "{}", run.stderr);
    let run = quire(
        &[
            "transfer",
            "--from",
            key.to_str().unwrap(),
            "--to",
            &address,
            "--amount",
            "5",
        ],
        &dir,
    );
    assert_usage_error(&run, "cannot read network file testnet/network.toml");
    assert!(run.stderr.contains("quire-testnet up"));
    let output = Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(["status"])
        .current_dir(&dir)
        .env("QUIRE_NETWORK", "/elsewhere/net.toml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("error: cannot read network file /elsewhere/net.toml"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_hashes_heights_and_flags_are_usage_errors() {
    let dir = scratch("misc");
    assert_usage_error(&quire(&["tx", "xyz"], &dir), "bad transaction hash");
    assert_usage_error(&quire(&["block", "tip"], &dir), "block must be a height");
    assert_usage_error(&quire(&["frobnicate"], &dir), "unrecognized subcommand");
    assert_usage_error(
        &quire(&["transfer", "--from", "k"], &dir),
        "the following required arguments were not provided",
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_its_address() {
    let dir = scratch("keygen");
    let run = quire(&["keygen"], &dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let address_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("address"))
        .unwrap();
    let address = Address::parse(address_line.trim_start_matches("address").trim()).unwrap();
    let expected = dir.join(format!("quire-key-{}.toml", hex::encode(&address.0[..4])));
    assert!(
        run.stdout
            .contains(&format!("quire-key-{}.toml", hex::encode(&address.0[..4])))
    );
    let mode = fs::metadata(&expected).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(Keypair::read_file(&expected).unwrap().address(), address);
    // The JSON form, to a chosen path.
    let out = dir.join("mine.toml");
    let run = quire(&["--json", "keygen", "--out", out.to_str().unwrap()], &dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let address = Address::parse(value["address"].as_str().unwrap()).unwrap();
    assert_eq!(Keypair::read_file(&out).unwrap().address(), address);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = scratch("overwrite");
    let path = dir.join("k.toml");
    fs::write(&path, "precious").unwrap();
    let run = quire(&["keygen", "--out", path.to_str().unwrap()], &dir);
    assert_usage_error(&run, &format!("{} already exists", path.display()));
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
    fs::remove_dir_all(&dir).unwrap();
}
