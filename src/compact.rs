//! Compaction: a partition that accumulated many small silver files has its recent ones
//! ([`MAX_INPUT_AGE`]) rewritten into one file holding the latest version of each key among
//! them (latest-wins, the lake's read rule), lineage columns (`_ingested_at`, `_source_file`,
//! `_batch_id`) kept as they were. While the partition is still being updated, its large files
//! are left as they are and only the small ones merged ([`small_and_large`]): a night's rewriting
//! follows the night's updates, not the size of the days they touch. A large file is rewritten
//! with the rest once it is [`REFRESH_AGE`] old, and a settled partition whole, so that a
//! partition the updates have left ends as one file.
//!
//! Which partitions: those with at least `min_files` eligible files (a partition still taking
//! a file a night, inside the exports' update window), and those with two or more that have
//! just settled: their newest file is older than `settle` but by at most [`SETTLED_FOR`]
//! more. Without this, a partition the updates have left would keep its last few small files
//! for as long as silver keeps it, and every night's listing, marker checks and reads of it
//! would pay for them. Only just settled, and only files written within [`MAX_INPUT_AGE`]:
//! silver's lifecycle rule counts 365 days from when a file was written, so a rewrite gives
//! its inputs' rows the life of the output. A rewrite therefore extends no input's life by
//! more than that age, and never gives a second year to a partition that has long been quiet,
//! is about to expire or gains a few late files (those are compacted among themselves; an
//! upgraded lake has no backlog to catch up either).
//!
//! What it may touch: only files of batches the load stage is done with (their marker
//! `runs/loaded/<dataset>/<batch>` exists) and earlier compacted files, written within
//! [`MAX_INPUT_AGE`]. A batch not yet gated or loaded keeps its own files, so the loader
//! (which copies a batch's files, named in its manifest) and the quality gate never miss one. Re-checking an old batch whose files were
//! compacted fails with "does not exist": its rows live on in the compacted file.
//!
//! Crash safety: a record `runs/compact/<dataset>/<digest>.json` naming the inputs and the
//! output is written first; then the output (one atomic PUT, under a name derived from its
//! inputs); then the inputs are deleted; then the record. Between the output and the last
//! delete, readers see some rows twice *as identical rows* (same key, version and lineage), which
//! every reader's latest-wins rule (gold, the warehouse MERGE) collapses to one: they see every
//! row exactly once throughout. A run first finishes the records an earlier run left: output
//! present, the remaining inputs are deleted; output absent, the record is dropped (nothing was
//! visible) and the partition is compacted again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::contract::{Contract, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::offload;
use crate::scratch::Scratch;
use crate::silver::file_keys;
use crate::silver::latest::latest_rows;
use crate::state::{BatchCursor, LakeState, StateError};
use crate::storage::{self, Fetch, ObjectMeta, ObjectStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("no data contract for dataset `{0}`")]
    UnknownDataset(String),
    #[error(
        "compacting {partition}: {source}; the partition is left as it was (fix the files, or leave it uncompacted)"
    )]
    Parquet {
        partition: String,
        #[source]
        source: PolarsError,
    },
    #[error("compaction work directory: {0}")]
    WorkDir(#[source] std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Removing expired partitions from the catalog (run with compaction, nightly).
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// Merging the night's keys into a key index (run with compaction, nightly).
    #[error(transparent)]
    KeyIndex(#[from] crate::quality::key_index::KeyIndexError),
}

impl Retryable for CompactError {
    fn is_retryable(&self) -> bool {
        match self {
            CompactError::State(e) => e.is_retryable(),
            CompactError::Storage(e) => e.is_retryable(),
            CompactError::Catalog(e) => e.is_retryable(),
            CompactError::KeyIndex(e) => e.is_retryable(),
            CompactError::WorkDir(_) => true,
            CompactError::UnknownDataset(_) | CompactError::Parquet { .. } => false,
        }
    }
}

/// What a compaction started: written before its output, removed once its inputs are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRecord {
    pub dataset: String,
    pub partition: String,
    pub output: String,
    pub inputs: Vec<String>,
    /// The inputs' key lists ([`file_keys`], named by each input's size when it was taken), so
    /// that finishing deletes them by name. Absent from records written before key lists were
    /// named here: then the partition's lists are listed to find them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_lists: Option<Vec<String>>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Partitions rewritten into one file.
    pub partitions: usize,
    pub files_in: usize,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Records of interrupted runs that this run finished or dropped.
    pub resumed: usize,
}

