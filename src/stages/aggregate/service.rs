//! The aggregate stage on any object store: recomputes `daily_kpis` and `payment_methods_daily`
//! from silver with polars, writes the months that need it and the report pages. Silver in S3 is mirrored into a local work directory first
//! (kept across warm Lambda invocations, so only new files are downloaded); a local lake is
//! read in place.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use polars::prelude::DataFrame;
use serde::Serialize;
use tracing::info;

use super::request::AggregateRequest;
use crate::catalog::{self, Catalog, CatalogError};
use crate::contract::Registry;
use crate::error::Retryable;
use crate::gold::{self, GoldError, kpis};
use crate::layout;
use crate::report::{self, ReportError};
use crate::silver::read::scan_dataset;
use crate::state::{LakeState, StateError};
use crate::storage::{ObjectStore, StorageError, root_uri};

/// How long a claim on the aggregate run lasts (longer than an invocation may run).
const RUN_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(16 * 60);

#[derive(Debug, Clone, Serialize)]
pub struct AggregateReport {
    pub kpi_rows: usize,
    pub months_written: Vec<String>,
    pub new_batches: usize,
    /// Keys of the HTML reports written (`gold/report/…`).
    pub reports_written: Vec<String>,
}

/// A run's report and the gold tables it computed (what `lake` prints).
#[derive(Debug, Clone)]
pub struct AggregateRun {
    pub report: AggregateReport,
    pub kpis: DataFrame,
    /// `payment_methods_daily`, for every day of silver.
    pub methods: DataFrame,
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Gold(#[from] GoldError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the KPIs read dataset `{0}`, which has no contract here; add contracts/{0}.toml")]
    MissingInput(String),
    #[error("the KPI computation stopped unexpectedly")]
    Worker,
    #[error("writing the KPI report: {0}")]
    Report(#[from] ReportError),
}

impl Retryable for AggregateError {
    fn is_retryable(&self) -> bool {
        match self {
            AggregateError::Storage(e) => e.is_retryable(),
            AggregateError::State(e) => e.is_retryable(),
            AggregateError::Catalog(e) => e.is_retryable(),
            AggregateError::Gold(GoldError::Storage(e)) => e.is_retryable(),
            AggregateError::WorkDir { .. } | AggregateError::Worker => true,
            AggregateError::Report(e) => e.is_retryable(),
            AggregateError::Gold(GoldError::Polars(_)) | AggregateError::MissingInput(_) => false,
        }
    }
}

/// Computes `daily_kpis` and `payment_methods_daily` from the silver under `root` on a thread of
/// its own: polars is CPU-bound and blocks, so it must not run on (or need) the async runtime's
/// threads.
async fn kpis_from_local_silver(
    root: PathBuf,
    registry: Arc<Registry>,
) -> Result<(DataFrame, DataFrame), AggregateError> {
    let [orders, payments] = kpis::INPUTS.map(|d| {
        registry
            .get(d)
            .cloned()
            .ok_or_else(|| AggregateError::MissingInput(d.to_owned()))
    });
    let (orders, payments) = (orders?, payments?);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let compute = || -> Result<(DataFrame, DataFrame), GoldError> {
            let orders = scan_dataset(&root, &orders)?;
            let payments = scan_dataset(&root, &payments)?;
            let kpis = gold::daily_kpis(orders.clone(), payments.clone())?;
            Ok((kpis, gold::payment_methods_daily(orders, payments)?))
        };
        let _ = tx.send(compute().map_err(AggregateError::from));
    });
    rx.await.unwrap_or(Err(AggregateError::Worker))
}

#[derive(Debug, Clone)]
pub struct Aggregator {
    store: Arc<dyn ObjectStore>,
    state: LakeState,
    registry: Arc<Registry>,
    work_dir: PathBuf,
    catalog: Option<Arc<dyn Catalog>>,
}

