//! Faults moto cannot produce, injected with aws-smithy-mocks: SNS answering 503 (retried with
//! backoff by the notifier) and a bad request (not retried).

use aws_sdk_sns::config::retry::RetryConfig;
use aws_sdk_sns::operation::publish::PublishOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use shoplake::alert::{AlertType, Message, Notifier, SnsNotifier};

fn message() -> Message {
    Message {
        alert_type: AlertType::QualityFail,
        severity: "fail".into(),
        dataset: "orders".into(),
        date: "2026-11-21".into(),
        subject: "[FAIL] orders 2026-11-21: 1 of 7 checks failed (reject rate 10.0%)".into(),
        body: "body".into(),
    }
}

#[tokio::test]
async fn sns_throttling_and_outages_are_retried_with_backoff() {
    let rule = mock!(aws_sdk_sns::Client::publish)
        .sequence()
        .http_status(503, None)
        .times(2)
        .output(|| PublishOutput::builder().message_id("m-1").build())
        .build();
    // The SDK's own retries are off so the count below is the notifier's doing.
    let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let notifier = SnsNotifier::new(client, "arn:aws:sns:us-east-1:123456789012:alerts")
        .with_retries(4, std::time::Duration::from_millis(5));
    let started = std::time::Instant::now();
    notifier
        .publish(&message())
        .await
        .expect("published on the third attempt");
    assert_eq!(rule.num_calls(), 3);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(15),
        "backed off 5 ms, then 10 ms"
    );
}

#[tokio::test]
async fn sns_giving_up_after_every_attempt_is_an_error() {
    let rule = mock!(aws_sdk_sns::Client::publish)
        .sequence()
        .http_status(503, None)
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let notifier =
        SnsNotifier::new(client, "arn:t").with_retries(3, std::time::Duration::from_millis(1));
    let err = notifier.publish(&message()).await.unwrap_err();
    assert_eq!(rule.num_calls(), 3);
    assert!(err.to_string().contains("after 3 attempt(s)"), "{err}");
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let rule = mock!(aws_sdk_sns::Client::publish)
        .sequence()
        .http_status(400, None)
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let notifier =
        SnsNotifier::new(client, "arn:t").with_retries(5, std::time::Duration::from_millis(1));
    assert!(notifier.publish(&message()).await.is_err());
    assert_eq!(rule.num_calls(), 1);
}
