//! `lake` on a local directory: the CLI contract, bounded-memory equivalence, and that DuckDB
//! and pyarrow read the lake as it is.

use std::path::Path;

use polars::prelude::DataType;
use serde_json::Value;

use crate::support::{lake, python_report, read_parquet};

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn generate(dir: &Path, orders: &str, defects: &str) -> Vec<Value> {
    let out = dir.to_str().unwrap();
    let (ok, stdout, stderr) = lake(&[
        "generate",
        "--json",
        "--out",
        out,
        "--customers",
        "300",
        "--orders",
        orders,
        "--seed",
        "5",
        "--defect-rate",
        defects,
        "--end-date",
        "2026-11-21",
        "--days",
        "4",
    ]);
    assert!(ok, "{stderr}");
    json_lines(&stdout)
}

#[test]
fn the_cli_ingests_prints_one_json_object_per_file_and_fails_on_rejected_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let lake_dir = dir.path().join("lake");
    let expected = generate(&input, "800", "0.1");
    let lake_arg = lake_dir.to_str().unwrap();

    let files: Vec<String> = ["customers", "orders", "payments"]
        .iter()
        .map(|d| input.join(format!("{d}.csv")).display().to_string())
        .collect();
    for (i, dataset) in ["customers", "orders", "payments"].iter().enumerate() {
        let (ok, stdout, stderr) = lake(&[
            "ingest",
            "--json",
            "--lake",
            lake_arg,
            "--dataset",
            dataset,
            &files[i],
        ]);
        assert!(ok, "{stderr}");
        let out = &json_lines(&stdout)[0];
        for field in [
            "source",
            "dataset",
            "batch_id",
            "rows_read",
            "rows_written",
            "rows_rejected",
            "duplicates_dropped",
            "partitions",
        ] {
            assert!(out.get(field).is_some(), "missing {field} in {out}");
        }
        let e = &expected[i]["expected"];
        // Reasons are counted without the values they quote (alerts list them).
        let manifest_key = format!(
            "manifests/{dataset}/{}.json",
            out["batch_id"].as_str().unwrap()
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(lake_dir.join(&manifest_key)).unwrap()).unwrap();
        let reasons = manifest["reject_reasons"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let counted: u64 = reasons.values().map(|n| n.as_u64().unwrap()).sum();
        assert!(
            counted >= out["rows_rejected"].as_u64().unwrap(),
            "{dataset}: {reasons:?}"
        );
        assert!(reasons.keys().all(|r| !r.contains('"')), "{reasons:?}");
        assert_eq!(out["rows_read"], e["rows"]);
        assert_eq!(out["rows_written"], e["written"]);
        assert_eq!(out["rows_rejected"], e["rejected"]);
        assert_eq!(out["duplicates_dropped"], e["duplicates"]);
    }

    // Ingesting the same file again replays; nothing new lands in silver.
    let before = walk(&lake_dir.join("processed"));
    let (ok, stdout, _) = lake(&[
        "ingest",
        "--json",
        "--lake",
        lake_arg,
        "--dataset",
        "orders",
        &files[1],
    ]);
    assert!(ok);
    assert_eq!(json_lines(&stdout)[0]["replayed"], Value::Bool(true));
    assert_eq!(walk(&lake_dir.join("processed")), before);

    // A file missing required columns: non-zero exit, the reason on stderr, the file quarantined.
    let broken = dir.path().join("orders-broken.csv");
    std::fs::write(&broken, "order_id,status\no1,paid\n").unwrap();
    let (ok, stdout, stderr) = lake(&[
        "ingest",
        "--json",
        "--lake",
        lake_arg,
        "--dataset",
        "orders",
        broken.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("missing required column(s): customer_id, order_ts"),
        "{stderr}"
    );
    assert_eq!(json_lines(&stdout)[0]["status"], "rejected");
    assert!(
        walk(&lake_dir.join("quarantine/orders"))
            .iter()
            .any(|p| p.ends_with("orders-broken.csv"))
    );

    let (ok, _, stderr) = lake(&[
        "ingest",
        "--json",
        "--lake",
        lake_arg,
        "--dataset",
        "refunds",
        &files[1],
    ]);
    assert!(
        !ok && stderr.contains("unknown dataset `refunds`"),
        "{stderr}"
    );

    let (ok, stdout, _) = lake(&["show", "--lake", lake_arg]);
    assert!(ok && stdout.contains("processed/orders/") && stdout.contains("Quarantined rows"));
    assert!(
        !stdout.contains("@example.com"),
        "the overview never prints personal data"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// All silver rows of a dataset, sorted, as text (partition values included).
fn silver_rows(lake_dir: &Path, dataset: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for file in walk(&lake_dir.join("processed").join(dataset)) {
        let df =
            read_parquet(Path::new(&file)).drop_many(["_ingested_at", "_source_file", "_batch_id"]);
        let partition = file
            .split('/')
            .filter(|p| p.contains('='))
            .collect::<Vec<_>>()
            .join("/");
        for i in 0..df.height() {
            // Datetimes as raw microseconds: formatting a zoned datetime needs polars' tz database.
            let row: Vec<String> = df
                .columns()
                .iter()
                .map(|c| match c.dtype() {
                    DataType::Datetime(..) => c
                        .cast(&DataType::Int64)
                        .unwrap()
                        .get(i)
                        .unwrap()
                        .to_string(),
                    _ => c.get(i).unwrap().to_string(),
                })
                .collect();
            rows.push(format!("{partition} {}", row.join("|")));
        }
    }
    rows.sort();
    rows
}

#[tokio::test]
async fn a_tiny_memory_budget_spills_but_writes_exactly_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "4000", "0.1");
    let file = dir.path().join("orders.csv");
    let roomy = dir.path().join("roomy");
    let tight = dir.path().join("tight");
    let settings = |budget| shoplake::ingest::IngestSettings {
        memory_budget_bytes: budget,
        ..Default::default()
    };

    let a = ingest_into(&roomy, &file, settings(512 << 20)).await;
    let b = ingest_into(&tight, &file, settings(96 << 10)).await;
    let (a, b) = (&a, &b);
    let counts = |m: &shoplake::manifest::Manifest| {
        (
            m.rows_read,
            m.rows_written,
            m.rows_rejected,
            m.duplicates_dropped,
        )
    };
    assert_eq!(counts(&a.manifest), counts(&b.manifest));
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        shoplake::ingest::plan_buckets(size, 96 << 10) > 4,
        "the tight budget splits the file into buckets"
    );
    assert_eq!(
        a.manifest
            .files
            .iter()
            .map(|f| &f.partition)
            .collect::<Vec<_>>(),
        b.manifest
            .files
            .iter()
            .map(|f| &f.partition)
            .collect::<Vec<_>>(),
        "one file per partition, however many buckets"
    );
    assert_eq!(silver_rows(&roomy, "orders"), silver_rows(&tight, "orders"));
}

