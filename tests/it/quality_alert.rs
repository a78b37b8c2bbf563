//! The quality gate and alerting against moto (S3 and SNS): verdicts, reports, and the email
//! actually published, read back from the emulator.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use shoplake::alert::SnsNotifier;
use shoplake::ingest::IngestSettings;
use shoplake::quality::{QualityReport, Verdict};
use shoplake::stages::alert::{AlertOutcome, AlertService, AlertSettings};
use shoplake::stages::ingest::{IngestRequest, IngestService};
use shoplake::stages::quality::{QualityRequest, QualityService};
use shoplake::storage::{ObjectStore, S3Store};

use crate::support::moto::published;
use crate::support::{bucket_name, moto};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn event(bucket: &str, key: &str) -> S3Event {
    serde_json::from_value(json!({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z",
        "userIdentity": {}, "requestParameters": {},
        "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(' ', "+")}}
    }]}))
    .unwrap()
}

struct Env {
    bucket: String,
    store: S3Store,
    topic: String,
    ingest: IngestService,
    quality: QualityService,
    alerts: AlertService,
}

async fn env(test: &str) -> Env {
    let server = moto::server();
    let bucket = bucket_name(test);
    let s3 = server.bucket(&bucket).await;
    let (sns, topic) = moto::topic(&bucket).await;
    let store = S3Store::new(s3.clone(), &bucket);
    let notifier =
        SnsNotifier::new(sns, &topic).with_retries(3, std::time::Duration::from_millis(10));
    Env {
        alerts: AlertService::new(
            Arc::new(store.clone()),
            Arc::new(notifier),
            AlertSettings::default(),
        ),
        ingest: IngestService::for_s3(
            s3.clone(),
            std::sync::Arc::new(shoplake::contract::Registry::builtin()),
            IngestSettings::default(),
        ),
        quality: QualityService::for_s3(
            s3,
            std::sync::Arc::new(shoplake::contract::Registry::builtin()),
        ),
        store,
        topic,
        bucket,
    }
}

impl Env {
    /// Uploads and ingests a file, then runs the quality function on its manifest.
    async fn ingest_and_check(&self, key: &str, csv: String) -> QualityReport {
        self.store.put(key, csv.into()).await.unwrap();
        let summary = self
            .ingest
            .handle(IngestRequest::from_s3(&event(&self.bucket, key)))
            .await
            .unwrap()
            .batches
            .remove(0);
        let manifest = format!("manifests/{}/{}.json", summary.dataset, summary.batch_id);
        let mut response = self
            .quality
            .handle(
                QualityRequest::from_s3(&event(&self.bucket, &manifest)),
                now(),
            )
            .await
            .unwrap();
        assert_eq!(response.reports.len(), 1);
        response.reports.remove(0)
    }

    /// Hands a report to the alert function as the quality function's on-success destination would.
    async fn alert(&self, report: &QualityReport) -> Vec<AlertOutcome> {
        let record = json!({
            "version": "1.0",
            "timestamp": "2026-11-21T12:00:00.000Z",
            "requestContext": {"requestId": "r-1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:quality:$LATEST", "condition": "Success", "approximateInvokeCount": 1},
            "requestPayload": {},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "responsePayload": {"reports": [report]}
        });
        let requests = shoplake::stages::alert::parse(&record).unwrap();
        self.alerts
            .handle_all(requests, now())
            .await
            .unwrap()
            .outcomes
    }
}

fn customers_csv(n: usize) -> String {
    let mut s = String::from(
        "customer_id,email,first_name,last_name,customer_region,country,signup_date,updated_at\n",
    );
    for i in 0..n {
        s += &format!("C{i},c{i}@example.com,Ana,Silva,EU,DE,2025-01-01,2026-11-21T08:00:00Z\n");
    }
    s
}

fn orders_csv(n: usize, bad: usize) -> String {
    let mut s = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for i in 0..n {
        let status = if i < bad { "lost" } else { "paid" };
        s += &format!(
            "O{i},C{},2026-11-21T09:00:00Z,{status},EU,EUR,10.00,1,2026-11-21T09:00:00Z\n",
            i % 20
        );
    }
    s
}

#[tokio::test]
async fn a_clean_batch_passes_and_publishes_nothing() {
    let env = env("quality-clean").await;
    let report = env
        .ingest_and_check("raw/customers/c.csv", customers_csv(20))
        .await;
    assert_eq!(report.verdict, Verdict::Pass, "{:#?}", report.checks);
    assert!(report.loadable);
    let key = format!("quality/customers/{}.json", report.batch_id);
    let stored: QualityReport =
        serde_json::from_slice(&env.store.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored, report);
    let outcomes = env.alert(&report).await;
    assert!(
        matches!(outcomes[..], [AlertOutcome::NothingToSend { .. }]),
        "{outcomes:?}"
    );
    assert!(published(&env.topic).is_empty());
}

