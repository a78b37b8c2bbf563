//! The load stage lists from a watermark: a night's run looks at the new batches (and those
//! still open), not at every batch ever ingested; a batch gated late is still loaded.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{NaiveDate, TimeZone, Utc};
use shoplake::contract::Registry;
use shoplake::ingest::{IngestSettings, Ingestor};
use shoplake::quality::QualityGate;
use shoplake::stages::load::{BatchLoad, Loader, SkipReason};
use shoplake::storage::{LocalStore, ObjectStore};
use shoplake::warehouse::{RecordingExecutor, Warehouse};

use crate::support::faulty::FaultyStore;

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Duration::days(n)
}

struct Lake {
    dir: tempfile::TempDir,
    local: Arc<LocalStore>,
    registry: Arc<Registry>,
}

impl Lake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Lake {
            local: Arc::new(LocalStore::new(dir.path()).unwrap()),
            dir,
            registry: Arc::new(Registry::builtin()),
        }
    }

    /// Ingests day `n`'s customers export (uploaded that day, so its batch id is of that day).
    async fn ingest(&self, n: i64) -> String {
        self.ingest_with(n, "").await
    }

    /// The same, with `extra` rows appended (e.g. rows the contract rejects).
    async fn ingest_with(&self, n: i64, extra: &str) -> String {
        let key = format!("raw/customers/{}.csv", day(n));
        let body = format!(
            "customer_id,email,first_name,last_name,customer_region,country,signup_date,updated_at\n\
             C{n},c{n}@example.com,A,B,EU,DE,{d},{d}T09:00:00Z\n{extra}",
            d = day(n)
        );
        self.local.put(&key, Bytes::from(body)).await.unwrap();
        let at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                Utc.from_utc_datetime(&day(n).and_hms_opt(1, 0, 0).unwrap())
                    .timestamp() as u64,
            );
        std::fs::File::options()
            .write(true)
            .open(self.dir.path().join(&key))
            .unwrap()
            .set_modified(at)
            .unwrap();
        let ingestor = Ingestor::new(
            self.local.clone(),
            self.registry.clone(),
            IngestSettings::default(),
        );
        ingestor.ingest(&key).await.unwrap().manifest.batch_id
    }

    async fn gate(&self, batch: &str, n: i64) {
        let now = Utc.from_utc_datetime(&day(n).and_hms_opt(2, 0, 0).unwrap());
        QualityGate::new(self.local.clone(), self.registry.clone())
            .evaluate("customers", batch, now)
            .await
            .unwrap();
    }

    /// One load run through a counting store: its outcomes and the store's counters.
    async fn load(&self, n: i64) -> (Vec<BatchLoad>, Arc<FaultyStore>) {
        let counting = Arc::new(FaultyStore::counting(self.local.clone()));
        let loader = Loader::new(
            counting.clone(),
            Arc::new(RecordingExecutor::new()),
            Warehouse {
                schema: "shoplake".into(),
                copy_role_arn: "arn:aws:iam::1:role/copy".into(),
            },
            self.registry.clone(),
        );
        let now = Utc.from_utc_datetime(&day(n).and_hms_opt(3, 0, 0).unwrap());
        let report = loader.load_pending(now).await.unwrap();
        (report.batches, counting)
    }
}

fn loaded(outcomes: &[BatchLoad]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            BatchLoad::Loaded { batch_id, .. } => Some(batch_id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_nights_load_lists_the_new_batches_not_the_history() {
    let lake = Lake::new();
    for n in 1..=60 {
        let batch = lake.ingest(n).await;
        lake.gate(&batch, n).await;
    }
    let (first, counting) = lake.load(60).await;
    assert_eq!(loaded(&first).len(), 60, "the first run loads every batch");
    assert!(counting.manifests_listed() >= 60);

    let batch = lake.ingest(61).await;
    lake.gate(&batch, 61).await;
    let (night, counting) = lake.load(61).await;
    assert_eq!(loaded(&night), [batch]);
    // The 15 days behind the watermark and the new batch, not the 61 batches of history.
    assert!(
        counting.manifests_listed() <= 17,
        "{} manifests listed",
        counting.manifests_listed()
    );
    assert!(
        counting.heads() <= 2 * 17 + 2,
        "{} HEAD requests",
        counting.heads()
    );
}

#[tokio::test]
async fn a_batch_gated_after_the_watermark_passed_it_is_still_loaded() {
    let lake = Lake::new();
    let late = lake.ingest(1).await;
    let (outcomes, _) = lake.load(1).await;
    assert!(
        matches!(
            &outcomes[..],
            [BatchLoad::Skipped {
                reason: SkipReason::NotChecked,
                ..
            }]
        ),
        "{outcomes:?}"
    );
    // Weeks of newer batches move the watermark far past it.
    for n in 2..=40 {
        let batch = lake.ingest(n).await;
        lake.gate(&batch, n).await;
    }
    let (outcomes, _) = lake.load(40).await;
    assert_eq!(loaded(&outcomes).len(), 39);
    assert!(!loaded(&outcomes).contains(&late));

    lake.gate(&late, 41).await;
    let (outcomes, counting) = lake.load(41).await;
    assert_eq!(
        loaded(&outcomes),
        [late],
        "the open batch is looked at again"
    );
    assert!(counting.manifests_listed() <= 17);
    let (outcomes, _) = lake.load(42).await;
    assert!(
        loaded(&outcomes).is_empty(),
        "and loaded once: {outcomes:?}"
    );
}

#[tokio::test]
async fn a_held_back_batch_overridden_weeks_later_is_still_loaded() {
    let lake = Lake::new();
    // Half its rows rejected: the gate fails it and the loader holds it back.
    let held = lake
        .ingest_with(
            1,
            "BAD,not-an-email,A,B,EU,DE,2026-01-02,2026-01-02T09:00:00Z\n",
        )
        .await;
    lake.gate(&held, 1).await;
    let (outcomes, _) = lake.load(1).await;
    assert!(
        matches!(
            &outcomes[..],
            [BatchLoad::Skipped {
                reason: SkipReason::HeldBack,
                ..
            }]
        ),
        "{outcomes:?}"
    );
    for n in 2..=40 {
        let batch = lake.ingest(n).await;
        lake.gate(&batch, n).await;
    }
    let (outcomes, _) = lake.load(40).await;
    assert_eq!(loaded(&outcomes).len(), 39);
    let now = Utc.from_utc_datetime(&day(41).and_hms_opt(9, 0, 0).unwrap());
    QualityGate::new(lake.local.clone(), lake.registry.clone())
        .override_batch("customers", &held, "on-call", "rejects understood", now)
        .await
        .unwrap();
    let (outcomes, counting) = lake.load(41).await;
    assert_eq!(
        loaded(&outcomes),
        [held],
        "the open batch is loaded once overridden"
    );
    assert!(counting.manifests_listed() <= 17);
}
