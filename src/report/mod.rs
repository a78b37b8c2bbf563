//! The KPI report: one self-contained HTML page (inline CSS and SVG charts, no script, nothing
//! fetched) over a range of days of gold `daily_kpis` and `payment_methods_daily`, with the
//! period's totals against the previous period, the quality verdicts of the period's batches, and
//! the gold rows themselves in tables whose cells carry the exact values (`data-v`).
//!
//! The aggregate stage writes `gold/report/index.html` (the last 30 days) and one page per month
//! it rewrote; `lake report` writes one for any range.

pub mod charts;
mod html;

use std::collections::BTreeMap;
use std::io::Cursor;

use chrono::{NaiveDate, TimeDelta};
use polars::prelude::*;

use crate::contract::Registry;
use crate::layout;
use crate::quality::{QualityReport, Verdict};
use crate::state::{LakeState, StateError};
use crate::storage::{ObjectStore, StorageError};
use crate::values;

pub use html::render;

/// How many days the stage's `index.html` covers.
pub const INDEX_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading gold {key}: {source}")]
    Gold {
        key: String,
        #[source]
        source: PolarsError,
    },
    #[error("gold column {column}: {source}")]
    Column {
        column: String,
        #[source]
        source: PolarsError,
    },
    #[error("drawing a chart: {0}")]
    Chart(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl crate::error::Retryable for ReportError {
    fn is_retryable(&self) -> bool {
        match self {
            ReportError::Storage(e) => e.is_retryable(),
            ReportError::State(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// One `daily_kpis` row; money in hundredths, exactly as gold holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiRow {
    pub kpi_date: NaiveDate,
    pub customer_region: String,
    pub currency: String,
    pub orders_placed: i64,
    pub orders_cancelled: i64,
    pub revenue: i128,
    pub avg_order_value: Option<i128>,
    pub active_customers: i64,
    pub new_customers: i64,
    pub returning_customers: i64,
    pub retention_rate: Option<f64>,
    pub payments_attempted: i64,
    pub payments_succeeded: i64,
    pub payments_failed: i64,
    pub payment_success_rate: Option<f64>,
    pub refunded_amount: i128,
}

/// One `payment_methods_daily` row; money in hundredths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRow {
    pub kpi_date: NaiveDate,
    pub customer_region: String,
    pub currency: String,
    pub payment_method: String,
    pub payments: i64,
    pub payments_succeeded: i64,
    pub payments_failed: i64,
    pub payments_pending: i64,
    pub payments_refunded: i64,
    pub succeeded_amount: i128,
    pub refunded_amount: i128,
}

/// A batch of the period and its quality verdict (None: not checked yet).
#[derive(Debug, Clone)]
pub struct BatchVerdict {
    pub dataset: String,
    pub batch_id: String,
    pub verdict: Option<Verdict>,
    pub summary: String,
    /// Where the report (or, unchecked, the manifest) is, as the page should link it.
    pub href: String,
}

/// Everything one page shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    pub title: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Today (UTC): its data is still arriving, so it is marked partial.
    pub today: NaiveDate,
    /// Rows of `from..=to` and of the previous period of the same length (for the changes).
    pub kpis: Vec<KpiRow>,
    pub methods: Vec<MethodRow>,
    pub batches: Vec<BatchVerdict>,
}

impl ReportInput {
    /// The first day of the previous period (as long as this one, just before it).
    pub fn previous_from(&self) -> NaiveDate {
        self.from - (self.to - self.from) - TimeDelta::days(1)
    }
}

fn column_error(column: &str) -> impl Fn(PolarsError) -> ReportError + '_ {
    move |source| ReportError::Column {
        column: column.to_owned(),
        source,
    }
}

fn date_col(df: &DataFrame, name: &str) -> Result<Vec<Option<NaiveDate>>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.date().map(|d| d.physical().clone()))
        .map_err(column_error(name))?;
    Ok((0..c.len())
        .map(|i| c.get(i).and_then(values::naive_date))
        .collect())
}

