//! `lake run` end to end on generated exports, and the gold table checked against an
//! independent DuckDB SQL implementation of the KPI definitions.

use crate::support::{lake, python_report};

#[test]
fn lake_run_builds_gold_that_matches_an_independent_sql_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let lake_dir = dir.path().join("lake");
    let (ok, _, stderr) = lake(&[
        "generate",
        "--json",
        "--out",
        input.to_str().unwrap(),
        "--customers",
        "200",
        "--orders",
        "1500",
        "--seed",
        "9",
        "--defect-rate",
        "0.05",
        "--end-date",
        "2026-11-21",
        "--days",
        "40",
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = lake(&[
        "run",
        "--lake",
        lake_dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    for needle in [
        "ingest  orders",
        "quality payments",
        "gold/daily_kpis:",
        "month(s) 2026-10, 2026-11",
        "revenue",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    // One object per month: a month is replaced by one PUT.
    for month in ["2026-10", "2026-11"] {
        let files = std::fs::read_dir(lake_dir.join(format!("gold/daily_kpis/month={month}")))
            .unwrap()
            .count();
        assert_eq!(files, 1, "{month}");
    }

    let report = python_report("kpi_crosscheck.py", &lake_dir);
    assert!(report["gold_rows"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(report["gold_rows"], report["expected_rows"], "{report}");
    assert_eq!(report["order_mismatches"], 0, "{report}");
    assert_eq!(report["payment_mismatches"], 0, "{report}");
    let types = &report["types"];
    assert_eq!(types["revenue"], "DECIMAL(18,2)");
    assert_eq!(types["avg_order_value"], "DECIMAL(18,2)");
    assert_eq!(types["orders_placed"], "BIGINT");
    assert_eq!(types["retention_rate"], "DOUBLE");
    assert_eq!(types["kpi_date"], "DATE");
}

#[tokio::test]
async fn the_aggregate_stage_on_s3_writes_touched_months_and_backfills() {
    use shoplake::stages::aggregate::{AggregateRequest, Aggregator};
    use shoplake::storage::{ObjectStore, S3Store};
    use std::sync::Arc;

    let server = crate::support::moto::server();
    let bucket = crate::support::bucket_name("aggregate");
    let s3 = server.bucket(&bucket).await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3.clone(), &bucket));
    let ingest = shoplake::stages::ingest::IngestService::for_s3(
        s3.clone(),
        std::sync::Arc::new(shoplake::contract::Registry::builtin()),
        Default::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = lake(&[
        "generate",
        "--json",
        "--out",
        dir.path().to_str().unwrap(),
        "--customers",
        "50",
        "--orders",
        "300",
        "--end-date",
        "2026-11-03",
        "--days",
        "6",
    ]);
    assert!(ok, "{stderr}");
    for ds in ["customers", "orders", "payments"] {
        let key = format!("raw/{ds}/{ds}.csv");
        store
            .put(
                &key,
                std::fs::read(dir.path().join(format!("{ds}.csv")))
                    .unwrap()
                    .into(),
            )
            .await
            .unwrap();
        let event: aws_lambda_events::s3::S3Event = serde_json::from_value(serde_json::json!({"Records": [{
            "eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}))
        .unwrap();
        ingest
            .handle(shoplake::stages::ingest::IngestRequest::from_s3(&event))
            .await
            .unwrap();
    }
    let glue = shoplake::aws::glue_client(&server.sdk_config());
    let catalog = Arc::new(shoplake::catalog::GlueCatalog::new(
        glue,
        format!("{bucket}-db"),
    ));
    let work = tempfile::tempdir().unwrap();
    let aggregator = Aggregator::new(
        store.clone(),
        Arc::new(shoplake::contract::Registry::builtin()),
        work.path(),
    )
    .with_catalog(catalog.clone());

    let first = aggregator
        .aggregate(AggregateRequest::Scheduled {})
        .await
        .unwrap()
        .report;
    assert_eq!(first.months_written, ["2026-10", "2026-11"], "{first:?}");
    assert_eq!(first.new_batches, 2, "orders and payments");
    assert!(
        store
            .head("gold/daily_kpis/month=2026-11/daily_kpis.parquet")
            .await
            .unwrap()
            .is_some()
    );
    use shoplake::catalog::Catalog;
    assert_eq!(
        catalog.partitions("daily_kpis").await.unwrap(),
        [vec!["2026-10".to_owned()], vec!["2026-11".to_owned()]]
    );
    assert_eq!(
        catalog.partitions("payment_methods_daily").await.unwrap(),
        [vec!["2026-10".to_owned()], vec!["2026-11".to_owned()]]
    );
    // The report, served as HTML from the bucket.
    assert_eq!(
        first.reports_written,
        [
            "gold/report/index.html",
            "gold/report/month=2026-10/index.html",
            "gold/report/month=2026-11/index.html"
        ]
    );
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("gold/report/index.html")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/html; charset=utf-8"));

    let again = aggregator
        .aggregate(AggregateRequest::Scheduled {})
        .await
        .unwrap()
        .report;
    assert!(
        again.months_written.is_empty() && again.new_batches == 0,
        "nothing new since the last run: {again:?}"
    );
    let d = |s: &str| s.parse().unwrap();
    // What the nightly state is, object by object (a rewrite changes the ETag or the time).
    let state = || async {
        let mut objects: Vec<_> = store
            .list(shoplake::layout::AGGREGATE_STATE_PREFIX)
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.etag, o.last_modified))
            .collect();
        objects.sort();
        objects
    };
    let state_before = state().await;
    assert!(
        state_before
            .iter()
            .any(|(k, _, _)| k.contains("first_orders")),
        "{state_before:?}"
    );
    let backfill = aggregator
        .aggregate(AggregateRequest::Range {
            from: d("2026-11-01"),
            to: d("2026-11-30"),
        })
        .await
        .unwrap()
        .report;
    assert_eq!(backfill.months_written, ["2026-11"]);
    assert_eq!(
        backfill.kpi_rows, first.kpi_rows,
        "the same silver gives the same KPIs"
    );
    // A backfill leaves the nightly state alone: no object written, none removed.
    assert_eq!(state().await, state_before);

    // A late October order: the nightly run recomputes its day and the days its customer's
    // first order moves between (both in October here), and only their month is rewritten.
    let late = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
                LATE1,C0000001,2026-10-02T10:00:00Z,paid,EU,EUR,10.00,1,2026-10-02T10:00:00Z\n";
    store
        .put("raw/orders/late.csv", late.as_bytes().to_vec().into())
        .await
        .unwrap();
    let event: aws_lambda_events::s3::S3Event = serde_json::from_value(serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
        "s3": {"bucket": {"name": bucket}, "object": {"key": "raw/orders/late.csv"}}}]}))
    .unwrap();
    ingest
        .handle(shoplake::stages::ingest::IngestRequest::from_s3(&event))
        .await
        .unwrap();
    let after_late = aggregator
        .aggregate(AggregateRequest::Scheduled {})
        .await
        .unwrap()
        .report;
    assert_eq!(after_late.new_batches, 1);
    assert_eq!(after_late.mode, "nightly");
    assert_eq!(after_late.months_written, ["2026-10"]);
    // What the nightly run left is what a full recompute gives.
    let months: std::collections::BTreeSet<String> =
        ["2026-10".to_owned(), "2026-11".to_owned()].into();
    let read = async |table: &str| {
        shoplake::gold::read_months(store.as_ref(), table, &months)
            .await
            .unwrap()
            .unwrap()
    };
    let nightly = (
        read("daily_kpis").await,
        read("payment_methods_daily").await,
    );
    let full = aggregator
        .aggregate(AggregateRequest::Full {})
        .await
        .unwrap()
        .report;
    assert_eq!(full.mode, "full");
    assert!(nightly.0.equals_missing(&read("daily_kpis").await));
    assert!(
        nightly
            .1
            .equals_missing(&read("payment_methods_daily").await)
    );
}
