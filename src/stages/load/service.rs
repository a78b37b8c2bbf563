//! Loads silver batches and gold months into the warehouse: only batches the quality gate let
//! through, each exactly once (the ledger), each in one transaction.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use crate::contract::{PartitionTransform, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::manifest::{BatchStatus, Manifest};
use crate::partition::parse_partition_path;
use crate::quality::QualityReport;
use crate::state::{LakeState, StateError};
use crate::storage::{ObjectStore, StorageError};
use crate::warehouse::{CopyGroup, SqlExecutor, Warehouse, WarehouseError, copy_manifest};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no manifest {0}")]
    ManifestMissing(String),
}

impl Retryable for LoadError {
    fn is_retryable(&self) -> bool {
        match self {
            LoadError::Warehouse(e) => e.is_retryable(),
            LoadError::Storage(e) => e.is_retryable(),
            LoadError::State(e) => e.is_retryable(),
            LoadError::ManifestMissing(_) => false,
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

    /// Creates schema, tables, ledger and views (idempotent).
    pub async fn ensure_schema(&self) -> Result<(), LoadError> {
        self.executor
            .execute_batch(&self.warehouse.ddl(&self.registry))
            .await?;
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

    async fn load_pending_claimed(&self, now: DateTime<Utc>) -> Result<LoadReport, LoadError> {
        let mut report = LoadReport::default();
        for contract in self.registry.load_order() {
            let dataset = contract.name.as_str();
            for batch in self.state.batch_ids(dataset).await? {
                let marker = layout::loaded_marker_key(dataset, &batch);
                if self.state.exists(&marker).await? {
                    continue;
                }
                let outcome = self.load_batch(dataset, &batch).await?;
                let done = match &outcome {
                    BatchLoad::Loaded { .. } => true,
                    BatchLoad::Skipped { reason, .. } => reason.is_final(),
                };
                if done {
                    self.put(&marker, Bytes::new()).await?;
                }
                report.batches.push(outcome);
            }
        }
        report.months = self.load_changed_months().await?;
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
                self.executor
                    .execute_batch(&self.warehouse.replace_gold_month(
                        table,
                        month,
                        &self.store.uri(&meta.key),
                    ))
                    .await?;
                loaded.insert(name.clone(), meta.etag.clone());
                self.put_json(layout::LOADED_GOLD_MONTHS_KEY, &loaded)
                    .await?;
                months.push(name);
            }
        }
        Ok(months)
    }
}
