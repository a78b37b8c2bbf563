//! What the alert Lambda can receive, recognised from its shape: a quality report (directly or
//! as the quality function's on-success destination record), any function's on-failure
//! destination record, the load function's on-success record (its report: batches that failed to
//! load), the SLA check and the digest flush from the schedules.

use chrono::NaiveDate;
use serde_json::Value;

use crate::alert::message::{FailedInvocation, FailedLoad};
use crate::layout;
use crate::quality::QualityReport;
use crate::stages::decode_key;

#[derive(Debug, Clone, PartialEq)]
pub enum AlertRequest {
    Quality(Box<QualityReport>),
    Failure(FailedInvocation),
    /// `{"sla_check": {}}` or `{"sla_check": {"date": "2026-11-21"}}` (default: today, UTC).
    SlaCheck {
        date: Option<NaiveDate>,
    },
    /// `{"flush_digest": true}`: send alerts held back for a digest.
    FlushDigest,
    /// `{"arrival_check": {}}` or `{"arrival_check": {"date": "2026-11-21"}}`: whether each
    /// dataset's export arrived by its contract's deadline (default: yesterday and today, UTC).
    ArrivalCheck {
        date: Option<NaiveDate>,
    },
    /// A batch the load function recorded as failed for the first time (from its on-success
    /// destination record: the load report).
    LoadFailure(FailedLoad),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unrecognised alert input ({0}); expected a quality report, a Lambda destination record, {{\"sla_check\": {{}}}}, {{\"arrival_check\": {{}}}} or {{\"flush_digest\": true}}"
)]
pub struct InputError(String);

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The dataset an object key belongs to (`raw/<dataset>/…` or `manifests/<dataset>/…`).
fn dataset_of(key: &str) -> Option<String> {
    layout::dataset_of_raw_key(key)
        .or_else(|| layout::parse_manifest_key(key).map(|(d, _)| d))
        .map(str::to_owned)
}

fn failure(record: &Value) -> FailedInvocation {
    let arn = str_at(record, &["requestContext", "functionArn"]);
    // arn:aws:lambda:region:account:function:NAME[:qualifier]
    let function = arn.split(':').nth(6).unwrap_or(arn).to_owned();
    let payload = &record["responsePayload"];
    let objects: Vec<(String, String)> = record["requestPayload"]["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let bucket = r["s3"]["bucket"]["name"].as_str()?;
            let raw = r["s3"]["object"]["key"].as_str()?;
            Some((
                bucket.to_owned(),
                decode_key(raw).unwrap_or_else(|| raw.to_owned()),
            ))
        })
        .collect();
    let datasets: std::collections::BTreeSet<String> =
        objects.iter().filter_map(|(_, k)| dataset_of(k)).collect();
    let dataset = match datasets.len() {
        0 => "all".to_owned(),
        1 => datasets.into_iter().next().unwrap_or_default(),
        _ => "multiple".to_owned(),
    };
    let error_type = [
        str_at(payload, &["errorType"]),
        str_at(record, &["responseContext", "functionError"]),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("UnknownError")
    .to_owned();
    FailedInvocation {
        function,
        request_id: str_at(record, &["requestContext", "requestId"]).to_owned(),
        condition: str_at(record, &["requestContext", "condition"]).to_owned(),
        attempts: record["requestContext"]["approximateInvokeCount"]
            .as_u64()
            .unwrap_or(1) as u32,
        error_type,
        error_message: str_at(payload, &["errorMessage"]).to_owned(),
        objects: objects
            .into_iter()
            .map(|(b, k)| format!("s3://{b}/{k}"))
            .collect(),
        dataset,
        date: str_at(record, &["timestamp"])
            .get(..10)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Quality reports in a payload: one report, or the quality function's `{"reports": [...]}`.
fn reports(payload: &Value) -> Result<Vec<AlertRequest>, InputError> {
    let one = |v: &Value| {
        serde_json::from_value::<QualityReport>(v.clone())
            .map(|r| AlertRequest::Quality(Box::new(r)))
            .map_err(|e| InputError(format!("not a valid quality report: {e}")))
    };
    match payload.get("reports").and_then(Value::as_array) {
        Some(list) => list.iter().map(one).collect(),
        None => one(payload).map(|r| vec![r]),
    }
}

/// The first failures in a load report (`{"batches": [...], "months": [...]}`): one page each;
/// a failure retried by a later run is not paged again.
fn load_failures(payload: &Value, timestamp: &str) -> Vec<AlertRequest> {
    payload["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["outcome"] == "failed" && b["alert"] == true)
        .map(|b| {
            AlertRequest::LoadFailure(FailedLoad {
                dataset: str_at(b, &["dataset"]).to_owned(),
                batch_id: str_at(b, &["batch_id"]).to_owned(),
                error: str_at(b, &["error"]).to_owned(),
                statement: str_at(b, &["statement"]).to_owned(),
                attempts: b["attempts"].as_u64().unwrap_or(1) as u32,
                max_attempts: crate::stages::load::MAX_LOAD_ATTEMPTS,
                date: timestamp.get(..10).unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// The requests in one alert Lambda input.
pub fn parse(value: &Value) -> Result<Vec<AlertRequest>, InputError> {
    let date_of = |check: &Value, name: &str| match check.get("date").and_then(Value::as_str) {
        Some(d) => d
            .parse()
            .map(Some)
            .map_err(|_| InputError(format!("{name}.date {d:?} is not YYYY-MM-DD"))),
        None => Ok(None),
    };
    if let Some(check) = value.get("sla_check") {
        let date = date_of(check, "sla_check")?;
        return Ok(vec![AlertRequest::SlaCheck { date }]);
    }
    if let Some(check) = value.get("arrival_check") {
        let date = date_of(check, "arrival_check")?;
        return Ok(vec![AlertRequest::ArrivalCheck { date }]);
    }
    if value.get("flush_digest").and_then(Value::as_bool) == Some(true) {
        return Ok(vec![AlertRequest::FlushDigest]);
    }
    if value.get("requestContext").is_some() && value.get("responsePayload").is_some() {
        let succeeded = str_at(value, &["requestContext", "condition"]) == "Success"
            && value["responseContext"].get("functionError").is_none();
        if succeeded {
            let payload = &value["responsePayload"];
            if payload.get("batches").is_some() && payload.get("months").is_some() {
                return Ok(load_failures(payload, str_at(value, &["timestamp"])));
            }
            return reports(payload);
        }
        return Ok(vec![AlertRequest::Failure(failure(value))]);
    }
    if value.get("reports").is_some()
        || (value.get("verdict").is_some() && value.get("checks").is_some())
    {
        return reports(value);
    }
    Err(InputError("no known fields".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_load_report_pages_each_first_failure_once() {
        let record = |batches: Value| {
            json!({
                "timestamp": "2026-11-22T02:07:00.000Z",
                "requestContext": {"condition": "Success", "functionArn": "arn:aws:lambda:us-east-1:1:function:shoplake-prod-load"},
                "responseContext": {"statusCode": 200},
                "responsePayload": {"batches": batches, "months": []}
            })
        };
        let failed = |batch: &str, attempts: u32| {
            json!({"outcome": "failed", "dataset": "orders", "batch_id": batch, "error": "ERROR: boom",
                   "statement": "COPY stage_raw_orders FROM 's3://b/m'", "attempts": attempts, "alert": attempts == 1})
        };
        let requests = parse(&record(json!([
            {"outcome": "loaded", "dataset": "orders", "batch_id": "b1", "rows": 3, "statements": 9},
            failed("b2", 1),
            failed("b3", 2),
        ])))
        .unwrap();
        let [AlertRequest::LoadFailure(f)] = &requests[..] else {
            panic!("{requests:?}")
        };
        assert_eq!((f.batch_id.as_str(), f.date.as_str()), ("b2", "2026-11-22"));
        let m = crate::alert::message::load_failure_alert(f);
        assert!(
            m.subject.starts_with("[FAIL] orders 2026-11-22: batch b2"),
            "{}",
            m.subject
        );
        assert!(
            m.body.contains("ERROR: boom") && m.body.contains("COPY stage_raw_orders"),
            "{}",
            m.body
        );
        assert!(
            m.body.contains("Next steps (docs/runbook.md#load_failed)"),
            "{}",
            m.body
        );
        // A report without first failures pages nothing.
        assert!(parse(&record(json!([failed("b3", 2)]))).unwrap().is_empty());
    }

    #[test]
    fn a_failure_destination_record_names_the_function_objects_and_error() {
        let record = json!({
            "version": "1.0",
            "timestamp": "2026-11-21T02:03:04.567Z",
            "requestContext": {
                "requestId": "e1b9c7a2-0000-4c4f-9d33-5f0e5e0a1111",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:shoplake-prod-ingest:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": {"Records": [{"s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/orders/daily+export.csv"}}}]},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "IngestRetryable", "errorMessage": "1 of 1 object(s) failed: S3 throttled"}
        });
        let [AlertRequest::Failure(f)] = &parse(&record).unwrap()[..] else {
            panic!("not one failure")
        };
        assert_eq!(f.function, "shoplake-prod-ingest");
        assert_eq!(
            (
                f.attempts,
                f.error_type.as_str(),
                f.dataset.as_str(),
                f.date.as_str()
            ),
            (3, "IngestRetryable", "orders", "2026-11-21")
        );
        assert_eq!(f.objects, ["s3://lake/raw/orders/daily export.csv"]);
    }

    #[test]
    fn schedules_and_junk() {
        assert_eq!(
            parse(&json!({"sla_check": {}})).unwrap(),
            [AlertRequest::SlaCheck { date: None }]
        );
        assert_eq!(
            parse(&json!({"sla_check": {"date": "2026-11-21"}})).unwrap(),
            [AlertRequest::SlaCheck {
                date: NaiveDate::from_ymd_opt(2026, 11, 21)
            }]
        );
        assert_eq!(
            parse(&json!({"flush_digest": true})).unwrap(),
            [AlertRequest::FlushDigest]
        );
        assert!(parse(&json!({"reports": []})).unwrap().is_empty());
        assert!(parse(&json!({"sla_check": {"date": "yesterday"}})).is_err());
        assert!(
            parse(&json!({"hello": 1}))
                .unwrap_err()
                .to_string()
                .contains("unrecognised alert input")
        );
    }
}
