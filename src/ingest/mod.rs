//! Ingest: one bronze object (`raw/<dataset>/…`) becomes silver Parquet, a quarantine file and a
//! manifest. Used unchanged by the `ingest` Lambda (S3) and `lake ingest` (a local directory).
//!
//! Idempotency: outputs are named from the batch id (derived from the object's URI and ETag), and
//! the manifest is written last. A redelivered event finds the manifest and replays it; a retry
//! after a crash rewrites the same names and deletes whatever the crashed attempt left behind.

mod dedup;
mod input;
mod parallel;
mod process;
mod quarantine;
pub mod row_validator;
mod writer;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Retryable;
use tokio_util::io::SyncIoBridge;
use tracing::{info, warn};

pub use dedup::latest_wins;
pub use input::{InputLimits, OwnedRecord, RawRecord, RecordReader};
pub use process::{
    FileJob, FileOutcome, ProcessError, ProcessedFile, RejectedFile, plan_buckets, process_file,
};
pub use quarantine::{LINE_COLUMN, REASON_COLUMN};

use crate::contract::{Contract, Registry};
use crate::layout;
use crate::manifest::SchemaDrift;
use crate::manifest::{BatchStatus, MANIFEST_VERSION, Manifest, PendingOutputs, SourceObject};
use crate::scratch::Scratch;
use crate::silver::file_keys;
use crate::silver::read::ReadError;
use crate::state::{LakeState, StateError};
use crate::storage::{self, ObjectMeta, ObjectStore, StorageError};
use crate::values;

/// How long an ingest's claim on its batch lasts: longer than a Lambda may run, so only a dead
/// owner's claim ever expires.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(16 * 60);

/// The batch an ingest works on.
struct Batch<'a> {
    key: &'a str,
    dataset: &'a str,
    contract: &'a crate::contract::Contract,
    uri: String,
    meta: ObjectMeta,
    batch_id: String,
}

/// The source of a batch, as processing needs it.
struct Source<'a> {
    key: &'a str,
    contract: &'a crate::contract::Contract,
    uri: &'a str,
    size: u64,
    batch_id: &'a str,
    ingested_at_micros: i64,
}

/// Ingest's scratch directories in the work directory (spill, staged Parquet).
const WORK_PREFIX: &str = "shoplake-ingest-";

/// Default memory budget per file when none is configured.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Upper bound for rows held in memory per file; larger files spill to `work_dir`.
    pub memory_budget_bytes: usize,
    /// Where spill and staged files go (`/tmp` in Lambda); the system temp dir when `None`.
    pub work_dir: Option<PathBuf>,
    /// Re-process a source even when its manifest says it is done.
    pub force: bool,
    /// What a hostile file may cost before it is rejected whole.
    pub limits: InputLimits,
    /// Told how much of each source has been read (`lake ingest`'s progress bar).
    pub progress: Option<ReadProgress>,
}

/// Called as a source is read with the bytes read so far and the source's stored size.
#[derive(Clone)]
pub struct ReadProgress(pub std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>);

impl std::fmt::Debug for ReadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadProgress")
    }
}

/// A source that reports its progress as it is read.
struct Reporting<R> {
    inner: R,
    read: u64,
    size: u64,
    progress: ReadProgress,
}

impl<R: std::io::Read> std::io::Read for Reporting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.progress.0)(self.read, self.size);
        Ok(n)
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            work_dir: None,
            force: false,
            limits: InputLimits::default(),
            progress: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "{key}: not a bronze key; sources must be under raw/<dataset>/ (known datasets: {known})"
    )]
    UnknownPrefix { key: String, known: String },
    #[error(
        "{key}: no data contract for dataset `{dataset}` (known datasets: {known}); add contracts/{dataset}.toml or fix the upload path"
    )]
    UnknownDataset {
        key: String,
        dataset: String,
        known: String,
    },
    #[error(
        "source object {uri} does not exist (was it deleted or renamed after the event was sent?)"
    )]
    SourceMissing { uri: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading back a silver file just written (for its key list).
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("processing {uri}: {source}")]
    Process {
        uri: String,
        #[source]
        source: ProcessError,
    },
    #[error("work directory: {0}")]
    WorkDir(#[source] std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    KeyIndex(#[from] crate::quality::key_index::KeyIndexError),
    #[error("ingest of {uri} stopped unexpectedly: {message}")]
    Task { uri: String, message: String },
    #[error(
        "internal error, nothing was committed for {uri}: rows_read {read} != written {written} + rejected {rejected} + duplicates {duplicates}"
    )]
    Accounting {
        uri: String,
        read: u64,
        written: u64,
        rejected: u64,
        duplicates: u64,
    },
}

