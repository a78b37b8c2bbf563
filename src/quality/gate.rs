//! The quality gate's I/O: reads a batch's manifest, the manifests of earlier batches and the
//! keys in silver, runs the checks, and writes the report. Used by the `quality` Lambda (on
//! manifest arrival) and by `lake quality`.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use polars::prelude::*;
use tracing::info;

use super::checks::{self, Facts, ReferenceFacts};
use super::report::{MAX_OFFENDING_KEYS, Override, QualityReport, REPORT_VERSION};
use crate::contract::{Contract, Registry};
use crate::layout;
use crate::manifest::{BatchStatus, Manifest};
use crate::storage::{ObjectStore, StorageError};
use crate::values;

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("no manifest {key}: the batch was never ingested (or not under this name)")]
    ManifestMissing { key: String },
    #[error("no quality report {key}: evaluate the batch first")]
    ReportMissing { key: String },
    #[error("{key} is not a quality gate input: expected manifests/<dataset>/<batch_id>.json")]
    NotAManifest { key: String },
    #[error("no data contract for dataset `{0}`")]
    UnknownDataset(String),
    #[error("{key} is not readable JSON: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading {key}: {source}")]
    Parquet {
        key: String,
        #[source]
        source: PolarsError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QualityError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, QualityError::Storage(e) if e.is_retryable())
    }
}

#[derive(Debug, Clone)]
pub struct QualityGate {
    store: Arc<dyn ObjectStore>,
    registry: Arc<Registry>,
}

async fn read_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<T>, QualityError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| QualityError::Corrupt {
                key: key.to_owned(),
                source,
            }),
    }
}

/// The named string columns of a silver file.
async fn read_columns(
    store: &dyn ObjectStore,
    key: &str,
    columns: &[&str],
) -> Result<DataFrame, QualityError> {
    let bytes: Bytes = store
        .get(key)
        .await?
        .ok_or_else(|| StorageError::NotFound {
            key: key.to_owned(),
        })?;
    let parquet_err = |source| QualityError::Parquet {
        key: key.to_owned(),
        source,
    };
    ParquetReader::new(Cursor::new(bytes))
        .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
        .finish()
        .map_err(parquet_err)
}

fn strings(df: &DataFrame, column: &str, key: &str) -> Result<Vec<Option<String>>, QualityError> {
    let parquet_err = |source| QualityError::Parquet {
        key: key.to_owned(),
        source,
    };
    let ca = df
        .column(column)
        .and_then(|c| c.str().cloned())
        .map_err(parquet_err)?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).map(str::to_owned))
        .collect())
}

impl QualityGate {
    pub fn new(store: Arc<dyn ObjectStore>, registry: Arc<Registry>) -> Self {
        QualityGate { store, registry }
    }

    fn contract(&self, dataset: &str) -> Result<&Contract, QualityError> {
        self.registry
            .get(dataset)
            .ok_or_else(|| QualityError::UnknownDataset(dataset.to_owned()))
    }

    /// Manifests of a dataset, oldest batch first.
    async fn manifests(&self, dataset: &str) -> Result<Vec<Manifest>, QualityError> {
        let mut out = Vec::new();
        for meta in self.store.list(&layout::manifest_prefix(dataset)).await? {
            if layout::parse_manifest_key(&meta.key).is_some()
                && let Some(m) = read_json::<Manifest>(self.store.as_ref(), &meta.key).await?
            {
                out.push(m);
            }
        }
        out.sort_by(|a, b| a.batch_id.cmp(&b.batch_id));
        Ok(out)
    }

    /// Keys appearing more than once across the batch's silver files.
    async fn duplicate_keys(
        &self,
        contract: &Contract,
        m: &Manifest,
    ) -> Result<Vec<String>, QualityError> {
        let key = contract.key_column().name.as_str();
        let mut seen = HashSet::new();
        let mut dups = Vec::new();
        for f in &m.files {
            let df = read_columns(self.store.as_ref(), &f.key, &[key]).await?;
            for k in strings(&df, key, &f.key)?.into_iter().flatten() {
                if !seen.insert(k.clone()) {
                    dups.push(k);
                }
            }
        }
        Ok(dups)
    }

    /// Every key of a dataset in silver (all versions, all batches).
    async fn silver_keys(&self, dataset: &str) -> Result<HashSet<String>, QualityError> {
        let key = self.contract(dataset)?.key_column().name.clone();
        let mut keys = HashSet::new();
        for meta in self.store.list(&layout::processed_prefix(dataset)).await? {
            if meta.key.ends_with(".parquet") {
                let df = read_columns(self.store.as_ref(), &meta.key, &[&key]).await?;
                keys.extend(strings(&df, &key, &meta.key)?.into_iter().flatten());
            }
        }
        Ok(keys)
    }

