//! Catalog definitions derived from the contracts: one table per silver dataset and per gold
//! table (Parquet SerDe, columns, partition keys), and the partitions a manifest adds.

use serde::{Deserialize, Serialize};

use crate::contract::{ColumnKind, Contract, PartitionTransform};
use crate::gold::kpis::COLUMNS as KPI_COLUMNS;
use crate::gold::methods;
use crate::layout;
use crate::manifest::Manifest;
use crate::silver::{BATCH_ID, INGESTED_AT, SOURCE_FILE};

pub const PARQUET_INPUT_FORMAT: &str =
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
pub const PARQUET_OUTPUT_FORMAT: &str =
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
pub const PARQUET_SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// Hive type name, as Glue and Athena expect (`decimal(18,2)`, `timestamp`, …).
    pub hive_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub description: String,
    /// `s3://bucket/processed/<dataset>/`
    pub location: String,
    pub columns: Vec<ColumnDef>,
    pub partition_keys: Vec<ColumnDef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDef {
    /// Values in partition-key order.
    pub values: Vec<String>,
    pub location: String,
}

fn hive_type(kind: &ColumnKind) -> String {
    match kind {
        ColumnKind::String { .. } | ColumnKind::Enum { .. } => "string".into(),
        ColumnKind::Date => "date".into(),
        ColumnKind::Timestamp => "timestamp".into(),
        ColumnKind::Decimal {
            precision, scale, ..
        } => format!("decimal({precision},{scale})"),
        ColumnKind::Int32 { .. } => "int".into(),
    }
}

fn col(name: &str, hive_type: &str) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        hive_type: hive_type.into(),
    }
}

/// The silver table of a dataset. `root` is `s3://bucket` (or `file:///lake`).
pub fn silver_table(contract: &Contract, root: &str) -> TableDef {
    let mut columns: Vec<ColumnDef> = contract
        .file_columns()
        .map(|(_, c)| col(&c.name, &hive_type(&c.kind)))
        .collect();
    columns.extend([
        col(INGESTED_AT, "timestamp"),
        col(SOURCE_FILE, "string"),
        col(BATCH_ID, "string"),
    ]);
    let partition_keys = contract
        .partitions
        .iter()
        .map(|p| match p.transform {
            PartitionTransform::UtcDate => col(&p.name, "date"),
            PartitionTransform::Identity => {
                col(&p.name, &hive_type(&contract.columns[p.source].kind))
            }
        })
        .collect();
    TableDef {
        name: contract.name.clone(),
        description: contract.description.clone(),
        location: format!("{root}/{}", layout::processed_prefix(&contract.name)),
        columns,
        partition_keys,
    }
}

/// The gold `daily_kpis` table, partitioned by month.
pub fn daily_kpis_table(root: &str) -> TableDef {
    let columns = KPI_COLUMNS
        .iter()
        .map(|c| {
            let t = match *c {
                "kpi_date" => "date",
                "customer_region" | "currency" => "string",
                "revenue" | "avg_order_value" | "refunded_amount" => "decimal(18,2)",
                "retention_rate" | "payment_success_rate" => "double",
                _ => "bigint",
            };
            col(c, t)
        })
        .collect();
    TableDef {
        name: layout::DAILY_KPIS.into(),
        description: "Daily KPIs per day, region and currency (gold).".into(),
        location: format!("{root}/{}", layout::gold_prefix(layout::DAILY_KPIS)),
        columns,
        partition_keys: vec![col("month", "string")],
    }
}

/// The gold `payment_methods_daily` table, partitioned by month like `daily_kpis`.
pub fn payment_methods_daily_table(root: &str) -> TableDef {
    let columns = methods::COLUMNS
        .iter()
        .map(|c| {
            let t = match *c {
                "kpi_date" => "date",
                "customer_region" | "currency" | "payment_method" => "string",
                c if methods::MONEY.contains(&c) => "decimal(18,2)",
                _ => "bigint",
            };
            col(c, t)
        })
        .collect();
    TableDef {
        name: layout::PAYMENT_METHODS_DAILY.into(),
        description: "Payments per day, region, currency and payment method (gold).".into(),
        location: format!(
            "{root}/{}",
            layout::gold_prefix(layout::PAYMENT_METHODS_DAILY)
        ),
        columns,
        partition_keys: vec![col("month", "string")],
    }
}

/// Every gold table, in `layout::GOLD_TABLES` order.
pub fn gold_tables(root: &str) -> Vec<TableDef> {
    vec![daily_kpis_table(root), payment_methods_daily_table(root)]
}

/// The partitions a batch wrote.
pub fn manifest_partitions(manifest: &Manifest, root: &str) -> Vec<PartitionDef> {
    manifest
        .partitions
        .iter()
        .map(|p| PartitionDef {
            values: p
                .path
                .split('/')
                .map(|kv| kv.split_once('=').map_or("", |(_, v)| v).to_owned())
                .collect(),
            location: format!(
                "{root}/{}{}/",
                layout::processed_prefix(&manifest.dataset),
                p.path
            ),
        })
        .collect()
}

/// The partition of one `daily_kpis` month.
pub fn month_partition(month: &str, root: &str) -> PartitionDef {
    gold_month_partition(layout::DAILY_KPIS, month, root)
}

/// The partition of one month of a gold table.
pub fn gold_month_partition(table: &str, month: &str, root: &str) -> PartitionDef {
    PartitionDef {
        values: vec![month.to_owned()],
        location: format!("{root}/{}month={month}/", layout::gold_prefix(table)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;

    #[test]
    fn silver_tables_match_the_parquet_schema_and_the_partition_layout() {
        let reg = Registry::builtin();
        let orders = silver_table(reg.get("orders").unwrap(), "s3://lake");
        assert_eq!(orders.location, "s3://lake/processed/orders/");
        let parquet = crate::silver::silver_schema(reg.get("orders").unwrap()).unwrap();
        let names: Vec<String> = parquet.iter_names().map(|n| n.to_string()).collect();
        assert_eq!(
            orders
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
            names
        );
        assert!(
            orders
                .columns
                .contains(&col("total_amount", "decimal(18,2)"))
        );
        assert!(orders.columns.contains(&col("order_ts", "timestamp")));
        assert_eq!(
            orders.partition_keys,
            [col("order_date", "date"), col("customer_region", "string")]
        );
        let kpis = daily_kpis_table("s3://lake");
        assert_eq!(kpis.columns.len(), 16);
        assert_eq!(kpis.location, "s3://lake/gold/daily_kpis/");
        let methods = payment_methods_daily_table("s3://lake");
        assert_eq!(
            methods
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            methods::COLUMNS
        );
        assert!(
            methods
                .columns
                .contains(&col("succeeded_amount", "decimal(18,2)"))
        );
        assert!(methods.columns.contains(&col("payments", "bigint")));
        assert_eq!(methods.location, "s3://lake/gold/payment_methods_daily/");
        assert_eq!(
            gold_month_partition(layout::PAYMENT_METHODS_DAILY, "2026-11", "s3://lake").location,
            "s3://lake/gold/payment_methods_daily/month=2026-11/"
        );
    }
}
