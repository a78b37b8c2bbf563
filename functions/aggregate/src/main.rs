//! The aggregate Lambda: the 02:00 UTC schedule (months touched since the last run) or
//! `{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}` (backfill) → `shoplake::gold::Aggregator`.
//! Configuration: LAKE_BUCKET, GLUE_DATABASE (optional), LAKE_WORK_DIR (default /tmp).

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, run, service_fn};
use shoplake::gold::{AggregateRequest, Aggregator};
use shoplake::storage::S3Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoplake::telemetry::init_lambda();
    let bucket = std::env::var(shoplake::config::LAKE_BUCKET)
        .map_err(|_| anyhow::anyhow!("LAKE_BUCKET is required"))?;
    let work = std::env::var(shoplake::config::WORK_DIR).unwrap_or_else(|_| "/tmp".into());
    let sdk = shoplake::aws::sdk_config().await;
    let store = Arc::new(S3Store::new(shoplake::aws::s3_client(&sdk), &bucket));
    let mut aggregator = Aggregator::new(store, format!("{work}/silver"));
    if let Ok(database) = std::env::var(shoplake::config::GLUE_DATABASE) {
        let glue = shoplake::catalog::GlueCatalog::new(shoplake::aws::glue_client(&sdk), database);
        aggregator = aggregator.with_catalog(Arc::new(glue), format!("s3://{bucket}"));
    }
    let aggregator = &aggregator;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let input_error = |message: String| Diagnostic {
                error_type: "AggregateInputError".into(),
                error_message: message,
            };
            let request = AggregateRequest::from_event(&event.payload).map_err(input_error)?;
            aggregator
                .run(request)
                .await
                .inspect(|r| shoplake::metrics::emit(&shoplake::metrics::for_aggregate(r)))
                .map_err(|e| Diagnostic {
                    error_type: "AggregateError".into(),
                    error_message: e.to_string(),
                })
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
