//! How `lake` shows things to a person: text tables and summaries. The data comes from the
//! stage services and the lake state; nothing here decides anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use polars::prelude::*;
use shoplake::contract::Registry;
use shoplake::manifest::{BatchStatus, BatchSummary, Manifest};
use shoplake::report::KpiRow;
use shoplake::state::LakeState;

/// Every manifest of the lake, by batch then dataset.
pub async fn all_manifests(
    state: &LakeState,
    registry: &Registry,
) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for dataset in registry.names() {
        out.extend(state.manifests(dataset).await?);
    }
    out.sort_by(|a, b| {
        (a.batch_id.as_str(), a.dataset.as_str()).cmp(&(b.batch_id.as_str(), b.dataset.as_str()))
    });
    Ok(out)
}

/// A readable overview: batches with their counts, the silver partition tree with row counts,
/// and the first quarantined rows of each batch (line, reason and key only: no personal data).
pub async fn overview(
    state: &LakeState,
    registry: &Registry,
    sample_rejects: usize,
) -> anyhow::Result<String> {
    let manifests = all_manifests(state, registry).await?;
    let mut s = String::new();
    let _ = writeln!(s, "Batches");
    for m in &manifests {
        let status = match m.status {
            BatchStatus::Succeeded => "ok",
            BatchStatus::Rejected => "REJECTED",
        };
        let _ = writeln!(
            s,
            "  {:<9} {:<30} {:<8} read {:>7}  written {:>7}  rejected {:>6}  duplicates {:>5}  {}",
            m.dataset,
            m.batch_id,
            status,
            m.rows_read,
            m.rows_written,
            m.rows_rejected,
            m.duplicates_dropped,
            m.error.as_deref().unwrap_or_default()
        );
    }
    let mut tree: BTreeMap<(String, String), (u64, usize)> = BTreeMap::new();
    for m in &manifests {
        for f in &m.files {
            let e = tree
                .entry((m.dataset.clone(), f.partition.clone()))
                .or_default();
            e.0 += f.rows;
            e.1 += 1;
        }
    }
    let _ = writeln!(s, "\nSilver partitions (rows, files)");
    let mut last_dataset = String::new();
    for ((dataset, partition), (rows, files)) in &tree {
        if *dataset != last_dataset {
            let _ = writeln!(s, "  processed/{dataset}/");
            last_dataset.clone_from(dataset);
        }
        let _ = writeln!(s, "    {partition:<50} {rows:>8} rows  {files} file(s)");
    }
    let _ = writeln!(s, "\nQuarantined rows (first {sample_rejects} per batch)");
    for m in manifests.iter().filter(|m| m.rejects_file.is_some()) {
        let key = m.rejects_file.as_deref().unwrap_or_default();
        let Some(bytes) = state.store().get(key).await? else {
            continue;
        };
        let key_column = registry
            .get(&m.dataset)
            .map(|c| c.key_column().name.clone())
            .unwrap_or_default();
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(bytes.as_ref());
        let headers = reader.byte_headers().cloned().unwrap_or_default();
        let key_index = headers.iter().position(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .eq_ignore_ascii_case(&key_column)
        });
        let _ = writeln!(s, "  {key}");
        for record in reader.byte_records().take(sample_rejects).flatten() {
            let field =
                |i: usize| String::from_utf8_lossy(record.get(i).unwrap_or_default()).into_owned();
            let key_value = key_index.map(&field).unwrap_or_default();
            let _ = writeln!(
                s,
                "    line {:>6}  {key_column}={key_value:<10}  {}",
                field(0),
                field(1)
            );
        }
    }
    for m in manifests.iter().filter(|m| m.quarantined_source.is_some()) {
        let _ = writeln!(
            s,
            "  {} (whole file): {}",
            m.quarantined_source.as_deref().unwrap_or_default(),
            m.error.as_deref().unwrap_or_default()
        );
    }
    Ok(s)
}

