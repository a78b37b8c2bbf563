//! The load request. The schedule (an EventBridge event, `{}`) and the aggregate function's
//! on-success destination record both mean "load whatever is pending"; nothing else is
//! accepted, so a mistyped manual invocation fails instead of doing a full load.

use crate::stages::RequestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadRequest {
    /// Every gated batch not loaded yet, then the gold months that changed.
    Pending,
    /// `{"retry": "<batch_id>"}` (or `"<dataset>/<batch_id>"`, e.g. `"daily_kpis/2026-11"` for a
    /// gold month): an operator's retry of a batch that failed to load (its
    /// attempts start again), then a pending load.
    Retry { batch_id: String },
    /// `{"skip": "<batch_id>", "by": "<who>", "reason": "<why>"}`: never load a failed batch.
    Skip {
        batch_id: String,
        by: String,
        reason: String,
    },
}

impl LoadRequest {
    pub fn from_event(event: &serde_json::Value) -> Result<Self, RequestError> {
        let is_schedule = event.get("source").is_some() && event.get("detail-type").is_some();
        let is_destination =
            event.get("requestContext").is_some() && event.get("responsePayload").is_some();
        let is_empty = event.as_object().is_some_and(|o| o.is_empty()) || event.is_null();
        let text = |k: &str| event.get(k).and_then(|v| v.as_str()).map(str::trim);
        if let Some(batch) = text("retry").filter(|b| !b.is_empty()) {
            return Ok(LoadRequest::Retry {
                batch_id: batch.into(),
            });
        }
        if let Some(batch) = text("skip") {
            return match (text("by"), text("reason")) {
                (Some(by), Some(reason))
                    if !batch.is_empty() && !by.is_empty() && !reason.is_empty() =>
                {
                    Ok(LoadRequest::Skip {
                        batch_id: batch.into(),
                        by: by.into(),
                        reason: reason.into(),
                    })
                }
                _ => Err(RequestError(format!(
                    "a skip needs a batch id, who decided it and why: {{\"skip\": \"<batch_id>\", \"by\": \"<you>\", \"reason\": \"<why>\"}}; got {event}"
                ))),
            };
        }
        if is_schedule || is_destination || is_empty {
            Ok(LoadRequest::Pending)
        } else {
            Err(RequestError(format!(
                "the load function takes its schedule's event, the aggregate function's destination record, {{}}, {{\"retry\": \"<batch_id>\"}} or {{\"skip\": …, \"by\": …, \"reason\": …}}; got {event}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedules_destinations_and_empty_inputs_load_what_is_pending() {
        for event in [
            json!({}),
            json!(null),
            json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}),
            json!({"requestContext": {"condition": "Success"}, "responsePayload": {"kpi_rows": 3}}),
        ] {
            assert_eq!(
                LoadRequest::from_event(&event),
                Ok(LoadRequest::Pending),
                "{event}"
            );
        }
        assert!(LoadRequest::from_event(&json!({"batch": "x"})).is_err());
    }

    #[test]
    fn operators_retry_or_skip_a_failed_batch_and_a_skip_says_who_and_why() {
        assert_eq!(
            LoadRequest::from_event(&json!({"retry": "b1"})),
            Ok(LoadRequest::Retry {
                batch_id: "b1".into()
            })
        );
        assert_eq!(
            LoadRequest::from_event(&json!({"skip": "b1", "by": "dana", "reason": "bad export"})),
            Ok(LoadRequest::Skip {
                batch_id: "b1".into(),
                by: "dana".into(),
                reason: "bad export".into()
            })
        );
        let err = LoadRequest::from_event(&json!({"skip": "b1", "by": "dana"})).unwrap_err();
        assert!(err.0.contains("who decided it and why"), "{err:?}");
    }
}
