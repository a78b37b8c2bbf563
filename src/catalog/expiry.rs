//! Catalog partitions whose silver files have expired are removed from the catalog.
//!
//! The `processed/` lifecycle rule (infra/template.yaml, [`layout::SILVER_RETENTION_DAYS`])
//! deletes silver objects that many days after they were written, but the partitions
//! registered for them would stay in the catalog for ever: empty partitions that Athena and
//! Spectrum still plan, one more per day and region, year after year. The sweep removes them.
//!
//! **Which partitions.** Those of a dataset with a date partition whose date is before
//! `today − SILVER_RETENTION_DAYS` (the boundary the quality gate uses for retained silver).
//! The date says when the rows happened; the lifecycle rule counts from when a *file* was
//! written, and a late export or a compaction writes into an old partition later than its date
//! (its files then outlive the date by as much). So a partition past the cutoff is removed only
//! once its prefix holds no object (one LIST of at most one key); one that still holds files is
//! kept, counted as `waiting`, and removed on a later night, after the rule has expired them. A
//! local lake has no lifecycle rule, so there a partition goes only when its files were deleted.
//!
//! **Cost.** The catalog is asked only for the partitions older than the cutoff (Glue filters
//! with a `GetPartitions` expression), so a night lists and checks the partitions that crossed
//! the cutoff since the last run (one day's worth) plus those still waiting for their files to
//! expire, not the history. The first run on a lake older than the retention removes the
//! backlog once (one LIST per old partition, sequentially).
//!
//! **Racing an ingest.** An ingest writes its files and then registers their partitions. A
//! partition removed here is listed once more afterwards, and registered again if a file
//! appeared in the meantime: an ingest that registered before the removal wrote its file before
//! it too (so the second look finds it), and one that registers after the removal recreates
//! the partition itself.

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use serde::Serialize;
use tracing::{info, warn};

use super::{Catalog, CatalogError, PartitionDef};
use crate::contract::Contract;
use crate::layout;
use crate::storage::{ObjectStore, root_uri};

/// What the sweep did to one dataset's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiredPartitions {
    pub table: String,
    /// Partitions dated before this day are past the retention.
    pub before: NaiveDate,
    /// Partitions removed from the catalog: past the retention, no file left.
    pub removed: usize,
    /// Partitions past the retention that still hold files written after their date (late
    /// exports, compactions): kept until the lifecycle rule expires those too.
    pub waiting: usize,
}

/// Removes expired partitions of the silver tables from a catalog (see the module's text).
#[derive(Debug, Clone)]
pub struct PartitionSweep {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
}

/// The first day still retained on `today`: partitions dated before it are past the retention.
pub fn retained_from(today: NaiveDate) -> NaiveDate {
    today - Duration::days(layout::SILVER_RETENTION_DAYS)
}

impl PartitionSweep {
    /// `store` is the lake whose `processed/` the catalog's partitions point at.
    pub fn new(catalog: Arc<dyn Catalog>, store: Arc<dyn ObjectStore>) -> Self {
        PartitionSweep { catalog, store }
    }

    /// Sweeps the silver table of `contract`; `None` when the dataset has no date partition
    /// (its partitions do not age: customers by region).
    pub async fn sweep(
        &self,
        contract: &Contract,
        today: NaiveDate,
    ) -> Result<Option<ExpiredPartitions>, CatalogError> {
        let Some(date) = contract.date_partition() else {
            return Ok(None);
        };
        let table = contract.name.as_str();
        let before = retained_from(today);
        let candidates = self
            .catalog
            .partitions_before(table, &date.name, before)
            .await?;
        let mut expired = Vec::new();
        let mut waiting = 0;
        for values in candidates {
            if self.holds_files(contract, &values).await? {
                waiting += 1;
            } else {
                expired.push(values);
            }
        }
        let mut report = ExpiredPartitions {
            table: table.to_owned(),
            before,
            removed: 0,
            waiting,
        };
        if !expired.is_empty() {
            self.catalog.delete_partitions(table, &expired).await?;
            // See "Racing an ingest" above.
            let mut back = Vec::new();
            for values in &expired {
                if self.holds_files(contract, values).await? {
                    back.push(PartitionDef {
                        values: values.clone(),
                        location: format!(
                            "{}/{}",
                            root_uri(self.store.as_ref()),
                            partition_prefix(contract, values)
                        ),
                    });
                }
            }
            if !back.is_empty() {
                warn!(
                    table,
                    partitions = back.len(),
                    "files arrived in expired partitions while they were removed; registered again"
                );
                self.catalog.add_partitions(table, &back).await?;
            }
            report.removed = expired.len() - back.len();
            report.waiting += back.len();
        }
        info!(
            table,
            before = %before,
            removed = report.removed,
            waiting = report.waiting,
            "expired catalog partitions swept"
        );
        Ok(Some(report))
    }

