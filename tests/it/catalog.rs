//! The catalog port on Glue (moto) and on the local adapter: tables from the contracts match
//! the Parquet files, partition registration and removal are idempotent and batched, and the
//! compact stage removes the partitions whose silver files expired on both.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use shoplake::catalog::{self, Catalog, GlueCatalog, LocalCatalog, PartitionDef};
use shoplake::contract::Registry;
use shoplake::stages::Stage;
use shoplake::stages::compact::CompactService;
use shoplake::storage::{LocalStore, ObjectStore, S3Store};

use crate::support::{bucket_name, moto};

async fn suite(cat: &dyn Catalog, root: &str) {
    let reg = Registry::builtin();
    let mut tables: Vec<_> = reg.iter().map(|c| catalog::silver_table(c, root)).collect();
    tables.extend(catalog::gold_tables(root));
    cat.ensure_tables(&tables).await.unwrap();
    cat.ensure_tables(&tables)
        .await
        .expect("ensuring twice updates in place");

    let parts = |n: usize| -> Vec<PartitionDef> {
        (0..n)
            .map(|i| PartitionDef {
                values: vec![
                    format!("2026-{:02}-{:02}", 1 + i / 28 % 12, 1 + i % 28),
                    ["EU", "NA", "APAC"][i % 3].into(),
                ],
                location: format!("{root}/processed/orders/p{i}/"),
            })
            .collect()
    };
    assert_eq!(cat.add_partitions("orders", &parts(3)).await.unwrap(), 3);
    assert_eq!(
        cat.add_partitions("orders", &parts(3)).await.unwrap(),
        0,
        "existing partitions are success, not new"
    );
    // More than one BatchCreatePartition call's worth.
    assert_eq!(
        cat.add_partitions("orders", &parts(250)).await.unwrap(),
        247
    );
    let listed = cat.partitions("orders").await.unwrap();
    assert_eq!(listed.len(), 250);
    assert!(listed.contains(&vec!["2026-01-01".to_owned(), "EU".to_owned()]));

    // Listing by date: January's 28 partitions, and only them.
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let january = cat
        .partitions_before("orders", "order_date", day("2026-02-01"))
        .await
        .unwrap();
    let expected: Vec<Vec<String>> = listed
        .iter()
        .filter(|v| v[0].starts_with("2026-01-"))
        .cloned()
        .collect();
    assert_eq!(january.len(), 28);
    assert_eq!(january, expected, "sorted, like partitions()");
    assert!(
        cat.partitions_before("orders", "order_date", day("2026-01-01"))
            .await
            .unwrap()
            .is_empty(),
        "the bound is exclusive"
    );
    assert!(
        cat.partitions_before("never_created", "order_date", day("2026-02-01"))
            .await
            .unwrap()
            .is_empty(),
        "a table that does not exist has no old partitions"
    );

    // Removing them: more than one BatchDeletePartition call's worth (25), plus one that never
    // existed; what is already gone is success.
    let mut doomed = january.clone();
    doomed.push(vec!["2025-12-31".into(), "EU".into()]);
    assert!(doomed.len() > catalog::MAX_PARTITIONS_PER_DELETE);
    assert_eq!(cat.delete_partitions("orders", &doomed).await.unwrap(), 28);
    assert_eq!(
        cat.delete_partitions("orders", &doomed).await.unwrap(),
        0,
        "a re-run removes nothing more and is no error"
    );
    assert!(
        cat.partitions_before("orders", "order_date", day("2026-02-01"))
            .await
            .unwrap()
            .is_empty()
    );
    let left = cat.partitions("orders").await.unwrap();
    assert_eq!(left.len(), 222);
    assert_eq!(
        left,
        listed
            .iter()
            .filter(|v| !v[0].starts_with("2026-01-"))
            .cloned()
            .collect::<Vec<_>>(),
        "nothing else was touched"
    );
    assert_eq!(
        cat.delete_partitions("never_created", &doomed)
            .await
            .unwrap(),
        0,
        "a missing table has nothing to remove"
    );
}

#[tokio::test]
async fn the_local_catalog_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    suite(&LocalCatalog::new(store, "shoplake"), "file:///lake").await;
}

