use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone};

use super::*;
use crate::alert::message::{AlertType, FailedInvocation};
use crate::alert::{Message, Notifier, NotifyError};
use crate::layout;
use crate::quality::{CheckResult, CheckStatus, QualityReport, Verdict};
use crate::stages::Stage;
use crate::storage::{LocalStore, ObjectStore};
use bytes::Bytes;

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Message>>);

#[async_trait]
impl Notifier for Recorder {
    async fn publish(&self, m: &Message) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(m.clone());
        Ok(())
    }
}

fn service(dir: &tempfile::TempDir) -> (AlertService, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    (
        AlertService::new(store, recorder.clone(), AlertSettings::default()),
        recorder,
    )
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, h, m, 0).unwrap()
}

fn report(dataset: &str, verdict: Verdict) -> QualityReport {
    let status = match verdict {
        Verdict::Pass => CheckStatus::Pass,
        Verdict::Warn => CheckStatus::Warn,
        Verdict::Fail => CheckStatus::Fail,
    };
    let checks = vec![CheckResult {
        check: "reject_rate".into(),
        column: None,
        severity: crate::contract::Severity::Fail,
        status,
        observed: Some(0.1),
        observed_text: "10.0%".into(),
        threshold: "warn > 1.0%, fail > 5.0%".into(),
        message: "100 of 1000 rows rejected".into(),
        offending_keys: vec![],
        breakdown: crate::quality::report::top_tallies(
            [
                ("currency: does not match ^[A-Z]{3}$", 70),
                ("total_amount: required value is missing", 30),
            ],
            5,
        ),
    }];
    let (verdict, summary) = QualityReport::verdict_of(&checks);
    QualityReport {
        report_version: 1,
        dataset: dataset.into(),
        batch_id: "20261121T010000Z-abc".into(),
        batch_date: "2026-11-21".into(),
        source: format!("s3://lake/raw/{dataset}/x.csv"),
        manifest: format!("s3://lake/manifests/{dataset}/20261121T010000Z-abc.json"),
        evaluated_at: "2026-11-21T01:00:00Z".into(),
        verdict,
        loadable: verdict != Verdict::Fail,
        summary,
        rows_read: 1000,
        rows_written: 900,
        rows_rejected: 100,
        duplicates_dropped: 0,
        rejects_file: Some(format!(
            "s3://lake/quarantine/{dataset}/b/rejected_rows.csv"
        )),
        quarantined_source: None,
        checks,
        override_: None,
    }
}

fn quality(dataset: &str, verdict: Verdict) -> AlertRequest {
    AlertRequest::Quality(Box::new(report(dataset, verdict)))
}

#[tokio::test]
async fn a_failed_batch_pages_once_per_window_and_a_pass_pages_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    let out = svc
        .handle(quality("orders", Verdict::Pass), at(1, 0))
        .await
        .unwrap();
    assert!(matches!(out[0], AlertOutcome::NothingToSend { .. }));
    assert!(sent.0.lock().unwrap().is_empty());

    svc.handle(quality("orders", Verdict::Fail), at(1, 0))
        .await
        .unwrap();
    let out = svc
        .handle(quality("orders", Verdict::Fail), at(2, 0))
        .await
        .unwrap();
    assert!(matches!(out[0], AlertOutcome::Suppressed { .. }), "{out:?}");
    svc.handle(quality("orders", Verdict::Fail), at(7, 1))
        .await
        .unwrap();
    let sent = sent.0.lock().unwrap();
    assert_eq!(sent.len(), 2, "once, then again after the 6 h window");
    let m = &sent[0];
    assert_eq!(
        m.subject,
        "[FAIL] orders 2026-11-21: 1 of 1 checks failed (reject rate 10.0%)"
    );
    assert!(m.body.contains("100 of 1000 rows rejected") && m.body.contains("rejected_rows.csv"));
    assert!(
        m.body.contains(
            "    rejected rows by reason:\n            70  currency: does not match ^[A-Z]{3}$\n            30  total_amount: required value is missing\n"
        ),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("Next steps (docs/runbook.md#quality_fail)\n  1. "),
        "{}",
        m.body
    );
    assert_eq!(m.attributes()["alert_type"], "quality_fail");
}

