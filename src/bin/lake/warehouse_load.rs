//! `lake load --postgres URL` (the local warehouse, through the same loader and SQL as Redshift)
//! and the operator's `--retry BATCH` / `--skip BATCH --by … --reason …` of a failed load.

use std::process::ExitCode;
use std::sync::Arc;

use shoplake::contract::Registry;
use shoplake::stages::Stage;
use shoplake::stages::alert::AlertService;
use shoplake::stages::load::{BatchLoad, LoadRequest, Loader};
use shoplake::storage::ObjectStore;
use shoplake::warehouse::{PostgresExecutor, RecordingExecutor, Warehouse};

use crate::emit;

/// Loads into PostgreSQL (`operator`: a retry or skip first); a skip without a warehouse only
/// records the decision in the lake.
pub async fn run(
    store: Arc<dyn ObjectStore>,
    registry: Arc<Registry>,
    warehouse: Warehouse,
    postgres: Option<String>,
    operator: Option<LoadRequest>,
    alerts: AlertService,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let Some(url) = postgres else {
        let Some(LoadRequest::Skip {
            batch_id,
            by,
            reason,
        }) = operator
        else {
            anyhow::bail!("give --postgres URL to load into");
        };
        // Recorded in the lake; the next load leaves the batch out.
        let loader = Loader::new(
            store,
            Arc::new(RecordingExecutor::new()),
            warehouse,
            registry,
        );
        let f = loader.skip(&batch_id, &by, &reason, now).await?;
        if json {
            emit(serde_json::to_string(&f)?)?;
        } else {
            emit(format!(
                "{} {}: skipped by {by}; it will not be loaded",
                f.dataset, f.batch_id
            ))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let executor = PostgresExecutor::connect(&url, store.clone()).await?;
    let loader = Loader::new(store, Arc::new(executor), warehouse, registry);
    let report = loader
        .run(operator.unwrap_or(LoadRequest::Pending), now)
        .await?;
    if json {
        emit(serde_json::to_string(&report)?)?;
    } else {
        for b in &report.batches {
            emit(match b {
                BatchLoad::Loaded {
                    dataset,
                    batch_id,
                    rows,
                    ..
                } => format!("{dataset} {batch_id}: loaded {rows} row(s)"),
                BatchLoad::Skipped {
                    dataset,
                    batch_id,
                    reason,
                } => format!("{dataset} {batch_id}: skipped ({reason})"),
                BatchLoad::Failed {
                    dataset,
                    batch_id,
                    error,
                    attempts,
                    ..
                } => format!("{dataset} {batch_id}: FAILED (attempt {attempts}): {error}"),
            })?;
        }
        let months = match report.months.is_empty() {
            true => "none changed".to_owned(),
            false => report.months.join(", "),
        };
        emit(format!("gold months loaded: {months}"))?;
    }
    // First failures are paged as the alert function pages them from the load report.
    let record = serde_json::json!({
        "timestamp": now.to_rfc3339(),
        "requestContext": {"condition": "Success"},
        "responseContext": {},
        "responsePayload": &report,
    });
    let requests = shoplake::stages::alert::parse(&record)?;
    if !requests.is_empty() {
        alerts.handle_all(requests, now).await?;
    }
    let failed = report
        .batches
        .iter()
        .filter(|b| matches!(b, BatchLoad::Failed { .. }))
        .count();
    if failed > 0 {
        eprintln!(
            "{failed} load(s) failed and were rolled back (recorded under runs/load_failures/, alert in outbox/); everything else was loaded. Fix the cause, then `lake load --retry BATCH`, or `--skip BATCH --by … --reason …`"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
