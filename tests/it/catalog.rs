//! The catalog port on Glue (moto) and on the local adapter: tables from the contracts match
//! the Parquet files, and partition registration is idempotent and batched.

use std::sync::Arc;

use shoplake::catalog::{self, Catalog, GlueCatalog, LocalCatalog, PartitionDef};
use shoplake::contract::Registry;
use shoplake::storage::LocalStore;

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
