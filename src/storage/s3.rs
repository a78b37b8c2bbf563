//! [`ObjectStore`] on an S3 bucket through aws-sdk-s3. Large uploads go through multipart
//! uploads read part by part from disk, and reads stream the body, so memory stays bounded.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_checksums::ChecksumAlgorithm as Checksum;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncReadExt;

use super::{
    ObjectMeta, ObjectReader, ObjectStore, Precondition, StorageError, StorageResult, check_key,
};

/// Objects up to this size are uploaded in one request; larger ones in parts of this size.
pub const MULTIPART_PART_BYTES: usize = 16 * 1024 * 1024;
/// Read size when checksumming a file: under glibc's mmap threshold, so the buffer is heap
/// memory used again by the next file rather than a fresh mapping faulted in each time.
const CHECKSUM_READ_BYTES: usize = 64 * 1024;

/// The CRC32 of a file, base64, as S3's `x-amz-checksum-crc32` header carries it.
///
/// An upload that carries its checksum is sent as the file is read. Without one, the SDK
/// computes it on the fly and sends it as a trailer, and to do that re-frames every body chunk
/// into a newly allocated buffer (aws-chunked encoding): for the one-day 1 M-row export read
/// from and written to S3 that copying was about an eighth of ingest's page faults. S3 checks
/// the bytes it receives against the header either way.
async fn file_crc32(path: &Path) -> std::io::Result<String> {
    let path = path.to_owned();
    let task = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut checksum = Checksum::Crc32.into_impl();
        let mut buf = vec![0u8; CHECKSUM_READ_BYTES];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => checksum.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        checksum
            .header_value()
            .to_str()
            .map(str::to_owned)
            .map_err(std::io::Error::other)
    });
    task.await.map_err(std::io::Error::other)?
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