#[tokio::test]
async fn ten_percent_rejects_fail_and_page_once_per_window() {
    let env = env("quality-fail").await;
    env.ingest_and_check("raw/customers/c.csv", customers_csv(20))
        .await;
    let report = env
        .ingest_and_check("raw/orders/o.csv", orders_csv(100, 10))
        .await;
    assert_eq!((report.verdict, report.loadable), (Verdict::Fail, false));

    env.alert(&report).await;
    let sent = published(&env.topic);
    assert_eq!(sent.len(), 1, "exactly one message");
    let (subject, body, attributes) = &sent[0];
    assert!(subject.starts_with("[FAIL] orders 20"), "{subject}");
    assert!(
        subject.ends_with(": 1 of 7 checks failed (reject rate 10.0%)"),
        "{subject}"
    );
    assert!(subject.chars().count() <= 100);
    for needle in [
        "10 of 100 rows rejected",
        "will NOT be loaded",
        &report.batch_id,
        &format!(
            "s3://{}/quarantine/orders/{}/rejected_rows.csv",
            env.bucket, report.batch_id
        ),
        &format!(
            "s3://{}/quality/orders/{}.json",
            env.bucket, report.batch_id
        ),
        "Next steps (docs/runbook.md#quality_fail)",
    ] {
        assert!(body.contains(needle), "{needle:?} missing from:\n{body}");
    }
    assert!(!body.contains("@example.com"), "no personal data in alerts");
    assert_eq!(attributes["severity"]["Value"], "fail");
    assert_eq!(attributes["dataset"]["Value"], "orders");
    assert_eq!(attributes["alert_type"]["Value"], "quality_fail");

    // The same alert again within the window (a re-run, a redelivered destination record).
    let again = env.alert(&report).await;
    assert!(
        matches!(again[..], [AlertOutcome::Suppressed { .. }]),
        "{again:?}"
    );
    assert_eq!(
        published(&env.topic).len(),
        1,
        "a repeat within the window publishes nothing"
    );
}

#[tokio::test]
async fn an_orphan_heavy_payments_batch_warns_with_the_orphan_rate() {
    let env = env("quality-orphans").await;
    env.ingest_and_check("raw/customers/c.csv", customers_csv(20))
        .await;
    env.ingest_and_check("raw/orders/o.csv", orders_csv(10, 0))
        .await;
    let mut payments =
        String::from("payment_id,order_id,payment_ts,method,status,amount,currency,updated_at\n");
    for i in 0..20 {
        // Half of them point at orders that were never exported.
        let order = if i % 2 == 0 {
            format!("O{}", i / 2)
        } else {
            format!("GHOST{i}")
        };
        payments += &format!(
            "P{i},{order},2026-11-21T09:05:00Z,card,succeeded,10.00,EUR,2026-11-21T09:05:00Z\n"
        );
    }
    let report = env.ingest_and_check("raw/payments/p.csv", payments).await;
    assert_eq!((report.verdict, report.loadable), (Verdict::Warn, true));
    let check = report
        .checks
        .iter()
        .find(|c| c.check == "referential_integrity")
        .unwrap();
    assert_eq!(
        (check.observed, check.offending_keys.len()),
        (Some(0.5), 10)
    );
    assert!(
        check.offending_keys.iter().all(|k| k.starts_with('P')),
        "keys only: {:?}",
        check.offending_keys
    );

    env.alert(&report).await;
    let sent = published(&env.topic);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .0
            .ends_with("checks warned (referential integrity(order_id) 50.0%)"),
        "{}",
        sent[0].0
    );
    assert_eq!(sent[0].2["severity"]["Value"], "warn");
    assert!(sent[0].1.contains("10 of 20 rows"), "{}", sent[0].1);
}

