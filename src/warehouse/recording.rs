//! A [`SqlExecutor`] that runs nothing and remembers every batch it was given: what
//! `lake load --dry-run` prints, and what tests of the SQL a stage issues inspect.

use std::sync::Mutex;

use async_trait::async_trait;

use super::data_api::{SqlExecutor, WarehouseError};

#[derive(Debug, Default)]
pub struct RecordingExecutor {
    batches: Mutex<Vec<Vec<String>>>,
}

impl RecordingExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every batch of statements received, in order (each would be one transaction).
    pub fn batches(&self) -> Vec<Vec<String>> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl SqlExecutor for RecordingExecutor {
    async fn execute_batch(&self, sqls: &[String]) -> Result<(), WarehouseError> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sqls.to_vec());
        Ok(())
    }

    /// Every lookup answers 0: the ledger of a warehouse that is not there is empty, so a dry
    /// run shows the loads of every batch the lake has not marked as loaded.
    async fn query_i64(&self, _sql: &str) -> Result<i64, WarehouseError> {
        Ok(0)
    }

    /// No rows: tables that are not there have no columns, so a dry run issues no ALTER TABLE.
    async fn query_rows(&self, _sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        Ok(Vec::new())
    }
}
