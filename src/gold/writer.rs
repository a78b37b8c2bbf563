//! Writes gold tables as one Parquet object per month (`gold/daily_kpis/month=YYYY-MM/`). A
//! month is replaced by a single PUT of its one object, so readers never see half a month.

use std::collections::BTreeMap;
use std::io::Cursor;

use bytes::Bytes;
use polars::prelude::*;

use crate::layout;
use crate::storage::{ObjectStore, StorageError};
use crate::values;

#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    #[error("computing or encoding gold: {0}")]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Splits the KPI table by month and writes the months whose `YYYY-MM` passes `keep`.
/// Returns the months written.
pub async fn write_months(
    store: &dyn ObjectStore,
    kpis: &DataFrame,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, GoldError> {
    write_table_months(store, layout::DAILY_KPIS, kpis, keep).await
}

/// Splits a gold table (with a `kpi_date` column) by month and writes the months whose
/// `YYYY-MM` passes `keep` under `gold/<table>/`. Returns the months written.
pub async fn write_table_months(
    store: &dyn ObjectStore,
    table: &str,
    kpis: &DataFrame,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, GoldError> {
    let days = kpis.column("kpi_date")?.date()?.physical().clone();
    let mut months: BTreeMap<String, Vec<IdxSize>> = BTreeMap::new();
    for i in 0..days.len() {
        if let Some(day) = days.get(i) {
            let month = values::format_date(day)[..7].to_owned();
            months.entry(month).or_default().push(i as IdxSize);
        }
    }
    let mut written = Vec::new();
    for (month, rows) in months.into_iter().filter(|(m, _)| keep(m)) {
        let mut part = kpis.take(&IdxCa::from_vec("rows".into(), rows))?;
        let mut buffer = Vec::new();
        ParquetWriter::new(Cursor::new(&mut buffer))
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut part)?;
        store
            .put(&layout::gold_month_key(table, &month), Bytes::from(buffer))
            .await?;
        written.push(month);
    }
    Ok(written)
}

/// The rows of `table`'s months `months` as gold holds them (months without an object are
/// skipped); `None` when none has one.
pub async fn read_months(
    store: &dyn ObjectStore,
    table: &str,
    months: &std::collections::BTreeSet<String>,
) -> Result<Option<DataFrame>, GoldError> {
    let mut frames: Vec<DataFrame> = Vec::new();
    for month in months {
        if let Some(bytes) = store.get(&layout::gold_month_key(table, month)).await? {
            frames.push(ParquetReader::new(Cursor::new(bytes)).finish()?);
        }
    }
    let mut frames = frames.into_iter();
    let Some(mut all) = frames.next() else {
        return Ok(None);
    };
    for f in frames {
        all.vstack_mut(&f)?;
    }
    Ok(Some(all))
}

/// Replaces the rows of the days `days` in their months of `table` with `rows` (which hold
/// only those days), keeping every other day of those months as it was, sorted by `keys`.
/// Returns the months written.
pub async fn merge_days(
    store: &dyn ObjectStore,
    table: &str,
    rows: &DataFrame,
    days: &std::collections::BTreeSet<chrono::NaiveDate>,
    keys: &[&str],
) -> Result<Vec<String>, GoldError> {
    let months: std::collections::BTreeSet<String> =
        days.iter().map(|d| d.format("%Y-%m").to_string()).collect();
    let epoch: std::collections::HashSet<i32> =
        days.iter().map(|d| values::epoch_days(*d)).collect();
    let mut merged = rows.clone();
    if let Some(old) = read_months(store, table, &months).await? {
        let day = old.column("kpi_date")?.date()?.physical().clone();
        let keep: BooleanChunked = (0..day.len())
            .map(|i| Some(!day.get(i).is_some_and(|d| epoch.contains(&d))))
            .collect();
        let kept = old.filter(&keep)?;
        let names: Vec<PlSmallStr> = kept.get_column_names().into_iter().cloned().collect();
        merged = kept.vstack(&rows.select(names)?)?;
    }
    let merged = merged.sort(keys.to_vec(), SortMultipleOptions::default())?;
    let written = write_table_months(store, table, &merged, |m| months.contains(m)).await?;
    // A month whose days all emptied (every row of it retracted) keeps no stale object.
    for month in months.iter().filter(|m| !written.contains(m)) {
        let key = layout::gold_month_key(table, month);
        if store.head(&key).await?.is_some() {
            let mut empty = merged.head(Some(0));
            let mut buffer = Vec::new();
            ParquetWriter::new(Cursor::new(&mut buffer))
                .with_compression(ParquetCompression::Zstd(None))
                .finish(&mut empty)?;
            store.put(&key, Bytes::from(buffer)).await?;
        }
    }
    Ok(written)
}
