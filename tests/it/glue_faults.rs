//! Glue throttling and refusals, which moto cannot produce: throttled partitions are retried,
//! then reported; partition deletes go 25 to a call and what Glue keeps is reported.

use aws_sdk_glue::Client;
use aws_sdk_glue::config::retry::RetryConfig;
use aws_sdk_glue::operation::batch_create_partition::BatchCreatePartitionOutput;
use aws_sdk_glue::operation::batch_delete_partition::BatchDeletePartitionOutput;
use aws_sdk_glue::operation::get_partitions::{GetPartitionsError, GetPartitionsOutput};
use aws_sdk_glue::operation::get_table::GetTableOutput;
use aws_sdk_glue::types::error::InvalidInputException;
use aws_sdk_glue::types::{Column, ErrorDetail, Partition, PartitionError, Table};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use shoplake::Retryable;
use shoplake::catalog::{Catalog, GlueCatalog, MAX_PARTITIONS_PER_DELETE, PartitionDef};

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

fn values(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| vec![format!("2024-01-{:02}", 1 + i % 28), format!("R{i}")])
        .collect()
}

fn partition_error(values: &[String], code: &str) -> PartitionError {
    PartitionError::builder()
        .set_partition_values(Some(values.to_vec()))
        .error_detail(
            ErrorDetail::builder()
                .error_code(code)
                .error_message("from Glue")
                .build(),
        )
        .build()
}

/// BatchDeletePartition takes 25 partitions a call; partitions Glue no longer has are success.
#[tokio::test]
async fn partitions_are_deleted_25_at_a_time_and_missing_ones_are_success() {
    let doomed = values(60);
    let gone = doomed[30].clone();
    let rule = mock!(Client::batch_delete_partition)
        .match_requests(|r| r.partitions_to_delete().len() <= MAX_PARTITIONS_PER_DELETE)
        .sequence()
        .output(|| BatchDeletePartitionOutput::builder().build())
        .output(move || {
            BatchDeletePartitionOutput::builder()
                .errors(partition_error(&gone, "EntityNotFoundException"))
                .build()
        })
        .output(|| BatchDeletePartitionOutput::builder().build())
        .build();
    let client: Client = mock_client!(aws_sdk_glue, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let removed = GlueCatalog::new(client, "shoplake")
        .delete_partitions("orders", &doomed)
        .await
        .unwrap();
    assert_eq!(removed, 59, "one was already gone");
    assert_eq!(rule.num_calls(), 3, "25 + 25 + 10");
}

/// A partition Glue refuses to delete is an error naming it and what to do; every chunk is
/// still attempted. Refusals other than throttles are not worth an automatic retry.
#[tokio::test]
async fn partitions_glue_keeps_are_an_error_that_says_what_to_do() {
    let doomed = values(30);
    let denied = doomed[3].clone();
    let throttled = doomed[27].clone();
    let rule = mock!(Client::batch_delete_partition)
        .sequence()
        .output(move || {
            BatchDeletePartitionOutput::builder()
                .errors(partition_error(&denied, "AccessDeniedException"))
                .build()
        })
        .output(move || {
            BatchDeletePartitionOutput::builder()
                .errors(partition_error(&throttled, "ThrottlingException"))
                .build()
        })
        .build();
    let client: Client = mock_client!(aws_sdk_glue, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = GlueCatalog::new(client, "shoplake")
        .delete_partitions("orders", &doomed)
        .await
        .unwrap_err();
    assert_eq!(rule.num_calls(), 2, "both chunks were attempted");
    let text = err.to_string();
    for wanted in [
        "2 partition(s) of orders could not be removed",
        "2024-01-04/R3: AccessDeniedException from Glue",
        "2024-01-28/R27: ThrottlingException",
        "the next compact run",
        "glue:BatchDeletePartition",
    ] {
        assert!(text.contains(wanted), "{wanted:?} not in: {text}");
    }
    assert!(!err.is_retryable(), "access denied needs a person");

    // Throttled alone: worth the Lambda's retry (the sweep is idempotent).
    let only = doomed[0].clone();
    let rule = mock!(Client::batch_delete_partition)
        .sequence()
        .output(move || {
            BatchDeletePartitionOutput::builder()
                .errors(partition_error(&only, "ThrottlingException"))
                .build()
        })
        .build();
    let client: Client = mock_client!(aws_sdk_glue, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = GlueCatalog::new(client, "shoplake")
        .delete_partitions("orders", &doomed[..1])
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

/// If Glue refuses the date filter, old partitions are still found, by listing them all.
#[tokio::test]
async fn a_refused_partition_filter_falls_back_to_listing_every_partition() {
    let filtered = mock!(Client::get_partitions)
        .match_requests(|r| r.expression().is_some())
        .then_error(|| {
            GetPartitionsError::InvalidInputException(
                InvalidInputException::builder()
                    .message("Unsupported expression")
                    .build(),
            )
        });
    let table = mock!(Client::get_table).then_output(|| {
        GetTableOutput::builder()
            .table(
                Table::builder()
                    .name("orders")
                    .partition_keys(Column::builder().name("order_date").build().unwrap())
                    .partition_keys(Column::builder().name("customer_region").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .build()
    });
    let partition = |d: &str| Partition::builder().values(d).values("EU").build();
    let all = mock!(Client::get_partitions)
        .match_requests(|r| r.expression().is_none())
        .then_output(move || {
            GetPartitionsOutput::builder()
                .partitions(partition("2025-11-20"))
                .partitions(partition("2025-11-21"))
                .partitions(partition("2024-02-29"))
                .build()
        });
    let client: Client = mock_client!(
        aws_sdk_glue,
        RuleMode::MatchAny,
        [&filtered, &table, &all],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let old = GlueCatalog::new(client, "shoplake")
        .partitions_before(
            "orders",
            "order_date",
            chrono::NaiveDate::from_ymd_opt(2025, 11, 21).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        old,
        [
            vec!["2024-02-29".to_owned(), "EU".into()],
            vec!["2025-11-20".into(), "EU".into()]
        ]
    );
    assert_eq!(
        (filtered.num_calls(), table.num_calls(), all.num_calls()),
        (1, 1, 1)
    );
}
