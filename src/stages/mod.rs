//! The pipeline's stages, each a folder of the same shape:
//!
//! - `request.rs`: what an invocation asks for, read from the Lambda event;
//! - `config.rs`: the environment, read once into a typed struct;
//! - `service.rs`: the work itself, over the storage, catalog, notifier and warehouse ports;
//! - `mod.rs`: the [`Stage`] implementation and the AWS wiring (`from_env`);
//! - `tests.rs`: the stage's own tests.
//!
//! The Lambda binaries call [`invoke`]; `lake` builds the same services with local adapters.
//! Stages use the kernel (contracts, layout, state, silver, ports) and never each other's
//! internals.

pub mod aggregate;
pub mod alert;
pub mod compact;
mod event;
pub mod ingest;
pub mod load;
pub mod quality;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use event::{EventError, ObjectRef, created_objects, decode_key, s3_records};

use crate::error::Retryable;
use crate::metrics::MetricSet;
use crate::storage::ObjectStore;

/// The store holding a bucket's objects (S3 in Lambda; one local directory in `lake`).
pub type StoreFactory = Arc<dyn Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync>;

/// Each event's bucket through one S3 client.
pub fn s3_stores(client: aws_sdk_s3::Client) -> StoreFactory {
    Arc::new(move |bucket| Arc::new(crate::storage::S3Store::new(client.clone(), bucket)))
}

/// An input a stage cannot use at all (as opposed to one of its records failing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

/// One pipeline stage as its Lambda runs it.
#[async_trait]
pub trait Stage: Send + Sync {
    /// Prefix of the `error_type` a failed invocation reports (`Ingest` → `IngestRetryable`).
    const NAME: &'static str;
    type Request: Send;
    type Response: Serialize + Send;
    type Error: std::error::Error + Retryable + Send + Sync + 'static;

    /// Reads the Lambda event.
    fn request(event: serde_json::Value) -> Result<Self::Request, RequestError>;

    async fn run(
        &self,
        request: Self::Request,
        now: DateTime<Utc>,
    ) -> Result<Self::Response, Self::Error>;

    /// CloudWatch metrics of a successful invocation.
    fn metrics(response: &Self::Response) -> Vec<MetricSet>;
}

/// A failed invocation as the Lambda runtime reports it (its `Diagnostic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `<Stage>Retryable` (a retry may succeed) or `<Stage>Failed` (it would repeat the error).
    pub error_type: String,
    pub error_message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    fn new<S: Stage>(retryable: bool, message: String) -> Self {
        let kind = if retryable { "Retryable" } else { "Failed" };
        Failure {
            error_type: format!("{}{kind}", S::NAME),
            error_message: message,
        }
    }
}

/// What every Lambda entry point does with its event: read the request, run the stage, emit
/// its metrics, and report a failure with an `error_type` that says whether to retry.
pub async fn invoke<S: Stage>(
    stage: &S,
    event: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<S::Response, Failure> {
    let request = S::request(event).map_err(|e| Failure::new::<S>(false, e.to_string()))?;
    match stage.run(request, now).await {
        Ok(response) => {
            crate::metrics::emit(&S::metrics(&response));
            Ok(response)
        }
        Err(e) => {
            tracing::error!(stage = S::NAME, retryable = e.is_retryable(), error = %e, "invocation failed");
            Err(Failure::new::<S>(e.is_retryable(), e.to_string()))
        }
    }
}

/// Why one object named by an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError<E> {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Stage(E),
}

/// One object the event named that could not be handled.
#[derive(Debug)]
pub struct FailedObject<E> {
    /// `s3://bucket/key`, or `record <n>` when the record itself is unusable.
    pub object: String,
    pub error: ObjectError<E>,
}

/// Some objects of an event failed; the others were handled (and are idempotent on retry).
#[derive(Debug, thiserror::Error)]
#[error("{} of {} object(s) failed: {}", .failures.len(), .attempted, describe(.failures))]
pub struct ObjectsError<E: fmt::Display> {
    pub attempted: usize,
    pub failures: Vec<FailedObject<E>>,
}

fn describe<E: fmt::Display>(failures: &[FailedObject<E>]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.object, f.error))
        .collect::<Vec<_>>()
        .join(" | ")
}

impl<E: Retryable + fmt::Display> Retryable for ObjectsError<E> {
    /// Whether a retry of the whole event could succeed. An unusable record never can.
    fn is_retryable(&self) -> bool {
        self.failures
            .iter()
            .any(|f| matches!(&f.error, ObjectError::Stage(e) if e.is_retryable()))
    }
}

/// Handles every object of an event in turn, each attempted even when another failed. Every
/// stage that takes S3 events treats an unusable record the same way: as a failed object.
pub async fn each_object<T, E, F, Fut>(
    objects: Vec<Result<ObjectRef, EventError>>,
    mut handle: F,
) -> Result<Vec<T>, ObjectsError<E>>
where
    E: fmt::Display,
    F: FnMut(ObjectRef) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let attempted = objects.len();
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for (index, object) in objects.into_iter().enumerate() {
        let object = match object {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(record = index, error = %e, "unusable event record");
                failures.push(FailedObject {
                    object: format!("record {index}"),
                    error: e.into(),
                });
                continue;
            }
        };
        let uri = object.uri();
        match handle(object).await {
            Ok(Some(t)) => done.push(t),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(object = %uri, error = %e, "object failed");
                failures.push(FailedObject {
                    object: uri,
                    error: ObjectError::Stage(e),
                });
            }
        }
    }
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(ObjectsError {
            attempted,
            failures,
        })
    }
}
