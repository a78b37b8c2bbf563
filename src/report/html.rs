//! The page itself. Tables hold gold's exact values: money as decimals from the scaled integers,
//! rates as the stored float (shortest text that reads back to the same `f64`), each in the
//! cell's `data-v` (a rate's visible text is a rounded percentage). Nulls are empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{NaiveDate, TimeDelta};

use super::charts::{Axis, Kind, Series, day_chart};
use super::{KpiRow, MethodRow, ReportError, ReportInput, sum_by};
use crate::gold::kpis::COLUMNS as KPI_COLUMNS;
use crate::gold::methods::COLUMNS as METHOD_COLUMNS;
use crate::quality::Verdict;
use crate::values::format_decimal;

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 10px}
.sub{color:#555;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card .k{font-size:12px;color:#555}.card .v{font-size:20px;font-weight:600;margin-top:2px}
.card .d{font-size:12px;margin-top:2px}.up{color:#1a7f37}.down{color:#b42318}.flat{color:#666}
.strip{display:flex;flex-wrap:wrap;gap:3px;margin-bottom:6px}
.strip a{display:block;width:18px;height:18px;border-radius:3px}
.pass{background:#2da44e}.warn{background:#d4a72c}.fail{background:#cf222e}.unchecked{background:#aaa}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(570px,1fr));gap:12px}
figure.chart{background:#fff;border:1px solid #ddd;border-radius:8px;margin:0;padding:4px}
figure.chart svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;background:#fff;font-size:12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0}
td.t{text-align:left}
tr.partial td{background:#fff8e1}
tr.partial td:first-child::after{content:" (partial day)";color:#8a6d00}
.scroll{max-height:480px;overflow:auto;border:1px solid #ddd;display:inline-block;max-width:100%}
.note{font-size:12px;color:#555}
"#;

/// How many currencies the money charts show.
const TOP_CURRENCIES: usize = 5;

/// HTML text escaping (text and attribute values).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn money(cents: i128) -> String {
    format_decimal(i64::try_from(cents).unwrap_or(i64::MAX), 2)
}

/// Totals over a set of days.
#[derive(Debug, Default, Clone)]
struct Totals {
    days: usize,
    orders: i64,
    revenue: BTreeMap<String, i128>,
    /// Orders counted in revenue, per currency, recovered from each row's revenue and AOV.
    revenue_orders: BTreeMap<String, f64>,
    refunds: BTreeMap<String, i128>,
    active: i64,
    new: i64,
    returning: i64,
    attempted: i64,
    succeeded: i64,
}

impl Totals {
    fn of<'a>(rows: impl Iterator<Item = &'a KpiRow>) -> Totals {
        let mut t = Totals::default();
        let mut days = BTreeSet::new();
        for r in rows {
            days.insert(r.kpi_date);
            t.orders += r.orders_placed;
            *t.revenue.entry(r.currency.clone()).or_default() += r.revenue;
            if let Some(aov) = r.avg_order_value.filter(|a| *a > 0) {
                *t.revenue_orders.entry(r.currency.clone()).or_default() +=
                    (r.revenue as f64 / aov as f64).round();
            }
            *t.refunds.entry(r.currency.clone()).or_default() += r.refunded_amount;
            t.active += r.active_customers;
            t.new += r.new_customers;
            t.returning += r.returning_customers;
            t.attempted += r.payments_attempted;
            t.succeeded += r.payments_succeeded;
        }
        t.days = days.len();
        t
    }

    fn rate(num: i64, den: i64) -> Option<f64> {
        (den > 0).then(|| num as f64 / den as f64)
    }
}

/// The change of a count or an amount, as a percentage of the previous value.
fn change(current: f64, previous: Option<f64>) -> (String, &'static str) {
    match previous {
        None => ("no previous data".into(), "flat"),
        Some(0.0) => ("previous period 0".into(), "flat"),
        Some(p) => {
            let pct = (current - p) / p * 100.0;
            let class = if pct > 0.05 {
                "up"
            } else if pct < -0.05 {
                "down"
            } else {
                "flat"
            };
            (format!("{pct:+.1}% vs previous"), class)
        }
    }
}

/// The change of a rate, in percentage points.
fn change_points(current: Option<f64>, previous: Option<f64>) -> (String, &'static str) {
    match (current, previous) {
        (Some(c), Some(p)) => {
            let pts = (c - p) * 100.0;
            let class = if pts > 0.05 {
                "up"
            } else if pts < -0.05 {
                "down"
            } else {
                "flat"
            };
            (format!("{pts:+.1} pts vs previous"), class)
        }
        _ => ("no previous data".into(), "flat"),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn card(out: &mut String, key: &str, value: &str, (delta, class): (String, &str)) {
    let _ = write!(
        out,
        r#"<div class="card"><div class="k">{}</div><div class="v">{}</div><div class="d {class}">{}</div></div>"#,
        esc(key),
        esc(value),
        esc(&delta)
    );
}

/// The period's average order value in a currency: revenue over the orders counted in it.
fn aov(t: &Totals, currency: &str) -> Option<f64> {
    let n = t.revenue_orders.get(currency).copied().unwrap_or(0.0);
    (n > 0.0).then(|| t.revenue.get(currency).copied().unwrap_or(0) as f64 / 100.0 / n)
}

/// Currencies by the period's revenue, largest first.
fn by_revenue(t: &Totals) -> Vec<String> {
    let mut c: Vec<(&String, &i128)> = t.revenue.iter().collect();
    c.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    c.into_iter().map(|(k, _)| k.clone()).collect()
}

fn headlines(out: &mut String, now: &Totals, before: &Totals) {
    let had = before.days > 0;
    let prev = |v: f64| had.then_some(v);
    out.push_str(r#"<div class="cards" id="headline">"#);
    card(
        out,
        "Orders placed",
        &now.orders.to_string(),
        change(now.orders as f64, prev(before.orders as f64)),
    );
    card(
        out,
        "New customers",
        &now.new.to_string(),
        change(now.new as f64, prev(before.new as f64)),
    );
    card(
        out,
        "Returning customers",
        &now.returning.to_string(),
        change(now.returning as f64, prev(before.returning as f64)),
    );
    let retention = |t: &Totals| Totals::rate(t.returning, t.active);
    card(
        out,
        "Retention rate",
        &pct(retention(now)),
        change_points(retention(now), retention(before)),
    );
    let success = |t: &Totals| Totals::rate(t.succeeded, t.attempted);
    card(
        out,
        "Payment success rate",
        &pct(success(now)),
        change_points(success(now), success(before)),
    );
    out.push_str("</div>");
    // Money per currency: amounts in different currencies are never added up.
    out.push_str(
        r#"<table id="headline_money" style="margin-top:10px"><thead><tr><th>currency</th><th>revenue</th><th>vs previous</th><th>avg order value</th><th>vs previous</th><th>refunded</th><th>vs previous</th></tr></thead><tbody>"#,
    );
    let delta = |out: &mut String, (text, class): (String, &str)| {
        let _ = write!(out, r#"<td class="{class}">{}</td>"#, esc(&text));
    };
    for currency in by_revenue(now) {
        let revenue = now.revenue.get(&currency).copied().unwrap_or(0);
        let refunds = now.refunds.get(&currency).copied().unwrap_or(0);
        let _ = write!(
            out,
            r#"<tr><td class="t">{}</td><td>{}</td>"#,
            esc(&currency),
            money(revenue)
        );
        let before_revenue = before.revenue.get(&currency).copied().unwrap_or(0);
        delta(out, change(revenue as f64, prev(before_revenue as f64)));
        let (now_aov, before_aov) = (aov(now, &currency), aov(before, &currency));
        let _ = write!(
            out,
            "<td>{}</td>",
            now_aov.map_or("–".into(), |a| format!("{a:.2}"))
        );
        match now_aov {
            Some(a) => delta(out, change(a, before_aov.filter(|_| had))),
            None => delta(out, ("–".into(), "flat")),
        }
        let _ = write!(out, "<td>{}</td>", money(refunds));
        let before_refunds = before.refunds.get(&currency).copied().unwrap_or(0);
        delta(out, change(refunds as f64, prev(before_refunds as f64)));
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn quality_strip(out: &mut String, input: &ReportInput) {
    let count = |v: Option<Verdict>| input.batches.iter().filter(|b| b.verdict == v).count();
    let _ = write!(
        out,
        r#"<p class="legend note">{} batch(es):<span class="pass"></span>pass {}<span class="warn"></span>warn {}<span class="fail"></span>fail {}<span class="unchecked"></span>not checked {}</p><div class="strip" id="quality">"#,
        input.batches.len(),
        count(Some(Verdict::Pass)),
        count(Some(Verdict::Warn)),
        count(Some(Verdict::Fail)),
        count(None)
    );
    for b in &input.batches {
        let (class, label) = match b.verdict {
            Some(Verdict::Pass) => ("pass", "PASS"),
            Some(Verdict::Warn) => ("warn", "WARN"),
            Some(Verdict::Fail) => ("fail", "FAIL"),
            None => ("unchecked", "NOT CHECKED"),
        };
        let _ = write!(
            out,
            r#"<a class="{class}" href="{}" title="{}"></a>"#,
            esc(&b.href),
            esc(&format!(
                "{label} {} {}: {}",
                b.dataset, b.batch_id, b.summary
            ))
        );
    }
    out.push_str("</div>");
}

/// Per-day values of the days of `days`, from (key, day, value) triples.
fn series_by<K: Ord + std::fmt::Display>(
    days: &[NaiveDate],
    items: impl IntoIterator<Item = (K, NaiveDate, f64)>,
) -> Vec<Series> {
    let index: BTreeMap<NaiveDate, usize> = days.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let mut by: BTreeMap<K, Vec<Option<f64>>> = BTreeMap::new();
    for (k, day, v) in items {
        let Some(&i) = index.get(&day) else { continue };
        let values = by.entry(k).or_insert_with(|| vec![None; days.len()]);
        values[i] = Some(values[i].unwrap_or(0.0) + v);
    }
    by.into_iter()
        .map(|(k, values)| Series {
            name: k.to_string(),
            values,
        })
        .collect()
}

fn charts(
    input: &ReportInput,
    rows: &[&KpiRow],
    methods: &[&MethodRow],
) -> Result<Vec<String>, ReportError> {
    let mut days = Vec::new();
    let mut d = input.from;
    while d <= input.to {
        days.push(d);
        d += TimeDelta::days(1);
    }
    let partial = days.iter().position(|d| *d == input.today);
    let cents = |c: i128| c as f64 / 100.0;
    // Money charts show the largest currencies (never added across currencies); the tables have
    // them all.
    let top: Vec<String> = by_revenue(&Totals::of(rows.iter().copied()))
        .into_iter()
        .take(TOP_CURRENCIES)
        .collect();
    let in_top = |r: &&&KpiRow| top.contains(&r.currency);
    let in_order = |mut series: Vec<Series>| {
        series.sort_by_key(|s| top.iter().position(|c| *c == s.name));
        series
    };

    let revenue = in_order(series_by(
        &days,
        rows.iter()
            .filter(in_top)
            .map(|r| (r.currency.clone(), r.kpi_date, cents(r.revenue))),
    ));
    // The largest currency's revenue by region (amounts of one currency may be stacked).
    let main_currency = top.first().cloned().unwrap_or_default();
    let revenue_by_region = series_by(
        &days,
        rows.iter()
            .filter(|r| r.currency == main_currency)
            .map(|r| (r.customer_region.clone(), r.kpi_date, cents(r.revenue))),
    );
    let orders = series_by(
        &days,
        rows.iter().map(|r| {
            (
                r.customer_region.clone(),
                r.kpi_date,
                r.orders_placed as f64,
            )
        }),
    );
    let aov = in_order(
        top.iter()
            .map(|c| Series {
                name: c.clone(),
                values: days
                    .iter()
                    .map(|d| {
                        aov(
                            &Totals::of(rows.iter().copied().filter(|r| r.kpi_date == *d)),
                            c,
                        )
                    })
                    .collect(),
            })
            .collect(),
    );
    let customers = series_by(
        &days,
        rows.iter().flat_map(|r| {
            [
                ("1 new", r.kpi_date, r.new_customers as f64),
                ("2 returning", r.kpi_date, r.returning_customers as f64),
            ]
        }),
    )
    .into_iter()
    .map(|mut s| {
        s.name = s.name[2..].to_owned();
        s
    })
    .collect::<Vec<_>>();
    let per_day = |f: &dyn Fn(&KpiRow) -> (i64, i64)| -> Vec<Option<f64>> {
        let sums = sum_by(rows.iter().map(|r| {
            let (n, d) = f(r);
            (r.kpi_date, Pair(n, d))
        }));
        days.iter()
            .map(|d| {
                sums.get(d)
                    .and_then(|Pair(n, d)| (*d > 0).then(|| *n as f64 / *d as f64))
            })
            .collect()
    };
    let rates = vec![
        Series {
            name: "retention rate".into(),
            values: per_day(&|r| (r.returning_customers, r.active_customers)),
        },
        Series {
            name: "payment success rate".into(),
            values: per_day(&|r| (r.payments_succeeded, r.payments_attempted)),
        },
    ];
    let refunds = in_order(series_by(
        &days,
        rows.iter()
            .filter(in_top)
            .map(|r| (r.currency.clone(), r.kpi_date, cents(r.refunded_amount))),
    ));
    let mix = series_by(
        &days,
        methods
            .iter()
            .map(|m| (m.payment_method.clone(), m.kpi_date, m.payments as f64)),
    );
    Ok(vec![
        day_chart(
            &format!("Revenue per day (top {TOP_CURRENCIES} currencies)"),
            &days,
            &revenue,
            Kind::Lines,
            Axis::Number,
            partial,
        )?,
        day_chart(
            &format!("Revenue per day by region, {main_currency}"),
            &days,
            &revenue_by_region,
            Kind::StackedBars,
            Axis::Number,
            partial,
        )?,
        day_chart(
            "Orders placed per day, by region",
            &days,
            &orders,
            Kind::StackedBars,
            Axis::Number,
            partial,
        )?,
        day_chart(
            &format!("Average order value (top {TOP_CURRENCIES} currencies)"),
            &days,
            &aov,
            Kind::Lines,
            Axis::Number,
            partial,
        )?,
        day_chart(
            "New vs returning customers",
            &days,
            &customers,
            Kind::StackedBars,
            Axis::Number,
            partial,
        )?,
        day_chart(
            "Retention and payment success rates",
            &days,
            &rates,
            Kind::Lines,
            Axis::Percent,
            partial,
        )?,
        day_chart(
            &format!("Refunded amount per day (top {TOP_CURRENCIES} currencies)"),
            &days,
            &refunds,
            Kind::Lines,
            Axis::Number,
            partial,
        )?,
        day_chart(
            "Payment method mix (payments per day)",
            &days,
            &mix,
            Kind::StackedBars,
            Axis::Number,
            partial,
        )?,
    ])
}

/// A numerator and denominator summed together.
#[derive(Debug, Clone, Copy, Default)]
struct Pair(i64, i64);

impl std::ops::Add for Pair {
    type Output = Pair;
    fn add(self, o: Pair) -> Pair {
        Pair(self.0 + o.0, self.1 + o.1)
    }
}

/// A table cell: `text` shown, `value` exact in `data-v`.
fn cell(out: &mut String, value: &str, text: &str, left: bool) {
    let _ = write!(
        out,
        r#"<td{} data-v="{}">{}</td>"#,
        if left { r#" class="t""# } else { "" },
        esc(value),
        esc(text)
    );
}

fn float_cell(out: &mut String, v: Option<f64>) {
    match v {
        // `{}` of an f64 is the shortest text that parses back to the same value.
        Some(v) => cell(out, &v.to_string(), &format!("{:.1}%", v * 100.0), false),
        None => cell(out, "", "", false),
    }
}

fn kpi_table(out: &mut String, rows: &[&KpiRow], today: NaiveDate) {
    out.push_str(r#"<div class="scroll"><table id="daily_kpis"><thead><tr>"#);
    for c in KPI_COLUMNS {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str(if r.kpi_date == today {
            r#"<tr class="partial">"#
        } else {
            "<tr>"
        });
        let date = r.kpi_date.format("%Y-%m-%d").to_string();
        cell(out, &date, &date, true);
        cell(out, &r.customer_region, &r.customer_region, true);
        cell(out, &r.currency, &r.currency, true);
        for n in [r.orders_placed, r.orders_cancelled] {
            cell(out, &n.to_string(), &n.to_string(), false);
        }
        cell(out, &money(r.revenue), &money(r.revenue), false);
        let aov = r.avg_order_value.map(money).unwrap_or_default();
        cell(out, &aov, &aov, false);
        for n in [r.active_customers, r.new_customers, r.returning_customers] {
            cell(out, &n.to_string(), &n.to_string(), false);
        }
        float_cell(out, r.retention_rate);
        for n in [
            r.payments_attempted,
            r.payments_succeeded,
            r.payments_failed,
        ] {
            cell(out, &n.to_string(), &n.to_string(), false);
        }
        float_cell(out, r.payment_success_rate);
        cell(
            out,
            &money(r.refunded_amount),
            &money(r.refunded_amount),
            false,
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

fn method_table(out: &mut String, rows: &[&MethodRow], today: NaiveDate) {
    out.push_str(r#"<div class="scroll"><table id="payment_methods_daily"><thead><tr>"#);
    for c in METHOD_COLUMNS {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str(if r.kpi_date == today {
            r#"<tr class="partial">"#
        } else {
            "<tr>"
        });
        let date = r.kpi_date.format("%Y-%m-%d").to_string();
        for t in [&date, &r.customer_region, &r.currency, &r.payment_method] {
            cell(out, t, t, true);
        }
        for n in [
            r.payments,
            r.payments_succeeded,
            r.payments_failed,
            r.payments_pending,
            r.payments_refunded,
        ] {
            cell(out, &n.to_string(), &n.to_string(), false);
        }
        for m in [r.succeeded_amount, r.refunded_amount] {
            cell(out, &money(m), &money(m), false);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

/// The page.
pub fn render(input: &ReportInput) -> Result<String, ReportError> {
    let in_period = |d: NaiveDate| d >= input.from && d <= input.to;
    let rows: Vec<&KpiRow> = input
        .kpis
        .iter()
        .filter(|r| in_period(r.kpi_date))
        .collect();
    let methods: Vec<&MethodRow> = input
        .methods
        .iter()
        .filter(|r| in_period(r.kpi_date))
        .collect();
    let previous_from = input.previous_from();
    let now = Totals::of(rows.iter().copied());
    let before = Totals::of(
        input
            .kpis
            .iter()
            .filter(|r| r.kpi_date >= previous_from && r.kpi_date < input.from),
    );

    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>{STYLE}</style></head><body>"#,
        esc(&input.title)
    );
    let _ = write!(
        out,
        r#"<h1>{}</h1><p class="sub" id="period">{} to {} ({} day(s) with data), against {} to {}{}</p>"#,
        esc(&input.title),
        input.from,
        input.to,
        now.days,
        previous_from,
        input.from - TimeDelta::days(1),
        if in_period(input.today) {
            format!(
                ". {} is today (UTC) and still partial: its exports have not all arrived",
                input.today
            )
        } else {
            String::new()
        }
    );
    out.push_str("<h2>Headline</h2>");
    headlines(&mut out, &now, &before);
    out.push_str(
        r#"<p class="note">Money is per currency, never converted or added across currencies. An average order value over several days is derived from the daily values (revenue over the orders counted in it); the tables at the end hold gold's exact figures.</p>"#,
    );
    out.push_str("<h2>Quality of the period's batches</h2>");
    quality_strip(&mut out, input);
    out.push_str(r#"<h2>Trends</h2><div class="charts">"#);
    for (i, svg) in charts(input, &rows, &methods)?.iter().enumerate() {
        let _ = write!(
            out,
            r#"<figure class="chart" id="chart-{i}">{svg}</figure>"#
        );
    }
    out.push_str("</div>");
    out.push_str("<h2>daily_kpis</h2>");
    kpi_table(&mut out, &rows, input.today);
    out.push_str("<h2>payment_methods_daily</h2>");
    method_table(&mut out, &methods, input.today);
    out.push_str("</body></html>\n");
    Ok(out)
}