#[tokio::test]
async fn a_failing_sns_publish_is_an_error_and_the_report_survives() {
    let env = env("quality-sns-down").await;
    let report = env
        .ingest_and_check("raw/orders/o.csv", orders_csv(10, 5))
        .await;
    let sns = shoplake::aws::sns_client(&moto::server().sdk_config());
    let missing_topic = format!("{}-deleted", env.topic);
    let broken = AlertService::new(
        Arc::new(env.store.clone()),
        Arc::new(
            SnsNotifier::new(sns, missing_topic)
                .with_retries(2, std::time::Duration::from_millis(1)),
        ),
        AlertSettings::default(),
    );
    let request = shoplake::stages::alert::AlertRequest::Quality(Box::new(report.clone()));
    let err = broken.handle(request, now()).await.unwrap_err();
    assert!(err.to_string().contains("SNS publish"), "{err}");
    assert!(
        env.store
            .head(&format!("quality/orders/{}.json", report.batch_id))
            .await
            .unwrap()
            .is_some()
    );
    // Nothing was recorded as sent, so the retry of the invocation sends it.
    let outcomes = env.alert(&report).await;
    assert!(
        matches!(outcomes[..], [AlertOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
}

/// The arrival check on the bucket and SNS: no customers export by its deadline is one
/// `export_missing`, its late arrival one `export_late`, whatever the check's schedule repeats.
#[tokio::test]
async fn a_missing_export_pages_once_and_its_late_arrival_once_on_sns() {
    let env = env("arrivals").await;
    // The built-in contracts, but due when this test can tell regardless of the time it runs:
    // orders by the end of the day (on time), customers at 00:00 (late whenever it lands),
    // payments not expected at all.
    let contracts = tempfile::tempdir().unwrap();
    let due = "[arrival]\nby = \"01:30\"\ngrace_minutes = 15\n";
    let registry = Arc::new(crate::support::edited_contracts(
        contracts.path(),
        |name, text| {
            let arrival = match name {
                "orders" => "[arrival]\nby = \"23:59\"\ngrace_minutes = 1\n",
                "customers" => "[arrival]\nby = \"00:00\"\n",
                _ => "",
            };
            assert!(
                text.contains(due),
                "{name}.toml declares its arrival as expected"
            );
            text.replace(due, arrival)
        },
    ));
    let sns = shoplake::aws::sns_client(&moto::server().sdk_config());
    let alerts = AlertService::new(
        Arc::new(env.store.clone()),
        Arc::new(SnsNotifier::new(sns, &env.topic)),
        AlertSettings::default(),
    )
    .with_registry(registry);

    let orders = env
        .ingest_and_check("raw/orders/o.csv", orders_csv(20, 0))
        .await;
    // The day the export arrived (a batch id starts with its arrival time), checked at its end.
    let day = chrono::NaiveDate::parse_from_str(&orders.batch_id[..8], "%Y%m%d").unwrap();
    let day_text = day.format("%Y-%m-%d").to_string();
    let end = day.and_hms_opt(23, 59, 59).unwrap().and_utc();
    let check = || shoplake::stages::alert::AlertRequest::ArrivalCheck { date: Some(day) };
    for _ in 0..2 {
        alerts.handle(check(), end).await.unwrap();
    }
    let sent = published(&env.topic);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (subject, body, attributes) = &sent[0];
    assert_eq!(
        subject,
        &format!("[FAIL] customers {day_text}: no export arrived by 00:00 UTC")
    );
    assert!(body.contains("runbook.md#export_missing"), "{body}");
    assert_eq!(
        attributes["alert_type"]["Value"], "export_missing",
        "{attributes}"
    );
    assert_eq!(attributes["severity"]["Value"], "fail", "{attributes}");

    // The customers export lands: one export_late, then nothing more.
    env.ingest_and_check("raw/customers/c.csv", customers_csv(5))
        .await;
    for _ in 0..2 {
        alerts.handle(check(), end).await.unwrap();
    }
    let sent = published(&env.topic);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (subject, _, attributes) = &sent[1];
    assert!(
        subject.starts_with(&format!("[WARN] customers {day_text}: export arrived late")),
        "{subject}"
    );
    assert_eq!(attributes["severity"]["Value"], "warn", "{attributes}");
}

/// A burst on SNS: warnings past the burst threshold wait for a digest, and a FAIL right after
/// them is published at once.
#[tokio::test]
async fn a_fail_after_a_burst_of_warnings_is_published_at_once_and_the_warnings_digested() {
    let env = env("burst").await;
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/alert-quality-fail.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let fail: QualityReport =
        serde_json::from_value(sample["responsePayload"]["reports"][0].clone()).unwrap();
    let warn = |dataset: &str| {
        let mut r = fail.clone();
        r.dataset = dataset.into();
        r.verdict = Verdict::Warn;
        r.loadable = true;
        r
    };
    // Burst threshold 1: the first warning goes out, the next ones wait.
    let alerts = AlertService::new(
        Arc::new(env.store.clone()),
        Arc::new(SnsNotifier::new(
            shoplake::aws::sns_client(&moto::server().sdk_config()),
            &env.topic,
        )),
        AlertSettings {
            digest_threshold: 1,
            ..AlertSettings::default()
        },
    );
    let at = |minute| Utc.with_ymd_and_hms(2026, 11, 21, 1, minute, 0).unwrap();
    let request = |r: QualityReport| shoplake::stages::alert::AlertRequest::Quality(Box::new(r));
    for (i, d) in ["customers", "payments", "refunds"].iter().enumerate() {
        alerts.handle(request(warn(d)), at(i as u32)).await.unwrap();
    }
    let out = alerts.handle(request(fail.clone()), at(3)).await.unwrap();
    assert!(matches!(out[0], AlertOutcome::Sent { .. }), "{out:?}");
    let sent = published(&env.topic);
    let subjects: Vec<&str> = sent.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].starts_with("[WARN] customers"), "{subjects:?}");
    assert!(subjects[1].starts_with("[FAIL] orders"), "{subjects:?}");
    // The held warnings, once the oldest has waited the window: one digest of two.
    let out = alerts
        .handle(shoplake::stages::alert::AlertRequest::FlushDigest, at(20))
        .await
        .unwrap();
    assert!(
        matches!(out[0], AlertOutcome::DigestSent { alerts: 2, .. }),
        "{out:?}"
    );
    let sent = published(&env.topic);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].0, "[WARN] 2 alerts for payments, refunds");
}
