use super::*;
use crate::values::parse_date;

/// One silver order version: (order_id, customer_id, status, currency, cents, updated hour,
/// batch, order_date, region).
type O<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    i64,
    i64,
    &'a str,
    &'a str,
    &'a str,
);
/// One silver payment version: (payment_id, order_id, status, currency, cents, updated hour,
/// batch, payment_date).
type P<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    i64,
    i64,
    &'a str,
    &'a str,
);

const HOUR: i64 = 3_600_000_000;

fn utc(values: Vec<i64>, name: &str) -> Column {
    Int64Chunked::from_vec(name.into(), values)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column()
}

fn money(values: Vec<i64>, name: &str) -> Column {
    Int128Chunked::from_vec(name.into(), values.into_iter().map(i128::from).collect())
        .into_decimal(18, 2)
        .unwrap()
        .into_series()
        .into_column()
}

fn dates(values: Vec<&str>, name: &str) -> Column {
    Int32Chunked::from_vec(
        name.into(),
        values.iter().map(|d| parse_date(d).unwrap()).collect(),
    )
    .into_date()
    .into_series()
    .into_column()
}

fn strs(values: Vec<&str>, name: &str) -> Column {
    Series::new(name.into(), values).into_column()
}

fn orders(rows: &[O<'_>]) -> LazyFrame {
    let c = |i: usize| {
        rows.iter()
            .map(move |r| [r.0, r.1, r.2, r.3, r.6, r.7, r.8][i])
            .collect::<Vec<_>>()
    };
    let updated: Vec<i64> = rows.iter().map(|r| r.5 * HOUR).collect();
    DataFrame::new(
        rows.len(),
        vec![
            strs(c(0), "order_id"),
            strs(c(1), "customer_id"),
            strs(c(2), "status"),
            strs(c(3), "currency"),
            money(rows.iter().map(|r| r.4).collect(), "total_amount"),
            utc(updated.clone(), "updated_at"),
            utc(updated, "_ingested_at"),
            strs(c(4), "_batch_id"),
            dates(c(5), "order_date"),
            strs(c(6), "customer_region"),
        ],
    )
    .unwrap()
    .lazy()
}

fn payments(rows: &[P<'_>]) -> LazyFrame {
    let c = |i: usize| {
        rows.iter()
            .map(move |r| [r.0, r.1, r.2, r.3, r.6, r.7][i])
            .collect::<Vec<_>>()
    };
    let updated: Vec<i64> = rows.iter().map(|r| r.5 * HOUR).collect();
    DataFrame::new(
        rows.len(),
        vec![
            strs(c(0), "payment_id"),
            strs(c(1), "order_id"),
            strs(c(2), "status"),
            strs(c(3), "currency"),
            money(rows.iter().map(|r| r.4).collect(), "amount"),
            utc(updated.clone(), "updated_at"),
            utc(updated, "_ingested_at"),
            strs(c(4), "_batch_id"),
            dates(c(5), "payment_date"),
        ],
    )
    .unwrap()
    .lazy()
}

/// The KPI row for (date, region, currency) as `name=value` text, for readable assertions.
fn row(
    kpis: &DataFrame,
    date: &str,
    region: &str,
    currency: &str,
) -> std::collections::BTreeMap<String, String> {
    let day = parse_date(date).unwrap();
    let dates = kpis
        .column("kpi_date")
        .unwrap()
        .date()
        .unwrap()
        .physical()
        .clone();
    let regions = kpis
        .column("customer_region")
        .unwrap()
        .str()
        .unwrap()
        .clone();
    let currencies = kpis.column("currency").unwrap().str().unwrap().clone();
    let i = (0..kpis.height())
        .find(|&i| {
            dates.get(i) == Some(day)
                && regions.get(i) == Some(region)
                && currencies.get(i) == Some(currency)
        })
        .unwrap_or_else(|| panic!("no row for {date} {region} {currency}"));
    COLUMNS[3..]
        .iter()
        .map(|name| {
            let c = kpis.column(name).unwrap();
            let v = match c.dtype() {
                DataType::Decimal(..) => c
                    .decimal()
                    .unwrap()
                    .physical()
                    .get(i)
                    .map_or("null".into(), |v| {
                        crate::values::format_decimal(v as i64, 2)
                    }),
                DataType::Float64 => c
                    .f64()
                    .unwrap()
                    .get(i)
                    .map_or("null".into(), |v| format!("{v:.4}")),
                _ => c
                    .i64()
                    .unwrap()
                    .get(i)
                    .map_or("null".into(), |v| v.to_string()),
            };
            (name.to_string(), v)
        })
        .collect()
}

fn check(kpis: &DataFrame, key: (&str, &str, &str), want: &[(&str, &str)]) {
    let got = row(kpis, key.0, key.1, key.2);
    for (name, value) in want {
        assert_eq!(got[*name], *value, "{name} of {key:?}: {got:?}");
    }
}

#[test]
fn one_day_of_orders_by_hand() {
    let o = [
        ("o1", "c1", "paid", "EUR", 1000, 1, "A", "2026-11-20", "EU"),
        (
            "o2",
            "c2",
            "shipped",
            "EUR",
            505,
            1,
            "A",
            "2026-11-20",
            "EU",
        ),
        (
            "o3",
            "c1",
            "cancelled",
            "EUR",
            700,
            1,
            "A",
            "2026-11-20",
            "EU",
        ),
        ("o4", "c3", "placed", "EUR", 300, 1, "A", "2026-11-20", "EU"),
    ];
    let kpis = daily_kpis(orders(&o), payments(&[]), &test_contracts(None)).unwrap();
    assert_eq!(kpis.height(), 1);
    let names: Vec<String> = kpis
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, COLUMNS);
    check(
        &kpis,
        ("2026-11-20", "EU", "EUR"),
        &[
            ("orders_placed", "4"),
            ("orders_cancelled", "1"),
            ("revenue", "15.05"),
            // 15.05 / 2 = 7.525, rounded half away from zero.
            ("avg_order_value", "7.53"),
            ("active_customers", "3"),
            ("new_customers", "3"),
            ("returning_customers", "0"),
            ("retention_rate", "0.0000"),
            ("payments_attempted", "0"),
            ("payment_success_rate", "null"),
            ("refunded_amount", "0.00"),
        ],
    );
}

#[test]
fn the_latest_version_across_files_wins_including_cancelled_then_reinstated() {
    let o = [
        // o1: paid in batch A, cancelled by a later export (batch B).
        ("o1", "c1", "paid", "EUR", 1000, 1, "A", "2026-11-20", "EU"),
        (
            "o1",
            "c1",
            "cancelled",
            "EUR",
            1000,
            5,
            "B",
            "2026-11-20",
            "EU",
        ),
        // o2: placed, cancelled, then reinstated and paid.
        (
            "o2",
            "c2",
            "placed",
            "EUR",
            2000,
            1,
            "A",
            "2026-11-20",
            "EU",
        ),
        (
            "o2",
            "c2",
            "cancelled",
            "EUR",
            2000,
            3,
            "B",
            "2026-11-20",
            "EU",
        ),
        ("o2", "c2", "paid", "EUR", 2000, 7, "C", "2026-11-20", "EU"),
    ];
    let kpis = daily_kpis(orders(&o), payments(&[]), &test_contracts(None)).unwrap();
    check(
        &kpis,
        ("2026-11-20", "EU", "EUR"),
        &[
            ("orders_placed", "2"),
            ("orders_cancelled", "1"),
            ("revenue", "20.00"),
            ("avg_order_value", "20.00"),
            ("active_customers", "1"),
            ("new_customers", "1"),
        ],
    );
}

#[test]
fn returning_and_new_customers_use_all_of_history() {
    let o = [
        (
            "o1",
            "c1",
            "delivered",
            "USD",
            500,
            1,
            "A",
            "2026-11-19",
            "NA",
        ),
        ("o2", "c1", "paid", "USD", 500, 1, "B", "2026-11-20", "NA"),
        // c2's first order was cancelled: their first real order is on the 20th.
        (
            "o3",
            "c2",
            "cancelled",
            "USD",
            500,
            1,
            "A",
            "2026-11-19",
            "NA",
        ),
        ("o4", "c2", "paid", "USD", 500, 1, "B", "2026-11-20", "NA"),
    ];
    let kpis = daily_kpis(orders(&o), payments(&[]), &test_contracts(None)).unwrap();
    check(
        &kpis,
        ("2026-11-19", "NA", "USD"),
        &[
            ("active_customers", "1"),
            ("new_customers", "1"),
            ("retention_rate", "0.0000"),
        ],
    );
    check(
        &kpis,
        ("2026-11-20", "NA", "USD"),
        &[
            ("active_customers", "2"),
            ("new_customers", "1"),
            ("returning_customers", "1"),
            ("retention_rate", "0.5000"),
        ],
    );
}

#[test]
fn payments_by_status_orphans_currencies_and_days_without_orders() {
    let o = [
        ("o1", "c1", "paid", "EUR", 1000, 1, "A", "2026-11-20", "EU"),
        ("o2", "c2", "paid", "USD", 1000, 1, "A", "2026-11-20", "EU"),
    ];
    let p = [
        ("p1", "o1", "succeeded", "EUR", 1000, 1, "A", "2026-11-20"),
        ("p2", "o1", "failed", "EUR", 1000, 1, "A", "2026-11-20"),
        ("p3", "o1", "pending", "EUR", 1000, 1, "A", "2026-11-20"),
        // Refunded the next day, after first succeeding (two versions).
        ("p4", "o2", "succeeded", "USD", 1000, 1, "A", "2026-11-21"),
        ("p4", "o2", "refunded", "USD", 1000, 9, "B", "2026-11-21"),
        // An orphan: its order never reached silver.
        ("p5", "o404", "succeeded", "EUR", 250, 1, "A", "2026-11-20"),
    ];
    let kpis = daily_kpis(orders(&o), payments(&p), &test_contracts(None)).unwrap();
    assert_eq!(
        kpis.height(),
        4,
        "EU/EUR, EU/USD and UNKNOWN/EUR on the 20th, EU/USD on the 21st"
    );
    check(
        &kpis,
        ("2026-11-20", "EU", "EUR"),
        &[
            ("payments_attempted", "2"),
            ("payments_succeeded", "1"),
            ("payments_failed", "1"),
            ("payment_success_rate", "0.5000"),
            ("revenue", "10.00"),
        ],
    );
    check(
        &kpis,
        ("2026-11-20", "EU", "USD"),
        &[("revenue", "10.00"), ("payments_attempted", "0")],
    );
    check(
        &kpis,
        ("2026-11-20", UNKNOWN_REGION, "EUR"),
        &[
            ("orders_placed", "0"),
            ("revenue", "0.00"),
            ("avg_order_value", "null"),
            ("retention_rate", "null"),
            ("payments_succeeded", "1"),
            ("payment_success_rate", "1.0000"),
        ],
    );
    check(
        &kpis,
        ("2026-11-21", "EU", "USD"),
        &[
            ("orders_placed", "0"),
            ("payments_attempted", "0"),
            ("payment_success_rate", "null"),
            ("refunded_amount", "10.00"),
        ],
    );
}

#[test]
fn averages_round_half_away_from_zero_in_hundredths() {
    assert_eq!(divide_half_away(5, 2), Some(3));
    assert_eq!(divide_half_away(4, 3), Some(1));
    assert_eq!(divide_half_away(-5, 2), Some(-3));
    assert_eq!(divide_half_away(1505, 2), Some(753));
    assert_eq!(divide_half_away(1, 0), None);
}

#[test]
fn a_payment_takes_its_orders_region_only_within_the_reference_window() {
    let o = [
        ("o1", "c1", "paid", "EUR", 1000, 1, "A", "2026-11-10", "EU"),
        ("o2", "c2", "paid", "EUR", 1000, 1, "A", "2026-11-25", "NA"),
    ];
    let p = [
        // 10 days after its order: inside a 10-day window.
        ("p1", "o1", "succeeded", "EUR", 100, 1, "A", "2026-11-20"),
        // 11 days after: outside it.
        ("p2", "o1", "succeeded", "EUR", 100, 1, "A", "2026-11-21"),
        // Before its order's day: outside it.
        ("p3", "o2", "succeeded", "EUR", 100, 1, "A", "2026-11-24"),
    ];
    let kpis = daily_kpis(orders(&o), payments(&p), &test_contracts(Some(10))).unwrap();
    check(
        &kpis,
        ("2026-11-20", "EU", "EUR"),
        &[("payments_succeeded", "1")],
    );
    check(
        &kpis,
        ("2026-11-21", UNKNOWN_REGION, "EUR"),
        &[("payments_succeeded", "1")],
    );
    check(
        &kpis,
        ("2026-11-24", UNKNOWN_REGION, "EUR"),
        &[("payments_succeeded", "1")],
    );
    // Without a window any order in silver gives its region.
    let kpis = daily_kpis(orders(&o), payments(&p), &test_contracts(None)).unwrap();
    check(
        &kpis,
        ("2026-11-21", "EU", "EUR"),
        &[("payments_succeeded", "1")],
    );
    check(
        &kpis,
        ("2026-11-24", "NA", "EUR"),
        &[("payments_succeeded", "1")],
    );
}

#[test]
fn the_latest_version_follows_the_contracts_version_column() {
    let hours = |h: [i64; 2], name: &str| utc(h.iter().map(|h| h * HOUR).collect(), name);
    // Two versions of one order whose `updated_at` and `changed_at` disagree on the newer.
    let versions = DataFrame::new(
        2,
        vec![
            strs(vec!["o1", "o1"], "order_id"),
            strs(vec!["paid", "cancelled"], "status"),
            hours([2, 1], "updated_at"),
            hours([1, 2], "changed_at"),
            hours([1, 1], "_ingested_at"),
            strs(vec!["A", "A"], "_batch_id"),
        ],
    )
    .unwrap()
    .lazy();
    let status = |contract: &crate::contract::Contract| -> String {
        let df = latest(versions.clone(), contract)
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(df.height(), 1, "one row per key");
        let status = df.column("status").unwrap().str().unwrap().get(0);
        status.unwrap().to_owned()
    };
    assert_eq!(
        status(&test_contracts(None).orders),
        "paid",
        "by updated_at"
    );
    let text = include_str!("../../../contracts/orders.toml");
    let renamed =
        crate::contract::Contract::from_toml(&text.replace("\"updated_at\"", "\"changed_at\""))
            .unwrap();
    assert_eq!(renamed.version_column().name, "changed_at");
    assert_eq!(status(&renamed), "cancelled", "by changed_at");
}

proptest::proptest! {
    /// `latest` keeps, of each key's versions, the one greatest by (version, ingested at,
    /// batch), and every key once: the same rows as sorting every version, whatever the number
    /// of versions a key has (nulls as one key).
    #[test]
    fn latest_keeps_each_keys_greatest_version(
        rows in proptest::collection::vec(
            (proptest::option::weighted(0.95, 0u8..12), 0i64..4, 0i64..3),
            0..60,
        )
    ) {
        let contracts = test_contracts(None);
        let key = contracts.orders.key_column().name.clone();
        let version = contracts.orders.version_column().name.clone();
        let keys: Vec<Option<String>> = rows.iter().map(|(k, _, _)| k.map(|k| format!("O{k}"))).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let ingested: Vec<i64> = rows.iter().map(|r| r.2).collect();
        // A batch id per row, so no two versions tie on all three columns.
        let batches: Vec<String> = (0..rows.len()).map(|i| format!("b{i:03}")).collect();
        let df = DataFrame::new(
            rows.len(),
            vec![
                Series::new(key.as_str().into(), keys.clone()).into_column(),
                Series::new(version.as_str().into(), versions.clone()).into_column(),
                Series::new(INGESTED_AT.into(), ingested.clone()).into_column(),
                Series::new(BATCH_ID.into(), batches.clone()).into_column(),
            ],
        )
        .unwrap();
        let got = latest(df.lazy(), &contracts.orders).unwrap().collect().unwrap();
        let mut got: Vec<(Option<String>, String)> = got
            .column(&key)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .zip(got.column(BATCH_ID).unwrap().str().unwrap().iter())
            .map(|(k, b)| (k.map(str::to_owned), b.unwrap().to_owned()))
            .collect();
        got.sort();
        let mut best: std::collections::BTreeMap<Option<String>, (i64, i64, String)> =
            std::collections::BTreeMap::new();
        for i in 0..rows.len() {
            let candidate = (versions[i], ingested[i], batches[i].clone());
            let entry = best.entry(keys[i].clone()).or_insert_with(|| candidate.clone());
            if candidate > *entry {
                *entry = candidate;
            }
        }
        let expected: Vec<(Option<String>, String)> =
            best.into_iter().map(|(k, (_, _, b))| (k, b)).collect();
        proptest::prop_assert_eq!(got, expected);
    }
}
