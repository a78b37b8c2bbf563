//! Scratch directories that a crash cannot leak for long. Each is held by an exclusive lock on a
//! file inside it for as long as its owner lives (the kernel drops the lock when the process
//! dies, however it dies); [`sweep`] removes every directory whose lock nobody holds. Ingest's
//! work directories and a local lake's temporary files live in such directories, so the next
//! run cleans up whatever a killed one left.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Marks a scratch directory still being set up (renamed once its lock is held).
const CREATING: &str = ".creating-";
/// Beside the scratch directories: held shared by creators, exclusively by a sweep.
const CREATION_LOCK: &str = ".creation.lock";
/// The lock file inside every scratch directory.
const LOCK_FILE: &str = ".owner.lock";
/// A directory without a lock file is being created right now, unless it is older than this.
const CREATION_GRACE: Duration = Duration::from_secs(60);

/// A directory removed when dropped, and by the next [`sweep`] if its owner dies first.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    // Held, never read: the lock lives as long as the file is open.
    _lock: File,
}

impl Scratch {
    /// Sweeps `parent` of abandoned directories named `prefix…`, then creates a fresh one.
    pub fn create_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        sweep(parent, prefix);
        // Made under a name sweeps do not look at, locked, then renamed: a sweeper never sees
        // one of ours without its lock held.
        let hidden = format!("{CREATING}{prefix}");
        // Held (shared) while ours is made: a sweep removes half-made directories only when it
        // can hold this lock alone, so never one a live creator is making.
        let creation = File::create(parent.join(CREATION_LOCK))?;
        creation.lock_shared()?;
        let made = tempfile::Builder::new()
            .prefix(&hidden)
            .tempdir_in(parent)?
            .keep();
        let lock = File::create(made.join(LOCK_FILE))?;
        lock.lock()?;
        let name = made
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(CREATING))
            .expect("made with that prefix")
            .to_owned();
        let dir = parent.join(name);
        std::fs::rename(&made, &dir)?;
        drop(creation);
        Ok(Scratch { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes every directory `prefix…` in `parent` whose owner is gone; returns how many. Errors
/// are skipped: a sweep is housekeeping and must never fail the run that does it.
pub fn sweep(parent: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    let creating = format!("{CREATING}{prefix}");
    let creation = File::create(parent.join(CREATION_LOCK))
        .ok()
        .filter(|f| f.try_lock().is_ok());
    for entry in entries.flatten() {
        let name = entry.file_name();
        // One whose creation was cut short: gone once no creator is at work (creators hold the
        // creation lock shared while they make theirs; this sweep holds it exclusively).
        if name.to_str().is_some_and(|n| n.starts_with(&creating)) {
            if creation.is_some() && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
            continue;
        }
        let is_ours = name.to_str().is_some_and(|n| n.starts_with(prefix));
        if !is_ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        if abandoned(&dir) && std::fs::remove_dir_all(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed scratch left by a run that died");
            removed += 1;
        }
    }
    removed
}

fn abandoned(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        // The owner holds the lock while it lives; a lock we can take has no owner.
        Ok(f) => f.try_lock().is_ok(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => older_than_grace(dir),
        Err(_) => false,
    }
}

fn older_than_grace(dir: &Path) -> bool {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > CREATION_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_scratch_survives_a_sweep_and_a_dead_one_does_not() {
        let parent = tempfile::tempdir().unwrap();
        let live = Scratch::create_in(parent.path(), "work-").unwrap();
        std::fs::write(live.path().join("spill"), b"x").unwrap();
        // Another process would see the lock held: so does a second open in this one.
        assert_eq!(sweep(parent.path(), "work-"), 0);
        assert!(live.path().join("spill").exists());

        // A killed owner: its directory and lock file remain, the lock does not.
        let dead = parent.path().join("work-dead");
        std::fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK_FILE)).unwrap();
        std::fs::write(dead.join("spill"), b"x").unwrap();
        // Other prefixes are not ours to touch.
        std::fs::create_dir(parent.path().join("other-dir")).unwrap();
        assert_eq!(sweep(parent.path(), "work-"), 1);
        assert!(!dead.exists());
        assert!(parent.path().join("other-dir").exists());

        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists(), "removed when its owner is done");
    }

    #[test]
    fn a_directory_being_created_is_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::create_dir(parent.path().join("work-new")).unwrap();
        assert_eq!(sweep(parent.path(), "work-"), 0);
    }
}
