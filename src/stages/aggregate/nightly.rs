//! What the scheduled aggregate keeps between runs, and how it reads silver by day.
//!
//! `runs/aggregate/state.json` holds, per input dataset, a batch watermark (the newest batch id
//! seen) and the batches seen within [`WATERMARK_LAG`] of it, plus the keys of the state tables
//! (the first-order state's buckets, [`FirstOrderBuckets`], and the tombstones of [`KpiState`],
//! one Parquet object each, written under a new generation name before the JSON that points at
//! them, so a crash never leaves the pointer naming half a state). A bucket a night did not
//! change keeps its object from an earlier generation. A run lists
//! only the manifests after `watermark − WATERMARK_LAG` (batch ids sort by the source's upload
//! time, and a batch may commit a while after a newer one), so its listing cost follows the new
//! batches, not the history, and the seen set stays bounded by the lag.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::TryStreamExt;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::Contract;
use crate::gold::GoldError;
use crate::gold::incremental::{
    self, FirstOrderBuckets, KpiState, SilverDates, empty_first_orders, split_by_bucket,
};
use crate::layout;
use crate::state::LakeState;
use crate::state::cursor::{BatchCursor, WATERMARK_LAG, batch_time};
use crate::storage::{self, ObjectStore, StorageError};

/// Version 2 keeps the first-order state in buckets, version 3 a delta beside each bucket's base;
/// a version 2 state is read as buckets without deltas, a version 1 state as one bucket.
const STATE_VERSION: u32 = 3;

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
    /// The first-order state's buckets (their bases), in bucket order.
    #[serde(default)]
    pub first_orders_keys: Vec<String>,
    /// Each bucket's delta, if it has one, in bucket order (none at all before version 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_orders_deltas: Vec<Option<String>>,
    /// Version 1's first-order table (one bucket); read into `first_orders_keys`. Version 2
    /// writes its first bucket here too, so that a version 1 binary (a rollback) can parse the
    /// pointer, sees a version it does not know and rebuilds, instead of failing on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_orders_key: Option<String>,
    pub tombstones_key: String,
}

impl RunState {
    /// Every state table it names.
    fn tables(&self) -> impl Iterator<Item = &String> {
        self.first_orders_keys
            .iter()
            .chain(self.first_orders_deltas.iter().flatten())
            .chain(&self.first_orders_key)
            .chain(std::iter::once(&self.tombstones_key))
    }
}

/// What the state after a run holds of the first-order state.
pub enum FirstOrdersOut {
    /// The buckets a night wrote or kept ([`StoreFirstOrders::keys`]).
    Written(BucketKeys),
    /// The whole table of a full recompute, to be stored in buckets.
    Table(DataFrame),
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
            .keys()
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
    let Some(mut run): Option<RunState> = state.get_json(layout::AGGREGATE_STATE_KEY).await? else {
        return Ok(None);
    };
    match run.version {
        1 => {
            run.first_orders_keys = run.first_orders_key.take().into_iter().collect();
            run.first_orders_deltas.clear();
            run.version = STATE_VERSION;
        }
        2 => {
            run.first_orders_deltas.clear();
            run.version = STATE_VERSION;
        }
        STATE_VERSION => {}
        _ => return Ok(None),
    }
    let store = state.store();
    // A state whose tables are gone (deleted by hand) is no state: rebuild it in full. The
    // buckets are only looked at here; a night reads them one at a time.
    if !run.first_orders_deltas.is_empty()
        && run.first_orders_deltas.len() != run.first_orders_keys.len()
    {
        return Ok(None);
    }
    for key in run
        .first_orders_keys
        .iter()
        .chain(run.first_orders_deltas.iter().flatten())
    {
        if store.head(key).await?.is_none() {
            return Ok(None);
        }
    }
    if run.first_orders_keys.is_empty() {
        return Ok(None);
    }
    let Some(tombstones) = read_table(store.as_ref(), &run.tombstones_key).await? else {
        return Ok(None);
    };
    Ok(Some((run, KpiState { tombstones })))
}

