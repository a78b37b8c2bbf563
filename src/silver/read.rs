//! Reading silver: a dataset's files under a local directory as one lazy frame (gold), and the
//! named columns of one file from any store (quality).

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

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
    let partitions = partition_schema(contract);
    if std::fs::read_dir(&dir).is_err() {
        let mut schema = silver_schema(contract)?;
        for (name, dtype) in partitions.iter() {
            schema.with_column(name.clone(), dtype.clone());
        }
        return Ok(DataFrame::empty_with_schema(&schema).lazy());
    }
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            schema: Some(Arc::new(partitions)),
            ..HiveOptions::new_enabled()
        },
        ..Default::default()
    };
    let glob = format!("{}/**/*.parquet", dir.display());
    LazyFrame::scan_parquet(PlRefPath::new(glob), args)
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
    ParquetReader::new(Cursor::new(bytes))
        .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
        .finish()
        .map_err(|source| ReadError::Parquet {
            key: key.to_owned(),
            source,
        })
}

/// The values of a string column of a frame read from `key`.
pub fn strings(df: &DataFrame, column: &str, key: &str) -> Result<Vec<Option<String>>, ReadError> {
    let ca = df
        .column(column)
        .and_then(|c| c.str().cloned())
        .map_err(|source| ReadError::Parquet {
            key: key.to_owned(),
            source,
        })?;
    Ok((0..ca.len())
        .map(|i| ca.get(i).map(str::to_owned))
        .collect())
}
