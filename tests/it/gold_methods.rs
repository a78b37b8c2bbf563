//! `payment_methods_daily` downstream of gold: the loader replaces its changed months in the
//! warehouse the way it replaces `daily_kpis` months, each once per version of its object.

use std::sync::Arc;

use shoplake::contract::Registry;
use shoplake::stages::load::Loader;
use shoplake::storage::{LocalStore, ObjectStore};
use shoplake::warehouse::{RecordingExecutor, Warehouse};

#[tokio::test]
async fn the_loader_replaces_changed_months_of_both_gold_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    let put = |key: &str, body: &'static str| {
        let store = store.clone();
        let key = key.to_owned();
        async move { store.put(&key, body.as_bytes().into()).await.unwrap() }
    };
    put(
        "gold/daily_kpis/month=2026-11/daily_kpis.parquet",
        "kpis v1",
    )
    .await;
    put(
        "gold/payment_methods_daily/month=2026-11/payment_methods_daily.parquet",
        "methods v1",
    )
    .await;
    // The report is not a table: never loaded.
    put("gold/report/index.html", "<html></html>").await;
    let executor = Arc::new(RecordingExecutor::new());
    let loader = Loader::new(
        store.clone(),
        executor.clone(),
        Warehouse {
            schema: "shoplake".into(),
            copy_role_arn: "arn:aws:iam::1:role/copy".into(),
        },
        Arc::new(Registry::builtin()),
    );
    let months = loader.load_changed_months().await.unwrap();
    assert_eq!(months, ["2026-11", "payment_methods_daily/2026-11"]);
    let batches = executor.batches();
    assert_eq!(batches.len(), 2, "one transaction per month: {batches:#?}");
    let methods = &batches[1];
    assert!(
        methods[0].starts_with("DELETE FROM shoplake.payment_methods_daily WHERE kpi_date >= CAST('2026-11-01' AS DATE)"),
        "{methods:?}"
    );
    let uri = store.uri("gold/payment_methods_daily/month=2026-11/payment_methods_daily.parquet");
    assert_eq!(
        methods[1],
        format!(
            "COPY shoplake.payment_methods_daily FROM '{uri}' IAM_ROLE 'arn:aws:iam::1:role/copy' FORMAT AS PARQUET"
        )
    );

    // Unchanged objects are not loaded again; a rewritten one is.
    assert!(loader.load_changed_months().await.unwrap().is_empty());
    // A different size makes a different ETag even within the same mtime tick.
    put(
        "gold/payment_methods_daily/month=2026-11/payment_methods_daily.parquet",
        "methods v2, longer",
    )
    .await;
    assert_eq!(
        loader.load_changed_months().await.unwrap(),
        ["payment_methods_daily/2026-11"]
    );
    assert_eq!(executor.batches().len(), 3);
}
