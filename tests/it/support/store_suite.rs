//! One behavioural suite for every `ObjectStore` implementation: the local directory and S3
//! (against moto) must agree, or the embedded default would not be the same pipeline.

use bytes::Bytes;
use shoplake::storage::{ObjectStore, Precondition, S3Store, StorageError};
use tokio::io::AsyncReadExt;

pub async fn run(store: &dyn ObjectStore) {
    missing_objects(store).await;
    put_get_head_list_delete(store).await;
    list_after_a_watermark(store).await;
    large_files_and_copies(store).await;
    moving_uploads(store).await;
    keys_with_spaces_and_unicode(store).await;
    unsafe_keys_are_refused(store).await;
    conditional_writes(store).await;
    batched_reads(store).await;
}

/// `get_batch` (what `get_many` hands a store that reads in batches) gives each key its own
/// result, in the order asked: the contents, `None` for a missing object, an error for a key
/// the store refuses, whatever the store's batch size.
async fn batched_reads(store: &dyn ObjectStore) {
    assert!(store.batch_reads() >= 1);
    for (key, body) in [("batch/b.txt", "bee"), ("batch/a.txt", "ay")] {
        store.put(key, Bytes::from(body)).await.unwrap();
    }
    let keys = [
        "batch/b.txt",
        "batch/missing.txt",
        "../escape.txt",
        "batch/a.txt",
    ];
    let got = store
        .get_batch(keys.iter().map(|k| k.to_string()).collect())
        .await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"bee"[..]));
    assert!(got[1].as_ref().unwrap().is_none());
    assert!(
        matches!(got[2], Err(StorageError::InvalidKey { .. })),
        "{:?}",
        got[2]
    );
    assert_eq!(got[3].as_ref().unwrap().as_deref(), Some(&b"ay"[..]));
    assert!(store.get_batch(Vec::new()).await.is_empty());
    for key in ["batch/a.txt", "batch/b.txt"] {
        store.delete(key).await.unwrap();
    }
}

