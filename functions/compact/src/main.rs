//! The compact Lambda: on schedule, many small silver files → one file per partition.
//! Configuration: `shoplake::stages::compact::config`. Every function's entry point has this
//! shape; the work is `shoplake::stages::compact`.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, run, service_fn};
use shoplake::contract::Registry;
use shoplake::stages::compact::CompactService as Service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoplake::telemetry::init_lambda();
    shoplake::alloc::limit_arenas();
    let registry = Arc::new(Registry::from_env()?);
    let service = Service::from_env(&shoplake::aws::sdk_config().await, registry)?;
    let service = &service;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            shoplake::stages::invoke(service, event.payload, chrono::Utc::now())
                .await
                .map_err(|f| Diagnostic {
                    error_type: f.error_type,
                    error_message: f.error_message,
                })
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
