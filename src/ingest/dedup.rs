//! Latest-wins deduplication by key: among rows with the same key, the one with the greatest
//! version (`updated_at`) wins; on a tie, the later row in the file. Exact duplicates are the
//! special case where every field ties.

use std::collections::HashMap;

use crate::columns::Batch;

/// The surviving rows (indices into `batch`, in batch order) and how many rows were dropped.
pub fn latest_wins(batch: &Batch, key: usize, version: usize) -> (Vec<u32>, u64) {
    let mut winner: HashMap<&str, u32, foldhash::fast::FixedState> =
        HashMap::with_capacity_and_hasher(batch.len(), Default::default());
    let mut dropped = 0u64;
    // Ties go by source line, not batch position: a batch keeps file order only within a
    // partition, and one key's versions may lie in different partitions.
    let rank = |row: usize| (batch.i64(version, row), batch.lines[row]);
    for row in 0..batch.len() {
        let k = batch.str(key, row).unwrap_or_default();
        match winner.entry(k) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(row as u32);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                dropped += 1;
                if rank(row) > rank(*e.get() as usize) {
                    e.insert(row as u32);
                }
            }
        }
    }
    let mut rows: Vec<u32> = winner.into_values().collect();
    rows.sort_unstable();
    (rows, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Value;
    use crate::contract::Registry;
    use std::borrow::Cow;

    fn payments(rows: &[(&str, i64)]) -> Batch {
        let reg = Registry::builtin();
        let contract = reg.get("payments").unwrap();
        let mut b = Batch::new(contract);
        for (i, (id, updated)) in rows.iter().enumerate() {
            let s = |v: &'static str| Value::Str(Cow::Borrowed(v));
            b.push_row(
                i as u64 + 2,
                &[
                    Value::Str(Cow::Borrowed(id)),
                    s("o1"),
                    Value::I64(0),
                    s("card"),
                    s("succeeded"),
                    Value::I64(100),
                    s("USD"),
                    Value::I64(*updated),
                ],
            );
        }
        b
    }

    #[test]
    fn latest_version_wins_and_ties_go_to_the_later_row() {
        let b = payments(&[
            ("a", 5),
            ("b", 1),
            ("a", 9),
            ("a", 7),
            ("c", 3),
            ("c", 3),
            ("b", 1),
        ]);
        let (rows, dropped) = latest_wins(&b, 0, 7);
        // a: row 2 (version 9); b: tie -> row 6; c: tie -> row 5.
        assert_eq!(rows, [2, 5, 6]);
        assert_eq!(dropped, 4);
        assert_eq!(rows.len() as u64 + dropped, b.len() as u64);
    }

    #[test]
    fn ties_go_to_the_later_source_line_whatever_the_batch_order() {
        // Grouped by partition, the batch holds line 9 before line 4.
        let mut b = payments(&[("a", 3), ("a", 3), ("a", 2)]);
        b.lines = vec![9, 4, 12];
        let (rows, dropped) = latest_wins(&b, 0, 7);
        assert_eq!((rows, dropped), (vec![0], 2));
    }

    #[test]
    fn nothing_to_drop() {
        let b = payments(&[("a", 1), ("b", 1)]);
        assert_eq!(latest_wins(&b, 0, 7), (vec![0, 1], 0));
        let empty = payments(&[]);
        assert_eq!(latest_wins(&empty, 0, 7), (vec![], 0));
    }
}