async fn read_table(store: &dyn ObjectStore, key: &str) -> Result<Option<DataFrame>, GoldError> {
    match store.get(key).await? {
        Some(bytes) => Ok(Some(ParquetReader::new(Cursor::new(bytes)).finish()?)),
        None => Ok(None),
    }
}

fn parquet_bytes(df: &DataFrame) -> Result<Bytes, GoldError> {
    let mut df = df.clone();
    let mut buffer = Vec::new();
    ParquetWriter::new(Cursor::new(&mut buffer))
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)?;
    Ok(Bytes::from(buffer))
}

/// The name of the generation of state tables a run writes: a digest of what they are computed
/// from (the previous state's tables and the batches seen), not of their bytes (polars'
/// dictionary order is not stable), so a retried run rewrites its own objects.
pub fn generation(previous: Option<&RunState>, cursors: &BTreeMap<String, SeenCursor>) -> String {
    let mut hasher = Sha256::new();
    for key in previous.into_iter().flat_map(RunState::tables) {
        hasher.update(key.as_bytes());
    }
    hasher.update(crate::state::to_json(cursors));
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first-order buckets in the store: the previous generation's read by key, the next
/// generation's written under `generation`'s name.
pub struct StoreFirstOrders {
    store: Arc<dyn ObjectStore>,
    previous: BucketKeys,
    generation: String,
    /// Per bucket after the night: its base and its delta.
    next: std::sync::Mutex<BTreeMap<usize, (String, Option<String>)>>,
}

/// The objects of the first-order buckets: bases, and deltas (none, or one per bucket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketKeys {
    pub bases: Vec<String>,
    pub deltas: Vec<Option<String>>,
}

impl BucketKeys {
    /// The keys a state names (`first_orders_keys`, `first_orders_deltas`).
    pub fn of(run: &RunState) -> Self {
        BucketKeys {
            bases: run.first_orders_keys.clone(),
            deltas: run.first_orders_deltas.clone(),
        }
    }
}

impl StoreFirstOrders {
    pub fn new(store: Arc<dyn ObjectStore>, previous: BucketKeys, generation: String) -> Self {
        StoreFirstOrders {
            store,
            previous,
            generation,
            next: Default::default(),
        }
    }

    fn previous_base(&self, bucket: usize) -> Result<String, GoldError> {
        self.previous.bases.get(bucket).cloned().ok_or_else(|| {
            GoldError::Polars(PolarsError::ComputeError(
                format!("no first-order bucket {bucket} in the state before the night").into(),
            ))
        })
    }

    fn next(&self, bucket: usize, keys: (String, Option<String>)) {
        self.next.lock().expect("not poisoned").insert(bucket, keys);
    }

    /// Writes a whole first-order table in the buckets its size calls for.
    pub async fn write_all(&self, table: &DataFrame, per_bucket: usize) -> Result<(), GoldError> {
        let count = incremental::bucket_count(table.height(), per_bucket, 1);
        for (bucket, rows) in split_by_bucket(table, count)?.into_iter().enumerate() {
            self.write(bucket, count, rows).await?;
        }
        Ok(())
    }

    /// The keys of the state after the run, in bucket order.
    pub fn keys(&self) -> Result<BucketKeys, GoldError> {
        let next = self.next.lock().expect("not poisoned");
        if next.is_empty() || next.keys().copied().ne(0..next.len()) {
            return Err(GoldError::Polars(PolarsError::ComputeError(
                format!(
                    "the first-order state after the run has buckets {:?}; expected 0..n",
                    next.keys().collect::<Vec<_>>()
                )
                .into(),
            )));
        }
        let (bases, mut deltas): (Vec<String>, Vec<Option<String>>) =
            next.values().cloned().unzip();
        // No delta at all is stored as none (a full rebuild, or every delta folded).
        if deltas.iter().all(Option::is_none) {
            deltas.clear();
        }
        Ok(BucketKeys { bases, deltas })
    }
}

#[async_trait::async_trait]
impl FirstOrderBuckets for StoreFirstOrders {
    fn count(&self) -> usize {
        self.previous.bases.len()
    }

    async fn read(&self, bucket: usize) -> Result<DataFrame, GoldError> {
        match self.previous.bases.get(bucket) {
            Some(key) => read_named(self.store.as_ref(), key).await,
            None => Ok(empty_first_orders()?),
        }
    }