/// What the compaction keeps per dataset (`runs/compacted/<dataset>/_cursor.json`) so that a
/// night lists the partitions that may hold files young enough to take, not all of silver:
/// those of the directories it kept, and those the batches listed since its last run wrote to.
/// A directory is kept while its newest file is within the look-back (the input age, or the
/// settle rule's when longer); a file is written either by a batch, whose manifest the cursor
/// lists (from [`crate::state::WATERMARK_LAG`] behind its watermark, like the load stage), or by a
/// compaction of a directory listed then. Without a cursor (the first run) every file is listed
/// once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactCursor {
    /// The manifests listed so far (only the watermark is used).
    pub batches: BatchCursor,
    /// Batches whose manifests were read (or listed with their files on a first run), within
    /// the listing's reach, and the ETag read: a manifest listed again within the lag is not
    /// read again unless it was rewritten (a forced re-ingest keeps its batch id and may write
    /// to other directories).
    pub seen: BTreeMap<String, String>,
    /// Listing directories ([`listing_dir`]) and when their newest file was written.
    pub dirs: BTreeMap<String, DateTime<Utc>>,
    /// The look-back the directories were kept for, in seconds.
    pub look_back_secs: i64,
    /// The `now` the directories were kept at. A run at an earlier `now` (a clock set back, or
    /// the run after one whose clock was ahead) lists everything: a directory dropped as too
    /// old then may not be too old now.
    pub as_of: Option<DateTime<Utc>>,
}

impl CompactCursor {
    /// Forgets the batches the next listing starts after (it will not list them again).
    fn forget_unlisted(&mut self, dataset: &str) {
        let start = self.batches.start_after(dataset);
        self.seen
            .retain(|batch, _| layout::manifest_key(dataset, batch) > start);
    }
}

/// The directory a night lists for a silver file, or for a partition directory given with its
/// trailing `/`: its first partition level (every region of
/// `processed/orders/order_date=2026-11-04/` in one listing), or the dataset's own directory
/// when the file lies directly in it.
fn listing_dir(dataset: &str, key: &str) -> String {
    let root = layout::processed_prefix(dataset);
    match key
        .strip_prefix(&root)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((first, _)) => format!("{root}{first}/"),
        None => root,
    }
}

/// How long a claim on the compaction of a dataset lasts.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(16 * 60);

/// The file name prefix of compacted files (`part-compacted-<digest>.parquet`).
const COMPACTED: &str = "part-compacted-";

#[derive(Debug, Clone)]
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    state: LakeState,
    registry: Arc<Registry>,
    /// Partitions with fewer eligible files than this are left alone unless settled.
    pub min_files: usize,
    /// A partition whose newest file is older than this (by at most [`SETTLED_FOR`] more) has
    /// just settled: two eligible files are enough to compact it.
    pub settle: chrono::TimeDelta,
}

/// The default of [`Compactor::settle`]: two nights without a new file (the exports arrive
/// nightly, so a partition still being updated has one from last night).
pub const SETTLE_HOURS: u32 = 48;

