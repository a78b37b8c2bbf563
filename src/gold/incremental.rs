//! The nightly KPIs: recompute only the days the night's batches changed, from those days'
//! silver partitions and a small state the run keeps itself ([`KpiState`]).
//!
//! Which days: every date partition a new batch wrote, plus
//! - the dates holding an older version of a key a new batch changed (its old row must leave
//!   that day). Older versions are looked for within the contract's `max_date_move_days` of
//!   the new version's date ([`Contract::max_date_move_days`]): a newer version may move a key
//!   to another day by at most that much. Where a key moved, a tombstone
//!   `(dataset, key, old date, newest version)` is kept, so a later recompute of the old day
//!   skips the stale row without looking for it again. Tombstones are as many as keys that
//!   ever moved day: rare, and never more than silver's versions;
//! - the payment dates whose region may change because an order is new or changed day or
//!   region (a status update changes none): payments of an order lie within the payments
//!   contract's reference window after it (`window_days`), which bounds the search;
//! - the first and the new first day of each customer whose first non-cancelled order date
//!   changed (new vs returning changes on both).
//!
//! Each customer's first non-cancelled order date is the state (`first_orders`). It changes
//! only with that customer's orders on the recomputed days: earlier when a late earlier order
//! arrives; later when the first order is cancelled or moved, and then the customer's next
//! order is searched for among the other days after the old first (rare; the one read not
//! bounded by the night's data). The state outlives silver's expiry, so KPIs do not change when
//! old files expire. It holds a row per customer ever, so it is kept in buckets by customer hash
//! ([`FirstOrderBuckets`], doubled as customers arrive) and a night holds at most two buckets at
//! a time (the next is read while one is decided): its memory stays bounded however many customers a shop has had, while its time still grows
//! with them (each bucket is read twice, and rewritten when it changed).
//!
//! Everything else (which version is latest, every measure) is the definition
//! [`super::kpis`] and [`super::methods`] share with the full recompute, so the two cannot
//! disagree; a property test checks they agree row for row.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use super::kpis::{self, FIRST_ORDER_DATE, KpiContracts, first_order_dates, latest, version_order};
use super::methods;
use super::probe::one_of;
use super::writer::GoldError;
use crate::contract::Contract;
use crate::silver::read::{day_bytes, scan_dates};
use crate::silver::{BATCH_ID, INGESTED_AT};
use crate::values;

/// Where the nightly run reads silver: a dataset's date partitions as local files.
#[async_trait::async_trait]
pub trait SilverDates: Send + Sync {
    /// A directory laid out like the lake (`processed/<dataset>/<date>=D/…`) that holds every
    /// file of `contract`'s partitions of `dates` (downloaded first when the lake is remote).
    async fn prepare(
        &self,
        contract: &Contract,
        dates: &BTreeSet<NaiveDate>,
    ) -> Result<PathBuf, GoldError>;
    /// The dates of `contract` that have data, after `after`.
    async fn dates_after(
        &self,
        contract: &Contract,
        after: NaiveDate,
    ) -> Result<BTreeSet<NaiveDate>, GoldError>;
}

/// The first-order state between runs: a row per customer ever (`customer_id`,
/// `first_order_date`), in buckets by customer hash ([`bucket_of`]). A bucket is a base object
/// and at most one delta object: the rows of the customers whose first day changed since the
/// base was written (a null date: the customer has no non-cancelled order any more). A night
/// rewrites only a changed bucket's delta, the night's changes merged into it, and folds the
/// delta into a new base once it holds more than a share of the base's rows
/// ([`DELTA_SHARE`]), so what a night writes follows the night's customers, not every
/// customer ever. A night holds at most two buckets at a time, so its memory does not grow with
/// the customers of all history (its time does: every base is read to decide the night).
#[async_trait::async_trait]
pub trait FirstOrderBuckets: Send + Sync {
    /// Buckets of the state before the night (a power of two), or 0: no state before (a full
    /// recompute writes every bucket anew).
    fn count(&self) -> usize;
    /// The base of bucket `bucket` before the night.
    async fn read(&self, bucket: usize) -> Result<DataFrame, GoldError>;
    /// The delta of bucket `bucket` before the night (empty when it has none).
    async fn read_delta(&self, bucket: usize) -> Result<DataFrame, GoldError>;
    /// Stores bucket `bucket` of the `count` buckets of the state after the night as a base
    /// (`rows`, every customer of the bucket) without a delta.
    async fn write(&self, bucket: usize, count: usize, rows: DataFrame) -> Result<(), GoldError>;
    /// Stores `rows` as bucket `bucket`'s delta after the night; its base stays the one before
    /// (and the count unchanged).
    async fn write_delta(&self, bucket: usize, rows: DataFrame) -> Result<(), GoldError>;
    /// Bucket `bucket` is the same after the night (and the count unchanged): the state after
    /// the night keeps the one before, base and delta.
    async fn keep(&self, bucket: usize) -> Result<(), GoldError>;
}

/// A bucket's delta is folded into a new base once it holds more than 1/`DELTA_SHARE` of the
/// base's rows: deciding a night reads the base and the delta and applies one to the other, so
/// the delta is kept small against the base; writing the base is most of what a night that
/// folds costs (on the H=365 night, 4 bases of about 575 k customers: 0.24 s of zstd and
/// writes), and between folds a night writes deltas of a few thousand rows.
pub const DELTA_SHARE: usize = 8;

/// True when a bucket's delta of `delta_rows` is folded into its base of `base_rows`: once
/// `delta_rows × share` exceeds the base ([`DELTA_SHARE`]; `usize::MAX` folds any delta, 0
/// none).
fn folds(delta_rows: usize, base_rows: usize, share: usize) -> bool {
    delta_rows.saturating_mul(share) > base_rows
}

/// Customers a bucket of the first-order state holds before the buckets are doubled: about
/// 20 MiB as a frame, a few times that while a night changes it.
pub const BUCKET_CUSTOMERS: usize = 1 << 20;

/// The bucket of `customer` among `count` (a power of two). Doubling the count splits bucket
/// `b` into `b` and `b + count`, so a bucket is split on its own.
pub fn bucket_of(customer: &str, count: usize) -> usize {
    (values::stable_hash(customer.as_bytes()) % count.max(1) as u64) as usize
}

/// The buckets for `customers` at `per_bucket` each: at least `at_least` (a power of two),
/// doubled until they hold them.
pub fn bucket_count(customers: usize, per_bucket: usize, at_least: usize) -> usize {
    let mut count = at_least.max(1);
    while count.saturating_mul(per_bucket.max(1)) < customers {
        count *= 2;
    }
    count
}

/// The rows of `df` in `count` frames by the bucket of their `customer_id`.
pub fn split_by_bucket(df: &DataFrame, count: usize) -> PolarsResult<Vec<DataFrame>> {
    let ids = df.column("customer_id")?.str()?;
    split_rows(
        df,
        count.max(1),
        ids.iter()
            .map(|id| Some(bucket_of(id.unwrap_or_default(), count))),
    )
}

/// The rows of `df` in `parts` frames: row `i` in the part `part_of` names for it (none: in no
/// part), in row order.
pub(super) fn split_rows(
    df: &DataFrame,
    parts: usize,
    part_of: impl Iterator<Item = Option<usize>>,
) -> PolarsResult<Vec<DataFrame>> {
    let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); parts];
    for (i, part) in part_of.enumerate() {
        if let Some(p) = part {
            rows[p].push(i as IdxSize);
        }
    }
    rows.into_iter()
        .map(|r| df.take(&IdxCa::from_vec("".into(), r)))
        .collect()
}

/// What the nightly run keeps between runs besides its batch watermark and the first-order
/// buckets ([`FirstOrderBuckets`]).
#[derive(Debug, Clone)]
pub struct KpiState {
    /// `dataset`, `key`, `date`, `updated_at` (the version, whatever the contract names its
    /// version column), `_ingested_at`, `_batch_id`: versions of `key` in `date` up to this
    /// version are stale (the key moved to another day).
    pub tombstones: DataFrame,
}

/// The order columns the KPIs read (besides the version columns, [`version_order`]).
const ORDER_COLUMNS: [&str; 7] = [
    "order_id",
    "customer_id",
    "status",
    "total_amount",
    "currency",
    "customer_region",
    "order_date",
];
/// The order columns each customer's first order day is found from ([`first_order_dates`]).
const FIRST_ORDER_COLUMNS: [&str; 4] = ["order_id", "customer_id", "status", "order_date"];
/// The payment columns the KPIs read (besides the version columns).
const PAYMENT_COLUMNS: [&str; 7] = [
    "payment_id",
    "order_id",
    "status",
    "amount",
    "currency",
    "method",
    "payment_date",
];
/// A tombstone's version as joined onto a dataset's rows.
const TOMB_VERSION: [&str; 3] = ["t_version", "t_ingested_at", "t_batch_id"];
/// The tombstones' column holding a key's version, whatever the contract names its version
/// column: the name the state was first written with, so a lake's state stays readable.
const TOMB_STORED_VERSION: &str = "updated_at";
/// The order column a payment takes its region from.
const REGION: &str = "customer_region";
/// Days of the reference window searched first for the orders of payments whose order is not
/// on a recomputed day; each further search takes twice as many of the next nearest days. Most
/// orders are a few days older than their payments, so the whole window (90 days, six doublings
/// away) is read only for orders that are not there.
const FIRST_SEARCH_DAYS: usize = 1;

/// Memory a recomputed day's silver takes per byte on disk while its measures are computed:
/// night 366 of a 365-day lake recomputed 32 days (36.2 MB of orders and payments Parquet) in
/// one group, which added about 650 MiB to the process besides the first-order state (Parquet
/// compresses ids and dates several times over; polars holds each string in a 16-byte view,
/// and the joins and the latest-version step hold copies).
const SILVER_EXPANSION: u64 = 18;

