//! The compact stage: every night, each dataset's partitions that accumulated many small files
//! are rewritten into one file (see [`crate::compact`] for what it may touch and why a crash
//! leaves readers whole). The schedule runs after the load, which is what makes a batch's files
//! eligible (its loaded marker).

use std::sync::Arc;

use serde::Serialize;

use super::request::CompactRequest;
use crate::compact::{CompactError, CompactionReport, Compactor};
use crate::contract::Registry;
use crate::storage::ObjectStore;

/// What one dataset's compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetCompaction {
    pub dataset: String,
    pub report: CompactionReport,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactResponse {
    pub datasets: Vec<DatasetCompaction>,
}

#[derive(Debug, Clone)]
pub struct CompactService {
    compactor: Compactor,
    registry: Arc<Registry>,
}

impl CompactService {
    pub fn new(store: Arc<dyn ObjectStore>, registry: Arc<Registry>, min_files: usize) -> Self {
        CompactService {
            compactor: Compactor::new(store, registry.clone()).with_min_files(min_files),
            registry,
        }
    }

    /// Compacts the datasets the request names, parents first. A dataset that fails stops the
    /// run (retried whole: what was compacted is not compacted again, and an interrupted
    /// partition is finished by its record).
    pub async fn handle(&self, request: CompactRequest) -> Result<CompactResponse, CompactError> {
        let datasets: Vec<String> = match request {
            CompactRequest::Dataset(d) => vec![d],
            CompactRequest::All => self
                .registry
                .load_order()
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        };
        let mut response = CompactResponse::default();
        for dataset in datasets {
            let report = self.compactor.compact(&dataset).await?;
            tracing::info!(
                dataset,
                partitions = report.partitions,
                files_in = report.files_in,
                rows_out = report.rows_out,
                resumed = report.resumed,
                "dataset compacted"
            );
            response
                .datasets
                .push(DatasetCompaction { dataset, report });
        }
        Ok(response)
    }
}