impl Retryable for IngestError {
    /// Whether another attempt can succeed (transient infrastructure trouble), as opposed to a
    /// problem with the input or the configuration that a retry would only repeat.
    fn is_retryable(&self) -> bool {
        match self {
            IngestError::Storage(e) => e.is_retryable(),
            IngestError::State(e) => e.is_retryable(),
            IngestError::KeyIndex(e) => e.is_retryable(),
            IngestError::Read(e) => e.is_retryable(),
            IngestError::Process { source, .. } => !matches!(source, ProcessError::Parquet(_)),
            IngestError::WorkDir(_) | IngestError::Task { .. } => true,
            IngestError::UnknownPrefix { .. }
            | IngestError::UnknownDataset { .. }
            | IngestError::SourceMissing { .. }
            | IngestError::Accounting { .. } => false,
        }
    }
}

/// The result of ingesting one object.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub manifest: Manifest,
    /// The object had been ingested before; nothing was written this time.
    pub replayed: bool,
}

/// Ingests bronze objects of one store.
#[derive(Debug, Clone)]
pub struct Ingestor {
    store: Arc<dyn ObjectStore>,
    state: LakeState,
    registry: Arc<Registry>,
    settings: IngestSettings,
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        registry: Arc<Registry>,
        settings: IngestSettings,
    ) -> Self {
        Ingestor {
            state: LakeState::new(store.clone()),
            store,
            registry,
            settings,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn known(&self) -> String {
        self.registry.known()
    }

    /// Ingests the bronze object at `key`.
    #[tracing::instrument(skip(self), fields(dataset, batch_id))]
    pub async fn ingest(&self, key: &str) -> Result<IngestOutcome, IngestError> {
        let dataset =
            layout::dataset_of_raw_key(key).ok_or_else(|| IngestError::UnknownPrefix {
                key: key.to_owned(),
                known: self.known(),
            })?;
        let contract = self
            .registry
            .get(dataset)
            .ok_or_else(|| IngestError::UnknownDataset {
                key: key.to_owned(),
                dataset: dataset.to_owned(),
                known: self.known(),
            })?;
        let uri = self.store.uri(key);
        let meta = self
            .store
            .head(key)
            .await?
            .ok_or_else(|| IngestError::SourceMissing { uri: uri.clone() })?;
        let batch_id = layout::batch_id(&uri, &meta);
        tracing::Span::current()
            .record("dataset", dataset)
            .record("batch_id", batch_id.as_str());

        let manifest_key = layout::manifest_key(dataset, &batch_id);
        if !self.settings.force
            && let Some(manifest) = self.state.get_json::<Manifest>(&manifest_key).await?
            // A pending record beside a manifest: a commit stopped after its commit point.
            && !self
                .state
                .exists(&layout::pending_key(dataset, &batch_id))
                .await?
        {
            // Claims of crashed ingests are swept whenever one claims; a redelivery claims
            // nothing, so it sweeps here.
            self.state
                .sweep_claims(&format!("{}/ingest/", layout::CLAIMS))
                .await?;
            info!(status = ?manifest.status, "source already ingested; replaying its manifest");
            return Ok(IngestOutcome {
                manifest,
                replayed: true,
            });
        }
        // One ingest of a batch at a time: a second delivery of the same object waits here,
        // then finds the manifest and replays it.
        let claim = layout::ingest_claim_key(dataset, &batch_id);
        let batch = Batch {
            key,
            dataset,
            contract,
            uri,
            meta,
            batch_id,
        };
        self.state
            .with_claim(&claim, CLAIM_TTL, CLAIM_TTL, async || {
                self.ingest_claimed(batch).await
            })
            .await
    }

    /// The ingest of one batch, under its claim.
    async fn ingest_claimed(&self, batch: Batch<'_>) -> Result<IngestOutcome, IngestError> {
        let Batch {
            key,
            dataset,
            contract,
            uri,
            meta,
            batch_id,
        } = batch;
        let manifest_key = layout::manifest_key(dataset, &batch_id);
        let pending_key = layout::pending_key(dataset, &batch_id);
        let previous: Option<Manifest> = self.state.get_json(&manifest_key).await?;
        let pending: Option<PendingRecord> = self.state.get_json(&pending_key).await?;
        // A pending record beside a manifest other than the one it commits: a forced rewrite
        // died before its commit point, with some of the old files already replaced or gone.
        // Replaying the old manifest would point at them; the batch is processed again.
        // So is one beside the very manifest its commit would write when that manifest was
        // already there as it began: seeing it there says nothing about how far it got (a
        // forced rewrite back to an earlier contract, after one that died having deleted the
        // files that manifest names).
        let rewrite_cut_short = match (&previous, &pending) {
            (Some(m), Some(p)) => p.cut_short_beside(&manifest_digest(m)),
            _ => false,
        };
        if let Some(manifest) = previous
            .as_ref()
            .filter(|_| !self.settings.force && !rewrite_cut_short)
        {
            if let Some(pending) = pending {
                // The manifest is the commit point: finish what came after it (the names'
                // key lists went before it).
                let kept: BTreeSet<String> = output_keys(manifest).collect();
                for key in pending.outputs.keys.iter().filter(|k| !kept.contains(*k)) {
                    self.store.delete(key).await?;
                }
                self.state.delete(&pending_key).await?;
                info!("finished the commit of an earlier run");
            }
            info!(status = ?manifest.status, "source already ingested; replaying its manifest");
            return Ok(IngestOutcome {
                manifest: manifest.clone(),
                replayed: true,
            });
        }
        // Keep the first ingestion time so a re-run reproduces its files byte for byte.
        let ingested_at_micros = previous
            .as_ref()
            .map(|m| m.ingested_at.as_str())
            .or(pending.as_ref().map(|p| p.ingested_at.as_str()))
            .and_then(|t| values::parse_timestamp(t).ok())
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());

        let source = Source {
            key,
            contract,
            uri: &uri,
            size: meta.size,
            batch_id: &batch_id,
            ingested_at_micros,
        };
        // A gzip source's trailer declares its size: memory is planned for that instead of a
        // worst-case expansion, which made a typical export spill all its rows to disk.
        let declared = self.declared_gzip_size(key, meta.size).await?;
        let mut attempt = self.process_source(&source, declared).await;
        if let Err(IngestError::Process {
            source: ProcessError::Read(e),
            ..
        }) = &attempt
            && input::is_plan_exceeded(e)
        {
            info!("the gzip source holds more than its trailer declares; processing it again");
            attempt = self.process_source(&source, None).await;
        }
        // The scratch directory is held (locked) until the staged files are uploaded from it.
        let (outcome, work) = attempt?;

        let base = ManifestBase {
            batch_id: &batch_id,
            dataset,
            meta: &meta,
            uri: &uri,
            ingested_at_micros,
        };
        let manifest = match outcome {
            FileOutcome::Processed(processed) => base.processed(*processed),
            FileOutcome::Rejected(rejected) => base.rejected(rejected),
        };
        if !manifest.0.accounting_holds() {
            let m = &manifest.0;
            return Err(IngestError::Accounting {
                uri,
                read: m.rows_read,
                written: m.rows_written,
                rejected: m.rows_rejected,
                duplicates: m.duplicates_dropped,
            });
        }
        let (manifest, uploads) = manifest;
        self.commit(
            key,
            &manifest,
            uploads,
            previous.as_ref(),
            pending,
            &manifest_key,
            &pending_key,
        )
        .await?;
        drop(work);

        match manifest.status {
            BatchStatus::Succeeded => info!(
                rows_read = manifest.rows_read,
                rows_written = manifest.rows_written,
                rows_rejected = manifest.rows_rejected,
                duplicates_dropped = manifest.duplicates_dropped,
                partitions = manifest.partitions.len(),
                files = manifest.files.len(),
                schema_drift = !manifest.schema_drift.is_empty(),
                "batch ingested"
            ),
            BatchStatus::Rejected => warn!(
                rows_read = manifest.rows_read,
                error = manifest.error.as_deref().unwrap_or_default(),
                quarantined = manifest.quarantined_source.as_deref().unwrap_or_default(),
                "file rejected whole"
            ),
        }
        Ok(IngestOutcome {
            manifest,
            replayed: false,
        })
    }

    /// The size a `.gz` source's trailer declares, when it is plausible for the whole file.
    async fn declared_gzip_size(&self, key: &str, size: u64) -> Result<Option<u64>, IngestError> {
        // The suffix decides whether to look: one ranged read for a gzip source, none otherwise
        // (a gzip source named otherwise is planned for the worst case).
        if size < 20 || !key.to_ascii_lowercase().ends_with(".gz") {
            return Ok(None);
        }
        let trailer = self.store.get_range(key, size - 4..size).await?;
        let declared = <[u8; 4]>::try_from(trailer.as_ref()).map(u32::from_le_bytes);
        Ok(declared
            .ok()
            .and_then(|d| input::declared_gzip_size(size, d)))
    }

    /// Reads, validates and stages one source in a new scratch directory, planned for
    /// `declared` CSV bytes if given.
    async fn process_source(
        &self,
        source: &Source<'_>,
        declared: Option<u64>,
    ) -> Result<(FileOutcome, Scratch), IngestError> {
        let work_root = self
            .settings
            .work_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        // Held (locked) while this ingest runs; what a killed ingest left is swept here.
        let work = Scratch::create_in(&work_root, WORK_PREFIX).map_err(IngestError::WorkDir)?;
        let reader = self.store.reader(source.key).await.map_err(|e| match e {
            StorageError::NotFound { .. } => IngestError::SourceMissing {
                uri: source.uri.to_owned(),
            },
            other => other.into(),
        })?;
        let bridge = SyncIoBridge::new(reader);
        let contract = source.contract.clone();
        let (batch_id, source_uri) = (source.batch_id.to_owned(), source.uri.to_owned());
        let (budget, size, work_dir, limits) = (
            self.settings.memory_budget_bytes,
            source.size,
            work.path().to_owned(),
            self.settings.limits,
        );
        let ingested_at_micros = source.ingested_at_micros;
        let progress = self.settings.progress.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let job = FileJob {
                contract: &contract,
                batch_id: &batch_id,
                source_uri: &source_uri,
                ingested_at_micros,
                input_bytes: size,
                declared_csv_bytes: declared,
                memory_budget_bytes: budget,
                work_dir: &work_dir,
                limits,
            };
            match progress {
                Some(progress) => process_file(
                    Reporting {
                        inner: bridge,
                        read: 0,
                        size,
                        progress,
                    },
                    &job,
                ),
                None => process_file(bridge, &job),
            }
        })
        .await
        .map_err(|e| IngestError::Task {
            uri: source.uri.to_owned(),
            message: e.to_string(),
        })?
        .map_err(|e| IngestError::Process {
            uri: source.uri.to_owned(),
            source: e,
        })?;
        Ok((outcome, work))
    }

    /// Uploads outputs, removes what an earlier attempt left that this one does not rewrite,
    /// then writes the manifest (the commit point) and clears the pending record.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        source_key: &str,
        manifest: &Manifest,
        uploads: Vec<Upload>,
        previous: Option<&Manifest>,
        pending: Option<PendingRecord>,
        manifest_key: &str,
        pending_key: &str,
    ) -> Result<(), IngestError> {
        let new_keys: BTreeSet<String> = output_keys(manifest).collect();
        let mut stale: BTreeSet<String> = previous.map(output_keys).into_iter().flatten().collect();
        stale.extend(pending.into_iter().flat_map(|p| p.outputs.keys));
        // The record names what this attempt writes and every name an earlier one may have
        // left: should this attempt die too, the next still finds them to remove (recording only
        // its own names lost a killed attempt's files, left as silver no manifest names).
        let record = PendingRecord {
            ingested_at: manifest.ingested_at.clone(),
            outputs: PendingOutputs {
                keys: new_keys.union(&stale).cloned().collect(),
            },
            manifest_sha256: Some(manifest_digest(manifest)),
            previous_manifest_sha256: previous.map(manifest_digest),
        };
        self.state.put_json(pending_key, &record).await?;
        // One file per partition: uploaded several at a time, as S3 latency, not bandwidth,
        // bounds many small PUTs. A failure drops (and so aborts) the others; the pending record
        // lets the retry clean up.
        let mut in_flight = tokio::task::JoinSet::new();
        // A dataset referenced within a window has each file's key list written after it.
        let listed = file_keys::is_kept(&self.registry, &manifest.dataset)
            .then(|| self.registry.get(&manifest.dataset).cloned().map(Arc::new))
            .flatten();
        // Every name an earlier attempt wrote loses its key lists first: a name written again
        // may come back at the same size with other keys, and its old list must not describe
        // the new file (nor outlive a file dropped below). Whether or not the dataset keeps
        // lists now: a contract that stopped keeping them may keep them again. A kill from here
        // on leaves files without lists, which are read as files.
        self.delete_key_lists(&stale).await?;
        for upload in uploads {
            match upload {
                Upload::File { key, path } => {
                    if in_flight.len() >= CONCURRENT_UPLOADS {
                        join_upload(&mut in_flight, manifest).await?;
                    }
                    let store = self.store.clone();
                    let listed = listed.clone();
                    in_flight.spawn(async move { upload_file(store, &key, &path, listed).await });
                }
                Upload::CopySource { key } => self.store.copy(source_key, &key).await?,
            }
        }
        while !in_flight.is_empty() {
            join_upload(&mut in_flight, manifest).await?;
        }
        for key in stale.difference(&new_keys) {
            self.store.delete(key).await?;
        }
        self.index_keys(manifest).await?;
        self.state.put_json(manifest_key, manifest).await?;
        self.store.delete(pending_key).await?;
        Ok(())
    }
}

