//! `payment_methods_daily`: one row per (kpi_date, customer_region, currency, payment_method),
//! computed with polars from the latest version of every payment across all silver files. The
//! day and region are the ones `daily_kpis` gives payments: `payment_date`, and the order's
//! `customer_region` (`UNKNOWN` when the order is not in silver).

use polars::prelude::*;

use super::kpis::{KpiContracts, cents, count, decimal_column, latest, with_regions};

/// The gold table's name (its objects are `gold/payment_methods_daily/month=YYYY-MM/…`).
pub const TABLE: &str = "payment_methods_daily";

const KEYS: [&str; 4] = ["kpi_date", "customer_region", "currency", "payment_method"];

/// The gold table's columns, in order.
pub const COLUMNS: [&str; 11] = [
    "kpi_date",
    "customer_region",
    "currency",
    "payment_method",
    "payments",
    "payments_succeeded",
    "payments_failed",
    "payments_pending",
    "payments_refunded",
    "succeeded_amount",
    "refunded_amount",
];

/// Money columns: decimal(18,2), exact.
pub const MONEY: [&str; 2] = ["succeeded_amount", "refunded_amount"];

/// Computes `payment_methods_daily` from silver orders and payments (all files, all versions;
/// partition columns included), as `daily_kpis` reads them: a full recompute.
pub fn payment_methods_daily(
    orders: LazyFrame,
    payments: LazyFrame,
    contracts: &KpiContracts,
) -> PolarsResult<DataFrame> {
    let orders = latest(orders, &contracts.orders)?;
    methods_of(with_regions(
        latest(payments, &contracts.payments)?,
        orders,
        contracts.window_days(),
    ))
}

/// `payment_methods_daily` rows of the days in `payments`: latest payments carrying their
/// region ([`with_regions`]).
pub fn methods_of(payments: LazyFrame) -> PolarsResult<DataFrame> {
    let status = |s: &str| col("status").eq(lit(s.to_owned()));
    let grouped = payments
        .with_columns([
            col("payment_date").alias("kpi_date"),
            col("method").alias("payment_method"),
        ])
        .group_by(KEYS.map(col))
        .agg([
            len().cast(DataType::Int64).alias("payments"),
            count(status("succeeded")).alias("payments_succeeded"),
            count(status("failed")).alias("payments_failed"),
            count(status("pending")).alias("payments_pending"),
            count(status("refunded")).alias("payments_refunded"),
            col("amount")
                .filter(status("succeeded"))
                .sum()
                .alias("succeeded_amount"),
            col("amount")
                .filter(status("refunded"))
                .sum()
                .alias("refunded_amount"),
        ])
        .sort(KEYS, SortMultipleOptions::default())
        .collect()?;

    let mut columns: Vec<Column> = COLUMNS[..9]
        .iter()
        .map(|k| grouped.column(k).cloned())
        .collect::<PolarsResult<_>>()?;
    for name in MONEY {
        let values = cents(&grouped, name)?;
        columns.push(decimal_column(name, values.into_iter().map(Some))?);
    }
    DataFrame::new(grouped.height(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{format_decimal, parse_date};

    const HOUR: i64 = 3_600_000_000;

    fn frame(columns: Vec<Column>) -> LazyFrame {
        let n = columns[0].len();
        DataFrame::new(n, columns).unwrap().lazy()
    }
    fn strs(name: &str, v: &[&str]) -> Column {
        Series::new(name.into(), v.to_vec()).into_column()
    }
    fn utc(name: &str, hours: &[i64]) -> Column {
        Int64Chunked::from_vec(name.into(), hours.iter().map(|h| h * HOUR).collect())
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_series()
            .into_column()
    }
    fn dates(name: &str, v: &[&str]) -> Column {
        Int32Chunked::from_vec(
            name.into(),
            v.iter().map(|d| parse_date(d).unwrap()).collect(),
        )
        .into_date()
        .into_series()
        .into_column()
    }

    #[test]
    fn counts_and_exact_amounts_per_day_region_currency_and_method() {
        let orders = frame(vec![
            strs("order_id", &["o1", "o2"]),
            strs("customer_region", &["EU", "NA"]),
            utc("updated_at", &[1, 1]),
            utc("_ingested_at", &[1, 1]),
            strs("_batch_id", &["A", "A"]),
            dates("order_date", &["2026-11-19", "2026-11-20"]),
        ]);
        // p2 is refunded in a later version; p5's order is not in silver.
        let ids = ["p1", "p2", "p2", "p3", "p4", "p5", "p6"];
        let order = ["o1", "o1", "o1", "o1", "o2", "o404", "o1"];
        let method = ["card", "card", "card", "card", "paypal", "card", "card"];
        let status = [
            "succeeded",
            "succeeded",
            "refunded",
            "failed",
            "succeeded",
            "pending",
            "succeeded",
        ];
        let cents: [i128; 7] = [1001, 250, 250, 999, 1234, 500, 1];
        let day = [
            "2026-11-20",
            "2026-11-20",
            "2026-11-20",
            "2026-11-20",
            "2026-11-20",
            "2026-11-20",
            "2026-11-21",
        ];
        let payments = frame(vec![
            strs("payment_id", &ids),
            strs("order_id", &order),
            strs("method", &method),
            strs("status", &status),
            strs("currency", &["EUR"; 7]),
            Int128Chunked::from_vec("amount".into(), cents.to_vec())
                .into_decimal(18, 2)
                .unwrap()
                .into_series()
                .into_column(),
            utc("updated_at", &[1, 1, 5, 1, 1, 1, 1]),
            utc("_ingested_at", &[1, 1, 5, 1, 1, 1, 1]),
            strs("_batch_id", &["A", "A", "B", "A", "A", "A", "A"]),
            dates("payment_date", &day),
        ]);
        let out = payment_methods_daily(orders, payments, &crate::gold::kpis::test_contracts(None))
            .unwrap();
        assert_eq!(
            out.get_column_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            COLUMNS.to_vec(),
            "columns in order"
        );
        let text = |name: &str, i: usize| -> String {
            let c = out.column(name).unwrap();
            match c.dtype() {
                DataType::Decimal(_, _) => {
                    format_decimal(c.decimal().unwrap().physical().get(i).unwrap() as i64, 2)
                }
                DataType::Date => {
                    crate::values::format_date(c.date().unwrap().physical().get(i).unwrap())
                }
                DataType::Int64 => c.i64().unwrap().get(i).unwrap().to_string(),
                _ => c.str().unwrap().get(i).unwrap().to_owned(),
            }
        };
        let rows: Vec<String> = (0..out.height())
            .map(|i| {
                COLUMNS
                    .iter()
                    .map(|c| text(c, i))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            rows,
            [
                "2026-11-20 EU EUR card 3 1 1 0 1 10.01 2.50",
                "2026-11-20 NA EUR paypal 1 1 0 0 0 12.34 0.00",
                "2026-11-20 UNKNOWN EUR card 1 0 0 1 0 0.00 0.00",
                "2026-11-21 EU EUR card 1 1 0 0 0 0.01 0.00",
            ]
        );
        let amount = out.column("succeeded_amount").unwrap().dtype().clone();
        assert!(matches!(amount, DataType::Decimal(18, 2)), "{amount:?}");
    }
}
