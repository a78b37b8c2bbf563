use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;
use crate::contract::Registry;
use crate::manifest::SchemaDrift;
use crate::manifest::{ColumnStats, MANIFEST_VERSION, SourceObject};
use crate::quality::report::{QualityReport, Verdict};

fn manifest(batch: &str, read: u64, written: u64, rejected: u64) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        batch_id: batch.into(),
        dataset: "payments".into(),
        status: BatchStatus::Succeeded,
        error: None,
        source: SourceObject {
            uri: "s3://b/raw/payments/p.csv".into(),
            key: "raw/payments/p.csv".into(),
            etag: "e".into(),
            version_id: None,
            size: 1,
            last_modified: "2026-11-21T01:00:00Z".into(),
        },
        ingested_at: "2026-11-21T01:00:00Z".into(),
        rows_read: read,
        rows_written: written,
        rows_rejected: rejected,
        duplicates_dropped: read - written - rejected,
        partitions: vec![],
        files: vec![],
        rejects_file: None,
        quarantined_source: None,
        source_columns: vec![],
        schema_drift: SchemaDrift::default(),
        column_stats: ColumnStats {
            null_counts: BTreeMap::new(),
            value_counts: BTreeMap::new(),
            max_version: Some("2026-11-21T00:00:00Z".into()),
        },
        reject_reasons: BTreeMap::new(),
    }
}

fn with_status_counts(mut m: Manifest, succeeded: u64, failed: u64) -> Manifest {
    let counts = BTreeMap::from([
        ("succeeded".to_owned(), succeeded),
        ("failed".to_owned(), failed),
    ]);
    m.column_stats.value_counts.insert("status".into(), counts);
    m
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn run(contract: &str, m: &Manifest, history: &[Manifest]) -> Vec<CheckResult> {
    let reg = Registry::builtin();
    let facts = Facts {
        contract: reg.get(contract).unwrap(),
        manifest: m,
        history,
        duplicate_keys: Some(vec![]),
        references: vec![],
        now: now(),
    };
    evaluate(&facts)
}

fn find<'a>(checks: &'a [CheckResult], name: &str) -> &'a CheckResult {
    checks
        .iter()
        .find(|c| c.display_name() == name)
        .unwrap_or_else(|| {
            panic!(
                "no check {name} in {:?}",
                checks
                    .iter()
                    .map(CheckResult::display_name)
                    .collect::<Vec<_>>()
            )
        })
}

#[test]
fn reject_rate_warns_above_one_percent_and_fails_above_five() {
    let cases = [
        (0, CheckStatus::Pass),
        (10, CheckStatus::Pass),
        (11, CheckStatus::Warn),
        (50, CheckStatus::Warn),
        (73, CheckStatus::Fail),
    ];
    for (rejected, want) in cases {
        let m = manifest("b", 1000, 1000 - rejected, rejected);
        let c = find(&run("orders", &m, &[]), "reject_rate").clone();
        assert_eq!(c.status, want, "{rejected} rejects");
    }
    let c = find(
        &run("orders", &manifest("b", 1000, 927, 73), &[]),
        "reject_rate",
    )
    .clone();
    assert_eq!(
        (c.observed_text.as_str(), c.message.as_str()),
        ("7.3%", "73 of 1000 rows rejected")
    );
    assert_eq!(c.severity, Severity::Fail);
    assert!(c.breakdown.is_empty(), "no reasons recorded, none listed");

    // The manifest's reasons, largest first.
    let mut m = manifest("b", 1000, 927, 73);
    m.reject_reasons = BTreeMap::from([
        ("currency: does not match ^[A-Z]{3}$".to_owned(), 50),
        ("order_ts: required value is missing".to_owned(), 23),
    ]);
    let c = find(&run("orders", &m, &[]), "reject_rate").clone();
    let listed: Vec<(&str, u64)> = c
        .breakdown
        .iter()
        .map(|t| (t.what.as_str(), t.count))
        .collect();
    assert_eq!(
        listed,
        [
            ("currency: does not match ^[A-Z]{3}$", 50),
            ("order_ts: required value is missing", 23)
        ]
    );
}

#[test]
fn an_empty_batch_passes_what_it_can_and_skips_the_rest() {
    let mut m = manifest("b", 0, 0, 0);
    m.column_stats.max_version = None;
    m.column_stats.null_counts.insert("country".into(), 0);
    let checks = run("customers", &m, &[]);
    assert_eq!(find(&checks, "reject_rate").status, CheckStatus::Pass);
    for name in ["completeness(country)", "volume", "freshness"] {
        assert_eq!(find(&checks, name).status, CheckStatus::Skipped, "{name}");
    }
    let (verdict, summary) = QualityReport::verdict_of(&checks);
    assert_eq!(verdict, Verdict::Pass, "{summary}");
}

