use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::error::Retryable;
use crate::stages::{EventError, ObjectError, StoreFactory};
use crate::storage::LocalStore;

fn record(key: &str) -> serde_json::Value {
    json!({"eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z",
           "userIdentity": {}, "requestParameters": {},
           "s3": {"bucket": {"name": "lake"}, "object": {"key": key}}})
}

#[test]
fn only_manifests_are_requests_and_broken_records_stay_in() {
    let event = json!({"Records": [
        record("manifests/orders/B.json"),
        record("manifests/orders/_pending/B.json"),
        record("manifests/orders/%E2"),
    ]});
    let request = QualityRequest::from_event(event).unwrap();
    assert_eq!(request.manifests.len(), 2);
    assert_eq!(
        request.manifests[0].as_ref().unwrap().key,
        "manifests/orders/B.json"
    );
    assert!(matches!(
        request.manifests[1],
        Err(EventError::BadKey { .. })
    ));
    assert!(QualityRequest::from_event(json!({"hello": 1})).is_err());
}

#[tokio::test]
async fn a_broken_record_fails_the_invocation_as_in_ingest_and_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    let stores: StoreFactory = Arc::new(move |_| store.clone());
    let service = QualityService::new(stores, Arc::new(crate::contract::Registry::builtin()));
    let request =
        QualityRequest::from_event(json!({"Records": [record("manifests/orders/%E2")]})).unwrap();
    let err = service
        .handle(request, chrono::Utc::now())
        .await
        .unwrap_err();
    assert_eq!((err.attempted, err.failures.len()), (1, 1));
    assert!(matches!(err.failures[0].error, ObjectError::Event(_)));
    assert!(!err.is_retryable());
}
