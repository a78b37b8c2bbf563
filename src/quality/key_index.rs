//! The key index of a parent dataset that references without a window check against (orders
//! name customers, which have no date partition): its distinct keys, hash-sharded into
//! [`SHARDS`] shards, each a sorted base `index/<dataset>/keys-<nnn>.bin` and a sorted recent
//! part `recent-<nnn>.bin` (the keys merged since the base was last rewritten), plus the keys
//! of the batches not merged yet, one small file per batch under `index/<dataset>/delta/`.
//!
//! Why the parts: a batch's keys hash into every shard, so adding them to the bases rewrites the
//! whole index, which grows with the distinct keys of all history. Ingest therefore only writes
//! its batch's keys (`delta/<batch>-<digest>.bin`, before the manifest: its commit point; a
//! retry writes the same file), a cost of the batch alone. The nightly compaction merges the
//! deltas ([`KeyIndex::merge`]): per shard, the keys go into its recent part, and the recent
//! part is folded into the base once it outgrows [`RECENT_SHARE`] of it (the base is read only
//! then, to leave out the keys it holds), so most nights read and write 16 small files rather
//! than the index; every write a compare-and-swap on the
//! file's ETag, then the merged deltas are deleted. A check that finds more than [`MAX_DELTAS`]
//! waiting merges them itself, so a lake that never compacts still reads a bounded number.
//!
//! A check reads the waiting deltas first (a night's newest keys), then fetches every recent
//! part at once, then reads, per shard the rest fall into (up to 16 shards at a time,
//! [`each_shard`]), the base for what its recent part did not hold. The
//! files are sorted keys, front-coded in blocks of 32 (`keyset`), searched in place (no parse
//! into a set): a look-up reads every byte of a base but decodes only the blocks its keys fall
//! into and a header for each other block. The index may hold a key whose batch never committed (a
//! crash between delta and manifest, until the retry commits it) or whose rows a forced
//! re-ingest dropped: it over-approximates, it never forgets.
//!
//! An index is complete once `index/<dataset>/_built-v3.json` exists: the gate builds it from
//! silver once (a lake that predates the index or its format), after which ingest keeps it
//! current.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::contract::{Contract, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::silver::read::{self, ReadError};
use crate::storage::{self, ObjectStore, Precondition, StorageError};

/// Shards per dataset: a check reads the shards its references hash to.
pub const SHARDS: usize = 16;

/// Attempts of one shard's compare-and-swap before giving up (others kept changing it).
const CAS_ATTEMPTS: usize = 20;

/// A shard's recent part is folded into its base once it would take more than 1/this of the
/// base's bytes: an eighth, so the recent parts a check reads stay small beside the bases, and
/// a base is rewritten about every `RECENT_SHARE × base / new keys a night` nights (estimated
/// at about 40 for the 365-day lake of `make bench-history`: 2.46 M customers in 9.7 MB of
/// bases, 7.5 k new a night), not every night.
const RECENT_SHARE: u64 = 8;

/// Waiting deltas a check reads before it merges them (compaction merges them every night).
pub const MAX_DELTAS: usize = 16;

/// Keys collected from silver before they are merged into the shards, while building.
const BUILD_FLUSH_KEYS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KeyIndexError {
    #[error(
        "{key} is not a readable key index file ({reason}); delete index/<dataset>/ to have it rebuilt from silver"
    )]
    Corrupt { key: String, reason: &'static str },
    #[error("{key} kept changing under {attempts} attempts; retry")]
    Contended { key: String, attempts: usize },
    #[error("a key index task was cancelled (the runtime is shutting down); retry")]
    Cancelled,
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Retryable for KeyIndexError {
    fn is_retryable(&self) -> bool {
        match self {
            KeyIndexError::Corrupt { .. } => false,
            KeyIndexError::Contended { .. } | KeyIndexError::Cancelled => true,
            KeyIndexError::Read(e) => e.is_retryable(),
            KeyIndexError::Storage(e) => e.is_retryable(),
        }
    }
}

/// Whether `dataset` is the parent of a reference rule without a window (so it keeps an index).
pub fn is_indexed(registry: &Registry, dataset: &str) -> bool {
    registry.iter().any(|c| {
        c.quality
            .references
            .iter()
            .any(|r| r.dataset == dataset && r.window_days.is_none())
    })
}

/// Runs `jobs` (one per shard), up to [`storage::AT_ONCE`] at a time, each in a task of its
/// own, and returns their results in no particular order. On S3 a shard one at a time is a
/// round trip before its walk starts, and the walks of the bases are most of a look-up's and a
/// merge's CPU at a long history (2.46 M customers), which the cores then share. On an error
/// the jobs still running are aborted (the set is dropped).
async fn each_shard<T, F>(jobs: impl IntoIterator<Item = F>) -> Result<Vec<T>, KeyIndexError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, KeyIndexError>> + Send + 'static,
{
    let mut jobs = jobs.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    loop {
        while running.len() < storage::AT_ONCE {
            let Some(job) = jobs.next() else { break };
            running.spawn(job);
        }
        let Some(joined) = running.join_next().await else {
            return Ok(out);
        };
        let done = match joined {
            Ok(done) => done,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only a runtime shutting down cancels a task.
                Err(_) => Err(KeyIndexError::Cancelled),
            },
        };
        out.push(done?);
    }
}

/// Which of `keys` (all of one shard) the shard holds, in its recent part (`recent`, read
/// already) or its base, streamed: `(found, not found)`.
async fn shard_lookup(
    store: Arc<dyn ObjectStore>,
    dataset: String,
    shard: usize,
    recent: Option<Bytes>,
    keys: Vec<String>,
) -> Result<(Vec<String>, Vec<String>), KeyIndexError> {
    let owned = |keys: Vec<&str>| keys.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    // The recent part before the base: a fold writes the base before it empties the recent
    // part, so a key is in one or the other whenever each is read.
    if let Some(bytes) = recent {
        let recent_key = layout::key_index_recent_key(&dataset, shard);
        let (held, rest) = keyset::lookup(&bytes[..], wanted)
            .await
            .map_err(KeyIndex::lookup_failed(&recent_key))?;
        found = owned(held);
        wanted = rest;
    }
    if wanted.is_empty() {
        return Ok((found, Vec::new()));
    }
    let base = layout::key_index_shard_key(&dataset, shard);
    let (held, rest) = base_lookup(store.as_ref(), &base, wanted).await?;
    found.extend(owned(held));
    Ok((found, owned(rest)))
}