/// The most silver (bytes on disk) a nightly recompute holds at once for a memory budget: half
/// the budget, at [`SILVER_EXPANSION`]; the other half is the night's keys, a first-order bucket
/// and the runtime.
pub fn group_bytes(memory_budget_bytes: usize) -> u64 {
    memory_budget_bytes as u64 / 2 / SILVER_EXPANSION
}

/// What a night changed: per dataset, the new batch ids, the dates they wrote and the silver
/// files their manifests list.
#[derive(Debug, Clone, Default)]
pub struct Night {
    pub new_batches: BTreeMap<String, BTreeSet<String>>,
    pub touched: BTreeMap<String, BTreeSet<NaiveDate>>,
    pub files: BTreeMap<String, Vec<String>>,
}

/// The recomputed days' rows and the state to keep.
#[derive(Debug, Clone)]
pub struct NightResult {
    pub dates: BTreeSet<NaiveDate>,
    pub kpis: DataFrame,
    pub methods: DataFrame,
    pub state: KpiState,
    /// Keys whose older version was found on another day.
    pub moved_keys: usize,
    /// Customers whose next order had to be searched for (first order cancelled or moved).
    pub searched_customers: usize,
}

/// Runs polars work on a thread of its own ([`crate::offload`]).
pub(super) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> PolarsResult<T> + Send + 'static,
) -> Result<T, GoldError> {
    crate::offload::on_own_thread(work)
        .await
        .ok_or_else(|| {
            GoldError::Polars(PolarsError::ComputeError(
                "the KPI computation stopped unexpectedly".into(),
            ))
        })?
        .map_err(GoldError::from)
}

pub(super) async fn collect(lf: LazyFrame) -> Result<DataFrame, GoldError> {
    off_runtime(move || lf.collect()).await
}

pub(super) fn key_of(c: &Contract) -> String {
    c.key_column().name.clone()
}

pub(super) fn date_of(c: &Contract) -> Result<String, GoldError> {
    c.window_partition().map(|p| p.name.clone()).ok_or_else(|| {
        GoldError::Polars(PolarsError::ComputeError(
            format!(
                "{} needs a leading utc_date partition for nightly KPIs",
                c.name
            )
            .into(),
        ))
    })
}

/// `columns` of `contract` and its version columns ([`version_order`]), to pick latest versions.
pub(super) fn read_columns(columns: &[&str], contract: &Contract) -> Vec<Expr> {
    let mut read: Vec<Expr> = columns.iter().map(|c| col(*c)).collect();
    read.extend(version_order(contract));
    read
}

/// What the KPIs read of silver orders and payments: [`ORDER_COLUMNS`] and [`PAYMENT_COLUMNS`]
/// with the version columns. A full recompute selects them from its scans, as polars cannot
/// prune columns through [`latest`] (a function of whole frames).
pub(crate) fn kpi_columns(contracts: &KpiContracts) -> (Vec<Expr>, Vec<Expr>) {
    (
        read_columns(&ORDER_COLUMNS, &contracts.orders),
        read_columns(&PAYMENT_COLUMNS, &contracts.payments),
    )
}

/// `contract`'s version columns ([`version_order`]) strictly after the tombstone's version.
fn newer_than_tombstone(contract: &Contract) -> Expr {
    let [a, b, c] = version_order(contract);
    let [ta, tb, tc] = TOMB_VERSION.map(col);
    a.clone().gt(ta.clone()).or(a
        .eq(ta)
        .and(b.clone().gt(tb.clone()).or(b.eq(tb).and(c.gt(tc)))))
}

/// A one-column frame of dates (for joins standing in for `is_in`).
fn date_frame(name: &str, dates: &BTreeSet<NaiveDate>) -> PolarsResult<LazyFrame> {
    let days: Vec<i32> = dates.iter().map(|d| values::epoch_days(*d)).collect();
    Ok(DataFrame::new(
        days.len(),
        vec![
            Int32Chunked::from_vec(name.into(), days)
                .into_date()
                .into_series()
                .into_column(),
        ],
    )?
    .lazy())
}

pub(super) fn days_of(df: &DataFrame, column: &str) -> PolarsResult<BTreeSet<NaiveDate>> {
    let ca = df.column(column)?.date()?.physical().clone();
    Ok((0..ca.len())
        .filter_map(|i| ca.get(i))
        .filter_map(values::naive_date)
        .collect())
}

/// Every date from `before` days before to `after` days after one of `dates`.
fn around(dates: &BTreeSet<NaiveDate>, before: i64, after: i64) -> BTreeSet<NaiveDate> {
    dates
        .iter()
        .flat_map(|d| (-before..=after).map(move |i| *d + Duration::days(i)))
        .collect()
}

/// Empty tombstones with their schema.
pub fn empty_tombstones() -> PolarsResult<DataFrame> {
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    DataFrame::new(
        0,
        vec![
            Column::new_empty("dataset".into(), &DataType::String),
            Column::new_empty("key".into(), &DataType::String),
            Column::new_empty("date".into(), &DataType::Date),
            Column::new_empty(TOMB_STORED_VERSION.into(), &utc),
            Column::new_empty(INGESTED_AT.into(), &utc),
            Column::new_empty(BATCH_ID.into(), &DataType::String),
        ],
    )
}

/// Empty first-order state with its schema.
pub fn empty_first_orders() -> PolarsResult<DataFrame> {
    DataFrame::new(
        0,
        vec![
            Column::new_empty("customer_id".into(), &DataType::String),
            Column::new_empty(FIRST_ORDER_DATE.into(), &DataType::Date),
        ],
    )
}

impl KpiState {
    pub fn empty() -> PolarsResult<Self> {
        Ok(KpiState {
            tombstones: empty_tombstones()?,
        })
    }

    /// The state a full recompute leaves: every customer's first order date (the whole
    /// first-order table, to be stored in buckets), and a tombstone for every (key, day)
    /// holding only stale versions of a key whose latest is elsewhere.
    pub fn from_full(
        contracts: &KpiContracts,
        orders: LazyFrame,
        payments: LazyFrame,
    ) -> PolarsResult<(DataFrame, Self)> {
        let first_orders =
            first_order_dates(latest(orders.clone(), &contracts.orders)?).collect()?;
        let mut tombs = Vec::new();
        for (contract, lf) in [(&contracts.orders, orders), (&contracts.payments, payments)] {
            tombs.push(stale_days(contract, lf)?);
        }
        Ok((
            first_orders,
            KpiState {
                tombstones: concat(tombs, UnionArgs::default())?.collect()?,
            },
        ))
    }

    /// The tombstones of one dataset on `dates`, named for joining onto its rows.
    fn tombstones_on(
        &self,
        dataset: &str,
        key: &str,
        date: &str,
        dates: &BTreeSet<NaiveDate>,
    ) -> PolarsResult<LazyFrame> {
        Ok(self
            .tombstones
            .clone()
            .lazy()
            .filter(col("dataset").eq(lit(dataset.to_owned())))
            .join(
                date_frame("date", dates)?,
                [col("date")],
                [col("date")],
                JoinArgs::new(JoinType::Inner),
            )
            .select([
                col("key").alias(key),
                col("date").alias(date),
                col(TOMB_STORED_VERSION).alias(TOMB_VERSION[0]),
                col(INGESTED_AT).alias(TOMB_VERSION[1]),
                col(BATCH_ID).alias(TOMB_VERSION[2]),
            ]))
    }
}

fn to_polars(e: GoldError) -> PolarsError {
    match e {
        GoldError::Polars(p) => p,
        other => PolarsError::ComputeError(other.to_string().into()),
    }
}

/// The bytes on disk of each of `days`' partitions of `contract` under `root`.
pub(super) fn day_sizes(
    root: &Path,
    contract: &Contract,
    days: &BTreeSet<NaiveDate>,
) -> BTreeMap<NaiveDate, u64> {
    days.iter()
        .map(|d| (*d, day_bytes(root, contract, *d)))
        .collect()
}

/// `columns` of the rows of `contract` on `days` whose key is one of `keys`, read in groups of
/// days of at most `group_bytes` (as the recompute): the key filter is pushed into the reader
/// ([`one_of`]), so only the rows found are held across groups.
pub(super) async fn rows_of_keys(
    root: &Path,
    contract: &Contract,
    days: &BTreeSet<NaiveDate>,
    keys: &Column,
    columns: &[Expr],
    group_bytes: u64,
) -> Result<DataFrame, GoldError> {
    let wanted = one_of(&key_of(contract), keys)?;
    let mut found = Vec::new();
    for group in consecutive_groups(day_sizes(root, contract, days), group_bytes) {
        let part = scan_dates(root, contract, &group)?
            .filter(wanted.clone())
            .select(columns);
        found.push(collect(part).await?.lazy());
    }
    collect(concat(found, UnionArgs::default())?).await
}

