//! The catalog port: table and partition registration, with a Glue Data Catalog adapter (so
//! Athena and Redshift Spectrum query silver with no crawler) and a local JSON one.

pub mod defs;
mod glue;
mod local;

use crate::error::Retryable;
use async_trait::async_trait;

pub use defs::{
    ColumnDef, PartitionDef, TableDef, daily_kpis_table, gold_month_partition, gold_tables,
    manifest_partitions, month_partition, payment_methods_daily_table, silver_table,
};
pub use glue::GlueCatalog;
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
}
