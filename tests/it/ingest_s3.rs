//! The ingest Lambda's handler against S3 on moto: real event JSON in, Parquet, quarantine and
//! manifests out, checked against the generator's ground truth.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::s3::S3Event;
use bytes::Bytes;
use chrono::NaiveDate;
use polars::prelude::*;
use shoplake::Retryable;
use shoplake::generate::{GenerateOptions, GeneratedFile, generate};
use shoplake::ingest::IngestSettings;
use shoplake::manifest::{BatchStatus, BatchSummary, Manifest};
use shoplake::stages::ingest::{IngestRequest, IngestService};
use shoplake::storage::{ObjectStore, S3Store};

use crate::support::{bucket_name, moto, read_parquet_bytes};

/// Encodes a key the way S3 event notifications do (form encoding: space as `+`).
fn event_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An S3 put event as delivered to Lambda, built from the sample in `events/`.
fn s3_event(bucket: &str, keys: &[&str]) -> S3Event {
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../events/ingest-orders.json"))
            .expect("sample event is JSON");
    let template = sample["Records"][0].clone();
    let records: Vec<serde_json::Value> = keys
        .iter()
        .map(|key| {
            let mut r = template.clone();
            r["s3"]["bucket"]["name"] = bucket.into();
            r["s3"]["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
            r["s3"]["object"]["key"] = event_key(key).into();
            r
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("event deserialises")
}

struct Env {
    bucket: String,
    store: S3Store,
    handler: IngestService,
}

async fn env(test: &str, settings: IngestSettings) -> Env {
    let bucket = bucket_name(test);
    let s3 = moto::server().bucket(&bucket).await;
    Env {
        store: S3Store::new(s3.clone(), &bucket),
        handler: IngestService::for_s3(
            s3,
            std::sync::Arc::new(shoplake::contract::Registry::builtin()),
            settings,
        ),
        bucket,
    }
}

impl Env {
    async fn put(&self, key: &str, body: impl Into<Bytes>) {
        self.store.put(key, body.into()).await.unwrap();
    }

    async fn ingest(&self, keys: &[&str]) -> Vec<BatchSummary> {
        self.handler
            .handle(IngestRequest::from_s3(&s3_event(&self.bucket, keys)))
            .await
            .expect("ingest succeeds")
            .batches
    }

    async fn manifest(&self, s: &BatchSummary) -> Manifest {
        let key = format!("manifests/{}/{}.json", s.dataset, s.batch_id);
        serde_json::from_slice(
            &self
                .store
                .get(&key)
                .await
                .unwrap()
                .expect("manifest written"),
        )
        .unwrap()
    }

    async fn parquet(&self, key: &str) -> DataFrame {
        read_parquet_bytes(&self.store.get(key).await.unwrap().unwrap())
    }

    /// Silver keys with their ETags (content digests on S3).
    async fn silver(&self) -> BTreeMap<String, String> {
        self.store
            .list("processed/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.key, m.etag))
            .collect()
    }
}

fn generated(defect_rate: f64) -> (tempfile::TempDir, Vec<GeneratedFile>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenerateOptions {
        customers: 150,
        orders: 600,
        seed: 11,
        defect_rate,
        end_date: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
        days: 3,
    };
    let files = generate(dir.path(), &opts).unwrap();
    (dir, files)
}

async fn upload_generated(env: &Env, files: &[GeneratedFile], folder: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for f in files {
        let key = format!("raw/{}/{folder}/{}.csv", f.dataset, f.dataset);
        env.put(&key, std::fs::read(&f.path).unwrap()).await;
        keys.push(key);
    }
    keys
}

#[tokio::test]
async fn clean_exports_are_written_whole() {
    let summaries = ingest_generated_and_check("clean", 0.0).await;
    for s in &summaries {
        assert!(s.rows_written > 0 && s.rows_written == s.rows_read, "{s:?}");
        assert_eq!(
            (
                s.rows_rejected,
                s.duplicates_dropped,
                s.rejects_file.as_deref()
            ),
            (0, 0, None)
        );
    }
}

#[tokio::test]
async fn defective_exports_are_ingested_with_every_row_accounted_for() {
    let summaries = ingest_generated_and_check("defective", 0.12).await;
    assert!(
        summaries
            .iter()
            .all(|s| s.rows_rejected > 0 && s.duplicates_dropped > 0)
    );
}

/// Uploads generated exports, ingests them with one event, and checks every output against
/// the generator's ground truth.
async fn ingest_generated_and_check(test: &str, defect_rate: f64) -> Vec<BatchSummary> {
    let env = env(test, IngestSettings::default()).await;
    let (_dir, files) = generated(defect_rate);
    let keys = upload_generated(&env, &files, "2026-11-21 export").await;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let summaries = env.ingest(&key_refs).await;
    assert_eq!(summaries.len(), 3, "one summary per record of the event");

    for (summary, file) in summaries.iter().zip(&files) {
        let e = &file.expected;
        assert_eq!(summary.status, BatchStatus::Succeeded);
        assert_eq!(
            (
                summary.rows_read,
                summary.rows_written,
                summary.rows_rejected,
                summary.duplicates_dropped
            ),
            (e.rows, e.written, e.rejected, e.duplicates),
            "{}: counts must match the injected defects exactly",
            file.dataset
        );
        let manifest = env.manifest(summary).await;
        assert!(manifest.accounting_holds());
        assert_eq!(
            manifest.source.uri,
            format!(
                "s3://{}/{}",
                env.bucket,
                keys[files
                    .iter()
                    .position(|f| f.dataset == summary.dataset)
                    .unwrap()]
            )
        );

        // Silver: the written rows, once each, in the partitions their values say.
        let mut total = 0;
        let mut seen_keys = BTreeSet::new();
        for f in &manifest.files {
            assert_eq!(
                f.key,
                format!(
                    "processed/{}/{}/part-{}.parquet",
                    file.dataset, f.partition, summary.batch_id
                ),
                "one file per partition and batch"
            );
            let df = env.parquet(&f.key).await;
            assert_eq!(df.height() as u64, f.rows);
            total += df.height() as u64;
            let key_name = shoplake::contract::Registry::builtin()
                .get(&summary.dataset)
                .unwrap()
                .key_column()
                .name
                .clone();
            let key_col = df.column(key_name.as_str()).unwrap().str().unwrap().clone();
            for i in 0..key_col.len() {
                assert!(
                    seen_keys.insert(key_col.get(i).unwrap().to_owned()),
                    "key written twice"
                );
            }
            let batch_ids = df.column("_batch_id").unwrap().str().unwrap().clone();
            assert!(
                (0..batch_ids.len()).all(|i| batch_ids.get(i) == Some(summary.batch_id.as_str()))
            );
        }
        assert_eq!(total, e.written);

        // Quarantine: one CSV row per rejected row, with line and reason.
        let Some(rejects_key) = manifest.rejects_file.as_deref() else {
            assert_eq!(e.rejected, 0);
            continue;
        };
        let rejects = env.store.get(rejects_key).await.unwrap().unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(rejects.as_ref());
        assert_eq!(&reader.byte_headers().unwrap()[0], b"_source_line");
        let rows: Vec<csv::ByteRecord> = reader.byte_records().map(Result::unwrap).collect();
        assert_eq!(rows.len() as u64, e.rejected);
        for r in &rows {
            let line: u64 = std::str::from_utf8(&r[0]).unwrap().parse().unwrap();
            assert!(line >= 2);
            assert!(!r[1].is_empty(), "every quarantined row says why");
        }
    }
    summaries
}

#[tokio::test]
async fn orders_partitions_and_values_round_trip_exactly() {
    let env = env("values", IngestSettings::default()).await;
    let csv = "\u{feff}Order_ID , CUSTOMER_ID,order_ts,status,customer_region,currency,total_amount,item_count,updated_at,coupon\r\n\
        o-1,c-1,2026-11-21T23:30:00-05:00,PAID,na,usd,12.50,2,2026-11-21T23:31:00-05:00,X\r\n\
        o-2,c-2,\"2026-11-21 10:00:00\",delivered,EU,eur,0.10,1,2026-11-21T10:00:00.123456Z,\r\n\
        o-3,c-3,2026-11-21T10:00:00Z,shipped,EU,EUR,\"1,000.00\",1,2026-11-21T10:00:00Z,\r\n\
        o-2,c-2,2026-11-21T10:00:00Z,returned,EU,EUR,0.10,1,2026-11-22T08:00:00Z,\r\n";
    env.put("raw/orders/hand-made.csv", csv.as_bytes().to_vec())
        .await;
    let s = &env.ingest(&["raw/orders/hand-made.csv"]).await[0];
    assert_eq!(
        (
            s.rows_read,
            s.rows_written,
            s.rows_rejected,
            s.duplicates_dropped
        ),
        (4, 2, 1, 1)
    );
    assert_eq!(s.schema_drift.extra_columns, ["coupon"]);
    // 23:30 at UTC-5 is 04:30 the next UTC day.
    assert_eq!(
        s.partitions,
        [
            "order_date=2026-11-21/customer_region=EU",
            "order_date=2026-11-22/customer_region=NA"
        ]
    );

    let m = env.manifest(s).await;
    let na = m
        .files
        .iter()
        .find(|f| f.partition.ends_with("customer_region=NA"))
        .unwrap();
    let df = env.parquet(&na.key).await;
    assert!(
        df.column("customer_region").is_err() && df.column("order_date").is_err(),
        "partition columns live in the path"
    );
    let row = |name: &str| df.column(name).unwrap().get(0).unwrap().to_string();
    assert_eq!(row("status"), "\"paid\"");
    assert_eq!(row("currency"), "\"USD\"");
    assert_eq!(
        df.column("total_amount").unwrap().dtype(),
        &DataType::Decimal(18, 2)
    );
    let cents = df
        .column("total_amount")
        .unwrap()
        .decimal()
        .unwrap()
        .physical()
        .get(0);
    assert_eq!(cents, Some(1250), "12.50 stored exactly as 1250 hundredths");
    let ts = df
        .column("order_ts")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(0)
        .unwrap();
    assert_eq!(
        ts,
        shoplake::values::parse_timestamp("2026-11-22T04:30:00Z").unwrap()
    );
    assert_eq!(
        df.column("order_ts").unwrap().dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
    );

    let eu = m
        .files
        .iter()
        .find(|f| f.partition.ends_with("customer_region=EU"))
        .unwrap();
    let df = env.parquet(&eu.key).await;
    assert_eq!(df.height(), 1);
    let status = df.column("status").unwrap().get(0).unwrap().to_string();
    assert_eq!(status, "\"returned\"", "the later updated_at wins");

    let rejects = env
        .store
        .get(m.rejects_file.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(rejects.to_vec()).unwrap();
    assert!(
        text.contains("4,\"total_amount: \"\"1,000.00\"\" is not a decimal number"),
        "{text}"
    );
}

#[tokio::test]
async fn a_redelivered_event_or_a_forced_retry_never_duplicates_silver() {
    let env = env("idempotent", IngestSettings::default()).await;
    let (_dir, files) = generated(0.1);
    let keys = upload_generated(&env, &files[1..2], "d").await;
    let first = env.ingest(&[&keys[0]]).await;
    let silver = env.silver().await;
    assert!(!silver.is_empty());
    let manifests = env.store.list("manifests/").await.unwrap();

    let again = env.ingest(&[&keys[0]]).await;
    assert!(again[0].replayed && !first[0].replayed);
    assert_eq!(again[0].batch_id, first[0].batch_id);
    assert_eq!(env.silver().await, silver, "redelivery writes nothing");

    let forced = IngestService::for_s3(
        moto::server().s3(),
        std::sync::Arc::new(shoplake::contract::Registry::builtin()),
        IngestSettings {
            force: true,
            ..Default::default()
        },
    );
    let redo = forced
        .handle(IngestRequest::from_s3(&s3_event(&env.bucket, &[&keys[0]])))
        .await
        .unwrap();
    assert!(!redo.batches[0].replayed);
    assert_eq!(
        env.silver().await,
        silver,
        "a re-run rewrites the same files byte for byte"
    );
    assert_eq!(
        env.store.list("manifests/").await.unwrap().len(),
        manifests.len(),
        "no pending records left"
    );

    // A budget small enough to split the source into hash buckets writes the same files (one
    // per partition, a row group per bucket) with the same rows.
    let tight = IngestService::for_s3(
        moto::server().s3(),
        std::sync::Arc::new(shoplake::contract::Registry::builtin()),
        IngestSettings {
            force: true,
            memory_budget_bytes: 64 * 1024,
            ..Default::default()
        },
    );
    tight
        .handle(IngestRequest::from_s3(&s3_event(&env.bucket, &[&keys[0]])))
        .await
        .unwrap();
    let resplit = env.silver().await;
    assert_eq!(
        resplit.keys().collect::<Vec<_>>(),
        silver.keys().collect::<Vec<_>>()
    );
    let mut rows = 0;
    for key in resplit.keys() {
        rows += env.parquet(key).await.height() as u64;
    }
    assert_eq!(
        rows, first[0].rows_written,
        "still exactly the written rows"
    );

    // A new version of the object is a new batch. Its bytes differ (the last row dropped): the
    // same bytes again within the same second would have the same ETag and Last-Modified, which
    // nothing can tell from the first upload (the batch id is the same, and so are its rows).
    let mut body = std::fs::read(&files[1].path).unwrap();
    let end = body[..body.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap();
    body.truncate(end + 1);
    env.put(&keys[0], body).await;
    let newer = env.ingest(&[&keys[0]]).await;
    assert_ne!(newer[0].batch_id, first[0].batch_id);
}

#[tokio::test]
async fn a_file_missing_a_required_column_is_quarantined_whole() {
    let env = env("whole-file", IngestSettings::default()).await;
    let body =
        b"order_id,customer_id,order_ts,status,customer_region,currency,item_count,updated_at\n\
        o1,c1,2026-11-21T10:00:00Z,paid,EU,EUR,1,2026-11-21T10:00:00Z\n\
        o2,c1,2026-11-21T10:00:00Z,paid,EU,EUR,1,2026-11-21T10:00:00Z\n";
    env.put("raw/orders/no-amount.csv", body.to_vec()).await;
    let s = &env.ingest(&["raw/orders/no-amount.csv"]).await[0];
    assert_eq!(s.status, BatchStatus::Rejected);
    assert_eq!(
        s.error.as_deref(),
        Some("missing required column(s): total_amount")
    );
    assert_eq!((s.rows_read, s.rows_rejected, s.rows_written), (2, 2, 0));
    let quarantined = s.quarantined_source.as_deref().unwrap();
    assert_eq!(
        quarantined,
        format!("quarantine/orders/{}/no-amount.csv", s.batch_id)
    );
    assert_eq!(
        env.store.get(quarantined).await.unwrap().unwrap().as_ref(),
        body,
        "quarantined as is"
    );
    assert!(env.silver().await.is_empty());
}

#[tokio::test]
async fn empty_files_gzip_and_encoded_keys() {
    let env = env("edge-files", IngestSettings::default()).await;
    env.put(
        "raw/customers/header only.csv",
        b"customer_id,email,customer_region,signup_date,updated_at\r\n".to_vec(),
    )
    .await;
    env.put("raw/customers/zero bytes.csv", Vec::new()).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        b"payment_id,order_id,payment_ts,method,status,amount,currency,updated_at\n\
          p1,o1,2026-11-21T10:00:00Z,card,succeeded,5.00,usd,2026-11-21T10:00:00Z\n",
    )
    .unwrap();
    let unicode_key = "raw/payments/daily export café+日本 2026-11-21.csv.gz";
    env.put(unicode_key, gz.finish().unwrap()).await;

    let got = env
        .ingest(&[
            "raw/customers/header only.csv",
            "raw/customers/zero bytes.csv",
            unicode_key,
        ])
        .await;
    assert_eq!(
        (got[0].status, got[0].rows_read, got[0].files),
        (BatchStatus::Succeeded, 0, 0)
    );
    assert_eq!(got[1].status, BatchStatus::Rejected);
    assert!(got[1].error.as_deref().unwrap().contains("empty"));
    assert_eq!(
        (got[2].rows_written, got[2].partitions.clone()),
        (1, vec!["payment_date=2026-11-21".to_owned()])
    );
    assert!(got[2].source.ends_with("café+日本 2026-11-21.csv.gz"));
}

#[tokio::test]
async fn unknown_prefixes_and_missing_objects_are_clear_errors() {
    let env = env("bad-events", IngestSettings::default()).await;
    env.put("raw/orders/good.csv", b"order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n".to_vec()).await;
    let event = s3_event(
        &env.bucket,
        &[
            "incoming/orders.csv",
            "raw/refunds/r.csv",
            "raw/orders/deleted.csv",
            "raw/orders/good.csv",
        ],
    );
    let err = env
        .handler
        .handle(IngestRequest::from_s3(&event))
        .await
        .unwrap_err();
    assert_eq!((err.attempted, err.failures.len()), (4, 3));
    assert!(!err.is_retryable(), "input problems are not retried");
    let text = err.to_string();
    assert!(
        text.contains("incoming/orders.csv: not a bronze key"),
        "{text}"
    );
    assert!(
        text.contains("no data contract for dataset `refunds`"),
        "{text}"
    );
    assert!(
        text.contains("raw/orders/deleted.csv does not exist"),
        "{text}"
    );
    // The good record of the same event was still ingested.
    assert_eq!(env.store.list("manifests/orders/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_same_object_delivered_twice_at_once_is_ingested_once() {
    let env = env("same-object-at-once", IngestSettings::default()).await;
    let mut csv = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for i in 0..200 {
        let region = ["EU", "NA", "APAC"][(i / 3) % 3];
        csv += &format!(
            "O{i},C{i},2026-11-2{}T10:00:00Z,paid,{region},EUR,{i}.25,1,2026-11-21T10:00:00Z\n",
            i % 3
        );
    }
    env.put("raw/orders/once.csv", csv.into_bytes()).await;
    let request = || IngestRequest::from_s3(&s3_event(&env.bucket, &["raw/orders/once.csv"]));
    // Two deliveries of one event, interleaved at every await: the claim lets one in.
    let (a, b) = tokio::join!(env.handler.handle(request()), env.handler.handle(request()));
    let (a, b) = (a.unwrap().batches.remove(0), b.unwrap().batches.remove(0));
    assert_eq!(a.batch_id, b.batch_id);
    assert_eq!(
        u8::from(!a.replayed) + u8::from(!b.replayed),
        1,
        "written once, replayed once"
    );
    assert_eq!(env.store.list("manifests/orders/").await.unwrap().len(), 1);
    assert!(env.store.list("claims/").await.unwrap().is_empty());
    let files = env.store.list("processed/orders/").await.unwrap();
    assert_eq!(files.len(), 9, "3 days x 3 regions, one file each");
    let mut rows = 0;
    for f in &files {
        rows += env.parquet(&f.key).await.height();
    }
    assert_eq!(rows, 200);
}
