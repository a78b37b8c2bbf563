//! The load path against moto (S3 and a corrected redshift-data, see support/moto_launcher.py):
//! only batches the gate lets through are loaded, through the Data API, exactly once.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use shoplake::contract::Registry;
use shoplake::quality::QualityGate;
use shoplake::stages::ingest::{IngestRequest, IngestService};
use shoplake::stages::load::{BatchLoad, Loader, SkipReason};
use shoplake::storage::{ObjectStore, S3Store};
use shoplake::warehouse::{DataApiExecutor, DataApiSettings, Target, Warehouse};

use crate::support::{bucket_name, moto};

fn event(bucket: &str, key: &str) -> S3Event {
    serde_json::from_value(serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}))
    .unwrap()
}

/// Statements moto ran for this database, in order.
fn statements(database: &str) -> Vec<String> {
    let log = std::fs::read_to_string(&moto::server().redshift_log).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["database"] == database)
        .map(|v| v["sql"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn gated_batches_are_loaded_once_through_the_data_api() {
    let server = moto::server();
    let bucket = bucket_name("load");
    let s3 = server.bucket(&bucket).await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3.clone(), &bucket));
    let ingest = IngestService::for_s3(
        s3.clone(),
        std::sync::Arc::new(shoplake::contract::Registry::builtin()),
        Default::default(),
    );
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    let gate = QualityGate::new(store.clone(), Arc::new(Registry::builtin()));

    let good = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
        o1,c1,2026-11-21T10:00:00Z,paid,EU,EUR,10.00,1,2026-11-21T10:00:00Z\n\
        o2,c2,2026-11-21T11:00:00Z,paid,NA,USD,5.00,1,2026-11-21T11:00:00Z\n";
    let bad = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
        o3,c1,2026-11-21T10:00:00Z,lost,EU,EUR,10.00,1,2026-11-21T10:00:00Z\n\
        o4,c1,2026-11-21T10:00:00Z,paid,EU,EUR,10.00,1,2026-11-21T10:00:00Z\n";
    let mut batches = vec![];
    for (key, csv) in [("raw/orders/good.csv", good), ("raw/orders/bad.csv", bad)] {
        store
            .put(key, csv.as_bytes().to_vec().into())
            .await
            .unwrap();
        let s = ingest
            .handle(IngestRequest::from_s3(&event(&bucket, key)))
            .await
            .unwrap()
            .batches
            .remove(0);
        gate.evaluate("orders", &s.batch_id, now).await.unwrap();
        batches.push(s);
    }

    let database = format!("{bucket}-dev");
    let executor =
        DataApiExecutor::new(shoplake::aws::redshift_data_client(&server.sdk_config()), {
            let mut s = DataApiSettings::new(Target::Workgroup("shoplake".into()), &database);
            s.first_poll = std::time::Duration::from_millis(5);
            s
        });
    let warehouse = Warehouse {
        schema: "shoplake".into(),
        copy_role_arn: "arn:aws:iam::123456789012:role/copy".into(),
    };
    let loader = Loader::new(
        store.clone(),
        Arc::new(executor),
        warehouse,
        Arc::new(Registry::builtin()),
    );
    loader.ensure_schema().await.unwrap();
    let report = loader.load_pending(now).await.unwrap();

    let good_batch = &batches[0].batch_id;
    assert!(
        report.batches.iter().any(
            |b| matches!(b, BatchLoad::Loaded { batch_id, rows: 2, .. } if batch_id == good_batch)
        ),
        "{report:?}"
    );
    assert!(
        report.batches.iter().any(|b| matches!(b, BatchLoad::Skipped { reason, .. } if reason.to_string().contains("quality verdict is fail"))),
        "the failed batch is held back: {report:?}"
    );
    let sql = statements(&database);
    let copies: Vec<&String> = sql
        .iter()
        .filter(|s| s.starts_with("COPY stage_raw_orders"))
        .collect();
    assert_eq!(
        copies.len(),
        2,
        "one COPY per region of the good batch: {copies:#?}"
    );
    assert!(
        copies
            .iter()
            .all(|c| c.contains("FORMAT AS PARQUET MANIFEST")
                && c.contains("IAM_ROLE 'arn:aws:iam::123456789012:role/copy'"))
    );
    assert!(
        sql.iter()
            .any(|s| s.starts_with("CREATE TABLE IF NOT EXISTS shoplake.orders"))
    );
    assert!(
        sql.iter()
            .any(|s| s.starts_with("MERGE INTO shoplake.orders USING stage_orders"))
    );
    assert!(
        sql.iter()
            .any(|s| s.contains("INSERT INTO shoplake.load_ledger")
                && s.contains(good_batch.as_str()))
    );
    assert!(
        sql.iter().any(|s| s.contains("'EU' AS customer_region"))
            && sql.iter().any(|s| s.contains("'NA' AS customer_region"))
    );

    // The COPY manifests list exactly the batch's files, with their sizes.
    let listed = store
        .list(&format!("loads/orders/{good_batch}/"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let m: Value =
        serde_json::from_slice(&store.get(&listed[0].key).await.unwrap().unwrap()).unwrap();
    let url = m["entries"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "s3://{bucket}/processed/orders/order_date=2026-11-21/customer_region="
        )),
        "{url}"
    );
    assert!(m["entries"][0]["meta"]["content_length"].as_u64().unwrap() > 0);
    assert!(
        store
            .head("runs/load/2026-11-21.json")
            .await
            .unwrap()
            .is_some(),
        "the SLA check sees the run"
    );

    // A second load of the same batch issues no COPY (the ledger says it is loaded).
    let copies_before = statements(&database)
        .iter()
        .filter(|s| s.starts_with("COPY"))
        .count();
    assert_eq!(
        loader.load_batch("orders", good_batch).await.unwrap(),
        BatchLoad::Skipped {
            dataset: "orders".into(),
            batch_id: good_batch.clone(),
            reason: SkipReason::AlreadyLoaded
        }
    );
    assert_eq!(
        SkipReason::AlreadyLoaded.to_string(),
        "already loaded (in the load ledger)"
    );
    loader.load_pending(now).await.unwrap();
    assert_eq!(
        statements(&database)
            .iter()
            .filter(|s| s.starts_with("COPY"))
            .count(),
        copies_before
    );

    // An override lets the failed batch through.
    gate.override_batch(
        "orders",
        &batches[1].batch_id,
        "dana",
        "statuses fixed upstream",
        now,
    )
    .await
    .unwrap();
    let again = loader.load_pending(now).await.unwrap();
    assert!(
        again.batches.iter().any(
            |b| matches!(b, BatchLoad::Loaded { batch_id, .. } if *batch_id == batches[1].batch_id)
        ),
        "{again:?}"
    );
}
