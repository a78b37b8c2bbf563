//! [`ObjectStore`] on a local directory with the same key layout as the bucket: the embedded
//! default behind the `lake` CLI. Writes go through a temporary file and a rename, so readers
//! never see half an object. Temporary files live in a scratch directory of this store under
//! `_tmp/` at the lake root, where no reader's glob over a dataset looks; a process killed
//! mid-write leaves its scratch behind only until the next store on the lake sweeps it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{
    ObjectMeta, ObjectReader, ObjectStore, Precondition, StorageError, StorageResult, check_key,
};
use crate::scratch::Scratch;

/// Marks in-progress writes of other tools; such files are invisible to `list`.
pub const TEMP_PREFIX: &str = ".tmp-";
/// The directory at the lake root that holds every store's scratch (never a key).
pub const TEMP_DIR: &str = "_tmp";
/// The one lock that makes conditional writes atomic across processes.
const CAS_LOCK: &str = "cas.lock";

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    temp_counter: AtomicU64,
    /// Created on the first write, so a read-only `lake show` leaves nothing behind.
    scratch: OnceLock<Scratch>,
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

/// Moves `temp` to `target` with `op` (a rename, or a hard link that never replaces), making
/// the target's directory first. Another process's delete prunes directories it leaves empty,
/// so the directory may vanish between our mkdir and our move: then it is made again.
fn place(
    temp: &Path,
    target: &Path,
    op: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let parent = target.parent().expect("keys have a parent");
    let mut attempt = 0;
    loop {
        attempt += 1;
        // `create_dir_all` also fails with "exists" when a directory it found existing was
        // pruned before it could check it is one: made again, as after a vanished directory.
        if let Err(e) = std::fs::create_dir_all(parent) {
            let pruned = not_found(&e) || e.kind() == std::io::ErrorKind::AlreadyExists;
            if pruned && attempt < 16 {
                continue;
            }
            return Err(e);
        }
        match op(temp, target) {
            Err(e) if not_found(&e) && temp.exists() && attempt < 16 => continue,
            other => return other,
        }
    }
}

