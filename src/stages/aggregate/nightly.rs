//! What the scheduled aggregate keeps between runs, and how it reads silver by day.
//!
//! `runs/aggregate/state.json` holds, per input dataset, a batch watermark (the newest batch id
//! seen) and the batches seen within [`WATERMARK_LAG`] of it, plus the keys of the state tables
//! ([`KpiState`], one Parquet object each, written under a new generation name before the JSON
//! that points at them, so a crash never leaves the pointer naming half a state). A run lists
//! only the manifests after `watermark − WATERMARK_LAG` (batch ids sort by the source's upload
//! time, and a batch may commit a while after a newer one), so its listing cost follows the new
//! batches, not the history, and the seen set stays bounded by the lag.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::Contract;
use crate::gold::GoldError;
use crate::gold::incremental::{KpiState, SilverDates};
use crate::layout;
use crate::state::LakeState;
use crate::state::cursor::{BatchCursor, WATERMARK_LAG, batch_time};
use crate::storage::{ObjectStore, StorageError};

const STATE_VERSION: u32 = 1;

/// One dataset's batch watermark ([`crate::state::cursor`]'s listing) and the batches folded
/// into gold that the next listing returns again (those within the lag of the watermark).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCursor {
    pub watermark: Option<String>,
    pub recent: BTreeSet<String>,
}

/// `runs/aggregate/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub cursors: BTreeMap<String, SeenCursor>,
    pub first_orders_key: String,
    pub tombstones_key: String,
}

impl SeenCursor {
    /// Lists the manifests of `dataset` after the cursor: the batch ids not seen before, and
    /// the cursor that has seen them.
    pub async fn advance(
        &self,
        store: &dyn ObjectStore,
        dataset: &str,
    ) -> Result<(Vec<String>, SeenCursor), StorageError> {
        let mut cursor = BatchCursor {
            watermark: self.watermark.clone(),
            open: BTreeSet::new(),
        };
        let listing = cursor.list(store, dataset).await?;
        let new: Vec<String> = listing
            .listed
            .iter()
            .filter(|b| !self.recent.contains(*b))
            .cloned()
            .collect();
        // Kept: what the next listing (from the lag behind the new watermark) returns again.
        let from = cursor
            .watermark
            .as_deref()
            .and_then(batch_time)
            .map(|t| t - WATERMARK_LAG);
        let recent = self
            .recent
            .iter()
            .chain(&new)
            .filter(|b| match (from, batch_time(b)) {
                (Some(from), Some(t)) => t >= from,
                _ => true,
            })
            .cloned()
            .collect();
        Ok((
            new,
            SeenCursor {
                watermark: cursor.watermark,
                recent,
            },
        ))
    }
}

/// Reads and writes the state tables.
pub async fn load_state(
    state: &LakeState,
) -> Result<Option<(RunState, KpiState)>, crate::stages::aggregate::AggregateError> {
    let Some(run): Option<RunState> = state.get_json(layout::AGGREGATE_STATE_KEY).await? else {
        return Ok(None);
    };
    if run.version != STATE_VERSION {
        return Ok(None);
    }
    let store = state.store();
    let read = async |key: &str| -> Result<Option<DataFrame>, GoldError> {
        match store.get(key).await? {
            Some(bytes) => Ok(Some(ParquetReader::new(Cursor::new(bytes)).finish()?)),
            None => Ok(None),
        }
    };
    // A state whose tables are gone (deleted by hand) is no state: rebuild it in full.
    let (Some(first_orders), Some(tombstones)) = (
        read(&run.first_orders_key).await?,
        read(&run.tombstones_key).await?,
    ) else {
        return Ok(None);
    };
    Ok(Some((
        run,
        KpiState {
            first_orders,
            tombstones,
        },
    )))
}

/// Writes `kpi`'s tables, then the pointer, then removes every state table the pointer does not
/// name. The tables are named by a digest of what they were computed from (the previous state's
/// tables and the batches seen), not of their bytes (polars' dictionary order is not stable): a
/// retried run rewrites its own objects, and a crash leaves nothing the next run does not clear.
pub async fn save_state(
    state: &LakeState,
    previous: Option<&RunState>,
    cursors: BTreeMap<String, SeenCursor>,
    kpi: &KpiState,
) -> Result<(), crate::stages::aggregate::AggregateError> {
    let store = state.store();
    let mut hasher = Sha256::new();
    if let Some(p) = previous {
        hasher.update(p.first_orders_key.as_bytes());
        hasher.update(p.tombstones_key.as_bytes());
    }
    hasher.update(crate::state::to_json(&cursors));
    let digest: String = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut keys = Vec::new();
    for (table, df) in [
        ("first_orders", &kpi.first_orders),
        ("tombstones", &kpi.tombstones),
    ] {
        let mut df = df.clone();
        let mut buffer = Vec::new();
        ParquetWriter::new(Cursor::new(&mut buffer))
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)
            .map_err(GoldError::from)?;
        let key = layout::aggregate_state_table_key(table, &digest);
        store.put(&key, Bytes::from(buffer)).await?;
        keys.push(key);
    }
    let run = RunState {
        version: STATE_VERSION,
        cursors,
        first_orders_key: keys[0].clone(),
        tombstones_key: keys[1].clone(),
    };
    state.put_json(layout::AGGREGATE_STATE_KEY, &run).await?;
    prune(state, &run).await
}

