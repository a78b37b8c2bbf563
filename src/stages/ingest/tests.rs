use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::error::Retryable;
use crate::stages::{ObjectError, StoreFactory, invoke};
use crate::storage::LocalStore;

fn service(dir: &std::path::Path) -> IngestService {
    let store = Arc::new(LocalStore::new(dir).unwrap());
    let stores: StoreFactory = Arc::new(move |_| store.clone());
    IngestService::new(
        stores,
        Arc::new(crate::contract::Registry::builtin()),
        Default::default(),
    )
}

#[tokio::test]
async fn a_broken_record_is_a_failed_object_and_the_others_are_still_ingested() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("raw/customers")).unwrap();
    std::fs::write(
        dir.path().join("raw/customers/c.csv"),
        "customer_id,email,customer_region,signup_date,updated_at\nC1,a@b.co,EU,2026-11-01,2026-11-01T00:00:00Z\n",
    )
    .unwrap();
    let event = json!({"Records": [
        {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {}, "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/customers/%E2"}}},
        {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {}, "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/customers/c.csv"}}}
    ]});
    let service = service(dir.path());
    let err = service
        .handle(IngestRequest::from_event(event.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!((err.attempted, err.failures.len()), (2, 1));
    assert!(matches!(err.failures[0].error, ObjectError::Event(_)));
    assert!(!err.is_retryable());
    assert!(dir.path().join("manifests/customers").is_dir());

    // The entry point reports it as a failure a retry would only repeat.
    let failure = invoke(&service, event, chrono::Utc::now())
        .await
        .unwrap_err();
    assert_eq!(failure.error_type, "IngestFailed");
    let failure = invoke(&service, json!({"not": "s3"}), chrono::Utc::now())
        .await
        .unwrap_err();
    assert_eq!(failure.error_type, "IngestFailed");
    assert!(
        failure.error_message.contains("not an S3 event"),
        "{failure}"
    );
}