impl Ingestor {
    /// Deletes the key lists of the silver files `keys` ([`file_keys`]), at whatever size they
    /// were written: one listing per file, only for the names an earlier attempt wrote.
    async fn delete_key_lists(&self, keys: &BTreeSet<String>) -> Result<(), IngestError> {
        let prefixes = keys
            .iter()
            .filter_map(|k| file_keys::list_stem(k))
            .collect::<BTreeSet<_>>();
        let found = storage::list_many(&self.store, prefixes.into_iter().collect()).await?;
        let lists = found
            .into_iter()
            .map(|m| m.key)
            .filter(|list| keys.iter().any(|k| file_keys::is_list_of(list, k)))
            .collect();
        Ok(storage::delete_many(&self.store, lists).await?)
    }

    /// Adds the batch's keys to its dataset's key index when a reference checks against it
    /// (before the manifest, so a committed batch's keys are always in the index).
    async fn index_keys(&self, manifest: &Manifest) -> Result<(), IngestError> {
        if manifest.status != BatchStatus::Succeeded
            || !crate::quality::key_index::is_indexed(&self.registry, &manifest.dataset)
        {
            return Ok(());
        }
        let Some(contract) = self.registry.get(&manifest.dataset) else {
            return Ok(());
        };
        let key = contract.key_column().name.as_str();
        let mut keys = Vec::new();
        for f in &manifest.files {
            let df = crate::silver::read::read_columns(self.store.as_ref(), &f.key, &[key])
                .await
                .map_err(crate::quality::key_index::KeyIndexError::from)?;
            keys.extend(
                crate::silver::read::strings(&df, key, &f.key)
                    .map_err(crate::quality::key_index::KeyIndexError::from)?
                    .into_iter()
                    .flatten(),
            );
        }
        crate::quality::key_index::KeyIndex::new(self.store.clone())
            .add(&manifest.dataset, &manifest.batch_id, keys)
            .await?;
        Ok(())
    }
}

