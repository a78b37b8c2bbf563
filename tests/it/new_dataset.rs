//! "Adding a dataset is adding a contract": a fourth contract in a directory of contracts is
//! ingested, checked, catalogued and given warehouse DDL by `lake`, with no code change.

use serde_json::Value;

use crate::support::lake;

const RETURNS: &str = r#"
name = "returns"
description = "One row per return request; refunds arrive as newer versions."
key = "return_id"
version_column = "updated_at"
partition_by = [{ name = "return_date", source = "returned_at", transform = "utc_date" }]

[[columns]]
name = "return_id"
type = "string"
required = true

[[columns]]
name = "order_id"
type = "string"
required = true

[[columns]]
name = "returned_at"
type = "timestamp"
required = true

[[columns]]
name = "reason"
type = "enum"
required = true
values = ["damaged", "wrong_item", "changed_mind"]

[[columns]]
name = "refund_amount"
type = "decimal"
precision = 18
scale = 2
required = true
minimum = "0"

[[columns]]
name = "updated_at"
type = "timestamp"
required = true

[quality]
reject_rate = { warn = 0.5, fail = 0.9 }
references = [{ column = "order_id", dataset = "orders", max_orphan_rate = 0.0, severity = "warn" }]
"#;

#[test]
fn a_fourth_contract_is_ingested_checked_catalogued_and_given_warehouse_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let contracts = dir.path().join("contracts");
    std::fs::create_dir(&contracts).unwrap();
    for name in ["customers", "orders", "payments"] {
        std::fs::copy(
            format!("{}/contracts/{name}.toml", env!("CARGO_MANIFEST_DIR")),
            contracts.join(format!("{name}.toml")),
        )
        .unwrap();
    }
    std::fs::write(contracts.join("returns.toml"), RETURNS).unwrap();
    let export = dir.path().join("returns.csv");
    std::fs::write(
        &export,
        "return_id,order_id,returned_at,reason,refund_amount,updated_at\n\
         R1,O1,2026-11-20T10:00:00Z,damaged,12.50,2026-11-20T10:00:00Z\n\
         R2,O2,2026-11-21T23:30:00-05:00,Changed_Mind,3.00,2026-11-21T23:30:00Z\n\
         R3,O3,2026-11-21T09:00:00Z,lost,1.00,2026-11-21T09:00:00Z\n",
    )
    .unwrap();
    let lake_dir = dir.path().join("lake");
    let (l, c, e) = (
        lake_dir.to_str().unwrap(),
        contracts.to_str().unwrap(),
        export.to_str().unwrap(),
    );

    // The built-in contracts do not know the dataset: the contract file is what changes it.
    let (ok, _, stderr) = lake(&["ingest", "--json", "--lake", l, "--dataset", "returns", e]);
    assert!(
        !ok && stderr.contains("unknown dataset `returns`"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = lake(&[
        "--contracts",
        c,
        "ingest",
        "--json",
        "--lake",
        l,
        "--dataset",
        "returns",
        e,
    ]);
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            &summary["rows_read"],
            &summary["rows_written"],
            &summary["rows_rejected"]
        ),
        (&Value::from(3), &Value::from(2), &Value::from(1)),
        "{summary}"
    );
    assert_eq!(
        summary["partitions"],
        serde_json::json!(["return_date=2026-11-20", "return_date=2026-11-22"])
    );

    // Checked against its own rules, including the reference to orders.
    let (ok, stdout, stderr) = lake(&["--contracts", c, "quality", "--lake", l, "--json"]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(report["dataset"], "returns");
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"referential_integrity"), "{checks:?}");
    assert_eq!(report["loadable"], true, "{report}");

    // Catalogued: a table with the contract's columns and the batch's partitions.
    let table: Value = serde_json::from_slice(
        &std::fs::read(lake_dir.join("catalog/shoplake/returns.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(table["table"]["partition_keys"][0]["name"], "return_date");
    assert_eq!(table["partitions"].as_array().unwrap().len(), 2, "{table}");

    // Warehouse DDL and a load of the batch, from the same contract.
    let (ok, stdout, stderr) = lake(&["--contracts", c, "load", "--lake", l, "--dry-run"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("CREATE TABLE IF NOT EXISTS shoplake.returns (return_id VARCHAR"),
        "{stdout}"
    );
    assert!(stdout.contains("refund_amount DECIMAL(18,2)"), "{stdout}");
    assert!(
        stdout.contains(r#""outcome":"loaded","dataset":"returns""#),
        "{stdout}"
    );
}
