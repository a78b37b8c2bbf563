//! The aggregate stage on any object store: mirrors silver into a local work directory (kept
//! across warm Lambda invocations, so only new files are downloaded), recomputes `daily_kpis`
//! with polars, and writes the months that need it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use serde::Serialize;
use tracing::info;

use super::writer::{GoldError, write_months};
use crate::catalog::{self, Catalog, CatalogError};
use crate::contract::Registry;
use crate::layout;
use crate::manifest::Manifest;
use crate::storage::{ObjectStore, StorageError};

/// Batches whose dates the aggregate has already folded into gold.
const STATE_KEY: &str = "runs/aggregate/seen_batches.json";

/// What to (re)write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AggregateRequest {
    /// `{"from": "2026-11-01", "to": "2026-11-21"}`: a backfill of these dates' months.
    Range { from: NaiveDate, to: NaiveDate },
    /// The scheduled run (an EventBridge event or `{}`): the months touched since the last run.
    Scheduled {},
}

impl AggregateRequest {
    /// Reads the Lambda input. A `from` or `to` makes it a backfill, and then both must be dates:
    /// a mistyped backfill must fail, not quietly become a scheduled run.
    pub fn from_event(event: &serde_json::Value) -> Result<Self, String> {
        let (from, to) = (event.get("from"), event.get("to"));
        if from.is_none() && to.is_none() {
            return Ok(AggregateRequest::Scheduled {});
        }
        let date = |v: Option<&serde_json::Value>, name: &str| -> Result<NaiveDate, String> {
            v.and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("backfill needs `{name}` as YYYY-MM-DD, got {v:?}"))
        };
        let (from, to) = (date(from, "from")?, date(to, "to")?);
        if from > to {
            return Err(format!("backfill `from` {from} is after `to` {to}"));
        }
        Ok(AggregateRequest::Range { from, to })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AggregateReport {
    pub kpi_rows: usize,
    pub months_written: Vec<String>,
    pub new_batches: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Gold(#[from] GoldError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} is not readable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    #[error("the KPI computation stopped unexpectedly")]
    Worker,
}

/// Computes `daily_kpis` from the silver under `lake_dir` on a thread of its own: polars is
/// CPU-bound and blocks, so it must not run on (or need) the async runtime's threads.
pub async fn kpis_from_local_silver(
    lake_dir: PathBuf,
    registry: Registry,
) -> Result<polars::prelude::DataFrame, AggregateError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let compute = || -> Result<polars::prelude::DataFrame, AggregateError> {
            let contract = |name: &str| registry.get(name).expect("built-in dataset");
            let orders = crate::local::silver_frame(&lake_dir, contract("orders"))?;
            let payments = crate::local::silver_frame(&lake_dir, contract("payments"))?;
            Ok(super::daily_kpis(orders, payments).map_err(GoldError::from)?)
        };
        let _ = tx.send(compute());
    });
    rx.await.unwrap_or_else(|_| Err(AggregateError::Worker))
}

#[derive(Debug, Clone)]
pub struct Aggregator {
    store: Arc<dyn ObjectStore>,
    work_dir: PathBuf,
    catalog: Option<(Arc<dyn Catalog>, String)>,
}

impl Aggregator {
    /// `work_dir` holds the silver mirror (e.g. `/tmp/silver`).
    pub fn new(store: Arc<dyn ObjectStore>, work_dir: impl Into<PathBuf>) -> Self {
        Aggregator {
            store,
            work_dir: work_dir.into(),
            catalog: None,
        }
    }

