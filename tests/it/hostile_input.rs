//! Hostile shapes under a 64 MiB budget: one endless record (plain and gzip), a gzip bomb, and
//! one row repeated hundreds of thousands of times. Each ends with a clear outcome (rejected
//! with a reason, or ingested with every copy counted) and a peak RSS within budget + 64 MiB.
//! The inputs are smaller than the 2 GB originals but just as hostile: the guards trip on the
//! shape (record length, expansion, repetition), not on the size.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::support::python_json;

const BUDGET_MIB: f64 = 64.0;
const ALLOWANCE_MIB: f64 = 64.0;

/// `lake ingest` under the budget: (exit code, peak RSS in MiB, stdout summary if any).
fn ingest(lake_dir: &Path, file: &Path) -> (i64, f64, Option<Value>) {
    let out = lake_dir.with_extension("out");
    let script = format!(
        "exec {} ingest --json --lake {} --dataset orders --memory-budget-mb {} {} > {}",
        env!("CARGO_BIN_EXE_lake"),
        lake_dir.display(),
        BUDGET_MIB,
        file.display(),
        out.display()
    );
    let args: Vec<&OsStr> = vec!["sh".as_ref(), "-c".as_ref(), script.as_ref()];
    let measured = python_json("peak_rss.py", &args);
    eprintln!(
        "{}: exit {}, peak RSS {:.1} MiB",
        file.display(),
        measured["exit_code"],
        measured["peak_rss_mib"].as_f64().unwrap_or_default()
    );
    let summary = std::fs::read_to_string(&out)
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
        .and_then(|l| serde_json::from_str(&l).ok());
    (
        measured["exit_code"].as_i64().unwrap(),
        measured["peak_rss_mib"].as_f64().unwrap(),
        summary,
    )
}

const HEADER: &[u8] =
    b"order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";

fn write_repeated(path: &Path, gzip: bool, head: &[u8], unit: &[u8], times: usize) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut out: Box<dyn Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::best(),
        ))
    } else {
        Box::new(file)
    };
    out.write_all(head).unwrap();
    for _ in 0..times {
        out.write_all(unit).unwrap();
    }
    out.flush().unwrap();
}

fn rejected_with(summary: &Option<Value>, needle: &str) {
    let s = summary.as_ref().expect("a summary line");
    assert_eq!(s["status"], "rejected", "{s}");
    let reason = s["error"].as_str().unwrap();
    assert!(reason.contains(needle), "{reason}");
}

#[test]
fn hostile_exports_end_clearly_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 1 << 20];

    // One endless record: a header, then 64 MiB of NUL bytes and no line end.
    let endless = dir.path().join("endless.csv");
    write_repeated(&endless, false, HEADER, &zeros, 64);
    let (code, rss, summary) = ingest(&dir.path().join("l1"), &endless);
    assert_ne!(code, 0, "a rejected file fails the command");
    rejected_with(&summary, "longer than 1024 KiB");
    assert!(
        rss <= BUDGET_MIB + ALLOWANCE_MIB,
        "endless record: {rss:.0} MiB"
    );

    // The same as a gzip bomb: 512 MiB of zeros in well under a MiB.
    let bomb = dir.path().join("bomb.csv.gz");
    write_repeated(&bomb, true, HEADER, &zeros, 512);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let (code, rss, summary) = ingest(&dir.path().join("l2"), &bomb);
    assert_ne!(code, 0);
    let reason = summary.as_ref().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("longer than") || reason.contains("decompresses to more than"),
        "{reason}"
    );
    assert!(rss <= BUDGET_MIB + ALLOWANCE_MIB, "gzip bomb: {rss:.0} MiB");

    // Valid rows that expand past any real export's ratio: refused as a bomb, not ingested.
    let row = b"O1,C1,2026-11-21T10:00:00Z,paid,EU,EUR,12.50,2,2026-11-21T10:00:00Z\n";
    let copies_gz = dir.path().join("copies.csv.gz");
    write_repeated(&copies_gz, true, HEADER, row, 2_000_000);
    let (code, rss, summary) = ingest(&dir.path().join("l3"), &copies_gz);
    assert_ne!(code, 0);
    rejected_with(&summary, "decompresses to more than");
    assert!(
        rss <= BUDGET_MIB + ALLOWANCE_MIB,
        "repetitive gzip: {rss:.0} MiB"
    );

    // The same copies as plain CSV (about 1.7 times the budget, 2.5 times in columns): ingested, one row written,
    // every other copy counted as a duplicate, memory bounded by dropping them as they come.
    let copies = dir.path().join("copies.csv");
    write_repeated(&copies, false, HEADER, row, 1_500_000);
    let (code, rss, summary) = ingest(&dir.path().join("l4"), &copies);
    assert_eq!(code, 0);
    let s = summary.unwrap();
    assert_eq!(
        (
            s["rows_read"].as_u64(),
            s["rows_written"].as_u64(),
            s["duplicates_dropped"].as_u64()
        ),
        (Some(1_500_000), Some(1), Some(1_499_999)),
        "{s}"
    );
    assert!(
        rss <= BUDGET_MIB + ALLOWANCE_MIB,
        "one row 1.5 M times: {rss:.0} MiB"
    );
}

#[test]
fn a_fifo_is_refused_instead_of_read_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("orders.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (ok, _, stderr) = crate::support::lake(&[
        "ingest",
        "--json",
        "--lake",
        dir.path().join("lake").to_str().unwrap(),
        "--dataset",
        "orders",
        fifo.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("not a regular file"), "{stderr}");
}