#[tokio::test]
async fn a_burst_of_warnings_becomes_one_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    let datasets = ["orders", "payments", "customers", "refunds", "returns"];
    let mut outcomes = vec![];
    for (i, d) in datasets.iter().enumerate() {
        outcomes.extend(
            svc.handle(quality(d, Verdict::Warn), at(1, i as u32))
                .await
                .unwrap(),
        );
    }
    let queued = outcomes
        .iter()
        .filter(|o| matches!(o, AlertOutcome::Queued { .. }))
        .count();
    assert_eq!((sent.0.lock().unwrap().len(), queued), (3, 2));
    // Nothing is flushed before the oldest queued alert has waited a whole window.
    let early = svc
        .handle(AlertRequest::FlushDigest, at(1, 6))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let out = svc
        .handle(AlertRequest::FlushDigest, at(1, 9))
        .await
        .unwrap();
    assert!(
        matches!(out[0], AlertOutcome::DigestSent { alerts: 2, .. }),
        "{out:?}"
    );
    let sent = sent.0.lock().unwrap();
    let digest = sent.last().unwrap();
    assert_eq!(digest.subject, "[WARN] 2 alerts for refunds, returns");
    assert!(
        digest.body.contains("[WARN] refunds 2026-11-21")
            && digest.body.contains("docs/runbook.md#digest"),
        "{}",
        digest.body
    );
}

#[tokio::test]
async fn a_failure_after_a_burst_of_warnings_is_sent_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    // The default burst threshold is 3: the fourth warning waits for a digest.
    for (i, d) in ["orders", "payments", "customers", "refunds"]
        .iter()
        .enumerate()
    {
        svc.handle(quality(d, Verdict::Warn), at(1, i as u32))
            .await
            .unwrap();
    }
    assert_eq!(sent.0.lock().unwrap().len(), 3);
    let out = svc
        .handle(quality("returns", Verdict::Fail), at(1, 5))
        .await
        .unwrap();
    assert!(matches!(out[0], AlertOutcome::Sent { .. }), "{out:?}");
    {
        let sent = sent.0.lock().unwrap();
        assert_eq!(sent.len(), 4);
        assert!(
            sent[3].subject.starts_with("[FAIL] returns"),
            "{:?}",
            sent[3]
        );
    }
    // Still deduplicated: the same failure again within the window is suppressed.
    let again = svc
        .handle(quality("returns", Verdict::Fail), at(1, 6))
        .await
        .unwrap();
    assert!(
        matches!(again[0], AlertOutcome::Suppressed { .. }),
        "{again:?}"
    );
    // The held warning goes out as a digest of one, and the failure is not in it.
    let out = svc
        .handle(AlertRequest::FlushDigest, at(1, 20))
        .await
        .unwrap();
    assert!(
        matches!(out[0], AlertOutcome::DigestSent { alerts: 1, .. }),
        "{out:?}"
    );
    let sent = sent.0.lock().unwrap();
    assert!(!sent.last().unwrap().body.contains("[FAIL] returns"));
}