/// The KPI rows of the `days` most recent dates as a text table.
pub fn recent_kpis(kpis: &DataFrame, days: usize) -> PolarsResult<String> {
    let dates = kpis.column("kpi_date")?.date()?.physical().clone();
    let mut distinct: Vec<i32> = (0..dates.len()).filter_map(|i| dates.get(i)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let since = distinct
        .get(distinct.len().saturating_sub(days))
        .copied()
        .unwrap_or(i32::MAX);
    let text = |name: &str, i: usize| -> PolarsResult<String> {
        let c = kpis.column(name)?;
        Ok(match c.dtype() {
            DataType::Decimal(_, s) => {
                let scale = u8::try_from(*s).unwrap_or(2);
                c.decimal()?.physical().get(i).map_or("-".into(), |v| {
                    shoplake::values::format_decimal(v as i64, scale)
                })
            }
            DataType::Float64 => c
                .f64()?
                .get(i)
                .map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
            DataType::Int64 => c.i64()?.get(i).map_or("-".into(), |v| v.to_string()),
            DataType::Date => c
                .date()?
                .physical()
                .get(i)
                .map_or("-".into(), shoplake::values::format_date),
            _ => c.str()?.get(i).unwrap_or("-").to_owned(),
        })
    };
    let shown = [
        ("kpi_date", "date", 10),
        ("customer_region", "region", 7),
        ("currency", "cur", 4),
        ("orders_placed", "orders", 7),
        ("orders_cancelled", "cancel", 7),
        ("revenue", "revenue", 12),
        ("avg_order_value", "aov", 8),
        ("active_customers", "active", 7),
        ("new_customers", "new", 5),
        ("retention_rate", "retain", 7),
        ("payments_attempted", "pay_try", 8),
        ("payment_success_rate", "pay_ok", 7),
        ("refunded_amount", "refunded", 10),
    ];
    let mut out = String::new();
    for (_, title, width) in shown {
        let _ = write!(out, "{title:>width$} ");
    }
    out.push('\n');
    for i in (0..kpis.height()).filter(|&i| dates.get(i).is_some_and(|d| d >= since)) {
        for (name, _, width) in shown {
            let _ = write!(out, "{:>width$} ", text(name, i)?);
        }
        out.push('\n');
    }
    Ok(out)
}

/// One line for an ingested file.
pub fn batch_line(s: &BatchSummary) -> String {
    let status = match (&s.status, s.replayed) {
        (BatchStatus::Rejected, _) => "REJECTED",
        (_, true) => "replayed",
        _ => "ok",
    };
    format!(
        "{:<9} {:<30} {:<8} read {:>7}  written {:>7}  rejected {:>6}  duplicates {:>5}  {} partition(s){}",
        s.dataset,
        s.batch_id,
        status,
        s.rows_read,
        s.rows_written,
        s.rows_rejected,
        s.duplicates_dropped,
        s.partitions.len(),
        s.error
            .as_deref()
            .map(|e| format!("  {e}"))
            .unwrap_or_default()
    )
}

/// Totals of KPI rows over a range of days: counts summed, money per currency (exact).
#[derive(Debug, Default, serde::Serialize)]
pub struct Totals {
    pub days: usize,
    pub orders_placed: i64,
    pub orders_cancelled: i64,
    pub new_customers: i64,
    pub returning_customers: i64,
    pub payments_attempted: i64,
    pub payments_succeeded: i64,
    pub payments_failed: i64,
    /// Currency → decimal text.
    pub revenue: BTreeMap<String, String>,
    pub refunded_amount: BTreeMap<String, String>,
}

fn money(cents: i128) -> String {
    shoplake::values::format_decimal(i64::try_from(cents).unwrap_or(i64::MAX), 2)
}

impl Totals {
    pub fn of<'a>(rows: impl Iterator<Item = &'a KpiRow>) -> Totals {
        let mut t = Totals::default();
        let mut days = std::collections::BTreeSet::new();
        let (mut revenue, mut refunded) = (BTreeMap::new(), BTreeMap::new());
        for r in rows {
            days.insert(r.kpi_date);
            t.orders_placed += r.orders_placed;
            t.orders_cancelled += r.orders_cancelled;
            t.new_customers += r.new_customers;
            t.returning_customers += r.returning_customers;
            t.payments_attempted += r.payments_attempted;
            t.payments_succeeded += r.payments_succeeded;
            t.payments_failed += r.payments_failed;
            *revenue.entry(r.currency.clone()).or_insert(0i128) += r.revenue;
            *refunded.entry(r.currency.clone()).or_insert(0i128) += r.refunded_amount;
        }
        t.days = days.len();
        t.revenue = revenue.into_iter().map(|(c, v)| (c, money(v))).collect();
        t.refunded_amount = refunded.into_iter().map(|(c, v)| (c, money(v))).collect();
        t
    }
}

/// The days of `lo..=hi` (what gold has of the requested `from..=to`), a line per day summed
/// over regions and currencies, then the totals; money per currency.
pub fn range_kpis(
    rows: &[KpiRow],
    from: NaiveDate,
    to: NaiveDate,
    lo: NaiveDate,
    hi: NaiveDate,
    totals: &Totals,
) -> String {
    let mut out = String::new();
    let asked = |d: NaiveDate| {
        if d == NaiveDate::MIN || d == NaiveDate::MAX {
            "…".to_owned()
        } else {
            d.to_string()
        }
    };
    if lo > hi {
        let _ = writeln!(
            out,
            "no KPIs between {} and {} in gold",
            asked(from),
            asked(to)
        );
        return out;
    }
    let _ = writeln!(
        out,
        "range {} to {} (asked {} to {}): {} day(s) with KPIs",
        lo,
        hi,
        asked(from),
        asked(to),
        totals.days
    );
    let header = [
        "date", "orders", "cancel", "new", "return", "pay_try", "pay_ok", "pay_fail",
    ];
    let _ = writeln!(
        out,
        "{:>10} {}",
        header[0],
        header[1..]
            .iter()
            .map(|h| format!("{h:>8}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut by_day: BTreeMap<NaiveDate, [i64; 7]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kpi_date >= lo && r.kpi_date <= hi) {
        let d = by_day.entry(r.kpi_date).or_default();
        for (slot, v) in d.iter_mut().zip([
            r.orders_placed,
            r.orders_cancelled,
            r.new_customers,
            r.returning_customers,
            r.payments_attempted,
            r.payments_succeeded,
            r.payments_failed,
        ]) {
            *slot += v;
        }
    }
    let line = |label: &str, v: [i64; 7]| {
        format!(
            "{label:>10} {}",
            v.iter()
                .map(|n| format!("{n:>8}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    for (day, v) in &by_day {
        let _ = writeln!(out, "{}", line(&day.to_string(), *v));
    }
    let _ = writeln!(
        out,
        "{}",
        line(
            "total",
            [
                totals.orders_placed,
                totals.orders_cancelled,
                totals.new_customers,
                totals.returning_customers,
                totals.payments_attempted,
                totals.payments_succeeded,
                totals.payments_failed,
            ]
        )
    );
    let per_currency = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(c, v)| format!("{c} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "revenue:  {}", per_currency(&totals.revenue));
    let _ = writeln!(out, "refunded: {}", per_currency(&totals.refunded_amount));
    out
}