#[tokio::test]
async fn glue_tables_and_partitions_match_the_contracts_on_moto() {
    let server = moto::server();
    let glue = shoplake::aws::glue_client(&server.sdk_config());
    let database = bucket_name("catalog");
    let cat = GlueCatalog::new(glue.clone(), &database);
    suite(&cat, "s3://lake").await;

    // What Athena would see: the Parquet SerDe, the columns and partition keys of the contract.
    let table = glue
        .get_table()
        .database_name(&database)
        .name("orders")
        .send()
        .await
        .unwrap();
    let table = table.table().unwrap();
    let sd = table.storage_descriptor().unwrap();
    assert_eq!(sd.location(), Some("s3://lake/processed/orders/"));
    assert_eq!(
        sd.serde_info().and_then(|s| s.serialization_library()),
        Some(catalog::defs::PARQUET_SERDE)
    );
    let columns: Vec<(String, String)> = sd
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.r#type().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let parquet =
        shoplake::silver::silver_schema(Registry::builtin().get("orders").unwrap()).unwrap();
    assert_eq!(
        columns.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        parquet
            .iter_names()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
    );
    assert!(columns.contains(&("total_amount".into(), "decimal(18,2)".into())));
    let keys: Vec<&str> = table.partition_keys().iter().map(|k| k.name()).collect();
    assert_eq!(keys, ["order_date", "customer_region"]);
    let kpis = glue
        .get_table()
        .database_name(&database)
        .name("daily_kpis")
        .send()
        .await
        .unwrap();
    assert_eq!(kpis.table().unwrap().partition_keys()[0].name(), "month");
    let methods = glue
        .get_table()
        .database_name(&database)
        .name("payment_methods_daily")
        .send()
        .await
        .unwrap();
    let methods = methods.table().unwrap();
    assert_eq!(methods.partition_keys()[0].name(), "month");
    let columns: Vec<(&str, &str)> = methods
        .storage_descriptor()
        .unwrap()
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap_or_default()))
        .collect();
    assert_eq!(
        columns.iter().map(|c| c.0).collect::<Vec<_>>(),
        shoplake::gold::methods::COLUMNS
    );
    assert!(columns.contains(&("refunded_amount", "decimal(18,2)")));
}

#[tokio::test]
async fn ingest_registers_the_batch_partitions_in_glue_even_on_redelivery() {
    let server = moto::server();
    let bucket = bucket_name("ingest-catalog");
    let s3 = server.bucket(&bucket).await;
    let glue = shoplake::aws::glue_client(&server.sdk_config());
    let database = format!("{bucket}-db");
    let handler = shoplake::stages::ingest::IngestService::for_s3(
        s3.clone(),
        std::sync::Arc::new(shoplake::contract::Registry::builtin()),
        Default::default(),
    )
    .with_catalog(Arc::new(GlueCatalog::new(glue, &database)));
    let csv = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
               o1,c1,2026-11-21T10:00:00Z,paid,EU,EUR,1.00,1,2026-11-21T10:00:00Z\n\
               o2,c1,2026-11-21T23:30:00-05:00,paid,NA,USD,1.00,1,2026-11-21T10:00:00Z\n";
    s3.put_object()
        .bucket(&bucket)
        .key("raw/orders/o.csv")
        .body(csv.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let event: aws_lambda_events::s3::S3Event = serde_json::from_value(serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
        "s3": {"bucket": {"name": bucket}, "object": {"key": "raw/orders/o.csv"}}}]}))
    .unwrap();
    let summary = handler
        .handle(shoplake::stages::ingest::IngestRequest::from_s3(&event))
        .await
        .unwrap()
        .batches
        .remove(0);
    let again = handler
        .handle(shoplake::stages::ingest::IngestRequest::from_s3(&event))
        .await
        .unwrap()
        .batches
        .remove(0);
    assert!(again.replayed);
    let cat = GlueCatalog::new(shoplake::aws::glue_client(&server.sdk_config()), &database);
    let partitions = cat.partitions("orders").await.unwrap();
    let expected: Vec<Vec<String>> = summary
        .partitions
        .iter()
        .map(|p| {
            p.split('/')
                .map(|kv| kv.split_once('=').unwrap().1.to_owned())
                .collect()
        })
        .collect();
    assert_eq!(partitions, expected);
    assert_eq!(
        partitions,
        [
            vec!["2026-11-21".to_owned(), "EU".to_owned()],
            vec!["2026-11-22".into(), "NA".into()]
        ]
    );
}

