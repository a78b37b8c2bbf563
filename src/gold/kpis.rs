//! `daily_kpis`: one row per (kpi_date, customer_region, currency), computed with polars from
//! the latest version of every key. [`daily_kpis`] reads every version in silver (a full
//! recompute); [`kpis_of`] takes the latest versions of some dates plus each customer's first
//! order date, which is how the nightly run ([`super::incremental`]) recomputes only the days
//! that changed. Both share every definition below, so they cannot drift apart.

use polars::prelude::*;

use crate::contract::Contract;
use crate::silver::{BATCH_ID, INGESTED_AT};

/// The datasets the KPI definitions read: orders (by `order_date`) and payments (by
/// `payment_date`), as their contracts name them.
pub const INPUTS: [&str; 2] = ["orders", "payments"];

/// Order statuses that count as revenue.
const REVENUE_STATUSES: [&str; 3] = ["paid", "shipped", "delivered"];
/// A payment's region when its order is not in silver.
pub const UNKNOWN_REGION: &str = "UNKNOWN";
const KEYS: [&str; 3] = ["kpi_date", "customer_region", "currency"];

/// The gold table's columns, in order.
pub const COLUMNS: [&str; 16] = [
    "kpi_date",
    "customer_region",
    "currency",
    "orders_placed",
    "orders_cancelled",
    "revenue",
    "avg_order_value",
    "active_customers",
    "new_customers",
    "returning_customers",
    "retention_rate",
    "payments_attempted",
    "payments_succeeded",
    "payments_failed",
    "payment_success_rate",
    "refunded_amount",
];

fn any_of(column: &str, values: &[&str]) -> Expr {
    values
        .iter()
        .map(|v| col(column).eq(lit(*v)))
        .reduce(|a, b| a.or(b))
        .expect("at least one value")
}

/// The KPI inputs as the contracts define them.
#[derive(Debug, Clone)]
pub struct KpiContracts {
    pub orders: Contract,
    pub payments: Contract,
}

impl KpiContracts {
    /// The payments → orders reference window (`window_days`), which bounds region look-ups.
    pub fn window_days(&self) -> Option<u32> {
        self.payments
            .quality
            .references
            .iter()
            .find(|r| r.dataset == self.orders.name)
            .and_then(|r| r.window_days)
    }
}

/// The built-in orders and payments contracts, payments referencing orders within
/// `window_days` (`None`: any order counts).
#[cfg(test)]
pub(crate) fn test_contracts(window_days: Option<u32>) -> KpiContracts {
    let parse = |text: &str| Contract::from_toml(text).expect("a built-in contract parses");
    let orders = parse(include_str!("../../contracts/orders.toml"));
    let mut payments = parse(include_str!("../../contracts/payments.toml"));
    for reference in &mut payments.quality.references {
        if reference.dataset == orders.name {
            reference.window_days = window_days;
        }
    }
    KpiContracts { orders, payments }
}

/// The columns that order a key's versions, most significant first: the contract's
/// `version_column`, then the later ingestion (`_ingested_at`, then `_batch_id`), the rule
/// compaction and the warehouse MERGE apply too.
pub(crate) fn version_order(contract: &Contract) -> [Expr; 3] {
    [
        col(contract.version_column().name.as_str()),
        col(INGESTED_AT),
        col(BATCH_ID),
    ]
}

/// Latest version of every key of `contract` ([`version_order`]): the rows
/// [`latest_rows`](crate::silver::latest::latest_rows) keeps, in their order. Nothing is pushed
/// through it: a filter or a projection after it applies to the latest versions, not to the
/// versions they are chosen from.
pub(crate) fn latest(silver: LazyFrame, contract: &Contract) -> PolarsResult<LazyFrame> {
    let contract = contract.clone();
    Ok(silver.map(
        move |df| crate::silver::latest::latest_of(df, &contract),
        OptFlags::schema_only(),
        None,
        Some("latest"),
    ))
}

pub(crate) fn count(e: Expr) -> Expr {
    e.cast(DataType::Int64).sum()
}

/// Each customer's first day with a non-cancelled order (`customer_id`, `first_order_date`),
/// from latest order versions.
pub fn first_order_dates(latest_orders: LazyFrame) -> LazyFrame {
    latest_orders
        .filter(col("status").neq(lit("cancelled")))
        .group_by([col("customer_id")])
        .agg([col("order_date").min().alias(FIRST_ORDER_DATE)])
}

/// The column of [`first_order_dates`] holding the date.
pub const FIRST_ORDER_DATE: &str = "first_order_date";