    async fn holds_files(
        &self,
        contract: &Contract,
        values: &[String],
    ) -> Result<bool, CatalogError> {
        let prefix = partition_prefix(contract, values);
        Ok(!self
            .store
            .list_after(&prefix, "", Some(1))
            .await?
            .is_empty())
    }
}

/// `processed/<dataset>/<k>=<v>/…/` of a registered partition. Registered values are the path's
/// segments as ingest wrote them (already escaped: [`super::manifest_partitions`]), so they are
/// joined back as they are.
fn partition_prefix(contract: &Contract, values: &[String]) -> String {
    let path: Vec<String> = contract
        .partitions
        .iter()
        .zip(values)
        .map(|(p, v)| format!("{}={v}", p.name))
        .collect();
    format!(
        "{}{}/",
        layout::processed_prefix(&contract.name),
        path.join("/")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{LocalCatalog, silver_table};
    use crate::contract::Registry;
    use crate::storage::LocalStore;
    use async_trait::async_trait;
    use bytes::Bytes;

    /// A local catalog during whose deletes an ingest writes a file into the first partition
    /// being removed (and registers it, which finds it still there).
    #[derive(Debug)]
    struct IngestDuringDelete {
        inner: LocalCatalog,
        store: Arc<dyn ObjectStore>,
    }

    #[async_trait]
    impl Catalog for IngestDuringDelete {
        async fn ensure_tables(
            &self,
            tables: &[super::super::TableDef],
        ) -> Result<(), CatalogError> {
            self.inner.ensure_tables(tables).await
        }
        async fn add_partitions(
            &self,
            table: &str,
            partitions: &[PartitionDef],
        ) -> Result<usize, CatalogError> {
            self.inner.add_partitions(table, partitions).await
        }
        async fn partitions(&self, table: &str) -> Result<Vec<Vec<String>>, CatalogError> {
            self.inner.partitions(table).await
        }
        async fn partitions_before(
            &self,
            table: &str,
            date_key: &str,
            before: NaiveDate,
        ) -> Result<Vec<Vec<String>>, CatalogError> {
            self.inner.partitions_before(table, date_key, before).await
        }
        async fn delete_partitions(
            &self,
            table: &str,
            partitions: &[Vec<String>],
        ) -> Result<usize, CatalogError> {
            let contract = Registry::builtin().get(table).unwrap().clone();
            let prefix = partition_prefix(&contract, &partitions[0]);
            self.store
                .put(
                    &format!("{prefix}part-late.parquet"),
                    Bytes::from_static(b"PAR1"),
                )
                .await?;
            self.inner.delete_partitions(table, partitions).await
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_retention_boundary_is_the_quality_gates_and_prefixes_are_the_silver_layout() {
        assert_eq!(retained_from(day("2026-11-21")), day("2025-11-21"));
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        assert_eq!(
            partition_prefix(orders, &["2025-01-02".into(), "EU".into()]),
            "processed/orders/order_date=2025-01-02/customer_region=EU/"
        );
        let key = layout::silver_key("orders", "order_date=2025-01-02/customer_region=EU", "b");
        assert!(key.starts_with(&partition_prefix(
            orders,
            &["2025-01-02".into(), "EU".into()]
        )));
    }

    #[tokio::test]
    async fn a_partition_that_gains_a_file_while_it_is_removed_is_registered_again() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let reg = Registry::builtin();
        let payments = reg.get("payments").unwrap();
        let root = root_uri(store.as_ref());
        let catalog = IngestDuringDelete {
            inner: LocalCatalog::new(store.clone(), "shoplake"),
            store: store.clone(),
        };
        catalog
            .ensure_tables(&[silver_table(payments, &root)])
            .await
            .unwrap();
        let old: Vec<PartitionDef> = ["2024-03-01", "2024-03-02"]
            .iter()
            .map(|d| PartitionDef {
                values: vec![(*d).into()],
                location: format!("{root}/processed/payments/payment_date={d}/"),
            })
            .collect();
        catalog.add_partitions("payments", &old).await.unwrap();
        let catalog: Arc<dyn Catalog> = Arc::new(catalog);
        let sweep = PartitionSweep::new(catalog.clone(), store.clone());

        let report = sweep
            .sweep(payments, day("2026-11-21"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((report.removed, report.waiting), (1, 1));
        // Registered again as ingest registers it, where its file is.
        let file = LocalCatalog::new(store.clone(), "shoplake");
        assert_eq!(
            file.partitions("payments").await.unwrap(),
            [vec!["2024-03-01".to_owned()]]
        );
        let json = store
            .get(&layout::catalog_table_key("shoplake", "payments"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&json).contains(&format!(
                "{root}/processed/payments/payment_date=2024-03-01/"
            )),
            "the location is the partition's prefix"
        );
        assert_eq!(
            sweep
                .sweep(reg.get("customers").unwrap(), day("2026-11-21"))
                .await
                .unwrap(),
            None,
            "customers have no date partition"
        );
    }
}