/// The nightly compact run on a lake whose silver began more than a year ago: the partitions
/// dated before the retention whose files the lifecycle rule expired leave the catalog, the
/// retained ones stay, one still holding a file written later than its date waits for that file,
/// and a re-run removes nothing more. The same for the local catalog on a directory and Glue on
/// the bucket (moto).
async fn expired_partitions_leave_the_catalog(store: Arc<dyn ObjectStore>, cat: Arc<dyn Catalog>) {
    let reg = Arc::new(Registry::builtin());
    let root = shoplake::storage::root_uri(store.as_ref());
    let tables: Vec<_> = reg
        .iter()
        .map(|c| catalog::silver_table(c, &root))
        .collect();
    cat.ensure_tables(&tables).await.unwrap();
    // 03:00 UTC on 2026-11-21: silver is retained from 2025-11-21 on.
    let now: DateTime<Utc> = "2026-11-21T03:00:00Z".parse().unwrap();
    let part = |dataset: &str, path: &str| PartitionDef {
        values: path
            .split('/')
            .map(|kv| kv.split_once('=').unwrap().1.to_owned())
            .collect(),
        location: format!("{root}/processed/{dataset}/{path}/"),
    };
    let file = |dataset: &str, path: &str, name: &str| {
        format!("processed/{dataset}/{path}/part-{name}.parquet")
    };
    // A month of January 2025 (30 partitions: more than one delete call) and the day before the
    // retention: their files are gone, as the lifecycle rule leaves them.
    let mut gone: Vec<String> = (1..=30)
        .map(|d| format!("order_date=2025-01-{d:02}/customer_region=EU"))
        .collect();
    gone.push("order_date=2025-11-20/customer_region=NA".into());
    // Before the retention too, but an export of late rows wrote a file there last month.
    let late = "order_date=2025-11-20/customer_region=EU";
    // Retained: the first retained day, and yesterday.
    let kept = [
        "order_date=2025-11-21/customer_region=EU",
        "order_date=2026-11-20/customer_region=APAC",
    ];
    let orders: Vec<PartitionDef> = gone
        .iter()
        .map(String::as_str)
        .chain([late])
        .chain(kept)
        .map(|p| part("orders", p))
        .collect();
    assert_eq!(cat.add_partitions("orders", &orders).await.unwrap(), 34);
    for p in [late].iter().chain(&kept) {
        store
            .put(&file("orders", p, "b1"), Bytes::from_static(b"PAR1"))
            .await
            .unwrap();
    }
    let payments = ["payment_date=2025-06-01", "payment_date=2026-11-20"];
    let payment_parts: Vec<PartitionDef> = payments.iter().map(|p| part("payments", p)).collect();
    cat.add_partitions("payments", &payment_parts)
        .await
        .unwrap();
    store
        .put(
            &file("payments", payments[1], "b2"),
            Bytes::from_static(b"PAR1"),
        )
        .await
        .unwrap();
    cat.add_partitions("customers", &[part("customers", "customer_region=EU")])
        .await
        .unwrap();

    let service = CompactService::new(
        store.clone(),
        reg.clone(),
        8,
        shoplake::compact::SETTLE_HOURS,
    )
    .with_catalog(cat.clone());
    let night = |now| {
        let service = service.clone();
        async move {
            shoplake::stages::invoke(&service, serde_json::json!({}), now)
                .await
                .unwrap()
        }
    };
    let response = night(now).await;
    let swept = |r: &shoplake::stages::compact::CompactResponse, dataset: &str| {
        r.datasets
            .iter()
            .find(|d| d.dataset == dataset)
            .unwrap()
            .expired_partitions
            .clone()
            .map(|e| (e.before.to_string(), e.removed, e.waiting))
    };
    assert_eq!(
        swept(&response, "orders"),
        Some(("2025-11-21".into(), 31, 1))
    );
    assert_eq!(
        swept(&response, "payments"),
        Some(("2025-11-21".into(), 1, 0))
    );
    assert_eq!(
        swept(&response, "customers"),
        None,
        "partitions without a date never age"
    );
    let values = |paths: &[&str]| -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = paths.iter().map(|p| part("x", p).values).collect();
        v.sort();
        v
    };
    assert_eq!(
        cat.partitions("orders").await.unwrap(),
        values(&[late, kept[0], kept[1]])
    );
    assert_eq!(
        cat.partitions("payments").await.unwrap(),
        values(&[payments[1]])
    );
    assert_eq!(cat.partitions("customers").await.unwrap().len(), 1);
    let metrics = CompactService::metrics(&response);
    let orders_metrics = metrics.iter().find(|m| m.dataset == "orders").unwrap();
    assert!(
        orders_metrics
            .values
            .contains(&("ExpiredPartitionsRemoved", 31))
            && orders_metrics
                .values
                .contains(&("ExpiredPartitionsWaiting", 1)),
        "{orders_metrics:?}"
    );

    // The next night (same day: nothing crossed the cutoff) removes nothing more.
    let again = night(now).await;
    assert_eq!(swept(&again, "orders"), Some(("2025-11-21".into(), 0, 1)));
    assert_eq!(swept(&again, "payments"), Some(("2025-11-21".into(), 0, 0)));
    assert_eq!(cat.partitions("orders").await.unwrap().len(), 3);

    // Once the lifecycle rule has expired the late file too, its partition goes; and a day
    // later the first retained day of the first night has crossed the cutoff.
    store.delete(&file("orders", late, "b1")).await.unwrap();
    store.delete(&file("orders", kept[0], "b1")).await.unwrap();
    let later = night("2026-11-22T03:00:00Z".parse().unwrap()).await;
    assert_eq!(swept(&later, "orders"), Some(("2025-11-22".into(), 2, 0)));
    assert_eq!(cat.partitions("orders").await.unwrap(), values(&[kept[1]]));
}