/// Per-day order measures (money still as summed decimals). `first` gives each customer's first
/// non-cancelled order date over all history, which decides new vs returning.
fn order_measures(orders: LazyFrame, first: LazyFrame) -> LazyFrame {
    let not_cancelled = col("status").neq(lit("cancelled"));
    orders
        .join(
            first,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("order_date").alias("kpi_date"))
        .group_by(KEYS.map(col))
        .agg([
            len().cast(DataType::Int64).alias("orders_placed"),
            count(col("status").eq(lit("cancelled"))).alias("orders_cancelled"),
            col("total_amount")
                .filter(any_of("status", &REVENUE_STATUSES))
                .sum()
                .alias("revenue"),
            count(any_of("status", &REVENUE_STATUSES)).alias("revenue_orders"),
            col("customer_id")
                .filter(not_cancelled.clone())
                .n_unique()
                .cast(DataType::Int64)
                .alias("active_customers"),
            col("customer_id")
                .filter(not_cancelled.and(col("order_date").eq(col(FIRST_ORDER_DATE))))
                .n_unique()
                .cast(DataType::Int64)
                .alias("new_customers"),
        ])
}

/// The column [`join_orders`] adds beside `customer_region`: the order's `order_date`, null
/// when the orders joined do not hold the payment's order.
pub(crate) const PAYMENT_ORDER_DATE: &str = "_order_date";

/// `payments` with their order's `customer_region` and date ([`PAYMENT_ORDER_DATE`]), both null
/// when `orders` does not hold it: one row per payment when `orders` holds one row per order.
pub(crate) fn join_orders(payments: LazyFrame, orders: LazyFrame) -> LazyFrame {
    let regions = orders.select([
        col("order_id"),
        col("customer_region"),
        col("order_date").alias(PAYMENT_ORDER_DATE),
    ]);
    payments.join(
        regions,
        [col("order_id")],
        [col("order_id")],
        JoinArgs::new(JoinType::Left),
    )
}

/// Rows of [`join_orders`] with the region a payment counts under: its order's when the order's
/// date lies within the reference window ([`with_regions`]), else `UNKNOWN`.
pub(crate) fn region_in_window(joined: LazyFrame, window_days: Option<u32>) -> LazyFrame {
    let in_window = match window_days {
        Some(days) => {
            let age = (col("payment_date").cast(DataType::Int32)
                - col(PAYMENT_ORDER_DATE).cast(DataType::Int32))
            .cast(DataType::Int64);
            age.clone()
                .gt_eq(lit(0i64))
                .and(age.lt_eq(lit(i64::from(days))))
        }
        None => col(PAYMENT_ORDER_DATE).is_not_null(),
    };
    joined
        .with_column(
            when(in_window)
                .then(col("customer_region"))
                .otherwise(lit(NULL).cast(DataType::String))
                .fill_null(lit(UNKNOWN_REGION))
                .alias("customer_region"),
        )
        .drop(cols([PAYMENT_ORDER_DATE]))
}

/// Latest payments with the `customer_region` of their order: the order's latest version when
/// its `order_date` lies within the payments contract's reference window (at most
/// `window_days` before the payment's date and not after it, the rule the quality gate
/// checks), else `UNKNOWN`. The window is what lets the nightly run look regions up in a
/// bounded number of order partitions; without one, any order in `orders` counts.
pub fn with_regions(payments: LazyFrame, orders: LazyFrame, window_days: Option<u32>) -> LazyFrame {
    region_in_window(join_orders(payments, orders), window_days)
}

/// Per-day payment measures of latest payments that carry their region ([`with_regions`]).
fn payment_measures(payments: LazyFrame) -> LazyFrame {
    payments
        .with_column(col("payment_date").alias("kpi_date"))
        .group_by(KEYS.map(col))
        .agg([
            count(any_of("status", &["succeeded", "failed"])).alias("payments_attempted"),
            count(col("status").eq(lit("succeeded"))).alias("payments_succeeded"),
            count(col("status").eq(lit("failed"))).alias("payments_failed"),
            col("amount")
                .filter(col("status").eq(lit("refunded")))
                .sum()
                .alias("refunded_amount"),
        ])
}

/// Scaled integer values of a decimal column, nulls as 0.
pub(crate) fn cents(df: &DataFrame, name: &str) -> PolarsResult<Vec<i128>> {
    let column = df.column(name)?;
    let scaled = match column.dtype() {
        DataType::Decimal(_, 2) => column.decimal()?.physical().clone(),
        other => polars_bail!(ComputeError: "{name} is {other:?}, expected decimal(_, 2)"),
    };
    Ok((0..scaled.len())
        .map(|i| scaled.get(i).unwrap_or(0))
        .collect())
}

