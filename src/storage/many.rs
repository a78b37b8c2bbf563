//! Listing and fetching many objects at once. A night's read of a window of day partitions is
//! hundreds of small files (a payments check at a year of history reads about 750 order files);
//! on S3 each one's GET or LIST costs its round trip, not its bytes, and one at a time a reader
//! waits for every round trip in turn.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};

use super::{ObjectMeta, ObjectStore, StorageError, StorageResult};

/// Requests [`list_many`] and [`get_many`] keep in flight.
pub const AT_ONCE: usize = 16;
/// The most object bytes [`get_many`] holds in flight (fewer objects at once when they are
/// large: a big compacted file is fetched alone rather than sixteen of them together).
pub const BYTES_IN_FLIGHT: u64 = 64 << 20;

/// The objects under each of `prefixes`, listed up to [`AT_ONCE`] prefixes at a time, in the
/// order of `prefixes` (each prefix's objects sorted by key, as [`ObjectStore::list`]).
pub async fn list_many(
    store: &Arc<dyn ObjectStore>,
    prefixes: Vec<String>,
) -> StorageResult<Vec<ObjectMeta>> {
    Ok(list_each(store, prefixes)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// As [`list_many`], each prefix's objects apart: one listing per prefix, in their order.
pub async fn list_each(
    store: &Arc<dyn ObjectStore>,
    prefixes: Vec<String>,
) -> StorageResult<Vec<Vec<ObjectMeta>>> {
    // Owned values in the stream: its futures are then `Send` whatever the caller's lifetimes,
    // as the Lambda runtime's spawned handlers need.
    stream::iter(prefixes)
        .map(|prefix| {
            let store = Arc::clone(store);
            async move { store.list(&prefix).await }
        })
        .buffered(AT_ONCE)
        .try_collect()
        .await
}

/// Deletes `keys`, up to [`AT_ONCE`] at a time, in no particular order: a caller that must
/// delete something after them (a record naming them) does it once this returns.
pub async fn delete_many(store: &Arc<dyn ObjectStore>, keys: Vec<String>) -> StorageResult<()> {
    stream::iter(keys.into_iter().map(Ok::<_, StorageError>))
        .try_for_each_concurrent(AT_ONCE, |key| {
            let store = Arc::clone(store);
            async move { store.delete(&key).await }
        })
        .await
}

/// An object to fetch: its key and its size in bytes (from a listing or a manifest).
pub type Fetch = (String, u64);

/// How many of `objects` [`get_many`] fetches at once: [`AT_ONCE`], or fewer when the largest
/// would take the bytes in flight past [`BYTES_IN_FLIGHT`] (at least one).
pub fn get_at_once(objects: &[Fetch]) -> usize {
    at_once_within(objects, BYTES_IN_FLIGHT, AT_ONCE)
}

/// How many of `items` (each with its size in bytes) to have in flight at once so that they
/// hold at most `budget` bytes together: `most`, or fewer when the largest would take them past
/// the budget (at least one, so an item larger than the budget goes alone).
pub fn at_once_within<K>(items: &[(K, u64)], budget: u64, most: usize) -> usize {
    let largest = items
        .iter()
        .map(|(_, size)| *size)
        .max()
        .unwrap_or(0)
        .max(1);
    usize::try_from(budget / largest)
        .unwrap_or(most)
        .clamp(1, most.max(1))
}

/// The objects `objects` name (key and size), with their bytes, in the order given, fetched
/// [`get_at_once`] at a time. An object that is gone is [`StorageError::NotFound`].
///
/// A store that reads in batches ([`ObjectStore::batch_reads`], a local directory) is handed
/// them in runs of up to that many objects and half [`BYTES_IN_FLIGHT`], two runs in flight.
pub fn get_many(
    store: &Arc<dyn ObjectStore>,
    objects: Vec<Fetch>,
) -> impl Stream<Item = StorageResult<(String, Bytes)>> + Send + 'static {
    let batch = store.batch_reads();
    let store = Arc::clone(store);
    if batch > 1 {
        let runs = runs(objects, batch, BYTES_IN_FLIGHT / 2);
        // Two runs at once, or one when a run of one large object would take them past the
        // budget, as `get_at_once` bounds single objects.
        let in_flight = at_once_within(&runs, BYTES_IN_FLIGHT, 2);
        return stream::iter(runs)
            .map(move |(keys, _)| {
                let store = Arc::clone(&store);
                async move {
                    let got = super::one_result_each(&keys, store.get_batch(keys.clone()).await);
                    stream::iter(keys.into_iter().zip(got).map(|(k, g)| found(k, g)))
                }
            })
            .buffered(in_flight)
            .flatten()
            .boxed();
    }
    let at_once = get_at_once(&objects);
    stream::iter(objects)
        .map(move |(key, _)| {
            let store = Arc::clone(&store);
            async move { found(key.clone(), store.get(&key).await) }
        })
        .buffered(at_once)
        .boxed()
}

/// A fetched object's key and bytes; an absent one is [`StorageError::NotFound`].
fn found(key: String, got: StorageResult<Option<Bytes>>) -> StorageResult<(String, Bytes)> {
    let bytes = got?.ok_or_else(|| StorageError::NotFound { key: key.clone() })?;
    Ok((key, bytes))
}

/// `objects`' keys in order, in runs of at most `most` objects and `bytes` together (an object
/// larger than `bytes` alone), each with its bytes.
fn runs(objects: Vec<Fetch>, most: usize, bytes: u64) -> Vec<(Vec<String>, u64)> {
    let mut runs: Vec<(Vec<String>, u64)> = Vec::new();
    for (key, size) in objects {
        match runs.last_mut() {
            Some((run, held)) if run.len() < most && *held + size <= bytes => {
                *held += size;
                run.push(key);
            }
            _ => runs.push((vec![key], size)),
        }
    }
    runs
}

/// The keys and sizes of `metas`, as [`get_many`] takes them.
pub fn fetches(metas: impl IntoIterator<Item = ObjectMeta>) -> Vec<Fetch> {
    metas.into_iter().map(|m| (m.key, m.size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    fn object(key: &str, size: u64) -> Fetch {
        (key.to_owned(), size)
    }

    #[test]
    fn large_objects_are_fetched_fewer_at_a_time() {
        assert_eq!(get_at_once(&[]), AT_ONCE);
        assert_eq!(
            get_at_once(&[object("a", 20 << 10), object("b", 0)]),
            AT_ONCE
        );
        assert_eq!(get_at_once(&[object("a", 1), object("b", 16 << 20)]), 4);
        assert_eq!(get_at_once(&[object("a", 1 << 30)]), 1);
    }

    #[test]
    fn a_batch_with_a_result_missing_fails_every_key_rather_than_leave_a_gap() {
        let keys = vec!["a".to_owned(), "b".to_owned()];
        let whole = crate::storage::one_result_each(&keys, vec![Ok(None), Ok(None)]);
        assert!(whole.iter().all(|r| matches!(r, Ok(None))));
        let short = crate::storage::one_result_each(&keys, vec![Ok(None)]);
        assert_eq!(short.len(), 2);
        assert!(
            short
                .iter()
                .zip(&keys)
                .all(|(r, k)| matches!(r, Err(StorageError::Io { key, .. }) if key == k))
        );
    }

    #[test]
    fn batched_reads_come_in_runs_bounded_by_count_and_bytes() {
        let objects = vec![
            object("a", 10),
            object("b", 10),
            object("c", 10),
            object("big", 100),
            object("d", 1),
        ];
        let runs = runs(objects, 2, 25);
        let keys: Vec<Vec<String>> = runs.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [vec!["a", "b"], vec!["c"], vec!["big"], vec!["d"]]);
        let bytes: Vec<u64> = runs.iter().map(|(_, b)| *b).collect();
        assert_eq!(bytes, [20, 10, 100, 1]);
        // A run of one object over half the budget is fetched alone.
        assert_eq!(at_once_within(&runs, 150, 2), 1);
        assert_eq!(at_once_within(&runs, 200, 2), 2);
    }

    #[tokio::test]
    async fn many_prefixes_and_objects_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        // More than AT_ONCE of each, so requests overlap and must still come back in order.
        let days: Vec<String> = (0..40).map(|d| format!("p/day={d:02}/")).collect();
        for (d, prefix) in days.iter().enumerate() {
            for f in 0..3 {
                let body = format!("{d}-{f}");
                store
                    .put(&format!("{prefix}f{f}.bin"), Bytes::from(body))
                    .await
                    .unwrap();
            }
        }
        let listed = list_many(&store, days.iter().rev().cloned().collect())
            .await
            .unwrap();
        let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
        let expected: Vec<String> = days
            .iter()
            .rev()
            .flat_map(|p| (0..3).map(move |f| format!("{p}f{f}.bin")))
            .collect();
        assert_eq!(keys, expected);

        let got: Vec<(String, Bytes)> = get_many(&store, fetches(listed.clone()))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.len(), 120);
        for ((key, bytes), listed) in got.iter().zip(&listed) {
            assert_eq!(key, &listed.key);
            let (d, f) = (&key[6..8], &key[10..11]);
            assert_eq!(
                bytes,
                &Bytes::from(format!("{}-{f}", d.parse::<u32>().unwrap()))
            );
        }

        // A file deleted after the listing is an error, not a silent gap.
        store.delete(&listed[70].key).await.unwrap();
        let err = get_many(&store, fetches(listed))
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StorageError::NotFound { key } if key == "p/day=16/f1.bin"),
            "{err:?}"
        );

        // Every key deleted, the one already gone too; nothing else.
        let doomed: Vec<String> = (0..39)
            .flat_map(|d| (0..3).map(move |f| format!("p/day={d:02}/f{f}.bin")))
            .collect();
        delete_many(&store, doomed).await.unwrap();
        let left = store.list("p/").await.unwrap();
        let left: Vec<&str> = left.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            left,
            ["p/day=39/f0.bin", "p/day=39/f1.bin", "p/day=39/f2.bin"]
        );
    }
}