/// Which of `wanted` the base at `key` holds, and which not (all of them when there is no
/// base yet). Streamed, not fetched whole: a base grows with every key ever.
async fn base_lookup<'a>(
    store: &dyn ObjectStore,
    key: &str,
    wanted: Vec<&'a str>,
) -> Result<(Vec<&'a str>, Vec<&'a str>), KeyIndexError> {
    match store.reader(key).await {
        Ok(file) => keyset::lookup(file, wanted)
            .await
            .map_err(KeyIndex::lookup_failed(key)),
        Err(StorageError::NotFound { .. }) => Ok((Vec::new(), wanted)),
        Err(e) => Err(e.into()),
    }
}

pub fn shard_of(key: &str) -> usize {
    shard_of_bytes(key.as_bytes())
}

fn shard_of_bytes(key: &[u8]) -> usize {
    let d = Sha256::digest(key);
    usize::from(u16::from_be_bytes([d[0], d[1]])) % SHARDS
}

pub(crate) mod keyset;

/// A key file with keys added: its new bytes and the condition of writing them.
struct Grown {
    body: Vec<u8>,
    condition: Precondition,
}

/// What a merge of waiting deltas did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexMerge {
    /// Delta files merged into the shards and removed.
    pub deltas: usize,
    /// Shards written (a shard that already held every key is left alone): their recent part,
    /// or their base when folded.
    pub shards_written: usize,
    /// Shards whose recent part was folded into their base (rewritten whole).
    pub shards_folded: usize,
}

#[derive(Debug, Clone)]
pub struct KeyIndex {
    store: Arc<dyn ObjectStore>,
}

