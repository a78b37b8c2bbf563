//! The notifier conformance suite on both adapters: SNS (moto, read back from what it recorded
//! as published) and the local outbox (`outbox/` in the lake, read back from its files).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;
use shoplake::alert::{AlertType, Message, Notifier, OutboxNotifier, SnsNotifier};
use shoplake::storage::{LocalStore, ObjectStore};

use crate::support::moto::{self, published};
use crate::support::{bucket_name, files};

/// A message as its reader gets it: subject, body and the attributes subscriptions filter on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Delivered {
    subject: String,
    body: String,
    attributes: BTreeMap<String, String>,
}

fn message(alert_type: AlertType, dataset: &str, n: usize) -> Message {
    Message {
        alert_type,
        severity: "fail".into(),
        dataset: dataset.into(),
        date: "2026-11-21".into(),
        subject: format!("[shoplake] {dataset}: alert {n}"),
        body: format!("What happened: alert {n}.\nWhat to do: read the runbook."),
    }
}

fn delivered(m: &Message) -> Delivered {
    Delivered {
        subject: m.subject.clone(),
        body: m.body.clone(),
        attributes: m
            .attributes()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    }
}

/// What every notifier does: each message published reaches its reader exactly once, whole,
/// with its attributes; messages published at the same time (overlapping runs) are all
/// delivered; and publishing the same message twice delivers it twice (deduplication is the
/// alert stage's, not the notifier's).
async fn suite(notifier: &dyn Notifier, inbox: impl Fn() -> Vec<Delivered>) {
    let first = message(AlertType::ExportMissing, "orders", 0);
    notifier.publish(&first).await.unwrap();
    assert_eq!(inbox(), vec![delivered(&first)]);

    // Same type and dataset, all at once.
    let burst: Vec<Message> = (1..=12)
        .map(|n| message(AlertType::QualityFail, "payments", n))
        .collect();
    for result in join_all(burst.iter().map(|m| notifier.publish(m))).await {
        result.unwrap();
    }
    notifier.publish(&first).await.unwrap();

    let mut want: Vec<Delivered> = burst.iter().map(delivered).collect();
    want.extend([delivered(&first), delivered(&first)]);
    want.sort();
    let mut got = inbox();
    got.sort();
    assert_eq!(got, want, "every message delivered once per publish");
}

/// Parses a message as `OutboxNotifier::render` writes it.
fn parse_outbox_file(text: &str) -> Delivered {
    let (head, body) = text.split_once("\n\n").expect("a blank line ends the head");
    let mut lines = head.lines();
    let subject = lines.next().unwrap().strip_prefix("Subject: ").unwrap();
    let attributes = lines.next().unwrap().strip_prefix("Attributes: ").unwrap();
    Delivered {
        subject: subject.to_owned(),
        body: body.to_owned(),
        attributes: attributes
            .split(", ")
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect(),
    }
}

#[tokio::test]
async fn the_outbox_notifier_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let outbox = dir.path().join("outbox");
    suite(&OutboxNotifier::new(store), || {
        files(&outbox)
            .iter()
            .map(|f| parse_outbox_file(&std::fs::read_to_string(f).unwrap()))
            .collect()
    })
    .await;
}

#[tokio::test]
async fn the_sns_notifier_conforms_against_moto() {
    let (sns, topic) = moto::topic(&bucket_name("notifier-conformance")).await;
    let notifier = SnsNotifier::new(sns, &topic);
    suite(&notifier, || {
        published(&topic)
            .into_iter()
            .map(|(subject, body, attributes)| Delivered {
                subject,
                body,
                attributes: attributes
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v["Value"].as_str().unwrap().to_owned()))
                    .collect(),
            })
            .collect()
    })
    .await;
}
