use super::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn kpi(day: &str, region: &str, currency: &str, orders: i64, revenue: i128) -> KpiRow {
    KpiRow {
        kpi_date: d(day),
        customer_region: region.into(),
        currency: currency.into(),
        orders_placed: orders,
        orders_cancelled: 0,
        revenue,
        avg_order_value: (orders > 0).then(|| revenue / i128::from(orders)),
        active_customers: orders,
        new_customers: 1,
        returning_customers: orders - 1,
        retention_rate: (orders > 0).then(|| (orders - 1) as f64 / orders as f64),
        payments_attempted: 3,
        payments_succeeded: 2,
        payments_failed: 1,
        payment_success_rate: Some(2.0 / 3.0),
        refunded_amount: 5,
    }
}

fn method(day: &str, m: &str, payments: i64) -> MethodRow {
    MethodRow {
        kpi_date: d(day),
        customer_region: "EU".into(),
        currency: "EUR".into(),
        payment_method: m.into(),
        payments,
        payments_succeeded: payments,
        payments_failed: 0,
        payments_pending: 0,
        payments_refunded: 0,
        succeeded_amount: 1999,
        refunded_amount: 0,
    }
}

#[test]
fn a_page_has_headline_changes_partial_day_verdicts_charts_and_exact_tables() {
    let kpis = vec![
        kpi("2026-11-18", "EU", "EUR", 2, 2000),
        kpi("2026-11-19", "EU", "EUR", 4, 3000),
        kpi("2026-11-20", "EU", "EUR", 3, 10_001),
        kpi("2026-11-20", "NA", "USD", 1, 50),
        kpi("2026-11-21", "EU", "EUR", 1, 999),
        // Outside both periods: ignored.
        kpi("2026-11-01", "EU", "EUR", 100, 1),
    ];
    let methods = vec![
        method("2026-11-20", "card", 2),
        method("2026-11-21", "paypal", 1),
    ];
    let batches = vec![BatchVerdict {
        dataset: "orders".into(),
        batch_id: "b<1>".into(),
        verdict: Some(Verdict::Fail),
        summary: "1 of 7 checks failed".into(),
        href: "../../quality/orders/b1.json".into(),
    }];
    let input = input_for(
        "KPIs".into(),
        d("2026-11-20"),
        d("2026-11-21"),
        d("2026-11-21"),
        &kpis,
        &methods,
        batches,
    );
    assert_eq!(input.previous_from(), d("2026-11-18"));
    assert_eq!(input.kpis.len(), 5, "the period and the one before");
    let page = render(&input).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    // Nothing fetched: no script, stylesheet, image or import from anywhere (the SVG namespace
    // URI is a name, not a fetch).
    for forbidden in [
        "<script",
        "<link",
        "<img",
        "src=",
        "href=\"http",
        "url(",
        "@import",
    ] {
        assert!(
            !page.contains(forbidden),
            "{forbidden} in a self-contained page"
        );
    }
    // Orders 3+1+1 = 5 against 2+4 = 6: -16.7%.
    assert!(
        page.contains(r#"<div class="v">5</div><div class="d down">-16.7% vs previous</div>"#),
        "{page}"
    );
    // EUR revenue 110.00 against 50.00; USD had none before.
    assert!(
        page.contains(
            r#"<tr><td class="t">EUR</td><td>110.00</td><td class="up">+120.0% vs previous</td>"#
        ),
        "{page}"
    );
    assert!(page.contains(
        r#"<tr><td class="t">USD</td><td>0.50</td><td class="flat">previous period 0</td>"#
    ));
    assert!(page.contains(r#"<a class="fail" href="../../quality/orders/b1.json" title="FAIL orders b&lt;1&gt;: 1 of 7 checks failed"></a>"#));
    assert_eq!(page.matches(r#"<figure class="chart""#).count(), 8);
    assert!(
        page.contains("Revenue per day by region, EUR"),
        "the largest currency"
    );
    assert_eq!(
        page.matches(">\npartial day\n</text>").count(),
        8,
        "marked on every chart"
    );
    assert_eq!(
        page.matches(r#"<tr class="partial">"#).count(),
        2,
        "a kpi and a method row"
    );
    assert!(
        page.contains(r#"<td data-v="100.01">100.01</td>"#),
        "exact money"
    );
    assert!(
        page.contains(r#"<td data-v="0.6666666666666666">66.7%</td>"#),
        "exact rates"
    );
    assert!(
        !page.contains("2026-11-18</td>"),
        "the previous period is not in the tables"
    );
}

#[test]
fn ranges_of_the_index_and_of_a_month() {
    assert_eq!(
        month_range("2026-02"),
        Some((d("2026-02-01"), d("2026-02-28")))
    );
    assert_eq!(month_range("2026-13"), None);
    let rows = [
        kpi("2026-11-21", "EU", "EUR", 1, 1),
        kpi("2026-09-01", "EU", "EUR", 1, 1),
    ];
    assert_eq!(index_range(&rows), Some((d("2026-10-23"), d("2026-11-21"))));
    assert_eq!(
        index_range(&rows[..1]),
        Some((d("2026-11-21"), d("2026-11-21"))),
        "no earlier than the first day of gold"
    );
    assert_eq!(index_range(&[]), None);
}

#[test]
fn a_batch_belongs_to_a_period_by_its_dates_else_by_its_arrival() {
    let batch = |dates: &[&str], ingested: &str| LakeBatch {
        dataset: "orders".into(),
        batch_id: "b".into(),
        dates: dates.iter().map(|s| d(s)).collect(),
        ingested: Some(d(ingested)),
        verdict: Some(Verdict::Warn),
        summary: String::new(),
        key: "quality/orders/b.json".into(),
    };
    let (from, to) = (d("2026-11-10"), d("2026-11-20"));
    assert!(batch(&["2026-11-09", "2026-11-10"], "2026-12-01").in_period(from, to));
    assert!(
        !batch(&["2026-11-21"], "2026-11-15").in_period(from, to),
        "dates decide"
    );
    assert!(
        batch(&[], "2026-11-21").in_period(from, to),
        "the day after the period"
    );
    assert!(!batch(&[], "2026-11-22").in_period(from, to));
    assert!(!batch(&[], "2026-11-09").in_period(from, to));
    let shown = period_batches(&[batch(&["2026-11-12"], "2026-11-13")], from, to, &|k| {
        format!("../../{k}")
    });
    assert_eq!(shown[0].href, "../../quality/orders/b.json");
    assert_eq!(shown[0].verdict, Some(Verdict::Warn));
}