/// How long after settling a partition is still compacted by the settle rule: a week of
/// nightly runs, so a few failed nights do not leave it as it was.
pub const SETTLED_FOR: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The oldest file a rewrite takes: silver's lifecycle rule counts from when a file was
/// written, so rewriting a file gives its rows the life of the output. A partition still being
/// updated is rewritten every few nights (its inputs are days old); an old partition that gains
/// late files (a backfill into a quiet month) has only those compacted, among themselves, and
/// its old files keep their own expiry instead of another year.
pub const MAX_INPUT_AGE: chrono::TimeDelta = chrono::TimeDelta::days(31);

impl Compactor {
    pub fn new(store: Arc<dyn ObjectStore>, registry: Arc<Registry>) -> Self {
        Compactor {
            state: LakeState::new(store.clone()),
            store,
            registry,
            min_files: 8,
            settle: chrono::TimeDelta::hours(i64::from(SETTLE_HOURS)),
        }
    }

    pub fn with_settle_hours(mut self, hours: u32) -> Self {
        self.settle = chrono::TimeDelta::hours(i64::from(hours.max(1)));
        self
    }

    pub fn with_min_files(mut self, min_files: usize) -> Self {
        self.min_files = min_files.max(2);
        self
    }

    /// Compacts every partition of `dataset` with at least `min_files` eligible files, or two
    /// and just settled at `now`; one run per dataset at a time.
    pub async fn compact(
        &self,
        dataset: &str,
        now: DateTime<Utc>,
    ) -> Result<CompactionReport, CompactError> {
        let contract = self
            .registry
            .get(dataset)
            .ok_or_else(|| CompactError::UnknownDataset(dataset.to_owned()))?;
        self.state
            .with_claim(
                &layout::stage_claim_key(&format!("compact-{dataset}")),
                CLAIM_TTL,
                CLAIM_TTL,
                async || self.compact_claimed(contract, now).await,
            )
            .await
    }