    async fn read_delta(&self, bucket: usize) -> Result<DataFrame, GoldError> {
        match self.previous.deltas.get(bucket).and_then(Option::as_ref) {
            Some(key) => read_named(self.store.as_ref(), key).await,
            None => Ok(empty_first_orders()?),
        }
    }

    async fn write(&self, bucket: usize, count: usize, rows: DataFrame) -> Result<(), GoldError> {
        let key =
            layout::aggregate_state_bucket_key("first_orders", &self.generation, bucket, count);
        self.store.put(&key, parquet_bytes(&rows)?).await?;
        self.next(bucket, (key, None));
        Ok(())
    }

    async fn write_delta(&self, bucket: usize, rows: DataFrame) -> Result<(), GoldError> {
        let base = self.previous_base(bucket)?;
        let count = self.count();
        let key = layout::aggregate_state_bucket_key(
            "first_orders_delta",
            &self.generation,
            bucket,
            count,
        );
        self.store.put(&key, parquet_bytes(&rows)?).await?;
        self.next(bucket, (base, Some(key)));
        Ok(())
    }

    async fn keep(&self, bucket: usize) -> Result<(), GoldError> {
        let base = self.previous_base(bucket)?;
        let delta = self.previous.deltas.get(bucket).cloned().flatten();
        self.next(bucket, (base, delta));
        Ok(())
    }
}

/// A state table the pointer names: gone is an error (the pointer was checked at load).
async fn read_named(store: &dyn ObjectStore, key: &str) -> Result<DataFrame, GoldError> {
    read_table(store, key).await?.ok_or_else(|| {
        GoldError::Storage(StorageError::NotFound {
            key: key.to_owned(),
        })
    })
}

/// Writes `kpi`'s tables (and the first-order buckets of a full recompute), then the pointer,
/// then removes every state table the pointer does not name. A crash leaves nothing the next
/// run does not clear.
pub async fn save_state(
    state: &LakeState,
    previous: Option<&RunState>,
    cursors: BTreeMap<String, SeenCursor>,
    first_orders: FirstOrdersOut,
    kpi: &KpiState,
    per_bucket: usize,
) -> Result<(), crate::stages::aggregate::AggregateError> {
    let store = state.store();
    let generation = generation(previous, &cursors);
    let first_orders_keys = match first_orders {
        FirstOrdersOut::Written(keys) => keys,
        FirstOrdersOut::Table(table) => {
            let buckets =
                StoreFirstOrders::new(store.clone(), BucketKeys::default(), generation.clone());
            buckets.write_all(&table, per_bucket).await?;
            buckets.keys()?
        }
    };
    let tombstones_key = layout::aggregate_state_table_key("tombstones", &generation);
    store
        .put(&tombstones_key, parquet_bytes(&kpi.tombstones)?)
        .await?;
    let run = RunState {
        version: STATE_VERSION,
        cursors,
        first_orders_key: first_orders_keys.bases.first().cloned(),
        first_orders_keys: first_orders_keys.bases,
        first_orders_deltas: first_orders_keys.deltas,
        tombstones_key,
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
        let named = run.tables().any(|k| *k == meta.key);
        if meta.key.ends_with(".parquet") && !named {
            store.delete(&meta.key).await?;
        }
    }
    Ok(())
}

/// Silver by day from any store: a local lake is read in place; otherwise the requested days'
/// partitions (or whole datasets, [`StoreSilver::mirror_all`]) are downloaded into `work_dir`
/// (files already there with the same size are kept, files no longer in the lake removed).
pub struct StoreSilver {
    store: Arc<dyn ObjectStore>,
    work_dir: PathBuf,
    /// Days already downloaded by this run: a run asks for the same days several times.
    prepared: std::sync::Mutex<BTreeSet<(String, NaiveDate)>>,
    /// Datasets downloaded whole ([`StoreSilver::mirror_all`]).
    mirrored: std::sync::Mutex<BTreeSet<String>>,
}

impl StoreSilver {
    pub fn new(store: Arc<dyn ObjectStore>, work_dir: PathBuf) -> Self {
        StoreSilver {
            store,
            work_dir,
            prepared: Default::default(),
            mirrored: Default::default(),
        }
    }

