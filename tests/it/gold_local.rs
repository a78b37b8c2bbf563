//! `lake run` end to end on generated exports, and the gold table checked against an
//! independent DuckDB SQL implementation of the KPI definitions.

use std::process::Command;

use serde_json::Value;

fn lake(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(args)
        .output()
        .expect("run lake");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn lake_run_builds_gold_that_matches_an_independent_sql_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let lake_dir = dir.path().join("lake");
    let (ok, _, stderr) = lake(&[
        "generate",
        "--out",
        input.to_str().unwrap(),
        "--customers",
        "200",
        "--orders",
        "1500",
        "--seed",
        "9",
        "--defect-rate",
        "0.05",
        "--end-date",
        "2026-11-21",
        "--days",
        "40",
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = lake(&[
        "run",
        "--lake",
        lake_dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    for needle in [
        "ingest  orders",
        "quality payments",
        "gold/daily_kpis:",
        "month(s) 2026-10, 2026-11",
        "revenue",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    // One object per month: a month is replaced by one PUT.
    for month in ["2026-10", "2026-11"] {
        let files = std::fs::read_dir(lake_dir.join(format!("gold/daily_kpis/month={month}")))
            .unwrap()
            .count();
        assert_eq!(files, 1, "{month}");
    }

    let python = std::env::var("MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/kpi_crosscheck.py"
        ))
        .arg(&lake_dir)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["gold_rows"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(report["gold_rows"], report["expected_rows"], "{report}");
    assert_eq!(report["order_mismatches"], 0, "{report}");
    assert_eq!(report["payment_mismatches"], 0, "{report}");
    let types = &report["types"];
    assert_eq!(types["revenue"], "DECIMAL(18,2)");
    assert_eq!(types["avg_order_value"], "DECIMAL(18,2)");
    assert_eq!(types["orders_placed"], "BIGINT");
    assert_eq!(types["retention_rate"], "DOUBLE");
    assert_eq!(types["kpi_date"], "DATE");
}
