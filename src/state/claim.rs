//! Claims: mutual exclusion for read-modify-write state (a batch being ingested, the alert
//! ledger, a stage's run state), over any object store. A claim is an object created only if
//! absent (S3 `If-None-Match: *`, a hard link locally) naming its owner and an expiry. A claim
//! past its expiry, or whose owner is a process of this machine that is gone, is taken over
//! with a compare-and-swap on its ETag, so two takers cannot both win. Nobody waits on a dead
//! owner for ever: at most until the claim expires.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{LakeState, StateError, StateResult, to_json};
use crate::storage::Precondition;

/// Who holds a claim: a process on a machine. A pid only means something beside the kernel
/// boot and the pid namespace it was read in (containers on one host share the boot, not the
/// namespace), so liveness is judged only for owners of the same boot and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub boot: String,
    #[serde(default)]
    pub pid_ns: String,
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

/// `(boot id, pid namespace)` of this process; `None` where /proc does not tell both.
fn here() -> Option<&'static (String, String)> {
    static HERE: OnceLock<Option<(String, String)>> = OnceLock::new();
    HERE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let (boot, ns) = (boot.trim().to_owned(), ns.to_string_lossy().into_owned());
        (!boot.is_empty() && !ns.is_empty()).then_some((boot, ns))
    })
    .as_ref()
}

/// The start time (clock ticks since boot) of process `pid` as seen here, if it runs.
fn started_at(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

impl Owner {
    pub fn this_process() -> Owner {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let (boot, pid_ns) = here().cloned().unwrap_or_default();
        Owner {
            boot,
            pid_ns,
            pid: std::process::id(),
            started: started_at("self").unwrap_or_default(),
            nonce: NONCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A process whose pid means the same thing here: same boot, same pid namespace.
    fn is_local(&self) -> bool {
        here().is_some_and(|(boot, ns)| *boot == self.boot && *ns == self.pid_ns)
    }

    /// This very process (any of its claims).
    fn is_this_process(&self) -> bool {
        self.is_local()
            && self.pid == std::process::id()
            && Some(self.started) == started_at("self")
    }

    /// Known to be gone: a local process that no longer runs (or whose pid now belongs to a
    /// later process). Owners elsewhere are never known to be gone: their claims expire.
    pub fn is_gone(&self) -> bool {
        self.is_local() && started_at(&self.pid.to_string()) != Some(self.started)
    }

    /// Known to run: a local process with this pid and start time. Its claim holds even past
    /// its expiry (a long local run needs no renewal); only its death frees it.
    fn is_running(&self) -> bool {
        self.is_local() && started_at(&self.pid.to_string()) == Some(self.started)
    }
}

/// Claims this process holds or is taking, by object URI (a count: tasks may race for one).
/// A claim naming this process that is not here was leaked by an earlier attempt whose release
/// failed or whose write's answer was lost (a warm Lambda's retry): it is taken over at once.
fn held_here() -> &'static Mutex<HashMap<String, u32>> {
    static HELD: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

fn hold(uri: &str) {
    *held_here()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(uri.to_owned())
        .or_default() += 1;
}

fn unhold(uri: &str) {
    let mut held = held_here().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = held.get_mut(uri) {
        *n -= 1;
        if *n == 0 {
            held.remove(uri);
        }
    }
}

/// How many tasks of this process hold or are taking the claim.
fn holders_here(uri: &str) -> u32 {
    held_here()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uri)
        .copied()
        .unwrap_or(0)
}

/// Whether a claim can be taken over: expired, its owner gone, or leaked by this process
/// (naming it while no task here holds it; `mine` counts the caller's own mark).
fn is_stale(held: &ClaimRecord, uri: &str, mine: u32, now: DateTime<Utc>) -> bool {
    if held.owner.is_this_process() {
        return holders_here(uri) <= mine;
    }
    if held.owner.is_running() {
        return false;
    }
    held.expires_at <= now || held.owner.is_gone()
}

/// The claims a sweep before taking `key` looks at: its family (`claims/ingest/` for a batch's
/// ingest claim, the key itself for a stage's).
fn family(key: &str) -> String {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(_)) => format!("{a}/{b}/"),
        _ => key.to_owned(),
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
        let uri = self.store.uri(key);
        // Marked before the write, so a sibling task never mistakes our claim for a leak.
        hold(&uri);
        let outcome = self.try_claim_marked(key, &uri, ttl).await;
        if !matches!(outcome, Ok(Claimed::Acquired(_))) {
            unhold(&uri);
        }
        outcome
    }

    async fn try_claim_marked(&self, key: &str, uri: &str, ttl: Duration) -> StateResult<Claimed> {
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
            if !is_stale(&held, uri, 1, now) {
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

    /// Frees every stale claim under `prefix` (what crashed runs left): each is taken over
    /// with a compare-and-swap, so a live claim is never removed, then released.
    pub async fn sweep_claims(&self, prefix: &str) -> StateResult<usize> {
        let mut freed = 0;
        for meta in self.store.list(prefix).await? {
            let Some(held) = self.get_json::<ClaimRecord>(&meta.key).await? else {
                continue;
            };
            if !is_stale(&held, &self.store.uri(&meta.key), 0, Utc::now()) {
                continue;
            }
            if let Claimed::Acquired(claim) =
                self.try_claim(&meta.key, Duration::from_secs(60)).await?
            {
                self.release(claim).await?;
                freed += 1;
            }
        }
        Ok(freed)
    }

    /// Takes the claim at `key`, waiting while a live owner holds it, at most `wait`. Stale
    /// claims of the same family are swept first, so a crash leaves none behind for long.
    pub async fn claim(&self, key: &str, ttl: Duration, wait: Duration) -> StateResult<Claim> {
        self.sweep_claims(&family(key)).await?;
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
        let uri = self.store.uri(&claim.key);
        let current = self.store.head(&claim.key).await;
        let deleted = match current {
            Ok(Some(m)) if m.etag == claim.etag => self.store.delete(&claim.key).await,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        // Only now: until the delete, a sibling task must still see the claim as held here.
        unhold(&uri);
        Ok(deleted?)
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
