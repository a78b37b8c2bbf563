//! The aggregate stage: at 02:00 UTC (or for a backfill range) daily KPIs and payment method
//! counts from silver into `gold/daily_kpis/` and `gold/payment_methods_daily/` (a month per
//! object), registered in the catalog, and the HTML KPI report into `gold/report/`.

pub mod config;
pub mod nightly;
pub mod request;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::{AggregateConfig, nightly_group_bytes};
pub use request::AggregateRequest;
pub use service::{AggregateError, AggregateReport, AggregateRun, Aggregator};

use crate::catalog::GlueCatalog;
use crate::config::ConfigError;
use crate::contract::Registry;
use crate::layout;
use crate::metrics::MetricSet;
use crate::stages::{RequestError, Stage};
use crate::storage::S3Store;

impl Aggregator {
    /// The Lambda's service: silver and gold in `LAKE_BUCKET`, months into Glue when
    /// `GLUE_DATABASE` is set.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let config = AggregateConfig::from_env(|name| std::env::var(name).ok())?;
        let store = Arc::new(S3Store::new(crate::aws::s3_client(sdk), &config.bucket));
        let mut aggregator =
            Aggregator::new(store, registry, config.work_dir).with_group_bytes(config.group_bytes);
        if let Some(database) = config.glue_database {
            let glue = GlueCatalog::new(crate::aws::glue_client(sdk), database);
            aggregator = aggregator.with_catalog(Arc::new(glue));
        }
        Ok(aggregator)
    }
}

#[async_trait]
impl Stage for Aggregator {
    const NAME: &'static str = "Aggregate";
    type Request = AggregateRequest;
    type Response = AggregateReport;
    type Error = AggregateError;

    fn request(event: serde_json::Value) -> Result<AggregateRequest, RequestError> {
        AggregateRequest::from_event(&event)
    }

    async fn run(
        &self,
        request: AggregateRequest,
        now: DateTime<Utc>,
    ) -> Result<AggregateReport, AggregateError> {
        Ok(self.aggregate_at(request, now).await?.report)
    }

    fn metrics(report: &AggregateReport) -> Vec<MetricSet> {
        vec![
            MetricSet::new("aggregate", layout::DAILY_KPIS)
                .with("KpiRows", report.kpi_rows as u64)
                .with("MonthsWritten", report.months_written.len() as u64)
                .with("NewBatches", report.new_batches as u64),
        ]
    }
}