impl LocalStore {
    /// A store rooted at `root`, created if missing.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalStore {
            root: std::path::absolute(root)?,
            temp_counter: AtomicU64::new(0),
            scratch: OnceLock::new(),
        })
    }

    /// This store's scratch directory (sweeping those of dead stores when it is first made).
    fn scratch(&self) -> std::io::Result<&Path> {
        if let Some(s) = self.scratch.get() {
            return Ok(s.path());
        }
        let made = Scratch::create_in(&self.root.join(TEMP_DIR), "store-")?;
        // Two threads may race to make one; the loser's is dropped (and removed) here.
        Ok(self.scratch.get_or_init(|| made).path())
    }

    /// A fresh temporary path in this store's scratch directory.
    fn temp_path(&self) -> std::io::Result<PathBuf> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        Ok(self.scratch()?.join(format!("{n}")))
    }

    /// Copies a local file into the store's scratch (a temporary path the caller renames or
    /// links into place), returning the temporary path.
    pub fn scratch_copy(
        &self,
        mut from: impl std::io::Read,
        mut inspect: impl FnMut(&[u8]),
    ) -> std::io::Result<PathBuf> {
        use std::io::Write;
        let temp = self.temp_path()?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&temp)?);
        let mut buf = vec![0u8; 1 << 20];
        let result = (|| loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return out.flush(),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            inspect(&buf[..n]);
            out.write_all(&buf[..n])?;
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(temp)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`.
    pub fn path_of(&self, key: &str) -> StorageResult<PathBuf> {
        path_under(&self.root, key)
    }

    /// The objects under `prefix` (after `start_after`, when given), sorted by key, walked on
    /// one of tokio's blocking threads ([`walk_dir`]).
    async fn walk(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> StorageResult<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let (owned, start_after) = (prefix.to_owned(), start_after.map(str::to_owned));
        tokio::task::spawn_blocking(move || walk_dir(&root, &owned, start_after.as_deref()))
            .await
            .map_err(|e| io_err("list", prefix)(std::io::Error::other(e)))?
    }

    /// The key of a file inside the store, if it is inside.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        key_under(&self.root, path)
    }

    /// Brings a local file into the store under `key_for(content digest)`, unless an object
    /// with that key is there already (then it holds the same content), and returns the key.
    /// The copy keeps the source's modification time. Only regular files are accepted: a FIFO
    /// or a device would block or never end.
    pub fn import(
        &self,
        file: &Path,
        key_for: impl FnOnce(&str) -> String,
    ) -> StorageResult<String> {
        use sha2::{Digest, Sha256};
        let shown = file.display().to_string();
        let err = |e| io_err("import", &shown)(e);
        let md = std::fs::metadata(file).map_err(err)?;
        if !md.is_file() {
            return Err(StorageError::NotAFile { path: shown });
        }
        let modified = md.modified().map_err(err)?;
        let mut hasher = Sha256::new();
        let source = std::fs::File::open(file).map_err(err)?;
        let temp = self
            .scratch_copy(source, |chunk| hasher.update(chunk))
            .map_err(err)?;
        let digest: String = hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = key_for(&digest);
        let placed = (|| {
            let target = self.path_of(&key)?;
            let f = std::fs::File::options()
                .write(true)
                .open(&temp)
                .map_err(err)?;
            f.set_modified(modified).map_err(err)?;
            drop(f);
            // Never replaces: whoever staged the same content first, its copy is the object.
            match place(&temp, &target, |f, t| std::fs::hard_link(f, t)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(err(e)),
            }
        })();
        let _ = std::fs::remove_file(&temp);
        placed.map(|()| key)
    }

    /// Writes through a temporary file in the store's scratch, then renames into place.
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
        let temp = self.temp_path().map_err(io_err(operation, key))?;
        let result = async {
            fill(temp.clone()).await?;
            place(&temp, &target, |from, to| std::fs::rename(from, to))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result.map_err(io_err(operation, key))
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

/// The file of `key` in the store rooted at `root` (a key that could escape it is refused).
fn path_under(root: &Path, key: &str) -> StorageResult<PathBuf> {
    check_key(key)?;
    Ok(root.join(key))
}

/// A whole-file read of `key` as an object: absent when the file is not there.
fn object_read(key: &str, read: std::io::Result<Vec<u8>>) -> StorageResult<Option<Bytes>> {
    match read {
        Ok(data) => Ok(Some(Bytes::from(data))),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(io_err("get", key)(e)),
    }
}

/// The key of `path` in the store rooted at `root`, if it is inside.
fn key_under(root: &Path, path: &Path) -> Option<String> {
    let abs = std::path::absolute(path).ok()?;
    let rel = abs.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn meta_from(key: String, md: &std::fs::Metadata) -> ObjectMeta {
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

/// The objects under `prefix` in the store rooted at `root` (after `start_after`, when given),
/// sorted by key. Only the deepest directory the prefix names is walked, and below it no
/// directory whose every key sorts before `start_after` (a listing from a watermark costs what
/// follows it). Only a file that is listed is stat'ed (for its size and time).
///
/// The whole walk is one blocking call, not a hop to tokio's blocking pool per directory read
/// and per stat: a payments check at a year of history lists 64 date prefixes holding about
/// 2,400 files, and its hops (a thread woken and a task woken back, each a few futex calls)
/// made about 25,000 futex calls against about 3,100 at a week of history (with the batched
/// reads of `get_batch`, about 1,000 and 450).
fn walk_dir(
    root: &Path,
    prefix: &str,
    start_after: Option<&str>,
) -> StorageResult<Vec<ObjectMeta>> {
    let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    let start = if dir_part.is_empty() {
        root.to_path_buf()
    } else {
        path_under(root, dir_part)?
    };
    let scratch = root.join(TEMP_DIR);
    let mut out = Vec::new();
    let mut pending = vec![start];
    // Other processes write while we walk: a directory or file that vanishes between being
    // named and being read was deleted or renamed, which is no error.
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(io_err("list", prefix)(e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if not_found(&e) => break,
                Err(e) => return Err(io_err("list", prefix)(e)),
            };
            let path = entry.path();
            // The type comes with the directory listing (no stat).
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(io_err("list", prefix)(e)),
            };
            if file_type.is_dir() {
                let skipped = start_after.is_some_and(|s| {
                    key_under(root, &path).is_some_and(|dir| wholly_before(&dir, s))
                });
                if path != scratch && !skipped {
                    pending.push(path);
                }
                continue;
            }
            let hidden = entry
                .file_name()
                .to_str()
                .is_none_or(|n| n.starts_with(TEMP_PREFIX));
            let Some(key) = key_under(root, &path)
                .filter(|k| !hidden && k.starts_with(prefix))
                .filter(|k| start_after.is_none_or(|s| k.as_str() > s))
            else {
                continue;
            };
            match entry.metadata() {
                // Replaced by a directory since it was listed: as if it had vanished.
                Ok(md) if md.is_dir() => continue,
                Ok(md) => out.push(meta_from(key, &md)),
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(io_err("list", prefix)(e)),
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// True when every key under the directory `dir` (a key, without its trailing `/`) sorts at or
/// before `start_after`: `dir/` sorts before it and is not its prefix.
fn wholly_before(dir: &str, start_after: &str) -> bool {
    let dir = format!("{dir}/");
    dir.as_str() < start_after && !start_after.starts_with(&dir)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn head(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(md) if md.is_file() => Ok(Some(meta_from(key.to_owned(), &md))),
            Ok(_) => Ok(None),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io_err("head", key)(e)),
        }
    }

    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        object_read(key, tokio::fs::read(self.path_of(key)?).await)
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

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StorageResult<Bytes> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.path_of(key)?;
        let read = async {
            let mut file = tokio::fs::File::open(&path).await?;
            file.seek(std::io::SeekFrom::Start(range.start)).await?;
            let mut data = vec![0; range.end.saturating_sub(range.start) as usize];
            file.read_exact(&mut data).await?;
            Ok(Bytes::from(data))
        };
        read.await.map_err(|e: std::io::Error| {
            if not_found(&e) {
                StorageError::NotFound {
                    key: key.to_owned(),
                }
            } else {
                io_err("read a range of", key)(e)
            }
        })
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

    async fn put_file_moving(&self, key: &str, path: &Path) -> StorageResult<()> {
        let target = self.path_of(key)?;
        // A rename is atomic like the copy-then-rename of `put_file`, without the copy and the
        // temporary file (creating files is what many small partitions cost).
        match place(path, &target, |from, to| std::fs::rename(from, to)) {
            Ok(()) => Ok(()),
            // Work directory and lake on different file systems.
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                self.put_file(key, path).await?;
                let _ = tokio::fs::remove_file(path).await;
                Ok(())
            }
            Err(e) => Err(io_err("upload", key)(e)),
        }
    }

    async fn put_if(&self, key: &str, body: Bytes, condition: Precondition) -> StorageResult<bool> {
        let target = self.path_of(key)?;
        let err = |e| io_err("conditional put", key)(e);
        let temp = self.temp_path().map_err(&err)?;
        tokio::fs::write(&temp, &body).await.map_err(&err)?;
        // Every conditional write of every process on this lake takes one lock, and nothing
        // under it awaits: a task holding it never waits for one blocked on it.
        let placed = (|| {
            let lock = std::fs::File::create(self.root.join(TEMP_DIR).join(CAS_LOCK))?;
            lock.lock()?;
            match condition {
                // A hard link never replaces an existing file.
                Precondition::Absent => {
                    match place(&temp, &target, |f, t| std::fs::hard_link(f, t)) {
                        Ok(()) => Ok(true),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                        Err(e) => Err(e),
                    }
                }
                Precondition::Matches(etag) => {
                    let current = match std::fs::metadata(&target) {
                        Ok(md) if md.is_file() => Some(meta_from(key.to_owned(), &md).etag),
                        Ok(_) => None,
                        Err(e) if not_found(&e) => None,
                        Err(e) => return Err(e),
                    };
                    if current.as_deref() == Some(etag.as_str()) {
                        place(&temp, &target, |f, t| std::fs::rename(f, t)).map(|()| true)
                    } else {
                        Ok(false)
                    }
                }
            }
        })();
        let _ = std::fs::remove_file(&temp);
        placed.map_err(err)
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

    /// Many small files (a window's key lists, a batch's Parquet) are read in one blocking
    /// call: each `get` is a hand-off to tokio's blocking pool and back.
    fn batch_reads(&self) -> usize {
        64
    }
    async fn get_batch(&self, keys: Vec<String>) -> Vec<StorageResult<Option<Bytes>>> {
        let named = keys.clone();
        let paths: Vec<StorageResult<PathBuf>> = keys.iter().map(|k| self.path_of(k)).collect();
        let read = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .zip(keys)
                .map(|(path, key)| object_read(&key, std::fs::read(path?)))
                .collect()
        })
        .await;
        // Only a panic in the read gets here: every key then fails alike.
        read.unwrap_or_else(|e| {
            let message = e.to_string();
            named
                .iter()
                .map(|key| Err(io_err("get", key)(std::io::Error::other(message.clone()))))
                .collect()
        })
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.walk(prefix, None).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<ObjectMeta>> {
        let mut out = self.walk(prefix, Some(start_after)).await?;
        if let Some(limit) = limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::LocalStore;
    use crate::storage::ObjectStore;

    /// A delete prunes the directory it empties while another task puts into it: the put makes
    /// the directory again, whichever step of making it the pruning lands on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn puts_beside_deletes_that_prune_their_directory_never_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(dir.path()).unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..3000 {
                        let key = format!("runs/compact/orders/{t}-{i}.json");
                        store.put(&key, Bytes::from_static(b"{}")).await?;
                        store.delete(&key).await?;
                    }
                    Ok::<_, crate::storage::StorageError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
}