    /// Downloads every day of `contract` at once (one listing of the dataset, not one per day),
    /// for a run that reads all of them.
    pub async fn mirror_all(&self, contract: &Contract) -> Result<(), GoldError> {
        if self.store.local_root().is_some() {
            return Ok(());
        }
        let prefix = layout::processed_prefix(&contract.name);
        mirror_prefix(&self.store, &self.work_dir, &prefix).await?;
        self.mirrored
            .lock()
            .expect("not poisoned")
            .insert(contract.name.clone());
        Ok(())
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
    store: &Arc<dyn ObjectStore>,
    work_dir: &Path,
    prefix: &str,
) -> Result<(), GoldError> {
    let remote = store.list(prefix).await?;
    let wanted: BTreeSet<PathBuf> = remote.iter().map(|m| work_dir.join(&m.key)).collect();
    let missing = storage::fetches(
        remote
            .into_iter()
            .filter(|m| m.key.ends_with(".parquet"))
            .filter(|m| {
                !std::fs::metadata(work_dir.join(&m.key)).is_ok_and(|md| md.len() == m.size)
            }),
    );
    // Many at a time: a day's partitions are tens of small files, each a GET's round trip.
    let mut fetched = storage::get_many(store, missing);
    while let Some((key, bytes)) = fetched.try_next().await? {
        let path = work_dir.join(&key);
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
        if self
            .mirrored
            .lock()
            .expect("not poisoned")
            .contains(&contract.name)
        {
            return Ok(self.work_dir.clone());
        }
        for day in dates {
            let Some(prefix) = date_prefix(contract, *day) else {
                continue;
            };
            let done = (contract.name.clone(), *day);
            if self.prepared.lock().expect("not poisoned").contains(&done) {
                continue;
            }
            mirror_prefix(&self.store, &self.work_dir, &prefix).await?;
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

    fn first_orders(ids: &[&str]) -> DataFrame {
        let days: Vec<i32> = (0..ids.len() as i32).map(|i| 20_000 + i).collect();
        DataFrame::new(
            ids.len(),
            vec![
                Series::new("customer_id".into(), ids).into_column(),
                Int32Chunked::from_vec(crate::gold::kpis::FIRST_ORDER_DATE.into(), days)
                    .into_date()
                    .into_series()
                    .into_column(),
            ],
        )
        .unwrap()
    }

    /// Saves a night's buckets as the state after `run` and loads the pointer back.
    async fn saved(
        state: &LakeState,
        run: &RunState,
        cursors: &BTreeMap<String, SeenCursor>,
        keys: &BucketKeys,
        per_bucket: usize,
    ) -> RunState {
        let kpi = KpiState::empty().unwrap();
        let out = FirstOrdersOut::Written(keys.clone());
        save_state(state, Some(run), cursors.clone(), out, &kpi, per_bucket)
            .await
            .unwrap();
        load_state(state).await.unwrap().unwrap().0
    }

    #[tokio::test]
    async fn a_delta_is_named_by_the_pointer_kept_by_a_night_that_keeps_its_bucket_and_required() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let state = LakeState::new(store.clone());
        let kpi = KpiState::empty().unwrap();
        let mut cursors = BTreeMap::new();
        save_state(
            &state,
            None,
            cursors.clone(),
            FirstOrdersOut::Table(first_orders(&["C1", "C2", "C3", "C4"])),
            &kpi,
            2,
        )
        .await
        .unwrap();
        let (run, _) = load_state(&state).await.unwrap().unwrap();
        assert_eq!(run.first_orders_keys.len(), 2);
        assert!(run.first_orders_deltas.is_empty(), "a rebuild writes bases");

        // A night writes a delta for bucket 0 and keeps bucket 1.
        cursors.insert("orders".to_owned(), SeenCursor::default());
        let night = StoreFirstOrders::new(
            store.clone(),
            BucketKeys::of(&run),
            generation(Some(&run), &cursors),
        );
        night.write_delta(0, first_orders(&["C9"])).await.unwrap();
        night.keep(1).await.unwrap();
        let keys = night.keys().unwrap();
        assert_eq!(keys.bases, run.first_orders_keys, "bases kept");
        assert!(keys.deltas[0].is_some() && keys.deltas[1].is_none());
        let run = saved(&state, &run, &cursors, &keys, 2).await;
        assert_eq!(BucketKeys::of(&run), keys);

        // The next night keeps both buckets: the delta stays named, and is not pruned.
        cursors.insert("payments".to_owned(), SeenCursor::default());
        let night = StoreFirstOrders::new(
            store.clone(),
            BucketKeys::of(&run),
            generation(Some(&run), &cursors),
        );
        let delta = night.read_delta(0).await.unwrap();
        assert!(delta.equals(&first_orders(&["C9"])));
        assert_eq!(night.read_delta(1).await.unwrap().height(), 0);
        night.keep(0).await.unwrap();
        night.keep(1).await.unwrap();
        let run = saved(&state, &run, &cursors, &night.keys().unwrap(), 2).await;
        assert_eq!(BucketKeys::of(&run), keys);
        let delta_key = keys.deltas[0].clone().unwrap();
        assert!(store.head(&delta_key).await.unwrap().is_some());

        // A missing delta is no state: the next run rebuilds it in full.
        store.delete(&delta_key).await.unwrap();
        assert!(load_state(&state).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_version_1_state_is_read_as_one_bucket_and_its_table_pruned_once_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let state = LakeState::new(store.clone());
        let (v1_first, v1_tombs) = (
            layout::aggregate_state_table_key("first_orders", "v1"),
            layout::aggregate_state_table_key("tombstones", "v1"),
        );
        let table = first_orders(&["C1", "C2", "C3", "C4", "C5"]);
        store
            .put(&v1_first, parquet_bytes(&table).unwrap())
            .await
            .unwrap();
        let tombstones = incremental::empty_tombstones().unwrap();
        store
            .put(&v1_tombs, parquet_bytes(&tombstones).unwrap())
            .await
            .unwrap();
        let v1 = serde_json::json!({
            "version": 1, "cursors": {}, "first_orders_key": v1_first, "tombstones_key": v1_tombs
        });
        state
            .put_json(layout::AGGREGATE_STATE_KEY, &v1)
            .await
            .unwrap();

        let (run, _) = load_state(&state)
            .await
            .unwrap()
            .expect("a version 1 state loads");
        assert_eq!(run.first_orders_keys, vec![v1_first.clone()]);
        let cursors = BTreeMap::new();
        let buckets = StoreFirstOrders::new(
            store.clone(),
            BucketKeys::of(&run),
            generation(Some(&run), &cursors),
        );
        assert_eq!(buckets.count(), 1);
        let read = buckets.read(0).await.unwrap();
        assert!(read.equals(&table));
        // The night doubles the buckets: bucket 0 becomes 0 and 1.
        for (b, rows) in split_by_bucket(&read, 2).unwrap().into_iter().enumerate() {
            buckets.write(b, 2, rows).await.unwrap();
        }
        let keys = buckets.keys().unwrap();
        let run = saved(&state, &run, &cursors, &keys, 1).await;
        assert_eq!(BucketKeys::of(&run), keys);
        // For a rollback: a version 1 binary parses a pointer with this field.
        assert_eq!(run.first_orders_key.as_ref(), keys.bases.first());
        let left: Vec<String> = store
            .list(layout::AGGREGATE_STATE_PREFIX)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .filter(|k| k.ends_with(".parquet"))
            .collect();
        assert!(
            !left.contains(&v1_first) && !left.contains(&v1_tombs),
            "{left:?}"
        );
        assert_eq!(left.len(), 3, "two buckets and the tombstones: {left:?}");
        let mut rows = 0;
        let next = StoreFirstOrders::new(store.clone(), BucketKeys::of(&run), String::new());
        for b in 0..next.count() {
            rows += next.read(b).await.unwrap().height();
        }
        assert_eq!(rows, 5);
        // A missing bucket is no state: the next run rebuilds it in full.
        store.delete(&keys.bases[1]).await.unwrap();
        assert!(load_state(&state).await.unwrap().is_none());
    }

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
