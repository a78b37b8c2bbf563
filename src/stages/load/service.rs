//! Loads silver batches and gold months into the warehouse: only batches the quality gate let
//! through, each exactly once (the ledger), each in one transaction.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::contract::{PartitionTransform, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::manifest::{BatchStatus, Manifest};
use crate::partition::parse_partition_path;
use crate::quality::QualityReport;
use crate::state::{BatchCursor, LakeState, StateError};
use crate::storage::{ObjectStore, StorageError};
use crate::warehouse::{CopyGroup, SqlExecutor, Warehouse, WarehouseError, copy_manifest};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    SchemaChange(#[from] crate::warehouse::SchemaChangeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no manifest {0}")]
    ManifestMissing(String),
    #[error(
        "no load failure is recorded for {0}: only a batch (or gold month) that failed to load can be retried or skipped; `lake load --dry-run` lists what is pending"
    )]
    NoFailure(String),
    #[error(
        "{id} names more than one load failure ({}); say which as <dataset>/<batch>, e.g. `lake load --retry {}`",
        choices.join(", "),
        choices.first().map_or("", String::as_str)
    )]
    AmbiguousFailure { id: String, choices: Vec<String> },
}

impl LoadError {
    /// Redshift's error and the failing statement when this is a failure of one batch's own
    /// statements or files (recorded, alerted and skipped so the others still load), `None` when
    /// the warehouse or the lake as a whole is unavailable (the run fails and is retried).
    pub fn batch_failure(&self) -> Option<(String, String)> {
        match self {
            LoadError::Warehouse(WarehouseError::Failed {
                error, statement, ..
            }) => Some((error.clone(), statement.clone())),
            LoadError::Warehouse(WarehouseError::Result { sql, detail }) => {
                Some((detail.clone(), sql.clone()))
            }
            LoadError::ManifestMissing(key) => Some((format!("no manifest {key}"), String::new())),
            _ => None,
        }
    }
}

impl Retryable for LoadError {
    fn is_retryable(&self) -> bool {
        match self {
            LoadError::Warehouse(e) => e.is_retryable(),
            LoadError::Storage(e) => e.is_retryable(),
            LoadError::State(e) => e.is_retryable(),
            LoadError::ManifestMissing(_)
            | LoadError::NoFailure(_)
            | LoadError::AmbiguousFailure { .. }
            | LoadError::SchemaChange(_) => false,
        }
    }
}

/// How long a claim on the load run lasts (longer than an invocation may run).
const RUN_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(16 * 60);

/// Why a batch was not loaded this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The dataset has no contract in this process's registry.
    NoContract,
    /// The quality gate has not written its report yet.
    NotChecked,
    /// The verdict is fail and nobody overrode it.
    HeldBack,
    /// The file was rejected whole, or no row was written.
    NothingToLoad,
    /// The ledger says an earlier run loaded it.
    AlreadyLoaded,
    /// It failed to load [`MAX_LOAD_ATTEMPTS`] times; an operator retries or skips it.
    RetriesExhausted,
    /// An operator decided not to load it (`lake load --skip`).
    SkippedByOperator,
}

/// What the load stage keeps per dataset (`runs/loaded/<dataset>/_cursor.json`) so that a run
/// lists only the manifests added since the last one: the shared [`BatchCursor`], whose open
/// batches are those not loaded yet (not gated, held back, failed and waiting for a retry,
/// skipped by an operator), so a late verdict, an override or `lake load --retry` still loads them.
pub type LoadCursor = BatchCursor;

pub use crate::state::WATERMARK_LAG;

/// Runs that try a batch which fails to load before the loader leaves it to an operator
/// (`lake load --retry BATCH` or `--skip BATCH --by … --reason …`).
pub const MAX_LOAD_ATTEMPTS: u32 = 3;

/// A batch (or, with dataset `daily_kpis`, a gold month) that failed to load, as recorded in the
/// lake (`runs/load_failures/<dataset>/<batch>.json`) until it loads or an operator skips it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadFailure {
    pub dataset: String,
    pub batch_id: String,
    /// The warehouse's error text.
    pub error: String,
    /// The statement that failed.
    pub statement: String,
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    #[serde(default)]
    pub skipped: Option<OperatorSkip>,
}

