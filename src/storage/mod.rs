//! The object-store port: everything the pipeline needs from S3, behind a small trait with an
//! S3 adapter ([`S3Store`]) and a local-directory adapter ([`LocalStore`]) that share one
//! conformance suite (`tests/support/store_suite.rs`).

mod local;
mod many;
mod prefixed;
mod s3;

use std::path::Path;

use crate::error::Retryable;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

pub use local::{LocalStore, TEMP_DIR, TEMP_PREFIX};
pub use many::{
    AT_ONCE, Fetch, at_once_within, delete_many, fetches, get_many, list_each, list_many,
};
pub use prefixed::PrefixedStore;
pub use s3::{MULTIPART_PART_BYTES, S3Store};

/// What the pipeline knows about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Changes whenever the content is rewritten (S3 ETag; size and mtime locally).
    pub etag: String,
    pub version_id: Option<String>,
    pub last_modified: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key} does not exist")]
    NotFound { key: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error(
        "{path} is not a regular file (a FIFO, device or directory); write the export to a file and ingest that"
    )]
    NotAFile { path: String },
    #[error("{operation} {key}: {source}")]
    Io {
        operation: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("S3 {operation} s3://{bucket}/{key} failed: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
        /// Throttling, timeouts and 5xx: worth another attempt.
        retryable: bool,
    },
}

impl Retryable for StorageError {
    fn is_retryable(&self) -> bool {
        match self {
            StorageError::S3 { retryable, .. } => *retryable,
            StorageError::Io { .. } => true,
            StorageError::NotFound { .. }
            | StorageError::InvalidKey { .. }
            | StorageError::NotAFile { .. } => false,
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// What must hold for a conditional write to happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No object has the key (S3 `If-None-Match: *`).
    Absent,
    /// The object exists with this ETag (S3 `If-Match`).
    Matches(String),
}

/// A streaming reader of an object's content.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// The operations the pipeline performs on its bucket. Keys are `/`-separated and relative.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Metadata, or `None` when the object does not exist.
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectMeta>>;
    /// Whole content of a small object (manifests, reports), or `None` when absent.
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>>;
    /// Streams an object without holding it in memory.
    async fn reader(&self, key: &str) -> StorageResult<ObjectReader>;
    /// The bytes `range` of an object (a gzip trailer, say); the range must lie inside it.
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StorageResult<Bytes>;
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()>;
    /// Writes only when `condition` holds, atomically with the check; `false` when it did not
    /// hold (nothing was written). Claims and compare-and-swap state are built on this.
    async fn put_if(&self, key: &str, body: Bytes, condition: Precondition) -> StorageResult<bool>;
    /// Uploads a local file, in parts when it is large, without reading it whole.
    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()>;
    /// Uploads a local file its caller is done with (staged output): a store on the same file
    /// system moves it into place instead of copying it. `path` is gone afterwards when this
    /// succeeds, and may be gone when it fails.
    async fn put_file_moving(&self, key: &str, path: &Path) -> StorageResult<()> {
        self.put_file(key, path).await?;
        // Scratch space only (in Lambda, /tmp is small): a file left behind goes with its
        // directory, so a failure to remove it is no error.
        let _ = tokio::fs::remove_file(path).await;
        Ok(())
    }
    async fn copy(&self, from: &str, to: &str) -> StorageResult<()>;
    /// Deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>>;
    /// The objects whose key starts with `prefix` and sorts strictly after `start_after` (S3
    /// ListObjectsV2 `StartAfter`: what S3 returns costs what comes after the watermark, not the
    /// whole prefix), sorted by key; the first `limit` of them when given.
    async fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<ObjectMeta>>;
    /// How many objects [`get_many`] hands [`Self::get_batch`] at once. A store whose calls
    /// each cost a hand-off to another thread rather than a round trip (a local directory)
    /// reads many in one call; the default, 1, fetches each on its own, many in flight.
    fn batch_reads(&self) -> usize {
        1
    }
    /// The contents of `keys` (`None`: absent), each with its own result, in their order. The
    /// default gets them one after another; a store with [`Self::batch_reads`] above 1 reads
    /// them together.
    async fn get_batch(&self, keys: Vec<String>) -> Vec<StorageResult<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in &keys {
            out.push(self.get(key).await);
        }
        out
    }
    /// How to point a person or another system at the object (`s3://…` or `file://…`).
    fn uri(&self, key: &str) -> String;
    /// The directory holding the objects when they are plain local files (readers can then
    /// scan them in place instead of downloading them).
    fn local_root(&self) -> Option<&Path> {
        None
    }
}

/// The URI of the store's root, without a trailing `/` (`s3://bucket`, `file:///lake`): what
/// catalog locations are built on.
pub fn root_uri(store: &dyn ObjectStore) -> String {
    store.uri("").trim_end_matches('/').to_owned()
}

/// `got` when it holds one result per key of `keys`, as [`ObjectStore::get_batch`] promises;
/// else an error for every key (a store that broke the promise), never a silent gap.
pub(crate) fn one_result_each(
    keys: &[String],
    got: Vec<StorageResult<Option<Bytes>>>,
) -> Vec<StorageResult<Option<Bytes>>> {
    if got.len() == keys.len() {
        return got;
    }
    let message = format!(
        "a batched read gave {} results for {} keys",
        got.len(),
        keys.len()
    );
    keys.iter()
        .map(|key| {
            Err(StorageError::Io {
                operation: "get",
                key: key.clone(),
                source: std::io::Error::other(message.clone()),
            })
        })
        .collect()
}

/// Rejects keys that could escape the store's root or are not plain relative paths.
pub fn check_key(key: &str) -> StorageResult<()> {
    let reason = if key.is_empty() {
        Some("empty")
    } else if key.starts_with('/') {
        Some("must be relative")
    } else if key.split('/').any(|part| part == ".." || part == ".") {
        Some("must not contain . or .. segments")
    } else if key.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