#[tokio::test]
async fn the_sla_check_pages_only_after_the_deadline_without_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    let check = || AlertRequest::SlaCheck { date: None };
    let out = svc.handle(check(), at(3, 59)).await.unwrap();
    assert!(
        matches!(&out[0], AlertOutcome::NothingToSend { reason } if reason.contains("runs until"))
    );
    svc.handle(check(), at(4, 0)).await.unwrap();
    assert_eq!(
        sent.0.lock().unwrap()[0].subject,
        "[FAIL] all 2026-11-21: no load ran by 04:00 UTC (SLA breach)"
    );

    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    LocalStore::new(dir.path())
        .unwrap()
        .put(
            &layout::load_run_key("2026-11-21"),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let out = svc.handle(check(), at(4, 0)).await.unwrap();
    assert!(
        matches!(&out[0], AlertOutcome::NothingToSend { reason } if reason.contains("was loaded"))
    );
    assert!(sent.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_sla_holds_only_when_the_days_batches_reached_the_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    let store = LocalStore::new(dir.path()).unwrap();
    let put = |key: String, body: Vec<u8>| {
        let store = &store;
        async move { store.put(&key, Bytes::from(body)).await.unwrap() }
    };
    put(layout::load_run_key("2026-11-21"), b"{}".to_vec()).await;
    // Three batches arrived before 04:00: loaded, held back by quality, and passed but not
    // loaded. One arrived after the deadline and is not the SLA's business yet.
    let batch = |h: u32| format!("20261121T{h:02}0000Z-abcdef012345");
    for h in [1, 2, 3, 5] {
        arrive(&dir, "orders", h, 0).await;
    }
    put(layout::loaded_marker_key("orders", &batch(1)), vec![]).await;
    let mut held = report("orders", Verdict::Fail);
    held.batch_id = batch(2);
    put(
        layout::quality_report_key("orders", &batch(2)),
        serde_json::to_vec(&held).unwrap(),
    )
    .await;
    let mut passed = report("orders", Verdict::Pass);
    passed.batch_id = batch(3);
    put(
        layout::quality_report_key("orders", &batch(3)),
        serde_json::to_vec(&passed).unwrap(),
    )
    .await;

    let day = Some(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
    svc.handle(AlertRequest::SlaCheck { date: day }, at(4, 0))
        .await
        .unwrap();
    {
        let sent = sent.0.lock().unwrap();
        assert_eq!(sent.len(), 1);
        let m = &sent[0];
        assert_eq!(
            m.subject,
            "[FAIL] all 2026-11-21: 1 of 3 batch(es) not in the warehouse by 04:00 UTC (SLA breach)"
        );
        assert!(
            m.body.contains(&format!(
                "  - orders {}: passed quality, no load has taken it",
                batch(3)
            )) && m.body.contains(&format!(
                "  - orders {}: held back by its quality verdict (quality_fail alert)",
                batch(2)
            )),
            "{}",
            m.body
        );
    }

    // Once it is loaded, the day holds: the held-back batch has its own alert.
    put(layout::loaded_marker_key("orders", &batch(3)), vec![]).await;
    let out = svc
        .handle(AlertRequest::SlaCheck { date: day }, at(10, 0))
        .await
        .unwrap();
    assert!(
        matches!(&out[0], AlertOutcome::NothingToSend { reason }
            if reason.contains("2 of 3 batch(es) in the warehouse, 1 held back")),
        "{out:?}"
    );
    assert_eq!(sent.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_function_failure_names_the_request_and_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    let failure = FailedInvocation {
        function: "shoplake-ingest".into(),
        request_id: "req-1".into(),
        condition: "RetriesExhausted".into(),
        attempts: 3,
        error_type: "IngestRetryable".into(),
        error_message: "S3 throttled".into(),
        objects: vec!["s3://lake/raw/orders/a.csv".into()],
        dataset: "orders".into(),
        date: "2026-11-21".into(),
    };
    svc.handle(AlertRequest::Failure(failure), at(2, 0))
        .await
        .unwrap();
    let m = &sent.0.lock().unwrap()[0];
    assert_eq!(
        m.subject,
        "[FAIL] shoplake-ingest 2026-11-21: function failed after 3 attempt(s) (IngestRetryable)"
    );
    for needle in [
        "req-1",
        "s3://lake/raw/orders/a.csv",
        "S3 throttled",
        "runbook.md#function_failure",
    ] {
        assert!(m.body.contains(needle), "{needle} missing from {}", m.body);
    }
}

#[test]
fn sla_breaches_count_even_when_the_email_is_suppressed() {
    let response = AlertResponse {
        outcomes: vec![
            AlertOutcome::Suppressed {
                alert_type: "sla_breach".into(),
                dedup_key: "k".into(),
            },
            AlertOutcome::Sent {
                alert_type: "quality_fail".into(),
                subject: "s".into(),
            },
        ],
    };
    let set = &<AlertService as Stage>::metrics(&response)[0];
    assert_eq!(
        set.values,
        [
            ("AlertsSent", 1),
            ("AlertsSuppressed", 1),
            ("AlertsQueued", 0),
            ("SlaBreaches", 1)
        ]
    );
}

/// Lands a batch of `dataset` whose source arrived at `h:m` on 2026-11-21.
async fn arrive(dir: &tempfile::TempDir, dataset: &str, h: u32, m: u32) {
    let store = LocalStore::new(dir.path()).unwrap();
    let key = format!("manifests/{dataset}/20261121T{h:02}{m:02}00Z-abcdef012345.json");
    store.put(&key, Bytes::from("{}")).await.unwrap();
}

fn arrival_check() -> AlertRequest {
    AlertRequest::ArrivalCheck {
        date: Some(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()),
    }
}

#[tokio::test]
async fn a_missing_export_pages_once_and_its_late_arrival_once() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    // The built-in contracts expect every export by 01:30 UTC, with 15 minutes of grace.
    arrive(&dir, "orders", 1, 10).await;
    arrive(&dir, "payments", 1, 40).await;
    let early = svc.handle(arrival_check(), at(1, 44)).await.unwrap();
    assert!(sent.0.lock().unwrap().is_empty(), "{early:?}");

    svc.handle(arrival_check(), at(1, 50)).await.unwrap();
    svc.handle(arrival_check(), at(2, 5)).await.unwrap();
    {
        let sent = sent.0.lock().unwrap();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let m = &sent[0];
        assert_eq!(m.alert_type, AlertType::ExportMissing);
        assert_eq!(m.severity, "fail");
        assert_eq!(
            m.subject,
            "[FAIL] customers 2026-11-21: no export arrived by 01:45 UTC"
        );
        assert!(m.body.contains("raw/customers/"), "{}", m.body);
        assert!(
            m.body.contains("expects one by 01:30 UTC (+15 min grace)"),
            "{}",
            m.body
        );
        assert!(
            m.body.contains("docs/runbook.md#export_missing"),
            "{}",
            m.body
        );
    }

    // The customers export lands at 03:20: one export_late, then silence.
    arrive(&dir, "customers", 3, 20).await;
    svc.handle(arrival_check(), at(3, 30)).await.unwrap();
    svc.handle(arrival_check(), at(10, 0)).await.unwrap();
    let sent = sent.0.lock().unwrap();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let late = &sent[1];
    assert_eq!(late.alert_type, AlertType::ExportLate);
    assert_eq!(late.severity, "warn");
    assert!(
        late.subject
            .contains("export arrived late, at 03:20 UTC (due 01:45 UTC)"),
        "{}",
        late.subject
    );
}

#[tokio::test]
async fn an_export_a_minute_past_the_grace_is_late_without_having_been_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    for d in ["orders", "payments"] {
        arrive(&dir, d, 1, 0).await;
    }
    arrive(&dir, "customers", 1, 46).await;
    svc.handle(arrival_check(), at(2, 0)).await.unwrap();
    let sent = sent.0.lock().unwrap();
    let types: Vec<AlertType> = sent.iter().map(|m| m.alert_type).collect();
    assert_eq!(types, [AlertType::ExportLate]);
}

#[tokio::test]
async fn the_scheduled_check_reports_yesterday_only_when_it_came_late() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    // Nothing arrived on the 21st but a late customers export: on the 22nd at 00:00 the
    // default check (yesterday and today) says it was late and pages nobody about the rest.
    arrive(&dir, "customers", 23, 55).await;
    let midnight = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
    svc.handle(AlertRequest::ArrivalCheck { date: None }, midnight)
        .await
        .unwrap();
    let sent = sent.0.lock().unwrap();
    let types: Vec<(AlertType, &str)> = sent
        .iter()
        .map(|m| (m.alert_type, m.dataset.as_str()))
        .collect();
    assert_eq!(types, [(AlertType::ExportLate, "customers")]);
}

#[test]
fn the_arrival_check_is_recognised_with_or_without_a_date() {
    use serde_json::json;
    assert_eq!(
        request::parse(&json!({"arrival_check": {}})).unwrap(),
        [AlertRequest::ArrivalCheck { date: None }]
    );
    assert_eq!(
        request::parse(&json!({"arrival_check": {"date": "2026-11-21"}})).unwrap(),
        [arrival_check()]
    );
    let bad = request::parse(&json!({"arrival_check": {"date": "21/11"}})).unwrap_err();
    assert!(bad.to_string().contains("arrival_check.date"), "{bad}");
}
