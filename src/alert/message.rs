//! The words of every page: subject (at most 100 characters), a plain-text body that says what
//! failed, where, how much, and what to do, and the SNS attributes subscriptions filter on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::quality::{CheckStatus, QualityReport, Verdict};

/// SNS limits subjects to 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 100;
const RUNBOOK: &str = include_str!("../../docs/runbook.md");
const RUNBOOK_PATH: &str = "docs/runbook.md";

/// Every kind of alert the pipeline sends; each has a section in `docs/runbook.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    QualityFail,
    QualityWarn,
    FunctionFailure,
    SlaBreach,
    Digest,
    ExportMissing,
    ExportLate,
    LoadFailed,
}

impl AlertType {
    pub const ALL: [AlertType; 8] = [
        AlertType::QualityFail,
        AlertType::QualityWarn,
        AlertType::FunctionFailure,
        AlertType::SlaBreach,
        AlertType::Digest,
        AlertType::ExportMissing,
        AlertType::ExportLate,
        AlertType::LoadFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlertType::QualityFail => "quality_fail",
            AlertType::QualityWarn => "quality_warn",
            AlertType::FunctionFailure => "function_failure",
            AlertType::SlaBreach => "sla_breach",
            AlertType::Digest => "digest",
            AlertType::ExportMissing => "export_missing",
            AlertType::ExportLate => "export_late",
            AlertType::LoadFailed => "load_failed",
        }
    }

    /// The numbered steps of this type's runbook section.
    pub fn runbook_steps(self) -> Vec<String> {
        RUNBOOK
            .split("\n## ")
            .skip(1)
            .find(|s| {
                s.strip_prefix(self.name())
                    .is_some_and(|rest| rest.starts_with(['\n', '\r']))
            })
            .map(|section| {
                section
                    .lines()
                    .filter_map(|l| {
                        let (n, rest) = l.split_once(". ")?;
                        n.chars()
                            .all(|c| c.is_ascii_digit())
                            .then(|| rest.trim().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One notification, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub alert_type: AlertType,
    /// `fail` or `warn`.
    pub severity: String,
    pub dataset: String,
    /// The day the alert is about (UTC), for deduplication.
    pub date: String,
    pub subject: String,
    pub body: String,
}

impl Message {
    /// SNS message attributes, so subscriptions can filter.
    pub fn attributes(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("severity", self.severity.clone()),
            ("dataset", self.dataset.clone()),
            ("alert_type", self.alert_type.name().to_owned()),
        ])
    }

    /// Whether it must reach on-call at once (severity `fail`), never held for a digest.
    pub fn is_urgent(&self) -> bool {
        self.severity == "fail"
    }

    /// Alerts with the same key are the same alert (sent once per deduplication window).
    pub fn dedup_key(&self) -> String {
        format!("{}/{}/{}", self.alert_type.name(), self.dataset, self.date)
    }
}

/// Cuts a subject to SNS's limit on a character boundary.
pub fn fit_subject(subject: &str) -> String {
    let one_line: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX_SUBJECT_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn next_steps(body: &mut String, alert_type: AlertType) {
    let _ = writeln!(body, "\nNext steps ({RUNBOOK_PATH}#{})", alert_type.name());
    for (i, step) in alert_type.runbook_steps().iter().enumerate() {
        let _ = writeln!(body, "  {}. {step}", i + 1);
    }
}

/// The page for a quality verdict of warn or fail; `None` for a pass.
pub fn quality_alert(r: &QualityReport) -> Option<Message> {
    let (alert_type, severity) = match r.verdict {
        Verdict::Pass => return None,
        Verdict::Warn => (AlertType::QualityWarn, "warn"),
        Verdict::Fail => (AlertType::QualityFail, "fail"),
    };
    let subject = fit_subject(&format!(
        "[{}] {} {}: {}",
        r.verdict.label(),
        r.dataset,
        r.batch_date,
        r.summary
    ));
    let mut b = String::new();
    let consequence = match r.verdict {
        Verdict::Fail if r.loadable => "It failed but was overridden, so it will be loaded.",
        Verdict::Fail => "It will NOT be loaded into Redshift until it is re-run or overridden.",
        _ => "It will be loaded; nothing is blocked.",
    };
    let _ = writeln!(
        b,
        "{}: the {} batch {} {}.",
        r.verdict.label(),
        r.dataset,
        r.batch_id,
        r.summary
    );
    let _ = writeln!(b, "{consequence}");
    for (status, title) in [
        (CheckStatus::Fail, "What failed"),
        (CheckStatus::Warn, "What warned"),
    ] {
        let hits: Vec<_> = r.checks.iter().filter(|c| c.status == status).collect();
        if hits.is_empty() {
            continue;
        }
        let _ = writeln!(b, "\n{title}");
        for c in hits {
            let _ = writeln!(
                b,
                "  - {}: {} (threshold: {}). {}",
                c.display_name(),
                c.observed_text,
                c.threshold,
                c.message
            );
            if !c.offending_keys.is_empty() {
                let _ = writeln!(b, "    sample keys: {}", c.offending_keys.join(", "));
            }
            if !c.breakdown.is_empty() {
                let heading = match c.check.as_str() {
                    "reject_rate" => "rejected rows by reason",
                    "referential_integrity" => "missing values, with the rows naming each",
                    _ => "made of",
                };
                let _ = writeln!(b, "    {heading}:");
                for t in &c.breakdown {
                    let _ = writeln!(b, "      {:>8}  {}", t.count, t.what);
                }
            }
        }
    }
    let _ = writeln!(b, "\nWhere");
    let _ = writeln!(b, "  Source:     {}", r.source);
    let _ = writeln!(b, "  Batch id:   {}", r.batch_id);
    let _ = writeln!(b, "  Manifest:   {}", r.manifest);
    let report_uri = r.manifest.replacen("/manifests/", "/quality/", 1);
    let _ = writeln!(b, "  Report:     {report_uri}");
    if let Some(q) = r.rejects_file.as_ref().or(r.quarantined_source.as_ref()) {
        let _ = writeln!(b, "  Quarantine: {q}");
    }
    let _ = writeln!(b, "\nHow much");
    let _ = writeln!(
        b,
        "  rows read {}, written {}, rejected {}, duplicates dropped {}",
        r.rows_read, r.rows_written, r.rows_rejected, r.duplicates_dropped
    );
    next_steps(&mut b, alert_type);
    Some(Message {
        alert_type,
        severity: severity.into(),
        dataset: r.dataset.clone(),
        date: r.batch_date.clone(),
        subject,
        body: b,
    })
}

/// What the failed invocation was about, as far as its event says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedInvocation {
    pub function: String,
    pub request_id: String,
    pub condition: String,
    pub attempts: u32,
    pub error_type: String,
    pub error_message: String,
    pub objects: Vec<String>,
    pub dataset: String,
    pub date: String,
}

pub fn failure_alert(f: &FailedInvocation) -> Message {
    let subject = fit_subject(&format!(
        "[FAIL] {} {}: function failed after {} attempt(s) ({})",
        f.function, f.date, f.attempts, f.error_type
    ));
    let mut b = String::new();
    let _ = writeln!(
        b,
        "FAIL: the {} function failed and gave up ({}).",
        f.function, f.condition
    );
    let _ = writeln!(b, "\nWhat failed\n  {}: {}", f.error_type, f.error_message);
    let _ = writeln!(b, "\nWhere");
    let _ = writeln!(b, "  Function:   {}", f.function);
    let _ = writeln!(b, "  Request id: {}", f.request_id);
    for o in &f.objects {
        let _ = writeln!(b, "  Object:     {o}");
    }
    let _ = writeln!(
        b,
        "\nHow much\n  {} attempt(s); {} object(s) in the event",
        f.attempts,
        f.objects.len()
    );
    next_steps(&mut b, AlertType::FunctionFailure);
    Message {
        alert_type: AlertType::FunctionFailure,
        severity: "fail".into(),
        dataset: f.dataset.clone(),
        date: f.date.clone(),
        subject,
        body: b,
    }
}

/// A batch (or gold month) the load function could not load; the other batches went on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedLoad {
    pub dataset: String,
    pub batch_id: String,
    /// The warehouse's error text.
    pub error: String,
    /// The statement that failed (generated SQL: no data values).
    pub statement: String,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The day of the load run (UTC).
    pub date: String,
}

/// Longest statement quoted in a page.
const MAX_STATEMENT_CHARS: usize = 1_500;

pub fn load_failure_alert(f: &FailedLoad) -> Message {
    let subject = fit_subject(&format!(
        "[FAIL] {} {}: batch {} did not load into the warehouse",
        f.dataset, f.date, f.batch_id
    ));
    let mut b = String::new();
    let _ = writeln!(
        b,
        "FAIL: the {} batch {} failed to load; its transaction was rolled back.",
        f.dataset, f.batch_id
    );
    let _ = writeln!(
        b,
        "Every other batch and gold month was loaded. The load function retries it on its next {} run(s); after {} failed attempts it waits for an operator.",
        f.max_attempts.saturating_sub(f.attempts),
        f.max_attempts
    );
    let mut statement: String = f.statement.chars().take(MAX_STATEMENT_CHARS).collect();
    if statement.len() < f.statement.len() {
        statement.push('…');
    }
    let _ = writeln!(b, "\nWhat failed\n  {}\n  statement: {statement}", f.error);
    let _ = writeln!(b, "\nWhere");
    let _ = writeln!(b, "  Dataset:    {}", f.dataset);
    let _ = writeln!(b, "  Batch id:   {}", f.batch_id);
    let _ = writeln!(
        b,
        "  Record:     runs/load_failures/{}/{}.json",
        f.dataset, f.batch_id
    );
    let _ = writeln!(
        b,
        "\nHow much\n  attempt {} of {}",
        f.attempts, f.max_attempts
    );
    next_steps(&mut b, AlertType::LoadFailed);
    Message {
        alert_type: AlertType::LoadFailed,
        severity: "fail".into(),
        dataset: f.dataset.clone(),
        date: f.date.clone(),
        subject,
        body: b,
    }
}

/// The day's data is not all in the warehouse by the SLA hour: no load ran (`ran` false), or
/// batches that arrived before the deadline are missing from the warehouse with no alert of their
/// own saying why.
pub fn sla_alert(
    date: &str,
    deadline: &str,
    ran: bool,
    status: &crate::stages::alert::sla::DayStatus,
    runs_uri: &str,
) -> Message {
    let what = if ran {
        format!(
            "{} of {} batch(es) not in the warehouse",
            status.missing.len(),
            status.batches
        )
    } else {
        "no load ran".to_owned()
    };
    let subject = fit_subject(&format!(
        "[FAIL] all {date}: {what} by {deadline} (SLA breach)"
    ));
    let mut b = String::new();
    let _ = writeln!(
        b,
        "FAIL: the data of {date} is not all in the warehouse by {deadline}: {what}."
    );
    if !status.missing.is_empty() {
        let _ = writeln!(b, "\nNot in the warehouse");
        for m in &status.missing {
            let _ = writeln!(b, "  - {m}");
        }
    }
    if !status.held.is_empty() {
        let _ = writeln!(b, "\nHeld back (each has its own alert)");
        for h in &status.held {
            let _ = writeln!(b, "  - {h}");
        }
    }
    let _ = writeln!(b, "\nWhere\n  Run records: {runs_uri}");
    let _ = writeln!(
        b,
        "\nHow much\n  batches that arrived before {deadline}: {}, in the warehouse: {}",
        status.batches, status.loaded
    );
    next_steps(&mut b, AlertType::SlaBreach);
    Message {
        alert_type: AlertType::SlaBreach,
        severity: "fail".into(),
        dataset: "all".into(),
        date: date.into(),
        subject,
        body: b,
    }
}

/// When a dataset's export of a day was due: `deadline` is the moment it became late
/// (`01:45 UTC`), `declared` the contract's words (`01:30 UTC (+15 min grace)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub day: String,
    pub deadline: String,
    pub declared: String,
}

fn export_message(
    alert_type: AlertType,
    dataset: &str,
    due: &Due,
    subject: String,
    b: String,
) -> Message {
    Message {
        alert_type,
        severity: if alert_type == AlertType::ExportMissing {
            "fail"
        } else {
            "warn"
        }
        .into(),
        dataset: dataset.into(),
        date: due.day.clone(),
        subject: fit_subject(&subject),
        body: b,
    }
}

/// No export of `dataset` arrived on its day by its deadline.
pub fn export_missing(dataset: &str, due: &Due, raw_uri: &str) -> Message {
    let Due {
        day,
        deadline,
        declared,
    } = due;
    let mut b = String::new();
    let _ = writeln!(
        b,
        "FAIL: no {dataset} export arrived on {day} by {deadline}; its contract expects one by {declared}."
    );
    let _ = writeln!(
        b,
        "Nothing of {dataset} for {day} will reach the lake, the KPIs or Redshift until it lands."
    );
    let _ = writeln!(b, "\nWhere\n  Expected under: {raw_uri}");
    next_steps(&mut b, AlertType::ExportMissing);
    let subject = format!("[FAIL] {dataset} {day}: no export arrived by {deadline}");
    export_message(AlertType::ExportMissing, dataset, due, subject, b)
}

/// `dataset`'s export of its day arrived, but only after its deadline (at `arrived`, UTC times).
pub fn export_late(dataset: &str, due: &Due, arrived: &[String], manifests_uri: &str) -> Message {
    let Due {
        day,
        deadline,
        declared,
    } = due;
    let first = arrived.first().map_or("", String::as_str);
    let mut b = String::new();
    let _ = writeln!(
        b,
        "WARN: the {dataset} export of {day} arrived after {deadline} (due by {declared})."
    );
    let _ = writeln!(
        b,
        "It is being ingested and checked as usual; only the timing was off."
    );
    let _ = writeln!(b, "\nWhere\n  Batches: {manifests_uri}");
    let _ = writeln!(b, "\nHow much\n  arrived at: {}", arrived.join(", "));
    next_steps(&mut b, AlertType::ExportLate);
    let subject =
        format!("[WARN] {dataset} {day}: export arrived late, at {first} (due {deadline})");
    export_message(AlertType::ExportLate, dataset, due, subject, b)
}

/// One message for several alerts that arrived close together.
pub fn digest(messages: &[Message]) -> Message {
    let fails = messages.iter().filter(|m| m.severity == "fail").count();
    let severity = if fails > 0 { "fail" } else { "warn" };
    let datasets: std::collections::BTreeSet<&str> =
        messages.iter().map(|m| m.dataset.as_str()).collect();
    let date = messages.first().map(|m| m.date.clone()).unwrap_or_default();
    // Only warnings are held for a digest now; one queued by an older version may still fail.
    let failing = if fails > 0 {
        format!(" ({fails} failing)")
    } else {
        String::new()
    };
    let subject = fit_subject(&format!(
        "[{}] {} alerts{failing} for {}",
        severity.to_uppercase(),
        messages.len(),
        datasets.into_iter().collect::<Vec<_>>().join(", ")
    ));
    let mut b = String::new();
    let _ = writeln!(
        b,
        "{} alerts arrived within a few minutes; they are grouped here.",
        messages.len()
    );
    for (i, m) in messages.iter().enumerate() {
        let _ = writeln!(
            b,
            "\n=== {}. {} [{}]\n{}",
            i + 1,
            m.subject,
            m.alert_type.name(),
            m.body.trim_end()
        );
    }
    next_steps(&mut b, AlertType::Digest);
    Message {
        alert_type: AlertType::Digest,
        severity: severity.into(),
        dataset: if messages.iter().all(|m| m.dataset == messages[0].dataset) {
            messages
                .first()
                .map(|m| m.dataset.clone())
                .unwrap_or_default()
        } else {
            "multiple".into()
        },
        date,
        subject,
        body: b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runbook_covers_every_alert_type() {
        for t in AlertType::ALL {
            let steps = t.runbook_steps();
            assert!(
                !steps.is_empty(),
                "docs/runbook.md has no numbered steps under `## {}`",
                t.name()
            );
        }
        assert_eq!(AlertType::QualityFail.runbook_steps().len(), 5);
    }

    #[test]
    fn subjects_fit_sns_and_stay_on_one_line() {
        let long = format!("[FAIL] orders 2026-11-21: {}", "x".repeat(200));
        let s = fit_subject(&long);
        assert_eq!(s.chars().count(), 100);
        assert!(s.ends_with('…'));
        assert_eq!(fit_subject("a\nb"), "a b");
        let unicode = "é".repeat(150);
        assert_eq!(fit_subject(&unicode).chars().count(), 100);
    }
}
