//! Claims: mutual exclusion for read-modify-write state (a batch being ingested, the alert
//! ledger, a stage's run state), over any object store. A claim is an object created only if
//! absent (S3 `If-None-Match: *`, a hard link locally) naming its owner and an expiry. A claim
//! past its expiry, or whose owner is a process of this machine that is gone, is taken over
//! with a compare-and-swap on its ETag, so two takers cannot both win. Nobody waits on a dead
//! owner for ever: at most until the claim expires.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{LakeState, StateError, StateResult, to_json};
use crate::storage::Precondition;

/// Who holds a claim: a process on a machine (`boot` is the kernel's boot id, so a pid is only
/// compared with pids of the same boot of the same machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub boot: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot), so a reused pid is not the owner.
    pub started: u64,
    /// Tells apart two claims of one process.
    pub nonce: u64,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} (boot {})", self.pid, self.boot)
    }
}

/// `(boot id, start ticks)` of a process from /proc; `None` where there is no /proc.
fn proc_identity(pid: &str) -> Option<(String, u64)> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    let boot = BOOT
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|b| b.trim().to_owned())
        })
        .clone()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let started = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some((boot, started))
}

impl Owner {
    pub fn this_process() -> Owner {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let (boot, started) = proc_identity("self").unwrap_or_default();
        Owner {
            boot,
            pid: std::process::id(),
            started,
            nonce: NONCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Known to be gone: a process of this boot of this machine that no longer runs (or whose
    /// pid now belongs to a later process). Owners elsewhere are never known to be gone.
    pub fn is_gone(&self) -> bool {
        let Some((boot, _)) = proc_identity("self") else {
            return false;
        };
        if self.boot != boot || self.boot.is_empty() {
            return false;
        }
        match proc_identity(&self.pid.to_string()) {
            None => true,
            Some((_, started)) => started != self.started,
        }
    }
}

/// What a claim object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub owner: Owner,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A claim this process holds; give it back with [`LakeState::release`].
#[derive(Debug)]
#[must_use = "a claim is held until it is released or expires"]
pub struct Claim {
    key: String,
    etag: String,
}

/// The outcome of one attempt to claim.
#[derive(Debug)]
pub enum Claimed {
    Acquired(Claim),
    Held(ClaimRecord),
}

impl LakeState {
    /// One attempt to take the claim at `key` for `ttl`.
    pub async fn try_claim(&self, key: &str, ttl: Duration) -> StateResult<Claimed> {
        let now = Utc::now();
        let record = ClaimRecord {
            owner: Owner::this_process(),
            acquired_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        };
        let body = Bytes::from(to_json(&record));
        // A claim released or taken over between our reads is another attempt, not an error.
        for _ in 0..8 {
            if self
                .store
                .put_if(key, body.clone(), Precondition::Absent)
                .await?
            {
                return self.acquired(key, &record).await;
            }
            let Some(meta) = self.store.head(key).await? else {
                continue;
            };
            let Some(held) = self.get_json::<ClaimRecord>(key).await? else {
                continue;
            };
            let stale = held.expires_at <= now || held.owner.is_gone();
            if !stale {
                return Ok(Claimed::Held(held));
            }
            if self
                .store
                .put_if(key, body.clone(), Precondition::Matches(meta.etag))
                .await?
            {
                warn!(key, previous = %held.owner, "took over a claim whose owner is gone or late");
                return self.acquired(key, &record).await;
            }
        }
        let held = self.get_json::<ClaimRecord>(key).await?;
        match held {
            Some(h) => Ok(Claimed::Held(h)),
            None => Err(StateError::Busy {
                key: key.to_owned(),
                owner: "others".into(),
                until: "now".into(),
            }),
        }
    }

    async fn acquired(&self, key: &str, record: &ClaimRecord) -> StateResult<Claimed> {
        let etag = self
            .store
            .head(key)
            .await?
            .map(|m| m.etag)
            .unwrap_or_default();
        info!(key, owner = %record.owner, "claimed");
        Ok(Claimed::Acquired(Claim {
            key: key.to_owned(),
            etag,
        }))
    }

    /// Takes the claim at `key`, waiting while a live owner holds it, at most `wait`.
    pub async fn claim(&self, key: &str, ttl: Duration, wait: Duration) -> StateResult<Claim> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.try_claim(key, ttl).await? {
                Claimed::Acquired(claim) => return Ok(claim),
                Claimed::Held(held) => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(StateError::Busy {
                            key: key.to_owned(),
                            owner: held.owner.to_string(),
                            until: held.expires_at.to_rfc3339(),
                        });
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Gives a claim back, unless it was taken over meanwhile (then it is not ours to delete).
    pub async fn release(&self, claim: Claim) -> StateResult<()> {
        let current = self.store.head(&claim.key).await?;
        if current.is_some_and(|m| m.etag == claim.etag) {
            self.store.delete(&claim.key).await?;
        }
        Ok(())
    }

    /// Runs `work` holding the claim at `key`, and releases it whatever `work` returns.
    pub async fn with_claim<T, E>(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
        work: impl AsyncFnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StateError>,
    {
        let claim = self.claim(key, ttl, wait).await?;
        let result = work().await;
        let released = self.release(claim).await;
        let value = result?;
        released?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::LocalStore;

    fn state(dir: &std::path::Path) -> LakeState {
        LakeState::new(Arc::new(LocalStore::new(dir).unwrap()))
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_released_claim_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (state(dir.path()), state(dir.path()));
        let ttl = Duration::from_secs(60);
        let Claimed::Acquired(claim) = a.try_claim("claims/x.json", ttl).await.unwrap() else {
            panic!("free claim not acquired")
        };
        let Claimed::Held(held) = b.try_claim("claims/x.json", ttl).await.unwrap() else {
            panic!("a held claim was acquired twice")
        };
        assert_eq!(held.owner.pid, std::process::id());
        let busy = b
            .claim("claims/x.json", ttl, Duration::from_millis(120))
            .await
            .unwrap_err();
        assert!(matches!(busy, StateError::Busy { .. }) && busy.to_string().contains("retry"));
        a.release(claim).await.unwrap();
        assert!(matches!(
            b.try_claim("claims/x.json", ttl).await.unwrap(),
            Claimed::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn an_expired_claim_or_one_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let expired = ClaimRecord {
            owner: Owner::this_process(),
            acquired_at: Utc::now() - chrono::Duration::hours(2),
            expires_at: Utc::now() - chrono::Duration::hours(1),
        };
        s.put_json("claims/old.json", &expired).await.unwrap();
        assert!(matches!(
            s.try_claim("claims/old.json", Duration::from_secs(60))
                .await
                .unwrap(),
            Claimed::Acquired(_)
        ));

        let mut dead = Owner::this_process();
        if dead.boot.is_empty() {
            return; // no /proc: only expiry frees a claim here
        }
        dead.pid = u32::MAX - 1;
        let orphan = ClaimRecord {
            owner: dead,
            acquired_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        s.put_json("claims/orphan.json", &orphan).await.unwrap();
        assert!(matches!(
            s.try_claim("claims/orphan.json", Duration::from_secs(60))
                .await
                .unwrap(),
            Claimed::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn with_claim_releases_even_when_the_work_fails() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let ttl = Duration::from_secs(60);
        let failed: Result<(), StateError> = s
            .with_claim("claims/w.json", ttl, ttl, async || {
                Err(StateError::Busy {
                    key: "inner".into(),
                    owner: "x".into(),
                    until: "y".into(),
                })
            })
            .await;
        assert!(failed.is_err());
        assert!(!s.exists("claims/w.json").await.unwrap());
    }
}
