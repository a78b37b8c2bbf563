//! The quality request: manifests that landed under `manifests/` (an S3 event).

use crate::layout;
use aws_lambda_events::s3::S3Event;

use crate::stages::{EventError, ObjectRef, RequestError, created_objects, s3_records};

/// The created objects of the event that are batch manifests. Pending records and anything
/// else under `manifests/` are not batches and are left out; an unusable record stays in as an
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityRequest {
    pub manifests: Vec<Result<ObjectRef, EventError>>,
}

impl QualityRequest {
    pub fn from_event(event: serde_json::Value) -> Result<Self, RequestError> {
        Ok(Self::from_records(s3_records(event)?))
    }

    pub fn from_s3(event: &S3Event) -> Self {
        Self::from_records(created_objects(event))
    }

    fn from_records(records: Vec<Result<ObjectRef, EventError>>) -> Self {
        let manifests = records
            .into_iter()
            .filter(|o| {
                o.as_ref()
                    .map_or(true, |o| layout::parse_manifest_key(&o.key).is_some())
            })
            .collect();
        QualityRequest { manifests }
    }
}
