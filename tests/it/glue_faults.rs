//! Glue throttling, which moto cannot produce: throttled partitions are retried, then reported.

use aws_sdk_glue::Client;
use aws_sdk_glue::config::retry::RetryConfig;
use aws_sdk_glue::operation::batch_create_partition::BatchCreatePartitionOutput;
use aws_sdk_glue::types::{ErrorDetail, PartitionError};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use shoplake::Retryable;
use shoplake::catalog::{Catalog, GlueCatalog, PartitionDef};

fn partition(day: &str) -> PartitionDef {
    PartitionDef {
        values: vec![day.into()],
        location: format!("s3://lake/processed/payments/payment_date={day}/"),
    }
}

fn throttled(day: &str) -> PartitionError {
    PartitionError::builder()
        .partition_values(day)
        .error_detail(
            ErrorDetail::builder()
                .error_code("ThrottlingException")
                .error_message("Rate exceeded")
                .build(),
        )
        .build()
}

#[tokio::test]
async fn throttled_partitions_are_retried_until_registered() {
    let rule = mock!(Client::batch_create_partition)
        .sequence()
        .output(|| {
            BatchCreatePartitionOutput::builder()
                .errors(throttled("2026-11-21"))
                .build()
        })
        .output(|| BatchCreatePartitionOutput::builder().build())
        .build();
    let client: Client = mock_client!(aws_sdk_glue, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let glue = GlueCatalog::new(client, "shoplake");
    let added = glue
        .add_partitions(
            "payments",
            &[partition("2026-11-20"), partition("2026-11-21")],
        )
        .await
        .unwrap();
    assert_eq!(added, 2, "one registered at once, one after the retry");
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn partitions_still_throttled_after_every_attempt_are_an_error() {
    let rule = mock!(Client::batch_create_partition)
        .sequence()
        .output(|| {
            BatchCreatePartitionOutput::builder()
                .errors(throttled("2026-11-21"))
                .build()
        })
        .repeatedly()
        .build();
    let client: Client = mock_client!(aws_sdk_glue, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = GlueCatalog::new(client, "shoplake")
        .add_partitions("payments", &[partition("2026-11-21")])
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("2026-11-21: still throttled"),
        "{err}"
    );
    assert_eq!(rule.num_calls(), 4);
}