    async fn compact_claimed(
        &self,
        contract: &Contract,
        now: DateTime<Utc>,
    ) -> Result<CompactionReport, CompactError> {
        let dataset = contract.name.as_str();
        let mut report = CompactionReport::default();
        for meta in self
            .store
            .list(&layout::compaction_record_prefix(dataset))
            .await?
        {
            if let Some(record) = self.state.get_json::<CompactionRecord>(&meta.key).await? {
                self.resume(&meta.key, &record).await?;
                report.resumed += 1;
            }
        }
        // Per partition: the files young enough to rewrite ([`MAX_INPUT_AGE`], or as long as
        // the settle rule looks back when that is longer) and when its newest was written.
        let max_age = MAX_INPUT_AGE.max(self.settle + SETTLED_FOR);
        let cursor_key = layout::compact_cursor_key(dataset);
        let stored: Option<CompactCursor> = self.state.get_json(&cursor_key).await?;
        // A longer look-back than the cursor kept directories for (a longer settle period)
        // lists everything once, like a first run.
        let fresh = stored.as_ref().is_none_or(|c| {
            c.look_back_secs < max_age.num_seconds() || c.as_of.is_none_or(|at| now < at)
        });
        let mut cursor = stored.unwrap_or_default();
        let listed = self.candidate_files(dataset, &mut cursor, fresh).await?;
        let mut partitions: BTreeMap<String, (Vec<Fetch>, DateTime<Utc>)> = BTreeMap::new();
        // When each file young enough to take was written.
        let mut written: HashMap<String, DateTime<Utc>> = HashMap::new();
        for meta in listed {
            if let Some((dir, _)) = meta.key.rsplit_once('/')
                && meta.key.ends_with(".parquet")
            {
                let (files, newest) = partitions
                    .entry(dir.to_owned())
                    .or_insert_with(|| (Vec::new(), meta.last_modified));
                *newest = (*newest).max(meta.last_modified);
                if now - meta.last_modified <= max_age {
                    written.insert(meta.key.clone(), meta.last_modified);
                    files.push((meta.key, meta.size));
                }
            }
        }
        // What the next night lists besides the new batches' directories: those still holding
        // a file it may take (a partition compacted below gets its output's time).
        let mut keep: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for (dir, (_, newest)) in &partitions {
            let at = keep
                .entry(listing_dir(dataset, &format!("{dir}/")))
                .or_insert(*newest);
            *at = (*at).max(*newest);
        }
        // The partitions with enough files to be worth a look, whatever their markers say.
        let settled = |newest: DateTime<Utc>| {
            let quiet = now - newest;
            quiet > self.settle && quiet <= self.settle + SETTLED_FOR
        };
        let worth = |files: usize, newest: DateTime<Utc>| {
            files >= 2 && (files >= self.min_files || settled(newest))
        };
        partitions.retain(|_, (files, newest)| worth(files.len(), *newest));
        // Their batches' loaded markers, read up to `AT_ONCE` at a time: one after another,
        // each is a round trip on S3, and a night's partitions hold a month of batches.
        let batches: BTreeSet<String> = partitions
            .values()
            .flat_map(|(files, _)| files.iter().filter_map(|(key, _)| batch_of(key)))
            .map(str::to_owned)
            .collect();
        let loaded: HashMap<String, bool> = stream::iter(batches)
            .map(|batch| {
                let (state, dataset) = (self.state.clone(), dataset.to_owned());
                async move {
                    let ok = state
                        .exists(&layout::loaded_marker_key(&dataset, &batch))
                        .await?;
                    Ok::<_, StateError>((batch, ok))
                }
            })
            .buffer_unordered(storage::AT_ONCE)
            .try_collect()
            .await?;
        let todo: Vec<(String, Vec<Fetch>)> = partitions
            .into_iter()
            .filter_map(|(dir, (files, newest))| {
                let eligible: Vec<Fetch> = files
                    .into_iter()
                    .filter(|(key, _)| {
                        layout::file_name(key).starts_with(COMPACTED)
                            || batch_of(key)
                                .is_some_and(|b| loaded.get(b).copied().unwrap_or(false))
                    })
                    .collect();
                if !worth(eligible.len(), newest) {
                    return None;
                }
                // A partition still being updated has only its small files rewritten, until
                // one of its large files is half as old as a rewrite may take: then it is
                // rewritten whole, so that its rows are young enough for the rewrite it gets
                // when it settles (whole, once), which then leaves one file whose rows all
                // expire together.
                let (small, large) = small_and_large(&eligible);
                let large_aging = large
                    .iter()
                    .any(|(key, _)| written.get(key).is_some_and(|at| now - *at > REFRESH_AGE));
                let inputs = if settled(newest) || large_aging {
                    eligible
                } else {
                    small
                };
                (inputs.len() >= 2).then_some((dir, inputs))
            })
            .collect();
        // A few partitions at a time: each is a chain of round trips (its inputs, the record,
        // the output, the deletes) and a rewrite on a thread of its own, and a night's update
        // window holds tens of them. A partition that fails stops the run; those in flight
        // stop where they are, which their records make good on the next run as after a crash.
        // Their rows are in memory while they are rewritten: fewer at once when they are large.
        let sizes: Vec<((), u64)> = todo
            .iter()
            .map(|(_, files)| ((), files.iter().map(|(_, size)| size).sum()))
            .collect();
        let at_once = storage::at_once_within(&sizes, IN_FLIGHT_BYTES, PARTITIONS_AT_ONCE);
        let done: Vec<(String, usize, u64, u64)> = stream::iter(todo)
            .map(|(dir, eligible)| async move {
                let partition = dir
                    .strip_prefix(&layout::processed_prefix(dataset))
                    .unwrap_or(&dir)
                    .to_owned();
                let (rows_in, rows_out) = self
                    .compact_partition(contract, &partition, &eligible)
                    .await?;
                Ok::<_, CompactError>((dir, eligible.len(), rows_in, rows_out))
            })
            .buffer_unordered(at_once)
            .try_collect()
            .await?;
        for (dir, files_in, rows_in, rows_out) in done {
            report.partitions += 1;
            report.files_in += files_in;
            report.rows_in += rows_in;
            report.rows_out += rows_out;
            // Its output was written just now.
            if let Some(at) = keep.get_mut(&listing_dir(dataset, &format!("{dir}/"))) {
                *at = (*at).max(now);
            }
        }
        // Written last: a run that stops earlier leaves the old cursor, and the next one lists
        // what this one did.
        cursor.dirs = keep
            .into_iter()
            .filter(|(_, newest)| now - *newest <= max_age)
            .collect();
        cursor.look_back_secs = max_age.num_seconds();
        cursor.as_of = Some(now);
        cursor.forget_unlisted(dataset);
        self.state.put_json(&cursor_key, &cursor).await?;
        info!(
            dataset,
            partitions = report.partitions,
            files_in = report.files_in,
            rows_in = report.rows_in,
            rows_out = report.rows_out,
            resumed = report.resumed,
            "compaction done"
        );
        Ok(report)
    }