/// Tombstones of `versions` of `contract`'s keys (key, date and version columns): every (key,
/// day) holding a version of a key whose latest version lies on another day, stamped with that
/// latest.
pub(super) fn stale_days(contract: &Contract, versions: LazyFrame) -> PolarsResult<LazyFrame> {
    let (key, date) = (key_of(contract), date_of(contract).map_err(to_polars)?);
    let (key, date) = (key.as_str(), date.as_str());
    let versions = versions.select(read_columns(&[key, date], contract));
    let [v, i, b] = version_order(contract);
    let newest = latest(versions.clone(), contract)?.select([
        col(key),
        col(date).alias("l_date"),
        v.alias(TOMB_VERSION[0]),
        i.alias(TOMB_VERSION[1]),
        b.alias(TOMB_VERSION[2]),
    ]);
    Ok(versions
        .join(
            newest,
            [col(key)],
            [col(key)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col(date).neq(col("l_date")))
        .select([
            lit(contract.name.clone()).alias("dataset"),
            col(key).cast(DataType::String).alias("key"),
            col(date).alias("date"),
            col(TOMB_VERSION[0]).alias(TOMB_STORED_VERSION),
            col(TOMB_VERSION[1]).alias(INGESTED_AT),
            col(TOMB_VERSION[2]).alias(BATCH_ID),
        ])
        .unique_stable(None, UniqueKeepStrategy::First))
}

/// What [`Nightly::first_orders`] decides.
struct FirstOrders {
    /// The first days the measures need: of every customer first on a recomputed day or on
    /// one of the `extra` days, a row per customer id. A customer first on another day is new on
    /// none of them, so is left out (at 1 M orders a day, a night that recomputes a month
    /// would otherwise hold and join every customer of that month).
    on_days: DataFrame,
    /// Days outside the recomputed ones whose new customers change.
    extra: BTreeSet<NaiveDate>,
    /// Customers whose next order had to be searched for.
    searched: usize,
}

/// One nightly recompute.
pub struct Nightly<'a> {
    pub source: &'a dyn SilverDates,
    pub contracts: &'a KpiContracts,
    pub state: &'a KpiState,
    /// The first-order state: read by bucket, the night's written back the same way.
    pub first_orders: &'a dyn FirstOrderBuckets,
    /// Customers per bucket before the buckets are doubled ([`BUCKET_CUSTOMERS`]).
    pub bucket_customers: usize,
    /// A bucket's delta is folded into its base once `delta rows × delta_share > base rows`
    /// ([`DELTA_SHARE`]; `usize::MAX` folds every changed bucket, 0 never folds one).
    pub delta_share: usize,
    /// The most silver (orders and payments, bytes on disk) recomputed at once
    /// ([`group_bytes`]).
    pub group_bytes: u64,
}

