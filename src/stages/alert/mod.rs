//! The alert stage: quality verdicts (the quality stage's on-success destination), failure
//! records (every function's on-failure destination) and schedule inputs → deduplicated,
//! digested pages through a notifier (SNS email; the lake's outbox locally).

mod arrivals;
pub mod config;
pub mod request;
pub mod service;
pub mod sla;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::AlertConfig;
pub use request::{AlertRequest, InputError, parse};
pub use service::{AlertError, AlertOutcome, AlertResponse, AlertService, AlertSettings};

use crate::alert::SnsNotifier;
use crate::config::ConfigError;
use crate::contract::Registry;
use crate::error::Retryable;
use crate::metrics::{MetricSet, flag};
use crate::stages::{RequestError, Stage};
use crate::storage::S3Store;

impl AlertService {
    /// The Lambda's service: state in the data bucket, pages to the SNS topic. (Alerts need
    /// no contracts; the registry is taken so every entry point has the same shape.)
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let config = AlertConfig::from_env(|name| std::env::var(name).ok())?;
        let state = Arc::new(S3Store::new(crate::aws::s3_client(sdk), &config.bucket));
        let notifier = Arc::new(SnsNotifier::new(
            crate::aws::sns_client(sdk),
            &config.topic_arn,
        ));
        Ok(AlertService::new(state, notifier, config.settings).with_registry(registry))
    }
}

impl Retryable for AlertError {
    fn is_retryable(&self) -> bool {
        match self {
            AlertError::Notify(e) => e.is_retryable(),
            AlertError::Storage(e) => e.is_retryable(),
            AlertError::State(e) => e.is_retryable(),
        }
    }
}

#[async_trait]
impl Stage for AlertService {
    const NAME: &'static str = "Alert";
    type Request = Vec<AlertRequest>;
    type Response = AlertResponse;
    type Error = AlertError;

    fn request(event: serde_json::Value) -> Result<Vec<AlertRequest>, RequestError> {
        parse(&event).map_err(|e| RequestError(e.to_string()))
    }

    async fn run(
        &self,
        requests: Vec<AlertRequest>,
        now: DateTime<Utc>,
    ) -> Result<AlertResponse, AlertError> {
        self.handle_all(requests, now).await
    }

    /// Alerts sent, suppressed and held, and `SlaBreaches` (an SLA alert in any of those
    /// states): the SLA alarm fires on it even if the email itself is deduplicated.
    fn metrics(response: &AlertResponse) -> Vec<MetricSet> {
        let mut sent = 0;
        let mut suppressed = 0;
        let mut queued = 0;
        let mut sla = 0;
        for outcome in &response.outcomes {
            let alert_type = match outcome {
                AlertOutcome::Sent { alert_type, .. } => {
                    sent += 1;
                    Some(alert_type)
                }
                AlertOutcome::DigestSent { .. } => {
                    sent += 1;
                    None
                }
                AlertOutcome::Suppressed { alert_type, .. } => {
                    suppressed += 1;
                    Some(alert_type)
                }
                AlertOutcome::Queued { alert_type, .. } => {
                    queued += 1;
                    Some(alert_type)
                }
                _ => None,
            };
            sla += flag(alert_type.is_some_and(|t| t == "sla_breach"));
        }
        vec![
            MetricSet::new("alert", "all")
                .with("AlertsSent", sent)
                .with("AlertsSuppressed", suppressed)
                .with("AlertsQueued", queued)
                .with("SlaBreaches", sla),
        ]
    }
}