    /// The silver files a night looks at. With a cursor: every file of the directories it
    /// kept and of those the batches listed since wrote to (their manifests name the files),
    /// listed a directory at a time. Without one (`fresh`: the first run, or a longer
    /// look-back): every file of the dataset, once.
    async fn candidate_files(
        &self,
        dataset: &str,
        cursor: &mut CompactCursor,
        fresh: bool,
    ) -> Result<Vec<ObjectMeta>, CompactError> {
        let listing = cursor.batches.list(self.store.as_ref(), dataset).await?;
        if fresh {
            // Their files are all in the listing below.
            cursor.seen = listing.listed;
            return Ok(self.store.list(&layout::processed_prefix(dataset)).await?);
        }
        let new: Vec<String> = listing
            .listed
            .iter()
            .filter(|(batch, etag)| cursor.seen.get(*batch) != Some(*etag))
            .map(|(batch, _)| batch.clone())
            .collect();
        // Owned in each request, so the stream is `Send` for any lifetime (the stage's future
        // must be).
        let manifests: Vec<_> = stream::iter(new.clone())
            .map(|batch| {
                let (state, dataset) = (self.state.clone(), dataset.to_owned());
                async move { state.manifest(&dataset, &batch).await }
            })
            .buffered(storage::AT_ONCE)
            .try_collect()
            .await?;
        let mut dirs: BTreeSet<String> = cursor.dirs.keys().cloned().collect();
        for manifest in manifests.into_iter().flatten() {
            dirs.extend(manifest.files.iter().map(|f| listing_dir(dataset, &f.key)));
        }
        for batch in new {
            let etag = listing.listed[&batch].clone();
            cursor.seen.insert(batch, etag);
        }
        Ok(storage::list_many(&self.store, dirs.into_iter().collect()).await?)
    }

    /// Finishes or drops the compaction an earlier run's record describes, which that run did
    /// not get to the end of.
    async fn resume(
        &self,
        record_key: &str,
        record: &CompactionRecord,
    ) -> Result<(), CompactError> {
        if self.store.head(&record.output).await?.is_some() {
            self.complete(record_key, record).await?;
            info!(partition = %record.partition, "finished an interrupted compaction");
        } else {
            warn!(partition = %record.partition, "dropped an interrupted compaction that wrote nothing");
            self.state.delete(record_key).await?;
        }
        Ok(())
    }

