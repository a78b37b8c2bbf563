//! Silver: the contract's columns minus those that live in the partition path, plus lineage
//! columns; money as decimal(p,s), timestamps as UTC microseconds. Ingest builds its frames here
//! and writes them; gold, quality and the catalogs read them through [`read`] and the schema.

pub mod file_keys;
pub(crate) mod latest;
pub mod read;

use polars::prelude::*;

use crate::columns::Batch;
use crate::contract::{ColumnKind, Contract, PartitionTransform};

pub const INGESTED_AT: &str = "_ingested_at";
pub const SOURCE_FILE: &str = "_source_file";
pub const BATCH_ID: &str = "_batch_id";

/// Lineage written into every row of a batch.
#[derive(Debug, Clone)]
pub struct Lineage<'a> {
    pub ingested_at_micros: i64,
    pub source_uri: &'a str,
    pub batch_id: &'a str,
}

fn utc_datetime(ca: Int64Chunked) -> Series {
    ca.into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series()
}

/// A batch's lineage columns at some length, sliced for each frame: they hold the same value in
/// every row, and built per frame they took 40 bytes a row (16 per text column) of fresh memory,
/// touched once.
pub struct LineageColumns {
    columns: [Column; 3],
    len: usize,
}

impl LineageColumns {
    pub fn new(lineage: &Lineage<'_>, len: usize) -> Self {
        let columns = [
            utc_datetime(Int64Chunked::full(
                INGESTED_AT.into(),
                lineage.ingested_at_micros,
                len,
            ))
            .into_column(),
            StringChunked::full(SOURCE_FILE.into(), lineage.source_uri, len)
                .into_series()
                .into_column(),
            StringChunked::full(BATCH_ID.into(), lineage.batch_id, len)
                .into_series()
                .into_column(),
        ];
        LineageColumns { columns, len }
    }

    /// Rows each column holds; frames of up to this many rows can be built.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The selected rows of `batch` as a DataFrame with the silver schema.
pub fn to_dataframe(
    contract: &Contract,
    batch: &Batch,
    rows: &[u32],
    lineage: &Lineage<'_>,
) -> PolarsResult<DataFrame> {
    to_dataframe_with(
        contract,
        batch,
        rows,
        &LineageColumns::new(lineage, rows.len()),
    )
}

/// [`to_dataframe`] with lineage columns built beforehand, at least `rows.len()` long.
pub fn to_dataframe_with(
    contract: &Contract,
    batch: &Batch,
    rows: &[u32],
    lineage: &LineageColumns,
) -> PolarsResult<DataFrame> {
    let n = rows.len();
    assert!(n <= lineage.len, "lineage columns shorter than the frame");
    let mut columns: Vec<Column> = Vec::new();
    for (idx, column) in contract.file_columns() {
        let name = PlSmallStr::from(column.name.as_str());
        let pick = rows.iter().map(|&r| r as usize);
        let series = match &column.kind {
            ColumnKind::String { .. } | ColumnKind::Enum { .. } => {
                StringChunked::from_iter_options(name, pick.map(|r| batch.str(idx, r)))
                    .into_series()
            }
            ColumnKind::Int32 { .. } => {
                Int32Chunked::from_iter_options(name, pick.map(|r| batch.i32(idx, r))).into_series()
            }
            ColumnKind::Date => {
                Int32Chunked::from_iter_options(name, pick.map(|r| batch.i32(idx, r)))
                    .into_date()
                    .into_series()
            }
            ColumnKind::Timestamp => utc_datetime(Int64Chunked::from_iter_options(
                name,
                pick.map(|r| batch.i64(idx, r)),
            )),
            ColumnKind::Decimal {
                precision, scale, ..
            } => Int128Chunked::from_iter_options(
                name,
                pick.map(|r| batch.i64(idx, r).map(i128::from)),
            )
            .into_decimal(usize::from(*precision), usize::from(*scale))?
            .into_series(),
        };
        columns.push(series.into_column());
    }
    columns.extend(lineage.columns.iter().map(|c| {
        if c.len() == n {
            c.clone()
        } else {
            c.slice(0, n)
        }
    }));
    DataFrame::new(n, columns)
}

/// The Parquet schema of a dataset's silver files, for catalogs and warehouse DDL.
pub fn silver_schema(contract: &Contract) -> PolarsResult<Schema> {
    let empty = Batch::new(contract);
    let lineage = Lineage {
        ingested_at_micros: 0,
        source_uri: "",
        batch_id: "",
    };
    Ok(to_dataframe(contract, &empty, &[], &lineage)?
        .schema()
        .as_ref()
        .clone())
}

/// The partition columns of a dataset as hive paths carry them, typed by the contract.
pub fn partition_schema(contract: &Contract) -> Schema {
    contract
        .partitions
        .iter()
        .map(|p| {
            let dtype = match p.transform {
                PartitionTransform::UtcDate => DataType::Date,
                PartitionTransform::Identity => DataType::String,
            };
            (p.name.as_str().into(), dtype)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;

    #[test]
    fn silver_schema_has_exact_types_and_no_partition_columns() {
        let reg = Registry::builtin();
        let schema = silver_schema(reg.get("orders").unwrap()).unwrap();
        let got: Vec<(String, String)> = schema
            .iter()
            .map(|(n, t)| (n.to_string(), format!("{t:?}")))
            .collect();
        let want = [
            ("order_id", "String"),
            ("customer_id", "String"),
            ("order_ts", "Datetime('μs', 'UTC')"),
            ("status", "String"),
            ("currency", "String"),
            ("total_amount", "Decimal(18, 2)"),
            ("item_count", "Int32"),
            ("updated_at", "Datetime('μs', 'UTC')"),
            ("_ingested_at", "Datetime('μs', 'UTC')"),
            ("_source_file", "String"),
            ("_batch_id", "String"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        let customers = silver_schema(reg.get("customers").unwrap()).unwrap();
        assert!(customers.get("customer_region").is_none());
        assert!(
            customers
                .get("signup_date")
                .is_some_and(|t| *t == DataType::Date)
        );
    }
}
