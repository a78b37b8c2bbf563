//! The key index of a parent dataset that references without a window check against (orders
//! name customers, which have no date partition): its distinct keys, hash-sharded into
//! [`SHARDS`] sorted shards `index/<dataset>/keys-<nnn>.bin`, plus the keys of the batches not
//! merged into them yet, one small file per batch under `index/<dataset>/delta/`.
//!
//! Why two parts: a batch's keys hash into every shard, so adding them to the shards rewrites the
//! whole index, which grows with the distinct keys of all history. Ingest therefore only writes
//! its batch's keys (`delta/<batch>.bin`, before the manifest: its commit point; a retry writes
//! the same file), a cost of the batch alone. The nightly compaction merges the deltas into the
//! shards ([`KeyIndex::merge`]: a union per shard by compare-and-swap on its ETag, then the
//! merged deltas are deleted), and a check that finds more than [`MAX_DELTAS`] waiting merges
//! them itself, so a lake that never compacts still reads a bounded number of them.
//!
//! A check reads the shards its references fall into, one at a time, then the waiting deltas
//! only for the references the shards did not hold. The shards are sorted keys, front-coded
//! (`keyset`), searched in place (no parse into a set): reading one costs about its bytes. The
//! index may hold a key whose batch never committed (a crash between delta and manifest, until
//! the retry commits it) or whose rows a forced re-ingest dropped: it over-approximates, it never
//! forgets.
//!
//! An index is complete once `index/<dataset>/_built-v2.json` exists: the gate builds it from
//! silver once (a lake that predates the index or its format), after which ingest keeps it
//! current.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::contract::{Contract, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::silver::read::{self, ReadError};
use crate::storage::{ObjectStore, Precondition, StorageError};

/// Shards per dataset: a check reads the shards its references hash to.
pub const SHARDS: usize = 16;

