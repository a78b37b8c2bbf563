//! [`Catalog`] as JSON files in the lake (`catalog/<database>/<table>.json`), for the
//! embedded default and tests.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError, PartitionDef, TableDef};
use crate::storage::ObjectStore;

#[derive(Debug, Clone)]
pub struct LocalCatalog {
    store: Arc<dyn ObjectStore>,
    database: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableFile {
    table: TableDef,
    partitions: Vec<PartitionDef>,
}

impl LocalCatalog {
    pub fn new(store: Arc<dyn ObjectStore>, database: impl Into<String>) -> Self {
        LocalCatalog {
            store,
            database: database.into(),
        }
    }

    fn key(&self, table: &str) -> String {
        format!("catalog/{}/{table}.json", self.database)
    }

    async fn load(&self, table: &str) -> Result<Option<TableFile>, CatalogError> {
        let key = self.key(table);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| CatalogError::Corrupt { key, source }),
        }
    }

    async fn save(&self, file: &TableFile) -> Result<(), CatalogError> {
        let body = serde_json::to_vec_pretty(file).expect("catalog files serialise");
        self.store
            .put(&self.key(&file.table.name), Bytes::from(body))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    async fn ensure_tables(&self, tables: &[TableDef]) -> Result<(), CatalogError> {
        for table in tables {
            let partitions = self
                .load(&table.name)
                .await?
                .map(|f| f.partitions)
                .unwrap_or_default();
            self.save(&TableFile {
                table: table.clone(),
                partitions,
            })
            .await?;
        }
        Ok(())
    }

    async fn add_partitions(
        &self,
        table: &str,
        partitions: &[PartitionDef],
    ) -> Result<usize, CatalogError> {
        let Some(mut file) = self.load(table).await? else {
            return Err(CatalogError::Partitions {
                table: table.into(),
                failed: partitions.len(),
                details: "the table does not exist".into(),
            });
        };
        let mut added = 0;
        for p in partitions {
            if !file.partitions.iter().any(|q| q.values == p.values) {
                file.partitions.push(p.clone());
                added += 1;
            }
        }
        file.partitions.sort_by(|a, b| a.values.cmp(&b.values));
        self.save(&file).await?;
        Ok(added)
    }

    async fn partitions(&self, table: &str) -> Result<Vec<Vec<String>>, CatalogError> {
        Ok(self
            .load(table)
            .await?
            .map(|f| f.partitions.into_iter().map(|p| p.values).collect())
            .unwrap_or_default())
    }
}
