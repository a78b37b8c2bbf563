use std::sync::Mutex;

use async_trait::async_trait;
use chrono::TimeZone;

use super::*;
use crate::alert::message::FailedInvocation;
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
        m.body
            .contains("Next steps (docs/runbook.md#quality_fail)\n  1. "),
        "{}",
        m.body
    );
    assert_eq!(m.attributes()["alert_type"], "quality_fail");
}

#[tokio::test]
async fn a_burst_of_failures_becomes_one_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, sent) = service(&dir);
    let datasets = ["orders", "payments", "customers", "refunds", "returns"];
    let mut outcomes = vec![];
    for (i, d) in datasets.iter().enumerate() {
        outcomes.extend(
            svc.handle(quality(d, Verdict::Fail), at(1, i as u32))
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
    assert_eq!(
        digest.subject,
        "[FAIL] 2 alerts (2 failing) for refunds, returns"
    );
    assert!(
        digest.body.contains("[FAIL] refunds 2026-11-21")
            && digest.body.contains("docs/runbook.md#digest")
    );
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
        "[FAIL] all 2026-11-21: no successful load by 04:00 UTC (SLA breach)"
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