impl Nightly<'_> {
    /// Gives the memory the night freed back to the kernel (`alloc::release_freed`) once the
    /// process holds more than half its memory budget (the budget `group_bytes` was planned
    /// for). Below that, keeping it spares the next phase faulting it in again: on the H=365
    /// night of `make bench-history` (about 300 MiB), releasing it cost 0.1 of 1.9 s; on the
    /// 1 M orders a day night (2.0 GiB after the first pass), keeping it took the process over
    /// its Lambda's memory. Called after the first pass, after the first orders, and after a
    /// group's measures that brought the process within an eighth of the night's peak so far.
    /// Release builds, alternating runs, gold identical:
    /// - a night of 300 k orders a day (11 groups) grew 223 → 846 MiB over its measures and
    ///   peaked at 908-971 MiB; given back after every group, 744-746 MiB for 2.6 s more system
    ///   time (re-faulting) of 11-12.7 s; with the condition, 762-896 MiB;
    /// - on the 1 M orders a day night (31 groups) the first pass sets the peak (1.7-1.8 GiB)
    ///   and the measures stay under 1.45 GiB; given back after every group, the night took
    ///   55-61 s instead of 43-46 s for no lower peak; with the condition, 41.2 s and 1671 MiB
    ///   against 41.5 s and 1729 MiB (nothing given back in the measures).
    fn release_freed_if_large(&self) {
        if self.over_half_budget() {
            crate::alloc::release_freed();
        }
    }

    /// True when the process holds more than half the memory budget `group_bytes` was planned
    /// for.
    fn over_half_budget(&self) -> bool {
        let budget = self.group_bytes.saturating_mul(2 * SILVER_EXPANSION);
        crate::telemetry::rss_mib() << 20 > budget / 2
    }

    /// The rows of `contract` on `dates`, stale versions (tombstoned in `tombs`) left out.
    async fn rows(
        &self,
        contract: &Contract,
        dates: &BTreeSet<NaiveDate>,
        tombs: &KpiState,
    ) -> Result<LazyFrame, GoldError> {
        let root = self.source.prepare(contract, dates).await?;
        let (key, date) = (key_of(contract), date_of(contract)?);
        let rows = scan_dates(&root, contract, dates)?;
        // Collected off the runtime, as every polars query here (`collect`).
        let t = collect(tombs.tombstones_on(&contract.name, &key, &date, dates)?).await?;
        // Keys rarely move day, so most reads have no tombstone: then no join at all, which
        // would hash every row's key to find none.
        if t.height() == 0 {
            return Ok(rows);
        }
        Ok(rows
            .join(
                t.lazy(),
                [col(&key), col(&date)],
                [col(&key), col(&date)],
                JoinArgs::new(JoinType::Left),
            )
            .filter(
                col(TOMB_VERSION[0])
                    .is_null()
                    .or(newer_than_tombstone(contract)),
            )
            .drop(cols(TOMB_VERSION)))
    }

    /// Every version of the keys a night's batches wrote to `contract` within the contract's
    /// move radius of the days they were written to (key, date, version and `extra` columns).
    async fn changed_keys(
        &self,
        contract: &Contract,
        night: &Night,
        extra: &[&str],
    ) -> Result<DataFrame, GoldError> {
        let (key, date) = (key_of(contract), date_of(contract)?);
        let touched = night
            .touched
            .get(&contract.name)
            .cloned()
            .unwrap_or_default();
        let root = self.source.prepare(contract, &touched).await?;
        let files: Vec<PathBuf> = night
            .files
            .get(&contract.name)
            .map(|f| f.iter().map(|k| root.join(k)).collect())
            .unwrap_or_default();
        // The batches' own files hold exactly their rows: reading them, not every file of the
        // touched days, keeps this read to the night's data. A file already compacted away is
        // not there, and then the days are scanned for the batch ids (the compacted file keeps
        // each row's `_batch_id`).
        let keys = if !files.is_empty() && files.iter().all(|f| f.is_file()) {
            // One scan of them all: a scan per file (a batch writes a file per partition, 160
            // orders files on the H=365 night) spent 250 ms setting up 160 pipelines.
            let paths = files
                .iter()
                .map(|f| PlRefPath::new(f.display().to_string()))
                .collect();
            collect(
                LazyFrame::scan_parquet_files(paths, ScanArgsParquet::default())?
                    .select([col(&key)])
                    .unique(None, UniqueKeepStrategy::First),
            )
            .await?
        } else {
            let batches: Vec<String> = night
                .new_batches
                .get(&contract.name)
                .map(|b| b.iter().cloned().collect())
                .unwrap_or_default();
            let batch_frame = DataFrame::new(
                batches.len(),
                vec![Series::new(BATCH_ID.into(), batches).into_column()],
            )?
            .lazy();
            collect(
                scan_dates(&root, contract, &touched)?
                    .select([col(&key), col(BATCH_ID)])
                    .join(
                        batch_frame,
                        [col(BATCH_ID)],
                        [col(BATCH_ID)],
                        JoinArgs::new(JoinType::Inner),
                    )
                    .select([col(&key)])
                    .unique(None, UniqueKeepStrategy::First),
            )
            .await?
        };
        let radius = i64::from(contract.max_date_move_days);
        let window = around(&touched, radius, radius);
        let root = self.source.prepare(contract, &window).await?;
        let mut columns = read_columns(&[&key, &date], contract);
        columns.extend(extra.iter().map(|c| col(*c)));
        // In groups of days, as the recompute: the window's rows are read to keep only the
        // night's keys, so only the versions found (of the night's size) are held across groups.
        rows_of_keys(
            &root,
            contract,
            &window,
            keys.column(&key)?,
            &columns,
            self.group_bytes,
        )
        .await
    }

    /// [`Self::changed_keys`] of `contract` and their tombstones ([`stale_days`]).
    async fn stale_versions(
        &self,
        contract: &Contract,
        night: &Night,
        extra: &[&str],
    ) -> Result<(DataFrame, DataFrame), GoldError> {
        let versions = self.changed_keys(contract, night, extra).await?;
        let stale = collect(stale_days(
            contract,
            versions.clone().lazy().drop(cols(extra.iter().copied())),
        )?)
        .await?;
        Ok((versions, stale))
    }

    /// Recomputes the days `night` changed.
    pub async fn run(&self, night: &Night) -> Result<NightResult, GoldError> {
        let (orders_c, payments_c) = (&self.contracts.orders, &self.contracts.payments);
        let window = self.contracts.window_days().unwrap_or(0);
        let mut phase = Phase::start();
        // The peak RSS so far: the state loaded, before the night's work.
        phase.done("start");
        let mut dates: BTreeSet<NaiveDate> = night.touched.values().flatten().copied().collect();

        // Keys that moved day: tombstone their old days and recompute them.
        let mut state = self.state.clone();
        let mut new_tombs = Vec::new();
        let mut moved = 0;
        // Both datasets at once: each search is mostly one thread's work (a filtered scan, then
        // a sort of what it found), so together they fill both cores, and on S3 their
        // downloads overlap.
        let ((order_changes, order_stale), (_, payment_stale)) = tokio::try_join!(
            self.stale_versions(orders_c, night, &[REGION]),
            self.stale_versions(payments_c, night, &[]),
        )?;
        for stale in [order_stale, payment_stale] {
            moved += stale.column("key")?.n_unique()?;
            dates.extend(days_of(&stale, "date")?);
            new_tombs.push(stale);
        }
        phase.done("changed_keys");
        let mut all = vec![state.tombstones.clone().lazy()];
        all.extend(new_tombs.into_iter().map(|t| t.lazy()));
        state.tombstones = collect(
            concat(all, UnionArgs::default())?
                .sort_by_exprs(
                    [
                        col("dataset"),
                        col("key"),
                        col("date"),
                        col(TOMB_STORED_VERSION),
                        col(INGESTED_AT),
                        col(BATCH_ID),
                    ],
                    SortMultipleOptions::default(),
                )
                .unique_stable(
                    Some(cols(["dataset", "key", "date"])),
                    UniqueKeepStrategy::Last,
                ),
        )
        .await?;

        phase.done("tombstones");
        // Payments whose order's region or date changed may change region: they lie within the
        // reference window after the order's old and new day.
        let changed = self
            .region_changes(order_changes, night.new_batches.get(&orders_c.name))
            .await?;
        if changed.height() > 0 {
            let order_days = days_of(&changed, "order_date")?;
            let pay_days = around(&order_days, 0, i64::from(window));
            let root = self.source.prepare(payments_c, &pay_days).await?;
            let pay_date = date_of(payments_c)?;
            let hit = collect(
                scan_dates(&root, payments_c, &pay_days)?
                    .select([col("order_id"), col(&pay_date)])
                    .join(
                        changed
                            .lazy()
                            .select([col("order_id")])
                            .unique(None, UniqueKeepStrategy::First),
                        [col("order_id")],
                        [col("order_id")],
                        JoinArgs::new(JoinType::Inner),
                    )
                    .select([col(&pay_date)])
                    .unique(None, UniqueKeepStrategy::First),
            )
            .await?;
            dates.extend(days_of(&hit, &pay_date)?);
        }

        phase.done("payment_days");
        self.recompute(dates, state, moved).await
    }

    /// Recomputes `dates` from their silver, stale versions left out by `state`'s tombstones:
    /// each customer's first order day is decided against the first-order state (and written
    /// back), then every day's measures. `moved` is reported as [`NightResult::moved_keys`].
    pub(crate) async fn recompute(
        &self,
        mut dates: BTreeSet<NaiveDate>,
        state: KpiState,
        moved: usize,
    ) -> Result<NightResult, GoldError> {
        let window = self.contracts.window_days().unwrap_or(0);
        let mut phase = Phase::start();
        // The days are recomputed in groups of at most `group_bytes` of silver each, so a
        // night's memory is one group's rows plus one first-order bucket, however many days a
        // night touches (a backfill of late updates, a re-export of a month).
        let groups = self.day_groups(&dates).await?;
        // First pass: each customer's first order day among all the recomputed days. It goes
        // through the groups backwards and keeps the last one it reads, the first group, for the
        // measures, which go forwards: that group is not read twice (with one group, nothing
        // is), and the night holds one group's orders at a time as before.
        let mut kept: Option<(BTreeSet<NaiveDate>, DataFrame)> = None;
        let mut firsts = FirstDays::default();
        for (i, days) in groups.iter().enumerate().rev() {
            // A group read again for its measures is read here only for what first orders
            // need, not its amounts and currencies.
            let columns: &[&str] = if i == 0 {
                &ORDER_COLUMNS
            } else {
                &FIRST_ORDER_COLUMNS
            };
            let orders = self.latest_orders(days, &state, columns).await?;
            // The group's first days go into the map before the next group is read.
            firsts.add(&collect(first_order_dates(orders.clone().lazy())).await?)?;
            if i == 0 {
                kept = Some((days.clone(), orders));
            }
            phase.done_in("first_pass_group", Some(i));
        }
        let on_days = firsts.into_frame()?;
        // The groups' frames are free now, but a heap keeps them.
        self.release_freed_if_large();
        phase.done("orders_latest");
        // The first group's payments and their regions need its orders, not the first orders:
        // they are read while the first orders are decided. Each side is mostly one thread's
        // work, so the night fills both cores there (on the H=365 night of `make
        // bench-history`, about 0.5 s each). They are that group's silver, which its measures
        // hold anyway, so the night still holds one group plus the state's buckets; but a night
        // already past half its budget after the first pass (the first days of millions of
        // customers, as at 1 M orders a day) decides first and reads them after, as before.
        let (kept_days, kept_orders) = kept.expect("a night has at least one day group");
        let early = !self.over_half_budget();
        let (
            FirstOrders {
                on_days: first,
                extra,
                searched,
            },
            kept_payments,
        ) = tokio::try_join!(self.first_orders(on_days, &dates, &state), async {
            if early {
                self.regional_payments(&kept_orders, &kept_days, window, &state, 0)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        })?;
        let mut kept = Some((kept_days, kept_orders, kept_payments));
        let groups = if extra.is_empty() {
            groups
        } else {
            dates.extend(extra);
            self.day_groups(&dates).await?
        };
        // Each group's measures join only the customers first on its own days.
        let firsts = first_by_group(&first, &groups)?;
        drop(first);
        // What deciding the first orders held is free.
        self.release_freed_if_large();
        phase.done("orders_and_first_orders");

        let mut kpis = Vec::with_capacity(groups.len());
        let mut methods = Vec::with_capacity(groups.len());
        for ((group, days), first) in groups.iter().enumerate().zip(firsts) {
            // The kept orders and payments serve only the very same days (a searched
            // customer's extra day may have regrouped them).
            let (orders, payments) = match kept.take() {
                Some((kept_days, orders, payments)) if kept_days == *days => (orders, payments),
                _ => (
                    self.latest_orders(days, &state, &ORDER_COLUMNS).await?,
                    None,
                ),
            };
            let payments = match payments {
                Some(payments) => payments,
                None => {
                    self.regional_payments(&orders, days, window, &state, group)
                        .await?
                }
            };
            let (k, m) = self.measures(orders, first, payments, group).await?;
            kpis.push(k.lazy());
            methods.push(m.lazy());
            // A group's frames are free now, but the next group's do not fit in the holes
            // they leave in the heap, so every group adds a little. Given back only once that
            // nears the night's peak so far: below it, keeping it costs no peak and spares the
            // next group faulting its pages in again.
            if near_peak(
                crate::telemetry::rss_mib(),
                crate::telemetry::peak_rss_mib(),
            ) {
                self.release_freed_if_large();
            }
        }
        // Groups are in day order and disjoint: stacked, the rows stay sorted.
        let kpis = collect(concat(kpis, UnionArgs::default())?).await?;
        let methods = collect(concat(methods, UnionArgs::default())?).await?;
        phase.done("measures");
        Ok(NightResult {
            dates,
            kpis,
            methods,
            state,
            moved_keys: moved,
            searched_customers: searched,
        })
    }

    /// `dates` in groups of consecutive days, each holding at most `group_bytes` of orders
    /// and payments silver on disk (a day larger than that alone).
    async fn day_groups(
        &self,
        dates: &BTreeSet<NaiveDate>,
    ) -> Result<Vec<BTreeSet<NaiveDate>>, GoldError> {
        let mut sizes: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        for contract in [&self.contracts.orders, &self.contracts.payments] {
            let root = self.source.prepare(contract, dates).await?;
            for day in dates {
                *sizes.entry(*day).or_default() += day_bytes(&root, contract, *day);
            }
        }
        let silver_bytes: u64 = sizes.values().sum();
        let groups = consecutive_groups(sizes, self.group_bytes);
        tracing::debug!(
            days = dates.len(),
            silver_bytes,
            groups = groups.len(),
            group_bytes = self.group_bytes,
            "nightly day groups"
        );
        Ok(groups)
    }

    /// The latest version of every order on `days` (stale versions left out), its `columns`
    /// and version columns.
    async fn latest_orders(
        &self,
        days: &BTreeSet<NaiveDate>,
        state: &KpiState,
        columns: &[&str],
    ) -> Result<DataFrame, GoldError> {
        let orders = &self.contracts.orders;
        collect(latest(
            self.rows(orders, days, state)
                .await?
                .select(read_columns(columns, orders)),
            orders,
        )?)
        .await
    }

    /// The latest payments on `days` with the region each counts under ([`kpis::with_regions`]):
    /// their orders are the days' latest `orders`, and those not among them are looked for on
    /// the other days of the reference window ([`Self::other_orders`]).
    async fn regional_payments(
        &self,
        orders: &DataFrame,
        days: &BTreeSet<NaiveDate>,
        window: u32,
        state: &KpiState,
        group: usize,
    ) -> Result<DataFrame, GoldError> {
        let mut phase = Phase::start();
        // Only the orders these payments name are sorted for their latest version.
        let payments_c = &self.contracts.payments;
        let payments = collect(latest(
            self.rows(payments_c, days, state)
                .await?
                .select(read_columns(&PAYMENT_COLUMNS, payments_c)),
            payments_c,
        )?)
        .await?;
        phase.done_in("payments_latest", Some(group));
        let joined = collect(kpis::join_orders(payments.lazy(), orders.clone().lazy())).await?;
        let joined = self.other_orders(joined, days, window, state).await?;
        let payments = collect(kpis::region_in_window(
            joined.lazy(),
            self.contracts.window_days(),
        ))
        .await?;
        phase.done_in("payments_and_regions", Some(group));
        Ok(payments)
    }

    /// `daily_kpis` and `payment_methods_daily` rows of a group's days, from those days' latest
    /// `orders`, the first order days `first` of (at least) the customers first on one of the
    /// days, and the days' `payments` with their regions ([`Self::regional_payments`]).
    async fn measures(
        &self,
        orders: DataFrame,
        first: DataFrame,
        payments: DataFrame,
        group: usize,
    ) -> Result<(DataFrame, DataFrame), GoldError> {
        let mut phase = Phase::start();
        let first = first.lazy();
        let (o, p) = (orders.lazy(), payments.clone().lazy());
        // On two threads: each query has long stretches on one core.
        let (kpis, methods) = tokio::try_join!(
            off_runtime(move || kpis::kpis_of(o, first, p)),
            off_runtime(move || methods::methods_of(payments.lazy())),
        )?;
        phase.done_in("group_measures", Some(group));
        Ok((kpis, methods))
    }

    /// The orders of the night whose latest `(order_date, customer_region)` differs from the one
    /// before the night, or that are new (`order_id`, `order_date`: one row for the new day and
    /// one for the old). Only their payments can change region; a status update, the common
    /// change, moves none. `versions` holds every version of the night's keys within the move
    /// radius (key, date, version and region columns).
    async fn region_changes(
        &self,
        versions: DataFrame,
        new_batches: Option<&BTreeSet<String>>,
    ) -> Result<DataFrame, GoldError> {
        let orders_c = &self.contracts.orders;
        let (key, date) = (key_of(orders_c), date_of(orders_c)?);
        let batches: Vec<String> = new_batches
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default();
        let n = batches.len();
        let night = DataFrame::new(
            n,
            vec![
                Series::new(BATCH_ID.into(), batches).into_column(),
                Series::new("_new".into(), vec![true; n]).into_column(),
            ],
        )?;
        let marked = versions.lazy().join(
            night.lazy(),
            [col(BATCH_ID)],
            [col(BATCH_ID)],
            JoinArgs::new(JoinType::Left),
        );
        let now = latest(marked.clone(), orders_c)?.select([
            col(&key).alias("order_id"),
            col(&date).alias("order_date"),
            col(REGION),
        ]);
        let before = latest(marked.filter(col("_new").is_null()), orders_c)?.select([
            col(&key).alias("order_id"),
            col(&date).alias("_old_date"),
            col(REGION).alias("_old_region"),
        ]);
        let changed = now
            .join(
                before,
                [col("order_id")],
                [col("order_id")],
                JoinArgs::new(JoinType::Left),
            )
            .filter(
                col("_old_date")
                    .is_null()
                    .or(col("_old_date").neq_missing(col("order_date")))
                    .or(col("_old_region").neq_missing(col(REGION))),
            );
        collect(stacked(
            changed.clone().select([col("order_id"), col("order_date")]),
            changed
                .filter(col("_old_date").is_not_null())
                .select([col("order_id"), col("_old_date").alias("order_date")]),
        )?)
        .await
    }

    /// `joined` (the days' payments joined to the days' latest orders, [`kpis::join_orders`])
    /// with the orders it lacks, the latest versions of those on the other days of the
    /// reference window before the payments' days. Most payments' orders are on the recomputed
    /// days; the rest are looked for nearest day first in two passes, their keys and days first
    /// (one column), then only the days that hold one, so the window's other rows are never
    /// materialised. The days' orders are joined once, not first to list which are missing.
    async fn other_orders(
        &self,
        joined: DataFrame,
        dates: &BTreeSet<NaiveDate>,
        window: u32,
        state: &KpiState,
    ) -> Result<DataFrame, GoldError> {
        let orders_c = &self.contracts.orders;
        let unfound = || col(kpis::PAYMENT_ORDER_DATE).is_null();
        let missing = collect(
            joined
                .clone()
                .lazy()
                .filter(unfound().and(col("order_id").is_not_null()))
                .select([col("order_id")])
                .unique(None, UniqueKeepStrategy::First),
        )
        .await?;
        if missing.height() == 0 {
            return Ok(joined);
        }
        // Nearest days first: each missing order lies within the window before a payment day.
        let mut others: Vec<(i64, NaiveDate)> = around(dates, i64::from(window), 0)
            .difference(dates)
            .map(|o| {
                let ahead = dates
                    .range(*o..)
                    .next()
                    .map_or(i64::MAX, |d| (*d - *o).num_days());
                (ahead, *o)
            })
            .collect();
        others.sort();
        let wanted = missing.clone();
        let mut missing = missing;
        let mut days = BTreeSet::new();
        let mut chunk = FIRST_SEARCH_DAYS;
        let mut queue = others.into_iter().map(|(_, d)| d).peekable();
        while missing.height() > 0 && queue.peek().is_some() {
            let search: BTreeSet<NaiveDate> = queue.by_ref().take(chunk).collect();
            chunk *= 2;
            // Stale versions are left out (`rows`), so a key is found on the day of its latest.
            let hits = collect(
                self.rows(orders_c, &search, state)
                    .await?
                    .select([col("order_id"), col("order_date")])
                    .join(
                        missing.clone().lazy(),
                        [col("order_id")],
                        [col("order_id")],
                        JoinArgs::new(JoinType::Inner),
                    ),
            )
            .await?;
            days.extend(days_of(&hits, "order_date")?);
            missing = collect(without(missing.lazy(), hits.lazy(), "order_id")).await?;
        }
        let rest = collect(
            latest(
                self.rows(orders_c, &days, state)
                    .await?
                    .select(read_columns(
                        &["order_id", "customer_region", "order_date"],
                        orders_c,
                    ))
                    .join(
                        wanted.lazy(),
                        [col("order_id")],
                        [col("order_id")],
                        JoinArgs::new(JoinType::Inner),
                    ),
                orders_c,
            )?
            .select([col("order_id"), col("customer_region"), col("order_date")]),
        )
        .await?;
        let filled = kpis::join_orders(
            joined
                .clone()
                .lazy()
                .filter(unfound())
                .drop(cols(["customer_region", kpis::PAYMENT_ORDER_DATE])),
            rest.lazy(),
        );
        collect(stacked(joined.lazy().filter(unfound().not()), filled)?).await
    }

    /// Decides the first-order state's changes for the night, writes the state after it, and
    /// returns the first days the measures need, the days outside `dates` whose new customers
    /// change, and how many customers needed a search.
    ///
    /// Only the customers the night can change are decided: those with a non-cancelled order
    /// on the recomputed days (`on_days`) and those whose old first day is recomputed. With `s`
    /// the old first day and `m` the first day among the recomputed days' orders:
    /// - no `s`: a new customer, first on `m`;
    /// - `s` not recomputed: its order there stands, so `min(s, m)`;
    /// - `s` recomputed and `m ≤ s`: `m`;
    /// - `s` recomputed and `m` none or later: the first order was cancelled or moved, and the
    ///   customer's next order is searched for on the other days after `s` (rare; the one read
    ///   not bounded by the night's data).
    ///
    /// The state is passed over twice, a bucket at a time: to decide (a walk of the bucket
    /// probing a table of the night's customers, while the next bucket is read), then, once the searches are done, to apply the
    /// changes (an anti-join) and write the bucket. Everything held across buckets is of the
    /// night's size.
    async fn first_orders(
        &self,
        on_days: DataFrame,
        dates: &BTreeSet<NaiveDate>,
        state: &KpiState,
    ) -> Result<FirstOrders, GoldError> {
        let mut phase = Phase::start();
        let id = || col("customer_id");
        let (s, m, new) = (col(FIRST_ORDER_DATE), col("_m"), col("_new"));
        if self.first_orders.count() == 0 {
            return self.first_orders_anew(on_days).await;
        }
        let buckets = self.first_orders.count();
        if dates.is_empty() {
            // Nothing recomputed (no new batch): nothing to decide, every bucket kept.
            for bucket in 0..buckets {
                self.first_orders.keep(bucket).await?;
            }
            return Ok(FirstOrders {
                on_days: empty_first_orders()?,
                extra: BTreeSet::new(),
                searched: 0,
            });
        }
        let mut customers = 0;
        let mut base_rows = Vec::with_capacity(buckets);
        let mut decided = Vec::with_capacity(buckets);
        // Split, the night's customers are held once, not twice.
        let nights = split_by_bucket(&on_days, buckets)?;
        drop(on_days);
        let read = |bucket: usize| async move {
            let base = self.first_orders.read(bucket).await?;
            let delta = self.first_orders.read_delta(bucket).await?;
            Ok::<_, GoldError>((base, delta))
        };
        // The next bucket is read (fetched and decoded) while this one is decided, on another
        // thread: both steps are one thread's work each. So two buckets are held at once.
        let mut next = Some(read(0).await?);
        for (bucket, night) in nights.into_iter().enumerate() {
            let (base, delta) = next.take().expect("read before");
            base_rows.push(base.height());
            let dates = dates.clone();
            let deciding = off_runtime(move || decide(&base, &delta, &night, &dates));
            let read_next = async {
                if bucket + 1 < buckets {
                    read(bucket + 1).await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let ((rows, walked), following) = tokio::try_join!(deciding, read_next)?;
            next = following;
            customers += walked;
            decided.push(rows.lazy());
        }
        let decided = collect(concat(decided, UnionArgs::default())?).await?;
        phase.done("first_orders_decided");

        let needy = collect(decided.clone().lazy().filter(col("_needy"))).await?;
        let searched = needy.height();
        let decided = if searched == 0 {
            decided
        } else {
            let found = self.search_first_orders(&needy, dates, state).await?;
            let patched = needy
                .lazy()
                .join(
                    found
                        .lazy()
                        .select([id(), col(FIRST_ORDER_DATE).alias("_f")]),
                    [id()],
                    [id()],
                    JoinArgs::new(JoinType::Left),
                )
                .with_column(earlier(m.clone(), col("_f")).alias("_new"))
                .drop(cols(["_f"]));
            collect(stacked(
                decided.lazy().filter(col("_needy").not()),
                patched,
            )?)
            .await?
        };
        phase.done("first_orders_search");

        // Days whose new customers change: a changed customer's old and new first day.
        let changed = collect(
            decided
                .clone()
                .lazy()
                .filter(new.clone().neq_missing(s.clone()))
                .select([id(), s.clone(), new.clone()]),
        )
        .await?;
        let extra: BTreeSet<NaiveDate> = days_of(&changed, FIRST_ORDER_DATE)?
            .into_iter()
            .chain(days_of(&changed, "_new")?)
            .filter(|d| !dates.contains(d))
            .collect();
        let added = changed.column(FIRST_ORDER_DATE)?.null_count();
        let removed = changed.column("_new")?.null_count();
        let count = bucket_count(
            (customers + added).saturating_sub(removed),
            self.bucket_customers,
            buckets,
        );
        // The first days of the customers first on an extra day: their orders there count them
        // as new (only `order_date == first_order_date` matters to a day's measures, so no
        // other customer's first day is needed there).
        let mut firsts_on_extra = Vec::new();
        let on_extra = |rows: LazyFrame| -> PolarsResult<LazyFrame> {
            Ok(rows.join(
                date_frame(FIRST_ORDER_DATE, &extra)?,
                [s.clone()],
                [s.clone()],
                JoinArgs::new(JoinType::Inner),
            ))
        };
        for (bucket, changes) in split_by_bucket(&changed, buckets)?.into_iter().enumerate() {
            let unchanged = changes.height() == 0 && count == buckets;
            if unchanged && extra.is_empty() {
                self.first_orders.keep(bucket).await?;
                continue;
            }
            // The night's changes merged into the bucket's delta: a customer's new first day
            // (null: none left). Not sorted: nothing reads it in order, and its object is named
            // by what it was computed from, not by its bytes.
            let delta = self.first_orders.read_delta(bucket).await?;
            let delta = if changes.height() == 0 {
                delta
            } else {
                let changes = changes
                    .lazy()
                    .select([id(), new.clone().alias(FIRST_ORDER_DATE)]);
                collect(stacked(
                    without(delta.lazy(), changes.clone(), "customer_id"),
                    changes,
                )?)
                .await?
            };
            // Doubling the buckets, or a delta grown past its share, writes whole bases.
            if count != buckets
                || (!unchanged && folds(delta.height(), base_rows[bucket], self.delta_share))
            {
                let base = self.first_orders.read(bucket).await?;
                let next = collect(applied(base.lazy(), delta.lazy())?).await?;
                if !extra.is_empty() {
                    firsts_on_extra.push(collect(on_extra(next.clone().lazy())?).await?.lazy());
                }
                if count == buckets {
                    self.first_orders.write(bucket, count, next).await?;
                    continue;
                }
                // Split in place: bucket b becomes b, b + buckets, … (every row of a base stays
                // in its bucket while the count stays).
                let parts = split_by_bucket(&next, count)?;
                for (to, rows) in parts.into_iter().enumerate().skip(bucket).step_by(buckets) {
                    self.first_orders.write(to, count, rows).await?;
                }
                continue;
            }
            if !extra.is_empty() {
                // Only the base's customers first on an extra day, with the delta applied.
                let base = self.first_orders.read(bucket).await?;
                let rows = applied(on_extra(base.lazy())?, delta.clone().lazy())?;
                firsts_on_extra.push(collect(on_extra(rows)?).await?.lazy());
            }
            if unchanged {
                self.first_orders.keep(bucket).await?;
            } else {
                self.first_orders.write_delta(bucket, delta).await?;
            }
        }
        // The customers first on a recomputed day (each has a non-cancelled order there, `_m`),
        // then those first on an extra day. No customer is in both, as the extra days are not
        // recomputed, and `decided` and the buckets hold a customer id once each (a null id,
        // which ingest quarantines and a join never matches, aside): no `unique`,
        // which on the 1 M/day night's 7.6 M rows took 1.4 GiB.
        let mut first = vec![
            decided
                .lazy()
                .filter(m.is_not_null())
                .join(
                    date_frame("_new", dates)?,
                    [new.clone()],
                    [new.clone()],
                    JoinArgs::new(JoinType::Inner),
                )
                .select([id(), new.alias(FIRST_ORDER_DATE)]),
        ];
        first.extend(firsts_on_extra);
        let on_days = collect(concat(first, UnionArgs::default())?).await?;
        phase.done("first_orders_state");
        Ok(FirstOrders {
            on_days,
            extra,
            searched,
        })
    }

    /// [`Self::first_orders`] with no state before (a full recompute of every day): the first
    /// pass's first days are the state, written in the buckets their customers call for, and
    /// every customer is first on a recomputed day. Deciding them against empty buckets held
    /// every customer several times over (the decisions, the changes, the delta, the base).
    async fn first_orders_anew(&self, on_days: DataFrame) -> Result<FirstOrders, GoldError> {
        let count = bucket_count(on_days.height(), self.bucket_customers, 1);
        for (bucket, rows) in split_by_bucket(&on_days, count)?.into_iter().enumerate() {
            self.first_orders.write(bucket, count, rows).await?;
        }
        Ok(FirstOrders {
            on_days,
            extra: BTreeSet::new(),
            searched: 0,
        })
    }

    /// Each of the `needy` customers' first non-cancelled order day among the days after their
    /// old first day that are not recomputed (`customer_id`, `first_order_date`; customers
    /// with none are absent).
    async fn search_first_orders(
        &self,
        needy: &DataFrame,
        dates: &BTreeSet<NaiveDate>,
        state: &KpiState,
    ) -> Result<DataFrame, GoldError> {
        let old = days_of(needy, FIRST_ORDER_DATE)?;
        let Some(lo) = old.first() else {
            return Ok(needy
                .clone()
                .select(["customer_id", FIRST_ORDER_DATE])?
                .head(Some(0)));
        };
        let days: BTreeSet<NaiveDate> = self
            .source
            .dates_after(&self.contracts.orders, *lo)
            .await?
            .into_iter()
            .filter(|d| !dates.contains(d))
            .collect();
        collect(first_order_dates(
            latest(
                self.rows(&self.contracts.orders, &days, state)
                    .await?
                    .select(read_columns(&FIRST_ORDER_COLUMNS, &self.contracts.orders)),
                &self.contracts.orders,
            )?
            .join(
                needy.clone().lazy().select([col("customer_id")]),
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Inner),
            ),
        ))
        .await
    }
}

/// Each customer's earliest first order day over the groups of a night's first pass, kept as the
/// groups come. Keeping every group's (customer, day) rows and grouping them at the end held a
/// row per customer per group: at 1 M orders a day, 31 one-day groups of about 625 k customers
/// took the night from 2.1 to 3.9 GiB in that last step. Here each customer is held once, and
/// compactly: its id in one string, its day in a list, and a table of entry numbers (a map of
/// boxed ids took about 110 bytes a customer, 840 MiB for the 7.6 M customers of that night).
#[derive(Default)]
struct FirstDays {
    /// Every id seen, concatenated; entry `i` is `ids[ends[i - 1]..ends[i]]`.
    ids: String,
    ends: Vec<usize>,
    days: Vec<Option<i32>>,
    /// Entry numbers, hashed by their id.
    index: hashbrown::HashTable<u32>,
    /// The day of a null customer id, which the group-by kept as a group of its own.
    null_customer: Option<Option<i32>>,
}

impl FirstDays {
    /// Takes one group's [`first_order_dates`].
    fn add(&mut self, group: &DataFrame) -> PolarsResult<()> {
        let ids = group.column("customer_id")?.str()?;
        let days = group.column(FIRST_ORDER_DATE)?.date()?.physical();
        // The earlier day; a null day (no day) never wins over a day.
        let earliest = |a: Option<i32>, b: Option<i32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let hasher = foldhash::fast::FixedState::default();
        let hash = |id: &str| hasher.hash_one(id);
        for (id, day) in ids.iter().zip(days.iter()) {
            let Some(id) = id else {
                self.null_customer = Some(earliest(self.null_customer.flatten(), day));
                continue;
            };
            let Self {
                ids: text,
                ends,
                days: seen,
                index,
                ..
            } = self;
            let hashed = hash(id);
            let found = index
                .find(hashed, |&e| entry_id(text, ends, e) == id)
                .copied();
            match found {
                Some(entry) => {
                    let seen = &mut seen[entry as usize];
                    *seen = earliest(*seen, day);
                }
                None => {
                    // Entry numbers are u32, and the count must fit too.
                    let entry = u32::try_from(ends.len())
                        .ok()
                        .filter(|&e| e < u32::MAX)
                        .ok_or_else(|| {
                            polars_err!(ComputeError: "a night's first pass holds at most {} customers", u32::MAX)
                        })?;
                    text.push_str(id);
                    ends.push(text.len());
                    seen.push(day);
                    index.insert_unique(hashed, entry, |&e| hash(entry_id(text, ends, e)));
                }
            }
        }
        Ok(())
    }

    /// Every customer seen, with the earliest day: the columns of [`first_order_dates`].
    fn into_frame(mut self) -> PolarsResult<DataFrame> {
        // The table is not needed to list the entries.
        self.index = hashbrown::HashTable::new();
        let n = self.ends.len() + usize::from(self.null_customer.is_some());
        let listed = (0..self.ends.len()).map(|e| Some(entry_id(&self.ids, &self.ends, e as u32)));
        let ids = StringChunked::from_iter_options(
            "customer_id".into(),
            listed.chain(self.null_customer.map(|_| None)),
        );
        let days = Int32Chunked::from_iter_options(
            FIRST_ORDER_DATE.into(),
            self.days.iter().copied().chain(self.null_customer),
        )
        .into_date();
        DataFrame::new(n, vec![ids.into_column(), days.into_column()])
    }
}

/// Entry `entry`'s id in [`FirstDays`]: `ids[ends[entry - 1]..ends[entry]]`.
fn entry_id<'a>(ids: &'a str, ends: &[usize], entry: u32) -> &'a str {
    let entry = entry as usize;
    let start = entry.checked_sub(1).map_or(0, |e| ends[e]);
    &ids[start..ends[entry]]
}