/// Attempts of one shard's compare-and-swap before giving up (others kept changing it), and of
/// a look-up whose deltas were merged away while it read them.
const CAS_ATTEMPTS: usize = 20;

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
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Retryable for KeyIndexError {
    fn is_retryable(&self) -> bool {
        match self {
            KeyIndexError::Corrupt { .. } => false,
            KeyIndexError::Contended { .. } => true,
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

pub fn shard_of(key: &str) -> usize {
    shard_of_bytes(key.as_bytes())
}

fn shard_of_bytes(key: &[u8]) -> usize {
    let d = Sha256::digest(key);
    usize::from(u16::from_be_bytes([d[0], d[1]])) % SHARDS
}

mod keyset;

/// What a merge of waiting deltas did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexMerge {
    /// Delta files merged into the shards and removed.
    pub deltas: usize,
    /// Shards rewritten (a shard that already held every key is left alone).
    pub shards_written: usize,
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
    /// distinct keys, merged into the shards later. A retry writes the same file again.
    pub async fn add(
        &self,
        dataset: &str,
        batch_id: &str,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(), KeyIndexError> {
        let keys: BTreeSet<String> = keys.into_iter().collect();
        let body = keyset::encode(keys.iter().map(String::as_bytes));
        self.store
            .put(
                &layout::key_index_delta_key(dataset, batch_id),
                Bytes::from(body),
            )
            .await?;
        Ok(())
    }

    /// Adds `keys` (sorted by shard) to the shards: a union per shard by compare-and-swap, so
    /// concurrent merges lose nothing and a repeated one writes nothing.
    async fn union_into_shards(
        &self,
        dataset: &str,
        by_shard: &BTreeMap<usize, BTreeSet<Vec<u8>>>,
    ) -> Result<usize, KeyIndexError> {
        let mut written = 0;
        for (shard, keys) in by_shard {
            let key = layout::key_index_shard_key(dataset, *shard);
            let new: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let meta = self.store.head(&key).await?;
                let bytes = match &meta {
                    None => None,
                    Some(_) => self.store.get(&key).await?,
                };
                let old = match &bytes {
                    Some(b) => keyset::decode(b).map_err(Self::corrupt(&key))?,
                    None => keyset::Keys::default(),
                };
                // A union no longer than the shard: every key was there already.
                let union = keyset::union(old.iter(), new.iter().copied());
                if union.len() == old.len() {
                    break;
                }
                let body = Bytes::from(keyset::encode(union));
                let condition = match meta {
                    Some(m) if bytes.is_some() => Precondition::Matches(m.etag),
                    _ => Precondition::Absent,
                };
                if self.store.put_if(&key, body, condition).await? {
                    written += 1;
                    break;
                }
                if attempts >= CAS_ATTEMPTS {
                    return Err(KeyIndexError::Contended { key, attempts });
                }
            }
        }
        Ok(written)
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
        let shards_written = self.union_into_shards(dataset, &by_shard).await?;
        for key in &merged {
            self.store.delete(key).await?;
        }
        info!(
            dataset,
            deltas = merged.len(),
            shards_written,
            "key index deltas merged"
        );
        Ok(IndexMerge {
            deltas: merged.len(),
            shards_written,
        })
    }

    /// The subset of `wanted` that the index of `dataset` holds: the shards the wanted keys fall
    /// into, one at a time, then the waiting deltas for what the shards did not hold. In the
    /// caller's kind of set, so the keys found are hashed once.
    pub async fn found<S: BuildHasher + Default>(
        &self,
        dataset: &str,
        wanted: &HashSet<&str, impl BuildHasher>,
    ) -> Result<HashSet<String, S>, KeyIndexError> {
        let prefix = layout::key_index_delta_prefix(dataset);
        let mut attempts = 0;
        'attempt: loop {
            attempts += 1;
            // Listed before the shards are read: a merge writes the shards before it removes a
            // delta, so a listed delta that is gone when read means the shards read may predate
            // its merge (start again); one written after the listing is a batch committed after
            // this look-up began.
            let mut deltas = self.store.list(&prefix).await?;
            if deltas.len() > MAX_DELTAS {
                self.merge(dataset).await?;
                deltas = self.store.list(&prefix).await?;
            }
            let mut by_shard: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
            for k in wanted {
                by_shard.entry(shard_of(k)).or_default().push(k);
            }
            let mut found = HashSet::default();
            let mut missing: Vec<&str> = Vec::new();
            for (shard, keys) in by_shard {
                let key = layout::key_index_shard_key(dataset, shard);
                // Streamed, not fetched whole: the shard grows with every key ever.
                let file = match self.store.reader(&key).await {
                    Ok(file) => file,
                    Err(StorageError::NotFound { .. }) => {
                        missing.extend(keys);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let (held, rest) = keyset::lookup(file, keys)
                    .await
                    .map_err(Self::lookup_failed(&key))?;
                found.extend(held.into_iter().map(str::to_owned));
                missing.extend(rest);
            }
            for meta in &deltas {
                if missing.is_empty() {
                    break;
                }
                let Some(bytes) = self.store.get(&meta.key).await? else {
                    if attempts >= CAS_ATTEMPTS {
                        return Err(KeyIndexError::Contended {
                            key: meta.key.clone(),
                            attempts,
                        });
                    }
                    continue 'attempt;
                };
                let (held, rest) = keyset::lookup(&bytes[..], missing)
                    .await
                    .map_err(Self::lookup_failed(&meta.key))?;
                found.extend(held.into_iter().map(str::to_owned));
                missing = rest;
            }
            return Ok(found);
        }
    }

    /// Builds the index from silver once (a lake from before the index or its format), then
    /// marks it complete and removes the files of an older format.
    pub async fn ensure_built(&self, parent: &Contract) -> Result<(), KeyIndexError> {
        let marker = layout::key_index_built_key(&parent.name);
        if self.store.head(&marker).await?.is_some() {
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
                    self.union_into_shards(&parent.name, &pending).await?;
                    pending.clear();
                    held = 0;
                }
            }
        }
        self.union_into_shards(&parent.name, &pending).await?;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_adds_and_merges_lose_no_key_and_a_repeat_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let index = KeyIndex::new(store.clone());
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
                shards_written: 0
            }
        );
        assert_eq!(store.list("index/").await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_check_merges_the_deltas_when_too_many_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let index = KeyIndex::new(store.clone());
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
    async fn an_index_written_in_the_older_format_is_read_and_rewritten_in_the_new_by_a_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let mut by_shard: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
        let old = keys(0);
        for k in &old {
            by_shard.entry(shard_of(k)).or_default().insert(k);
        }
        for (shard, keys) in &by_shard {
            let body = keyset::encode_v2(keys.iter().map(|k| k.as_bytes()));
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
            body.starts_with(b"shoplake-keys-v3\n"),
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
