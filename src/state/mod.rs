//! The lake's own records over the object-store port: manifests, quality reports, run records,
//! alert and catalog state, all JSON under keys built in [`crate::layout`]. Every stage reads and
//! writes them through here, so there is one codec and one "corrupt record" error.

mod claim;
pub mod cursor;

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use claim::{Claim, ClaimRecord, Claimed, Owner};
pub use cursor::{BatchCursor, CursorListing, WATERMARK_LAG, batch_time, manifests_from};

use crate::error::Retryable;
use crate::layout;
use crate::manifest::Manifest;
use crate::storage::{ObjectStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "{key} is not a readable record ({source}); restore it from a backup or delete it to rebuild it"
    )]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{key} is held by {owner} until {until}: another run is working on it; retry after that (a claim whose owner died is taken over then)"
    )]
    Busy {
        key: String,
        owner: String,
        until: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Retryable for StateError {
    /// A store outage may pass, and so does a claim; a corrupt record stays corrupt.
    fn is_retryable(&self) -> bool {
        match self {
            StateError::Storage(e) => e.is_retryable(),
            StateError::Busy { .. } => true,
            StateError::Corrupt { .. } => false,
        }
    }
}

pub type StateResult<T> = Result<T, StateError>;

/// Typed access to the JSON records of one lake (a bucket or a local directory).
#[derive(Debug, Clone)]
pub struct LakeState {
    store: Arc<dyn ObjectStore>,
}

impl LakeState {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        LakeState { store }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The record at `key`, or `None` when there is none.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> StateResult<Option<T>> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StateError::Corrupt {
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    /// The record at `key`, or its default when there is none (state that starts empty).
    pub async fn get_json_or_default<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> StateResult<T> {
        Ok(self.get_json(key).await?.unwrap_or_default())
    }

    /// Writes a record as indented JSON (people read these during incidents).
    pub async fn put_json(&self, key: &str, value: &impl Serialize) -> StateResult<()> {
        self.store.put(key, Bytes::from(to_json(value))).await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> StateResult<()> {
        Ok(self.store.delete(key).await?)
    }

    pub async fn exists(&self, key: &str) -> StateResult<bool> {
        Ok(self.store.head(key).await?.is_some())
    }

    /// The batch ids that have a manifest in `dataset`, in key (so batch, so time) order.
    pub async fn batch_ids(&self, dataset: &str) -> StateResult<Vec<String>> {
        Ok(self
            .store
            .list(&layout::manifest_prefix(dataset))
            .await?
            .iter()
            .filter_map(|m| layout::parse_manifest_key(&m.key).map(|(_, b)| b.to_owned()))
            .collect())
    }

    pub async fn manifest(&self, dataset: &str, batch_id: &str) -> StateResult<Option<Manifest>> {
        self.get_json(&layout::manifest_key(dataset, batch_id))
            .await
    }

    /// Every manifest of a dataset, oldest batch first.
    pub async fn manifests(&self, dataset: &str) -> StateResult<Vec<Manifest>> {
        let mut out = Vec::new();
        for batch in self.batch_ids(dataset).await? {
            // A manifest listed then removed (a forced re-run) is simply not there any more.
            if let Some(m) = self.manifest(dataset, &batch).await? {
                out.push(m);
            }
        }
        out.sort_by(|a, b| a.batch_id.cmp(&b.batch_id));
        Ok(out)
    }
}

/// The bytes [`LakeState::put_json`] writes.
pub fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("lake records serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    #[tokio::test]
    async fn records_round_trip_and_corruption_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = LakeState::new(Arc::new(LocalStore::new(dir.path()).unwrap()));
        assert_eq!(
            state.get_json::<Vec<u32>>("runs/x.json").await.unwrap(),
            None
        );
        state.put_json("runs/x.json", &vec![1u32, 2]).await.unwrap();
        assert_eq!(
            state.get_json::<Vec<u32>>("runs/x.json").await.unwrap(),
            Some(vec![1, 2])
        );
        state
            .store()
            .put("runs/y.json", Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        let err = state.get_json::<Vec<u32>>("runs/y.json").await.unwrap_err();
        assert!(matches!(&err, StateError::Corrupt { key, .. } if key == "runs/y.json"));
        assert!(!err.is_retryable());
        assert!(state.batch_ids("orders").await.unwrap().is_empty());
    }
}
