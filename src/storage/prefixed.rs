//! A store inside another store's prefix (`s3://bucket/some/prefix`): keys are relative to the
//! prefix, as if the prefix were the whole bucket. Lets one bucket hold several lakes, and lets
//! `lake --lake s3://bucket/prefix` point at any of them.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, ObjectReader, ObjectStore, Precondition, StorageResult};

#[derive(Debug, Clone)]
pub struct PrefixedStore {
    inner: Arc<dyn ObjectStore>,
    /// Ends with `/`.
    prefix: String,
}

impl PrefixedStore {
    /// `prefix` is a plain key prefix (`lakes/prod`); a trailing `/` is added when missing.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str) -> StorageResult<Self> {
        let prefix = format!("{}/", prefix.trim_matches('/'));
        super::check_key(&prefix)?;
        Ok(PrefixedStore { inner, prefix })
    }

    /// The inner key; `key` is checked on its own first (`/abs` must not become `prefix//abs`).
    fn key(&self, key: &str) -> StorageResult<String> {
        super::check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// The inner store's errors name the full key; that is what a person can look up.
    fn unprefixed(&self, mut meta: ObjectMeta) -> Option<ObjectMeta> {
        meta.key = meta.key.strip_prefix(&self.prefix)?.to_owned();
        Some(meta)
    }
}

#[async_trait]
impl ObjectStore for PrefixedStore {
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        Ok(self
            .inner
            .head(&self.key(key)?)
            .await?
            .and_then(|m| self.unprefixed(m)))
    }
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        self.inner.get(&self.key(key)?).await
    }
    fn batch_reads(&self) -> usize {
        self.inner.batch_reads()
    }
    async fn get_batch(&self, keys: Vec<String>) -> Vec<StorageResult<Option<Bytes>>> {
        let inner: Vec<StorageResult<String>> = keys.iter().map(|k| self.key(k)).collect();
        let valid: Vec<String> = inner
            .iter()
            .filter_map(|k| k.as_ref().ok().cloned())
            .collect();
        let got = self.inner.get_batch(valid.clone()).await;
        // One result per valid key (or an error for each), so `next` never runs dry.
        let mut got = super::one_result_each(&valid, got).into_iter();
        inner
            .into_iter()
            .filter_map(|k| match k {
                Ok(_) => got.next(),
                Err(e) => Some(Err(e)),
            })
            .collect()
    }
    async fn reader(&self, key: &str) -> StorageResult<ObjectReader> {
        self.inner.reader(&self.key(key)?).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.inner.get_range(&self.key(key)?, range).await
    }
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.inner.put(&self.key(key)?, body).await
    }
    async fn put_if(&self, key: &str, body: Bytes, condition: Precondition) -> StorageResult<bool> {
        self.inner.put_if(&self.key(key)?, body, condition).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        self.inner.put_file(&self.key(key)?, path).await
    }
    async fn put_file_moving(&self, key: &str, path: &Path) -> StorageResult<()> {
        self.inner.put_file_moving(&self.key(key)?, path).await
    }
    async fn copy(&self, from: &str, to: &str) -> StorageResult<()> {
        self.inner.copy(&self.key(from)?, &self.key(to)?).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(&self.key(key)?).await
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        Ok(self
            .inner
            .list(&format!("{}{prefix}", self.prefix))
            .await?
            .into_iter()
            .filter_map(|m| self.unprefixed(m))
            .collect())
    }
    async fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<ObjectMeta>> {
        let (prefix, start_after) = (
            format!("{}{prefix}", self.prefix),
            format!("{}{start_after}", self.prefix),
        );
        Ok(self
            .inner
            .list_after(&prefix, &start_after, limit)
            .await?
            .into_iter()
            .filter_map(|m| self.unprefixed(m))
            .collect())
    }
    fn uri(&self, key: &str) -> String {
        self.inner.uri(&format!("{}{key}", self.prefix))
    }
}
