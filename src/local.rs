//! The embedded default: the pipeline on a local directory laid out like the bucket, with no
//! AWS and no server. Used by the `lake` CLI and the demo.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::alert::{
    AlertError, AlertOutcome, AlertRequest, AlertService, AlertSettings, OutboxNotifier,
};
use crate::contract::Registry;
use crate::contract::{Contract, PartitionTransform};
use crate::gold::{self, GoldError};
use crate::ingest::{IngestError, IngestOutcome, IngestSettings, Ingestor};
use crate::layout;
use crate::manifest::{BatchStatus, Manifest};
use crate::quality::{QualityError, QualityGate, QualityReport};
use crate::storage::{LocalStore, ObjectStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is inside the lake but not under raw/{dataset}/")]
    WrongPlace { path: String, dataset: String },
    #[error("unknown dataset `{0}` (known: {known})", known = Registry::builtin().names().collect::<Vec<_>>().join(", "))]
    UnknownDataset(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Quality(#[from] QualityError),
    #[error(transparent)]
    Gold(#[from] GoldError),
    #[error(transparent)]
    Aggregate(Box<crate::gold::AggregateError>),
    #[error(transparent)]
    Alert(#[from] AlertError),
    #[error("no batch {0} in the lake (see `lake show`)")]
    UnknownBatch(String),
    #[error("reading silver: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("{key} is not a readable manifest: {source}")]
    Manifest {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Brings a file into `raw/<dataset>/` (unless it is there already) and returns its key. The
/// copy keeps the source's modification time, so the same file always gets the same batch id.
pub fn stage_into_raw(
    store: &LocalStore,
    dataset: &str,
    file: &Path,
) -> Result<String, LocalError> {
    let md = std::fs::metadata(file).map_err(io_err(file))?;
    if let Some(key) = store.key_of(file) {
        return match layout::dataset_of_raw_key(&key) {
            Some(d) if d == dataset => Ok(key),
            _ => Err(LocalError::WrongPlace {
                path: file.display().to_string(),
                dataset: dataset.to_owned(),
            }),
        };
    }
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("export.csv");
    let key = layout::raw_key(dataset, name);
    let target = store.path_of(&key)?;
    let modified = md.modified().map_err(io_err(file))?;
    let unchanged = std::fs::metadata(&target)
        .map(|t| t.len() == md.len() && t.modified().ok() == Some(modified))
        .unwrap_or(false);
    if !unchanged {
        std::fs::create_dir_all(target.parent().expect("keys have a parent"))
            .map_err(io_err(&target))?;
        // Hidden from listings until the rename, like every write to a local store.
        let temp = target.with_file_name(format!("{}stage-{name}", crate::storage::TEMP_PREFIX));
        std::fs::copy(file, &temp).map_err(io_err(file))?;
        let f = std::fs::File::options()
            .write(true)
            .open(&temp)
            .map_err(io_err(&temp))?;
        f.set_modified(modified).map_err(io_err(&temp))?;
        drop(f);
        std::fs::rename(&temp, &target).map_err(io_err(&target))?;
    }
    Ok(key)
}

/// Ingests local files as `dataset` into the lake at `lake_dir`, one outcome per file.
pub async fn ingest_files(
    lake_dir: &Path,
    dataset: &str,
    files: &[impl AsRef<Path>],
    settings: IngestSettings,
) -> Result<Vec<Result<IngestOutcome, LocalError>>, LocalError> {
    let registry = Arc::new(Registry::builtin());
    if registry.get(dataset).is_none() {
        return Err(LocalError::UnknownDataset(dataset.to_owned()));
    }
    let store = Arc::new(LocalStore::new(lake_dir).map_err(io_err(lake_dir))?);
    let ingestor = Ingestor::new(store.clone(), registry, settings);
    let mut outcomes = Vec::new();
    for file in files {
        let result = match stage_into_raw(&store, dataset, file.as_ref()) {
            Ok(key) => ingestor.ingest(&key).await.map_err(LocalError::from),
            Err(e) => Err(e),
        };
        outcomes.push(result);
    }
    Ok(outcomes)
}

/// Every manifest in the store, by dataset, oldest batch first.
pub async fn manifests(store: &dyn ObjectStore) -> Result<Vec<Manifest>, LocalError> {
    let mut out = Vec::new();
    for meta in store.list(&format!("{}/", layout::MANIFESTS)).await? {
        if layout::parse_manifest_key(&meta.key).is_none() {
            continue;
        }
        if let Some(bytes) = store.get(&meta.key).await? {
            let m: Manifest =
                serde_json::from_slice(&bytes).map_err(|source| LocalError::Manifest {
                    key: meta.key.clone(),
                    source,
                })?;
            out.push(m);
        }
    }
    out.sort_by(|a, b| {
        (a.batch_id.as_str(), a.dataset.as_str()).cmp(&(b.batch_id.as_str(), b.dataset.as_str()))
    });
    Ok(out)
}

/// A readable overview: batches with their counts, the silver partition tree with row counts,
/// and the first quarantined rows of each batch (line, reason and key only: no personal data).
pub async fn overview(
    store: &dyn ObjectStore,
    sample_rejects: usize,
) -> Result<String, LocalError> {
    let registry = Registry::builtin();
    let manifests = manifests(store).await?;
    let mut s = String::new();
    let _ = writeln!(s, "Batches");
    for m in &manifests {
        let status = match m.status {
            BatchStatus::Succeeded => "ok",
            BatchStatus::Rejected => "REJECTED",
        };
        let _ = writeln!(
            s,
            "  {:<9} {:<30} {:<8} read {:>7}  written {:>7}  rejected {:>6}  duplicates {:>5}  {}",
            m.dataset,
            m.batch_id,
            status,
            m.rows_read,
            m.rows_written,
            m.rows_rejected,
            m.duplicates_dropped,
            m.error.as_deref().unwrap_or_default()
        );
    }
    let mut tree: BTreeMap<(String, String), (u64, usize)> = BTreeMap::new();
    for m in &manifests {
        for f in &m.files {
            let e = tree
                .entry((m.dataset.clone(), f.partition.clone()))
                .or_default();
            e.0 += f.rows;
            e.1 += 1;
        }
    }
    let _ = writeln!(s, "\nSilver partitions (rows, files)");
    let mut last_dataset = String::new();
    for ((dataset, partition), (rows, files)) in &tree {
        if *dataset != last_dataset {
            let _ = writeln!(s, "  processed/{dataset}/");
            last_dataset.clone_from(dataset);
        }
        let _ = writeln!(s, "    {partition:<50} {rows:>8} rows  {files} file(s)");
    }
    let _ = writeln!(s, "\nQuarantined rows (first {sample_rejects} per batch)");
    for m in manifests.iter().filter(|m| m.rejects_file.is_some()) {
        let key = m.rejects_file.as_deref().unwrap_or_default();
        let Some(bytes) = store.get(key).await? else {
            continue;
        };
        let key_column = registry
            .get(&m.dataset)
            .map(|c| c.key_column().name.clone())
            .unwrap_or_default();
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(bytes.as_ref());
        let headers = reader.byte_headers().cloned().unwrap_or_default();
        let key_index = headers.iter().position(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .eq_ignore_ascii_case(&key_column)
        });
        let _ = writeln!(s, "  {key}");
        for record in reader.byte_records().take(sample_rejects).flatten() {
            let field =
                |i: usize| String::from_utf8_lossy(record.get(i).unwrap_or_default()).into_owned();
            let key_value = key_index.map(&field).unwrap_or_default();
            let _ = writeln!(
                s,
                "    line {:>6}  {key_column}={key_value:<10}  {}",
                field(0),
                field(1)
            );
        }
    }
    for m in manifests.iter().filter(|m| m.quarantined_source.is_some()) {
        let _ = writeln!(
            s,
            "  {} (whole file): {}",
            m.quarantined_source.as_deref().unwrap_or_default(),
            m.error.as_deref().unwrap_or_default()
        );
    }
    Ok(s)
}

/// One checked batch and what its verdict caused.
#[derive(Debug, Clone)]
pub struct QualityRun {
    pub report: QualityReport,
    pub alerts: Vec<AlertOutcome>,
    /// The text of every message the outbox received (as the email would read).
    pub emails: Vec<String>,
}

fn open_store(lake_dir: &Path) -> Result<Arc<LocalStore>, LocalError> {
    Ok(Arc::new(
        LocalStore::new(lake_dir).map_err(io_err(lake_dir))?,
    ))
}

async fn dataset_of_batch(
    store: &LocalStore,
    registry: &Registry,
    batch: &str,
) -> Result<String, LocalError> {
    for dataset in registry.names() {
        if store
            .head(&layout::manifest_key(dataset, batch))
            .await?
            .is_some()
        {
            return Ok(dataset.to_owned());
        }
    }
    Err(LocalError::UnknownBatch(batch.to_owned()))
}

/// Checks `batch` (or every batch without a report) and sends the alerts its verdict calls for
/// to `outbox/` in the lake, as the quality and alert functions do in AWS.
pub async fn quality(
    lake_dir: &Path,
    batch: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<QualityRun>, LocalError> {
    let registry = Arc::new(Registry::builtin());
    let store = open_store(lake_dir)?;
    let gate = QualityGate::new(store.clone(), registry.clone());
    let batches = match batch {
        Some(b) => vec![(dataset_of_batch(&store, &registry, b).await?, b.to_owned())],
        None => gate.unchecked_batches().await?,
    };
    let alerts = AlertService::new(
        store.clone(),
        Arc::new(OutboxNotifier::new(store.clone())),
        AlertSettings::default(),
    );
    let outbox = format!("{}/", layout::OUTBOX);
    let mut runs = Vec::new();
    for (dataset, batch) in batches {
        let report = gate.evaluate(&dataset, &batch, now).await?;
        let before: std::collections::BTreeSet<String> = store
            .list(&outbox)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let outcomes = alerts
            .handle(AlertRequest::Quality(Box::new(report.clone())), now)
            .await?;
        let mut emails = Vec::new();
        for meta in store.list(&outbox).await? {
            if !before.contains(&meta.key)
                && let Some(text) = store.get(&meta.key).await?
            {
                emails.push(String::from_utf8_lossy(&text).into_owned());
            }
        }
        runs.push(QualityRun {
            report,
            alerts: outcomes,
            emails,
        });
    }
    Ok(runs)
}

/// Records a person's decision to load a failed batch anyway.
pub async fn override_batch(
    lake_dir: &Path,
    batch: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<QualityReport, LocalError> {
    let registry = Arc::new(Registry::builtin());
    let store = open_store(lake_dir)?;
    let dataset = dataset_of_batch(&store, &registry, batch).await?;
    Ok(QualityGate::new(store, registry)
        .override_batch(&dataset, batch, by, reason, now)
        .await?)
}

/// The partition columns of a dataset as hive paths carry them, typed by the contract.
fn partition_schema(contract: &Contract) -> polars::prelude::Schema {
    use polars::prelude::DataType;
    contract
        .partitions
        .iter()
        .map(|p| {
            let dtype = match p.transform {
                PartitionTransform::UtcDate => DataType::Date,
                PartitionTransform::Identity => DataType::String,
            };
            (p.name.as_str().into(), dtype)
        })
        .collect()
}

/// All silver files of a dataset in a local lake, with partition columns from the paths.
pub fn silver_frame(
    lake_dir: &Path,
    contract: &Contract,
) -> Result<polars::prelude::LazyFrame, LocalError> {
    use polars::prelude::*;
    let dir = lake_dir.join(layout::processed_prefix(&contract.name));
    let has_files = std::fs::read_dir(&dir).is_ok();
    let partitions = partition_schema(contract);
    if !has_files {
        // An empty frame with the silver schema, so the KPI plan still type-checks.
        let mut schema = crate::ingest::silver::silver_schema(contract)?;
        for (name, dtype) in partitions.iter() {
            schema.with_column(name.clone(), dtype.clone());
        }
        return Ok(DataFrame::empty_with_schema(&schema).lazy());
    }
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            schema: Some(Arc::new(partitions)),
            ..HiveOptions::new_enabled()
        },
        ..Default::default()
    };
    let glob = format!("{}/**/*.parquet", dir.display());
    Ok(LazyFrame::scan_parquet(PlRefPath::new(glob), args)?)
}

/// Recomputes `daily_kpis` from the local lake's silver and writes the months in `[from, to]`
/// (all months when unbounded). Returns the KPI table and the months written.
pub async fn aggregate(
    lake_dir: &Path,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
) -> Result<(polars::prelude::DataFrame, Vec<String>), LocalError> {
    let kpis = gold::aggregate::kpis_from_local_silver(lake_dir.to_owned(), Registry::builtin())
        .await
        .map_err(|e| LocalError::Aggregate(Box::new(e)))?;
    let store = open_store(lake_dir)?;
    let (lo, hi) = (
        from.map(|d| d.format("%Y-%m").to_string()),
        to.map(|d| d.format("%Y-%m").to_string()),
    );
    let keep =
        |m: &str| lo.as_deref().is_none_or(|lo| m >= lo) && hi.as_deref().is_none_or(|hi| m <= hi);
    let months = gold::write_months(store.as_ref(), &kpis, keep).await?;
    Ok((kpis, months))
}
