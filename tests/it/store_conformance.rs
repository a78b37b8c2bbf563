//! The object-store conformance suite on both adapters.

use shoplake::storage::LocalStore;

use crate::support::{bucket_name, store_suite};

#[tokio::test]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    store_suite::run(&store).await;
    // Deletes leave no empty directories behind (S3 has none either).
    assert!(!dir.path().join("a").join("one.txt").exists());
}

#[tokio::test]
async fn s3_store_conforms_against_moto() {
    let store = store_suite::s3_store(&bucket_name("conformance")).await;
    store_suite::run(&store).await;
}

/// A lake under a prefix of a bucket (`lake --lake s3://bucket/prefix`) behaves like a bucket of
/// its own, and sees nothing outside its prefix.
#[tokio::test]
async fn a_prefixed_store_conforms_on_both_adapters_and_stays_in_its_prefix() {
    use bytes::Bytes;
    use shoplake::storage::{ObjectStore, PrefixedStore};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    local
        .put("lakes/prod-other/raw/x.csv", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let prefixed = PrefixedStore::new(local.clone(), "lakes/prod/").unwrap();
    store_suite::run(&prefixed).await;
    assert!(
        prefixed
            .list("")
            .await
            .unwrap()
            .iter()
            .all(|m| !m.key.contains("prod-other"))
    );
    prefixed
        .put("a/b.txt", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert!(local.head("lakes/prod/a/b.txt").await.unwrap().is_some());
    assert_eq!(prefixed.list("a/").await.unwrap()[0].key, "a/b.txt");
    assert!(prefixed.uri("a/b.txt").ends_with("/lakes/prod/a/b.txt"));

    let s3: Arc<dyn ObjectStore> = Arc::new(store_suite::s3_store(&bucket_name("prefixed")).await);
    let prefixed = PrefixedStore::new(s3, "lakes/prod").unwrap();
    store_suite::run(&prefixed).await;
    assert!(prefixed.uri("a/b.txt").ends_with("/lakes/prod/a/b.txt"));
}