/// Uploads the file at `path` as `key`, then its key list when it is a silver file and
/// `listed` (its contract) keeps them (made before the upload, which moves the file).
async fn upload_file(
    store: Arc<dyn ObjectStore>,
    key: &str,
    path: &Path,
    listed: Option<Arc<Contract>>,
) -> Result<(), IngestError> {
    let mut list = None;
    if let Some(contract) = listed {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(IngestError::WorkDir)?
            .len();
        // Silver files only (not the batch's quarantined rows).
        if let Some(list_key) = file_keys::list_key(key, size) {
            // Decoding and sorting the keys is polars work: off the runtime's threads, which
            // carry the other uploads ([`crate::offload`]).
            let owned = path.to_owned();
            let bytes =
                crate::offload::on_own_thread(move || file_keys::of_file(&owned, &contract))
                    .await
                    .ok_or_else(|| IngestError::Task {
                        uri: key.to_owned(),
                        message: "reading the file's keys back stopped unexpectedly".into(),
                    })?
                    .map_err(|source| ReadError::Parquet {
                        key: key.to_owned(),
                        source,
                    })?;
            list = Some((list_key, bytes));
        }
    }
    store.put_file_moving(key, path).await?;
    if let Some((list_key, bytes)) = list {
        store.put(&list_key, bytes.into()).await?;
    }
    Ok(())
}

