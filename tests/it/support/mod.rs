//! Shared test support: the moto server, clients pointed at it, and helpers.

pub mod moto;
pub mod store_suite;

use std::path::Path;

use polars::prelude::*;

/// Reads one Parquet file into a DataFrame.
pub fn read_parquet(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().unwrap()
}

/// Reads Parquet bytes into a DataFrame.
pub fn read_parquet_bytes(bytes: &[u8]) -> DataFrame {
    ParquetReader::new(std::io::Cursor::new(bytes.to_vec()))
        .finish()
        .unwrap()
}

/// A bucket name unique to one test.
pub fn bucket_name(test: &str) -> String {
    format!("{}-{}", test.replace('_', "-"), std::process::id())
}