/// Deletes the state tables `run` does not name (an earlier generation, or one a crashed run
/// wrote before its pointer).
pub async fn prune(
    state: &LakeState,
    run: &RunState,
) -> Result<(), crate::stages::aggregate::AggregateError> {
    let store = state.store();
    for meta in store.list(layout::AGGREGATE_STATE_PREFIX).await? {
        let named = meta.key == run.first_orders_key || meta.key == run.tombstones_key;
        if meta.key.ends_with(".parquet") && !named {
            store.delete(&meta.key).await?;
        }
    }
    Ok(())
}

/// Silver by day from any store: a local lake is read in place; otherwise the requested days'
/// partitions are downloaded into `work_dir` (files already there with the same size are
/// kept, files no longer in the lake removed).
pub struct StoreSilver {
    store: Arc<dyn ObjectStore>,
    work_dir: PathBuf,
    /// Days already downloaded by this run: a run asks for the same days several times.
    prepared: std::sync::Mutex<BTreeSet<(String, NaiveDate)>>,
}

impl StoreSilver {
    pub fn new(store: Arc<dyn ObjectStore>, work_dir: PathBuf) -> Self {
        StoreSilver {
            store,
            work_dir,
            prepared: Default::default(),
        }
    }
}

fn date_prefix(contract: &Contract, day: NaiveDate) -> Option<String> {
    let p = contract.window_partition()?;
    Some(format!(
        "{}{}={}/",
        layout::processed_prefix(&contract.name),
        p.name,
        day.format("%Y-%m-%d")
    ))
}

fn work_error(source: std::io::Error) -> GoldError {
    GoldError::Storage(StorageError::Io {
        operation: "write",
        key: "aggregate work directory".into(),
        source,
    })
}

/// Makes `work_dir/<prefix>…` equal to the store's objects under `prefix`: downloads what is
/// missing or of another size, and removes files the store no longer has (a re-ingest with
/// another split, a compaction), which must not linger and be read twice.
pub async fn mirror_prefix(
    store: &dyn ObjectStore,
    work_dir: &Path,
    prefix: &str,
) -> Result<(), GoldError> {
    let remote = store.list(prefix).await?;
    let wanted: BTreeSet<PathBuf> = remote.iter().map(|m| work_dir.join(&m.key)).collect();
    for meta in remote.iter().filter(|m| m.key.ends_with(".parquet")) {
        let path = work_dir.join(&meta.key);
        if std::fs::metadata(&path).is_ok_and(|md| md.len() == meta.size) {
            continue;
        }
        let bytes = store
            .get(&meta.key)
            .await?
            .ok_or_else(|| StorageError::NotFound {
                key: meta.key.clone(),
            })?;
        std::fs::create_dir_all(path.parent().expect("keys have a parent")).map_err(work_error)?;
        std::fs::write(&path, &bytes).map_err(work_error)?;
    }
    let mut stack = vec![work_dir.join(prefix)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !wanted.contains(&path) {
                std::fs::remove_file(&path).map_err(work_error)?;
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl SilverDates for StoreSilver {
    async fn prepare(
        &self,
        contract: &Contract,
        dates: &BTreeSet<NaiveDate>,
    ) -> Result<PathBuf, GoldError> {
        if let Some(root) = self.store.local_root() {
            return Ok(root.to_owned());
        }
        for day in dates {
            let Some(prefix) = date_prefix(contract, *day) else {
                continue;
            };
            let done = (contract.name.clone(), *day);
            if self.prepared.lock().expect("not poisoned").contains(&done) {
                continue;
            }
            mirror_prefix(self.store.as_ref(), &self.work_dir, &prefix).await?;
            self.prepared.lock().expect("not poisoned").insert(done);
        }
        Ok(self.work_dir.clone())
    }

    async fn dates_after(
        &self,
        contract: &Contract,
        after: NaiveDate,
    ) -> Result<BTreeSet<NaiveDate>, GoldError> {
        let Some(start) = date_prefix(contract, after) else {
            return Ok(BTreeSet::new());
        };
        let prefix = layout::processed_prefix(&contract.name);
        // `~` sorts after every character of a key, so this starts after the whole day.
        let listed = self
            .store
            .list_after(&prefix, &format!("{start}~"), None)
            .await?;
        Ok(listed
            .iter()
            .filter_map(|m| {
                let rest = m.key.strip_prefix(&prefix)?;
                let (_, value) = rest.split('/').next()?.split_once('=')?;
                value.parse().ok()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    #[tokio::test]
    async fn a_batch_committing_late_within_the_lag_is_new_once_and_the_seen_set_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let batch = |d: u32| format!("202601{d:02}T010000Z-abc");
        let put = async |d: u32| {
            store
                .put(&layout::manifest_key("orders", &batch(d)), Bytes::new())
                .await
                .unwrap();
        };
        for d in 1..=30 {
            put(d).await;
        }
        let (new, cursor) = SeenCursor::default()
            .advance(&store, "orders")
            .await
            .unwrap();
        assert_eq!(new.len(), 30);
        assert_eq!(cursor.watermark, Some(batch(30)));
        // Only the batches the next listing returns again are remembered.
        assert_eq!(cursor.recent.len(), 16, "{:?}", cursor.recent);

        let (new, cursor) = cursor.advance(&store, "orders").await.unwrap();
        assert!(new.is_empty(), "{new:?}");
        // A batch of the 20th commits after the 30th's: inside the lag, it is new, once.
        store
            .put(
                &layout::manifest_key("orders", "20260120T020000Z-late"),
                Bytes::new(),
            )
            .await
            .unwrap();
        let (new, cursor) = cursor.advance(&store, "orders").await.unwrap();
        assert_eq!(new, ["20260120T020000Z-late"]);
        let (new, _) = cursor.advance(&store, "orders").await.unwrap();
        assert!(new.is_empty(), "{new:?}");
    }
}