/// Silver files uploaded at once by one ingest.
const CONCURRENT_UPLOADS: usize = 8;

async fn join_upload(
    in_flight: &mut tokio::task::JoinSet<Result<(), IngestError>>,
    manifest: &Manifest,
) -> Result<(), IngestError> {
    match in_flight.join_next().await {
        Some(Ok(result)) => Ok(result?),
        Some(Err(e)) => Err(IngestError::Task {
            uri: manifest.source.uri.clone(),
            message: e.to_string(),
        }),
        None => Ok(()),
    }
}

/// What `manifests/<dataset>/_pending/<batch_id>.json` holds while an ingest is committing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingRecord {
    ingested_at: String,
    outputs: PendingOutputs,
    /// The manifest this commit writes (its SHA-256): beside that manifest, the commit stopped
    /// after its commit point; beside another one, before it. Absent in records of older
    /// versions, which are treated as the latter.
    #[serde(default)]
    manifest_sha256: Option<String>,
    /// The manifest that was there when the commit began (its SHA-256), if one was: when it is
    /// the one the commit writes, finding it does not show the commit got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_manifest_sha256: Option<String>,
}

impl PendingRecord {
    /// Whether this record, found beside the manifest whose digest is `there`, belongs to a
    /// commit that did not reach its commit point (so the batch is processed again, not
    /// replayed): it writes another manifest, or that manifest was already there as it began.
    fn cut_short_beside(&self, there: &str) -> bool {
        self.manifest_sha256.as_deref() != Some(there)
            || self.previous_manifest_sha256.as_deref() == Some(there)
    }
}

