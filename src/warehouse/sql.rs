//! Redshift SQL generated from the contracts: DDL for silver tables, `daily_kpis`, the load ledger
//! and a star schema for BI, plus the statements that load one batch or replace one gold month.
//!
//! A batch load runs as one transaction (one Data API batch): COPY the batch's Parquet files into
//! a raw staging table whose columns match the files exactly (COPY from Parquet maps columns by
//! position), add the partition columns the files do not carry (identity partitions as literals
//! per partition group, date partitions from their timestamp), drop staged rows older than the
//! warehouse's (latest wins by version, then ingestion time, as in the lake), MERGE by key, and
//! record the batch in the ledger; a batch the ledger has already changes nothing.

use std::collections::BTreeMap;

use crate::contract::{ColumnKind, Contract, PartitionTransform, Registry};
use crate::gold::kpis::COLUMNS as KPI_COLUMNS;
use crate::gold::methods;
use crate::silver::{BATCH_ID, INGESTED_AT, SOURCE_FILE};

pub const LEDGER_TABLE: &str = "load_ledger";
/// Most statements one Data API BatchExecuteStatement (one transaction) takes.
pub const MAX_BATCH_STATEMENTS: usize = 40;
pub const KPI_TABLE: &str = "daily_kpis";
pub const METHODS_TABLE: &str = methods::TABLE;

/// A SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn redshift_type(kind: &ColumnKind) -> String {
    match kind {
        // Redshift's VARCHAR(n) is n bytes: the contract's max_bytes, which ingest enforces.
        ColumnKind::String { max_bytes, .. } => format!("VARCHAR({max_bytes})"),
        ColumnKind::Enum { values } => format!(
            "VARCHAR({})",
            values.iter().map(String::len).max().unwrap_or(1).max(16)
        ),
        ColumnKind::Date => "DATE".into(),
        ColumnKind::Timestamp => "TIMESTAMP".into(),
        ColumnKind::Decimal {
            precision, scale, ..
        } => format!("DECIMAL({precision},{scale})"),
        ColumnKind::Int32 { .. } => "INTEGER".into(),
    }
}

/// A column of a warehouse table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhColumn {
    pub name: String,
    pub sql_type: String,
    pub not_null: bool,
}

fn lineage() -> Vec<WhColumn> {
    [
        (INGESTED_AT, "TIMESTAMP"),
        (SOURCE_FILE, "VARCHAR(1024)"),
        (BATCH_ID, "VARCHAR(64)"),
    ]
    .iter()
    .map(|(n, t)| WhColumn {
        name: (*n).into(),
        sql_type: (*t).into(),
        not_null: true,
    })
    .collect()
}

/// The columns of the silver Parquet files, in file order (what COPY maps by position).
pub fn file_columns(contract: &Contract) -> Vec<WhColumn> {
    let mut out: Vec<WhColumn> = contract
        .file_columns()
        .map(|(_, c)| WhColumn {
            name: c.name.clone(),
            sql_type: redshift_type(&c.kind),
            not_null: c.required,
        })
        .collect();
    out.extend(lineage());
    out
}

/// The warehouse table: every contract column, derived partition columns, lineage.
pub fn table_columns(contract: &Contract) -> Vec<WhColumn> {
    let mut out: Vec<WhColumn> = contract
        .columns
        .iter()
        .map(|c| WhColumn {
            name: c.name.clone(),
            sql_type: redshift_type(&c.kind),
            not_null: c.required,
        })
        .collect();
    for p in contract
        .partitions
        .iter()
        .filter(|p| p.transform == PartitionTransform::UtcDate)
    {
        out.push(WhColumn {
            name: p.name.clone(),
            sql_type: "DATE".into(),
            not_null: true,
        });
    }
    out.extend(lineage());
    out
}

