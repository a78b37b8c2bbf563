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
    digest_of("orders", &wide_export(), budget)
}

/// The number of files ingesting `csv` into `dataset` writes under `budget`, and a digest of
/// their names and bytes.
fn digest_of(dataset: &str, csv: &str, budget: usize) -> (usize, String) {
    let registry = Registry::builtin();
    let work = tempfile::tempdir().unwrap();
    let job = FileJob {
        contract: registry.get(dataset).unwrap(),
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

/// Customers with empty optional fields, an enum in several spellings and newer versions of
/// earlier keys: the rows that exercise nulls and enum values through validation, spill (at the
/// tight budget) and dedup.
fn customers_with_gaps() -> String {
    let mut csv = String::from(
        "customer_id,email,first_name,last_name,customer_region,country,signup_date,updated_at\n",
    );
    let regions = ["EU", "na", "Apac", "LATAM", "mea"];
    for i in 0..4000u32 {
        let first = if i % 3 == 0 {
            String::new()
        } else {
            format!("F{i}")
        };
        let last = if i % 7 == 0 {
            String::new()
        } else {
            format!("L{}", i % 50)
        };
        let country = ["", "DE", "US", "JP", "BR"][(i % 5) as usize];
        // Every 9th row a newer version of an earlier customer.
        let id = if i % 9 == 8 { i / 2 } else { i };
        csv += &format!(
            "C{id:06},c{id}@example.com,{first},{last},{},{country},2026-0{}-1{},2026-11-{:02}T0{}:00:00Z\n",
            regions[(i % 5) as usize],
            1 + i % 9,
            i % 10,
            1 + i % 28,
            i % 10
        );
    }
    csv
}

/// Recorded on commit 6315aa7, before enum values and validity were held in a new form: at a
/// budget that keeps one bucket, and at one that spills many.
const CUSTOMERS_EXPECTED: [&str; 2] = [
    "bdadc64dda732d640bceb2c23e34da15229f80080496dcbaa794a1ffa3806796",
    "09e7272b20f8049df3290235614de39be9804b85529566f5d36678bf3c007f0b",
];

#[test]
fn nulls_and_enums_write_the_same_bytes_as_before_their_in_memory_form_changed() {
    let csv = customers_with_gaps();
    for (budget, expected) in [
        (512 << 20, CUSTOMERS_EXPECTED[0]),
        (256 << 10, CUSTOMERS_EXPECTED[1]),
    ] {
        let (files, digest) = digest_of("customers", &csv, budget);
        assert_eq!(files, 5, "one file per region");
        eprintln!("budget {budget} digest {digest}");
        assert_eq!(digest, expected, "budget {budget}");
    }
}