/// The digest a pending record keeps of the manifest its commit writes.
fn manifest_digest(m: &Manifest) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(crate::state::to_json(m))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn output_keys(m: &Manifest) -> impl Iterator<Item = String> + '_ {
    m.files
        .iter()
        .map(|f| f.key.clone())
        .chain(m.rejects_file.clone())
        .chain(m.quarantined_source.clone())
}

enum Upload {
    File { key: String, path: PathBuf },
    CopySource { key: String },
}

struct ManifestBase<'a> {
    batch_id: &'a str,
    dataset: &'a str,
    meta: &'a ObjectMeta,
    uri: &'a str,
    ingested_at_micros: i64,
}

impl ManifestBase<'_> {
    fn manifest(&self, status: BatchStatus) -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            batch_id: self.batch_id.to_owned(),
            dataset: self.dataset.to_owned(),
            status,
            error: None,
            source: SourceObject {
                uri: self.uri.to_owned(),
                key: self.meta.key.clone(),
                etag: self.meta.etag.clone(),
                version_id: self.meta.version_id.clone(),
                size: self.meta.size,
                last_modified: self
                    .meta
                    .last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
            ingested_at: values::format_timestamp(self.ingested_at_micros),
            rows_read: 0,
            rows_written: 0,
            rows_rejected: 0,
            duplicates_dropped: 0,
            partitions: vec![],
            files: vec![],
            rejects_file: None,
            quarantined_source: None,
            source_columns: vec![],
            schema_drift: SchemaDrift::default(),
            column_stats: Default::default(),
            reject_reasons: Default::default(),
        }
    }

    fn processed(&self, p: ProcessedFile) -> (Manifest, Vec<Upload>) {
        let mut m = self.manifest(BatchStatus::Succeeded);
        let mut uploads: Vec<Upload> = p
            .files
            .iter()
            .map(|f| Upload::File {
                key: f.file.key.clone(),
                path: f.path.clone(),
            })
            .collect();
        if let Some((path, _)) = &p.rejects {
            let key = layout::rejected_rows_key(self.dataset, self.batch_id);
            uploads.push(Upload::File {
                key: key.clone(),
                path: path.clone(),
            });
            m.rejects_file = Some(key);
        }
        m.rows_read = p.rows_read;
        m.rows_written = p.rows_written;
        m.rows_rejected = p.rows_rejected;
        m.duplicates_dropped = p.duplicates_dropped;
        m.files = p.files.into_iter().map(|f| f.file).collect();
        m.partitions = p.partitions;
        m.source_columns = p.source_columns;
        m.schema_drift = p.drift;
        m.column_stats = p.stats;
        m.reject_reasons = p.reject_reasons;
        (m, uploads)
    }

    fn rejected(&self, r: RejectedFile) -> (Manifest, Vec<Upload>) {
        let mut m = self.manifest(BatchStatus::Rejected);
        let key = layout::quarantined_source_key(self.dataset, self.batch_id, &self.meta.key);
        m.error = Some(r.reason);
        m.rows_read = r.rows_read;
        m.rows_rejected = r.rows_read;
        m.source_columns = r.source_columns;
        m.quarantined_source = Some(key.clone());
        (m, vec![Upload::CopySource { key }])
    }
}

