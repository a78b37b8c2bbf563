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

/// One request's headers, names in lower case.
type Headers = Vec<(String, String)>;

/// Headers of every request the client sends, for checks on how a body went out.
#[derive(Debug, Default, Clone)]
struct SentHeaders(std::sync::Arc<std::sync::Mutex<Vec<Headers>>>);

impl aws_sdk_s3::config::Intercept for SentHeaders {
    fn name(&self) -> &'static str {
        "SentHeaders"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let headers = context
            .request()
            .headers()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        self.0.lock().unwrap().push(headers);
        Ok(())
    }
}

/// A staged file goes up with its CRC32 (S3 verifies the bytes it receives against it): the
/// stored object carries the checksum of what was on disk, and the body is sent as it is, not
/// re-framed into aws-chunked encoding (the SDK's copy of every chunk, which this avoids).
#[tokio::test]
async fn s3_uploads_carry_the_files_crc32() {
    use aws_sdk_s3::types::ChecksumMode;
    use shoplake::storage::ObjectStore;

    let bucket = bucket_name("checksum");
    let client = crate::support::moto::server().bucket(&bucket).await;
    let sent = SentHeaders::default();
    let recording = aws_sdk_s3::Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(sent.clone())
            .build(),
    );
    let store = shoplake::storage::S3Store::new(recording, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-00000.parquet");
    // More than one read of the checksum's buffer.
    std::fs::write(&path, b"shoplake".repeat(10_000)).unwrap();
    store.put_file("p/part.parquet", &path).await.unwrap();
    let head = client
        .head_object()
        .bucket(&bucket)
        .key("p/part.parquet")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    // zlib.crc32(b"shoplake" * 10000), big-endian, base64.
    assert_eq!(head.checksum_crc32(), Some("hHibeQ=="));
    let sent = sent.0.lock().unwrap();
    let [put] = sent.as_slice() else {
        panic!("one request expected, got {sent:?}")
    };
    let header = |name: &str| put.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("x-amz-checksum-crc32"), Some("hHibeQ=="));
    assert!(
        !header("content-encoding")
            .unwrap_or_default()
            .contains("aws-chunked"),
        "the body went out re-framed: {put:?}"
    );
    assert!(header("x-amz-trailer").is_none(), "{put:?}");
}
