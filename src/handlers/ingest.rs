//! The ingest Lambda's logic: an S3 ObjectCreated event (one or more records) in, one batch
//! summary per object out. Every record is attempted; failures are reported together.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use serde::Serialize;
use tracing::{error, info};

use super::s3_event::{EventError, created_objects};
use crate::catalog::{self, Catalog, CatalogError};
use crate::contract::Registry;
use crate::ingest::{IngestError, IngestSettings, Ingestor};
use crate::manifest::BatchSummary;
use crate::storage::{ObjectStore, S3Store};

type StoreFactory = Box<dyn Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync>;

#[derive(Debug, Clone, Serialize)]
pub struct IngestResponse {
    pub batches: Vec<BatchSummary>,
}

/// One object the event named that could not be ingested.
#[derive(Debug)]
pub struct FailedObject {
    pub object: String,
    pub error: FailureCause,
}

#[derive(Debug, thiserror::Error)]
pub enum FailureCause {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("ingested, but registering its partitions failed: {0}")]
    Catalog(#[from] CatalogError),
}

/// Some objects of the event failed (the others were ingested and are idempotent on retry).
#[derive(Debug, thiserror::Error)]
#[error("{} of {} object(s) failed: {}", .failures.len(), .attempted, describe(.failures))]
pub struct IngestEventError {
    pub attempted: usize,
    pub failures: Vec<FailedObject>,
}

fn describe(failures: &[FailedObject]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.object, f.error))
        .collect::<Vec<_>>()
        .join(" | ")
}

impl IngestEventError {
    /// Whether a retry of the whole event could succeed.
    pub fn is_retryable(&self) -> bool {
        self.failures
            .iter()
            .any(|f| matches!(&f.error, FailureCause::Ingest(e) if e.is_retryable()))
    }
}

pub struct IngestHandler {
    store_for_bucket: StoreFactory,
    registry: Arc<Registry>,
    settings: IngestSettings,
    catalog: Option<Arc<dyn Catalog>>,
    tables_ready: tokio::sync::OnceCell<()>,
}

impl IngestHandler {
    /// A handler whose objects live in the stores `store_for_bucket` returns.
    pub fn new(
        store_for_bucket: impl Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
        settings: IngestSettings,
    ) -> Self {
        IngestHandler {
            store_for_bucket: Box::new(store_for_bucket),
            registry: Arc::new(Registry::builtin()),
            settings,
            catalog: None,
            tables_ready: tokio::sync::OnceCell::new(),
        }
    }

    /// Registers each batch's partitions in `catalog` (tables are created on first use).
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Makes the batch's partitions queryable. Also run for replays: a failed registration
    /// fails the invocation, and its retry finds the manifest and registers again.
    async fn register(
        &self,
        bucket: &str,
        manifest: &crate::manifest::Manifest,
    ) -> Result<usize, CatalogError> {
        let Some(cat) = &self.catalog else {
            return Ok(0);
        };
        let root = format!("s3://{bucket}");
        self.tables_ready
            .get_or_try_init(|| async {
                let mut tables: Vec<_> = self
                    .registry
                    .iter()
                    .map(|c| catalog::silver_table(c, &root))
                    .collect();
                tables.push(catalog::daily_kpis_table(&root));
                cat.ensure_tables(&tables).await
            })
            .await?;
        cat.add_partitions(
            &manifest.dataset,
            &catalog::manifest_partitions(manifest, &root),
        )
        .await
    }

    /// A handler reading and writing the event's bucket through S3.
    pub fn for_s3(client: aws_sdk_s3::Client, settings: IngestSettings) -> Self {
        Self::new(
            move |bucket| Arc::new(S3Store::new(client.clone(), bucket)),
            settings,
        )
    }

    pub async fn handle(&self, event: &S3Event) -> Result<IngestResponse, IngestEventError> {
        let objects = created_objects(event);
        let attempted = objects.len();
        let mut batches = Vec::new();
        let mut failures = Vec::new();
        for (index, object) in objects.into_iter().enumerate() {
            let object = match object {
                Ok(o) => o,
                Err(e) => {
                    error!(record = index, error = %e, "unusable event record");
                    failures.push(FailedObject {
                        object: format!("record {index}"),
                        error: e.into(),
                    });
                    continue;
                }
            };
            let store = (self.store_for_bucket)(&object.bucket);
            let ingestor =
                Ingestor::new(store.clone(), self.registry.clone(), self.settings.clone());
            let ingested = match ingestor.ingest(&object.key).await {
                Ok(outcome) => match self.register(&object.bucket, &outcome.manifest).await {
                    Ok(added) => {
                        if added > 0 {
                            info!(dataset = %outcome.manifest.dataset, added, "partitions registered");
                        }
                        Ok(outcome)
                    }
                    Err(e) => Err(FailureCause::from(e)),
                },
                Err(e) => Err(FailureCause::from(e)),
            };
            match ingested {
                Ok(outcome) => {
                    let summary = BatchSummary::new(&outcome.manifest, outcome.replayed);
                    info!(
                        source = %summary.source,
                        dataset = %summary.dataset,
                        batch_id = %summary.batch_id,
                        status = ?summary.status,
                        rows_read = summary.rows_read,
                        rows_written = summary.rows_written,
                        rows_rejected = summary.rows_rejected,
                        duplicates_dropped = summary.duplicates_dropped,
                        replayed = summary.replayed,
                        "object ingested"
                    );
                    batches.push(summary);
                }
                Err(e) => {
                    let uri = store.uri(&object.key);
                    error!(source = %uri, error = %e, "ingest failed");
                    failures.push(FailedObject {
                        object: uri,
                        error: e,
                    });
                }
            }
        }
        if failures.is_empty() {
            Ok(IngestResponse { batches })
        } else {
            Err(IngestEventError {
                attempted,
                failures,
            })
        }
    }
}
