//! [`ObjectStore`] on a local directory with the same key layout as the bucket: the embedded
//! default behind the `lake` CLI. Writes go through a temporary file and a rename, so readers
//! never see half an object.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{ObjectMeta, ObjectReader, ObjectStore, StorageError, StorageResult, check_key};

/// Marks in-progress writes; such files are invisible to `list`.
pub const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    temp_counter: AtomicU64,
}

fn io_err<'a>(
    operation: &'static str,
    key: &'a str,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        operation,
        key: key.to_owned(),
        source,
    }
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

impl LocalStore {
    /// A store rooted at `root`, created if missing.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalStore {
            root: std::path::absolute(root)?,
            temp_counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`.
    pub fn path_of(&self, key: &str) -> StorageResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// The key of a file inside the store, if it is inside.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        let abs = std::path::absolute(path).ok()?;
        let rel = abs.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        Some(parts?.join("/"))
    }

    fn temp_path_for(&self, target: &Path) -> PathBuf {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        target.with_file_name(format!("{TEMP_PREFIX}{}-{n}-{name}", std::process::id()))
    }

    /// Writes through a temporary file in the target's directory, then renames into place.
    async fn write_atomically<F, Fut>(
        &self,
        key: &str,
        operation: &'static str,
        fill: F,
    ) -> StorageResult<()>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let target = self.path_of(key)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_err(operation, key))?;
        }
        let temp = self.temp_path_for(&target);
        let result = async {
            fill(temp.clone()).await?;
            tokio::fs::rename(&temp, &target).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result.map_err(io_err(operation, key))
    }

    fn meta_from(&self, key: String, md: &std::fs::Metadata) -> ObjectMeta {
        let modified = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let nanos = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        ObjectMeta {
            key,
            size: md.len(),
            etag: format!("{:x}-{nanos:x}", md.len()),
            version_id: None,
            last_modified: DateTime::<Utc>::from(modified),
        }
    }

    /// Removes directories left empty by a delete, up to the root (S3 has no directories).
    async fn prune_empty_parents(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir {
            if d == self.root
                || !d.starts_with(&self.root)
                || tokio::fs::remove_dir(d).await.is_err()
            {
                break;
            }
            dir = d.parent();
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(md) if md.is_file() => Ok(Some(self.meta_from(key.to_owned(), &md))),
            Ok(_) => Ok(None),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io_err("head", key)(e)),
        }
    }

    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        match tokio::fs::read(self.path_of(key)?).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io_err("get", key)(e)),
        }
    }

    async fn reader(&self, key: &str) -> StorageResult<ObjectReader> {
        match tokio::fs::File::open(self.path_of(key)?).await {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if not_found(&e) => Err(StorageError::NotFound {
                key: key.to_owned(),
            }),
            Err(e) => Err(io_err("read", key)(e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.write_atomically(key, "put", |temp| async move {
            tokio::fs::write(temp, &body).await
        })
        .await
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        let source = path.to_owned();
        self.write_atomically(key, "upload", |temp| async move {
            tokio::fs::copy(source, temp).await.map(drop)
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str) -> StorageResult<()> {
        let source = self.path_of(from)?;
        if self.head(from).await?.is_none() {
            return Err(StorageError::NotFound {
                key: from.to_owned(),
            });
        }
        self.put_file(to, &source).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                self.prune_empty_parents(path.parent()).await;
                Ok(())
            }
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(io_err("delete", key)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        // Walk only the deepest directory the prefix names.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path_of(dir_part)?
        };
        let mut out = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(io_err("list", prefix)(e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io_err("list", prefix))? {
                let path = entry.path();
                let md = entry.metadata().await.map_err(io_err("list", prefix))?;
                if md.is_dir() {
                    pending.push(path);
                    continue;
                }
                let hidden = entry
                    .file_name()
                    .to_str()
                    .is_none_or(|n| n.starts_with(TEMP_PREFIX));
                if let Some(key) = self
                    .key_of(&path)
                    .filter(|k| !hidden && k.starts_with(prefix))
                {
                    out.push(self.meta_from(key, &md));
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }
}
