//! Silver files are a function of their input: a batch spanning many partitions (60 days x 5
//! regions) gives exactly these bytes, however the writer buffers its output. The digest was
//! recorded before output buffering was added; a change to it means a file changed.

use sha2::{Digest, Sha256};
use shoplake::contract::Registry;
use shoplake::ingest::{FileJob, FileOutcome, process_file};

fn wide_export() -> String {
    let mut csv = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    let regions = ["EU", "NA", "APAC", "LATAM", "MEA"];
    for i in 0..6000u32 {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap()
            + chrono::Duration::days(i64::from(i % 60));
        let status = ["paid", "shipped", "cancelled", "delivered"][(i % 4) as usize];
        csv += &format!(
            "O{i:06},C{:05},{day}T{:02}:{:02}:00Z,{status},{},EUR,{}.{:02},{},{day}T23:00:00Z\n",
            i % 977,
            i % 24,
            i % 60,
            regions[(i / 60 % 5) as usize],
            i % 500,
            i % 100,
            1 + i % 7
        );
    }
    // Updates of earlier orders: dedup runs too.
    for i in 0..300u32 {
        csv += &format!(
            "O{:06},C00001,2026-09-01T10:00:00Z,delivered,EU,EUR,1.00,1,2026-12-01T00:00:00Z\n",
            i * 7
        );
    }
    csv
}

fn silver_digest(budget: usize) -> (usize, String) {
    let registry = Registry::builtin();
    let work = tempfile::tempdir().unwrap();
    let csv = wide_export();
    let job = FileJob {
        contract: registry.get("orders").unwrap(),
        batch_id: "20261201T000000Z-000000000000",
        source_uri: "s3://lake/raw/orders/wide.csv",
        ingested_at_micros: 1_795_000_000_000_000,
        input_bytes: csv.len() as u64,
        declared_csv_bytes: None,
        memory_budget_bytes: budget,
        work_dir: work.path(),
        limits: Default::default(),
    };
    let FileOutcome::Processed(p) = process_file(csv.as_bytes(), &job).unwrap() else {
        panic!("rejected")
    };
    let mut files: Vec<(String, Vec<u8>)> = p
        .files
        .iter()
        .map(|f| (f.file.key.clone(), std::fs::read(&f.path).unwrap()))
        .collect();
    files.sort();
    let mut all = Sha256::new();
    for (key, bytes) in &files {
        all.update(key.as_bytes());
        all.update(Sha256::digest(bytes));
    }
    let hex = all.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (files.len(), hex)
}

#[test]
fn a_wide_batch_writes_the_same_bytes_as_before_buffering() {
    let (files, digest) = silver_digest(512 << 20);
    assert_eq!(files, 300, "60 days x 5 regions");
    eprintln!("digest {digest}");
    assert_eq!(digest, EXPECTED);
    // Spilled into many buckets (a row group each), the files are the same ones: a re-ingest
    // after a crash, under any budget, rewrites the same names with the same rows.
    let (tight_files, _) = silver_digest(256 << 10);
    assert_eq!(tight_files, files);
}

const EXPECTED: &str = "5b607a9865cc4e2d13b7c5f6a494135e8ed722f08dabe8bbc675ef89243f35a7";