/// The rows of `first` ([`first_order_dates`] shape) by the group of `groups` holding their
/// first day: a group's measures need only the customers first on its days, since a
/// customer counts as new only on its first day. Rows first on no group's day are dropped.
fn first_by_group(
    first: &DataFrame,
    groups: &[BTreeSet<NaiveDate>],
) -> PolarsResult<Vec<DataFrame>> {
    let group_of: std::collections::HashMap<i32, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, days)| days.iter().map(move |d| (values::epoch_days(*d), g)))
        .collect();
    let days = first.column(FIRST_ORDER_DATE)?.date()?.physical();
    split_rows(
        first,
        groups.len(),
        days.iter()
            .map(|day| day.and_then(|d| group_of.get(&d).copied())),
    )
}

/// `a` unless `b` is earlier (a null `b` is never earlier).
fn earlier(a: Expr, b: Expr) -> Expr {
    when(b.clone().is_null().or(a.clone().lt_eq(b.clone())))
        .then(a)
        .otherwise(b)
}

/// The decisions of [`Nightly::first_orders`] for one bucket: the state (`customer_id`,
/// `first_order_date`: `base` with `delta` applied, as [`applied`]) and `night` (the same, the
/// first days among the recomputed days' non-cancelled orders, a row per customer) give
/// `customer_id`, `first_order_date` (old), `_m`, `_new` (null where a search decides) and
/// `_needy`, for the night's customers and those whose old first day is recomputed; and the
/// number of customers in the state.
///
/// One pass over the bucket probing a table of the night's customers, rather than joins: a
/// join hashed every customer of the bucket into a table of its own (about 60 ms a bucket of
/// 578 k customers at H=365, the most of deciding a night). The delta is applied as the pass
/// goes (a base row whose customer the delta holds is passed over), not by building the
/// bucket's state anew, which copied every customer id of the bucket each night.
fn decide(
    base: &DataFrame,
    delta: &DataFrame,
    night: &DataFrame,
    dates: &BTreeSet<NaiveDate>,
) -> PolarsResult<(DataFrame, usize)> {
    let rec = recomputed_days(dates);
    let night_ids = night.column("customer_id")?.str()?;
    // One table for both questions a base row asks, so each row is hashed once: is its
    // customer among the night's (at which row), and does the delta replace it.
    let mut seen: HashMap<&str, Seen, foldhash::fast::FixedState> =
        HashMap::with_capacity_and_hasher(night_ids.len(), foldhash::fast::FixedState::default());
    for (i, id) in night_ids.iter().enumerate() {
        if let Some(id) = id {
            seen.entry(id).or_default().night = Some(i);
        }
    }
    // The night's customers, with their old first day (none for a new customer), then the
    // customers whose first day is recomputed and who have no order left on those days.
    let mut ids: Vec<Option<&str>> = night_ids.iter().collect();
    let mut old: Vec<Option<i32>> = vec![None; ids.len()];
    let mut m: Vec<Option<i32>> = night
        .column(FIRST_ORDER_DATE)?
        .date()?
        .physical()
        .iter()
        .collect();
    let rows = |df: &DataFrame| -> PolarsResult<_> {
        Ok((
            df.column("customer_id")?.str()?.clone(),
            df.column(FIRST_ORDER_DATE)?.date()?.physical().clone(),
        ))
    };
    let ((base_ids, base_days), (delta_ids, delta_days)) = (rows(base)?, rows(delta)?);
    for id in delta_ids.iter().flatten() {
        seen.entry(id).or_default().replaced = true;
    }
    // A base row whose customer the delta holds is passed over (the delta's row stands); a
    // delta row without a day: the customer has no non-cancelled order left.
    let from_base = base_ids.iter().zip(base_days.iter()).filter_map(|(id, s)| {
        let found = id.and_then(|id| seen.get(id));
        (!found.is_some_and(|f| f.replaced)).then(|| (id, s, found.and_then(|f| f.night)))
    });
    let from_delta = delta_ids
        .iter()
        .zip(delta_days.iter())
        .filter(|(_, s)| s.is_some())
        .map(|(id, s)| (id, s, id.and_then(|id| seen.get(id)).and_then(|f| f.night)));
    let mut walked = 0;
    for (id, s, at) in from_base.chain(from_delta) {
        walked += 1;
        match at {
            Some(i) => old[i] = s,
            None if rec(s) => {
                ids.push(id);
                old.push(s);
                m.push(None);
            }
            None => {}
        }
    }
    let mut new = Vec::with_capacity(ids.len());
    let mut needy = Vec::with_capacity(ids.len());
    for (&s, &m) in old.iter().zip(&m) {
        let search = s.is_some() && rec(s) && m.is_none_or(|m| Some(m) > s);
        new.push(match s {
            None => m,
            // Not recomputed: the earlier of the old first day and the night's.
            Some(s) if !rec(Some(s)) => match m {
                Some(m) if m < s => Some(m),
                _ => Some(s),
            },
            _ if search => None,
            _ => m,
        });
        needy.push(search);
    }
    let date = |name: &str, days: Vec<Option<i32>>| -> PolarsResult<Column> {
        Ok(Int32Chunked::new(name.into(), days)
            .into_date()
            .into_series()
            .into_column())
    };
    let decided = DataFrame::new(
        ids.len(),
        vec![
            StringChunked::new("customer_id".into(), ids).into_column(),
            date(FIRST_ORDER_DATE, old)?,
            date("_m", m)?,
            date("_new", new)?,
            BooleanChunked::new("_needy".into(), needy).into_column(),
        ],
    )?;
    Ok((decided, walked))
}

