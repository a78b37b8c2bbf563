//! Memory is bounded by the budget, not by the file: `lake ingest` (the ingest Lambda's code) of
//! an export several times larger than its budget stays within the budget plus a fixed overhead,
//! measured as the peak RSS of the process.

use std::ffi::OsStr;
use std::path::Path;

use crate::support::{lake, python_json};

const BUDGET_MIB: f64 = 4.0;
/// Allowance on top of the budget: spill buffers, one bucket being deduplicated and encoded,
/// Parquet row-group metadata. Measured at about 14 MiB here; reading the export whole costs 40.
const OVERHEAD_MIB: f64 = 20.0;

fn peak_rss_of_ingest(lake_dir: &Path, file: &Path, budget_mib: &str) -> f64 {
    let args: Vec<&OsStr> = vec![
        env!("CARGO_BIN_EXE_lake").as_ref(),
        "ingest".as_ref(),
        "--json".as_ref(),
        "--lake".as_ref(),
        lake_dir.as_os_str(),
        "--dataset".as_ref(),
        "orders".as_ref(),
        "--memory-budget-mb".as_ref(),
        budget_mib.as_ref(),
        file.as_os_str(),
    ];
    let out = python_json("peak_rss.py", &args);
    assert_eq!(out["exit_code"], 0, "lake ingest failed");
    out["peak_rss_mib"].as_f64().unwrap()
}

fn generate(dir: &Path, orders: &str) -> std::path::PathBuf {
    let out = dir.join(format!("gen-{orders}"));
    let (ok, _, err) = lake(&[
        "generate",
        "--json",
        "--out",
        out.to_str().unwrap(),
        "--customers",
        "5000",
        "--orders",
        orders,
        "--days",
        "2",
        "--defect-rate",
        "0.02",
    ]);
    assert!(ok, "{err}");
    out.join("orders.csv")
}

#[test]
fn an_export_several_times_the_budget_ingests_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let small = generate(dir.path(), "1000");
    let large = generate(dir.path(), "300000");
    let large_mib = std::fs::metadata(&large).unwrap().len() as f64 / 1048576.0;
    assert!(
        large_mib > 5.0 * BUDGET_MIB,
        "the export is {large_mib:.1} MiB"
    );

    let budget = format!("{BUDGET_MIB}");
    let baseline = peak_rss_of_ingest(&dir.path().join("a"), &small, &budget);
    let bounded = peak_rss_of_ingest(&dir.path().join("b"), &large, &budget);
    assert!(
        bounded - baseline <= BUDGET_MIB + OVERHEAD_MIB,
        "a {large_mib:.0} MiB export under a {BUDGET_MIB} MiB budget peaked at {bounded:.0} MiB, \
         {:.0} MiB above the {baseline:.0} MiB of a tiny export",
        bounded - baseline
    );

    // The bound means something: with room to spare the same export is held whole and goes past it.
    let roomy = peak_rss_of_ingest(&dir.path().join("c"), &large, "1024");
    assert!(
        roomy - baseline > BUDGET_MIB + OVERHEAD_MIB,
        "holding the whole export took only {:.0} MiB: the bound above proves nothing",
        roomy - baseline
    );
}
