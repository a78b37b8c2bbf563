//! The load request. The schedule (an EventBridge event, `{}`) and the aggregate function's
//! on-success destination record both mean "load whatever is pending"; nothing else is
//! accepted, so a mistyped manual invocation fails instead of doing a full load.

use crate::stages::RequestError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadRequest {
    /// Every gated batch not loaded yet, then the gold months that changed.
    Pending,
}

impl LoadRequest {
    pub fn from_event(event: &serde_json::Value) -> Result<Self, RequestError> {
        let is_schedule = event.get("source").is_some() && event.get("detail-type").is_some();
        let is_destination =
            event.get("requestContext").is_some() && event.get("responsePayload").is_some();
        let is_empty = event.as_object().is_some_and(|o| o.is_empty()) || event.is_null();
        if is_schedule || is_destination || is_empty {
            Ok(LoadRequest::Pending)
        } else {
            Err(RequestError(format!(
                "the load function takes its schedule's event, the aggregate function's destination record or {{}}; got {event}"
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
}