fn str_col(df: &DataFrame, name: &str) -> Result<Vec<String>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.str().cloned())
        .map_err(column_error(name))?;
    Ok((0..c.len())
        .map(|i| c.get(i).unwrap_or_default().to_owned())
        .collect())
}

fn i64_col(df: &DataFrame, name: &str) -> Result<Vec<i64>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.i64().cloned())
        .map_err(column_error(name))?;
    Ok((0..c.len()).map(|i| c.get(i).unwrap_or(0)).collect())
}

fn f64_col(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
    let c = df
        .column(name)
        .and_then(|c| c.f64().cloned())
        .map_err(column_error(name))?;
    Ok((0..c.len()).map(|i| c.get(i)).collect())
}

fn money_col(df: &DataFrame, name: &str) -> Result<Vec<Option<i128>>, ReportError> {
    let c = df.column(name).map_err(column_error(name))?;
    match c.dtype() {
        DataType::Decimal(_, 2) => {
            let d = c.decimal().map_err(column_error(name))?;
            let p = d.physical();
            Ok((0..p.len()).map(|i| p.get(i)).collect())
        }
        other => Err(ReportError::Column {
            column: name.to_owned(),
            source: PolarsError::ComputeError(format!("{other:?}, expected decimal(_, 2)").into()),
        }),
    }
}

/// The rows of a `daily_kpis` frame.
pub fn kpi_rows(df: &DataFrame) -> Result<Vec<KpiRow>, ReportError> {
    let dates = date_col(df, "kpi_date")?;
    let regions = str_col(df, "customer_region")?;
    let currencies = str_col(df, "currency")?;
    let [
        placed,
        cancelled,
        active,
        new,
        returning,
        attempted,
        succeeded,
        failed,
    ] = [
        "orders_placed",
        "orders_cancelled",
        "active_customers",
        "new_customers",
        "returning_customers",
        "payments_attempted",
        "payments_succeeded",
        "payments_failed",
    ]
    .map(|c| i64_col(df, c));
    let (placed, cancelled, active, new, returning) =
        (placed?, cancelled?, active?, new?, returning?);
    let (attempted, succeeded, failed) = (attempted?, succeeded?, failed?);
    let revenue = money_col(df, "revenue")?;
    let aov = money_col(df, "avg_order_value")?;
    let refunded = money_col(df, "refunded_amount")?;
    let retention = f64_col(df, "retention_rate")?;
    let success = f64_col(df, "payment_success_rate")?;
    Ok((0..df.height())
        .filter_map(|i| {
            Some(KpiRow {
                kpi_date: dates[i]?,
                customer_region: regions[i].clone(),
                currency: currencies[i].clone(),
                orders_placed: placed[i],
                orders_cancelled: cancelled[i],
                revenue: revenue[i].unwrap_or(0),
                avg_order_value: aov[i],
                active_customers: active[i],
                new_customers: new[i],
                returning_customers: returning[i],
                retention_rate: retention[i],
                payments_attempted: attempted[i],
                payments_succeeded: succeeded[i],
                payments_failed: failed[i],
                payment_success_rate: success[i],
                refunded_amount: refunded[i].unwrap_or(0),
            })
        })
        .collect())
}

