//! The ingest Lambda: S3 ObjectCreated events under `raw/` → `shoplake::handlers::ingest`.
//! Configuration: see `shoplake::config` (LAKE_MEMORY_BUDGET_MB, LAKE_WORK_DIR, GLUE_DATABASE) and the
//! standard AWS variables (AWS_REGION, AWS_ENDPOINT_URL).

use aws_lambda_events::s3::S3Event;
use lambda_runtime::{Diagnostic, LambdaEvent, run, service_fn};
use shoplake::catalog::GlueCatalog;
use shoplake::handlers::ingest::IngestHandler;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoplake::telemetry::init_lambda();
    let settings = shoplake::config::ingest_settings_from_env()?;
    let sdk = shoplake::aws::sdk_config().await;
    let mut handler = IngestHandler::for_s3(shoplake::aws::s3_client(&sdk), settings);
    if let Some(database) = std::env::var(shoplake::config::GLUE_DATABASE)
        .ok()
        .filter(|d| !d.is_empty())
    {
        let glue = GlueCatalog::new(shoplake::aws::glue_client(&sdk), database);
        handler = handler.with_catalog(std::sync::Arc::new(glue));
    }
    let handler = &handler;
    run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        handler
            .handle(&event.payload)
            .await
            .inspect(|r| shoplake::metrics::emit(&shoplake::metrics::for_ingest(r)))
            .map_err(|e| Diagnostic {
                // Lets alarms and the failure destination tell input problems from outages.
                error_type: if e.is_retryable() {
                    "IngestRetryable"
                } else {
                    "IngestInputError"
                }
                .into(),
                error_message: e.to_string(),
            })
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
