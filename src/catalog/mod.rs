//! The catalog port: table and partition registration, with a Glue Data Catalog adapter (so
//! Athena and Redshift Spectrum query silver with no crawler) and a local JSON one.

pub mod defs;
pub mod expiry;
mod glue;
mod local;

use crate::error::Retryable;
use async_trait::async_trait;
use chrono::NaiveDate;

pub use defs::{
    ColumnDef, PartitionDef, TableDef, daily_kpis_table, gold_month_partition, gold_tables,
    manifest_partitions, month_partition, payment_methods_daily_table, silver_table,
};
pub use expiry::{ExpiredPartitions, PartitionSweep};
pub use glue::{GlueCatalog, MAX_PARTITIONS_PER_DELETE};
pub use local::LocalCatalog;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("Glue {operation} {target} failed: {message}")]
    Glue {
        operation: &'static str,
        target: String,
        message: String,
        retryable: bool,
    },
    #[error("{failed} partition(s) of {table} could not be registered: {details}")]
    Partitions {
        table: String,
        failed: usize,
        details: String,
    },
    #[error(
        "{failed} partition(s) of {table} could not be removed from the catalog: {details}. They stay registered (queries see them empty) and the next compact run (nightly, or `lake compact`) tries again; if the same error repeats, give the compact role glue:BatchDeletePartition on the table or delete them in the Glue console"
    )]
    PartitionsNotRemoved {
        table: String,
        failed: usize,
        details: String,
        /// Every failure was a throttle or an internal error: worth another attempt.
        retryable: bool,
    },
    #[error("table {table} has no partition key {key}")]
    UnknownPartitionKey { table: String, key: String },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl Retryable for CatalogError {
    fn is_retryable(&self) -> bool {
        match self {
            CatalogError::Glue { retryable, .. } => *retryable,
            CatalogError::Partitions { .. } => true,
            CatalogError::PartitionsNotRemoved { retryable, .. } => *retryable,
            CatalogError::UnknownPartitionKey { .. } => false,
            CatalogError::Storage(e) => e.is_retryable(),
            CatalogError::State(e) => e.is_retryable(),
        }
    }
}

#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// Creates the database and the tables if missing; updates definitions that changed.
    async fn ensure_tables(&self, tables: &[TableDef]) -> Result<(), CatalogError>;
    /// Registers partitions of `table`; ones that exist already count as registered.
    /// Returns how many were new.
    async fn add_partitions(
        &self,
        table: &str,
        partitions: &[PartitionDef],
    ) -> Result<usize, CatalogError>;
    /// Partition values of `table`, sorted.
    async fn partitions(&self, table: &str) -> Result<Vec<Vec<String>>, CatalogError>;
    /// Partition values of `table` whose `date_key` (a `date` partition key, values
    /// `YYYY-MM-DD`) is before `before`, sorted; none when the table does not exist. Glue
    /// filters on its side (`GetPartitions` with an expression), so what comes back is the old
    /// partitions, not the table's whole history.
    async fn partitions_before(
        &self,
        table: &str,
        date_key: &str,
        before: NaiveDate,
    ) -> Result<Vec<Vec<String>>, CatalogError>;
    /// Removes partitions of `table`, given by their values; ones already gone (or a table that
    /// is gone) count as removed before, so a re-run is harmless. Returns how many this call
    /// removed.
    async fn delete_partitions(
        &self,
        table: &str,
        partitions: &[Vec<String>],
    ) -> Result<usize, CatalogError>;
}