/// What [`decide`] knows of a customer id before walking a bucket.
#[derive(Default)]
struct Seen {
    /// Its row among the night's customers.
    night: Option<usize>,
    /// The bucket's delta holds it (its base row is out of date).
    replaced: bool,
}

/// Whether a day (days since the epoch) is one of `dates`: a table over their span, as every
/// row of a bucket asks.
fn recomputed_days(dates: &BTreeSet<NaiveDate>) -> impl Fn(Option<i32>) -> bool {
    let days: Vec<i32> = dates.iter().map(|d| values::epoch_days(*d)).collect();
    let first = days.first().copied().unwrap_or(0);
    let last = days.last().copied().unwrap_or(-1);
    let mut on = vec![false; usize::try_from(last - first + 1).unwrap_or(0)];
    for d in &days {
        on[(d - first) as usize] = true;
    }
    // A day before the first fails the conversion, one after the last the look-up.
    move |s: Option<i32>| {
        s.and_then(|s| usize::try_from(s - first).ok())
            .and_then(|i| on.get(i).copied())
            .unwrap_or(false)
    }
}

/// The first-order rows of `base` with `delta`'s applied: a customer in `delta` has its date
/// there, or no row when that is null.
fn applied(base: LazyFrame, delta: LazyFrame) -> PolarsResult<LazyFrame> {
    let (id, s) = (|| col("customer_id"), || col(FIRST_ORDER_DATE));
    stacked(
        without(base, delta.clone(), "customer_id").select([id(), s()]),
        delta.filter(s().is_not_null()).select([id(), s()]),
    )
}