    async fn references(
        &self,
        contract: &Contract,
        m: &Manifest,
    ) -> Result<Vec<ReferenceFacts>, QualityError> {
        let mut targets: HashMap<&str, HashSet<String>> = HashMap::new();
        let mut out = Vec::new();
        let key = contract.key_column().name.as_str();
        for rule in &contract.quality.references {
            if !targets.contains_key(rule.dataset.as_str()) {
                targets.insert(&rule.dataset, self.silver_keys(&rule.dataset).await?);
            }
            let target = &targets[rule.dataset.as_str()];
            let mut facts = ReferenceFacts {
                rule: rule.clone(),
                checked: 0,
                orphans: 0,
                sample: vec![],
            };
            for f in &m.files {
                let df = read_columns(self.store.as_ref(), &f.key, &[key, &rule.column]).await?;
                let (keys, refs) = (
                    strings(&df, key, &f.key)?,
                    strings(&df, &rule.column, &f.key)?,
                );
                for (k, r) in keys.into_iter().zip(refs) {
                    facts.checked += 1;
                    if !r.is_some_and(|r| target.contains(&r)) {
                        facts.orphans += 1;
                        if facts.sample.len() < MAX_OFFENDING_KEYS {
                            facts.sample.extend(k);
                        }
                    }
                }
            }
            out.push(facts);
        }
        Ok(out)
    }

    /// Evaluates the batch of a manifest key (what the quality Lambda receives).
    pub async fn evaluate_manifest_key(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let (dataset, batch) =
            layout::parse_manifest_key(key).ok_or_else(|| QualityError::NotAManifest {
                key: key.to_owned(),
            })?;
        self.evaluate(dataset, batch, now).await
    }

    /// Runs every check on a batch and writes its report. Re-evaluation keeps an override.
    #[tracing::instrument(skip(self, now))]
    pub async fn evaluate(
        &self,
        dataset: &str,
        batch_id: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let contract = self.contract(dataset)?;
        let manifest_key = layout::manifest_key(dataset, batch_id);
        let manifest: Manifest = read_json(self.store.as_ref(), &manifest_key)
            .await?
            .ok_or_else(|| QualityError::ManifestMissing {
                key: manifest_key.clone(),
            })?;
        let history: Vec<Manifest> = self
            .manifests(dataset)
            .await?
            .into_iter()
            .filter(|m| m.batch_id.as_str() < batch_id && m.status == BatchStatus::Succeeded)
            .collect();
        let written = manifest.status == BatchStatus::Succeeded;
        let facts = Facts {
            contract,
            manifest: &manifest,
            history: &history,
            duplicate_keys: if written {
                Some(self.duplicate_keys(contract, &manifest).await?)
            } else {
                None
            },
            references: if written {
                self.references(contract, &manifest).await?
            } else {
                vec![]
            },
            now,
        };
        let checks = checks::evaluate(&facts);
        let (verdict, summary) = QualityReport::verdict_of(&checks);
        let report_key = layout::quality_report_key(dataset, batch_id);
        let previous: Option<QualityReport> = read_json(self.store.as_ref(), &report_key).await?;
        let override_ = previous.and_then(|p| p.override_);
        let report = QualityReport {
            report_version: REPORT_VERSION,
            dataset: dataset.to_owned(),
            batch_id: batch_id.to_owned(),
            batch_date: manifest
                .source
                .last_modified
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            source: manifest.source.uri.clone(),
            manifest: self.store.uri(&manifest_key),
            evaluated_at: values::format_timestamp(now.timestamp_micros()),
            verdict,
            loadable: verdict != super::Verdict::Fail || override_.is_some(),
            summary,
            rows_read: manifest.rows_read,
            rows_written: manifest.rows_written,
            rows_rejected: manifest.rows_rejected,
            duplicates_dropped: manifest.duplicates_dropped,
            rejects_file: manifest.rejects_file.as_deref().map(|k| self.store.uri(k)),
            quarantined_source: manifest
                .quarantined_source
                .as_deref()
                .map(|k| self.store.uri(k)),
            checks,
            override_,
        };
        self.write(&report_key, &report).await?;
        info!(verdict = ?report.verdict, summary = %report.summary, loadable = report.loadable, "batch checked");
        Ok(report)
    }

    async fn write(&self, key: &str, report: &QualityReport) -> Result<(), QualityError> {
        let body = serde_json::to_vec_pretty(report).expect("reports serialise");
        self.store.put(key, Bytes::from(body)).await?;
        Ok(())
    }

    pub async fn report(
        &self,
        dataset: &str,
        batch_id: &str,
    ) -> Result<Option<QualityReport>, QualityError> {
        read_json(
            self.store.as_ref(),
            &layout::quality_report_key(dataset, batch_id),
        )
        .await
    }

    /// Records a person's decision to load a failed batch anyway.
    pub async fn override_batch(
        &self,
        dataset: &str,
        batch_id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let key = layout::quality_report_key(dataset, batch_id);
        let mut report = self
            .report(dataset, batch_id)
            .await?
            .ok_or(QualityError::ReportMissing { key: key.clone() })?;
        report.override_ = Some(Override {
            by: by.to_owned(),
            reason: reason.to_owned(),
            at: values::format_timestamp(now.timestamp_micros()),
        });
        report.loadable = true;
        self.write(&key, &report).await?;
        info!(by, "quality verdict overridden");
        Ok(report)
    }

    /// Batches with a manifest but no report yet, oldest first.
    pub async fn unchecked_batches(&self) -> Result<Vec<(String, String)>, QualityError> {
        let mut out = Vec::new();
        for dataset in self.registry.names() {
            for m in self.manifests(dataset).await? {
                if self
                    .store
                    .head(&layout::quality_report_key(dataset, &m.batch_id))
                    .await?
                    .is_none()
                {
                    out.push((dataset.to_owned(), m.batch_id));
                }
            }
        }
        Ok(out)
    }
}