/// `put_if` is the compare-and-swap claims and state are built on: the check and the write are
/// one step, and a write whose condition fails changes nothing.
async fn conditional_writes(store: &dyn ObjectStore) {
    let key = "claims/orders/B.json";
    assert!(
        store
            .put_if(key, Bytes::from_static(b"first"), Precondition::Absent)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if(key, Bytes::from_static(b"second"), Precondition::Absent)
            .await
            .unwrap(),
        "an existing object is not replaced"
    );
    assert_eq!(
        store.get(key).await.unwrap().unwrap(),
        Bytes::from_static(b"first")
    );
    let first = store.head(key).await.unwrap().unwrap().etag;
    assert!(
        !store
            .put_if(
                key,
                Bytes::from_static(b"third"),
                Precondition::Matches("nope".into())
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .put_if(
                key,
                Bytes::from_static(b"fourth!"),
                Precondition::Matches(first.clone())
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(key).await.unwrap().unwrap(),
        Bytes::from_static(b"fourth!")
    );
    assert!(
        !store
            .put_if(
                key,
                Bytes::from_static(b"fifth"),
                Precondition::Matches(first)
            )
            .await
            .unwrap(),
        "the old ETag no longer matches"
    );
    store.delete(key).await.unwrap();
    assert!(
        !store
            .put_if(
                key,
                Bytes::from_static(b"gone"),
                Precondition::Matches("x".into())
            )
            .await
            .unwrap(),
        "nothing to match"
    );
    assert!(store.get(key).await.unwrap().is_none());
    assert!(store.list("claims/").await.unwrap().is_empty());
}

async fn missing_objects(store: &dyn ObjectStore) {
    assert!(store.head("nope/missing.csv").await.unwrap().is_none());
    assert!(store.get("nope/missing.csv").await.unwrap().is_none());
    assert!(matches!(
        store.reader("nope/missing.csv").await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.copy("nope/missing.csv", "nope/x").await,
        Err(StorageError::NotFound { .. })
    ));
    store
        .delete("nope/missing.csv")
        .await
        .expect("deleting a missing object succeeds");
    assert!(store.list("nope/").await.unwrap().is_empty());
}

async fn put_get_head_list_delete(store: &dyn ObjectStore) {
    store
        .put("a/one.txt", Bytes::from_static(b"first"))
        .await
        .unwrap();
    store
        .put("a/sub/two.txt", Bytes::from_static(b"second"))
        .await
        .unwrap();
    store
        .put("ab/other.txt", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        store.get("a/one.txt").await.unwrap().unwrap(),
        Bytes::from_static(b"first")
    );
    let meta = store.head("a/one.txt").await.unwrap().unwrap();
    assert_eq!((meta.key.as_str(), meta.size), ("a/one.txt", 5));
    assert!(!meta.etag.is_empty());

    store
        .put("a/one.txt", Bytes::from_static(b"rewritten"))
        .await
        .unwrap();
    let rewritten = store.head("a/one.txt").await.unwrap().unwrap();
    assert_ne!(
        rewritten.etag, meta.etag,
        "a rewrite must change the etag (batch ids depend on it)"
    );

    let keys: Vec<String> = store
        .list("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["a/one.txt", "a/sub/two.txt"]);
    // A listing says when each object was written: compaction's settle rule ages partitions by
    // it (S3 to the second; moto and this process share the clock).
    let now = chrono::Utc::now();
    for m in store.list("a/").await.unwrap() {
        let age = now - m.last_modified;
        assert!(
            age > -chrono::TimeDelta::seconds(5) && age < chrono::TimeDelta::minutes(5),
            "{} listed as written at {}, now {now}",
            m.key,
            m.last_modified
        );
    }
    let keys: Vec<String> = store
        .list("a")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["a/one.txt", "a/sub/two.txt", "ab/other.txt"]);

    let mut body = String::new();
    store
        .reader("a/sub/two.txt")
        .await
        .unwrap()
        .read_to_string(&mut body)
        .await
        .unwrap();
    assert_eq!(body, "second");

    store.delete("a/one.txt").await.unwrap();
    assert!(store.head("a/one.txt").await.unwrap().is_none());
    assert_eq!(store.list("a/").await.unwrap().len(), 1);
}

/// Listing from a watermark key: strictly after it, within the prefix, sorted, limited.
async fn list_after_a_watermark(store: &dyn ObjectStore) {
    for key in [
        "w/m/1.json",
        "w/m/2.json",
        "w/m/3.json",
        "w/m/_pending/9.json",
        "w/n/1.json",
    ] {
        store.put(key, Bytes::from_static(b"{}")).await.unwrap();
    }
    let keys = |metas: Vec<shoplake::storage::ObjectMeta>| -> Vec<String> {
        metas.into_iter().map(|m| m.key).collect()
    };
    assert_eq!(
        keys(store.list_after("w/m/", "", None).await.unwrap()),
        keys(store.list("w/m/").await.unwrap()),
        "an empty watermark lists the whole prefix"
    );
    assert_eq!(
        keys(store.list_after("w/m/", "w/m/1.json", None).await.unwrap()),
        ["w/m/2.json", "w/m/3.json", "w/m/_pending/9.json"],
        "strictly after the watermark, never past the prefix"
    );
    assert_eq!(
        keys(
            store
                .list_after("w/m/", "w/m/2.json", Some(1))
                .await
                .unwrap()
        ),
        ["w/m/3.json"]
    );
    assert_eq!(
        keys(store.list_after("w/m/", "w/m/0", Some(2)).await.unwrap()),
        ["w/m/1.json", "w/m/2.json"],
        "a watermark need not be an existing key"
    );
    assert!(
        store
            .list_after("w/m/", "w/m/~", None)
            .await
            .unwrap()
            .is_empty()
    );

    // Nested partitions, listed after a day (the nightly run's `dates_after`): whole days before
    // it, the day itself and a key sharing its name as a prefix are left out or kept by key
    // order alone.
    for key in [
        "p/d=2026-01-01/r=EU/a.parquet",
        "p/d=2026-01-02/r=EU/a.parquet",
        "p/d=2026-01-02/r=NA/a.parquet",
        "p/d=2026-01-02x/r=EU/a.parquet",
        "p/d=2026-01-03/r=EU/a.parquet",
        "p/d=2026-01-03/r=EU/b.parquet",
    ] {
        store.put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    let after = [
        (
            "p/d=2026-01-02/~",
            &[
                "p/d=2026-01-02x/r=EU/a.parquet",
                "p/d=2026-01-03/r=EU/a.parquet",
                "p/d=2026-01-03/r=EU/b.parquet",
            ][..],
        ),
        (
            "p/d=2026-01-02/r=EU/a.parquet",
            &[
                "p/d=2026-01-02/r=NA/a.parquet",
                "p/d=2026-01-02x/r=EU/a.parquet",
                "p/d=2026-01-03/r=EU/a.parquet",
                "p/d=2026-01-03/r=EU/b.parquet",
            ],
        ),
        (
            "p/d=2026-01-03/r=EU/a.parquet",
            &["p/d=2026-01-03/r=EU/b.parquet"],
        ),
    ];
    for (start, expected) in after {
        let listed = keys(store.list_after("p/", start, None).await.unwrap());
        assert_eq!(listed, expected, "after {start}");
    }
}

async fn large_files_and_copies(store: &dyn ObjectStore) {
    // Larger than one multipart part, so S3 takes the multipart path.
    let size = shoplake::storage::MULTIPART_PART_BYTES + 1_234_567;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    store.put_file("big/file.bin", &path).await.unwrap();
    assert_eq!(
        store.head("big/file.bin").await.unwrap().unwrap().size,
        size as u64
    );
    let mut back = Vec::new();
    store
        .reader("big/file.bin")
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert!(back == data, "multipart upload round-trips byte for byte");

    // A range: the last bytes (where a gzip trailer is), and one across a part boundary.
    let tail = store
        .get_range("big/file.bin", size as u64 - 4..size as u64)
        .await
        .unwrap();
    assert_eq!(tail.as_ref(), &data[size - 4..]);
    let at = shoplake::storage::MULTIPART_PART_BYTES as u64;
    let across = store
        .get_range("big/file.bin", at - 3..at + 5)
        .await
        .unwrap();
    assert_eq!(across.as_ref(), &data[at as usize - 3..at as usize + 5]);
    assert!(matches!(
        store.get_range("big/missing.bin", 0..4).await,
        Err(StorageError::NotFound { .. })
    ));

    store.copy("big/file.bin", "big/copy.bin").await.unwrap();
    assert_eq!(
        store.get("big/copy.bin").await.unwrap().unwrap().len(),
        size
    );
}

async fn moving_uploads(store: &dyn ObjectStore) {
    // Staged output handed over: it replaces what is there, and the staged file is gone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-00000.parquet");
    store
        .put("moved/x=1/part.bin", Bytes::from("old"))
        .await
        .unwrap();
    std::fs::write(&path, b"new content").unwrap();
    store
        .put_file_moving("moved/x=1/part.bin", &path)
        .await
        .unwrap();
    assert_eq!(
        store.get("moved/x=1/part.bin").await.unwrap().unwrap(),
        Bytes::from("new content")
    );
    assert!(!path.exists(), "the staged file was handed over");
    // A missing staged file is an error, and the object is left as it was.
    assert!(
        store
            .put_file_moving("moved/x=1/part.bin", &path)
            .await
            .is_err()
    );
    assert_eq!(
        store.get("moved/x=1/part.bin").await.unwrap().unwrap(),
        Bytes::from("new content")
    );
}

async fn keys_with_spaces_and_unicode(store: &dyn ObjectStore) {
    let key = "raw/orders/Happy Face+1 café 日本.csv";
    store.put(key, Bytes::from_static(b"id\n")).await.unwrap();
    assert!(store.head(key).await.unwrap().is_some());
    store
        .copy(key, "raw/orders/copy of café.csv")
        .await
        .unwrap();
    let keys: Vec<String> = store
        .list("raw/orders/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(
        keys.contains(&key.to_owned()) && keys.contains(&"raw/orders/copy of café.csv".to_owned()),
        "{keys:?}"
    );
}

async fn unsafe_keys_are_refused(store: &dyn ObjectStore) {
    for key in ["../escape.txt", "/abs.txt", "a/./b", ""] {
        assert!(
            matches!(
                store.put(key, Bytes::new()).await,
                Err(StorageError::InvalidKey { .. })
            ),
            "{key:?} accepted"
        );
    }
}

/// The S3 adapter on a fresh moto bucket.
pub async fn s3_store(bucket: &str) -> S3Store {
    let s3 = super::moto::server().bucket(bucket).await;
    S3Store::new(s3, bucket)
}
