//! The aggregate request: the 02:00 UTC schedule (the days changed since the last run),
//! `{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}` (a backfill of those months from all of silver)
//! or `{"full": true}` (a full recompute that also rebuilds the nightly state).

use chrono::NaiveDate;
use serde::Serialize;

use crate::stages::RequestError;

/// What to (re)write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AggregateRequest {
    /// `{"from": "2026-11-01", "to": "2026-11-21"}`: a backfill of these dates' months.
    Range { from: NaiveDate, to: NaiveDate },
    /// The scheduled run (an EventBridge event or `{}`): the days changed since the last run.
    Scheduled {},
    /// `{"full": true}`: every month recomputed from all of silver, and the nightly state
    /// (first orders, tombstones, batch watermark) rebuilt from it.
    Full {},
}

impl AggregateRequest {
    /// Reads the Lambda input. A `from` or `to` makes it a backfill, and then both must be dates:
    /// a mistyped backfill must fail, not quietly become a scheduled run.
    pub fn from_event(event: &serde_json::Value) -> Result<Self, RequestError> {
        let (from, to) = (event.get("from"), event.get("to"));
        match event.get("full") {
            None | Some(serde_json::Value::Bool(false)) => {}
            Some(serde_json::Value::Bool(true)) if from.is_none() && to.is_none() => {
                return Ok(AggregateRequest::Full {});
            }
            Some(serde_json::Value::Bool(true)) => {
                return Err(RequestError(
                    "`full` recomputes every month: leave out `from`/`to`, or drop `full` for a backfill of a range".into(),
                ));
            }
            Some(other) => {
                return Err(RequestError(format!(
                    "`full` must be true or false, got {other}"
                )));
            }
        }
        if from.is_none() && to.is_none() {
            return Ok(AggregateRequest::Scheduled {});
        }
        let date = |v: Option<&serde_json::Value>, name: &str| -> Result<NaiveDate, RequestError> {
            v.and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    RequestError(format!("backfill needs `{name}` as YYYY-MM-DD, got {v:?}"))
                })
        };
        let (from, to) = (date(from, "from")?, date(to, "to")?);
        if from > to {
            return Err(RequestError(format!(
                "backfill `from` {from} is after `to` {to}"
            )));
        }
        Ok(AggregateRequest::Range { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_from_events() {
        assert_eq!(
            AggregateRequest::from_event(&json!({})),
            Ok(AggregateRequest::Scheduled {})
        );
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(
            AggregateRequest::from_event(&scheduled),
            Ok(AggregateRequest::Scheduled {})
        );
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            AggregateRequest::from_event(&json!({"from": "2026-10-01", "to": "2026-11-21"})),
            Ok(AggregateRequest::Range {
                from: d("2026-10-01"),
                to: d("2026-11-21")
            })
        );
        assert!(AggregateRequest::from_event(&json!({"from": "2026-10-01"})).is_err());
        assert_eq!(
            AggregateRequest::from_event(&json!({"full": true})),
            Ok(AggregateRequest::Full {})
        );
        assert_eq!(
            AggregateRequest::from_event(&json!({"full": false})),
            Ok(AggregateRequest::Scheduled {})
        );
        assert!(AggregateRequest::from_event(&json!({"full": "yes"})).is_err());
        assert!(
            AggregateRequest::from_event(
                &json!({"full": true, "from": "2026-10-01", "to": "2026-10-02"})
            )
            .is_err()
        );
        assert!(
            AggregateRequest::from_event(&json!({"from": "01/10/2026", "to": "2026-11-21"}))
                .is_err()
        );
        assert!(
            AggregateRequest::from_event(&json!({"from": "2026-11-21", "to": "2026-10-01"}))
                .is_err()
        );
    }
}
