use super::*;

#[test]
fn load_metrics_add_up_per_dataset() {
    let report = LoadReport {
        batches: vec![
            BatchLoad::Loaded {
                dataset: "orders".into(),
                batch_id: "a".into(),
                rows: 5,
                statements: 3,
            },
            BatchLoad::Loaded {
                dataset: "orders".into(),
                batch_id: "b".into(),
                rows: 7,
                statements: 3,
            },
            BatchLoad::Skipped {
                dataset: "orders".into(),
                batch_id: "c".into(),
                reason: SkipReason::HeldBack,
            },
        ],
        months: vec!["2026-11".into()],
    };
    let sets = Loader::metrics(&report);
    assert_eq!(
        sets[0].values,
        [
            ("BatchesLoaded", 2),
            ("BatchesSkipped", 1),
            ("RowsLoaded", 12),
            ("BatchesFailed", 0)
        ]
    );
    assert_eq!(sets[1].values, [("LoadSucceeded", 1), ("MonthsLoaded", 1)]);

    // A failed batch: the run did not get everything it took into the warehouse.
    let mut failed = report.clone();
    failed.batches.push(BatchLoad::Failed {
        dataset: "orders".into(),
        batch_id: "d".into(),
        error: "boom".into(),
        statement: "COPY".into(),
        attempts: 1,
        alert: true,
    });
    let sets = Loader::metrics(&failed);
    assert_eq!(sets[1].values, [("LoadSucceeded", 0), ("MonthsLoaded", 1)]);
}

#[test]
fn only_batches_with_nothing_left_to_load_are_done_with() {
    for (reason, last) in [
        (SkipReason::NoContract, false),
        (SkipReason::NotChecked, false),
        (SkipReason::HeldBack, false),
        (SkipReason::NothingToLoad, true),
        (SkipReason::AlreadyLoaded, true),
        // Failed batches stay pending: an operator may retry them.
        (SkipReason::RetriesExhausted, false),
        (SkipReason::SkippedByOperator, false),
    ] {
        assert_eq!(reason.is_final(), last, "{reason}");
    }
}

#[tokio::test]
async fn a_dry_run_records_the_sql_and_writes_nothing_to_the_lake() {
    use crate::warehouse::{RecordingExecutor, Warehouse};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::storage::LocalStore::new(dir.path()).unwrap());
    let executor = Arc::new(RecordingExecutor::new());
    let warehouse = Warehouse {
        schema: "shoplake".into(),
        copy_role_arn: "arn:aws:iam::1:role/copy".into(),
    };
    let loader = Loader::new(
        store.clone(),
        executor.clone(),
        warehouse,
        Arc::new(Registry::builtin()),
    )
    .dry_run();
    let report = loader
        .run(LoadRequest::Pending, chrono::Utc::now())
        .await
        .unwrap();
    assert!(report.batches.is_empty());
    let batches = executor.batches();
    assert!(batches[0][0].starts_with("CREATE SCHEMA"), "{batches:?}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_month_failed_in_two_gold_tables_is_retried_by_dataset_and_a_bare_month_is_ambiguous() {
    use crate::state::LakeState;
    use crate::warehouse::{RecordingExecutor, Warehouse};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::storage::LocalStore::new(dir.path()).unwrap());
    let state = LakeState::new(store.clone());
    let at = chrono::Utc::now();
    for (dataset, id) in [
        ("daily_kpis", "2026-11"),
        ("payment_methods_daily", "2026-11"),
        ("orders", "20261121T010000Z-ab"),
    ] {
        let failure = LoadFailure {
            dataset: dataset.into(),
            batch_id: id.into(),
            error: "boom".into(),
            statement: "COPY …".into(),
            attempts: MAX_LOAD_ATTEMPTS,
            first_failed_at: at,
            last_failed_at: at,
            skipped: None,
        };
        state
            .put_json(&crate::layout::load_failure_key(dataset, id), &failure)
            .await
            .unwrap();
    }
    let loader = Loader::new(
        store.clone(),
        Arc::new(RecordingExecutor::new()),
        Warehouse {
            schema: "shoplake".into(),
            copy_role_arn: "arn:aws:iam::1:role/copy".into(),
        },
        Arc::new(Registry::builtin()),
    );

    let err = loader.retry("2026-11").await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, LoadError::AmbiguousFailure { choices, .. } if choices.len() == 2),
        "{err:?}"
    );
    assert!(
        text.contains("daily_kpis/2026-11") && text.contains("payment_methods_daily/2026-11"),
        "{text}"
    );
    assert!(!crate::error::Retryable::is_retryable(&err));
    let untouched: LoadFailure = state
        .get_json(&crate::layout::load_failure_key("daily_kpis", "2026-11"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        untouched.attempts, MAX_LOAD_ATTEMPTS,
        "an ambiguous id changes nothing"
    );

    let retried = loader.retry("payment_methods_daily/2026-11").await.unwrap();
    assert_eq!(
        (retried.dataset.as_str(), retried.attempts),
        ("payment_methods_daily", 0)
    );
    let kpis: LoadFailure = state
        .get_json(&crate::layout::load_failure_key("daily_kpis", "2026-11"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kpis.attempts, MAX_LOAD_ATTEMPTS, "only the month named");

    // A bare batch id recorded once is still enough, and a skip takes the same names.
    assert_eq!(
        loader.retry("20261121T010000Z-ab").await.unwrap().dataset,
        "orders"
    );
    let skipped = loader
        .skip("daily_kpis/2026-11", "dana", "bad month", at)
        .await
        .unwrap();
    assert_eq!(skipped.skipped.unwrap().by, "dana");
    assert!(matches!(
        loader.retry("orders/2026-11").await,
        Err(LoadError::NoFailure(_))
    ));
}
