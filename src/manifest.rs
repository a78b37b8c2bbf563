//! The manifest: the record of one ingested source object, written last so its presence means
//! the batch is complete. The quality gate, the loader and on-call read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Rows were written, rejected or dropped as duplicates, as counted.
    Succeeded,
    /// The whole file was quarantined unread (e.g. a required column is missing).
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceObject {
    pub uri: String,
    pub key: String,
    pub etag: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_id: Option<String>,
    pub size: u64,
    pub last_modified: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    pub key: String,
    /// The hive partition path, e.g. `order_date=2026-11-21/customer_region=EU`.
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSummary {
    pub path: String,
    pub values: BTreeMap<String, String>,
    pub rows: u64,
}

/// Per-column facts about the written rows, so quality checks need not re-read the Parquet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// Nulls per optional column.
    pub null_counts: BTreeMap<String, u64>,
    /// Rows per value of each enum column.
    pub value_counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// Newest value of the version column (RFC 3339, UTC).
    pub max_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub batch_id: String,
    pub dataset: String,
    pub status: BatchStatus,
    /// Why the file was rejected whole; null on success.
    pub error: Option<String>,
    pub source: SourceObject,
    /// When this batch was first ingested (kept on re-runs so outputs are reproducible).
    pub ingested_at: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    pub duplicates_dropped: u64,
    pub partitions: Vec<PartitionSummary>,
    pub files: Vec<WrittenFile>,
    /// `quarantine/…/rejected_rows.csv` when rows were rejected.
    pub rejects_file: Option<String>,
    /// `quarantine/…/<file>` when the whole file was quarantined.
    pub quarantined_source: Option<String>,
    /// Source header as normalised for matching (empty when it could not be read).
    pub source_columns: Vec<String>,
    pub schema_drift: SchemaDrift,
    pub column_stats: ColumnStats,
    /// Rejected rows per reason, the quoted values left out (`currency: does not match …`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reject_reasons: BTreeMap<String, u64>,
}

impl Manifest {
    /// `rows_read = rows_written + rows_rejected + duplicates_dropped`: no row is unaccounted for.
    pub fn accounting_holds(&self) -> bool {
        self.rows_read == self.rows_written + self.rows_rejected + self.duplicates_dropped
    }

    pub fn partition_paths(&self) -> Vec<&str> {
        self.partitions.iter().map(|p| p.path.as_str()).collect()
    }
}

/// Files an ingest is about to write, and those earlier attempts may have left, recorded before
/// the first upload so that a retry after a crash can remove whatever the crashed attempts left
/// that the retry does not rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOutputs {
    pub keys: Vec<String>,
}

/// The short form of a manifest that `lake ingest` prints and the ingest Lambda returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub source: String,
    pub dataset: String,
    pub batch_id: String,
    pub status: BatchStatus,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    pub duplicates_dropped: u64,
    pub partitions: Vec<String>,
    pub files: usize,
    pub rejects_file: Option<String>,
    pub quarantined_source: Option<String>,
    pub error: Option<String>,
    pub schema_drift: SchemaDrift,
    /// True when the source had been ingested already and nothing was rewritten.
    pub replayed: bool,
}

impl BatchSummary {
    pub fn new(m: &Manifest, replayed: bool) -> Self {
        BatchSummary {
            source: m.source.uri.clone(),
            dataset: m.dataset.clone(),
            batch_id: m.batch_id.clone(),
            status: m.status,
            rows_read: m.rows_read,
            rows_written: m.rows_written,
            rows_rejected: m.rows_rejected,
            duplicates_dropped: m.duplicates_dropped,
            partitions: m.partitions.iter().map(|p| p.path.clone()).collect(),
            files: m.files.len(),
            rejects_file: m.rejects_file.clone(),
            quarantined_source: m.quarantined_source.clone(),
            error: m.error.clone(),
            schema_drift: m.schema_drift.clone(),
            replayed,
        }
    }
}

/// How the source header differs from the contract without being fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaDrift {
    /// Source columns the contract does not know (ignored).
    pub extra_columns: Vec<String>,
    /// Optional contract columns absent from the source (stored as null).
    pub missing_columns: Vec<String>,
}

impl SchemaDrift {
    pub fn is_empty(&self) -> bool {
        self.extra_columns.is_empty() && self.missing_columns.is_empty()
    }
}