/// The rows of `rows` whose `key` is not in `other` (an anti-join).
fn without(rows: LazyFrame, other: LazyFrame, key: &str) -> LazyFrame {
    rows.join(
        other
            .select([col(key), lit(true).alias("_in_other")])
            .unique(None, UniqueKeepStrategy::First),
        [col(key)],
        [col(key)],
        JoinArgs::new(JoinType::Left),
    )
    .filter(col("_in_other").is_null())
    .drop(cols(["_in_other"]))
}

/// Debug-level timing of the nightly run's phases (`RUST_LOG=shoplake=debug`), for finding
/// where a night's time goes without a profiler. Holds the phase's start: the wall clock and the
/// process's CPU time then.
pub(super) struct Phase(std::time::Instant, u64);

impl Phase {
    pub(super) fn start() -> Self {
        Phase(std::time::Instant::now(), crate::telemetry::cpu_ms())
    }

    pub(super) fn done(&mut self, phase: &'static str) {
        self.done_in(phase, None);
    }

    /// A phase of one day group's work (`group`: its index in day order).
    pub(super) fn done_in(&mut self, phase: &'static str, group: Option<usize>) {
        let cpu = crate::telemetry::cpu_ms();
        // CPU time over wall time shows how many cores a phase kept busy (phases that overlap
        // another's work count its CPU too).
        tracing::debug!(
            phase,
            group,
            ms = self.0.elapsed().as_millis() as u64,
            cpu_ms = cpu.saturating_sub(self.1),
            rss_mib = crate::telemetry::rss_mib(),
            peak_rss_mib = crate::telemetry::peak_rss_mib(),
            "nightly phase"
        );
        *self = Phase(std::time::Instant::now(), cpu);
    }
}

/// True when a process at `now_mib` is within an eighth of its peak so far (`peak_mib`): the
/// point where the measures give freed memory back (see `release_freed_if_large`).
fn near_peak(now_mib: u64, peak_mib: u64) -> bool {
    now_mib >= peak_mib - peak_mib / 8
}

/// Days in order, in groups of consecutive days of at most `limit` bytes each (a larger day
/// alone), about equal: as few groups as the limit allows, each closed once it reaches an equal
/// share (greedy filling up to the limit would leave the first group as large as before and a
/// small rest). No day at all is one empty group, whose measures are the empty frames.
pub(super) fn consecutive_groups(
    sizes: BTreeMap<NaiveDate, u64>,
    limit: u64,
) -> Vec<BTreeSet<NaiveDate>> {
    let total: u64 = sizes.values().sum();
    let limit = limit.max(1);
    // At least a byte: days without silver are grouped with the next, not one group each.
    let share = total.div_ceil(total.div_ceil(limit).max(1)).max(1);
    let mut groups: Vec<BTreeSet<NaiveDate>> = Vec::new();
    if sizes.is_empty() {
        groups.push(BTreeSet::new());
    }
    let mut bytes: u64 = 0;
    for (day, size) in sizes {
        match groups.last_mut() {
            Some(group) if bytes < share && bytes.saturating_add(size) <= limit => {
                group.insert(day);
                bytes += size;
            }
            _ => {
                groups.push(BTreeSet::from([day]));
                bytes = size;
            }
        }
    }
    groups
}