#[test]
fn completeness_uses_per_column_thresholds_and_flags_an_all_null_column() {
    let mut m = manifest("b", 100, 100, 0);
    m.column_stats.null_counts = BTreeMap::from([
        ("country".into(), 31),
        ("first_name".into(), 100),
        ("last_name".into(), 50),
    ]);
    let checks = run("customers", &m, &[]);
    assert_eq!(
        find(&checks, "completeness(country)").status,
        CheckStatus::Warn,
        "country allows 30%"
    );
    let all_null = find(&checks, "completeness(first_name)");
    assert_eq!(
        (all_null.status, all_null.observed),
        (CheckStatus::Warn, Some(1.0))
    );
    assert_eq!(
        find(&checks, "completeness(last_name)").status,
        CheckStatus::Pass,
        "50% is at the default limit"
    );
}

#[test]
fn volume_needs_three_batches_of_history_and_compares_with_the_median() {
    let hist = |n: &[u64]| {
        n.iter()
            .map(|&r| manifest("a", r, r, 0))
            .collect::<Vec<_>>()
    };
    let m = manifest("b", 400, 400, 0);
    let skipped = find(&run("payments", &m, &hist(&[1000, 1000])), "volume").clone();
    assert_eq!(skipped.status, CheckStatus::Skipped);
    assert!(skipped.message.contains("only 2 earlier batch(es)"));
    assert_eq!(
        find(&run("payments", &m, &hist(&[1000, 900, 100_000])), "volume").status,
        CheckStatus::Warn
    );
    assert_eq!(
        find(&run("payments", &m, &hist(&[700, 800, 10])), "volume").status,
        CheckStatus::Pass,
        "median 700: 57%"
    );
    let big = manifest("b", 2100, 2100, 0);
    assert_eq!(
        find(&run("payments", &big, &hist(&[1000; 9])), "volume").status,
        CheckStatus::Warn
    );
    let zero = find(&run("payments", &big, &hist(&[0, 0, 0])), "volume").clone();
    assert_eq!((zero.status, zero.observed), (CheckStatus::Warn, None));
}

#[test]
fn freshness_warns_when_the_newest_version_is_older_than_48_hours() {
    let mut m = manifest("b", 1, 1, 0);
    m.column_stats.max_version = Some("2026-11-19T11:00:00Z".into());
    let c = find(&run("orders", &m, &[]), "freshness").clone();
    assert_eq!(
        (c.status, c.observed_text.as_str()),
        (CheckStatus::Warn, "49.0h old")
    );
    m.column_stats.max_version = Some("2026-11-19T13:00:00Z".into());
    assert_eq!(
        find(&run("orders", &m, &[]), "freshness").status,
        CheckStatus::Pass
    );
}

#[test]
fn schema_drift_reports_extra_and_missing_columns() {
    let mut m = manifest("b", 1, 1, 0);
    m.schema_drift = SchemaDrift {
        extra_columns: vec!["coupon".into()],
        missing_columns: vec![],
    };
    let checks = run("orders", &m, &[]);
    let extra = find(&checks, "schema_drift(extra_columns)");
    assert_eq!(
        (extra.status, extra.observed_text.as_str()),
        (CheckStatus::Warn, "coupon")
    );
    assert_eq!(
        find(&checks, "schema_drift(missing_columns)").status,
        CheckStatus::Pass
    );
}

#[test]
fn key_uniqueness_must_hold() {
    let reg = Registry::builtin();
    let m = manifest("b", 3, 3, 0);
    let dups: Vec<String> = (0..15).map(|i| format!("p{i}")).collect();
    let facts = Facts {
        contract: reg.get("payments").unwrap(),
        manifest: &m,
        history: &[],
        duplicate_keys: Some(dups),
        references: vec![],
        now: now(),
    };
    let checks = evaluate(&facts);
    let c = find(&checks, "key_uniqueness(payment_id)");
    assert_eq!(
        (c.status, c.offending_keys.len()),
        (CheckStatus::Fail, 10),
        "at most 10 keys listed"
    );
    assert_eq!(QualityReport::verdict_of(&checks).0, Verdict::Fail);
}

