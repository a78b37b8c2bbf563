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
