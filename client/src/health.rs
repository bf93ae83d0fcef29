//! Which replicas failed to answer lately, remembered for a while — inside one process, and across
//! `quire` invocations in a small file — so that fail-over tries them last and a submission
//! leaves them out of its first wave, instead of waiting out a dead replica's timeout again on
//! every command.
//!
//! This is only an ordering hint. Nothing is believed because of it, every fan-out still asks
//! every replica, and a replica is forgotten the moment it answers. A missing, unreadable or
//! corrupt file is the same as an empty one; failing to write it loses only the hint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quire_chain::{Hash, ReplicaId};
use serde::{Deserialize, Serialize};

/// How long a replica that failed to answer is tried after the others.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30);
/// A call abandoned (the others had said enough) after waiting this long counts as a failure to
/// answer: a dead replica is noticed by fan-outs that never wait out its timeout.
pub const SLOW: Duration = Duration::from_millis(300);
/// A health file larger than this is not read (it is never legitimately more than a few lines).
const FILE_BYTES_MAX: u64 = 64 * 1024;
/// Overrides where health files live (tests point it at a scratch directory; empty disables).
pub const ENV_CACHE_DIR: &str = "QUIRE_CACHE_DIR";

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    #[serde(default)]
    unreachable: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    replica: ReplicaId,
    since_unix_ms: u64,
}

/// Replica → when it last failed to answer.
pub struct Health {
    failed: Mutex<BTreeMap<ReplicaId, SystemTime>>,
    /// Replica → the start of its oldest call that was abandoned unanswered.
    waiting: Mutex<BTreeMap<ReplicaId, Instant>>,
    file: Option<PathBuf>,
}

/// One call in flight: [`Call::answered`] says how it ended; dropped without it, the call was
/// abandoned.
pub struct Call<'a> {
    health: &'a Health,
    replica: ReplicaId,
    start: Instant,
    ended: bool,
}

impl Call<'_> {
    pub fn answered(mut self, answered: bool) {
        self.ended = true;
        self.health.note(self.replica, answered);
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let mut waiting = lock(&self.health.waiting);
            let since = waiting.entry(self.replica).or_insert(self.start);
            *since = (*since).min(self.start);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another call panicked mid-update; the map is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Health {
    /// Memory only: what this process learns.
    pub fn in_memory() -> Health {
        Health {
            failed: Mutex::new(BTreeMap::new()),
            waiting: Mutex::new(BTreeMap::new()),
            file: None,
        }
    }

    /// Starts from what `path` remembers (if anything) and [`Health::save`]s back to it.
    pub fn persisted(path: PathBuf) -> Health {
        let failed = read(&path).unwrap_or_default();
        Health {
            failed: Mutex::new(failed),
            waiting: Mutex::new(BTreeMap::new()),
            file: Some(path),
        }
    }

    /// The default health file of a network: `$QUIRE_CACHE_DIR`, else `$XDG_CACHE_HOME/quire`,
    /// else `$HOME/.cache/quire`, named after the chain id. `None` when there is no such place.
    pub fn default_path(chain_id: &Hash) -> Option<PathBuf> {
        let name = format!("health-{}.toml", &chain_id.to_hex()[..16]);
        let env = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        if let Some(dir) = std::env::var_os(ENV_CACHE_DIR) {
            return (!dir.is_empty()).then(|| PathBuf::from(dir).join(name));
        }
        let dir = env("XDG_CACHE_HOME")
            .map(|d| PathBuf::from(d).join("quire"))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache").join("quire")))?;
        Some(dir.join(name))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ReplicaId, SystemTime>> {
        lock(&self.failed)
    }

    /// A call to `replica` starts now.
    pub fn call(&self, replica: ReplicaId) -> Call<'_> {
        Call {
            health: self,
            replica,
            start: Instant::now(),
            ended: false,
        }
    }

    /// Records whether `replica` answered a call.
    pub fn note(&self, replica: ReplicaId, answered: bool) {
        if answered {
            lock(&self.waiting).remove(&replica);
            self.lock().remove(&replica);
        } else {
            self.lock().insert(replica, SystemTime::now());
        }
    }

    /// Whether `replica` failed to answer within [`REMEMBER_FOR`], or has left a call
    /// unanswered for longer than [`SLOW`] since it last answered.
    pub fn suspect(&self, replica: ReplicaId) -> bool {
        let failed = self
            .lock()
            .get(&replica)
            .is_some_and(|at| at.elapsed().is_ok_and(|elapsed| elapsed < REMEMBER_FOR));
        failed
            || lock(&self.waiting)
                .get(&replica)
                .is_some_and(|since| since.elapsed() >= SLOW)
    }

    /// Writes what is remembered to the health file, if there is one (best effort).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let slow: Vec<ReplicaId> = lock(&self.waiting)
            .iter()
            .filter(|(_, since)| since.elapsed() >= SLOW)
            .map(|(r, _)| *r)
            .collect();
        for replica in slow {
            self.note(replica, false);
        }
        let file = HealthFile {
            unreachable: self
                .lock()
                .iter()
                .filter(|(_, at)| at.elapsed().is_ok_and(|e| e < REMEMBER_FOR))
                .map(|(replica, at)| Entry {
                    replica: *replica,
                    since_unix_ms: unix_ms(*at),
                })
                .collect(),
        };
        let text = toml::to_string(&file).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

fn read(path: &Path) -> Option<BTreeMap<ReplicaId, SystemTime>> {
    if std::fs::metadata(path).ok()?.len() > FILE_BYTES_MAX {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let file: HealthFile = toml::from_str(&text).ok()?;
    Some(
        file.unreachable
            .into_iter()
            .map(|e| {
                let at = UNIX_EPOCH + Duration::from_millis(e.since_unix_ms);
                (e.replica, at)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_that_failed_is_suspect_until_it_answers_and_the_file_carries_it_over() {
        let dir = std::env::temp_dir().join(format!("quire-health-{}", rand::random::<u32>()));
        let path = dir.join("health.toml");
        let health = Health::persisted(path.clone());
        assert!(!health.suspect(2));
        health.note(2, false);
        health.note(3, false);
        health.note(3, true);
        assert!(health.suspect(2) && !health.suspect(3));
        health.save().unwrap();
        let next = Health::persisted(path.clone());
        assert!(next.suspect(2) && !next.suspect(3));
        // A corrupt file is an empty memory, not an error.
        std::fs::write(&path, "unreachable = 7").unwrap();
        assert!(!Health::persisted(path).suspect(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_call_abandoned_unanswered_for_long_makes_a_replica_suspect() {
        let health = Health::in_memory();
        let call = health.call(1);
        drop(call);
        assert!(
            !health.suspect(1),
            "abandoned at once: maybe only a little slower"
        );
        lock(&health.waiting).insert(1, Instant::now() - SLOW);
        assert!(health.suspect(1));
        health.call(1).answered(true);
        assert!(!health.suspect(1));
    }

    #[test]
    fn an_old_failure_is_forgotten() {
        let health = Health::in_memory();
        health
            .lock()
            .insert(1, SystemTime::now() - REMEMBER_FOR - Duration::from_secs(1));
        assert!(!health.suspect(1));
    }
}