#[test]
fn orphans_warn_with_their_rate_and_sample_keys() {
    let reg = Registry::builtin();
    let contract = reg.get("payments").unwrap();
    let m = manifest("b", 200, 200, 0);
    let facts = Facts {
        contract,
        manifest: &m,
        history: &[],
        duplicate_keys: Some(vec![]),
        references: vec![ReferenceFacts {
            rule: contract.quality.references[0].clone(),
            checked: 200,
            orphans: 50,
            unverifiable: 0,
            sample: vec!["P1".into(), "P2".into()],
            missing: (0..13)
                .map(|i| (Some(format!("O{i:02}")), 13 - i))
                .chain([(None, 22)])
                .collect(),
        }],
        now: now(),
    };
    let checks = evaluate(&facts);
    let c = find(&checks, "referential_integrity(order_id)");
    assert_eq!(
        (c.status, c.observed_text.as_str()),
        (CheckStatus::Warn, "25.0%")
    );
    assert_eq!(c.offending_keys, ["P1", "P2"]);
    assert!(c.message.contains("50 of 200 rows"));
    assert!(
        c.message.contains("14 distinct order_id value(s) missing"),
        "{}",
        c.message
    );
    // The missing parents, most orphans first; beyond the listed ones, their sum.
    let tallies: Vec<(&str, u64)> = c
        .breakdown
        .iter()
        .map(|t| (t.what.as_str(), t.count))
        .collect();
    assert_eq!(
        tallies[..3],
        [("(no value)", 22), ("O00", 13), ("O01", 12)],
        "{tallies:?}"
    );
    assert_eq!(tallies.len(), 11, "10 named and the rest: {tallies:?}");
    assert_eq!(tallies[10], ("4 other(s)", 4 + 3 + 2 + 1));
    assert_eq!(tallies.iter().map(|t| t.1).sum::<u64>(), 22 + 91);
    let (verdict, summary) = QualityReport::verdict_of(&checks);
    assert_eq!(verdict, Verdict::Warn);
    assert!(
        summary.contains("referential integrity(order_id) 25.0%"),
        "{summary}"
    );
}

#[test]
fn unverifiable_rows_are_reported_apart_from_orphans_and_never_pass() {
    let reg = Registry::builtin();
    let contract = reg.get("payments").unwrap();
    let m = manifest("b", 200, 200, 0);
    let facts = Facts {
        contract,
        manifest: &m,
        history: &[],
        duplicate_keys: Some(vec![]),
        references: vec![ReferenceFacts {
            rule: contract.quality.references[0].clone(),
            checked: 200,
            orphans: 0,
            unverifiable: 7,
            sample: vec![],
            missing: Default::default(),
        }],
        now: now(),
    };
    let checks = evaluate(&facts);
    let c = find(&checks, "referential_integrity(order_id)");
    assert_eq!(
        (c.status, c.observed_text.as_str()),
        (CheckStatus::Warn, "0.0%"),
        "no orphan, but 7 rows not looked up: a warning, not a pass"
    );
    assert!(c.message.contains("7 row(s) unverifiable"), "{}", c.message);
    assert!(c.message.contains("at most 90 days"), "{}", c.message);
    assert!(c.offending_keys.is_empty() && c.breakdown.is_empty());
}

#[test]
fn a_jump_in_failed_payments_warns() {
    let history: Vec<Manifest> = (0..5)
        .map(|i| with_status_counts(manifest(&format!("a{i}"), 100, 100, 0), 95, 5))
        .collect();
    let steady = with_status_counts(manifest("b", 100, 100, 0), 93, 7);
    assert_eq!(
        find(&run("payments", &steady, &history), "distribution(status)").status,
        CheckStatus::Pass
    );
    let broken = with_status_counts(manifest("b", 100, 100, 0), 60, 40);
    let c = find(&run("payments", &broken, &history), "distribution(status)").clone();
    assert_eq!(c.status, CheckStatus::Warn);
    assert!(
        c.observed_text.starts_with("failed 40.0% (mean 5.0%)")
            || c.observed_text.starts_with("succeeded 60.0%"),
        "{}",
        c.observed_text
    );
    let no_history = find(
        &run("payments", &broken, &history[..2]),
        "distribution(status)",
    )
    .clone();
    assert_eq!(no_history.status, CheckStatus::Skipped);
}

#[test]
fn a_rejected_file_fails_and_skips_row_checks() {
    let mut m = manifest("b", 5, 0, 5);
    m.status = BatchStatus::Rejected;
    m.error = Some("missing required column(s): amount".into());
    let checks = run("payments", &m, &[]);
    let c = find(&checks, "file_rejected");
    assert_eq!(
        (c.status, c.message.as_str()),
        (CheckStatus::Fail, "missing required column(s): amount")
    );
    assert!(
        checks
            .iter()
            .all(|c| c.check != "volume" && c.check != "key_uniqueness")
    );
    let (verdict, summary) = QualityReport::verdict_of(&checks);
    assert_eq!(verdict, Verdict::Fail);
    assert_eq!(
        summary,
        "2 of 4 checks failed (file rejected: missing required column(s): amount)"
    );
}

#[test]
fn percentages_read_well() {
    assert_eq!(pct(0.073), "7.3%");
    assert_eq!(pct(0.0), "0.0%");
    assert_eq!(pct(0.0004), "0.04%");
    assert_eq!(pct(1.0), "100.0%");
}
