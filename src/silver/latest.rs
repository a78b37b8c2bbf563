//! The latest version of each key: the one row of it that every reader keeps.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use foldhash::fast::FixedState;
use polars::prelude::*;

use crate::contract::Contract;
use crate::silver::{BATCH_ID, INGESTED_AT};

/// Which rows of `df` are each key's latest version: the greatest
/// `version_column`, then the later ingestion (`_ingested_at`, then `_batch_id`; a null is
/// older than any value), as gold, the compaction and the warehouse MERGE decide. A null key
/// is one key. Of rows equal in all three (one batch holds a key once), the first.
///
/// One pass over the keys with a table of each key's best row so far, comparing versions only
/// when a key comes again. polars' group-by (a window count over the key, then a sort of the
/// keys with several versions) kept every key's row numbers and was about a tenth of the
/// nightly aggregate's CPU.
pub(crate) fn latest_rows(df: &DataFrame, contract: &Contract) -> PolarsResult<BooleanChunked> {
    let version = contract.version_column().name.as_str();
    latest_rows_by(df, contract.key_column().name.as_str(), version)
}

fn latest_rows_by(df: &DataFrame, key: &str, version: &str) -> PolarsResult<BooleanChunked> {
    let n = df.height();
    // One chunk each, so a row's value is found in constant time when its key comes again.
    let as_i64 = |name: &str| -> PolarsResult<Int64Chunked> {
        Ok(df
            .column(name)?
            .as_materialized_series()
            .to_physical_repr()
            .cast(&DataType::Int64)?
            .i64()?
            .rechunk()
            .into_owned())
    };
    let (versions, ingested) = (as_i64(version)?, as_i64(INGESTED_AT)?);
    let batches = df.column(BATCH_ID)?.str()?.rechunk();
    let rank = |i: usize| (versions.get(i), ingested.get(i), batches.get(i));
    let keys = df.column(key)?.cast(&DataType::String)?;
    let mut best: HashMap<Option<&str>, usize, FixedState> =
        HashMap::with_capacity_and_hasher(n, FixedState::default());
    for (i, k) in keys.str()?.iter().enumerate() {
        match best.entry(k) {
            Entry::Vacant(e) => {
                e.insert(i);
            }
            Entry::Occupied(mut e) => {
                if rank(*e.get()) < rank(i) {
                    e.insert(i);
                }
            }
        }
    }
    // A mask, not row numbers: a filter keeps the rows in order and works chunk by chunk,
    // where a gather from a frame of many chunks (a scan of many files) looks each row up.
    let mut keep = vec![false; n];
    for &i in best.values() {
        keep[i] = true;
    }
    Ok(BooleanChunked::from_slice("latest".into(), &keep))
}

/// `df` with only each key's latest version ([`latest_rows`]), rows in their order.
pub(crate) fn latest_of(df: DataFrame, contract: &Contract) -> PolarsResult<DataFrame> {
    let keep = latest_rows(&df, contract)?;
    if keep.all() {
        return Ok(df);
    }
    df.filter(&keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// key, version, `_ingested_at`, `_batch_id`
    type Row<'a> = (Option<&'a str>, Option<i64>, Option<i64>, &'a str);
    type Owned = (Option<String>, Option<i64>, Option<i64>, String);
    /// key number, version, `_ingested_at`, batch number
    type Drawn = (Option<u8>, Option<i64>, Option<i64>, u8);

    fn frame(rows: &[Row<'_>]) -> DataFrame {
        let col_of = |name: &str, v: Vec<Option<i64>>| Series::new(name.into(), v).into_column();
        DataFrame::new(
            rows.len(),
            vec![
                Series::new("k".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()).into_column(),
                col_of("v", rows.iter().map(|r| r.1).collect()),
                col_of(INGESTED_AT, rows.iter().map(|r| r.2).collect()),
                Series::new(
                    BATCH_ID.into(),
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )
                .into_column(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn each_key_keeps_its_greatest_version_then_its_later_ingestion() {
        let df = frame(&[
            (Some("a"), Some(1), Some(9), "b1"),
            (Some("b"), Some(5), Some(1), "b1"),
            (Some("a"), Some(2), Some(1), "b2"),
            (Some("b"), Some(5), Some(2), "b0"),
            (None, Some(1), None, "b1"),
            (Some("c"), Some(3), Some(1), "b1"),
            (Some("c"), Some(3), Some(1), "b2"),
            (None, None, Some(5), "b9"),
            (Some("d"), None, Some(1), "b1"),
            (Some("d"), Some(0), Some(1), "b0"),
        ]);
        // a: version 2; b: same version, later ingestion; null key: version 1 over none; c: the
        // later batch id; d: a version over none.
        assert_eq!(
            kept(latest_rows_by(&df, "k", "v").unwrap()),
            vec![2, 3, 4, 6, 9]
        );
    }

    /// Every row with its key's greatest (version, ingestion, batch), by sorting: what readers
    /// keep, the slow way.
    fn by_sorting(rows: &[Drawn]) -> Vec<usize> {
        let rank = |i: usize| (rows[i].1, rows[i].2, format!("b{}", rows[i].3));
        (0..rows.len())
            .filter(|&i| {
                rows.iter().enumerate().all(|(j, r)| {
                    r.0 != rows[i].0 || rank(j) < rank(i) || (rank(j) == rank(i) && j >= i)
                })
            })
            .collect()
    }

    /// The row numbers a mask keeps.
    fn kept(mask: BooleanChunked) -> Vec<usize> {
        mask.iter()
            .enumerate()
            .filter_map(|(i, k)| (k == Some(true)).then_some(i))
            .collect()
    }

    proptest! {
        #[test]
        fn the_rows_kept_are_those_a_sort_by_version_keeps(
            rows in prop::collection::vec(
                (
                    prop::option::weighted(0.95, 0u8..12),
                    prop::option::weighted(0.9, 0i64..4),
                    prop::option::weighted(0.9, 0i64..3),
                    0u8..3,
                ),
                0..60,
            ),
            chunks in 1usize..4,
        ) {
            let names: Vec<Owned> = rows
                .iter()
                .map(|r| (r.0.map(|k| format!("k{k}")), r.1, r.2, format!("b{}", r.3)))
                .collect();
            let borrowed: Vec<_> = names
                .iter()
                .map(|r| (r.0.as_deref(), r.1, r.2, r.3.as_str()))
                .collect();
            // Split into chunks, as a scan of several files gives.
            let whole = frame(&borrowed);
            let size = whole.height().div_ceil(chunks).max(1);
            let mut df = whole.slice(0, size);
            let mut at = size;
            while at < whole.height() {
                df.vstack_mut(&whole.slice(at as i64, size)).unwrap();
                at += size;
            }
            prop_assert_eq!(kept(latest_rows_by(&df, "k", "v").unwrap()), by_sorting(&rows));
        }
    }
}
