//! The ingest stage: S3 `ObjectCreated` under `raw/` → contract-validated, deduplicated,
//! hive-partitioned Parquet, a quarantine file and a manifest per object.

pub mod config;
pub mod request;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::IngestConfig;
pub use request::IngestRequest;
pub use service::{IngestEventError, IngestFailure, IngestResponse, IngestService};

use crate::catalog::GlueCatalog;
use crate::config::ConfigError;
use crate::contract::Registry;
use crate::manifest::BatchStatus;
use crate::metrics::{MetricSet, flag};
use crate::stages::{RequestError, Stage, s3_stores};

impl IngestService {
    /// The Lambda's service: the event's bucket through S3, partitions into Glue when
    /// `GLUE_DATABASE` is set.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let config = IngestConfig::from_env(|name| std::env::var(name).ok())?;
        let mut service =
            IngestService::for_s3(crate::aws::s3_client(sdk), registry, config.settings);
        if let Some(database) = config.glue_database {
            let glue = GlueCatalog::new(crate::aws::glue_client(sdk), database);
            service = service.with_catalog(Arc::new(glue));
        }
        Ok(service)
    }
}

impl IngestService {
    /// A service reading and writing each event's bucket through S3.
    pub fn for_s3(
        client: aws_sdk_s3::Client,
        registry: Arc<Registry>,
        settings: crate::ingest::IngestSettings,
    ) -> Self {
        IngestService::new(s3_stores(client), registry, settings)
    }
}

#[async_trait]
impl Stage for IngestService {
    const NAME: &'static str = "Ingest";
    type Request = IngestRequest;
    type Response = IngestResponse;
    type Error = IngestEventError;

    fn request(event: serde_json::Value) -> Result<IngestRequest, RequestError> {
        IngestRequest::from_event(event)
    }

    async fn run(
        &self,
        request: IngestRequest,
        _now: DateTime<Utc>,
    ) -> Result<IngestResponse, IngestEventError> {
        self.handle(request).await
    }

    /// Rows in, out, rejected and dropped per ingested file. Replays of an already-ingested
    /// file count as `Replays` only, so redelivered events do not inflate the row counts.
    fn metrics(response: &IngestResponse) -> Vec<MetricSet> {
        response
            .batches
            .iter()
            .map(|b| {
                let set = MetricSet::new("ingest", &b.dataset);
                if b.replayed {
                    return set.with("Replays", 1);
                }
                set.with("RowsRead", b.rows_read)
                    .with("RowsWritten", b.rows_written)
                    .with("RowsRejected", b.rows_rejected)
                    .with("DuplicatesDropped", b.duplicates_dropped)
                    .with("FilesRejected", flag(b.status == BatchStatus::Rejected))
                    .with("Batches", 1)
            })
            .collect()
    }
}
