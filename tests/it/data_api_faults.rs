//! The Data API executor against aws-smithy-mocks: the paths moto cannot produce (a FAILED
//! statement, throttling, a statement that never finishes) each end in a clear error.

use std::time::Duration;

use aws_sdk_redshiftdata::Client;
use aws_sdk_redshiftdata::config::retry::RetryConfig;
use aws_sdk_redshiftdata::operation::batch_execute_statement::BatchExecuteStatementOutput;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::operation::execute_statement::ExecuteStatementOutput;
use aws_sdk_redshiftdata::operation::get_statement_result::GetStatementResultOutput;
use aws_sdk_redshiftdata::types::{Field, StatementStatusString, StatusString, SubStatementData};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use shoplake::Retryable;
use shoplake::warehouse::{DataApiExecutor, DataApiSettings, SqlExecutor, Target, WarehouseError};

fn executor(rules: &[&Rule], timeout: Duration) -> DataApiExecutor {
    let client: Client = mock_client!(aws_sdk_redshiftdata, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()));
    let mut settings = DataApiSettings::new(Target::Workgroup("shoplake".into()), "dev");
    settings.first_poll = Duration::from_millis(2);
    settings.max_poll = Duration::from_millis(10);
    settings.timeout = timeout;
    DataApiExecutor::new(client, settings)
}

fn submitted() -> Rule {
    mock!(Client::batch_execute_statement)
        .then_output(|| BatchExecuteStatementOutput::builder().id("stmt-1").build())
}

fn describe(status: StatusString) -> DescribeStatementOutput {
    DescribeStatementOutput::builder()
        .id("stmt-1")
        .status(status)
        .build()
        .unwrap()
}

fn sqls() -> Vec<String> {
    vec!["CREATE TEMP TABLE stage_orders (order_id VARCHAR(256))".into(), "MERGE INTO shoplake.orders USING stage_orders AS s ON shoplake.orders.order_id = s.order_id WHEN MATCHED THEN DELETE".into()]
}

#[tokio::test]
async fn a_batch_is_polled_until_it_finishes() {
    let submit = submitted();
    let poll = mock!(Client::describe_statement)
        .sequence()
        .output(|| describe(StatusString::Submitted))
        .output(|| describe(StatusString::Started))
        .output(|| describe(StatusString::Finished))
        .build();
    executor(&[&submit, &poll], Duration::from_secs(5))
        .execute_batch(&sqls())
        .await
        .unwrap();
    assert_eq!((submit.num_calls(), poll.num_calls()), (1, 3));
}

#[tokio::test]
async fn a_failed_statement_surfaces_the_redshift_error_and_the_statement() {
    let submit = submitted();
    let poll = mock!(Client::describe_statement).then_output(|| {
        DescribeStatementOutput::builder()
            .id("stmt-1")
            .status(StatusString::Failed)
            .error("ERROR: Invalid operation: MERGE source rows must be unique")
            .sub_statements(
                SubStatementData::builder()
                    .id("stmt-1:1")
                    .status(StatementStatusString::Finished)
                    .query_string(sqls()[0].clone())
                    .build()
                    .unwrap(),
            )
            .sub_statements(
                SubStatementData::builder()
                    .id("stmt-1:2")
                    .status(StatementStatusString::Failed)
                    .error("ERROR: Invalid operation: MERGE source rows must be unique")
                    .query_string(sqls()[1].clone())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    });
    let err = executor(&[&submit, &poll], Duration::from_secs(5))
        .execute_batch(&sqls())
        .await
        .unwrap_err();
    match &err {
        WarehouseError::Failed {
            error, statement, ..
        } => {
            assert!(error.contains("MERGE source rows must be unique"));
            assert!(
                statement.starts_with("MERGE INTO shoplake.orders"),
                "the failing statement, not the batch: {statement}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable(), "a SQL error does not heal by retrying");
    assert!(
        err.to_string().contains("statement: MERGE INTO"),
        "the alert text names the statement: {err}"
    );
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_reported() {
    let throttled = mock!(Client::batch_execute_statement)
        .sequence()
        .http_status(429, None)
        .times(2)
        .output(|| BatchExecuteStatementOutput::builder().id("stmt-1").build())
        .build();
    let poll = mock!(Client::describe_statement).then_output(|| describe(StatusString::Finished));
    executor(&[&throttled, &poll], Duration::from_secs(5))
        .execute_batch(&sqls())
        .await
        .unwrap();
    assert_eq!(
        throttled.num_calls(),
        3,
        "two throttled attempts, then the third succeeds"
    );

    let always = mock!(Client::batch_execute_statement)
        .sequence()
        .http_status(429, None)
        .repeatedly()
        .build();
    let err = executor(&[&always], Duration::from_secs(5))
        .execute_batch(&sqls())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WarehouseError::Api {
                attempts: 3,
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(always.num_calls(), 3);
}

#[tokio::test]
async fn a_statement_that_never_finishes_times_out() {
    let submit = submitted();
    let poll = mock!(Client::describe_statement)
        .sequence()
        .output(|| describe(StatusString::Started))
        .repeatedly()
        .build();
    let err = executor(&[&submit, &poll], Duration::from_millis(60))
        .execute_batch(&sqls())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WarehouseError::Timeout { status, .. } if status == "STARTED"),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_ledger_lookup_reads_one_integer() {
    let exec = mock!(Client::execute_statement)
        .then_output(|| ExecuteStatementOutput::builder().id("stmt-1").build());
    let poll = mock!(Client::describe_statement).then_output(|| describe(StatusString::Finished));
    let result = mock!(Client::get_statement_result).then_output(|| {
        GetStatementResultOutput::builder()
            .records(vec![Field::LongValue(1)])
            .build()
            .unwrap()
    });
    let n = executor(&[&exec, &poll, &result], Duration::from_secs(5))
        .query_i64("SELECT COUNT(*) FROM shoplake.load_ledger")
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_failed_load_reaches_on_call_with_the_redshift_error() {
    let submit = submitted();
    let poll = mock!(Client::describe_statement).then_output(|| {
        DescribeStatementOutput::builder()
            .id("stmt-1")
            .status(StatusString::Failed)
            .error("ERROR: permission denied for relation orders")
            .build()
            .unwrap()
    });
    let err = executor(&[&submit, &poll], Duration::from_secs(5))
        .execute_batch(&sqls())
        .await
        .unwrap_err();
    // What Lambda sends the failure destination when the load function returns this error.
    let record = serde_json::json!({
        "version": "1.0", "timestamp": "2026-11-22T02:07:00.000Z",
        "requestContext": {"requestId": "r-9", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:shoplake-load", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": {"detail-type": "Scheduled Event"},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": "LoadFailed", "errorMessage": err.to_string()}
    });
    let [shoplake::stages::alert::AlertRequest::Failure(f)] =
        &shoplake::stages::alert::parse(&record).unwrap()[..]
    else {
        panic!("not a failure")
    };
    let message = shoplake::alert::message::failure_alert(f);
    assert_eq!(
        message.subject,
        "[FAIL] shoplake-load 2026-11-22: function failed after 3 attempt(s) (LoadFailed)"
    );
    assert!(
        message
            .body
            .contains("permission denied for relation orders"),
        "{}",
        message.body
    );
    assert!(
        message.body.contains("statement:"),
        "the failing SQL is named: {}",
        message.body
    );
}
