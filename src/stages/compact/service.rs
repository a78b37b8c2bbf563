//! The compact stage: every night, each dataset's partitions that accumulated many small files
//! are rewritten into one file (see [`crate::compact`] for what it may touch and why a crash
//! leaves readers whole). The schedule runs after the load, which is what makes a batch's files
//! eligible (its loaded marker). With a catalog, the run then removes the silver partitions
//! whose files the `processed/` lifecycle rule expired ([`crate::catalog::PartitionSweep`]).
//! A dataset with a key index also has the night's waiting batch keys merged into its shards
//! ([`KeyIndex::merge`]), so ingest only ever writes its own batch's keys.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::request::CompactRequest;
use crate::catalog::{Catalog, ExpiredPartitions, PartitionSweep};
use crate::compact::{CompactError, CompactionReport, Compactor};
use crate::contract::Registry;
use crate::quality::key_index::{self, IndexMerge, KeyIndex};
use crate::storage::ObjectStore;

/// What one dataset's compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetCompaction {
    pub dataset: String,
    pub report: CompactionReport,
    /// The catalog sweep of its table: `None` without a catalog or for a dataset without a
    /// date partition.
    pub expired_partitions: Option<ExpiredPartitions>,
    /// The key index deltas merged: `None` for a dataset without a key index.
    pub index_merge: Option<IndexMerge>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactResponse {
    pub datasets: Vec<DatasetCompaction>,
}

#[derive(Debug, Clone)]
pub struct CompactService {
    compactor: Compactor,
    registry: Arc<Registry>,
    store: Arc<dyn ObjectStore>,
    sweep: Option<PartitionSweep>,
}

impl CompactService {
    /// Compacts partitions of `min_files` eligible files, or of two once no file came for
    /// `settle_hours` ([`Compactor`]).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        registry: Arc<Registry>,
        min_files: usize,
        settle_hours: u32,
    ) -> Self {
        CompactService {
            compactor: Compactor::new(store.clone(), registry.clone())
                .with_min_files(min_files)
                .with_settle_hours(settle_hours),
            registry,
            store,
            sweep: None,
        }
    }

    /// Also removes the silver partitions whose files expired from `catalog`.
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.sweep = Some(PartitionSweep::new(catalog, self.store.clone()));
        self
    }

    /// Compacts the datasets the request names, parents first, then sweeps their expired
    /// catalog partitions (after every compaction, so a catalog outage does not hold up the
    /// files). A dataset that fails stops the run (retried whole: what was compacted is not
    /// compacted again, an interrupted partition is finished by its record, and a partition
    /// already removed from the catalog stays removed).
    pub async fn handle(
        &self,
        request: CompactRequest,
        now: DateTime<Utc>,
    ) -> Result<CompactResponse, CompactError> {
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
            let report = self.compactor.compact(&dataset, now).await?;
            let index_merge = if key_index::is_indexed(&self.registry, &dataset) {
                Some(KeyIndex::new(self.store.clone()).merge(&dataset).await?)
            } else {
                None
            };
            tracing::info!(
                dataset,
                partitions = report.partitions,
                files_in = report.files_in,
                rows_out = report.rows_out,
                resumed = report.resumed,
                "dataset compacted"
            );
            response.datasets.push(DatasetCompaction {
                dataset,
                report,
                expired_partitions: None,
                index_merge,
            });
        }
        if let Some(sweep) = &self.sweep {
            for d in &mut response.datasets {
                // The compaction above already refused an unknown dataset.
                let contract = self
                    .registry
                    .get(&d.dataset)
                    .ok_or_else(|| CompactError::UnknownDataset(d.dataset.clone()))?;
                d.expired_partitions = sweep.sweep(contract, now.date_naive()).await?;
            }
        }
        Ok(response)
    }
}
