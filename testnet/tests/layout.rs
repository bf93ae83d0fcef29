//! What a new machine and a new user meet before any replica runs: `scripts/setup` decides what to
//! install from what the build really loads; the crates are layered so the client and the
//! consensus core build without RocksDB and the replica without the simulator; and a simulator
//! seed replays byte for byte in a fresh process.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "quire-layout-{label}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn touch(root: &Path, path: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"").unwrap();
}

fn executable(root: &Path, path: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fresh Debian machine with Rust, as the base image ships it: a C compiler, pkg-config, cargo,
/// and llvm's `libclang-cpp.so.14` — which is not the libclang bindgen loads — and no RocksDB.
fn fresh_machine() -> PathBuf {
    let root = temp_dir("fresh");
    touch(&root, "/usr/lib/llvm-14/lib/libclang-cpp.so.14");
    touch(&root, "/usr/lib/llvm-14/lib/libLLVM-14.so.1");
    touch(&root, "/usr/lib/x86_64-linux-gnu/libc.so.6");
    executable(&root, "/usr/bin/cc", "exit 0");
    executable(&root, "/usr/bin/pkg-config", "exit 0");
    executable(
        &root,
        "/root/.cargo/bin/cargo",
        "echo 'cargo 1.95.0 (f2d3ce0bd 2026-03-21)'",
    );
    root
}

/// The same machine after `apt-get install libclang-dev librocksdb-dev`.
fn complete_machine() -> PathBuf {
    let root = fresh_machine();
    touch(&root, "/usr/lib/llvm-14/lib/libclang.so.1");
    touch(&root, "/usr/lib/llvm-14/lib/libclang-14.so");
    touch(&root, "/usr/lib/x86_64-linux-gnu/librocksdb.so");
    root
}

fn setup(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(workspace().join("scripts/setup"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The line `would install: …` of a dry run, as a list of packages.
fn would_install(out: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("would install: "))
        .unwrap_or_else(|| panic!("no 'would install' line in:\n{}", text(out)));
    if line == "nothing" {
        return Vec::new();
    }
    line.split_whitespace().map(str::to_string).collect()
}

/// The failure that started this: `libclang-cpp.so.14` is not libclang, so a fresh machine needs
/// libclang-dev as well as librocksdb-dev, and nothing else.
#[test]
fn setup_on_a_fresh_machine_asks_for_libclang_and_rocksdb() {
    let root = fresh_machine();
    let out = setup(&["--dry-run", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(would_install(&out), ["libclang-dev", "librocksdb-dev"]);
    // It says why, so a user can judge what it is about to do.
    assert!(text(&out).contains("libclang.so"), "{}", text(&out));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn setup_on_a_complete_machine_asks_for_nothing() {
    let root = complete_machine();
    let out = setup(&["--dry-run", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(would_install(&out), Vec::<String>::new());
    std::fs::remove_dir_all(root).unwrap();
}

/// A missing C compiler or pkg-config is asked for; a cargo older than the workspace's
/// rust-version is not an apt package, so it is named as a by-hand step and the run fails.
#[test]
fn setup_names_a_missing_compiler_and_an_old_cargo() {
    let root = complete_machine();
    std::fs::remove_file(root.join("usr/bin/cc")).unwrap();
    std::fs::remove_file(root.join("usr/bin/pkg-config")).unwrap();
    executable(&root, "/root/.cargo/bin/cargo", "echo 'cargo 1.70.0 (old)'");
    let out = setup(&["--dry-run", "--root", root.to_str().unwrap()]);
    assert_eq!(would_install(&out), ["gcc", "pkg-config"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("rustup"), "{}", text(&out));
    std::fs::remove_dir_all(root).unwrap();
}

/// Without apt it installs nothing, says exactly what to install by hand, and fails.
#[test]
fn setup_without_apt_says_what_to_install_and_fails() {
    let root = fresh_machine();
    let out = setup(&["--root", root.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("apt-get is not available"), "{said}");
    assert!(said.contains("libclang-dev librocksdb-dev"), "{said}");
    std::fs::remove_dir_all(root).unwrap();
}

/// With apt it installs the whole list in one call, then checks that what the build loads is
/// really there now.
#[test]
fn setup_installs_the_list_with_apt_and_checks_it_took() {
    let root = fresh_machine();
    let log = root.join("apt.log");
    let lib = root.join("usr/lib/llvm-14/lib");
    let multiarch = root.join("usr/lib/x86_64-linux-gnu");
    executable(
        &root,
        "/usr/bin/apt-get",
        &format!(
            "echo \"$@\" >> {log}\n[ \"$1\" = install ] && touch {lib}/libclang.so.1 {multiarch}/librocksdb.so\nexit 0",
            log = log.display(),
            lib = lib.display(),
            multiarch = multiarch.display(),
        ),
    );
    let out = setup(&["--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let calls = std::fs::read_to_string(&log).unwrap();
    let install = calls
        .lines()
        .find(|l| l.starts_with("install"))
        .unwrap_or_else(|| panic!("apt-get was not asked to install: {calls}"));
    assert!(
        install.ends_with("libclang-dev librocksdb-dev"),
        "{install}"
    );
    // A package that "installed" without providing the library is a failure, not a success.
    std::fs::remove_file(lib.join("libclang.so.1")).unwrap();
    std::fs::remove_file(multiarch.join("librocksdb.so")).unwrap();
    executable(&root, "/usr/bin/apt-get", "exit 0");
    let out = setup(&["--root", root.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("still missing"), "{}", text(&out));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn setup_refuses_unknown_arguments() {
    let out = setup(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = setup(&["--root", "/nonexistent/quire-root"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// The packages (normal and build dependencies, not dev) in a package's tree.
fn dependency_tree(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
            package,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn assert_absent(package: &str, forbidden: &[&str]) {
    let tree = dependency_tree(package);
    assert!(
        tree.iter().any(|p| p == package),
        "{package} missing from its own tree"
    );
    for f in forbidden {
        assert!(
            !tree.iter().any(|p| p == f),
            "{package} must build without {f}, but its dependency tree contains it"
        );
    }
}

/// Who needs what: a user who installs only the client compiles no RocksDB, no replica and no
/// simulator; the consensus core and the data model build without RocksDB; the replica does not
/// carry the simulator.
#[test]
fn layers_depend_only_on_what_they_need() {
    assert_absent(
        "quire-client",
        &[
            "librocksdb-sys",
            "rocksdb",
            "quire-rocks",
            "quire-node",
            "quire-consensus",
            "quire-sim",
        ],
    );
    assert_absent(
        "quire-consensus",
        &["librocksdb-sys", "quire-rocks", "quire-sim"],
    );
    assert_absent("quire-chain", &["librocksdb-sys", "quire-rocks"]);
    assert_absent("quire-wire", &["librocksdb-sys", "quire-consensus"]);
    assert_absent("quire-node", &["quire-sim"]);
    assert!(
        !features_of("quire-node").contains("sim-signatures"),
        "the replica, built alone, must not carry the simulator's stand-in signatures"
    );
    assert!(
        features_of("quire-sim").contains("sim-signatures"),
        "the simulator's tree shows the feature (else the check above proves nothing)"
    );
}

/// `cargo tree -e features` of `package`: every feature enabled in its build, as text.
fn features_of(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal,build,features",
            "-p",
            package,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree -e features -p {package}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One seed, two processes, the same trace byte for byte: nothing in a run depends on a
/// per-process hash seed, the clock or thread timing.
#[test]
fn a_seed_replays_byte_for_byte_in_a_new_process() {
    let bin = env!("CARGO_BIN_EXE_quire-testnet");
    let dir = temp_dir("replay");
    let mut traces = Vec::new();
    for run in 0..2 {
        let trace = dir.join(format!("trace-{run}.txt"));
        let out = Command::new(bin)
            .args(["sim", "--seed", "17", "--behaviour", "mixed", "--trace"])
            .arg(&trace)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        traces.push(std::fs::read(&trace).unwrap());
    }
    assert!(
        traces[0].len() > 10_000,
        "a trace of {} bytes",
        traces[0].len()
    );
    assert!(traces[0] == traces[1], "seed 17 gave two different traces");
    std::fs::remove_dir_all(dir).unwrap();
}
