//! The load Lambda: on schedule, loads every silver batch the quality gate let through and the
//! gold months that changed into Redshift (`shoplake::warehouse::Loader`).
//! Configuration: see `shoplake::config::load_config` (REDSHIFT_*, LAKE_BUCKET).

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, run, service_fn};
use shoplake::storage::S3Store;
use shoplake::warehouse::{DataApiExecutor, Loader};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoplake::telemetry::init_lambda();
    let config = shoplake::config::load_config(|name| std::env::var(name).ok())?;
    let sdk = shoplake::aws::sdk_config().await;
    let store = Arc::new(S3Store::new(shoplake::aws::s3_client(&sdk), &config.bucket));
    let executor = Arc::new(DataApiExecutor::new(
        shoplake::aws::redshift_data_client(&sdk),
        config.data_api,
    ));
    let loader = Loader::new(store, executor, config.warehouse);
    let loader = &loader;
    run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let fail = |e: shoplake::warehouse::LoadError| Diagnostic {
                error_type: if e.is_retryable() {
                    "LoadRetryable"
                } else {
                    "LoadFailed"
                }
                .into(),
                error_message: e.to_string(),
            };
            loader.ensure_schema().await.map_err(fail)?;
            loader
                .load_pending(chrono::Utc::now())
                .await
                .inspect(|r| shoplake::metrics::emit(&shoplake::metrics::for_load(r)))
                .map_err(fail)
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