pub(crate) fn decimal_column(
    name: &str,
    values: impl Iterator<Item = Option<i128>>,
) -> PolarsResult<Column> {
    Ok(Int128Chunked::from_iter_options(name.into(), values)
        .into_decimal(18, 2)?
        .into_series()
        .into_column())
}

/// `numerator / denominator` rounded half away from zero, in hundredths.
pub fn divide_half_away(numerator: i128, denominator: i128) -> Option<i128> {
    if denominator == 0 {
        return None;
    }
    let (q, r) = (numerator / denominator, numerator % denominator);
    let round_up = 2 * r.abs() >= denominator.abs();
    Some(if round_up {
        q + numerator.signum() * denominator.signum()
    } else {
        q
    })
}

/// Computes `daily_kpis` from silver orders and payments (all files, all versions; partition
/// columns `order_date`, `customer_region`, `payment_date` included): a full recompute.
/// `contracts` say how each picks its latest versions and the reference window of payments to
/// orders ([`with_regions`]).
pub fn daily_kpis(
    orders: LazyFrame,
    payments: LazyFrame,
    contracts: &KpiContracts,
) -> PolarsResult<DataFrame> {
    // Read three times below: collected once, not left to polars to find the shared plan.
    let orders = latest(orders, &contracts.orders)?.collect()?.lazy();
    let payments = with_regions(
        latest(payments, &contracts.payments)?,
        orders.clone(),
        contracts.window_days(),
    );
    kpis_of(orders.clone(), first_order_dates(orders), payments)
}

/// `daily_kpis` rows of the days in `orders` and `payments`: latest order versions, each
/// customer's first order date over all history ([`first_order_dates`] shape), and latest
/// payments with their region ([`with_regions`]). A day's row is exact when both frames hold
/// every latest version of that day.
pub fn kpis_of(
    orders: LazyFrame,
    first: LazyFrame,
    payments: LazyFrame,
) -> PolarsResult<DataFrame> {
    let joined = order_measures(orders, first)
        .join(
            payment_measures(payments),
            KEYS.map(col),
            KEYS.map(col),
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .sort(KEYS, SortMultipleOptions::default())
        .collect()?;

    let n = joined.height();
    let int = |name: &str| -> PolarsResult<Vec<i64>> {
        let c = joined.column(name)?.i64()?.clone();
        Ok((0..n).map(|i| c.get(i).unwrap_or(0)).collect())
    };
    let revenue = cents(&joined, "revenue")?;
    let refunded = cents(&joined, "refunded_amount")?;
    let revenue_orders = int("revenue_orders")?;
    let active = int("active_customers")?;
    let new = int("new_customers")?;
    let attempted = int("payments_attempted")?;
    let succeeded = int("payments_succeeded")?;
    let rate = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
    let ints = |name: &str, v: Vec<i64>| Series::new(name.into(), v).into_column();

    let mut columns: Vec<Column> = KEYS
        .iter()
        .map(|k| joined.column(k).cloned())
        .collect::<PolarsResult<_>>()?;
    columns.push(ints("orders_placed", int("orders_placed")?));
    columns.push(ints("orders_cancelled", int("orders_cancelled")?));
    columns.push(decimal_column("revenue", revenue.iter().map(|&r| Some(r)))?);
    columns.push(decimal_column(
        "avg_order_value",
        revenue
            .iter()
            .zip(&revenue_orders)
            .map(|(&r, &n)| divide_half_away(r, i128::from(n))),
    )?);
    columns.push(ints("active_customers", active.clone()));
    columns.push(ints("new_customers", new.clone()));
    columns.push(ints(
        "returning_customers",
        active.iter().zip(&new).map(|(a, n)| a - n).collect(),
    ));
    let retention: Vec<Option<f64>> = active
        .iter()
        .zip(&new)
        .map(|(&a, &n)| rate(a - n, a))
        .collect();
    columns.push(Series::new("retention_rate".into(), retention).into_column());
    columns.push(ints("payments_attempted", attempted.clone()));
    columns.push(ints("payments_succeeded", succeeded.clone()));
    columns.push(ints("payments_failed", int("payments_failed")?));
    let success: Vec<Option<f64>> = succeeded
        .iter()
        .zip(&attempted)
        .map(|(&s, &a)| rate(s, a))
        .collect();
    columns.push(Series::new("payment_success_rate".into(), success).into_column());
    columns.push(decimal_column(
        "refunded_amount",
        refunded.iter().map(|&r| Some(r)),
    )?);
    DataFrame::new(n, columns)
}

#[cfg(test)]
mod tests;
