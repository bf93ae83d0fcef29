//! Replica processes: start `quire-node` in the background, find out whether it runs, signal it.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow};
use rustix::process::{Pid, Signal};

use crate::layout::Layout;

/// The `quire-node` binary: `$QUIRE_NODE_BIN`, else next to this executable (or one directory
/// up, where cargo puts binaries relative to test executables), else on `$PATH`.
pub fn node_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("QUIRE_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for candidate in [dir.join("quire-node"), dir.join("../quire-node")] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("quire-node");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(anyhow!(
        "cannot find the quire-node binary (build it with `cargo build --release`, or set QUIRE_NODE_BIN)"
    ))
}

/// Starts replica `id` in the background (its own process group, so it outlives us), logging to
/// its node.log, and records its pid.
pub fn start(layout: &Layout, id: u32) -> Result<u32> {
    let binary = node_binary()?;
    let log_path = layout.log(id);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_err = log.try_clone()?;
    let child = Command::new(&binary)
        .arg("--config")
        .arg(layout.config(id))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    std::fs::write(layout.pid(id), format!("{pid}\n"))?;
    // The child is not waited for here: it runs on after we exit (init reaps it then).
    drop(child);
    Ok(pid)
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn pid(raw: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(raw).ok()?)
}

/// Whether the process exists and is not a zombie.
pub fn alive(raw: u32) -> bool {
    let Some(p) = pid(raw) else { return false };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{raw}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

/// The pid of replica `id` if it is running.
pub fn running(layout: &Layout, id: u32) -> Option<u32> {
    read_pid(&layout.pid(id)).filter(|p| alive(*p))
}

pub fn signal(raw: u32, sig: Signal) -> Result<()> {
    let p = pid(raw).ok_or_else(|| anyhow!("bad pid {raw}"))?;
    rustix::process::kill_process(p, sig).with_context(|| format!("cannot signal process {raw}"))
}

/// Stops replica `id`: SIGTERM, then SIGKILL if it lingers; removes its pid file.
pub fn stop(layout: &Layout, id: u32, hard: bool) -> Result<bool> {
    stop_pid_file(&layout.pid(id), hard)
}

/// Stops the process whose pid `path` holds (SIGTERM, then SIGKILL if it lingers, or SIGKILL at
/// once when `hard`) and removes the file. False if it was not running.
pub fn stop_pid_file(path: &Path, hard: bool) -> Result<bool> {
    let Some(pid) = read_pid(path).filter(|p| alive(*p)) else {
        let _ = std::fs::remove_file(path);
        return Ok(false);
    };
    if !hard {
        // A paused process cannot handle SIGTERM.
        let _ = signal(pid, Signal::CONT);
        signal(pid, Signal::TERM)?;
        for _ in 0..50 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    if alive(pid) {
        signal(pid, Signal::KILL)?;
        for _ in 0..50 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(true)
}

/// Whether the process is stopped by a signal (SIGSTOP: a paused replica).
pub fn paused(raw: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{raw}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "T")
    })
}

/// Starts a helper process of the testnet (the dashboard, Prometheus) in the background, in
/// its own process group so it outlives us, logging to `log`; records its pid in `pid_file`.
pub fn start_helper(
    program: &Path,
    args: &[&std::ffi::OsStr],
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n"))?;
    drop(child);
    Ok(pid)
}
