//! The alert Lambda: quality verdicts (on-success destination of `quality`), failure records
//! (on-failure destination of every function) and schedule inputs → SNS email.
//! Configuration: see `shoplake::config` (ALERT_TOPIC_ARN, LAKE_BUCKET, ALERT_*).

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, run, service_fn};
use shoplake::alert::{AlertService, SnsNotifier};
use shoplake::storage::S3Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoplake::telemetry::init_lambda();
    let config = shoplake::config::alert_config(|name| std::env::var(name).ok())?;
    let sdk = shoplake::aws::sdk_config().await;
    let state = Arc::new(S3Store::new(shoplake::aws::s3_client(&sdk), &config.bucket));
    let notifier = Arc::new(SnsNotifier::new(
        shoplake::aws::sns_client(&sdk),
        &config.topic_arn,
    ));
    let service = AlertService::new(state, notifier, config.settings);
    let service = &service;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            shoplake::handlers::alert::handle(service, &event.payload, chrono::Utc::now())
                .await
                .inspect(|r| shoplake::metrics::emit(&shoplake::metrics::for_alert(r)))
                .map_err(|e| Diagnostic {
                    error_type: "AlertError".into(),
                    error_message: e.to_string(),
                })
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
