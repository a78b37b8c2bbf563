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
