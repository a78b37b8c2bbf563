//! The key index of a parent dataset that references without a window check against (orders
//! name customers, which have no date partition): its distinct keys, hash-sharded into
//! [`SHARDS`] sorted JSON arrays `index/<dataset>/keys-<nnn>.json`.
//!
//! Ingest adds a batch's keys before it writes the manifest (its commit point), each shard by a
//! compare-and-swap on its ETag, so concurrent ingests lose nothing and a retried one adds the
//! same keys again (a set union: idempotent). The index may hold a key whose batch never
//! committed (a crash between the two, until the retry commits it) or whose rows a forced
//! re-ingest dropped: it over-approximates, it never forgets. Its size is the number of distinct
//! parent keys, not the number of versions or batches: checking a batch reads the shards its
//! references fall into, one at a time.
//!
//! An index is complete once `index/<dataset>/_built.json` exists: the gate builds it from silver
//! once (a lake that predates the index), after which ingest keeps it current.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::contract::{Contract, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::silver::read::{self, ReadError};
use crate::storage::{ObjectStore, Precondition, StorageError};

/// Shards per dataset: a check reads the shards its references hash to.
pub const SHARDS: usize = 16;

/// Attempts of one shard's compare-and-swap before giving up (others kept changing it).
const CAS_ATTEMPTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum KeyIndexError {
    #[error(
        "{key} is not a readable key index shard ({source}); delete index/<dataset>/ to have it rebuilt from silver"
    )]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key} kept changing under {attempts} attempts to add keys; retry")]
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
    let d = Sha256::digest(key.as_bytes());
    usize::from(u16::from_be_bytes([d[0], d[1]])) % SHARDS
}

#[derive(Debug, Clone)]
pub struct KeyIndex {
    store: Arc<dyn ObjectStore>,
}

impl KeyIndex {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        KeyIndex { store }
    }

    fn parse(key: &str, bytes: &[u8]) -> Result<BTreeSet<String>, KeyIndexError> {
        serde_json::from_slice(bytes).map_err(|source| KeyIndexError::Corrupt {
            key: key.to_owned(),
            source,
        })
    }

    /// Adds keys to the index of `dataset` (a union per shard, by compare-and-swap).
    pub async fn add(
        &self,
        dataset: &str,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(), KeyIndexError> {
        let mut by_shard: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for k in keys {
            by_shard.entry(shard_of(&k)).or_default().insert(k);
        }
        for (shard, keys) in by_shard {
            let key = layout::key_index_shard_key(dataset, shard);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let meta = self.store.head(&key).await?;
                let mut set = match &meta {
                    None => BTreeSet::new(),
                    Some(_) => match self.store.get(&key).await? {
                        Some(bytes) => Self::parse(&key, &bytes)?,
                        None => BTreeSet::new(),
                    },
                };
                if keys.is_subset(&set) {
                    break;
                }
                set.extend(keys.iter().cloned());
                let condition = match meta {
                    None => Precondition::Absent,
                    Some(m) => Precondition::Matches(m.etag),
                };
                let body = Bytes::from(serde_json::to_vec(&set).expect("strings serialise"));
                if self.store.put_if(&key, body, condition).await? {
                    break;
                }
                if attempts >= CAS_ATTEMPTS {
                    return Err(KeyIndexError::Contended { key, attempts });
                }
            }
        }
        Ok(())
    }

    /// The subset of `wanted` that the index of `dataset` holds; reads only the shards the
    /// wanted keys fall into, one at a time.
    pub async fn found(
        &self,
        dataset: &str,
        wanted: &HashSet<&str>,
    ) -> Result<HashSet<String>, KeyIndexError> {
        let mut by_shard: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for k in wanted {
            by_shard.entry(shard_of(k)).or_default().push(k);
        }
        let mut found = HashSet::new();
        for (shard, keys) in by_shard {
            let key = layout::key_index_shard_key(dataset, shard);
            if let Some(bytes) = self.store.get(&key).await? {
                let set = Self::parse(&key, &bytes)?;
                found.extend(
                    keys.into_iter()
                        .filter(|k| set.contains(*k))
                        .map(str::to_owned),
                );
            }
        }
        Ok(found)
    }

    /// Builds the index from silver once (a lake from before the index), then marks it complete.
    pub async fn ensure_built(&self, parent: &Contract) -> Result<(), KeyIndexError> {
        let marker = layout::key_index_built_key(&parent.name);
        if self.store.head(&marker).await?.is_some() {
            return Ok(());
        }
        let key = parent.key_column().name.as_str();
        let mut files = 0usize;
        for meta in self
            .store
            .list(&layout::processed_prefix(&parent.name))
            .await?
        {
            if meta.key.ends_with(".parquet") {
                let df = read::read_columns(self.store.as_ref(), &meta.key, &[key]).await?;
                let keys = read::strings(&df, key, &meta.key)?;
                self.add(&parent.name, keys.into_iter().flatten()).await?;
                files += 1;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_adds_lose_no_key_and_a_repeat_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let index = KeyIndex::new(store.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8 {
            let index = index.clone();
            tasks.spawn(async move {
                index
                    .add("customers", (0..50).map(|i| format!("C{t}-{i}")))
                    .await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let all: Vec<String> = (0..8)
            .flat_map(|t| (0..50).map(move |i| format!("C{t}-{i}")))
            .collect();
        let mut wanted: HashSet<&str> = all.iter().map(String::as_str).collect();
        wanted.insert("NOPE");
        let found = index.found("customers", &wanted).await.unwrap();
        assert_eq!(found.len(), 400, "every key of every concurrent add");
        assert!(!found.contains("NOPE"));

        let before = store.list("index/").await.unwrap();
        index
            .add("customers", all.iter().take(10).cloned())
            .await
            .unwrap();
        assert_eq!(
            store.list("index/").await.unwrap(),
            before,
            "adding known keys writes nothing"
        );
    }

    #[tokio::test]
    async fn a_corrupt_shard_names_itself_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let key = layout::key_index_shard_key("customers", shard_of("C1"));
        store.put(&key, Bytes::from_static(b"{oops")).await.unwrap();
        let index = KeyIndex::new(store);
        let err = index
            .found("customers", &HashSet::from(["C1"]))
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
