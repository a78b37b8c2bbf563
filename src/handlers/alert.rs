//! The alert Lambda's logic: whatever arrives (a destination record, a report, a schedule's
//! input) becomes alert requests for the [`AlertService`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alert::{self, AlertError, AlertOutcome, AlertService};

#[derive(Debug, Clone, Serialize)]
pub struct AlertResponse {
    pub outcomes: Vec<AlertOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertHandlerError {
    #[error(transparent)]
    Input(#[from] alert::input::InputError),
    #[error(transparent)]
    Alert(#[from] AlertError),
}

pub async fn handle(
    service: &AlertService,
    event: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<AlertResponse, AlertHandlerError> {
    let mut outcomes = Vec::new();
    for request in alert::parse(event)? {
        outcomes.extend(service.handle(request, now).await?);
    }
    Ok(AlertResponse { outcomes })
}