impl Aggregator {
    /// `work_dir` holds the silver mirror (e.g. `/tmp/silver`) when the store is not local.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        registry: Arc<Registry>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        Aggregator {
            state: LakeState::new(store.clone()),
            store,
            registry,
            work_dir: work_dir.into(),
            catalog: None,
        }
    }

    /// Registers written months as partitions of `daily_kpis`.
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.catalog = Some(catalog);
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

    /// Where the KPIs read silver from: the lake itself when it is a local directory, else a
    /// mirror in the work directory.
    async fn silver_root(&self) -> Result<PathBuf, AggregateError> {
        if let Some(root) = self.store.local_root() {
            return Ok(root.to_owned());
        }
        for dataset in kpis::INPUTS {
            self.mirror(dataset).await?;
        }
        Ok(self.work_dir.clone())
    }

    /// Months of the date partitions written by batches not seen before; marks them seen.
    async fn touched_months(
        &self,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>, usize), AggregateError> {
        let mut seen: BTreeSet<String> = self
            .state
            .get_json_or_default(layout::AGGREGATE_STATE_KEY)
            .await?;
        let mut months = BTreeSet::new();
        let mut new = 0;
        for dataset in kpis::INPUTS {
            let date = self
                .registry
                .get(dataset)
                .ok_or_else(|| AggregateError::MissingInput(dataset.to_owned()))?
                .date_partition()
                .map(|p| p.name.clone());
            for batch in self.state.batch_ids(dataset).await? {
                if !seen.insert(format!("{dataset}/{batch}")) {
                    continue;
                }
                new += 1;
                let Some(m) = self.state.manifest(dataset, &batch).await? else {
                    continue;
                };
                for p in &m.partitions {
                    if let Some(day) = date.as_ref().and_then(|d| p.values.get(d)) {
                        months.extend(day.get(..7).map(str::to_owned));
                    }
                }
            }
        }
        Ok((months, seen, new))
    }

    /// Computes the KPIs and writes the months the request calls for. One run at a time: a
    /// second waits for the first, so the run state is never read by two and written by both.
    pub async fn aggregate(
        &self,
        request: AggregateRequest,
    ) -> Result<AggregateRun, AggregateError> {
        self.aggregate_at(request, chrono::Utc::now()).await
    }

    /// `aggregate` at `now`, which decides the day the reports mark as partial (today, UTC).
    pub async fn aggregate_at(
        &self,
        request: AggregateRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AggregateRun, AggregateError> {
        self.state
            .with_claim(
                &layout::stage_claim_key("aggregate"),
                RUN_CLAIM_TTL,
                RUN_CLAIM_TTL,
                async || self.aggregate_claimed(request, now).await,
            )
            .await
    }

    /// Writes `gold/report/index.html` (the last days of gold) and the page of every month in
    /// `months`. Links to quality reports are relative, so they work wherever the lake is
    /// served or copied from. Returns the keys written.
    async fn write_reports(
        &self,
        kpis: &DataFrame,
        methods: &DataFrame,
        months: &BTreeSet<String>,
        today: chrono::NaiveDate,
    ) -> Result<Vec<String>, AggregateError> {
        let kpi_rows = report::kpi_rows(kpis)?;
        let method_rows = report::method_rows(methods)?;
        let Some((from, to)) = report::index_range(&kpi_rows) else {
            return Ok(Vec::new());
        };
        let mut pages = vec![(
            layout::REPORT_INDEX_KEY.to_owned(),
            format!("Daily KPIs: the last {} days", report::INDEX_DAYS),
            from,
            to,
        )];
        for month in months {
            if let Some((from, to)) = report::month_range(month) {
                pages.push((
                    layout::report_month_key(month),
                    format!("Daily KPIs: {month}"),
                    from,
                    to,
                ));
            }
        }
        let batches = report::lake_batches(&self.state, &self.registry).await?;
        let mut written = Vec::new();
        for (key, title, from, to) in pages {
            let up = "../".repeat(key.matches('/').count());
            let href = move |k: &str| format!("{up}{k}");
            let shown = report::period_batches(&batches, from, to, &href);
            let input = report::input_for(title, from, to, today, &kpi_rows, &method_rows, shown);
            let html = report::render(&input)?;
            self.store.put(&key, html.into()).await?;
            written.push(key);
        }
        Ok(written)
    }

    async fn aggregate_claimed(
        &self,
        request: AggregateRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AggregateRun, AggregateError> {
        let root = self.silver_root().await?;
        let (kpis, methods) = kpis_from_local_silver(root, self.registry.clone()).await?;

        let (touched, seen, new_batches) = self.touched_months().await?;
        let keep: Box<dyn Fn(&str) -> bool + Send + Sync> = match request {
            AggregateRequest::Range { from, to } => {
                let (lo, hi) = (
                    from.format("%Y-%m").to_string(),
                    to.format("%Y-%m").to_string(),
                );
                Box::new(move |m| m >= lo.as_str() && m <= hi.as_str())
            }
            AggregateRequest::Scheduled {} => {
                // A late order can make a customer "new" earlier and so change later months'
                // new/returning counts: rewrite every month from the earliest one touched.
                let earliest = touched.first().cloned();
                Box::new(move |m| earliest.as_deref().is_some_and(|e| m >= e))
            }
        };
        let months_written = gold::write_months(self.store.as_ref(), &kpis, &keep).await?;
        let method_months = gold::write_table_months(
            self.store.as_ref(),
            layout::PAYMENT_METHODS_DAILY,
            &methods,
            &keep,
        )
        .await?;
        if let Some(cat) = &self.catalog {
            let root = root_uri(self.store.as_ref());
            cat.ensure_tables(&catalog::gold_tables(&root)).await?;
            for (table, months) in [
                (layout::DAILY_KPIS, &months_written),
                (layout::PAYMENT_METHODS_DAILY, &method_months),
            ] {
                let parts: Vec<_> = months
                    .iter()
                    .map(|m| catalog::gold_month_partition(table, m, &root))
                    .collect();
                cat.add_partitions(table, &parts).await?;
            }
        }
        let months: BTreeSet<String> = months_written
            .iter()
            .chain(&method_months)
            .cloned()
            .collect();
        let reports_written = self
            .write_reports(&kpis, &methods, &months, now.date_naive())
            .await?;
        // Only now: if writing failed, the next run sees these batches again.
        if let AggregateRequest::Scheduled {} = request {
            self.state
                .put_json(layout::AGGREGATE_STATE_KEY, &seen)
                .await?;
        }
        info!(
            kpi_rows = kpis.height(),
            method_rows = methods.height(),
            months = ?months_written,
            new_batches,
            reports = reports_written.len(),
            "daily KPIs aggregated"
        );
        Ok(AggregateRun {
            report: AggregateReport {
                kpi_rows: kpis.height(),
                months_written,
                new_batches,
                reports_written,
            },
            kpis,
            methods,
        })
    }
}