fn column_list(columns: &[WhColumn]) -> String {
    columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.name,
                c.sql_type,
                if c.not_null { " NOT NULL" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names and settings the generated SQL depends on.
#[derive(Debug, Clone)]
pub struct Warehouse {
    pub schema: String,
    /// Role Redshift assumes to read the bucket in COPY.
    pub copy_role_arn: String,
}

/// The Parquet files of one partition group of a batch, listed in a COPY manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyGroup {
    /// Values of the identity partitions (e.g. `customer_region` = `EU`).
    pub identity: BTreeMap<String, String>,
    /// `s3://…` of the COPY manifest listing the group's files.
    pub manifest_uri: String,
}

impl Warehouse {
    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    pub fn create_schema(&self) -> String {
        format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema)
    }

    /// A silver table, distributed on the key and sorted by the first partition column (dates
    /// first, as BI filters on them) unless the contract says otherwise.
    pub fn create_table(&self, contract: &Contract) -> String {
        let columns = table_columns(contract);
        let sortkey = contract
            .partitions
            .first()
            .map_or(contract.key_column().name.clone(), |p| p.name.clone());
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})) DISTKEY({}) SORTKEY({sortkey})",
            self.table(&contract.name),
            column_list(&columns),
            contract.key_column().name,
            contract.key_column().name,
        )
    }

    pub fn create_ledger(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (dataset VARCHAR(64) NOT NULL, batch_id VARCHAR(64) NOT NULL, rows_loaded BIGINT NOT NULL, loaded_at TIMESTAMP NOT NULL, PRIMARY KEY (dataset, batch_id)) DISTSTYLE ALL SORTKEY(dataset, batch_id)",
            self.table(LEDGER_TABLE)
        )
    }

    pub fn create_daily_kpis(&self) -> String {
        let types: BTreeMap<&str, &str> = [
            ("kpi_date", "DATE NOT NULL"),
            ("customer_region", "VARCHAR(16) NOT NULL"),
            ("currency", "VARCHAR(3) NOT NULL"),
            ("revenue", "DECIMAL(18,2) NOT NULL"),
            ("avg_order_value", "DECIMAL(18,2)"),
            ("refunded_amount", "DECIMAL(18,2) NOT NULL"),
            ("retention_rate", "DOUBLE PRECISION"),
            ("payment_success_rate", "DOUBLE PRECISION"),
        ]
        .into_iter()
        .collect();
        let columns: Vec<String> = KPI_COLUMNS
            .iter()
            .map(|c| format!("{c} {}", types.get(c).copied().unwrap_or("BIGINT NOT NULL")))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY (kpi_date, customer_region, currency)) DISTSTYLE ALL SORTKEY(kpi_date)",
            self.table(KPI_TABLE),
            columns.join(", ")
        )
    }

    /// `payment_methods_daily`, from the gold table's columns like `daily_kpis`.
    pub fn create_payment_methods_daily(&self) -> String {
        let columns: Vec<String> = methods::COLUMNS
            .iter()
            .map(|c| {
                let t = match *c {
                    "kpi_date" => "DATE NOT NULL",
                    "customer_region" => "VARCHAR(16) NOT NULL",
                    "currency" => "VARCHAR(3) NOT NULL",
                    "payment_method" => "VARCHAR(32) NOT NULL",
                    c if methods::MONEY.contains(&c) => "DECIMAL(18,2) NOT NULL",
                    _ => "BIGINT NOT NULL",
                };
                format!("{c} {t}")
            })
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY (kpi_date, customer_region, currency, payment_method)) DISTSTYLE ALL SORTKEY(kpi_date)",
            self.table(METHODS_TABLE),
            columns.join(", ")
        )
    }

    /// The star schema for BI. Dimension views carry no personal data (no emails or names).
    pub fn create_views(&self, registry: &Registry) -> Vec<String> {
        let s = &self.schema;
        let methods = registry
            .get("payments")
            .and_then(|p| p.column_index("method").map(|i| &p.columns[i].kind))
            .and_then(|k| match k {
                ColumnKind::Enum { values } => Some(values.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let method_rows = methods
            .iter()
            .map(|m| format!("SELECT {} AS payment_method", literal(m)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        vec![
            format!(
                "CREATE OR REPLACE VIEW {s}.fact_orders AS SELECT o.order_id, o.customer_id, o.order_date AS date_key, o.order_ts, o.customer_region, o.currency, o.status, o.total_amount, o.item_count, p.method AS payment_method FROM {s}.orders AS o LEFT JOIN (SELECT order_id, MAX(method) AS method FROM {s}.payments WHERE status = 'succeeded' GROUP BY order_id) AS p ON p.order_id = o.order_id"
            ),
            format!(
                "CREATE OR REPLACE VIEW {s}.dim_customer AS SELECT customer_id, customer_region, country, signup_date, updated_at FROM {s}.customers"
            ),
            format!(
                "CREATE OR REPLACE VIEW {s}.dim_date AS SELECT d AS date_key, EXTRACT(YEAR FROM d) AS year, EXTRACT(MONTH FROM d) AS month, EXTRACT(DAY FROM d) AS day, EXTRACT(DOW FROM d) AS day_of_week, TO_CHAR(d, 'YYYY-MM') AS year_month FROM (SELECT order_date AS d FROM {s}.orders UNION SELECT payment_date FROM {s}.payments) AS days"
            ),
            format!("CREATE OR REPLACE VIEW {s}.dim_payment_method AS {method_rows}"),
        ]
    }

    /// Everything to create, in order.
    pub fn ddl(&self, registry: &Registry) -> Vec<String> {
        let mut out = vec![self.create_schema(), self.create_ledger()];
        out.extend(registry.iter().map(|c| self.create_table(c)));
        out.push(self.create_daily_kpis());
        out.push(self.create_payment_methods_daily());
        out.extend(self.create_views(registry));
        out
    }

    /// The statements that load one batch, for one Data API batch (one transaction).
    pub fn load_batch(
        &self,
        contract: &Contract,
        batch_id: &str,
        groups: &[CopyGroup],
        rows: u64,
    ) -> Vec<String> {
        let target = self.table(&contract.name);
        let (raw, stage) = (
            format!("stage_raw_{}", contract.name),
            format!("stage_{}", contract.name),
        );
        let key = &contract.key_column().name;
        let columns = table_columns(contract);
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let mut sql = vec![
            format!(
                "CREATE TEMP TABLE {raw} ({})",
                column_list(&file_columns(contract))
            ),
            format!("CREATE TEMP TABLE {stage} ({})", column_list(&columns)),
        ];
        for group in groups {
            sql.push(format!(
                "COPY {raw} FROM {} IAM_ROLE {} FORMAT AS PARQUET MANIFEST",
                literal(&group.manifest_uri),
                literal(&self.copy_role_arn)
            ));
            // Partition values live in the object path, so they come from the group or the data.
            let select: Vec<String> =
                columns
                    .iter()
                    .map(|c| {
                        if let Some(v) = group.identity.get(&c.name) {
                            format!("{} AS {}", literal(v), c.name)
                        } else if let Some(p) = contract.partitions.iter().find(|p| {
                            p.name == c.name && p.transform == PartitionTransform::UtcDate
                        }) {
                            format!(
                                "CAST({} AS DATE) AS {}",
                                contract.columns[p.source].name, c.name
                            )
                        } else {
                            c.name.clone()
                        }
                    })
                    .collect();
            sql.push(format!(
                "INSERT INTO {stage} ({}) SELECT {} FROM {raw}",
                names.join(", "),
                select.join(", ")
            ));
            sql.push(format!("DELETE FROM {raw}"));
        }
        let ledger = self.table(LEDGER_TABLE);
        let in_ledger = format!(
            "SELECT 1 FROM {ledger} WHERE dataset = {} AND batch_id = {}",
            literal(&contract.name),
            literal(batch_id)
        );
        // The ledger is checked again inside the transaction: a batch loaded by a concurrent or
        // earlier run (the lookup before the load is only a shortcut) changes nothing.
        sql.push(format!("DELETE FROM {stage} WHERE EXISTS ({in_ledger})"));
        // Latest wins as in the lake's readers: greatest version, then the later ingestion, then
        // the greater batch id. Staged rows the warehouse already has a later version of go.
        let version = &contract.columns[contract.version].name;
        sql.push(format!(
            "DELETE FROM {stage} USING {target} AS t WHERE {stage}.{key} = t.{key} AND ({stage}.{version} < t.{version} OR ({stage}.{version} = t.{version} AND ({stage}.{INGESTED_AT} < t.{INGESTED_AT} OR ({stage}.{INGESTED_AT} = t.{INGESTED_AT} AND {stage}.{BATCH_ID} < t.{BATCH_ID}))))"
        ));
        let updates: Vec<String> = names
            .iter()
            .filter(|n| *n != key)
            .map(|n| format!("{n} = s.{n}"))
            .collect();
        let values: Vec<String> = names.iter().map(|n| format!("s.{n}")).collect();
        sql.push(format!(
            "MERGE INTO {target} USING {stage} AS s ON {target}.{key} = s.{key} WHEN MATCHED THEN UPDATE SET {} WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
            updates.join(", "),
            names.join(", "),
            values.join(", ")
        ));
        sql.push(format!(
            "INSERT INTO {ledger} (dataset, batch_id, rows_loaded, loaded_at) SELECT {}, {}, {rows}, GETDATE() WHERE NOT EXISTS ({in_ledger})",
            literal(&contract.name),
            literal(batch_id)
        ));
        sql.push(format!("DROP TABLE {stage}"));
        sql.push(format!("DROP TABLE {raw}"));
        sql
    }

    /// Whether a batch is in the ledger already (a reload is a no-op).
    pub fn ledger_lookup(&self, dataset: &str, batch_id: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE dataset = {} AND batch_id = {}",
            self.table(LEDGER_TABLE),
            literal(dataset),
            literal(batch_id)
        )
    }

    /// The columns of a table, for [`Warehouse::schema_changes`] (via [`parse_columns`]).
    pub fn columns_query(&self, table: &str) -> String {
        format!(
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale, is_nullable FROM information_schema.columns WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
            literal(&self.schema),
            literal(table)
        )
    }

    /// What the table of `contract` needs to follow the contract: `ALTER TABLE … ADD COLUMN` for
    /// each new optional column; an error naming the column and what to do for a change the
    /// table cannot follow (a type change, a new required column, a required column the
    /// contract dropped, a narrower VARCHAR). `existing` empty: the table is new, nothing to do.
    pub fn schema_changes(
        &self,
        contract: &Contract,
        existing: &[ExistingColumn],
    ) -> Result<Vec<String>, SchemaChangeError> {
        let table = self.table(&contract.name);
        let error = |column: &str, problem: String, fix: String| SchemaChangeError {
            table: table.clone(),
            column: column.into(),
            problem,
            fix,
        };
        if existing.is_empty() {
            return Ok(Vec::new());
        }
        let rebuild = format!(
            "rebuild the table from the lake (DROP TABLE {table}; DELETE FROM {} WHERE dataset = {}; delete runs/loaded/{}/ in the lake; load again), or give the column a new name in the contract",
            self.table(LEDGER_TABLE),
            literal(&contract.name),
            contract.name
        );
        let wanted = table_columns(contract);
        let mut out = Vec::new();
        for w in &wanted {
            let Some(e) = existing.iter().find(|e| e.name == w.name) else {
                if w.not_null {
                    return Err(error(
                        &w.name,
                        "is new in the contract and required, but the table has rows without it"
                            .into(),
                        format!(
                            "make it optional in the contract (required = false) so it is added as a nullable column, or add it yourself: ALTER TABLE {table} ADD COLUMN {} {} DEFAULT <value> NOT NULL",
                            w.name, w.sql_type
                        ),
                    ));
                }
                out.push(format!(
                    "ALTER TABLE {table} ADD COLUMN {} {}",
                    w.name, w.sql_type
                ));
                continue;
            };
            let (data_type, length, precision, scale) = info_type(&w.sql_type);
            if e.data_type != data_type
                || (precision.is_some() && (e.precision, e.scale) != (precision, scale))
            {
                return Err(error(
                    &w.name,
                    format!(
                        "is {}{} in the warehouse but {} in the contract",
                        e.data_type,
                        match (e.length, e.precision, e.scale) {
                            (Some(l), _, _) => format!("({l})"),
                            (_, Some(p), Some(s)) => format!("({p},{s})"),
                            _ => String::new(),
                        },
                        w.sql_type
                    ),
                    rebuild.clone(),
                ));
            }
            if let (Some(want), Some(have)) = (length, e.length)
                && have < want
            {
                return Err(error(
                    &w.name,
                    format!("holds {have} bytes in the warehouse but the contract allows {want}"),
                    format!(
                        "widen it (Redshift does this outside a transaction): ALTER TABLE {table} ALTER COLUMN {} TYPE {}",
                        w.name, w.sql_type
                    ),
                ));
            }
            if !w.not_null && !e.nullable {
                return Err(error(
                    &w.name,
                    "is NOT NULL in the warehouse but optional in the contract, so a null would fail the load".into(),
                    format!("make it required in the contract again, or {rebuild}"),
                ));
            }
        }
        if let Some(e) = existing
            .iter()
            .find(|e| !e.nullable && !wanted.iter().any(|w| w.name == e.name))
        {
            return Err(error(
                &e.name,
                "is required in the warehouse but no longer in the contract, so loads would have no value for it".into(),
                format!(
                    "keep it in the contract (optional is enough), or drop it from the table: ALTER TABLE {table} DROP COLUMN {}",
                    e.name
                ),
            ));
        }
        Ok(out)
    }

    /// Replaces one month of `daily_kpis` (delete + insert in one transaction).
    pub fn replace_month(&self, month: &str, parquet_uri: &str) -> Vec<String> {
        self.replace_gold_month(KPI_TABLE, month, parquet_uri)
    }

    /// Replaces one month of a gold table keyed by `kpi_date` (delete + insert in one
    /// transaction).
    pub fn replace_gold_month(&self, table: &str, month: &str, parquet_uri: &str) -> Vec<String> {
        let table = self.table(table);
        let first = format!("{month}-01");
        vec![
            format!(
                "DELETE FROM {table} WHERE kpi_date >= CAST({} AS DATE) AND kpi_date < DATEADD(month, 1, CAST({} AS DATE))",
                literal(&first),
                literal(&first)
            ),
            format!(
                "COPY {table} FROM {} IAM_ROLE {} FORMAT AS PARQUET",
                literal(parquet_uri),
                literal(&self.copy_role_arn)
            ),
        ]
    }
}

/// A column as the warehouse's `information_schema.columns` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingColumn {
    pub name: String,
    /// `character varying`, `numeric`, `timestamp without time zone`, `date`, `integer`…
    pub data_type: String,
    pub length: Option<u32>,
    pub precision: Option<u32>,
    pub scale: Option<u32>,
    pub nullable: bool,
}

/// A contract change the warehouse table cannot follow by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("warehouse table {table}, column `{column}`: {problem}. To go on: {fix}")]
pub struct SchemaChangeError {
    pub table: String,
    pub column: String,
    pub problem: String,
    pub fix: String,
}

/// `information_schema` spelling of a generated type: (data type, length, precision, scale).
fn info_type(sql_type: &str) -> (String, Option<u32>, Option<u32>, Option<u32>) {
    let args: Vec<u32> = sql_type
        .split_once('(')
        .map(|(_, rest)| {
            rest.trim_end_matches(')')
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let base = sql_type.split('(').next().unwrap_or_default();
    match base {
        "VARCHAR" => (
            "character varying".into(),
            args.first().copied(),
            None,
            None,
        ),
        "DECIMAL" => (
            "numeric".into(),
            None,
            args.first().copied(),
            args.get(1).copied(),
        ),
        "TIMESTAMP" => ("timestamp without time zone".into(), None, None, None),
        "DATE" => ("date".into(), None, None, None),
        "INTEGER" => ("integer".into(), None, None, None),
        "BIGINT" => ("bigint".into(), None, None, None),
        other => (other.to_lowercase(), None, None, None),
    }
}

/// The rows of [`Warehouse::columns_query`] as columns.
pub fn parse_columns(rows: &[Vec<Option<String>>]) -> Vec<ExistingColumn> {
    let num = |v: Option<&Option<String>>| v.and_then(|v| v.as_deref()?.parse().ok());
    rows.iter()
        .filter_map(|r| {
            Some(ExistingColumn {
                name: r.first()?.clone()?,
                data_type: r.get(1)?.clone()?,
                length: num(r.get(2)),
                precision: num(r.get(3)),
                scale: num(r.get(4)),
                nullable: r.get(5)?.as_deref() == Some("YES"),
            })
        })
        .collect()
}

/// A COPY manifest listing exactly these files (`content_length` is required for Parquet).
pub fn copy_manifest(files: &[(String, u64)]) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(url, bytes)| serde_json::json!({"url": url, "mandatory": true, "meta": {"content_length": bytes}}))
        .collect();
    serde_json::json!({ "entries": entries }).to_string()
}

#[cfg(test)]
mod redshift_rules;
#[cfg(test)]
mod tests;
