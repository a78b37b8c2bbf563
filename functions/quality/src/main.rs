//! The quality Lambda: a manifest landed under `manifests/` → `shoplake::handlers::quality`.
//! Its response goes to the alert function through the on-success destination.

use aws_lambda_events::s3::S3Event;
use lambda_runtime::{Diagnostic, LambdaEvent, run, service_fn};
use shoplake::handlers::quality::QualityHandler;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoplake::telemetry::init_lambda();
    let sdk = shoplake::aws::sdk_config().await;
    let handler = QualityHandler::for_s3(shoplake::aws::s3_client(&sdk));
    let handler = &handler;
    run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        handler
            .handle(&event.payload, chrono::Utc::now())
            .await
            .inspect(|r| shoplake::metrics::emit(&shoplake::metrics::for_quality(r)))
            .map_err(|e| Diagnostic {
                error_type: if e.is_retryable() {
                    "QualityRetryable"
                } else {
                    "QualityInputError"
                }
                .into(),
                error_message: e.to_string(),
            })
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
