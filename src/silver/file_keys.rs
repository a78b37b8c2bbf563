//! Key lists of silver files. A dataset that others reference within a window (payments name
//! orders of at most `window_days` before, [`is_kept`]) keeps, for each of its silver files, the
//! file's distinct keys sorted in the key index's front-coded blocks (`keyset`), at
//! `keys/<dataset>/<the file's partition path>/<its name>-<its size in bytes>.keys`.
//!
//! Why: a payments check looks for the night's order ids on the order days its rows are dated
//! on. At a year of history a night's payments are dated on 32 days, whose order partitions
//! are about 775 files (5 regions; a day's large file and the small ones of the nightly
//! updates). Reading each one's key column cost its footer, a zstd context, a hand-off to
//! polars' threads, and a hash of every key, and that was most of the check's time (`perf`,
//! `make bench-history`). A key list is searched in place: it decodes only the blocks the
//! wanted keys fall into.
//!
//! A key list is a cache, never the truth. It names its file's size, and a check uses it only
//! for a file listed at that size; a file without one (a lake older than key lists, a write
//! killed between the two objects, a list that does not decode) is read as before. Whoever
//! writes a silver file writes its list from the same rows: compaction before its output (named
//! by a digest of its inputs' names, and written once for them: a resumed run finishes, it does
//! not rewrite), ingest after each file and before the batch's manifest. Ingest may write a
//! name again (a retry, a forced re-ingest after a contract change), possibly at the same size
//! with other keys, so it first deletes the lists of every name an earlier attempt wrote: a
//! list never stands beside a file it was not made from. Compaction deletes its inputs' lists
//! after the inputs, ingest the lists of the files it drops; a list whose file is gone is never
//! read, and the bucket's lifecycle rule expires `keys/` with `processed/`.

use std::path::Path;

use polars::prelude::*;

use crate::contract::{Contract, Registry};
use crate::layout;
use crate::quality::key_index::keyset;

/// Whether `dataset`'s silver files keep key lists: a reference rule with a window names it,
/// and it has the leading date partition that window reads by.
pub fn is_kept(registry: &Registry, dataset: &str) -> bool {
    registry
        .get(dataset)
        .is_some_and(|c| c.window_partition().is_some())
        && registry.iter().any(|c| {
            c.quality
                .references
                .iter()
                .any(|r| r.dataset == dataset && r.window_days.is_some())
        })
}

/// The key list of the silver file `silver_key` when it is `size` bytes; `None` for a key
/// outside `processed/` or not a Parquet file.
pub fn list_key(silver_key: &str, size: u64) -> Option<String> {
    Some(format!("{}{size}.keys", list_stem(silver_key)?))
}

/// Whether `list_key` is a key list of `silver_key`, at whatever size.
pub fn is_list_of(list_key: &str, silver_key: &str) -> bool {
    list_stem(silver_key)
        .and_then(|stem| {
            Some(
                list_key
                    .strip_prefix(&stem)?
                    .strip_suffix(".keys")?
                    .to_owned(),
            )
        })
        .is_some_and(|size| !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()))
}

/// What the key lists of `silver_key` start with (its list key up to the size), so where they
/// are listed: the lists under it that [`is_list_of`] it are its lists (others may be of a file
/// whose name starts the same).
pub fn list_stem(silver_key: &str) -> Option<String> {
    let rest = silver_key
        .strip_prefix(layout::PROCESSED)?
        .strip_prefix('/')?
        .strip_suffix(".parquet")?;
    Some(format!("{}/{rest}-", layout::KEYS))
}

/// Where the key lists of the silver files under `silver_prefix` are listed.
pub fn list_prefix(silver_prefix: &str) -> Option<String> {
    let rest = silver_prefix.strip_prefix(layout::PROCESSED)?;
    Some(format!("{}{rest}", layout::KEYS))
}

/// The key list of `contract`'s key column in `df` (its distinct non-null keys).
pub fn encode(df: &DataFrame, contract: &Contract) -> PolarsResult<Vec<u8>> {
    let column = contract.key_column().name.as_str();
    let values = df.column(column)?.str()?;
    let mut keys: Vec<&str> = values.iter().flatten().collect();
    keys.sort_unstable();
    keys.dedup();
    Ok(keyset::encode(keys.iter().map(|k| k.as_bytes())))
}

/// The key list of the silver file at `path` (its key column read back).
pub fn of_file(path: &Path, contract: &Contract) -> PolarsResult<Vec<u8>> {
    let column = contract.key_column().name.clone();
    let df = ParquetReader::new(std::fs::File::open(path)?)
        .with_columns(Some(vec![column]))
        .finish()?;
    encode(&df, contract)
}

/// The keys of `wanted` that the key list `list` holds; `None` when `list` is not a readable
/// key list (the caller then reads the file itself).
pub fn held<'w>(list: &[u8], wanted: Vec<&'w str>) -> Option<Vec<&'w str>> {
    keyset::lookup_in(list, wanted).ok().map(|(held, _)| held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silver_file_s_list_is_under_keys_with_its_size() {
        let file = "processed/orders/order_date=2026-01-02/customer_region=EU/part-b1.parquet";
        assert_eq!(
            list_key(file, 1234).as_deref(),
            Some("keys/orders/order_date=2026-01-02/customer_region=EU/part-b1-1234.keys")
        );
        assert_eq!(
            list_prefix("processed/orders/order_date=2026-01-02/").as_deref(),
            Some("keys/orders/order_date=2026-01-02/")
        );
        assert!(is_list_of(&list_key(file, 7).unwrap(), file));
        // Not the list of another file whose name starts the same.
        let other = file.replace("part-b1", "part-b1-2");
        assert!(!is_list_of(&list_key(&other, 7).unwrap(), file));
        assert!(is_list_of(&list_key(&other, 7).unwrap(), &other));
        assert_eq!(list_key("raw/orders/a.parquet", 1), None);
        assert_eq!(list_key("processed/orders/a.csv", 1), None);
    }

    #[test]
    fn a_list_holds_the_distinct_keys_and_a_broken_one_is_none() {
        let df = df!("order_id" => [Some("O2"), Some("O1"), None, Some("O2")]).unwrap();
        let registry = Registry::builtin();
        let list = encode(&df, registry.get("orders").unwrap()).unwrap();
        let held = held(&list, vec!["O3", "O1", "O2"]).unwrap();
        assert_eq!(held, ["O1", "O2"]);
        assert_eq!(super::held(b"not a key list", vec!["O1"]), None);
        // A list cut short is no list.
        assert_eq!(super::held(&list[..list.len() - 1], vec!["O1"]), None);
    }

    #[test]
    fn orders_keep_lists_and_payments_and_customers_do_not() {
        let registry = Registry::builtin();
        assert!(is_kept(&registry, "orders"));
        assert!(!is_kept(&registry, "payments"));
        assert!(!is_kept(&registry, "customers"));
    }
}
