//! The compact request: the nightly schedule (an EventBridge event, or `{}`) compacts every
//! dataset; `{"dataset": "<name>"}` one of them. Anything else fails, so a mistyped manual
//! invocation does not quietly rewrite every dataset.

use crate::stages::RequestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactRequest {
    /// Every dataset of the registry, parents first.
    All,
    /// `{"dataset": "orders"}`.
    Dataset(String),
}

impl CompactRequest {
    pub fn from_event(event: &serde_json::Value) -> Result<Self, RequestError> {
        let is_schedule = event.get("source").is_some() && event.get("detail-type").is_some();
        let is_empty = event.as_object().is_some_and(|o| o.is_empty()) || event.is_null();
        if let Some(dataset) = event.get("dataset") {
            return match dataset.as_str().map(str::trim) {
                Some(d) if !d.is_empty() => Ok(CompactRequest::Dataset(d.into())),
                _ => Err(RequestError(format!(
                    "`dataset` must name a dataset, got {dataset}"
                ))),
            };
        }
        if is_schedule || is_empty {
            Ok(CompactRequest::All)
        } else {
            Err(RequestError(format!(
                "the compact function takes its schedule's event, {{}} or {{\"dataset\": \"<name>\"}}; got {event}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedules_compact_everything_and_a_dataset_compacts_one() {
        for event in [
            json!({}),
            json!(null),
            json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}),
        ] {
            assert_eq!(
                CompactRequest::from_event(&event),
                Ok(CompactRequest::All),
                "{event}"
            );
        }
        assert_eq!(
            CompactRequest::from_event(&json!({"dataset": " orders "})),
            Ok(CompactRequest::Dataset("orders".into()))
        );
        assert!(CompactRequest::from_event(&json!({"dataset": ""})).is_err());
        assert!(CompactRequest::from_event(&json!({"datasets": "orders"})).is_err());
    }
}