impl KeyIndex {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        KeyIndex { store }
    }

    /// The error of a look-up in the file at `key`: refused by [`keyset`], or not read.
    fn lookup_failed(key: &str) -> impl FnOnce(keyset::LookupError) -> KeyIndexError + '_ {
        move |e| match e {
            keyset::LookupError::Format(reason) => KeyIndexError::Corrupt {
                key: key.to_owned(),
                reason,
            },
            keyset::LookupError::Read(source) => KeyIndexError::Storage(StorageError::Io {
                operation: "read",
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// The error of a file at `key` that [`keyset`] refused.
    fn corrupt(key: &str) -> impl FnOnce(&'static str) -> KeyIndexError + '_ {
        move |reason| KeyIndexError::Corrupt {
            key: key.to_owned(),
            reason,
        }
    }

    /// Records the keys of `batch_id` (ingest, before its manifest): one file of the batch's
    /// distinct keys, merged into the shards later. Named after the batch and a digest of its
    /// keys: a retry writes the same file again, while a forced re-ingest that yields other
    /// keys writes another file beside it. Were it the same name, a merge that read the old
    /// file before the re-ingest rewrote it would delete the new one unmerged, and lose its
    /// new keys for good.
    pub async fn add(
        &self,
        dataset: &str,
        batch_id: &str,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(), KeyIndexError> {
        let keys: BTreeSet<String> = keys.into_iter().collect();
        let body = keyset::encode(keys.iter().map(String::as_bytes));
        let digest: String = Sha256::digest(&body)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.store
            .put(
                &layout::key_index_delta_key(dataset, &format!("{batch_id}-{digest}")),
                Bytes::from(body),
            )
            .await?;
        Ok(())
    }

    /// Adds `keys` (sorted by shard) to the index. Per shard, the keys its recent part does not
    /// hold go into it; once that part would outgrow [`RECENT_SHARE`] of the base's bytes, the
    /// keys the base does not hold (a streamed look-up, like a check's) are added instead, and
    /// if that still outgrows it the two are folded into the base. A night therefore reads and
    /// rewrites a small file per shard, not the whole index, except on the nights that fold.
    /// Compare-and-swap throughout, so concurrent merges lose nothing, and a repeated one adds
    /// no key a look-up does not find already. Returns the shards written and, of them, folded.
    async fn union_into_shards(
        &self,
        dataset: &str,
        by_shard: BTreeMap<usize, BTreeSet<Vec<u8>>>,
    ) -> Result<(usize, usize), KeyIndexError> {
        if by_shard.is_empty() {
            return Ok((0, 0));
        }
        self.retire_v2_marker(dataset).await?;
        // Shards hold disjoint keys: merged a few at a time ([`each_shard`]), as one at a time.
        let merges = by_shard.into_iter().map(|(shard, keys)| {
            let (index, dataset) = (self.clone(), dataset.to_owned());
            async move { index.union_into_shard(&dataset, shard, keys).await }
        });
        let done = each_shard(merges).await?;
        let written = done.iter().filter(|(w, _)| *w).count();
        let folded = done.iter().filter(|(_, f)| *f).count();
        Ok((written, folded))
    }

    /// [`Self::union_into_shards`] for one shard: whether it wrote the shard, and whether that
    /// was a fold.
    async fn union_into_shard(
        &self,
        dataset: &str,
        shard: usize,
        keys: BTreeSet<Vec<u8>>,
    ) -> Result<(bool, bool), KeyIndexError> {
        let base = layout::key_index_shard_key(dataset, shard);
        let recent = layout::key_index_recent_key(dataset, shard);
        let keys = keys
            .iter()
            .map(|k| std::str::from_utf8(k))
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|_| KeyIndexError::Corrupt {
                key: format!("{}*", layout::key_index_delta_prefix(dataset)),
                reason: "a key that is not UTF-8",
            })?;
        // Sorted already (a set of byte strings); `keys` keeps them as `&str` for a base look-up.
        let mut new: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let mut base_read = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(grown) = self.grown(&recent, &new).await? else {
                return Ok((false, false));
            };
            let base_bytes = self.store.head(&base).await?.map_or(0, |m| m.size);
            let folds = (grown.body.len() as u64).saturating_mul(RECENT_SHARE) > base_bytes;
            if folds && !base_read && base_bytes > 0 {
                // Only a merge that would fold reads the base, to leave out the keys it holds
                // already: a base holds every key ever, and streaming all of them every night
                // was most of what the nightly merge read at a year of history (9.7 MB of
                // bases for about 7 k new keys). On other nights a key the base holds (an
                // updated customer) goes into the recent part too, which is harmless: a
                // look-up finds it there first, and the fold drops the duplicate. The look-up
                // here keeps an export that repeats every key (a full snapshot each night)
                // from folding every night: its keys are all in the base, so none are added.
                base_read = true;
                let (_, rest) = base_lookup(self.store.as_ref(), &base, keys.clone()).await?;
                if rest.is_empty() {
                    return Ok((false, false));
                }
                new = rest.into_iter().map(str::as_bytes).collect();
                new.sort_unstable();
                continue;
            }
            if folds {
                // The base first: a look-up reads the recent part before the base, so it
                // finds these keys in one or the other throughout.
                let union = keyset::decode(&grown.body).map_err(Self::corrupt(&recent))?;
                self.union_into(&base, &union.iter().collect::<Vec<_>>())
                    .await?;
                if let Precondition::Matches(_) = grown.condition {
                    // Emptied only if no merge added to it meanwhile (those keys would be
                    // lost); if one did, it keeps keys the base holds too, which is harmless.
                    let empty = Bytes::from(keyset::encode(std::iter::empty()));
                    self.store.put_if(&recent, empty, grown.condition).await?;
                }
                return Ok((true, true));
            }
            if self
                .store
                .put_if(&recent, Bytes::from(grown.body), grown.condition)
                .await?
            {
                return Ok((true, false));
            }
            if attempts >= CAS_ATTEMPTS {
                return Err(KeyIndexError::Contended {
                    key: recent,
                    attempts,
                });
            }
        }
    }

    /// Renames the marker of an index built before recent parts (`_built-v2.json`) to the
    /// current one, if it is there; `true` when it was. Such an index is complete as it is,
    /// and a binary from before recent parts, which would not read them, then finds no marker
    /// it knows and rebuilds the index instead of missing their keys. Done before a merge
    /// writes any recent part, and by the gate's [`Self::ensure_built`].
    async fn retire_v2_marker(&self, dataset: &str) -> Result<bool, KeyIndexError> {
        let v2 = layout::key_index_built_key_v2(dataset);
        if self.store.head(&v2).await?.is_none() {
            return Ok(false);
        }
        // The old marker goes first: a crash in between leaves no marker, and the next gate
        // rebuilds the index (correct, if slow), where both markers would let an older binary
        // trust an index whose recent parts it does not read.
        self.store.delete(&v2).await?;
        let marker = layout::key_index_built_key(dataset);
        self.store.put(&marker, Bytes::from_static(b"{}")).await?;
        Ok(true)
    }

    /// The file at `key` with sorted `new` keys added (`None` when it held them all already),
    /// and the condition that writes it only over what was read.
    async fn grown(&self, key: &str, new: &[&[u8]]) -> Result<Option<Grown>, KeyIndexError> {
        let meta = self.store.head(key).await?;
        let bytes = match &meta {
            None => None,
            Some(_) => self.store.get(key).await?,
        };
        let old = match &bytes {
            Some(b) => keyset::decode(b).map_err(Self::corrupt(key))?,
            None => keyset::Keys::default(),
        };
        // A union no longer than the file: every key was there already.
        let union = keyset::union(old.iter(), new.iter().copied());
        if union.len() == old.len() {
            return Ok(None);
        }
        let condition = match meta {
            Some(m) if bytes.is_some() => Precondition::Matches(m.etag),
            _ => Precondition::Absent,
        };
        Ok(Some(Grown {
            body: keyset::encode(union),
            condition,
        }))
    }

    /// Adds sorted `new` keys to the file at `key` by compare-and-swap on its ETag.
    async fn union_into(&self, key: &str, new: &[&[u8]]) -> Result<(), KeyIndexError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(grown) = self.grown(key, new).await? else {
                return Ok(());
            };
            if self
                .store
                .put_if(key, Bytes::from(grown.body), grown.condition)
                .await?
            {
                return Ok(());
            }
            if attempts >= CAS_ATTEMPTS {
                return Err(KeyIndexError::Contended {
                    key: key.to_owned(),
                    attempts,
                });
            }
        }
    }

    /// Merges the waiting deltas of `dataset` into its shards, then removes them (compaction
    /// every night; a check that finds too many). Crash-safe: the shards are written before a
    /// delta is removed, and merging a delta twice changes nothing. A delta written meanwhile
    /// waits for the next merge.
    pub async fn merge(&self, dataset: &str) -> Result<IndexMerge, KeyIndexError> {
        let deltas = self
            .store
            .list(&layout::key_index_delta_prefix(dataset))
            .await?;
        if deltas.is_empty() {
            return Ok(IndexMerge::default());
        }
        let mut by_shard: BTreeMap<usize, BTreeSet<Vec<u8>>> = BTreeMap::new();
        let mut merged = Vec::new();
        for meta in &deltas {
            // Gone: another merge took it (and wrote its keys to the shards first).
            let Some(bytes) = self.store.get(&meta.key).await? else {
                continue;
            };
            for k in keyset::decode(&bytes)
                .map_err(Self::corrupt(&meta.key))?
                .iter()
            {
                by_shard
                    .entry(shard_of_bytes(k))
                    .or_default()
                    .insert(k.to_vec());
            }
            merged.push(meta.key.clone());
        }
        let (shards_written, shards_folded) = self.union_into_shards(dataset, by_shard).await?;
        for key in &merged {
            self.store.delete(key).await?;
        }
        info!(
            dataset,
            deltas = merged.len(),
            shards_written,
            shards_folded,
            "key index deltas merged"
        );
        Ok(IndexMerge {
            deltas: merged.len(),
            shards_written,
            shards_folded,
        })
    }

    /// The subset of `wanted` that the index of `dataset` holds: the waiting deltas first, then,
    /// for what they did not hold, the shards those keys fall into. In the caller's kind of
    /// set, so the keys found are hashed once.
    ///
    /// The deltas first because they hold the newest keys: a night's orders name the customers
    /// ingested that night, whose batch waits as a delta until the 03:00 merge, and each key
    /// found there is one fewer for the walks of the bases, which hold every key ever. The order
    /// is safe against a merge at any moment: a merge writes a delta's keys to the shards
    /// before it removes the delta, so a listed delta that is gone when read has its keys in
    /// the shards read after it; and a fold writes the base before it empties the recent
    /// part, which is read first. A delta written after the listing is a batch committed after
    /// this look-up began.
    pub async fn found<S: BuildHasher + Default>(
        &self,
        dataset: &str,
        wanted: &HashSet<&str, impl BuildHasher>,
    ) -> Result<HashSet<String, S>, KeyIndexError> {
        let prefix = layout::key_index_delta_prefix(dataset);
        let mut deltas = self.store.list(&prefix).await?;
        if deltas.len() > MAX_DELTAS {
            self.merge(dataset).await?;
            deltas = self.store.list(&prefix).await?;
        }
        let mut found = HashSet::default();
        let mut missing: Vec<&str> = wanted.iter().copied().collect();
        // Fetched many at once (each a batch's keys, small); one gone was merged (see above).
        let mut waiting = stream::iter(deltas)
            .map(|meta| {
                let store = self.store.clone();
                async move { Ok::<_, StorageError>((store.get(&meta.key).await?, meta.key)) }
            })
            .buffer_unordered(storage::AT_ONCE);
        while let Some((bytes, key)) = waiting.try_next().await? {
            let Some(bytes) = bytes else { continue };
            if missing.is_empty() {
                break;
            }
            let (held, rest) = keyset::lookup(&bytes[..], missing)
                .await
                .map_err(Self::lookup_failed(&key))?;
            found.extend(held.into_iter().map(str::to_owned));
            missing = rest;
        }
        drop(waiting);
        if missing.is_empty() {
            return Ok(found);
        }
        // Every recent part at once, before any base (see above), and in memory: they are
        // small, and one at a time on S3 each would be a round trip.
        let recent_prefix = layout::key_index_recent_prefix(dataset);
        let listed = self.store.list(&recent_prefix).await?;
        let recent: BTreeMap<String, Bytes> =
            storage::get_many(&self.store, storage::fetches(listed))
                .try_collect()
                .await?;
        let mut by_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for k in missing {
            by_shard.entry(shard_of(k)).or_default().push(k.to_owned());
        }
        // The shards a few at a time, each walked in a task of its own ([`each_shard`]).
        let lookups = by_shard.into_iter().map(|(shard, keys)| {
            let recent = recent
                .get(&layout::key_index_recent_key(dataset, shard))
                .cloned();
            shard_lookup(self.store.clone(), dataset.to_owned(), shard, recent, keys)
        });
        for (held, _) in each_shard(lookups).await? {
            found.extend(held);
        }
        Ok(found)
    }

    /// Builds the index from silver once (a lake from before the index or its format), then
    /// marks it complete and removes the files of an older format.
    pub async fn ensure_built(&self, parent: &Contract) -> Result<(), KeyIndexError> {
        let marker = layout::key_index_built_key(&parent.name);
        if self.store.head(&marker).await?.is_some() {
            return Ok(());
        }
        if self.retire_v2_marker(&parent.name).await? {
            return Ok(());
        }
        let key = parent.key_column().name.as_str();
        let mut files = 0usize;
        let mut pending: BTreeMap<usize, BTreeSet<Vec<u8>>> = BTreeMap::new();
        let mut held = 0usize;
        for meta in self
            .store
            .list(&layout::processed_prefix(&parent.name))
            .await?
        {
            if meta.key.ends_with(".parquet") {
                let df = read::read_columns(self.store.as_ref(), &meta.key, &[key]).await?;
                for k in read::strings(&df, key, &meta.key)?.into_iter().flatten() {
                    if pending
                        .entry(shard_of(&k))
                        .or_default()
                        .insert(k.into_bytes())
                    {
                        held += 1;
                    }
                }
                files += 1;
                if held >= BUILD_FLUSH_KEYS {
                    self.union_into_shards(&parent.name, std::mem::take(&mut pending))
                        .await?;
                    held = 0;
                }
            }
        }
        self.union_into_shards(&parent.name, pending).await?;
        // The waiting deltas too: a build starts with a merged index.
        self.merge(&parent.name).await?;
        let dir = format!("{}/{}/", layout::INDEX, parent.name);
        for meta in self.store.list(&dir).await? {
            let name = &meta.key[dir.len()..];
            if (name.starts_with("keys-") && name.ends_with(".json")) || name == "_built.json" {
                self.store.delete(&meta.key).await?;
            }
        }
        self.store.put(&marker, Bytes::from_static(b"{}")).await?;
        info!(dataset = %parent.name, files, "key index built from silver");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    fn keys(t: usize) -> Vec<String> {
        (0..50).map(|i| format!("C{t}-{i}")).collect()
    }

    /// The shards' jobs run at once (each waits for all to have started), an error ends the
    /// run at once and aborts the jobs still running, and a panic is a panic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_shard_runs_the_jobs_at_once_and_stops_at_an_error() {
        let started = Arc::new(tokio::sync::Barrier::new(SHARDS));
        let jobs = (0..SHARDS).map(|shard| {
            let started = started.clone();
            async move {
                started.wait().await;
                Ok::<_, KeyIndexError>(shard)
            }
        });
        let mut done = tokio::time::timeout(std::time::Duration::from_secs(30), each_shard(jobs))
            .await
            .expect("the jobs ran at once")
            .unwrap();
        done.sort_unstable();
        assert_eq!(done, (0..SHARDS).collect::<Vec<_>>());

        // A job's future counts itself when it is dropped: once aborted, the sleepers are.
        struct Counted(Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs = (0..4).map(|shard| {
            let counted = Counted(dropped.clone());
            async move {
                let _counted = counted;
                if shard == 2 {
                    return Err(KeyIndexError::Cancelled);
                }
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                Ok(shard)
            }
        });
        let failed = tokio::time::timeout(std::time::Duration::from_secs(30), each_shard(jobs))
            .await
            .expect("an error ends the run at once");
        assert!(
            matches!(failed, Err(KeyIndexError::Cancelled)),
            "{failed:?}"
        );
        for _ in 0..300 {
            if dropped.load(std::sync::atomic::Ordering::SeqCst) == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "the jobs still running were aborted"
        );

        let panics = std::iter::once(async {
            if true {
                panic!("a job's panic");
            }
            Ok::<(), KeyIndexError>(())
        });
        let panicked = tokio::spawn(each_shard(panics)).await;
        assert!(panicked.is_err_and(|e| e.is_panic()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_adds_and_merges_lose_no_key_and_a_repeat_changes_nothing() {
        let (_dir, store, index) = local_index();
        let all: Vec<String> = (0..8).flat_map(keys).collect();
        let mut wanted: HashSet<&str> = all.iter().map(String::as_str).collect();
        wanted.insert("NOPE");

        // Batches 0..4 are merged while 4..8 are added, two merges at once.
        for t in 0..4 {
            index
                .add("customers", &format!("b{t}"), keys(t))
                .await
                .unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for t in 4..8 {
            let index = index.clone();
            tasks.spawn(async move { index.add("customers", &format!("b{t}"), keys(t)).await });
        }
        for _ in 0..2 {
            let index = index.clone();
            tasks.spawn(async move { index.merge("customers").await.map(|_| ()) });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let found: HashSet<String> = index.found("customers", &wanted).await.unwrap();
        assert_eq!(
            found.len(),
            400,
            "every key, in the shards or still waiting"
        );
        assert!(!found.contains("NOPE"));

        index.merge("customers").await.unwrap();
        let delta_prefix = layout::key_index_delta_prefix("customers");
        assert!(store.list(&delta_prefix).await.unwrap().is_empty());
        assert_eq!(index.found("customers", &wanted).await.unwrap(), found);

        // A retried ingest writes its delta again; merging it rewrites no shard.
        let before = store.list("index/").await.unwrap();
        index.add("customers", "b3", keys(3)).await.unwrap();
        let again = index.merge("customers").await.unwrap();
        assert_eq!(
            again,
            IndexMerge {
                deltas: 1,
                shards_written: 0,
                shards_folded: 0
            }
        );
        assert_eq!(store.list("index/").await.unwrap(), before);
    }

    /// A key index on a local store in a temporary directory (kept while the first is).
    fn local_index() -> (tempfile::TempDir, Arc<dyn ObjectStore>, KeyIndex) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let index = KeyIndex::new(store.clone());
        (dir, store, index)
    }

    /// Adds customers `0..n` as batch `b000` and merges them: the first merge writes the
    /// bases (every shard folds).
    async fn with_bases(index: &KeyIndex, n: usize) -> IndexMerge {
        index
            .add("customers", "b000", customers(0, n))
            .await
            .unwrap();
        index.merge("customers").await.unwrap()
    }

    /// `n` customer ids numbered from `from`, as a shop numbers them.
    fn customers(from: usize, n: usize) -> Vec<String> {
        (from..from + n).map(|i| format!("C{i:09}")).collect()
    }

    /// The objects under `index/customers/` whose name starts with `name`, and their bytes.
    async fn files_named(store: &Arc<dyn ObjectStore>, name: &str) -> BTreeMap<String, Bytes> {
        let mut out = BTreeMap::new();
        for meta in store.list("index/customers/").await.unwrap() {
            if layout::file_name(&meta.key).starts_with(name) {
                let bytes = store.get(&meta.key).await.unwrap().unwrap();
                out.insert(meta.key, bytes);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_merge_writes_the_recent_parts_and_folds_a_shard_once_its_recent_part_outgrows_an_eighth()
     {
        let (_dir, store, index) = local_index();
        // The first merge has no base to add to: it writes the bases (every shard folds).
        let first = with_bases(&index, 16_000).await;
        assert_eq!((first.shards_written, first.shards_folded), (16, 16));
        let bases = files_named(&store, "keys-").await;
        assert_eq!(bases.len(), 16);

        // A night's few keys go to the recent parts; the bases are not rewritten.
        let mut all = customers(0, 16_000);
        let mut folded_on = None;
        for night in 1..=60 {
            let keys = customers(100_000 + 200 * night, 200);
            all.extend(keys.iter().cloned());
            // Keys a base holds already (updated customers) go into the recent part too: found
            // either way, and the fold drops the duplicates.
            let mut delta = keys;
            delta.extend(customers(10 * night, 5));
            index
                .add("customers", &format!("b{night:03}"), delta)
                .await
                .unwrap();
            let merge = index.merge("customers").await.unwrap();
            let wanted: HashSet<&str> = all
                .iter()
                .map(String::as_str)
                .chain(["C999999999"])
                .collect();
            let found: HashSet<String> = index.found("customers", &wanted).await.unwrap();
            assert_eq!(found.len(), all.len(), "night {night}: every key found");
            assert!(!found.contains("C999999999"));
            if merge.shards_folded > 0 {
                folded_on = Some(night);
                break;
            }
            assert_eq!(
                files_named(&store, "keys-").await,
                bases,
                "night {night}: the bases are as they were"
            );
            assert!(merge.shards_written > 0, "{merge:?}");
        }
        // A night adds about 12 keys to a shard's recent part of a base of 1,000: an eighth
        // of the base is reached after some nights, not the first.
        assert!(
            folded_on.is_some_and(|n| n > 3),
            "a fold within 60 nights, not before the fourth: {folded_on:?}"
        );
        // A folded shard's recent part is emptied, its base holds its keys.
        let recent = files_named(&store, "recent-").await;
        let base_now = files_named(&store, "keys-").await;
        let rewritten: Vec<&String> = base_now
            .iter()
            .filter(|(k, b)| bases.get(*k) != Some(b))
            .map(|(k, _)| k)
            .collect();
        assert!(!rewritten.is_empty());
        for key in rewritten {
            let shard = key.replace("keys-", "recent-");
            let keys = keyset::decode(&recent[&shard]).unwrap();
            assert_eq!(keys.len(), 0, "{shard} emptied by its fold");
        }
    }

    /// Merges running two at a time, beside look-ups and new batches, over nights that add to
    /// the recent parts and nights that fold them: a look-up always finds every key of the
    /// batches added before it started.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn look_ups_beside_concurrent_merges_and_folds_miss_no_key() {
        let (_dir, _, index) = local_index();
        with_bases(&index, 4_000).await;
        let mut added = customers(0, 4_000);
        let mut folds = 0;
        for night in 1..=30 {
            let mut tasks = tokio::task::JoinSet::new();
            for part in 0..2 {
                let index = index.clone();
                let keys = customers(100_000 + 1_000 * night + 100 * part, 100);
                tasks.spawn(async move {
                    index
                        .add("customers", &format!("b{night:03}-{part}"), keys)
                        .await
                        .map(|_| 0)
                });
            }
            for _ in 0..2 {
                let index = index.clone();
                tasks.spawn(async move { index.merge("customers").await.map(|m| m.shards_folded) });
            }
            let before = added.clone();
            let looking = {
                let index = index.clone();
                tokio::spawn(async move {
                    let wanted: HashSet<&str> = before.iter().map(String::as_str).collect();
                    let found: HashSet<String> = index.found("customers", &wanted).await?;
                    Ok::<_, KeyIndexError>((found.len(), before.len()))
                })
            };
            while let Some(done) = tasks.join_next().await {
                folds += done.unwrap().unwrap();
            }
            let (found, wanted) = looking.await.unwrap().unwrap();
            assert_eq!(found, wanted, "night {night}: a look-up missed keys");
            for part in 0..2 {
                added.extend(customers(100_000 + 1_000 * night + 100 * part, 100));
            }
        }
        index.merge("customers").await.unwrap();
        let wanted: HashSet<&str> = added.iter().map(String::as_str).collect();
        let found: HashSet<String> = index.found("customers", &wanted).await.unwrap();
        assert_eq!(found.len(), added.len());
        assert!(folds > 0, "some nights folded");
    }

    /// A store whose first read of a shard's base hands out the base as it was, and only then
    /// lets a merge run (`hook`): a look-up that read the base just before a fold. With
    /// `merge_at_delta`, the merge runs instead just before the first read of a waiting delta,
    /// which it removes: a look-up that listed a delta a merge then took. It logs the bases
    /// read (`bases`).
    #[derive(Debug)]
    struct FoldAfterBaseRead {
        inner: Arc<dyn ObjectStore>,
        hook: tokio::sync::Mutex<Option<KeyIndex>>,
        merge_at_delta: bool,
        bases: std::sync::Mutex<Vec<String>>,
    }

    impl FoldAfterBaseRead {
        fn new(inner: Arc<dyn ObjectStore>, index: KeyIndex, merge_at_delta: bool) -> Self {
            FoldAfterBaseRead {
                inner,
                hook: tokio::sync::Mutex::new(Some(index)),
                merge_at_delta,
                bases: Default::default(),
            }
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FoldAfterBaseRead {
        async fn head(
            &self,
            key: &str,
        ) -> crate::storage::StorageResult<Option<crate::storage::ObjectMeta>> {
            self.inner.head(key).await
        }
        async fn get(&self, key: &str) -> crate::storage::StorageResult<Option<Bytes>> {
            if self.merge_at_delta
                && key.starts_with(&layout::key_index_delta_prefix("customers"))
                && let Some(index) = self.hook.lock().await.take()
            {
                // Into the recent parts: a fold would put the keys in the bases, read last.
                let merge = index.merge("customers").await.unwrap();
                assert_eq!(merge.shards_folded, 0, "{merge:?}");
            }
            self.inner.get(key).await
        }
        async fn reader(
            &self,
            key: &str,
        ) -> crate::storage::StorageResult<crate::storage::ObjectReader> {
            if layout::file_name(key).starts_with("keys-") {
                self.bases.lock().unwrap().push(key.to_owned());
            }
            if layout::file_name(key).starts_with("keys-")
                && !self.merge_at_delta
                && let Some(index) = self.hook.lock().await.take()
            {
                let before = self.inner.get(key).await?.unwrap_or_default();
                // Enough new keys in this shard to fold it.
                let shard = key.rsplit_once("keys-").unwrap().1;
                let many: Vec<String> = (1_000_000..)
                    .map(|i| format!("C{i:09}"))
                    .filter(|k| format!("{:03}.bin", shard_of(k)) == shard)
                    .take(1_000)
                    .collect();
                index.add("customers", "b2", many).await.unwrap();
                let merge = index.merge("customers").await.unwrap();
                assert_eq!(merge.shards_folded, 1, "{merge:?}");
                return Ok(Box::new(std::io::Cursor::new(before.to_vec())));
            }
            self.inner.reader(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            range: std::ops::Range<u64>,
        ) -> crate::storage::StorageResult<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn put(&self, key: &str, body: Bytes) -> crate::storage::StorageResult<()> {
            self.inner.put(key, body).await
        }
        async fn put_if(
            &self,
            key: &str,
            body: Bytes,
            condition: Precondition,
        ) -> crate::storage::StorageResult<bool> {
            self.inner.put_if(key, body, condition).await
        }
        async fn put_file(
            &self,
            key: &str,
            path: &std::path::Path,
        ) -> crate::storage::StorageResult<()> {
            self.inner.put_file(key, path).await
        }
        async fn copy(&self, from: &str, to: &str) -> crate::storage::StorageResult<()> {
            self.inner.copy(from, to).await
        }
        async fn delete(&self, key: &str) -> crate::storage::StorageResult<()> {
            self.inner.delete(key).await
        }
        async fn list(
            &self,
            prefix: &str,
        ) -> crate::storage::StorageResult<Vec<crate::storage::ObjectMeta>> {
            self.inner.list(prefix).await
        }
        async fn list_after(
            &self,
            prefix: &str,
            start_after: &str,
            limit: Option<usize>,
        ) -> crate::storage::StorageResult<Vec<crate::storage::ObjectMeta>> {
            self.inner.list_after(prefix, start_after, limit).await
        }
        fn uri(&self, key: &str) -> String {
            self.inner.uri(key)
        }
    }

    /// A night's merge reads no base unless its keys would fold a shard's recent part; a night
    /// that repeats every key (an export of every customer each night) then finds them all in
    /// the bases and writes nothing, rather than folding every shard.
    #[tokio::test]
    async fn a_merge_reads_a_base_only_when_it_would_fold() {
        let (_dir, local, index) = local_index();
        with_bases(&index, 16_000).await;
        let store = Arc::new(FoldAfterBaseRead {
            inner: local.clone(),
            hook: tokio::sync::Mutex::new(None),
            merge_at_delta: false,
            bases: Default::default(),
        });
        let watched = KeyIndex::new(store.clone());

        // New keys and a few the bases hold: into the recent parts, no base read.
        let mut night = customers(100_000, 200);
        night.extend(customers(0, 5));
        watched.add("customers", "b001", night).await.unwrap();
        let merge = watched.merge("customers").await.unwrap();
        assert_eq!(merge.shards_folded, 0, "{merge:?}");
        assert!(merge.shards_written > 0, "{merge:?}");
        assert!(store.bases.lock().unwrap().is_empty(), "no base read");

        // Every key again: enough to fold every shard, so each base is read, and holds them.
        let (bases, recent) = (
            files_named(&local, "keys-").await,
            files_named(&local, "recent-").await,
        );
        let mut every = customers(0, 16_000);
        every.extend(customers(100_000, 200));
        watched
            .add("customers", "b002", every.clone())
            .await
            .unwrap();
        let merge = watched.merge("customers").await.unwrap();
        assert_eq!((merge.shards_written, merge.shards_folded), (0, 0));
        assert_eq!(
            store.bases.lock().unwrap().len(),
            SHARDS,
            "each base read once"
        );
        assert_eq!(files_named(&local, "keys-").await, bases);
        assert_eq!(files_named(&local, "recent-").await, recent);
        let wanted: HashSet<&str> = every.iter().map(String::as_str).collect();
        let found: HashSet<String> = index.found("customers", &wanted).await.unwrap();
        assert_eq!(found.len(), every.len());
    }

    /// The waiting deltas are read before the shards: keys they hold are never looked for in a
    /// base, and a delta a merge takes between the listing and its read is found in the shards
    /// (which the merge wrote first).
    #[tokio::test]
    async fn a_look_up_reads_the_waiting_deltas_first_and_finds_a_delta_merged_meanwhile() {
        let (_dir, local, index) = local_index();
        // Bases large enough that the merge below adds to the recent parts.
        let base: Vec<String> = (0..20_000).map(|i| format!("B{i:06}")).collect();
        index.add("customers", "b0", base).await.unwrap();
        index.merge("customers").await.unwrap();
        index.add("customers", "b1", keys(1)).await.unwrap();
        let wanted = HashSet::from(["C1-0", "C1-49"]);
        let store = Arc::new(FoldAfterBaseRead::new(local.clone(), index.clone(), false));
        let found: HashSet<String> = KeyIndex::new(store.clone())
            .found("customers", &wanted)
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        assert!(store.bases.lock().unwrap().is_empty(), "no base read");

        let store = Arc::new(FoldAfterBaseRead::new(local.clone(), index.clone(), true));
        let found: HashSet<String> = KeyIndex::new(store.clone())
            .found(
                "customers",
                &HashSet::from(["C1-0", "C1-49", "B000003", "NOPE"]),
            )
            .await
            .unwrap();
        assert!(store.hook.lock().await.is_none(), "the merge ran");
        let prefix = layout::key_index_delta_prefix("customers");
        assert!(local.list(&prefix).await.unwrap().is_empty(), "merged");
        let expect = ["C1-0", "C1-49", "B000003"].map(str::to_owned);
        assert_eq!(found, HashSet::from(expect));
    }

    /// A key waiting in a shard's recent part is found by a look-up during which a merge folds
    /// that part into the base: the look-up reads the recent part first.
    #[tokio::test]
    async fn a_look_up_across_a_fold_finds_the_keys_the_fold_moved() {
        let (_dir, local, index) = local_index();
        let shard = shard_of("K-moved");
        // One shard: a base of 2,000 keys, one key in its recent part.
        let in_shard = |from: usize, n: usize| -> Vec<String> {
            (from..)
                .map(|i| format!("C{i:09}"))
                .filter(|k| shard_of(k) == shard)
                .take(n)
                .collect()
        };
        index
            .add("customers", "b0", in_shard(0, 2_000))
            .await
            .unwrap();
        index.merge("customers").await.unwrap();
        index
            .add("customers", "b1", ["K-moved".to_owned()])
            .await
            .unwrap();
        let merge = index.merge("customers").await.unwrap();
        assert_eq!((merge.shards_written, merge.shards_folded), (1, 0));
        let in_base = in_shard(0, 1).remove(0);
        let store = Arc::new(FoldAfterBaseRead::new(local.clone(), index.clone(), false));
        // No delta waits when the look-up lists; a batch is merged, folding the shard, right
        // after the look-up has read the base.
        let found: HashSet<String> = KeyIndex::new(store.clone())
            .found("customers", &HashSet::from(["K-moved", in_base.as_str()]))
            .await
            .unwrap();
        assert!(store.hook.lock().await.is_none(), "the fold ran");
        assert_eq!(found, HashSet::from(["K-moved".to_owned(), in_base]));
    }

    #[tokio::test]
    async fn an_index_built_before_recent_parts_is_kept_and_its_marker_renamed() {
        let (_dir, store, index) = local_index();
        index.add("customers", "b1", keys(1)).await.unwrap();
        index.merge("customers").await.unwrap();
        let v2 = layout::key_index_built_key_v2("customers");
        store.put(&v2, Bytes::from_static(b"{}")).await.unwrap();
        // No silver at all: a rebuild would find no key.
        let registry = Registry::builtin();
        index
            .ensure_built(registry.get("customers").unwrap())
            .await
            .unwrap();
        assert!(store.head(&v2).await.unwrap().is_none());
        let marker = layout::key_index_built_key("customers");
        assert!(store.head(&marker).await.unwrap().is_some());
        let found: HashSet<String> = index
            .found("customers", &HashSet::from(["C1-0", "C1-49"]))
            .await
            .unwrap();
        assert_eq!(found.len(), 2, "kept, not rebuilt from (empty) silver");

        // A merge (the nightly compaction's, before any gate ran) renames it too, before it
        // writes a recent part.
        store.put(&v2, Bytes::from_static(b"{}")).await.unwrap();
        store.delete(&marker).await.unwrap();
        index.add("customers", "b2", keys(2)).await.unwrap();
        index.merge("customers").await.unwrap();
        assert!(store.head(&v2).await.unwrap().is_none());
        assert!(store.head(&marker).await.unwrap().is_some());
    }

    /// A retried ingest writes its keys' file again; a forced re-ingest with other keys writes
    /// a second one, which no merge that read only the first can delete.
    #[tokio::test]
    async fn a_re_ingest_with_other_keys_writes_another_delta() {
        let (_dir, store, index) = local_index();
        let prefix = layout::key_index_delta_prefix("customers");
        index.add("customers", "b1", keys(1)).await.unwrap();
        index.add("customers", "b1", keys(1)).await.unwrap();
        assert_eq!(store.list(&prefix).await.unwrap().len(), 1, "a retry");
        let mut more = keys(1);
        more.push("C1-new".to_owned());
        index.add("customers", "b1", more).await.unwrap();
        let deltas = store.list(&prefix).await.unwrap();
        assert_eq!(deltas.len(), 2, "{deltas:?}");
        assert!(deltas.iter().all(|d| d.key.contains("/delta/b1-")));
        let found: HashSet<String> = index
            .found("customers", &HashSet::from(["C1-new", "C1-0"]))
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
    }

    #[tokio::test]
    async fn a_check_merges_the_deltas_when_too_many_wait() {
        let (_dir, store, index) = local_index();
        for t in 0..=MAX_DELTAS {
            index
                .add("customers", &format!("b{t:03}"), keys(t))
                .await
                .unwrap();
        }
        let wanted = HashSet::from(["C0-0", "C16-49", "NOPE"]);
        let found = index.found("customers", &wanted).await.unwrap();
        assert_eq!(
            found,
            HashSet::from(["C0-0".to_owned(), "C16-49".to_owned()])
        );
        let prefix = layout::key_index_delta_prefix("customers");
        assert!(store.list(&prefix).await.unwrap().is_empty(), "merged");
    }

    #[tokio::test]
    async fn a_lake_with_the_json_index_is_rebuilt_once_and_its_json_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        for legacy in [
            "index/customers/keys-000.json",
            "index/customers/_built.json",
        ] {
            store.put(legacy, Bytes::from_static(b"[]")).await.unwrap();
        }
        let index = KeyIndex::new(store.clone());
        index.add("customers", "b1", keys(1)).await.unwrap();
        let registry = Registry::builtin();
        index
            .ensure_built(registry.get("customers").unwrap())
            .await
            .unwrap();
        let left: Vec<String> = store
            .list("index/customers/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert!(
            left.iter()
                .all(|k| !k.ends_with("keys-000.json") && !k.ends_with("/_built.json")),
            "{left:?}"
        );
        assert!(
            left.contains(&layout::key_index_built_key("customers")),
            "{left:?}"
        );
        assert!(
            !left.iter().any(|k| k.contains("/delta/")),
            "a build starts merged: {left:?}"
        );
        let found = index
            .found("customers", &HashSet::from(["C1-0", "NOPE"]))
            .await
            .unwrap();
        assert_eq!(found, HashSet::from(["C1-0".to_owned()]));
    }

    #[tokio::test]
    async fn an_index_written_in_the_older_formats_is_read_and_rewritten_in_the_new_by_a_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let mut by_shard: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
        let old = keys(0);
        for k in &old {
            by_shard.entry(shard_of(k)).or_default().insert(k);
        }
        for (shard, keys) in &by_shard {
            // Both older formats, shard by shard.
            let keys = keys.iter().map(|k| k.as_bytes());
            let body = match shard % 2 {
                0 => keyset::encode_v2(keys),
                _ => keyset::encode_v3(keys),
            };
            let key = layout::key_index_shard_key("customers", *shard);
            store.put(&key, Bytes::from(body)).await.unwrap();
        }
        let waiting = keyset::encode_v2(["C1-0".as_bytes()]);
        let delta = layout::key_index_delta_key("customers", "b1");
        store.put(&delta, Bytes::from(waiting)).await.unwrap();
        let index = KeyIndex::new(store.clone());
        let wanted = HashSet::from(["C0-0", "C0-49", "C1-0", "NOPE"]);
        let expect = HashSet::from(["C0-0".to_owned(), "C0-49".to_owned(), "C1-0".to_owned()]);
        let found: HashSet<String> = index.found("customers", &wanted).await.unwrap();
        assert_eq!(found, expect);

        index.merge("customers").await.unwrap();
        let shard = layout::key_index_shard_key("customers", shard_of("C1-0"));
        let body = store.get(&shard).await.unwrap().unwrap();
        assert!(
            body.starts_with(b"shoplake-keys-v4\n"),
            "rewritten by the merge"
        );
        let found: HashSet<String> = index.found("customers", &wanted).await.unwrap();
        assert_eq!(found, expect);
    }

    #[tokio::test]
    async fn a_corrupt_shard_names_itself_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let key = layout::key_index_shard_key("customers", shard_of("C1"));
        store.put(&key, Bytes::from_static(b"{oops")).await.unwrap();
        let index = KeyIndex::new(store);
        let err = index
            .found::<std::hash::RandomState>("customers", &HashSet::from(["C1"]))
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains(&key), "{err}");
        assert!(err.to_string().contains("rebuilt"), "{err}");
        let builtin = Registry::builtin();
        assert!(is_indexed(&builtin, "customers"));
        assert!(!is_indexed(&builtin, "orders"), "payments use a window");
    }
}
