//! [`Catalog`] as JSON files in the lake (`catalog/<database>/<table>.json`), for the
//! embedded default and tests.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError, PartitionDef, TableDef};
use crate::state::LakeState;
use crate::storage::ObjectStore;

#[derive(Debug, Clone)]
pub struct LocalCatalog {
    state: LakeState,
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
            state: LakeState::new(store),
            database: database.into(),
        }
    }

    fn key(&self, table: &str) -> String {
        crate::layout::catalog_table_key(&self.database, table)
    }

    async fn load(&self, table: &str) -> Result<Option<TableFile>, CatalogError> {
        Ok(self.state.get_json(&self.key(table)).await?)
    }

    async fn save(&self, file: &TableFile) -> Result<(), CatalogError> {
        Ok(self
            .state
            .put_json(&self.key(&file.table.name), file)
            .await?)
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

    /// The whole table file is read (one JSON object per table): the local catalog is for a
    /// lake on one machine, where that is cheap next to the files it describes.
    async fn partitions_before(
        &self,
        table: &str,
        date_key: &str,
        before: NaiveDate,
    ) -> Result<Vec<Vec<String>>, CatalogError> {
        let Some(file) = self.load(table).await? else {
            return Ok(Vec::new());
        };
        let Some(at) = file
            .table
            .partition_keys
            .iter()
            .position(|k| k.name == date_key)
        else {
            return Err(CatalogError::UnknownPartitionKey {
                table: table.into(),
                key: date_key.into(),
            });
        };
        // As Glue compares a `date` key: a value that is not a date (Hive's null partition)
        // is never before anything.
        Ok(file
            .partitions
            .into_iter()
            .map(|p| p.values)
            .filter(|values| {
                values
                    .get(at)
                    .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
                    .is_some_and(|d| d < before)
            })
            .collect())
    }

    async fn delete_partitions(
        &self,
        table: &str,
        partitions: &[Vec<String>],
    ) -> Result<usize, CatalogError> {
        let Some(mut file) = self.load(table).await? else {
            return Ok(0);
        };
        let gone: HashSet<&Vec<String>> = partitions.iter().collect();
        let before = file.partitions.len();
        file.partitions.retain(|p| !gone.contains(&p.values));
        let removed = before - file.partitions.len();
        if removed > 0 {
            self.save(&file).await?;
        }
        Ok(removed)
    }
}