/// `a` then `b` (frames of one schema).
fn stacked(a: LazyFrame, b: LazyFrame) -> PolarsResult<LazyFrame> {
    concat([a, b], UnionArgs::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_only_within_an_eighth_of_the_peak() {
        assert!(near_peak(875, 1000));
        assert!(near_peak(1000, 1000));
        assert!(!near_peak(874, 1000));
        assert!(!near_peak(100, 1000));
    }

    /// A (customer, first day) frame; `None` ids and days are nulls.
    fn firsts(rows: &[(Option<&str>, Option<i32>)]) -> DataFrame {
        let ids = StringChunked::from_iter_options("customer_id".into(), rows.iter().map(|r| r.0));
        let days =
            Int32Chunked::from_iter_options(FIRST_ORDER_DATE.into(), rows.iter().map(|r| r.1))
                .into_date();
        DataFrame::new(rows.len(), vec![ids.into_column(), days.into_column()]).unwrap()
    }

    fn sorted_rows(df: &DataFrame) -> Vec<(Option<String>, Option<i32>)> {
        let ids = df.column("customer_id").unwrap().str().unwrap().clone();
        let days = df
            .column(FIRST_ORDER_DATE)
            .unwrap()
            .date()
            .unwrap()
            .physical()
            .clone();
        let mut rows: Vec<_> = ids
            .iter()
            .zip(days.iter())
            .map(|(i, d)| (i.map(str::to_owned), d))
            .collect();
        rows.sort();
        rows
    }

    /// Every row of `df` (any column order), sorted: frames compared regardless of row order.
    fn all_rows(df: &DataFrame) -> Vec<String> {
        let mut rows: Vec<String> = (0..df.height())
            .map(|i| format!("{:?}", df.get_row(i).unwrap().0))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn deciding_applies_the_delta_as_the_state_with_the_delta_applied() {
        // The base, and a delta that moves B, removes C (no order left) and adds D.
        let base = firsts(&[
            (Some("A"), Some(1)),
            (Some("B"), Some(2)),
            (Some("C"), Some(3)),
            (None, Some(10)),
            (Some("E"), Some(10)),
        ]);
        let delta = firsts(&[
            (Some("B"), Some(5)),
            (Some("C"), None),
            (Some("D"), Some(4)),
        ]);
        let night = firsts(&[
            (Some("A"), Some(3)),
            (Some("B"), Some(3)),
            (Some("C"), Some(6)),
            (Some("F"), Some(4)),
        ]);
        let day =
            |n: i64| NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(n as u64);
        let dates: BTreeSet<NaiveDate> = [day(3), day(4), day(5), day(6)].into();
        let (walking, customers) = decide(&base, &delta, &night, &dates).unwrap();
        let state = applied(base.clone().lazy(), delta.clone().lazy())
            .unwrap()
            .collect()
            .unwrap();
        let (built, all) = decide(&state, &empty_first_orders().unwrap(), &night, &dates).unwrap();
        assert_eq!(all_rows(&walking), all_rows(&built));
        assert_eq!((customers, all), (state.height(), state.height()));
        // D's old first day (4) is recomputed and D has no order on the night's days: searched.
        let needy = walking.column("_needy").unwrap().bool().unwrap().sum();
        assert_eq!(needy, Some(1));
    }

    /// [`first_order_dates`] of (customer, order day) rows, every order delivered.
    fn grouped(rows: &[(Option<&str>, Option<i32>)]) -> DataFrame {
        first_order_dates(
            firsts(rows)
                .lazy()
                .rename([FIRST_ORDER_DATE], ["order_date"], true)
                .with_column(lit("delivered").alias("status")),
        )
        .collect()
        .unwrap()
    }

    proptest::proptest! {
        /// The first pass's map gives what grouping every group's rows at once gives.
        #[test]
        fn first_days_equal_one_group_by_of_every_group(
            groups in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::option::weighted(0.95, 0u8..40), proptest::option::weighted(0.8, 0i32..30)),
                    0..30,
                ),
                0..6,
            )
        ) {
            let mut map = FirstDays::default();
            let mut all = Vec::new();
            for group in &groups {
                let ids: Vec<Option<String>> = group.iter().map(|(c, _)| c.map(|c| format!("C{c}"))).collect();
                let rows: Vec<(Option<&str>, Option<i32>)> =
                    ids.iter().zip(group).map(|(id, (_, d))| (id.as_deref(), *d)).collect();
                // Each group as the first pass hands it over: a row per customer.
                map.add(&grouped(&rows)).unwrap();
                all.extend(rows.iter().map(|(i, d)| (i.map(str::to_owned), *d)));
            }
            let all: Vec<(Option<&str>, Option<i32>)> = all.iter().map(|(i, d)| (i.as_deref(), *d)).collect();
            proptest::prop_assert_eq!(sorted_rows(&map.into_frame().unwrap()), sorted_rows(&grouped(&all)));
        }
    }

    #[test]
    fn each_group_gets_the_customers_first_on_its_days() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        let groups = vec![BTreeSet::from([day(1), day(2)]), BTreeSet::from([day(5)])];
        let e = |d: u32| Some(values::epoch_days(day(d)));
        let first = firsts(&[
            (Some("a"), e(1)),
            (Some("b"), e(5)),
            (Some("c"), e(3)),
            (Some("d"), e(2)),
            (None, e(5)),
        ]);
        let split = first_by_group(&first, &groups).unwrap();
        assert_eq!(split.len(), 2);
        let ids = |df: &DataFrame| -> Vec<Option<String>> {
            sorted_rows(df).into_iter().map(|(i, _)| i).collect()
        };
        assert_eq!(
            ids(&split[0]),
            vec![Some("a".to_owned()), Some("d".to_owned())]
        );
        // Day 3 is no group's: its customer is new on none of their days.
        assert_eq!(ids(&split[1]), vec![None, Some("b".to_owned())]);
    }

    #[test]
    fn doubling_the_buckets_splits_each_bucket_on_its_own() {
        let ids: Vec<String> = (0..500).map(|i| format!("C{i}")).collect();
        let df = DataFrame::new(
            ids.len(),
            vec![Series::new("customer_id".into(), ids.clone()).into_column()],
        )
        .unwrap();
        for count in [1, 2, 4, 8] {
            let parts = split_by_bucket(&df, count).unwrap();
            assert_eq!(parts.len(), count);
            assert_eq!(parts.iter().map(DataFrame::height).sum::<usize>(), 500);
            for (b, part) in parts.iter().enumerate() {
                for id in part.column("customer_id").unwrap().str().unwrap().iter() {
                    let id = id.unwrap();
                    assert_eq!(bucket_of(id, count), b);
                    // Under twice the buckets, the same customer is in b or b + count.
                    assert_eq!(bucket_of(id, 2 * count) % count, b);
                }
                // Spread: no bucket empty or holding most of them.
                assert!(
                    part.height() > 500 / count / 3,
                    "{count}: {}",
                    part.height()
                );
            }
        }
        assert_eq!(bucket_count(0, 10, 1), 1);
        assert_eq!(bucket_count(10, 10, 1), 1);
        assert_eq!(bucket_count(11, 10, 1), 2);
        assert_eq!(bucket_count(41, 10, 1), 8);
        // Never fewer than before: a shrinking state keeps its buckets.
        assert_eq!(bucket_count(5, 10, 4), 4);
    }

    #[test]
    fn a_delta_is_folded_once_it_times_the_share_exceeds_the_base() {
        assert!(!folds(100, 800, 8), "exactly an eighth stays a delta");
        assert!(folds(101, 800, 8));
        assert!(!folds(0, 0, 8), "an empty delta of an empty base");
        assert!(folds(1, 0, 8), "a delta on an empty base");
        assert!(folds(1, usize::MAX - 1, usize::MAX), "MAX folds any delta");
        assert!(!folds(usize::MAX, 1, 0), "0 folds none");
    }

    #[test]
    fn days_are_grouped_in_order_up_to_the_limit_and_a_large_day_stands_alone() {
        let d = |n: u32| NaiveDate::from_ymd_opt(2026, 3, n).unwrap();
        let sizes = BTreeMap::from([(d(1), 4), (d(2), 5), (d(3), 20), (d(4), 1), (d(5), 9)]);
        let groups: Vec<Vec<NaiveDate>> = consecutive_groups(sizes, 10)
            .into_iter()
            .map(|g| g.into_iter().collect())
            .collect();
        assert_eq!(groups, vec![vec![d(1), d(2)], vec![d(3)], vec![d(4), d(5)]]);
        assert_eq!(
            consecutive_groups(BTreeMap::new(), 10),
            vec![BTreeSet::new()]
        );
        let one = consecutive_groups(BTreeMap::from([(d(1), 4), (d(2), 5)]), u64::MAX);
        assert_eq!(one.len(), 1);
        // Just over the limit: two halves, not everything but one day and that day.
        let even: BTreeMap<NaiveDate, u64> = (1..=8).map(|n| (d(n), 10)).collect();
        let sizes: Vec<usize> = consecutive_groups(even, 75)
            .iter()
            .map(BTreeSet::len)
            .collect();
        assert_eq!(sizes, vec![4, 4]);
        let empty: BTreeMap<NaiveDate, u64> = (1..=3).map(|n| (d(n), 0)).collect();
        assert_eq!(consecutive_groups(empty, 10).len(), 1);
    }

    /// Lakes hold state tables that earlier releases wrote: the names here are written out, not
    /// taken from the constants, so renaming a stored column (the tombstones keep the version
    /// as `updated_at` whatever a contract names its version column) fails here instead of
    /// making every existing lake's state unreadable.
    #[test]
    fn stored_state_tables_keep_their_column_names_and_types() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        let stamp = |name: &str| {
            Int64Chunked::from_vec(name.into(), vec![1_767_600_000_000_000])
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_series()
                .into_column()
        };
        let stored = DataFrame::new(
            1,
            vec![
                Series::new("dataset".into(), ["orders"]).into_column(),
                Series::new("key".into(), ["O1"]).into_column(),
                Int32Chunked::from_vec("date".into(), vec![values::epoch_days(day)])
                    .into_date()
                    .into_series()
                    .into_column(),
                stamp("updated_at"),
                stamp("_ingested_at"),
                Series::new("_batch_id".into(), ["b1"]).into_column(),
            ],
        )
        .unwrap();
        assert_eq!(
            stored.schema(),
            empty_tombstones().unwrap().schema(),
            "the tombstones' stored schema changed: existing lakes' state would not be read"
        );
        let state = KpiState { tombstones: stored };
        let on = state
            .tombstones_on("orders", "order_id", "order_date", &BTreeSet::from([day]))
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(on.height(), 1);
        assert_eq!(
            on.column("order_id").unwrap().str().unwrap().get(0),
            Some("O1")
        );

        let first_orders = DataFrame::new(
            1,
            vec![
                Series::new("customer_id".into(), ["C1"]).into_column(),
                Int32Chunked::from_vec("first_order_date".into(), vec![values::epoch_days(day)])
                    .into_date()
                    .into_series()
                    .into_column(),
            ],
        )
        .unwrap();
        assert_eq!(
            first_orders.schema(),
            empty_first_orders().unwrap().schema()
        );
        let (decided, _) = decide(
            &first_orders,
            &empty_first_orders().unwrap(),
            &empty_first_orders().unwrap(),
            &BTreeSet::from([day]),
        )
        .unwrap();
        assert_eq!(
            decided.height(),
            1,
            "a customer first on a recomputed day is decided"
        );
    }
}