/// Who decided not to load a failed batch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSkip {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl SkipReason {
    /// Whether the batch is done with: nothing will ever need loading, so it is not looked at
    /// again. The others may change (a report lands, a verdict is overridden).
    pub fn is_final(self) -> bool {
        matches!(self, SkipReason::NothingToLoad | SkipReason::AlreadyLoaded)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NoContract => "no contract for this dataset",
            SkipReason::NotChecked => "not checked by the quality gate yet",
            SkipReason::HeldBack => {
                "held back: the quality verdict is fail (lake quality --override to load it)"
            }
            SkipReason::NothingToLoad => "nothing to load: no rows were written",
            SkipReason::AlreadyLoaded => "already loaded (in the load ledger)",
            SkipReason::RetriesExhausted => {
                "failed to load too often: fix the cause, then lake load --retry BATCH (or --skip BATCH --by … --reason …)"
            }
            SkipReason::SkippedByOperator => "skipped by an operator (lake load --retry BATCH to load it)",
        })
    }
}

/// What happened to one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BatchLoad {
    Loaded {
        dataset: String,
        batch_id: String,
        rows: u64,
        statements: usize,
    },
    Skipped {
        dataset: String,
        batch_id: String,
        reason: SkipReason,
    },
    /// Its load failed and was rolled back; recorded, and retried by later runs. `alert` is set
    /// the first time, so the alert function pages once per failure.
    Failed {
        dataset: String,
        batch_id: String,
        error: String,
        statement: String,
        attempts: u32,
        alert: bool,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub batches: Vec<BatchLoad>,
    pub months: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Loader {
    store: Arc<dyn ObjectStore>,
    state: LakeState,
    executor: Arc<dyn SqlExecutor>,
    warehouse: Warehouse,
    registry: Arc<Registry>,
    dry_run: bool,
}

impl Loader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        executor: Arc<dyn SqlExecutor>,
        warehouse: Warehouse,
        registry: Arc<Registry>,
    ) -> Self {
        Loader {
            state: LakeState::new(store.clone()),
            store,
            executor,
            warehouse,
            registry,
            dry_run: false,
        }
    }

    /// Issues the statements but writes nothing to the lake (no COPY manifests, markers or run
    /// records): with a recording executor, the SQL a load would send.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), LoadError> {
        if !self.dry_run {
            self.store.put(key, body).await?;
        }
        Ok(())
    }

    async fn put_json(&self, key: &str, value: &impl Serialize) -> Result<(), LoadError> {
        if !self.dry_run {
            self.state.put_json(key, value).await?;
        }
        Ok(())
    }

    /// Creates schema, tables, ledger and views (idempotent), then brings existing tables up to
    /// their contracts: new optional columns are added; a change a table cannot follow stops the
    /// load with an error naming the column and what to do.
    pub async fn ensure_schema(&self) -> Result<(), LoadError> {
        self.executor
            .execute_batch(&self.warehouse.ddl(&self.registry))
            .await?;
        let mut changes = Vec::new();
        for contract in self.registry.iter() {
            let rows = self
                .executor
                .query_rows(&self.warehouse.columns_query(&contract.name))
                .await?;
            let existing = crate::warehouse::sql::parse_columns(&rows);
            changes.extend(self.warehouse.schema_changes(contract, &existing)?);
        }
        if !changes.is_empty() {
            info!(
                statements = changes.len(),
                "adding new contract columns to the warehouse"
            );
            self.executor.execute_batch(&changes).await?;
        }
        Ok(())
    }

    /// Loads one batch unless the gate holds it back or the ledger has it already.
    pub async fn load_batch(&self, dataset: &str, batch_id: &str) -> Result<BatchLoad, LoadError> {
        let skip = |reason: SkipReason| BatchLoad::Skipped {
            dataset: dataset.into(),
            batch_id: batch_id.into(),
            reason,
        };
        let manifest_key = layout::manifest_key(dataset, batch_id);
        let manifest: Manifest = self
            .state
            .get_json(&manifest_key)
            .await?
            .ok_or(LoadError::ManifestMissing(manifest_key))?;
        let Some(contract) = self.registry.get(dataset) else {
            return Ok(skip(SkipReason::NoContract));
        };
        let report: Option<QualityReport> = self
            .state
            .get_json(&layout::quality_report_key(dataset, batch_id))
            .await?;
        match report {
            None => return Ok(skip(SkipReason::NotChecked)),
            Some(r) if !r.loadable => return Ok(skip(SkipReason::HeldBack)),
            Some(_) => {}
        }
        if manifest.status == BatchStatus::Rejected || manifest.files.is_empty() {
            return Ok(skip(SkipReason::NothingToLoad));
        }
        if self
            .executor
            .query_i64(&self.warehouse.ledger_lookup(dataset, batch_id))
            .await?
            > 0
        {
            return Ok(skip(SkipReason::AlreadyLoaded));
        }
        // One COPY per combination of identity-partition values: those values are not in the files.
        let identity: Vec<&str> = contract
            .partitions
            .iter()
            .filter(|p| p.transform == PartitionTransform::Identity)
            .map(|p| p.name.as_str())
            .collect();
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(String, u64)>> = BTreeMap::new();
        for f in &manifest.files {
            let values: BTreeMap<String, String> = parse_partition_path(&f.partition)
                .into_iter()
                .filter(|(k, _)| identity.contains(&k.as_str()))
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect();
            groups
                .entry(values)
                .or_default()
                .push((self.store.uri(&f.key), f.bytes));
        }
        let mut copy_groups = Vec::new();
        for (i, (values, files)) in groups.into_iter().enumerate() {
            let key = layout::copy_manifest_key(dataset, batch_id, i);
            self.put(&key, Bytes::from(copy_manifest(&files))).await?;
            copy_groups.push(CopyGroup {
                identity: values,
                manifest_uri: self.store.uri(&key),
            });
        }
        let statements =
            self.warehouse
                .load_batch(contract, batch_id, &copy_groups, manifest.rows_written);
        if statements.len() > crate::warehouse::sql::MAX_BATCH_STATEMENTS {
            // The Data API would reject the whole call; fail this batch only, and say why.
            return Err(LoadError::Warehouse(WarehouseError::Failed {
                id: "not sent".into(),
                error: format!(
                    "{} statements ({} partition groups) exceed the {} one BatchExecuteStatement takes; partition the dataset by fewer identity values",
                    statements.len(),
                    copy_groups.len(),
                    crate::warehouse::sql::MAX_BATCH_STATEMENTS
                ),
                statement: statements.first().cloned().unwrap_or_default(),
            }));
        }
        self.executor.execute_batch(&statements).await?;
        info!(
            dataset,
            batch_id,
            rows = manifest.rows_written,
            "batch loaded into the warehouse"
        );
        Ok(BatchLoad::Loaded {
            dataset: dataset.into(),
            batch_id: batch_id.into(),
            rows: manifest.rows_written,
            statements: statements.len(),
        })
    }

    /// Loads every batch not loaded yet (parents first), then replaces the gold months that
    /// changed since their last load, and records the run for the SLA check.
    pub async fn load_pending(&self, now: DateTime<Utc>) -> Result<LoadReport, LoadError> {
        if self.dry_run {
            return self.load_pending_claimed(now).await;
        }
        // One load at a time: the markers and gold-month state are read, then written.
        self.state
            .with_claim(
                &layout::stage_claim_key("load"),
                RUN_CLAIM_TTL,
                RUN_CLAIM_TTL,
                async || self.load_pending_claimed(now).await,
            )
            .await
    }

    /// The recorded failure of a batch, if any.
    async fn failure(
        &self,
        dataset: &str,
        batch_id: &str,
    ) -> Result<Option<LoadFailure>, LoadError> {
        Ok(self
            .state
            .get_json(&layout::load_failure_key(dataset, batch_id))
            .await?)
    }

    /// Whether an earlier failure keeps the batch out of this run.
    fn held_by(failure: Option<&LoadFailure>) -> Option<SkipReason> {
        match failure {
            Some(f) if f.skipped.is_some() => Some(SkipReason::SkippedByOperator),
            Some(f) if f.attempts >= MAX_LOAD_ATTEMPTS => Some(SkipReason::RetriesExhausted),
            _ => None,
        }
    }

    /// Records a failed load (one more attempt) and says what happened.
    async fn record_failure(
        &self,
        dataset: &str,
        batch_id: &str,
        previous: Option<LoadFailure>,
        (error, statement): (String, String),
        now: DateTime<Utc>,
    ) -> Result<BatchLoad, LoadError> {
        let attempts = previous.as_ref().map_or(0, |f| f.attempts) + 1;
        let record = LoadFailure {
            dataset: dataset.into(),
            batch_id: batch_id.into(),
            error: error.clone(),
            statement: statement.clone(),
            attempts,
            first_failed_at: previous.as_ref().map_or(now, |f| f.first_failed_at),
            last_failed_at: now,
            skipped: None,
        };
        self.put_json(&layout::load_failure_key(dataset, batch_id), &record)
            .await?;
        warn!(
            dataset,
            batch_id,
            attempts,
            max_attempts = MAX_LOAD_ATTEMPTS,
            error = %error,
            "load failed and was rolled back; recorded, the other batches go on"
        );
        Ok(BatchLoad::Failed {
            dataset: dataset.into(),
            batch_id: batch_id.into(),
            error,
            statement,
            attempts,
            alert: attempts == 1,
        })
    }

    async fn load_pending_claimed(&self, now: DateTime<Utc>) -> Result<LoadReport, LoadError> {
        let mut report = LoadReport::default();
        for contract in self.registry.load_order() {
            let dataset = contract.name.as_str();
            let cursor_key = layout::load_cursor_key(dataset);
            let mut cursor: LoadCursor = self.state.get_json_or_default(&cursor_key).await?;
            let open_before = cursor.open.len();
            let mut listing = cursor.list(self.store.as_ref(), dataset).await?;
            info!(
                dataset,
                listed = listing.listed.len(),
                open = open_before,
                watermark = cursor.watermark.as_deref().unwrap_or("none"),
                "batches to look at"
            );
            for batch in std::mem::take(&mut listing.candidates) {
                let marker = layout::loaded_marker_key(dataset, &batch);
                if self.state.exists(&marker).await? {
                    cursor.open.remove(&batch);
                    continue;
                }
                // Open until it is done with: a batch not gated yet, held back or failing is
                // looked at again by every run, however far the watermark has moved.
                cursor.open.insert(batch.clone());
                if listing.only_open(&batch)
                    && !self
                        .state
                        .exists(&layout::manifest_key(dataset, &batch))
                        .await?
                {
                    // Its manifest went away (the batch was removed): nothing left to load.
                    warn!(dataset, batch_id = %batch, "open batch has no manifest any more; dropped");
                    cursor.open.remove(&batch);
                    continue;
                }
                let failure = self.failure(dataset, &batch).await?;
                if let Some(reason) = Self::held_by(failure.as_ref()) {
                    report.batches.push(BatchLoad::Skipped {
                        dataset: dataset.into(),
                        batch_id: batch.clone(),
                        reason,
                    });
                    continue;
                }
                // A batch that cannot load is recorded and skipped: it never blocks the others
                // (MERGE is latest-wins by version, so loading later batches first is safe).
                let outcome = match self.load_batch(dataset, &batch).await {
                    Ok(outcome) => outcome,
                    Err(e) => match e.batch_failure() {
                        Some(parts) => {
                            let failed = self
                                .record_failure(dataset, &batch, failure, parts, now)
                                .await?;
                            report.batches.push(failed);
                            continue;
                        }
                        None => return Err(e),
                    },
                };
                let done = match &outcome {
                    BatchLoad::Loaded { .. } => true,
                    BatchLoad::Skipped { reason, .. } => reason.is_final(),
                    BatchLoad::Failed { .. } => false,
                };
                if done {
                    self.put(&marker, Bytes::new()).await?;
                    cursor.open.remove(&batch);
                    if failure.is_some() && !self.dry_run {
                        self.state
                            .delete(&layout::load_failure_key(dataset, &batch))
                            .await?;
                    }
                }
                report.batches.push(outcome);
            }
            // Written after the dataset's batches: a run that stops before leaves the old
            // cursor, and the next run looks at the same batches again (markers say which are done).
            self.put_json(&cursor_key, &cursor).await?;
        }
        report.months = self.load_months(now, &mut report.batches).await?;
        let record = serde_json::json!({ "loaded_at": now.to_rfc3339(), "report": &report });
        self.put_json(
            &layout::load_run_key(&now.format("%Y-%m-%d").to_string()),
            &record,
        )
        .await?;
        Ok(report)
    }

    /// Replaces the months of the gold tables whose object changed since it was last loaded:
    /// `daily_kpis` months by `YYYY-MM`, other tables' as `<table>/YYYY-MM` (also their key in
    /// the loaded-months record).
    pub async fn load_changed_months(&self) -> Result<Vec<String>, LoadError> {
        let mut failures = Vec::new();
        let months = self.load_months(Utc::now(), &mut failures).await?;
        match failures.into_iter().next() {
            Some(BatchLoad::Failed {
                batch_id,
                error,
                statement,
                ..
            }) => Err(LoadError::Warehouse(WarehouseError::Failed {
                id: batch_id,
                error,
                statement,
            })),
            _ => Ok(months),
        }
    }

    /// Replaces the changed months; a month that fails is recorded, alerted and retried like a
    /// batch (dataset `daily_kpis`, the month as batch id) and the other months still load.
    async fn load_months(
        &self,
        now: DateTime<Utc>,
        outcomes: &mut Vec<BatchLoad>,
    ) -> Result<Vec<String>, LoadError> {
        let mut loaded: BTreeMap<String, String> = self
            .state
            .get_json_or_default(layout::LOADED_GOLD_MONTHS_KEY)
            .await?;
        let mut months = Vec::new();
        for table in layout::GOLD_TABLES {
            for meta in self.store.list(&layout::gold_prefix(table)).await? {
                let Some(month) = layout::month_of_gold_key(&meta.key) else {
                    continue;
                };
                let name = if table == layout::DAILY_KPIS {
                    month.to_owned()
                } else {
                    format!("{table}/{month}")
                };
                if loaded.get(&name) == Some(&meta.etag) {
                    continue;
                }
                // A month that cannot load is recorded and skipped like a batch.
                let failure = self.failure(table, month).await?;
                if let Some(reason) = Self::held_by(failure.as_ref()) {
                    outcomes.push(BatchLoad::Skipped {
                        dataset: table.into(),
                        batch_id: month.into(),
                        reason,
                    });
                    continue;
                }
                let replaced = self
                    .executor
                    .execute_batch(&self.warehouse.replace_gold_month(
                        table,
                        month,
                        &self.store.uri(&meta.key),
                    ))
                    .await
                    .map_err(LoadError::from);
                if let Err(e) = replaced {
                    let parts = e.batch_failure().ok_or(e)?;
                    outcomes.push(
                        self.record_failure(table, month, failure, parts, now)
                            .await?,
                    );
                    continue;
                }
                if failure.is_some() && !self.dry_run {
                    self.state
                        .delete(&layout::load_failure_key(table, month))
                        .await?;
                }
                loaded.insert(name.clone(), meta.etag.clone());
                self.put_json(layout::LOADED_GOLD_MONTHS_KEY, &loaded)
                    .await?;
                months.push(name);
            }
        }
        Ok(months)
    }
}