#[tokio::test]
async fn expired_partitions_leave_the_local_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let cat = Arc::new(LocalCatalog::new(store.clone(), "shoplake"));
    expired_partitions_leave_the_catalog(store, cat).await;
}

#[tokio::test]
async fn expired_partitions_leave_glue_on_moto() {
    let server = moto::server();
    let bucket = bucket_name("glue-expiry");
    let s3 = server.bucket(&bucket).await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3, &bucket));
    let database = format!("{bucket}-db");
    let cat = Arc::new(GlueCatalog::new(
        shoplake::aws::glue_client(&server.sdk_config()),
        &database,
    ));
    expired_partitions_leave_the_catalog(store, cat).await;
}

/// `lake compact` on a directory sweeps the directory's catalog as the function sweeps Glue.
#[tokio::test]
async fn lake_compact_removes_expired_partitions_from_the_directory_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let root = shoplake::storage::root_uri(store.as_ref());
    let cat = LocalCatalog::new(store.clone(), "shoplake");
    let reg = Registry::builtin();
    let tables: Vec<_> = reg
        .iter()
        .map(|c| catalog::silver_table(c, &root))
        .collect();
    cat.ensure_tables(&tables).await.unwrap();
    // Dated long before any retention that `now` can give, files gone.
    let old = PartitionDef {
        values: vec!["2001-01-01".into()],
        location: format!("{root}/processed/payments/payment_date=2001-01-01/"),
    };
    cat.add_partitions("payments", &[old]).await.unwrap();
    let (done, stdout, stderr) = crate::support::lake(&[
        "compact",
        "--json",
        "--lake",
        dir.path().to_str().unwrap(),
        "--dataset",
        "payments",
    ]);
    assert!(done, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["dataset"], "payments");
    assert_eq!(line["expired_partitions"]["removed"], 1, "{line}");
    assert_eq!(line["expired_partitions"]["waiting"], 0, "{line}");
    assert!(cat.partitions("payments").await.unwrap().is_empty());
}