#[test]
fn duckdb_and_pyarrow_read_the_lake_with_hive_partitioning_and_no_options() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    generate(&input, "500", "0.05");
    let lake_dir = dir.path().join("lake");
    for dataset in ["customers", "orders", "payments"] {
        let file = input.join(format!("{dataset}.csv"));
        let (ok, _, stderr) = lake(&[
            "ingest",
            "--json",
            "--lake",
            lake_dir.to_str().unwrap(),
            "--dataset",
            dataset,
            file.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
    }
    let report = python_report("read_lake.py", &lake_dir);
    let written: u64 = walk(&lake_dir.join("manifests/orders"))
        .iter()
        .filter(|p| p.ends_with(".json"))
        .map(|p| {
            serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap()["rows_written"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(report["duckdb"]["orders"]["rows"].as_u64(), Some(written));
    assert_eq!(report["pyarrow"]["orders"]["rows"].as_u64(), Some(written));
    assert_eq!(report["duckdb"]["orders"]["total_amount"], "DECIMAL(18,2)");
    assert_eq!(
        report["duckdb"]["orders"]["order_ts"],
        "TIMESTAMP WITH TIME ZONE"
    );
    assert_eq!(report["duckdb"]["orders"]["order_date"], "DATE");
    assert_eq!(
        report["pyarrow"]["orders"]["total_amount"],
        "decimal128(18, 2)"
    );
    assert_eq!(
        report["pyarrow"]["customers"]["regions"],
        serde_json::json!(["APAC", "EU", "LATAM", "MEA", "NA"])
    );
}

#[test]
fn lake_quality_reports_each_batch_and_an_override_makes_a_failed_batch_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake_arg = lake_dir.to_str().unwrap();
    let orders = dir.path().join("orders.csv");
    let mut csv = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for i in 0..20 {
        let status = if i < 4 { "lost" } else { "paid" };
        csv +=
            &format!("O{i},C1,2026-11-21T09:00:00Z,{status},EU,EUR,1.00,1,2026-11-21T09:00:00Z\n");
    }
    std::fs::write(&orders, csv).unwrap();
    let (ok, stdout, stderr) = lake(&[
        "ingest",
        "--json",
        "--lake",
        lake_arg,
        "--dataset",
        "orders",
        orders.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let batch = json_lines(&stdout)[0]["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A failed batch that will not be loaded: the documented exit code 3 (1 is an error).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["quality", "--lake", lake_arg])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stdout.starts_with(&format!("FAIL orders    {batch}  ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Subject: [FAIL] orders") && stdout.contains("20.0%"),
        "the alert email is shown: {stdout}"
    );
    assert!(
        walk(&lake_dir.join("outbox")).len() == 1,
        "the email went to the outbox"
    );
    // Checked batches are not checked again unless asked for: nothing failed in this run.
    let (ok, stdout, _) = lake(&["quality", "--lake", lake_arg]);
    assert!(stdout.is_empty() && ok, "{stdout}");

    let (ok, _, stderr) = lake(&["quality", "--lake", lake_arg, "--override"]);
    assert!(
        !ok && stderr.contains("--batch"),
        "override needs a batch, a name and a reason: {stderr}"
    );
    let (ok, stdout, stderr) = lake(&[
        "quality",
        "--lake",
        lake_arg,
        "--batch",
        &batch,
        "--override",
        "--by",
        "dana",
        "--reason",
        "statuses fixed upstream",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("overridden by dana; loadable: true"),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(lake_dir.join(format!("quality/orders/{batch}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["loadable"], true);
    assert_eq!(report["override"]["by"], "dana");
    assert_eq!(report["override"]["reason"], "statuses fixed upstream");

    // Re-checking keeps the human decision.
    let (ok, stdout, _) = lake(&["quality", "--lake", lake_arg, "--batch", &batch, "--json"]);
    assert!(ok);
    assert_eq!(json_lines(&stdout)[0]["override"]["by"], "dana");
}

/// Ingests `file` as orders into the lake at `lake` through the ingest stage, as `lake ingest`
/// does (copied under raw/ first).
async fn ingest_into(
    lake: &Path,
    file: &Path,
    settings: shoplake::ingest::IngestSettings,
) -> shoplake::ingest::IngestOutcome {
    use shoplake::stages::ingest::{IngestRequest, IngestService};
    use std::sync::Arc;
    let raw = lake.join("raw/orders");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::copy(file, raw.join("orders.csv")).unwrap();
    let store: Arc<dyn shoplake::storage::ObjectStore> =
        Arc::new(shoplake::storage::LocalStore::new(lake).unwrap());
    let service = IngestService::new(
        Arc::new(move |_| store.clone()),
        Arc::new(shoplake::contract::Registry::builtin()),
        settings,
    );
    service
        .ingest(IngestRequest::object("lake", "raw/orders/orders.csv"))
        .await
        .unwrap()
        .remove(0)
}

/// Memory for a `.gz` source is planned from the size its trailer declares. Several members
/// (`cat a.gz b.gz`) declare only the last one's size: reading past it re-plans and processes
/// the file again, and every row is still accounted for.
#[test]
fn a_gzip_source_holding_more_than_its_trailer_declares_is_processed_whole() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let header = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";
    let row = |i: usize| {
        format!(
            "o{i:07},c{:05},2026-11-20T10:{:02}:00Z,paid,EU,EUR,{}.{:02},2,2026-11-20T11:00:00Z\n",
            i * 7919 % 50_000,
            i % 60,
            i * 37 % 900,
            i % 100
        )
    };
    let member = |text: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    // The first member: distinct rows (compress a few times). The last: one row again and
    // again, which compresses so well that its size alone looks like a plausible whole.
    let first: String = std::iter::once(header.to_owned())
        .chain((0..4_000).map(row))
        .collect();
    let last = row(4_000).repeat(6_000);
    let mut bytes = member(&first);
    bytes.extend(member(&last));
    let declared = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
    assert_eq!(declared, last.len());
    assert!(
        declared >= 2 * bytes.len() && declared < first.len() + last.len(),
        "the trailer must look plausible yet declare less than the file holds"
    );
    let path = dir.path().join("orders-two-members.csv.gz");
    std::fs::write(&path, &bytes).unwrap();

    let lake_dir = dir.path().join("lake");
    let (ok, stdout, stderr) = lake(&[
        "ingest",
        "--json",
        "--lake",
        lake_dir.to_str().unwrap(),
        "--dataset",
        "orders",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let out = &json_lines(&stdout)[0];
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["rows_read"], 10_000);
    assert_eq!(out["rows_written"], 4_001);
    assert_eq!(out["duplicates_dropped"], 5_999);
}

/// `lake compact`: a partition that three batches wrote to becomes one file once they are in the
/// warehouse, with every row still there; a second run finds nothing to do.
/// `lake ingest` of one file into lake `l`; its batch id.
fn ingest_one(l: &str, dataset: &str, file: &Path) -> String {
    let (ok, stdout, stderr) = lake(&[
        "ingest",
        "--json",
        "--lake",
        l,
        "--dataset",
        dataset,
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    json_lines(&stdout)[0]["batch_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `lake compact` takes only files young enough at the run's time, `--at` or the clock.
#[test]
fn lake_compact_rewrites_a_partition_of_loaded_batches_into_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let l = lake_dir.to_str().unwrap();
    let header = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";
    for b in 0..3 {
        let file = dir.path().join(format!("orders-{b}.csv"));
        let mut csv = header.to_owned();
        for i in 0..10 {
            csv += &format!(
                "O{b}{i},C1,2026-11-21T09:00:00Z,paid,EU,EUR,1.00,1,2026-11-21T09:0{b}:00Z\n"
            );
        }
        std::fs::write(&file, csv).unwrap();
        let batch = ingest_one(l, "orders", &file);
        // As the load stage marks a batch that reached the warehouse.
        let marker = lake_dir.join(format!("runs/loaded/orders/{batch}"));
        std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
        std::fs::write(marker, "").unwrap();
    }
    let partition = lake_dir.join("processed/orders/order_date=2026-11-21/customer_region=EU");
    assert_eq!(walk(&partition).len(), 3);

    let compact = [
        "compact",
        "--lake",
        l,
        "--dataset",
        "orders",
        "--min-files",
        "2",
        "--json",
    ];
    // Run as of 60 days on (`--at`, as bench-history replays its nights), the files are too old
    // to take: nothing is compacted.
    let later = (chrono::Utc::now() + chrono::TimeDelta::days(60)).to_rfc3339();
    let (ok, stdout, stderr) = lake(&[&compact[..], &["--at", &later]].concat());
    assert!(ok, "{stderr}");
    assert_eq!(
        json_lines(&stdout)[0]["report"]["partitions"],
        0,
        "{stdout}"
    );
    assert_eq!(walk(&partition).len(), 3);

    let (ok, stdout, stderr) = lake(&compact);
    assert!(ok, "{stderr}");
    let report = &json_lines(&stdout)[0]["report"];
    assert_eq!(
        (
            &report["partitions"],
            &report["files_in"],
            &report["rows_in"],
            &report["rows_out"]
        ),
        (
            &Value::from(1),
            &Value::from(3),
            &Value::from(30),
            &Value::from(30)
        ),
        "{report}"
    );
    let files = walk(&partition);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(read_parquet(Path::new(&files[0])).height(), 30);

    let (ok, stdout, _) = lake(&compact);
    assert!(ok);
    assert_eq!(json_lines(&stdout)[0]["report"]["partitions"], 0);
}

/// Customers ingests leave only their own keys, one file per batch under
/// `index/customers/delta/`; `lake compact` merges them into the key index shards and says so,
/// and an orders check afterwards still finds every customer and names the missing one.
#[test]
fn lake_compact_merges_the_waiting_customer_keys_into_the_key_index() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let l = lake_dir.to_str().unwrap();
    let ingest = |dataset: &str, name: &str, csv: String| {
        let file = dir.path().join(name);
        std::fs::write(&file, csv).unwrap();
        ingest_one(l, dataset, &file)
    };
    for b in 0..2 {
        let mut csv = String::from(
            "customer_id,email,first_name,last_name,customer_region,country,signup_date,updated_at\n",
        );
        for i in 0..5 {
            csv +=
                &format!("C{b}{i},c{b}{i}@example.com,A,B,EU,DE,2026-11-20,2026-11-21T09:00:00Z\n");
        }
        ingest("customers", &format!("customers-{b}.csv"), csv);
    }
    let deltas = lake_dir.join("index/customers/delta");
    assert_eq!(walk(&deltas).len(), 2, "one waiting file per batch");

    let (ok, stdout, stderr) = lake(&["compact", "--lake", l, "--dataset", "customers", "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        json_lines(&stdout)[0]["index_merge"]["deltas"],
        Value::from(2),
        "{stdout}"
    );
    assert!(walk(&deltas).is_empty(), "merged files are removed");
    let shards = walk(&lake_dir.join("index/customers"));
    assert!(
        !shards.is_empty() && shards.iter().all(|s| s.ends_with(".bin")),
        "{shards:?}"
    );

    let header = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";
    let csv = format!(
        "{header}O1,C00,2026-11-21T09:00:00Z,paid,EU,EUR,1.00,1,2026-11-21T09:00:00Z\n\
         O2,C14,2026-11-21T09:00:00Z,paid,EU,EUR,1.00,1,2026-11-21T09:00:00Z\n\
         O3,CGHOST,2026-11-21T09:00:00Z,paid,EU,EUR,1.00,1,2026-11-21T09:00:00Z\n\
         O4,CGHOST,2026-11-21T09:00:00Z,paid,EU,EUR,1.00,1,2026-11-21T09:00:00Z\n"
    );
    let batch = ingest("orders", "orders.csv", csv);
    let (_, stdout, stderr) = lake(&["quality", "--json", "--lake", l, "--batch", &batch]);
    let report = &json_lines(&stdout)[0];
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "referential_integrity")
        .unwrap_or_else(|| panic!("no referential check: {stdout} {stderr}"));
    assert_eq!(check["observed"], Value::from(2.0 / 4.0), "{check}");
    assert_eq!(check["breakdown"][0]["what"], "CGHOST", "{check}");
    assert_eq!(
        check["breakdown"][0]["count"], 2,
        "both orphan rows: {check}"
    );
}
