//! Reading silver: a dataset's files under a local directory as one lazy frame (gold), and the
//! named columns of one file from any store (quality).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use polars::prelude::*;

use super::{partition_schema, silver_schema};
use crate::contract::Contract;
use crate::error::Retryable;
use crate::layout;
use crate::storage::{ObjectStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading silver {key}: {source}")]
    Parquet {
        key: String,
        #[source]
        source: PolarsError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Retryable for ReadError {
    fn is_retryable(&self) -> bool {
        matches!(self, ReadError::Storage(e) if e.is_retryable())
    }
}

/// All silver files of a dataset under `root` (a lake laid out like the bucket), with the
/// partition columns from the paths. No files: an empty frame of the silver schema, so a plan
/// over it still type-checks.
pub fn scan_dataset(root: &Path, contract: &Contract) -> PolarsResult<LazyFrame> {
    let dir = root.join(layout::processed_prefix(&contract.name));
    if std::fs::read_dir(&dir).is_err() {
        return no_rows(contract);
    }
    let glob = format!("{}/**/*.parquet", dir.display());
    LazyFrame::scan_parquet(PlRefPath::new(glob), hive_args(contract))
}

/// No rows, in the columns a scan of `contract`'s silver gives: its silver columns, then its
/// partition columns.
fn no_rows(contract: &Contract) -> PolarsResult<LazyFrame> {
    let mut schema = silver_schema(contract)?;
    for (name, dtype) in partition_schema(contract).iter() {
        schema.with_column(name.clone(), dtype.clone());
    }
    Ok(DataFrame::empty_with_schema(&schema).lazy())
}

/// A scan that takes `contract`'s partition columns from the hive path, typed as its contract
/// says.
fn hive_args(contract: &Contract) -> ScanArgsParquet {
    ScanArgsParquet {
        hive_options: HiveOptions {
            schema: Some(Arc::new(partition_schema(contract))),
            ..HiveOptions::new_enabled()
        },
        ..Default::default()
    }
}

/// The files of a dataset's date partitions `dates` under `root`, as one lazy frame with every
/// partition column (from the hive path, as [`scan_dataset`] reads them).
/// Only those directories are listed and read: what the nightly KPIs use to keep their cost to
/// the days they recompute. Needs the date partition first in the path
/// ([`Contract::window_partition`]).
pub fn scan_dates(
    root: &Path,
    contract: &Contract,
    dates: &std::collections::BTreeSet<chrono::NaiveDate>,
) -> PolarsResult<LazyFrame> {
    let Some(date) = contract.window_partition() else {
        polars_bail!(ComputeError: "{} has no leading utc_date partition to read by day", contract.name);
    };
    let mut files = Vec::new();
    for day in dates {
        visit_parquet(&day_dir(root, contract, &date.name, *day), |path, _| {
            files.push(path.to_owned());
            true
        });
    }
    if files.is_empty() {
        return no_rows(contract);
    }
    // In path order, as a glob lists them. One scan of every file, not a scan per day: each
    // scan is a pipeline of its own to set up, which cost about 1.5 ms, as much as reading a
    // small file.
    files.sort();
    LazyFrame::scan_parquet_files(
        files
            .iter()
            .map(|f| PlRefPath::new(f.display().to_string()))
            .collect(),
        hive_args(contract),
    )
}

/// Bytes of `contract`'s Parquet files on one day (its leading date partition) under `root`,
/// laid out like the lake; 0 when it has none.
pub fn day_bytes(root: &Path, contract: &Contract, day: chrono::NaiveDate) -> u64 {
    let Some(date) = contract.window_partition() else {
        return 0;
    };
    let dir = day_dir(root, contract, &date.name, day);
    let mut bytes = 0;
    visit_parquet(&dir, |_, size| {
        bytes += size;
        true
    });
    bytes
}

/// The directory of one day's partitions (`processed/<dataset>/<date>=D`).
fn day_dir(root: &Path, contract: &Contract, date: &str, day: chrono::NaiveDate) -> PathBuf {
    root.join(layout::processed_prefix(&contract.name))
        .join(format!("{date}={}", day.format("%Y-%m-%d")))
}

/// Calls `visit` with the path and size of each Parquet file under `dir` at any depth until it
/// returns false.
fn visit_parquet(dir: &Path, mut visit: impl FnMut(&Path, u64) -> bool) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet")
                && !visit(&path, entry.metadata().map_or(0, |m| m.len()))
            {
                return;
            }
        }
    }
}

/// The named columns of one silver file.
pub async fn read_columns(
    store: &dyn ObjectStore,
    key: &str,
    columns: &[&str],
) -> Result<DataFrame, ReadError> {
    let bytes = store
        .get(key)
        .await?
        .ok_or_else(|| StorageError::NotFound {
            key: key.to_owned(),
        })?;
    columns_of(bytes, key, columns)
}

/// `columns` of the Parquet file `bytes`, the object `key` (named in errors).
pub fn columns_of(bytes: Bytes, key: &str, columns: &[&str]) -> Result<DataFrame, ReadError> {
    ParquetReader::new(Cursor::new(bytes))
        .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
        .finish()
        .map_err(|source| ReadError::Parquet {
            key: key.to_owned(),
            source,
        })
}

/// A string column of a frame read from `key`, borrowed (no copy of its values).
pub fn str_column<'a>(
    df: &'a DataFrame,
    column: &str,
    key: &str,
) -> Result<&'a StringChunked, ReadError> {
    df.column(column)
        .and_then(|c| c.str())
        .map_err(|source| ReadError::Parquet {
            key: key.to_owned(),
            source,
        })
}

/// The values of a string column of a frame read from `key`.
pub fn strings(df: &DataFrame, column: &str, key: &str) -> Result<Vec<Option<String>>, ReadError> {
    let ca = str_column(df, column, key)?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).map(str::to_owned))
        .collect())
}