impl Loader {
    /// The recorded failure `id` names, and its key. `id` is `<dataset>/<batch>` (one record,
    /// read directly) or a bare batch id or gold month, looked up among the open failures
    /// (`runs/load_failures/` holds only those, not every batch); a bare id recorded under more
    /// than one dataset (a month of `daily_kpis` and of `payment_methods_daily`) is an error
    /// naming the choices, never a guess.
    async fn find_failure(&self, id: &str) -> Result<(String, LoadFailure), LoadError> {
        if let Some((dataset, batch_id)) = id.split_once('/') {
            let key = layout::load_failure_key(dataset, batch_id);
            return match self.state.get_json::<LoadFailure>(&key).await? {
                Some(f) => Ok((key, f)),
                None => Err(LoadError::NoFailure(id.into())),
            };
        }
        let name = format!("{id}.json");
        let mut found = Vec::new();
        for meta in self.store.list(layout::LOAD_FAILURES_PREFIX).await? {
            if layout::file_name(&meta.key) == name
                && let Some(f) = self.state.get_json::<LoadFailure>(&meta.key).await?
            {
                found.push((meta.key, f));
            }
        }
        match found.len() {
            0 => Err(LoadError::NoFailure(id.into())),
            1 => Ok(found.remove(0)),
            _ => Err(LoadError::AmbiguousFailure {
                id: id.into(),
                choices: found
                    .iter()
                    .map(|(_, f)| format!("{}/{}", f.dataset, f.batch_id))
                    .collect(),
            }),
        }
    }

    /// An operator's retry: the batch's attempts start again (and a skip is lifted), so the
    /// next load (`lake load --retry` runs one) tries it.
    /// `id` is a batch id, a gold month, or either as `<dataset>/<id>` (see [`Self::find_failure`]).
    pub async fn retry(&self, id: &str) -> Result<LoadFailure, LoadError> {
        let (key, mut f) = self.find_failure(id).await?;
        f.attempts = 0;
        f.skipped = None;
        self.state.put_json(&key, &f).await?;
        info!(dataset = %f.dataset, batch_id = %f.batch_id, "failed load will be retried");
        Ok(f)
    }

    /// An operator's decision not to load a failed batch; recorded with who and why.
    pub async fn skip(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<LoadFailure, LoadError> {
        let (key, mut f) = self.find_failure(id).await?;
        f.skipped = Some(OperatorSkip {
            by: by.into(),
            reason: reason.into(),
            at: now,
        });
        self.state.put_json(&key, &f).await?;
        info!(dataset = %f.dataset, batch_id = %f.batch_id, "failed load skipped by an operator");
        Ok(f)
    }
}
