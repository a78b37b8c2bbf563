//! Loads silver batches and gold months into Redshift: only batches the quality gate let
//! through, each exactly once (the ledger), each in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use super::data_api::{SqlExecutor, WarehouseError};
use super::sql::{CopyGroup, Warehouse, copy_manifest};
use crate::contract::{PartitionTransform, Registry};
use crate::layout;
use crate::manifest::{BatchStatus, Manifest};
use crate::quality::QualityReport;
use crate::storage::{ObjectStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{key} is not readable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no manifest {0}")]
    ManifestMissing(String),
}

impl LoadError {
    pub fn is_retryable(&self) -> bool {
        match self {
            LoadError::Warehouse(e) => e.is_retryable(),
            LoadError::Storage(e) => e.is_retryable(),
            _ => false,
        }
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
        reason: String,
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
    executor: Arc<dyn SqlExecutor>,
    warehouse: Warehouse,
    registry: Arc<Registry>,
}

/// Decodes a hive partition value (`%2F` → `/`).
fn unescape(value: &str) -> String {
    crate::handlers::s3_event::decode_key(&value.replace('+', "%2B"))
        .unwrap_or_else(|| value.to_owned())
}

impl Loader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        executor: Arc<dyn SqlExecutor>,
        warehouse: Warehouse,
    ) -> Self {
        Loader {
            store,
            executor,
            warehouse,
            registry: Arc::new(Registry::builtin()),
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, LoadError> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| LoadError::Corrupt {
                    key: key.into(),
                    source,
                }),
        }
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
        let skip = |reason: &str| BatchLoad::Skipped {
            dataset: dataset.into(),
            batch_id: batch_id.into(),
            reason: reason.into(),
        };
        let manifest_key = layout::manifest_key(dataset, batch_id);
        let manifest: Manifest = self
            .read(&manifest_key)
            .await?
            .ok_or(LoadError::ManifestMissing(manifest_key))?;
        let Some(contract) = self.registry.get(dataset) else {
            return Ok(skip("no contract for this dataset"));
        };
        let report: Option<QualityReport> = self
            .read(&layout::quality_report_key(dataset, batch_id))
            .await?;
        match report {
            None => return Ok(skip("not checked by the quality gate yet")),
            Some(r) if !r.loadable => {
                return Ok(skip(
                    "held back: the quality verdict is fail (lake quality --override to load it)",
                ));
            }
            Some(_) => {}
        }
        if manifest.status == BatchStatus::Rejected || manifest.files.is_empty() {
            return Ok(skip("nothing to load: no rows were written"));
        }
        if self
            .executor
            .query_i64(&self.warehouse.ledger_lookup(dataset, batch_id))
            .await?
            > 0
        {
            return Ok(skip("already loaded (in the load ledger)"));
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
            let values: BTreeMap<String, String> = f
                .partition
                .split('/')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| identity.contains(k))
                .map(|(k, v)| (k.to_owned(), unescape(v)))
                .collect();
            groups
                .entry(values)
                .or_default()
                .push((self.store.uri(&f.key), f.bytes));
        }
        let mut copy_groups = Vec::new();
        for (i, (values, files)) in groups.into_iter().enumerate() {
            let key = format!("loads/{dataset}/{batch_id}/{i:03}.manifest");
            self.store
                .put(&key, Bytes::from(copy_manifest(&files)))
                .await?;
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
            "batch loaded into Redshift"
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
        let mut report = LoadReport::default();
        for dataset in ["customers", "orders", "payments"] {
            for meta in self.store.list(&layout::manifest_prefix(dataset)).await? {
                let Some((_, batch)) = layout::parse_manifest_key(&meta.key) else {
                    continue;
                };
                let marker = format!("runs/loaded/{dataset}/{batch}");
                if self.store.head(&marker).await?.is_some() {
                    continue;
                }
                let outcome = self.load_batch(dataset, batch).await?;
                let done = match &outcome {
                    BatchLoad::Loaded { .. } => true,
                    BatchLoad::Skipped { reason, .. } => {
                        reason.starts_with("already loaded")
                            || reason.starts_with("nothing to load")
                    }
                };
                if done {
                    self.store.put(&marker, Bytes::new()).await?;
                }
                report.batches.push(outcome);
            }
        }
        report.months = self.load_changed_months().await?;
        let record = serde_json::json!({ "loaded_at": now.to_rfc3339(), "report": &report });
        self.store
            .put(
                &layout::load_run_key(&now.format("%Y-%m-%d").to_string()),
                Bytes::from(record.to_string()),
            )
            .await?;
        Ok(report)
    }

    /// Replaces the months of `daily_kpis` whose gold object changed since it was last loaded.
    pub async fn load_changed_months(&self) -> Result<Vec<String>, LoadError> {
        const STATE: &str = "runs/loaded/gold_months.json";
        let mut loaded: BTreeMap<String, String> = self.read(STATE).await?.unwrap_or_default();
        let mut months = Vec::new();
        for meta in self
            .store
            .list(&format!("{}/", crate::gold::DAILY_KPIS_PREFIX))
            .await?
        {
            let Some(month) = meta.key.split('/').find_map(|p| p.strip_prefix("month=")) else {
                continue;
            };
            if loaded.get(month) == Some(&meta.etag) {
                continue;
            }
            self.executor
                .execute_batch(
                    &self
                        .warehouse
                        .replace_month(month, &self.store.uri(&meta.key)),
                )
                .await?;
            loaded.insert(month.to_owned(), meta.etag.clone());
            self.store
                .put(
                    STATE,
                    Bytes::from(serde_json::to_vec(&loaded).expect("serialises")),
                )
                .await?;
            months.push(month.to_owned());
        }
        Ok(months)
    }
}