    /// The end of a compaction whose output is in place: its inputs deleted, then their key
    /// lists ([`file_keys`]; a list whose file is gone is never read, so a run killed between
    /// the two leaves nothing wrong), then its record. The lists are deleted by the names the
    /// record gives (a record older than those names: found by listing the partition's lists).
    async fn complete(
        &self,
        record_key: &str,
        record: &CompactionRecord,
    ) -> Result<(), CompactError> {
        let inputs: Vec<String> = record
            .inputs
            .iter()
            .filter(|k| **k != record.output)
            .cloned()
            .collect();
        storage::delete_many(&self.store, inputs.clone()).await?;
        if let Some(lists) = &record.input_lists {
            storage::delete_many(&self.store, lists.clone()).await?;
        } else if file_keys::is_kept(&self.registry, &record.dataset) {
            let prefix = file_keys::list_prefix(&format!(
                "{}{}/",
                layout::processed_prefix(&record.dataset),
                record.partition
            ));
            if let Some(prefix) = prefix {
                let lists = self
                    .store
                    .list(&prefix)
                    .await?
                    .into_iter()
                    .map(|m| m.key)
                    .filter(|list| inputs.iter().any(|k| file_keys::is_list_of(list, k)))
                    .collect();
                storage::delete_many(&self.store, lists).await?;
            }
        }
        self.state.delete(record_key).await?;
        Ok(())
    }

    async fn compact_partition(
        &self,
        contract: &Contract,
        partition: &str,
        inputs: &[Fetch],
    ) -> Result<(u64, u64), CompactError> {
        let dataset = contract.name.as_str();
        if inputs.is_empty() {
            return Ok((0, 0));
        }
        // Fetched many at a time: on S3 a partition's inputs are tens of small files, each a
        // round trip.
        let fetched: Vec<Bytes> = storage::get_many(&self.store, inputs.to_vec())
            .map_ok(|(_, bytes)| bytes)
            .try_collect()
            .await?;
        let work = Scratch::create_in(&std::env::temp_dir(), "shoplake-compact-")
            .map_err(CompactError::WorkDir)?;
        let path = work.path().join("compacted.parquet");
        let listed = file_keys::is_kept(&self.registry, dataset);
        let job = {
            let (contract, partition, path) =
                (contract.clone(), partition.to_owned(), path.clone());
            move || rewrite(&contract, &partition, fetched, &path, listed)
        };
        let (rows_in, rows_out, list) =
            offload::on_own_thread(job)
                .await
                .ok_or_else(|| CompactError::Parquet {
                    partition: partition.to_owned(),
                    source: PolarsError::ComputeError("the rewrite stopped unexpectedly".into()),
                })??;

        let mut digest = Sha256::new();
        for (key, _) in inputs {
            digest.update(key.as_bytes());
            digest.update(b"\n");
        }
        let hex: String = digest
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let output = layout::compacted_silver_key(dataset, partition, &hex);
        let record_key = layout::compaction_record_key(dataset, &hex);
        let record = CompactionRecord {
            dataset: dataset.to_owned(),
            partition: partition.to_owned(),
            output: output.clone(),
            inputs: inputs.iter().map(|(key, _)| key.clone()).collect(),
            input_lists: Some(
                inputs
                    .iter()
                    .filter(|_| listed)
                    .filter(|(key, _)| *key != output)
                    .filter_map(|(key, size)| file_keys::list_key(key, *size))
                    .collect(),
            ),
        };
        // The record before the output: a run killed after the output's PUT is finished by the
        // next one, which the record tells what to delete.
        self.state.put_json(&record_key, &record).await?;
        // The key list before the file it lists ([`file_keys`]).
        if let Some(list) = list {
            let size = std::fs::metadata(&path)
                .map_err(CompactError::WorkDir)?
                .len();
            if let Some(list_key) = file_keys::list_key(&output, size) {
                self.store.put(&list_key, list.into()).await?;
            }
        }
        self.store.put_file_moving(&output, &path).await?;
        drop(work);
        self.complete(&record_key, &record).await?;
        info!(
            dataset,
            partition,
            files = inputs.len(),
            rows_in,
            rows_out,
            "partition compacted"
        );
        Ok((rows_in, rows_out))
    }
}

/// Partitions [`Compactor`] rewrites at once, at most. Each holds its rows in memory while it
/// is rewritten, so fewer go at once when they are large ([`IN_FLIGHT_BYTES`]).
pub const PARTITIONS_AT_ONCE: usize = 4;