    /// Registers written months as partitions of `daily_kpis` (`root` is `s3://bucket`).
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>, root: impl Into<String>) -> Self {
        self.catalog = Some((catalog, root.into()));
        self
    }

    fn io(&self, source: std::io::Error) -> AggregateError {
        AggregateError::WorkDir {
            path: self.work_dir.display().to_string(),
            source,
        }
    }

    /// Makes the local mirror of `processed/<dataset>/` equal to the store's.
    async fn mirror(&self, dataset: &str) -> Result<(), AggregateError> {
        let prefix = layout::processed_prefix(dataset);
        let remote = self.store.list(&prefix).await?;
        let wanted: BTreeSet<PathBuf> = remote.iter().map(|m| self.work_dir.join(&m.key)).collect();
        for meta in remote.iter().filter(|m| m.key.ends_with(".parquet")) {
            let path = self.work_dir.join(&meta.key);
            if std::fs::metadata(&path).is_ok_and(|md| md.len() == meta.size) {
                continue;
            }
            let bytes = self
                .store
                .get(&meta.key)
                .await?
                .ok_or_else(|| StorageError::NotFound {
                    key: meta.key.clone(),
                })?;
            std::fs::create_dir_all(path.parent().expect("keys have a parent"))
                .map_err(|e| self.io(e))?;
            std::fs::write(&path, &bytes).map_err(|e| self.io(e))?;
        }
        // Files rewritten under other names (a re-ingest with another split) must not linger.
        let mut stack = vec![self.work_dir.join(&prefix)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !wanted.contains(&path) {
                    std::fs::remove_file(&path).map_err(|e| self.io(e))?;
                }
            }
        }
        Ok(())
    }

    /// Months of the partitions written by batches not seen before; marks them seen.
    async fn touched_months(
        &self,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>, usize), AggregateError> {
        let mut seen: BTreeSet<String> = match self.store.get(STATE_KEY).await? {
            None => BTreeSet::new(),
            Some(b) => serde_json::from_slice(&b).map_err(|source| AggregateError::Corrupt {
                key: STATE_KEY.into(),
                source,
            })?,
        };
        let mut months = BTreeSet::new();
        let mut new = 0;
        for dataset in ["orders", "payments"] {
            for meta in self.store.list(&layout::manifest_prefix(dataset)).await? {
                let Some((_, batch)) = layout::parse_manifest_key(&meta.key) else {
                    continue;
                };
                if !seen.insert(format!("{dataset}/{batch}")) {
                    continue;
                }
                new += 1;
                let bytes = self.store.get(&meta.key).await?.unwrap_or_default();
                let m: Manifest =
                    serde_json::from_slice(&bytes).map_err(|source| AggregateError::Corrupt {
                        key: meta.key.clone(),
                        source,
                    })?;
                for p in &m.partitions {
                    if let Some(date) = p.values.get("order_date").or(p.values.get("payment_date"))
                    {
                        months.extend(date.get(..7).map(str::to_owned));
                    }
                }
            }
        }
        Ok((months, seen, new))
    }

    pub async fn run(&self, request: AggregateRequest) -> Result<AggregateReport, AggregateError> {
        let registry = Registry::builtin();
        for dataset in ["orders", "payments"] {
            self.mirror(dataset).await?;
        }
        let kpis = kpis_from_local_silver(self.work_dir.clone(), registry).await?;

        let (touched, seen, new_batches) = self.touched_months().await?;
        let months_written = match request {
            AggregateRequest::Range { from, to } => {
                let (lo, hi) = (
                    from.format("%Y-%m").to_string(),
                    to.format("%Y-%m").to_string(),
                );
                write_months(self.store.as_ref(), &kpis, |m| {
                    m >= lo.as_str() && m <= hi.as_str()
                })
                .await?
            }
            AggregateRequest::Scheduled {} => {
                // A late order can make a customer "new" earlier and so change later months'
                // new/returning counts: rewrite every month from the earliest one touched.
                let earliest = touched.first().cloned();
                write_months(self.store.as_ref(), &kpis, |m| {
                    earliest.as_deref().is_some_and(|e| m >= e)
                })
                .await?
            }
        };
        if let Some((cat, root)) = &self.catalog {
            cat.ensure_tables(&[catalog::daily_kpis_table(root)])
                .await?;
            let parts: Vec<_> = months_written
                .iter()
                .map(|m| catalog::month_partition(m, root))
                .collect();
            cat.add_partitions("daily_kpis", &parts).await?;
        }
        // Only now: if writing failed, the next run sees these batches again.
        if let AggregateRequest::Scheduled {} = request {
            self.store
                .put(
                    STATE_KEY,
                    Bytes::from(serde_json::to_vec(&seen).expect("serialises")),
                )
                .await?;
        }
        info!(kpi_rows = kpis.height(), months = ?months_written, new_batches, "daily KPIs aggregated");
        Ok(AggregateReport {
            kpi_rows: kpis.height(),
            months_written,
            new_batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_from_events() {
        assert_eq!(
            AggregateRequest::from_event(&json!({})),
            Ok(AggregateRequest::Scheduled {})
        );
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(
            AggregateRequest::from_event(&scheduled),
            Ok(AggregateRequest::Scheduled {})
        );
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            AggregateRequest::from_event(&json!({"from": "2026-10-01", "to": "2026-11-21"})),
            Ok(AggregateRequest::Range {
                from: d("2026-10-01"),
                to: d("2026-11-21")
            })
        );
        assert!(AggregateRequest::from_event(&json!({"from": "2026-10-01"})).is_err());
        assert!(
            AggregateRequest::from_event(&json!({"from": "01/10/2026", "to": "2026-11-21"}))
                .is_err()
        );
        assert!(
            AggregateRequest::from_event(&json!({"from": "2026-11-21", "to": "2026-10-01"}))
                .is_err()
        );
    }
}
