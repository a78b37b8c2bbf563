//! A full recompute of the KPIs (the first run, `{"full": true}`, a range backfill) in the
//! memory of a nightly run, not of all of silver.
//!
//! It is the nightly recompute ([`Nightly::recompute`]) of every day with data, from an empty
//! first-order state and the tombstones of every key whose latest version lies on another
//! day. Those tombstones are found without the contracts' move window (a full recompute is
//! the way back from a key moved further than its contract allows), so every key's days must
//! meet: every version's key and day are read a group of days at a time and spilled to the
//! work directory in parts by a hash of the key; each part is searched on its own for keys on
//! several days, and only those (rare) keys' versions are read again. A run holds one group of
//! days, one part of the keys, and every customer's first day (the first pass's entry, about
//! 30 bytes each, then the state's rows as they are written), not every row of silver: holding
//! it all took 6.2 GiB at 365 days of this shop's history, over the 3008 MB of the aggregate
//! Lambda.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use super::incremental::{
    self, FirstOrderBuckets, KpiState, NightResult, Nightly, Phase, SilverDates, collect,
    consecutive_groups, date_of, empty_first_orders, empty_tombstones, key_of, off_runtime,
    read_columns, split_rows, stale_days,
};
use super::kpis::KpiContracts;
use super::writer::GoldError;
use crate::contract::Contract;
use crate::scratch::Scratch;
use crate::silver::read::scan_dates;
use crate::storage::StorageError;

/// The most parts the versions are split into. With a group's worth of silver per part, 64
/// parts hold the versions of 64 groups of silver (2.2 GB of one dataset's Parquet at the
/// 3008 MB Lambda's 35 MB groups); a larger dataset puts more in each part.
const MAX_PARTS: u64 = 64;

/// Parts for `total` bytes of a dataset's silver at `group_bytes` a group: as many as groups,
/// so that a part's versions (a few of a row's columns) hold no more rows than a group does.
fn parts_for(total: u64, group_bytes: u64) -> usize {
    total.div_ceil(group_bytes.max(1)).clamp(1, MAX_PARTS) as usize
}

/// The first-order state of a run that keeps none (a range backfill): starts empty, and what
/// the recompute writes to it is dropped.
pub struct NoFirstOrders;

#[async_trait::async_trait]
impl FirstOrderBuckets for NoFirstOrders {
    fn count(&self) -> usize {
        0
    }

    async fn read(&self, _bucket: usize) -> Result<DataFrame, GoldError> {
        Ok(empty_first_orders()?)
    }

    async fn read_delta(&self, _bucket: usize) -> Result<DataFrame, GoldError> {
        Ok(empty_first_orders()?)
    }

    async fn write(&self, _: usize, _: usize, _: DataFrame) -> Result<(), GoldError> {
        Ok(())
    }

    async fn write_delta(&self, _: usize, _: DataFrame) -> Result<(), GoldError> {
        Ok(())
    }

    async fn keep(&self, _: usize) -> Result<(), GoldError> {
        Ok(())
    }
}

/// One full recompute.
pub struct Full<'a> {
    pub source: &'a dyn SilverDates,
    pub contracts: &'a KpiContracts,
    /// Where the state's first orders go: empty before ([`FirstOrderBuckets::count`] 0), every
    /// bucket written as a base.
    pub first_orders: &'a dyn FirstOrderBuckets,
    pub bucket_customers: usize,
    /// The most silver held at once, as in the nightly run ([`super::incremental::group_bytes`]).
    pub group_bytes: u64,
    /// Where the versions are spilled (a scratch directory, removed after; the Lambda's `/tmp`).
    pub work_dir: &'a Path,
}

fn spill_error(source: std::io::Error) -> GoldError {
    GoldError::Storage(StorageError::Io {
        operation: "write",
        key: "the aggregate's spilled key versions".into(),
        source,
    })
}