/// The most input (Parquet bytes) the partitions being rewritten at once may hold together, by
/// the night's largest ([`storage::at_once_within`], as `get_many` bounds its fetches); a
/// partition larger than this is rewritten alone. A partition that is not partitioned by date
/// (customers, by region) holds every key its dataset ever had, and its partitions take a
/// file each night alike, so they are rewritten whole on the same nights: four of them at once
/// would hold four times what one did.
pub const IN_FLIGHT_BYTES: u64 = 16 << 20;

/// One partition's files (`inputs`, Parquet bytes) rewritten into one latest-wins file at
/// `path`: how many rows went in and how many came out, and the file's key list when `listed`
/// ([`file_keys`]).
fn rewrite(
    contract: &Contract,
    partition: &str,
    inputs: Vec<Bytes>,
    path: &std::path::Path,
    listed: bool,
) -> Result<Rewritten, CompactError> {
    let parquet = |source| CompactError::Parquet {
        partition: partition.to_owned(),
        source,
    };
    let mut all: Option<DataFrame> = None;
    for bytes in inputs {
        let df = ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(parquet)?;
        match &mut all {
            None => all = Some(df),
            Some(acc) => {
                acc.vstack_mut(&df).map_err(parquet)?;
            }
        }
    }
    let Some(all) = all else {
        // No inputs: nothing written (the caller does not get here).
        return Ok((0, 0, None));
    };
    let rows_in = all.height() as u64;
    // The latest versions are picked across the inputs' chunks; only what is kept is made one
    // chunk for the writer, not every input row first.
    let winners = latest_rows(&all, contract).map_err(parquet)?;
    let mut out = all.filter(&winners).map_err(parquet)?;
    drop(all);
    out.rechunk_mut();
    let rows_out = out.height() as u64;
    let file = std::fs::File::create(path).map_err(CompactError::WorkDir)?;
    ParquetWriter::new(std::io::BufWriter::new(file))
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::default())
        .finish(&mut out)
        .map_err(parquet)?;
    let list = listed
        .then(|| file_keys::encode(&out, contract))
        .transpose()
        .map_err(parquet)?;
    Ok((rows_in, rows_out, list))
}

/// What [`rewrite`] did: rows in, rows out, and the output's key list if it keeps one.
type Rewritten = (u64, u64, Option<Vec<u8>>);

/// The files of a partition still being updated that a rewrite takes, and the large ones it
/// leaves: a file is large when it is larger than all the smaller ones together (in bytes). A
/// partition holds a day's export, large, and then a small file a night from the updates; a
/// rewrite of every file would copy the whole day each time the updates reach `min_files`,
/// every few nights for each day of the update window, so a night's work would grow with the
/// window's data rather than the night's. As Delta's `OPTIMIZE` and Iceberg's bin-packing
/// rewrite only files under a target size, this leaves the large ones as they are: the night's
/// small files are merged among themselves, and a partition keeps a few files of sizes at least
/// doubling (one more each time the merged small files outgrow the rest). Readers' latest-wins
/// rule already reads across a partition's files; the versions a large file holds that later
/// files replace stay in it until the partition is rewritten whole: when that file reaches
/// [`REFRESH_AGE`], and once the partition settles ([`Compactor::settle`]).
fn small_and_large(files: &[Fetch]) -> (Vec<Fetch>, Vec<Fetch>) {
    let mut by_size: Vec<u64> = files.iter().map(|(_, size)| *size).collect();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    // The smallest size still large: files of this size and more are left out.
    let mut rest: u64 = by_size.iter().sum();
    let mut large_from = None;
    for size in by_size {
        rest -= size;
        if size <= rest {
            break;
        }
        large_from = Some(size);
    }
    let large = large_from.unwrap_or(u64::MAX);
    files.iter().cloned().partition(|(_, size)| *size < large)
}

