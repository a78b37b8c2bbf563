//! The KPI report against gold: `lake run` writes gold and the stage's pages, `lake report`
//! writes a page for a range, and every number in their data tables equals gold as DuckDB reads
//! it (report_check.py), which also recomputes `payment_methods_daily` from silver in SQL.

use std::path::Path;

use crate::support::{lake, python_json};

fn check(lake_dir: &Path, page: &Path, from: &str, to: &str) -> serde_json::Value {
    let report = python_json(
        "report_check.py",
        &[
            lake_dir.as_os_str(),
            page.as_os_str(),
            from.as_ref(),
            to.as_ref(),
        ],
    );
    for table in ["daily_kpis", "payment_methods_daily"] {
        let t = &report[table];
        assert_eq!(t["columns_match"], true, "{table}: {t}");
        assert!(t["gold_rows"].as_u64().unwrap() > 10, "{table}: {t}");
        assert_eq!(t["page_rows"], t["gold_rows"], "{table}: {t}");
        assert_eq!(t["mismatches"], 0, "{table}: {t}");
        assert_eq!(t["missing_from_page"], 0, "{table}: {t}");
    }
    report
}

#[test]
fn report_tables_equal_gold_and_payment_methods_match_sql() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let lake_dir = dir.path().join("lake");
    let (ok, _, stderr) = lake(&[
        "generate",
        "--out",
        input.to_str().unwrap(),
        "--customers",
        "80",
        "--orders",
        "700",
        "--seed",
        "5",
        "--defect-rate",
        "0.05",
        "--end-date",
        "2026-11-21",
        "--days",
        "45",
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = lake(&[
        "run",
        "--lake",
        lake_dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");

    // The stage's pages: the last 30 days and one per month written.
    for page in [
        "gold/report/index.html",
        "gold/report/month=2026-10/index.html",
        "gold/report/month=2026-11/index.html",
    ] {
        assert!(lake_dir.join(page).is_file(), "{page}");
    }
    check(
        &lake_dir,
        &lake_dir.join("gold/report/index.html"),
        "2026-10-23",
        "2026-11-21",
    );
    let index = std::fs::read_to_string(lake_dir.join("gold/report/index.html")).unwrap();
    assert!(
        index.contains(r#"href="../../quality/orders/"#),
        "relative links to the quality reports"
    );

    // On demand, across a month boundary.
    let out = dir.path().join("out/report.html");
    let (ok, stdout, stderr) = lake(&[
        "report",
        "--lake",
        lake_dir.to_str().unwrap(),
        "--from",
        "2026-10-25",
        "--to",
        "2026-11-21",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2026-10-25 to 2026-11-21"), "{stdout}");
    let report = check(&lake_dir, &out, "2026-10-25", "2026-11-21");
    let sql = &report["methods_sql"];
    assert!(sql["gold_rows"].as_u64().unwrap() > 50, "{sql}");
    assert_eq!(sql["gold_rows"], sql["expected_rows"], "{sql}");
    assert_eq!(sql["mismatches"], 0, "{sql}");
    assert_eq!(sql["succeeded_amount_type"], "DECIMAL(18,2)", "{sql}");

    // `aggregate --from/--to` prints the range asked for (within gold's days) with its totals.
    let l = lake_dir.to_str().unwrap();
    let (ok, stdout, stderr) = lake(&[
        "aggregate",
        "--lake",
        l,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .contains("range 2026-11-01 to 2026-11-21 (asked 2026-11-01 to 2026-11-30): 21 day(s)"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("2026-11-")).count(),
        21,
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("total ")),
        "{stdout}"
    );
    let (ok, stdout, stderr) = lake(&[
        "aggregate",
        "--json",
        "--lake",
        l,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ]);
    assert!(ok, "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let gold = crate::support::read_parquet(
        &lake_dir.join("gold/daily_kpis/month=2026-11/daily_kpis.parquet"),
    );
    let placed = gold.column("orders_placed").unwrap().i64().unwrap().clone();
    let orders: i64 = (0..placed.len()).filter_map(|i| placed.get(i)).sum();
    assert!(orders > 100, "{orders}");
    assert_eq!(printed["totals"]["orders_placed"], orders, "{printed}");
    assert_eq!(printed["from"], "2026-11-01");
    assert_eq!(printed["to"], "2026-11-21");
    assert_eq!(
        printed["report"]["months_written"],
        serde_json::json!(["2026-11"])
    );

    // Every verdict links to a quality report that exists.
    let page = std::fs::read_to_string(&out).unwrap();
    let links: Vec<&str> = page
        .split(r#"<a class=""#)
        .skip(1)
        .filter_map(|a| a.split(r#"href="file://"#).nth(1)?.split('"').next())
        .collect();
    // orders and payments (their date partitions are in the range); customers is partitioned by
    // region only and was ingested today, after the range.
    assert_eq!(links.len(), 2, "{links:?}");
    for link in links {
        assert!(Path::new(link).is_file(), "{link}");
    }
}
