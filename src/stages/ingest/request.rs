//! The ingest request: the objects an S3 `ObjectCreated` event names under `raw/`.

use aws_lambda_events::s3::S3Event;

use crate::stages::{EventError, ObjectRef, RequestError, created_objects, s3_records};

/// Every created object of the event, in record order; a record that names no usable object
/// stays in the list as an error, so it is reported rather than skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRequest {
    pub objects: Vec<Result<ObjectRef, EventError>>,
}

impl IngestRequest {
    pub fn from_event(event: serde_json::Value) -> Result<Self, RequestError> {
        Ok(IngestRequest {
            objects: s3_records(event)?,
        })
    }

    pub fn from_s3(event: &S3Event) -> Self {
        IngestRequest {
            objects: created_objects(event),
        }
    }

    /// One object of `bucket` (how `lake ingest` asks for a staged file).
    pub fn object(bucket: &str, key: &str) -> Self {
        IngestRequest {
            objects: vec![Ok(ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            })],
        }
    }
}
