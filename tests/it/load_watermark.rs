//! The load stage and `lake quality` list from a watermark (the shared `BatchCursor`): a night's
//! run looks at the new batches (and those still open), not at every batch ever ingested; a batch
//! gated late is still loaded, a batch committed late is still checked, and a verdict a killed
//! run never alerted is still sent.

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

use shoplake::alert::OutboxNotifier;
use shoplake::quality::QualityReport;
use shoplake::stages::alert::{AlertRequest, AlertService, AlertSettings};
use shoplake::stages::quality::QualityService;

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

impl Lake {
    fn quality_service(&self, store: Arc<FaultyStore>) -> QualityService {
        QualityService::new(Arc::new(move |_| store.clone()), self.registry.clone())
    }

    /// `lake quality`'s walk for verdicts never alerted, through a counting store.
    async fn unalerted(&self) -> (Vec<QualityReport>, Arc<FaultyStore>) {
        let counting = Arc::new(FaultyStore::counting(self.local.clone()));
        let reports = self
            .quality_service(counting.clone())
            .unalerted_reports("lake")
            .await
            .unwrap();
        (reports, counting)
    }

    /// `lake quality`'s walk for batches never checked, through a counting store; with
    /// `alert`, each verdict is then handled by the alert stage as `lake quality` does.
    async fn check(&self, n: i64, alert: bool) -> (Vec<String>, Arc<FaultyStore>) {
        let counting = Arc::new(FaultyStore::counting(self.local.clone()));
        let now = Utc.from_utc_datetime(&day(n).and_hms_opt(2, 0, 0).unwrap());
        let reports = self
            .quality_service(counting.clone())
            .check_unchecked("lake", now)
            .await
            .unwrap();
        if alert {
            let alerts = AlertService::new(
                self.local.clone(),
                Arc::new(OutboxNotifier::new(self.local.clone())),
                AlertSettings::default(),
            );
            for r in &reports {
                alerts
                    .handle_all(vec![AlertRequest::Quality(Box::new(r.clone()))], now)
                    .await
                    .unwrap();
            }
        }
        (reports.into_iter().map(|r| r.batch_id).collect(), counting)
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

#[tokio::test]
async fn lake_quality_lists_the_new_batches_not_the_history() {
    let lake = Lake::new();
    for n in 1..=90 {
        lake.ingest(n).await;
    }
    let (unsent, _) = lake.unalerted().await;
    assert!(unsent.is_empty());
    let (checked, counting) = lake.check(90, true).await;
    assert_eq!(checked.len(), 90, "the first run checks every batch");
    assert!(counting.manifests_listed() >= 90);

    let batch = lake.ingest(91).await;
    let (unsent, counting) = lake.unalerted().await;
    assert!(unsent.is_empty(), "{unsent:?}");
    // The 15 days behind the watermark and the new batch, not the 91 batches of history.
    assert!(
        counting.manifests_listed() <= 17,
        "verdicts: {} manifests listed",
        counting.manifests_listed()
    );
    assert!(counting.heads() <= 17, "{} HEAD requests", counting.heads());
    let (checked, counting) = lake.check(91, true).await;
    assert_eq!(checked, std::slice::from_ref(&batch));
    // Its own walk, and the volume check's 28 days (4 × its 7 batches) before the batch.
    assert!(
        counting.manifests_listed() <= 17 + 29,
        "checks: {} manifests listed",
        counting.manifests_listed()
    );

    // Killed between the report and its alert: the next run still sends the verdict.
    let killed = lake.ingest(92).await;
    let (checked, _) = lake.check(92, false).await;
    assert_eq!(checked, std::slice::from_ref(&killed));
    let (unsent, _) = lake.unalerted().await;
    assert_eq!(
        unsent
            .iter()
            .map(|r| r.batch_id.clone())
            .collect::<Vec<_>>(),
        [killed]
    );

    // A batch committed late (an ingest retried days after its source arrived) has an id
    // behind the watermark, within its lag: it is still checked, once.
    let late = lake
        .ingest_with(
            85,
            "C85b,late@example.com,A,B,EU,DE,2026-03-27,2026-03-27T09:00:00Z\n",
        )
        .await;
    assert!(late < batch, "{late} sorts before the watermark {batch}");
    let (checked, _) = lake.check(93, true).await;
    assert_eq!(checked, [late]);
    let (checked, _) = lake.check(93, true).await;
    assert!(checked.is_empty(), "{checked:?}");
}
