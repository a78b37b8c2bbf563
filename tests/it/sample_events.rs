//! The sample events in `events/` (used by `cargo lambda invoke` and the demo) are what each
//! function really accepts.

use aws_lambda_events::s3::S3Event;
use shoplake::stages::alert::{self as alert, AlertRequest};
use shoplake::stages::created_objects;

fn load(name: &str) -> serde_json::Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_sample_event_is_accepted_by_its_function() {
    let dir = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/events")).unwrap();
    let mut names: Vec<String> = dir
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        let value = load(&name);
        match name.split('-').next().unwrap() {
            "ingest" | "quality" => {
                let event: S3Event =
                    serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
                let objects = created_objects(&event);
                assert!(
                    objects.iter().all(Result::is_ok) && !objects.is_empty(),
                    "{name}"
                );
                let key = &objects[0].as_ref().unwrap().key;
                let prefix = if name.starts_with("ingest") {
                    "raw/"
                } else {
                    "manifests/"
                };
                assert!(key.starts_with(prefix), "{name}: {key}");
            }
            "alert" => {
                let requests = alert::parse(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
                let ok = match name.as_str() {
                    "alert-quality-fail.json" => {
                        matches!(&requests[..], [AlertRequest::Quality(r)] if r.verdict == shoplake::quality::Verdict::Fail)
                    }
                    "alert-function-failure.json" => {
                        matches!(&requests[..], [AlertRequest::Failure(f)] if f.dataset == "orders")
                    }
                    "alert-sla-check.json" => {
                        matches!(&requests[..], [AlertRequest::SlaCheck { date: None }])
                    }
                    "alert-flush-digest.json" => {
                        matches!(&requests[..], [AlertRequest::FlushDigest])
                    }
                    "alert-arrival-check.json" => {
                        matches!(&requests[..], [AlertRequest::ArrivalCheck { date: None }])
                    }
                    other => panic!("no expectation for {other}"),
                };
                assert!(ok, "{name}: {requests:?}");
            }
            "aggregate" => {
                let request = shoplake::stages::aggregate::AggregateRequest::from_event(&value)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let backfill = matches!(
                    request,
                    shoplake::stages::aggregate::AggregateRequest::Range { .. }
                );
                assert_eq!(backfill, name.contains("backfill"), "{name}");
            }
            // The load function runs on schedule and loads whatever is pending.
            "load" => {
                assert_eq!(value["detail-type"], "Scheduled Event", "{name}");
                assert_eq!(
                    shoplake::stages::load::LoadRequest::from_event(&value),
                    Ok(shoplake::stages::load::LoadRequest::Pending),
                    "{name}"
                );
            }
            // The compact function runs on schedule over every dataset.
            "compact" => {
                assert_eq!(value["detail-type"], "Scheduled Event", "{name}");
                assert_eq!(
                    shoplake::stages::compact::CompactRequest::from_event(&value),
                    Ok(shoplake::stages::compact::CompactRequest::All),
                    "{name}"
                );
            }
            other => panic!("{name}: no function named {other}"),
        }
    }
}