/// The rows of a `payment_methods_daily` frame.
pub fn method_rows(df: &DataFrame) -> Result<Vec<MethodRow>, ReportError> {
    let dates = date_col(df, "kpi_date")?;
    let regions = str_col(df, "customer_region")?;
    let currencies = str_col(df, "currency")?;
    let methods = str_col(df, "payment_method")?;
    let [payments, succeeded, failed, pending, refunded_n] = [
        "payments",
        "payments_succeeded",
        "payments_failed",
        "payments_pending",
        "payments_refunded",
    ]
    .map(|c| i64_col(df, c));
    let (payments, succeeded, failed, pending, refunded_n) =
        (payments?, succeeded?, failed?, pending?, refunded_n?);
    let succeeded_amount = money_col(df, "succeeded_amount")?;
    let refunded_amount = money_col(df, "refunded_amount")?;
    Ok((0..df.height())
        .filter_map(|i| {
            Some(MethodRow {
                kpi_date: dates[i]?,
                customer_region: regions[i].clone(),
                currency: currencies[i].clone(),
                payment_method: methods[i].clone(),
                payments: payments[i],
                payments_succeeded: succeeded[i],
                payments_failed: failed[i],
                payments_pending: pending[i],
                payments_refunded: refunded_n[i],
                succeeded_amount: succeeded_amount[i].unwrap_or(0),
                refunded_amount: refunded_amount[i].unwrap_or(0),
            })
        })
        .collect())
}

/// Every month object of a gold table, read back and stacked (empty when there is none).
pub async fn read_gold(store: &dyn ObjectStore, table: &str) -> Result<DataFrame, ReportError> {
    let mut out: Option<DataFrame> = None;
    for meta in store.list(&layout::gold_prefix(table)).await? {
        if !meta.key.ends_with(".parquet") {
            continue;
        }
        let Some(bytes) = store.get(&meta.key).await? else {
            continue;
        };
        let gold_error = |source| ReportError::Gold {
            key: meta.key.clone(),
            source,
        };
        let month = ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(gold_error)?;
        out = Some(match out {
            None => month,
            Some(mut all) => {
                all.vstack_mut(&month).map_err(gold_error)?;
                all
            }
        });
    }
    Ok(out.unwrap_or_default())
}

/// A batch of the lake with its verdict and the days it holds, read once for any number of pages.
#[derive(Debug, Clone)]
pub struct LakeBatch {
    pub dataset: String,
    pub batch_id: String,
    /// The dates of its date partitions (none for a dataset without one, or a rejected file).
    pub dates: Vec<NaiveDate>,
    /// The day it was ingested (UTC).
    pub ingested: Option<NaiveDate>,
    pub verdict: Option<Verdict>,
    pub summary: String,
    /// Its quality report's key, or its manifest's while it has none.
    pub key: String,
}

impl LakeBatch {
    /// Whether it belongs to `from..=to`: one of its date partitions does, or, having none, it
    /// was ingested in it or the day after (a daily export lands the next day).
    pub fn in_period(&self, from: NaiveDate, to: NaiveDate) -> bool {
        if self.dates.is_empty() {
            self.ingested
                .is_some_and(|d| d >= from && d <= to + TimeDelta::days(1))
        } else {
            self.dates.iter().any(|d| *d >= from && *d <= to)
        }
    }
}