#[cfg(test)]
mod tests {
    use super::PendingRecord;

    fn record(json: &str) -> PendingRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_pending_record_of_an_older_version_is_read_and_judged_as_before() {
        let outputs = r#""ingested_at":"2026-11-22T03:00:00Z","outputs":{"keys":["a"]}"#;
        // The first records named no manifest: always before the commit point.
        let oldest = record(&format!("{{{outputs}}}"));
        assert!(oldest.cut_short_beside("m1"));
        // Then the manifest it writes, but not the one there as it began.
        let older = record(&format!(r#"{{{outputs},"manifest_sha256":"m1"}}"#));
        assert_eq!(older.previous_manifest_sha256, None);
        assert!(
            !older.cut_short_beside("m1"),
            "beside its own manifest: committed"
        );
        assert!(older.cut_short_beside("m0"), "beside another: cut short");
        // Now also that one: beside it, finding it proves nothing.
        let now = record(&format!(
            r#"{{{outputs},"manifest_sha256":"m1","previous_manifest_sha256":"m1"}}"#
        ));
        assert!(now.cut_short_beside("m1"));
        let moved = record(&format!(
            r#"{{{outputs},"manifest_sha256":"m1","previous_manifest_sha256":"m0"}}"#
        ));
        assert!(!moved.cut_short_beside("m1"));
        // And a record without one is written as the older versions wrote it.
        let json = serde_json::to_value(&older).unwrap();
        assert!(json.get("previous_manifest_sha256").is_none(), "{json}");
    }
}