fn to_chrono(t: Option<&aws_sdk_s3::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_owned()
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/` as the separator.
fn encode_copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let retryable = crate::aws::is_transient(&err);
        StorageError::S3 {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: DisplayErrorContext(&err).to_string(),
            retryable,
        }
    }

    /// `GetObject`, or `None` when the key does not exist.
    /// The whole body of a GetObject answer; a broken stream is worth a retry.
    async fn collect(&self, key: &str, out: GetObjectOutput) -> StorageResult<Bytes> {
        let data = out.body.collect().await.map_err(|e| StorageError::S3 {
            operation: "GetObject body",
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: e.to_string(),
            retryable: true,
        })?;
        Ok(data.into_bytes())
    }

    async fn get_object(&self, key: &str) -> StorageResult<Option<GetObjectOutput>> {
        check_key(key)?;
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        match request.send().await {
            Ok(out) => Ok(Some(out)),
            Err(SdkError::ServiceError(se)) if se.err().is_no_such_key() => Ok(None),
            Err(e) => Err(self.error("GetObject", key, e)),
        }
    }

    async fn upload_multipart(&self, key: &str, path: &Path, size: u64) -> StorageResult<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(key, path, size, &upload_id).await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                // Leave no orphaned parts behind (they would be billed until a lifecycle rule runs).
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        upload_id: &str,
    ) -> StorageResult<Vec<CompletedPart>> {
        let io = |source| StorageError::Io {
            operation: "read for upload",
            key: key.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut parts = Vec::new();
        let mut remaining = size;
        let mut number = 1;
        while remaining > 0 {
            let len = remaining.min(MULTIPART_PART_BYTES as u64) as usize;
            let mut buf = vec![0u8; len];
            file.read_exact(&mut buf).await.map_err(io)?;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(|e| self.error("UploadPart", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .build(),
            );
            remaining -= len as u64;
            number += 1;
        }
        Ok(parts)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: out.content_length().unwrap_or_default().max(0) as u64,
                etag: unquote(out.e_tag()),
                version_id: out.version_id().map(str::to_owned),
                last_modified: to_chrono(out.last_modified()),
            })),
            Err(SdkError::ServiceError(se)) if se.err().is_not_found() => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, e)),
        }
    }

    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        let Some(out) = self.get_object(key).await? else {
            return Ok(None);
        };
        self.collect(key, out).await.map(Some)
    }

    async fn reader(&self, key: &str) -> StorageResult<ObjectReader> {
        match self.get_object(key).await? {
            Some(out) => Ok(Box::new(out.body.into_async_read())),
            None => Err(StorageError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StorageResult<Bytes> {
        check_key(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| match e {
                SdkError::ServiceError(se) if se.err().is_no_such_key() => StorageError::NotFound {
                    key: key.to_owned(),
                },
                e => self.error("GetObject", key, e),
            })?;
        self.collect(key, out).await
    }

    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            // The KPI report opens in a browser from S3 (a presigned URL, the console).
            .set_content_type(
                key.ends_with(".html")
                    .then(|| "text/html; charset=utf-8".to_owned()),
            )
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(())
    }

    async fn put_if(&self, key: &str, body: Bytes, condition: Precondition) -> StorageResult<bool> {
        check_key(key)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        let request = match condition {
            Precondition::Absent => request.if_none_match("*"),
            Precondition::Matches(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            // 412: the condition does not hold; 409: a concurrent conditional write won; 404:
            // the object to match is gone. In every case this write did not happen.
            Err(SdkError::ServiceError(se))
                if matches!(se.raw().status().as_u16(), 404 | 409 | 412) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("PutObject", key, e)),
        }
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        check_key(key)?;
        let io = |source| StorageError::Io {
            operation: "upload",
            key: key.to_owned(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        if size > MULTIPART_PART_BYTES as u64 {
            return self.upload_multipart(key, path, size).await;
        }
        let crc32 = file_crc32(path).await.map_err(io)?;
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| StorageError::Io {
                operation: "upload",
                key: key.to_owned(),
                source: std::io::Error::other(e),
            })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            // The algorithm too: S3 needs only the value, but it is how moto (and other
            // S3-compatible stores) know to keep and verify it.
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .checksum_crc32(crc32)
            .body(body)
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(())
    }

    async fn copy(&self, from: &str, to: &str) -> StorageResult<()> {
        check_key(from)?;
        check_key(to)?;
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(encode_copy_source(&self.bucket, from))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se)) if se.err().code() == Some("NoSuchKey") => {
                Err(StorageError::NotFound {
                    key: from.to_owned(),
                })
            }
            Err(e) => Err(self.error("CopyObject", from, e)),
        }
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                out.push(ObjectMeta {
                    key: o.key().unwrap_or_default().to_owned(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    etag: unquote(o.e_tag()),
                    version_id: None,
                    last_modified: to_chrono(o.last_modified()),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<ObjectMeta>> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix);
        if !start_after.is_empty() {
            request = request.start_after(start_after);
        }
        if let Some(limit) = limit {
            request = request.max_keys(limit.clamp(1, 1000) as i32);
        }
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default();
                // S3 applies StartAfter itself; the filter keeps the contract exact either way.
                if key > start_after {
                    out.push(ObjectMeta {
                        key: key.to_owned(),
                        size: o.size().unwrap_or_default().max(0) as u64,
                        etag: unquote(o.e_tag()),
                        version_id: None,
                        last_modified: to_chrono(o.last_modified()),
                    });
                }
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(limit) = limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(
            encode_copy_source("b", "raw/orders/Happy Face+1 ü.csv"),
            "b/raw/orders/Happy%20Face%2B1%20%C3%BC.csv"
        );
    }

    #[tokio::test]
    async fn a_files_crc32_is_base64_big_endian_over_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Longer than one read; the value is zlib.crc32(b"shoplake" * 10000).
        std::fs::write(&path, b"shoplake".repeat(10_000)).unwrap();
        assert_eq!(file_crc32(&path).await.unwrap(), "hHibeQ==");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(file_crc32(&path).await.unwrap(), "AAAAAA==");
        assert!(file_crc32(&dir.path().join("missing")).await.is_err());
    }
}
