use std::sync::Arc;

use super::*;
use crate::compact::CompactionReport;
use crate::error::Retryable;
use crate::storage::LocalStore;

#[tokio::test]
async fn the_schedule_compacts_every_dataset_parents_first_and_an_unknown_one_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::builtin());
    let service = CompactService::new(
        Arc::new(LocalStore::new(dir.path()).unwrap()),
        registry.clone(),
        8,
        crate::compact::SETTLE_HOURS,
    );
    let schedule = serde_json::json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}});
    let response = crate::stages::invoke(&service, schedule, chrono::Utc::now())
        .await
        .unwrap();
    let order: Vec<&str> = registry
        .load_order()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let done: Vec<&str> = response
        .datasets
        .iter()
        .map(|d| d.dataset.as_str())
        .collect();
    assert_eq!(done, order);
    assert!(
        response
            .datasets
            .iter()
            .all(|d| d.report == CompactionReport::default())
    );
    assert_eq!(CompactService::metrics(&response).len(), order.len());

    let err = service
        .handle(CompactRequest::Dataset("nope".into()), chrono::Utc::now())
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let failure = crate::stages::invoke(
        &service,
        serde_json::json!({"dataset": "nope"}),
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.error_type, "CompactFailed");
}
