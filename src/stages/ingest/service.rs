//! The ingest stage: each named object becomes a batch (silver, quarantine, manifest) and its
//! partitions are registered in the catalog. Every object is attempted; failures are reported
//! together.

use std::sync::Arc;

use serde::Serialize;
use tracing::info;

use super::request::IngestRequest;
use crate::catalog::{self, Catalog, CatalogError};
use crate::contract::Registry;
use crate::error::Retryable;
use crate::ingest::{IngestError, IngestOutcome, IngestSettings, Ingestor};
use crate::manifest::{BatchSummary, Manifest};
use crate::stages::{ObjectRef, ObjectsError, StoreFactory, each_object};
use crate::storage::root_uri;

#[derive(Debug, Clone, Serialize)]
pub struct IngestResponse {
    pub batches: Vec<BatchSummary>,
}

/// Why one object could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestFailure {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("ingested, but registering its partitions failed: {0}")]
    Catalog(#[from] CatalogError),
}

impl Retryable for IngestFailure {
    fn is_retryable(&self) -> bool {
        match self {
            IngestFailure::Ingest(e) => e.is_retryable(),
            // The batch is committed; a retry replays it and registers again.
            IngestFailure::Catalog(e) => e.is_retryable(),
        }
    }
}

pub type IngestEventError = ObjectsError<IngestFailure>;

pub struct IngestService {
    stores: StoreFactory,
    registry: Arc<Registry>,
    settings: IngestSettings,
    catalog: Option<Arc<dyn Catalog>>,
    tables_ready: tokio::sync::OnceCell<()>,
}

impl IngestService {
    /// A service whose objects live in the stores `stores` returns.
    pub fn new(stores: StoreFactory, registry: Arc<Registry>, settings: IngestSettings) -> Self {
        IngestService {
            stores,
            registry,
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

    pub fn settings_mut(&mut self) -> &mut IngestSettings {
        &mut self.settings
    }

    /// Makes the batch's partitions queryable. Also run for replays: a failed registration
    /// fails the invocation, and its retry finds the manifest and registers again.
    async fn register(&self, root: &str, manifest: &Manifest) -> Result<usize, CatalogError> {
        let Some(cat) = &self.catalog else {
            return Ok(0);
        };
        self.tables_ready
            .get_or_try_init(|| async {
                let mut tables: Vec<_> = self
                    .registry
                    .iter()
                    .map(|c| catalog::silver_table(c, root))
                    .collect();
                tables.extend(catalog::gold_tables(root));
                cat.ensure_tables(&tables).await
            })
            .await?;
        cat.add_partitions(
            &manifest.dataset,
            &catalog::manifest_partitions(manifest, root),
        )
        .await
    }

    /// Ingests one object and registers its partitions.
    pub async fn ingest_object(&self, object: &ObjectRef) -> Result<IngestOutcome, IngestFailure> {
        let store = (self.stores)(&object.bucket);
        let ingestor = Ingestor::new(store.clone(), self.registry.clone(), self.settings.clone());
        let outcome = ingestor.ingest(&object.key).await?;
        let added = self
            .register(&root_uri(store.as_ref()), &outcome.manifest)
            .await?;
        if added > 0 {
            info!(dataset = %outcome.manifest.dataset, added, "partitions registered");
        }
        let m = &outcome.manifest;
        info!(
            source = %m.source.uri,
            dataset = %m.dataset,
            batch_id = %m.batch_id,
            status = ?m.status,
            rows_read = m.rows_read,
            rows_written = m.rows_written,
            rows_rejected = m.rows_rejected,
            duplicates_dropped = m.duplicates_dropped,
            replayed = outcome.replayed,
            "object ingested"
        );
        Ok(outcome)
    }

    /// Ingests every object of the request; one outcome per ingested object.
    pub async fn ingest(
        &self,
        request: IngestRequest,
    ) -> Result<Vec<IngestOutcome>, IngestEventError> {
        each_object(request.objects, |object| async move {
            self.ingest_object(&object).await.map(Some)
        })
        .await
    }

    pub async fn handle(&self, request: IngestRequest) -> Result<IngestResponse, IngestEventError> {
        let batches = self
            .ingest(request)
            .await?
            .iter()
            .map(|o| BatchSummary::new(&o.manifest, o.replayed))
            .collect();
        Ok(IngestResponse { batches })
    }
}
