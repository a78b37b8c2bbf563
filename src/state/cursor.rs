//! A per-dataset cursor over `manifests/<dataset>/`, so a stage that walks batches (the load,
//! `lake quality`'s unchecked batches and unsent verdicts) lists only the manifests added since
//! its last run instead of every batch ever ingested.
//!
//! `watermark` is the newest batch id listed so far; a run lists the manifests after the batch
//! ids [`WATERMARK_LAG`] older than it (S3 `StartAfter`), since batch ids sort by the source's
//! upload time and a batch may commit a while after a newer one (an ingest retried or redriven
//! from the dead-letter queue). `open` holds every batch looked at but not done with (what "done"
//! means is the stage's: loaded, checked, its verdict sent): each run looks at them again
//! wherever the watermark is. It is bounded by the batches in that state, not by history.
//!
//! A run reads the cursor, lists, works, then writes the cursor: one that stops earlier leaves
//! the old cursor and the next run looks at the same batches again, so the stage's own record of
//! what is done (a marker, a report) must be what decides, never the cursor alone.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::storage::{ObjectStore, StorageResult};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCursor {
    pub watermark: Option<String>,
    pub open: BTreeSet<String>,
}

/// How far behind its watermark a cursor lists again: longer than an ingest can be retried after
/// its source arrived (SQS keeps a redriven event at most 14 days).
pub const WATERMARK_LAG: chrono::Duration = chrono::Duration::days(15);

/// The time at the start of a batch id (`20261121T100000Z-…`).
const BATCH_TIME: &str = "%Y%m%dT%H%M%SZ";

/// The batches one run looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorListing {
    /// The batches whose manifests the listing returned (they exist), in batch (so time)
    /// order, each with its manifest's ETag: a manifest rewritten under its batch id (a forced
    /// re-ingest) has another.
    pub listed: BTreeMap<String, String>,
    /// `listed` and the cursor's open batches, in batch (so time) order.
    pub candidates: BTreeSet<String>,
}

impl CursorListing {
    /// Whether a candidate is only known from the cursor: its manifest may have gone since (a
    /// removed batch), which the caller checks before working on it.
    pub fn only_open(&self, batch: &str) -> bool {
        !self.listed.contains_key(batch)
    }
}

/// The time a batch id starts with (its source's upload time), if it has one.
pub fn batch_time(batch_id: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(batch_id.get(..16)?, BATCH_TIME).ok()
}

/// The key to list `manifests/<dataset>/` after so that every batch from `time` on is listed.
pub fn manifests_from(dataset: &str, time: NaiveDateTime) -> String {
    let from = time.format(BATCH_TIME).to_string();
    layout::manifest_key(dataset, &from)
        .trim_end_matches(".json")
        .to_owned()
}

impl BatchCursor {
    /// The key `manifests/<dataset>/` is listed after: [`WATERMARK_LAG`] before the watermark,
    /// or nothing (the whole prefix) before the first run.
    pub fn start_after(&self, dataset: &str) -> String {
        self.watermark
            .as_deref()
            .and_then(batch_time)
            .map(|t| manifests_from(dataset, t - WATERMARK_LAG))
            .unwrap_or_default()
    }

    /// Lists the manifests of `dataset` after [`Self::start_after`] and moves the watermark to
    /// the newest one listed (never back).
    pub async fn list(
        &mut self,
        store: &dyn ObjectStore,
        dataset: &str,
    ) -> StorageResult<CursorListing> {
        let listed: BTreeMap<String, String> = store
            .list_after(
                &layout::manifest_prefix(dataset),
                &self.start_after(dataset),
                None,
            )
            .await?
            .into_iter()
            .filter_map(|m| {
                layout::parse_manifest_key(&m.key).map(|(_, b)| (b.to_owned(), m.etag.clone()))
            })
            .collect();
        if let Some((newest, _)) = listed.last_key_value()
            && self.watermark.as_ref().is_none_or(|w| w < newest)
        {
            self.watermark = Some(newest.clone());
        }
        let mut candidates: BTreeSet<String> = listed.keys().cloned().collect();
        candidates.extend(self.open.iter().cloned());
        Ok(CursorListing { listed, candidates })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;
    use bytes::Bytes;
    use std::sync::Arc;

    #[tokio::test]
    async fn lists_from_the_lag_behind_the_watermark_and_keeps_open_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(dir.path()).unwrap());
        let batch = |d: u32| format!("202601{d:02}T010000Z-abc");
        for d in 1..=30 {
            store
                .put(&layout::manifest_key("orders", &batch(d)), Bytes::new())
                .await
                .unwrap();
        }
        store
            .put(&layout::pending_key("orders", &batch(31)), Bytes::new())
            .await
            .unwrap();
        let mut cursor = BatchCursor::default();
        let first = cursor.list(store.as_ref(), "orders").await.unwrap();
        assert_eq!(first.listed.len(), 30, "the first run lists everything");
        assert_eq!(cursor.watermark, Some(batch(30)));

        cursor.open.insert(batch(2));
        let second = cursor.list(store.as_ref(), "orders").await.unwrap();
        // 15 days behind the 30th: the 15th (the same second) and later.
        assert_eq!(second.listed.keys().next(), Some(&batch(15)));
        assert_eq!(second.listed.len(), 16);
        assert!(second.candidates.contains(&batch(2)) && second.only_open(&batch(2)));
        assert_eq!(cursor.watermark, Some(batch(30)), "never moves back");
    }
}