/// Every batch of the lake with its quality verdict, in batch order.
pub async fn lake_batches(
    state: &LakeState,
    registry: &Registry,
    since: NaiveDate,
) -> Result<Vec<LakeBatch>, ReportError> {
    let mut out = Vec::new();
    // Batch ids start with their source's upload time, and a batch holds rows of its upload
    // day or earlier (a day or two later at most, for rows stamped ahead): listing from two
    // days before `since` finds every batch with rows in a page from `since` on, and costs the
    // batches of the pages' period, not the history.
    let from = (since - TimeDelta::days(2))
        .format("%Y%m%dT000000Z")
        .to_string();
    for contract in registry.iter() {
        let date_partition = contract.date_partition().map(|p| p.name.clone());
        let prefix = layout::manifest_prefix(&contract.name);
        let listed = state
            .store()
            .list_after(&prefix, &format!("{prefix}{from}"), None)
            .await?;
        let mut manifests = Vec::new();
        for meta in &listed {
            let Some((_, batch)) = layout::parse_manifest_key(&meta.key) else {
                continue;
            };
            // A manifest listed then removed (a forced re-run) is simply not there any more.
            if let Some(m) = state.manifest(&contract.name, batch).await? {
                manifests.push(m);
            }
        }
        for m in manifests {
            let dates: Vec<NaiveDate> = m
                .partitions
                .iter()
                .filter_map(|p| p.values.get(date_partition.as_deref()?))
                .filter_map(|d| d.parse().ok())
                .collect();
            let key = layout::quality_report_key(&m.dataset, &m.batch_id);
            let report: Option<QualityReport> = state.get_json(&key).await?;
            let (verdict, summary, key) = match report {
                Some(r) => (Some(r.verdict), r.summary, key),
                None => (
                    None,
                    "not checked by the quality gate yet".to_owned(),
                    layout::manifest_key(&m.dataset, &m.batch_id),
                ),
            };
            out.push(LakeBatch {
                dataset: m.dataset.clone(),
                batch_id: m.batch_id.clone(),
                dates,
                ingested: m.ingested_at.get(..10).and_then(|d| d.parse().ok()),
                verdict,
                summary,
                key,
            });
        }
    }
    out.sort_by(|a, b| (&a.batch_id, &a.dataset).cmp(&(&b.batch_id, &b.dataset)));
    Ok(out)
}

/// The batches of `from..=to` with their verdicts; `href` turns a lake key into the link the
/// page shows.
pub fn period_batches(
    batches: &[LakeBatch],
    from: NaiveDate,
    to: NaiveDate,
    href: &dyn Fn(&str) -> String,
) -> Vec<BatchVerdict> {
    batches
        .iter()
        .filter(|b| b.in_period(from, to))
        .map(|b| BatchVerdict {
            dataset: b.dataset.clone(),
            batch_id: b.batch_id.clone(),
            verdict: b.verdict,
            summary: b.summary.clone(),
            href: href(&b.key),
        })
        .collect()
}

/// A page's input from whole gold tables: the rows of the period and the one before it.
pub fn input_for(
    title: String,
    from: NaiveDate,
    to: NaiveDate,
    today: NaiveDate,
    kpis: &[KpiRow],
    methods: &[MethodRow],
    batches: Vec<BatchVerdict>,
) -> ReportInput {
    let mut input = ReportInput {
        title,
        from,
        to,
        today,
        kpis: Vec::new(),
        methods: Vec::new(),
        batches,
    };
    let lo = input.previous_from();
    input.kpis = kpis
        .iter()
        .filter(|r| r.kpi_date >= lo && r.kpi_date <= to)
        .cloned()
        .collect();
    input.methods = methods
        .iter()
        .filter(|r| r.kpi_date >= lo && r.kpi_date <= to)
        .cloned()
        .collect();
    input
}

/// The range of the stage's `index.html`: the last `INDEX_DAYS` days up to the latest day of
/// gold, from its first day if it has fewer. None for empty gold.
pub fn index_range(kpis: &[KpiRow]) -> Option<(NaiveDate, NaiveDate)> {
    let to = kpis.iter().map(|r| r.kpi_date).max()?;
    let first = kpis.iter().map(|r| r.kpi_date).min()?;
    Some(((to - TimeDelta::days(INDEX_DAYS - 1)).max(first), to))
}

/// The first and last day of a `YYYY-MM` month.
pub fn month_range(month: &str) -> Option<(NaiveDate, NaiveDate)> {
    let first: NaiveDate = format!("{month}-01").parse().ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some((first, next - TimeDelta::days(1)))
}

/// Sums by key, in key order.
pub(crate) fn sum_by<K: Ord, T: Copy + std::ops::Add<Output = T> + Default>(
    items: impl IntoIterator<Item = (K, T)>,
) -> BTreeMap<K, T> {
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let e = out.entry(k).or_insert_with(T::default);
        *e = *e + v;
    }
    out
}

#[cfg(test)]
mod tests;
