//! A fault-injecting `ObjectStore`: counts every write (put, upload, conditional put, copy,
//! delete) and makes the Nth one fail. `Fail` refuses it (nothing happens, as when a request
//! never arrives); `Abort` performs it and then reports an error (as when the process dies or
//! the answer is lost right after the write). Both end the stage's run the way a crash does.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use shoplake::storage::{
    ObjectMeta, ObjectReader, ObjectStore, Precondition, StorageError, StorageResult,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail,
    Abort,
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    fault: Option<(usize, Fault)>,
    faulted: std::sync::Mutex<Option<String>>,
    /// The key of each write, the `n`th at `n - 1` (writes run concurrently are numbered as
    /// they start): their count is the number of writes.
    written: std::sync::Mutex<Vec<String>>,
    /// Bytes returned by `get` and `get_range` (what a stage downloads whole).
    bytes_read: AtomicU64,
    /// HEAD requests, and keys returned by `list`/`list_after` under `manifests/`.
    heads: AtomicUsize,
    manifests_listed: AtomicUsize,
    /// Keys returned by `list`/`list_after` under `processed/` (silver files listed).
    processed_listed: AtomicUsize,
    /// `get` and `get_range` calls per key.
    gets: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Objects under this prefix are listed but gone when fetched (deleted in between).
    gone: Option<String>,
}

impl FaultyStore {
    /// Counts writes and never fails.
    pub fn counting(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            fault: None,
            faulted: Default::default(),
            written: Default::default(),
            bytes_read: AtomicU64::new(0),
            heads: AtomicUsize::new(0),
            manifests_listed: AtomicUsize::new(0),
            processed_listed: AtomicUsize::new(0),
            gets: Default::default(),
            gone: None,
        }
    }

    /// Lists the objects under `prefix` but finds none of them when they are fetched, as when
    /// another process deletes them between the listing and the fetch.
    pub fn gone_when_fetched(inner: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        FaultyStore {
            gone: Some(prefix.to_owned()),
            ..Self::counting(inner)
        }
    }

    /// Faults the `nth` write (1-based).
    pub fn failing(inner: Arc<dyn ObjectStore>, nth: usize, fault: Fault) -> Self {
        FaultyStore {
            fault: Some((nth, fault)),
            ..Self::counting(inner)
        }
    }

    /// Bytes downloaded through `get` and `get_range` so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::SeqCst)
    }

    /// `get` and `get_range` calls of `key` so far.
    pub fn gets_of(&self, key: &str) -> usize {
        self.gets.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn fetched(&self, key: &str, bytes: usize) {
        self.bytes_read.fetch_add(bytes as u64, Ordering::SeqCst);
        *self.gets.lock().unwrap().entry(key.to_owned()).or_default() += 1;
    }

    /// HEAD requests so far.
    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    /// Manifest keys returned by listings so far.
    pub fn manifests_listed(&self) -> usize {
        self.manifests_listed.load(Ordering::SeqCst)
    }

    /// Silver keys returned by listings so far.
    pub fn processed_listed(&self) -> usize {
        self.processed_listed.load(Ordering::SeqCst)
    }

    fn listed(&self, metas: &[ObjectMeta]) {
        let under = |prefix: &str| metas.iter().filter(|m| m.key.starts_with(prefix)).count();
        self.manifests_listed
            .fetch_add(under("manifests/"), Ordering::SeqCst);
        self.processed_listed
            .fetch_add(under("processed/"), Ordering::SeqCst);
    }

    pub fn writes(&self) -> usize {
        self.written.lock().unwrap().len()
    }

    /// The number (1-based) of the first write to a key `matches` accepts, if one was.
    pub fn first_write(&self, matches: impl Fn(&str) -> bool) -> Option<usize> {
        let written = self.written.lock().unwrap();
        written.iter().position(|k| matches(k)).map(|i| i + 1)
    }

    /// The key of the write that was faulted, if one was.
    pub fn faulted(&self) -> Option<String> {
        self.faulted.lock().unwrap().clone()
    }

    fn injected(operation: &'static str, key: &str) -> StorageError {
        StorageError::Io {
            operation,
            key: key.to_owned(),
            source: std::io::Error::other("injected fault"),
        }
    }

    /// Runs one write, faulting it if it is the chosen one.
    async fn write<T>(
        &self,
        operation: &'static str,
        key: &str,
        run: impl Future<Output = StorageResult<T>>,
    ) -> StorageResult<T> {
        let n = {
            let mut written = self.written.lock().unwrap();
            written.push(key.to_owned());
            written.len()
        };
        if self.fault.is_some_and(|(nth, _)| nth == n) {
            *self.faulted.lock().unwrap() = Some(key.to_owned());
        }
        match self.fault {
            Some((nth, Fault::Fail)) if nth == n => Err(Self::injected(operation, key)),
            Some((nth, Fault::Abort)) if nth == n => {
                run.await?;
                Err(Self::injected(operation, key))
            }
            _ => run.await,
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(key).await
    }
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        if self.gone.as_deref().is_some_and(|p| key.starts_with(p)) {
            return Ok(None);
        }
        let got = self.inner.get(key).await?;
        self.fetched(key, got.as_ref().map_or(0, |b| b.len()));
        Ok(got)
    }
    async fn reader(&self, key: &str) -> StorageResult<ObjectReader> {
        self.inner.reader(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StorageResult<Bytes> {
        let got = self.inner.get_range(key, range).await?;
        self.fetched(key, got.len());
        Ok(got)
    }
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.write("put", key, self.inner.put(key, body)).await
    }
    async fn put_if(&self, key: &str, body: Bytes, condition: Precondition) -> StorageResult<bool> {
        self.write(
            "conditional put",
            key,
            self.inner.put_if(key, body, condition),
        )
        .await
    }
    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        self.write("upload", key, self.inner.put_file(key, path))
            .await
    }
    async fn put_file_moving(&self, key: &str, path: &Path) -> StorageResult<()> {
        self.write("upload", key, self.inner.put_file_moving(key, path))
            .await
    }
    async fn copy(&self, from: &str, to: &str) -> StorageResult<()> {
        self.write("copy", to, self.inner.copy(from, to)).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.write("delete", key, self.inner.delete(key)).await
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let metas = self.inner.list(prefix).await?;
        self.listed(&metas);
        Ok(metas)
    }
    async fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<ObjectMeta>> {
        let metas = self.inner.list_after(prefix, start_after, limit).await?;
        self.listed(&metas);
        Ok(metas)
    }
    fn uri(&self, key: &str) -> String {
        self.inner.uri(key)
    }
    fn local_root(&self) -> Option<&Path> {
        self.inner.local_root()
    }
}
