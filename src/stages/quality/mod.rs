//! The quality stage: a manifest landed → the batch is checked and its report written.

pub mod config;
pub mod request;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::QualityConfig;
pub use request::QualityRequest;
pub use service::{QualityEventError, QualityResponse, QualityService};

use crate::config::ConfigError;
use crate::contract::Registry;
use crate::metrics::{MetricSet, flag};
use crate::quality::{CheckStatus, Verdict};
use crate::stages::{RequestError, Stage, s3_stores};

impl QualityService {
    /// The Lambda's service: the event's bucket through S3.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let _config = QualityConfig::from_env(|name| std::env::var(name).ok())?;
        Ok(QualityService::for_s3(crate::aws::s3_client(sdk), registry))
    }

    /// A service reading and writing each event's bucket through S3.
    pub fn for_s3(client: aws_sdk_s3::Client, registry: Arc<Registry>) -> Self {
        QualityService::new(s3_stores(client), registry)
    }
}

#[async_trait]
impl Stage for QualityService {
    const NAME: &'static str = "Quality";
    type Request = QualityRequest;
    type Response = QualityResponse;
    type Error = QualityEventError;

    fn request(event: serde_json::Value) -> Result<QualityRequest, RequestError> {
        QualityRequest::from_event(event)
    }

    async fn run(
        &self,
        request: QualityRequest,
        now: DateTime<Utc>,
    ) -> Result<QualityResponse, QualityEventError> {
        self.handle(request, now).await
    }

    /// One set per checked batch: verdict counts and the number of failing and warning checks.
    fn metrics(response: &QualityResponse) -> Vec<MetricSet> {
        response
            .reports
            .iter()
            .map(|r| {
                let count =
                    |s: CheckStatus| r.checks.iter().filter(|c| c.status == s).count() as u64;
                MetricSet::new("quality", &r.dataset)
                    .with("BatchesChecked", 1)
                    .with("BatchesFailed", flag(r.verdict == Verdict::Fail))
                    .with("BatchesWarned", flag(r.verdict == Verdict::Warn))
                    .with("ChecksFailed", count(CheckStatus::Fail))
                    .with("ChecksWarned", count(CheckStatus::Warn))
                    .with("RowsChecked", r.rows_written)
            })
            .collect()
    }
}