impl Full<'_> {
    /// Every day of silver's KPIs, and the state a nightly run continues from.
    pub async fn run(&self) -> Result<NightResult, GoldError> {
        let mut dates = BTreeSet::new();
        let mut tombstones = vec![empty_tombstones()?.lazy()];
        let mut moved = 0;
        let mut phase = Phase::start();
        // Dates after the first day of year 1: all of them.
        let start = NaiveDate::from_ymd_opt(1, 1, 1).expect("a valid date");
        for contract in [&self.contracts.orders, &self.contracts.payments] {
            let days = self.source.dates_after(contract, start).await?;
            phase.done("full_dates");
            let stale = self.tombstones(contract, &days).await?;
            phase.done("full_tombstones");
            moved += stale.column("key")?.n_unique()?;
            tombstones.push(stale.lazy());
            dates.extend(days);
        }
        let tombstones = collect(
            concat(tombstones, UnionArgs::default())?
                .sort(["dataset", "key", "date"], SortMultipleOptions::default()),
        )
        .await?;
        let state = KpiState { tombstones };
        // `recompute` reads only the state it is given; the nightly run's own `state` and
        // `delta_share` serve its planning and its writes over a state before it.
        let nightly = Nightly {
            source: self.source,
            contracts: self.contracts,
            state: &state,
            first_orders: self.first_orders,
            bucket_customers: self.bucket_customers,
            delta_share: usize::MAX,
            group_bytes: self.group_bytes,
        };
        nightly.recompute(dates, state.clone(), moved).await
    }

    /// The tombstones of `contract` over `days` ([`stale_days`] of every version). A key needs
    /// one only if its versions lie on more than one day, which is rare: every version's key and
    /// day are spilled in parts by a hash of the key, each part is searched for keys on several
    /// days on its own, and only those keys' versions are then read again, for their version
    /// columns. Finding them by [`stale_days`] over every version's version columns took twice
    /// as long on the 365-day lake of `make bench-history` (20 of 45 s), which has none.
    async fn tombstones(
        &self,
        contract: &Contract,
        days: &BTreeSet<NaiveDate>,
    ) -> Result<DataFrame, GoldError> {
        let mut phase = Phase::start();
        let (key, date) = (key_of(contract), date_of(contract)?);
        let root = self.source.prepare(contract, days).await?;
        let sizes = incremental::day_sizes(&root, contract, days);
        let parts = parts_for(sizes.values().sum(), self.group_bytes);
        let spill = Scratch::create_in(self.work_dir, "kpi-versions-").map_err(spill_error)?;
        let groups = consecutive_groups(sizes, self.group_bytes);
        for (group, group_days) in groups.iter().enumerate() {
            let versions =
                collect(scan_dates(&root, contract, group_days)?.select([col(&key), col(&date)]))
                    .await?;
            let (dir, key) = (spill.path().to_owned(), key.clone());
            off_runtime(move || spill_parts(&versions, &key, parts, &dir, group)).await?;
        }
        phase.done("full_versions_spilled");
        // The keys on several days, and those days.
        let mut moved = Vec::new();
        for part in 0..parts {
            let dir = part_dir(spill.path(), part);
            if !dir.is_dir() {
                continue;
            }
            let versions = collect(LazyFrame::scan_parquet(
                PlRefPath::new(format!("{}/*.parquet", dir.display())),
                ScanArgsParquet::default(),
            )?)
            .await?;
            // On several days: its earliest and latest day differ.
            let several = collect(
                versions
                    .clone()
                    .lazy()
                    .group_by([col(&key)])
                    .agg([
                        col(&date).min().alias("_first"),
                        col(&date).max().alias("_last"),
                    ])
                    .filter(col("_first").neq(col("_last")))
                    .select([col(&key)]),
            )
            .await?;
            if several.height() == 0 {
                continue;
            }
            let found = versions
                .lazy()
                .join(
                    several.lazy(),
                    [col(&key)],
                    [col(&key)],
                    JoinArgs::new(JoinType::Inner),
                )
                .unique(None, UniqueKeepStrategy::First);
            moved.push(collect(found).await?.lazy());
        }
        drop(spill);
        if moved.is_empty() {
            return Ok(empty_tombstones()?);
        }
        let moved = collect(concat(moved, UnionArgs::default())?).await?;
        let versions = incremental::rows_of_keys(
            &root,
            contract,
            &incremental::days_of(&moved, &date)?,
            moved.column(&key)?,
            &read_columns(&[&key, &date], contract),
            self.group_bytes,
        )
        .await?;
        collect(stale_days(contract, versions.lazy())?).await
    }
}

fn part_dir(spill: &Path, part: usize) -> PathBuf {
    spill.join(format!("part-{part}"))
}

/// Writes the rows of `versions` into `parts` files by a hash of their `key`
/// (`part-<p>/group-<group>.parquet` under `dir`); a part without rows gets no file.
fn spill_parts(
    versions: &DataFrame,
    key: &str,
    parts: usize,
    dir: &Path,
    group: usize,
) -> PolarsResult<()> {
    let keys = versions.column(key)?.cast(&DataType::String)?;
    let hasher = foldhash::fast::FixedState::default();
    let part_of = keys
        .str()?
        .iter()
        .map(|k| Some((hasher.hash_one(k.unwrap_or_default()) % parts as u64) as usize));
    for (part, mut rows) in split_rows(versions, parts, part_of)?
        .into_iter()
        .enumerate()
    {
        if rows.height() == 0 {
            continue;
        }
        let dir = part_dir(dir, part);
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::File::create(dir.join(format!("group-{group}.parquet")))?;
        ParquetWriter::new(BufWriter::new(file))
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut rows)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versions_are_split_into_as_many_parts_as_groups_within_bounds() {
        assert_eq!(parts_for(0, 35), 1);
        assert_eq!(parts_for(35, 35), 1);
        assert_eq!(parts_for(36, 35), 2);
        assert_eq!(parts_for(219, 35), 7);
        assert_eq!(parts_for(u64::MAX, 1), MAX_PARTS as usize);
        assert_eq!(parts_for(10, 0), MAX_PARTS.min(10) as usize);
    }
}
