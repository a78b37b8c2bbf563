use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::catalog::{Catalog, LocalCatalog};
use crate::stages::invoke;
use crate::storage::{LocalStore, ObjectStore};

fn aggregator(dir: &std::path::Path) -> (Aggregator, Arc<LocalCatalog>) {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir).unwrap());
    let catalog = Arc::new(LocalCatalog::new(store.clone(), "test"));
    let aggregator = Aggregator::new(store, Arc::new(Registry::builtin()), dir.join("work"))
        .with_catalog(catalog.clone());
    (aggregator, catalog)
}

#[tokio::test]
async fn an_empty_lake_aggregates_to_nothing_and_records_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let (aggregator, catalog) = aggregator(dir.path());
    let report = invoke(&aggregator, json!({}), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((report.kpi_rows, report.new_batches), (0, 0));
    assert!(report.months_written.is_empty());
    assert!(dir.path().join(layout::AGGREGATE_STATE_KEY).exists());
    assert!(
        catalog
            .partitions(layout::DAILY_KPIS)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !dir.path().join("claims/aggregate.json").exists(),
        "claim released"
    );
}

#[tokio::test]
async fn a_mistyped_backfill_fails_without_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (aggregator, _) = aggregator(dir.path());
    let failure = invoke(
        &aggregator,
        json!({"from": "2026-11-01"}),
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.error_type, "AggregateFailed");
    assert!(failure.error_message.contains("`to`"), "{failure}");
}

/// A rebuild with nothing new since the last writes a state under new names, never over the
/// objects the pointer in place names (a crash midway would leave that pointer naming a mix).
#[tokio::test]
async fn a_full_rebuild_with_nothing_new_names_its_state_apart_from_the_one_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (aggregator, _) = aggregator(dir.path());
    let pointer = || -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(dir.path().join(layout::AGGREGATE_STATE_KEY)).unwrap(),
        )
        .unwrap()
    };
    invoke(&aggregator, json!({}), chrono::Utc::now())
        .await
        .unwrap();
    let before = pointer();
    invoke(&aggregator, json!({"full": true}), chrono::Utc::now())
        .await
        .unwrap();
    let after = pointer();
    assert_eq!(before["cursors"], after["cursors"], "nothing new");
    for table in ["first_orders_keys", "tombstones_key"] {
        assert_ne!(before[table], after[table], "{table}");
    }
    let again = {
        invoke(&aggregator, json!({"full": true}), chrono::Utc::now())
            .await
            .unwrap();
        pointer()
    };
    assert_ne!(after["tombstones_key"], again["tombstones_key"]);
}