/// The age at which a large file of a partition still being updated is rewritten with the
/// rest ([`small_and_large`]): half of [`MAX_INPUT_AGE`]. A partition's merges come every
/// `min_files` nights or so, so its large file is rewritten at most a week or so after this age
/// and is still young enough to take when the partition settles two nights after its last
/// update.
pub const REFRESH_AGE: chrono::TimeDelta =
    chrono::TimeDelta::seconds(MAX_INPUT_AGE.num_seconds() / 2);

/// The batch that wrote a silver file (`part-<batch>.parquet`); `None` for a compacted file or
/// anything else.
fn batch_of(key: &str) -> Option<&str> {
    layout::file_name(key)
        .strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
}

#[cfg(test)]
mod tests {
    use super::{IN_FLIGHT_BYTES, PARTITIONS_AT_ONCE, listing_dir, small_and_large};
    use crate::storage::at_once_within;

    #[test]
    fn partitions_in_flight_hold_at_most_the_budget_and_a_larger_one_goes_alone() {
        let mib = |n: u64| ((), n << 20);
        // Small partitions (a night's update window): as many as allowed.
        assert_eq!(
            at_once_within(&[mib(1), mib(2)], IN_FLIGHT_BYTES, PARTITIONS_AT_ONCE),
            PARTITIONS_AT_ONCE
        );
        // Larger ones (a customers region): fewer, within the budget together.
        let n = at_once_within(&[mib(1), mib(7)], IN_FLIGHT_BYTES, PARTITIONS_AT_ONCE);
        assert_eq!(n, 2);
        assert!(n as u64 * (7 << 20) <= IN_FLIGHT_BYTES);
        // One larger than the budget: alone.
        assert_eq!(
            at_once_within(&[mib(1), mib(40)], IN_FLIGHT_BYTES, PARTITIONS_AT_ONCE),
            1
        );
    }

    fn sizes(files: &[u64]) -> Vec<u64> {
        let fetches: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, size)| (format!("f{i}"), *size))
            .collect();
        small_and_large(&fetches)
            .0
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    #[test]
    fn a_file_larger_than_the_smaller_ones_together_is_left_out_and_so_on_down() {
        // A day's export and a night's update each.
        assert_eq!(sizes(&[900, 5, 6, 5, 7]), [5, 6, 5, 7]);
        // Sizes at least doubling stay; the small ones below them are merged.
        assert_eq!(sizes(&[3, 100, 40, 2, 20, 3, 9]), [3, 2, 3]);
        // Nothing larger than the rest together: all of them (in the order given).
        assert_eq!(sizes(&[10, 10, 1]), [10, 10, 1]);
        assert_eq!(sizes(&[4, 10, 6]), [4, 10, 6]);
        // The rest just as large: not left out.
        assert_eq!(sizes(&[10, 5, 5]), [10, 5, 5]);
        assert_eq!(sizes(&[10, 4, 4]), [4, 4]);
        // Only large files (sizes at least doubling): nothing to merge.
        assert_eq!(sizes(&[8, 3, 1]), Vec::<u64>::new());
        assert_eq!(sizes(&[]), Vec::<u64>::new());
    }

    #[test]
    fn a_file_or_a_partition_directory_is_listed_by_its_first_partition_level() {
        let orders = "processed/orders/order_date=2026-11-04/";
        for key in [
            "processed/orders/order_date=2026-11-04/customer_region=EU/part-b.parquet",
            "processed/orders/order_date=2026-11-04/customer_region=EU/",
            "processed/orders/order_date=2026-11-04/part-b.parquet",
            "processed/orders/order_date=2026-11-04/",
        ] {
            assert_eq!(listing_dir("orders", key), orders, "{key}");
        }
        assert_eq!(
            listing_dir("orders", "processed/orders/part-b.parquet"),
            "processed/orders/"
        );
    }
}
