//! Data contracts: one declarative description per dataset (`contracts/<name>.toml`) that drives
//! CSV header binding, row validation, the Parquet schema and partition layout. Adding a dataset
//! means adding a contract file, not a code path.

mod arrival;
mod domains;
pub mod quality;
mod registry;
mod spec;

use std::fmt;

use regex::Regex;

pub use arrival::Arrival;
pub use domains::Domain;
pub use quality::{QualityRules, Severity};
pub use registry::{CONTRACTS_DIR_VAR, Registry};

/// Errors in a contract file itself (not in the data it describes).
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("contract is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("contract `{contract}`: {message}")]
    Invalid { contract: String, message: String },
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: Box<ContractError>,
    },
    #[error("contracts do not fit together: {}", .0.join("; "))]
    Registry(Vec<String>),
}

/// How a string value is normalised before it is checked and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    Lower,
    Upper,
}

/// A numeric bound in the column's own units (cents for a decimal of scale 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub value: i64,
    pub inclusive: bool,
    /// The bound as written in the contract, for error messages.
    pub text: String,
}

/// `max_bytes` of a string column that does not set it (Redshift's VARCHAR(256)).
pub const DEFAULT_MAX_BYTES: usize = 256;
/// Redshift's longest VARCHAR.
pub const MAX_VARCHAR_BYTES: usize = 65_535;

/// The logical type of a column together with the rules that apply to it.
#[derive(Debug, Clone)]
pub enum ColumnKind {
    String {
        case: Option<Case>,
        pattern: Option<Regex>,
        domain: Option<Domain>,
        /// Longest value in UTF-8 bytes (`max_bytes`, default [`DEFAULT_MAX_BYTES`]): Redshift
        /// sizes VARCHAR in bytes, so a longer value is quarantined at ingest, not failed at COPY.
        max_bytes: usize,
    },
    /// A closed set of values, matched case-insensitively and stored as spelled in the contract.
    Enum {
        values: Vec<String>,
    },
    Date,
    /// Stored as UTC microseconds.
    Timestamp,
    /// Exact fixed-point, stored as an integer scaled by `10^scale`.
    Decimal {
        precision: u8,
        scale: u8,
        min: Option<Bound>,
        max: Option<Bound>,
    },
    Int32 {
        min: Option<Bound>,
        max: Option<Bound>,
    },
}

impl ColumnKind {
    /// The type name used in contracts and error messages.
    pub fn type_name(&self) -> String {
        match self {
            ColumnKind::String { .. } => "string".into(),
            ColumnKind::Enum { .. } => "enum".into(),
            ColumnKind::Date => "date".into(),
            ColumnKind::Timestamp => "timestamp".into(),
            ColumnKind::Decimal {
                precision, scale, ..
            } => format!("decimal({precision},{scale})"),
            ColumnKind::Int32 { .. } => "int32".into(),
        }
    }

    /// How values of this kind are held in memory (Parquet holds an enum as its text).
    pub fn physical(&self) -> Physical {
        match self {
            ColumnKind::String { .. } => Physical::Utf8,
            ColumnKind::Enum { .. } => Physical::Code,
            ColumnKind::Date | ColumnKind::Int32 { .. } => Physical::Int32,
            ColumnKind::Timestamp | ColumnKind::Decimal { .. } => Physical::Int64,
        }
    }
}

/// In-memory representation of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Physical {
    Utf8,
    /// An enum's values as their position in the contract's list.
    Code,
    Int32,
    Int64,
}

/// The most values an enum may list: validated rows hold an enum value as its position in the
/// list, in two bytes.
pub const MAX_ENUM_VALUES: usize = 1 << 16;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub required: bool,
    /// Personal data: never echoed in rejection reasons, logs or alerts.
    pub pii: bool,
}

/// How a partition value is derived from its source column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTransform {
    /// The (normalised) value itself.
    Identity,
    /// The UTC calendar date of a timestamp, `YYYY-MM-DD`.
    UtcDate,
}

#[derive(Debug, Clone)]
pub struct Partition {
    /// Name of the hive partition key (`order_date` in `order_date=2026-11-21`).
    pub name: String,
    /// Index into [`Contract::columns`] of the column it is derived from.
    pub source: usize,
    pub transform: PartitionTransform,
}

/// A validated, ready-to-use data contract.
#[derive(Debug, Clone)]
pub struct Contract {
    pub name: String,
    pub description: String,
    pub columns: Vec<Column>,
    /// Index of the key column (unique after deduplication).
    pub key: usize,
    /// Index of the timestamp column whose latest value wins among rows with the same key.
    pub version: usize,
    pub partitions: Vec<Partition>,
    pub quality: QualityRules,
    /// When its exports are expected, if the contract says (`[arrival]`).
    pub arrival: Option<Arrival>,
    /// How many days a newer version may move a key's date partition (`max_date_move_days`,
    /// default 0: a key keeps its day). The nightly KPIs look this far around a changed key for
    /// its older versions; a move beyond it is outside the contract, and only a full recompute
    /// (`lake aggregate --full`) accounts for it.
    pub max_date_move_days: u32,
}

impl Contract {
    /// Parses and checks a contract. Every inconsistency is reported, not just the first.
    pub fn from_toml(text: &str) -> Result<Self, ContractError> {
        spec::ContractSpec::parse(text)?.compile()
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn key_column(&self) -> &Column {
        &self.columns[self.key]
    }

    /// The column whose greatest value marks a key's latest version (`version_column`).
    pub fn version_column(&self) -> &Column {
        &self.columns[self.version]
    }

    /// The date partition when it is the first partition, so that one day of the dataset lies
    /// under one key prefix (`processed/orders/order_date=D/`): what a reference window prunes on.
    pub fn window_partition(&self) -> Option<&Partition> {
        self.partitions
            .first()
            .filter(|p| p.transform == PartitionTransform::UtcDate)
    }

    /// The partition holding a row's UTC date (`order_date`), if the dataset has one: what
    /// daily aggregates and date-bounded reads prune on.
    pub fn date_partition(&self) -> Option<&Partition> {
        self.partitions
            .iter()
            .find(|p| p.transform == PartitionTransform::UtcDate)
    }

    /// True when the column's values live only in the partition path, not in the Parquet file.
    pub fn is_path_only(&self, column: usize) -> bool {
        self.partitions
            .iter()
            .any(|p| p.source == column && p.transform == PartitionTransform::Identity)
    }

    /// Columns written into Parquet files, in contract order (partition columns excluded).
    pub fn file_columns(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_path_only(*i))
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_contracts_compile_and_match_the_issue() {
        let reg = Registry::builtin();
        assert_eq!(
            reg.names().collect::<Vec<_>>(),
            ["customers", "orders", "payments"]
        );
        let orders = reg.get("orders").unwrap();
        assert_eq!(orders.key_column().name, "order_id");
        assert_eq!(orders.columns[orders.version].name, "updated_at");
        let parts: Vec<_> = orders.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(parts, ["order_date", "customer_region"]);
        assert_eq!(orders.partitions[0].transform, PartitionTransform::UtcDate);
        let file_cols: Vec<_> = orders
            .file_columns()
            .map(|(_, c)| c.name.as_str())
            .collect();
        assert_eq!(
            file_cols,
            [
                "order_id",
                "customer_id",
                "order_ts",
                "status",
                "currency",
                "total_amount",
                "item_count",
                "updated_at"
            ]
        );
        let customers = reg.get("customers").unwrap();
        assert!(customers.columns.iter().filter(|c| c.pii).count() == 3);
        let payments = reg.get("payments").unwrap();
        let amount = &payments.columns[payments.column_index("amount").unwrap()];
        match &amount.kind {
            ColumnKind::Decimal { min, .. } => {
                assert_eq!(
                    min.as_ref().map(|b| (b.value, b.inclusive)),
                    Some((0, false))
                )
            }
            other => panic!("amount is {other:?}"),
        }
    }

    #[test]
    fn inconsistent_contracts_are_rejected_with_every_problem_named() {
        let text = r#"
            name = "bad"
            key = "id"
            version_column = "nope"
            partition_by = [{ name = "d", source = "missing", transform = "utc_date" }]
            [[columns]]
            name = "id"
            type = "string"
            [[columns]]
            name = "amount"
            type = "decimal"
            precision = 30
            scale = 2
            [[columns]]
            name = "fee"
            type = "decimal"
            minimum = "abc"
            [[columns]]
            name = "email"
            type = "string"
            pattern = "(["
        "#;
        let err = Contract::from_toml(text).unwrap_err().to_string();
        for needle in [
            "key column `id` must be required",
            "version column `nope`",
            "partition `d`",
            "precision 30",
            "minimum `abc`",
            "pattern",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
    }

    /// A contract keyed by `id` and versioned by `updated_at`, with `column` (its TOML lines)
    /// between the two.
    fn contract_with(name: &str, column: &str) -> String {
        format!(
            r#"
            name = "{name}"
            key = "id"
            version_column = "updated_at"
            [[columns]]
            name = "id"
            type = "string"
            required = true
            [[columns]]
            {column}
            [[columns]]
            name = "updated_at"
            type = "timestamp"
            required = true
        "#
        )
    }

    #[test]
    fn an_enum_lists_at_most_as_many_values_as_a_code_can_name() {
        let text = |n: usize| {
            let values: Vec<String> = (0..n).map(|i| format!("\"v{i}\"")).collect();
            contract_with(
                "tags",
                &format!(
                    "name = \"tag\"\n type = \"enum\"\n values = [{}]",
                    values.join(", ")
                ),
            )
        };
        let c = Contract::from_toml(&text(MAX_ENUM_VALUES)).unwrap();
        let mut batch = crate::columns::Batch::new(&c);
        let last = crate::columns::Value::Code((MAX_ENUM_VALUES - 1) as u16);
        batch.push_row(
            2,
            &[
                crate::columns::Value::Null,
                last,
                crate::columns::Value::I64(0),
            ],
        );
        assert_eq!(
            batch.str(1, 0),
            Some(format!("v{}", MAX_ENUM_VALUES - 1).as_str())
        );
        let err = Contract::from_toml(&text(MAX_ENUM_VALUES + 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at most 65536 values, this one 65537"),
            "{err}"
        );
    }

    #[test]
    fn strings_have_a_byte_limit_that_reaches_the_warehouse_ddl() {
        let text = |extra: &str| {
            contract_with(
                "notes",
                &format!("name = \"note\"\n type = \"string\"\n {extra}"),
            )
        };
        let c = Contract::from_toml(&text("max_bytes = 1000")).unwrap();
        let bytes = |c: &Contract, i: usize| match c.columns[i].kind {
            ColumnKind::String { max_bytes, .. } => max_bytes,
            _ => unreachable!(),
        };
        assert_eq!((bytes(&c, 0), bytes(&c, 1)), (DEFAULT_MAX_BYTES, 1000));
        let wh = crate::warehouse::Warehouse {
            schema: "s".into(),
            copy_role_arn: "r".into(),
        };
        let ddl = wh.create_table(&c);
        assert!(
            ddl.contains("id VARCHAR(256) NOT NULL") && ddl.contains("note VARCHAR(1000),"),
            "{ddl}"
        );
        for (bad, needle) in [
            ("max_bytes = 0", "max_bytes must be 1 to 65535"),
            ("max_bytes = 70000", "got 70000"),
        ] {
            let err = Contract::from_toml(&text(bad)).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        let on_a_date = text("").replace(
            "name = \"updated_at\"\n            type = \"timestamp\"",
            "name = \"updated_at\"\n            type = \"timestamp\"\n            max_bytes = 5",
        );
        let err = Contract::from_toml(&on_a_date).unwrap_err().to_string();
        assert!(err.contains("`max_bytes` does not apply"), "{err}");
    }

    #[test]
    fn the_readme_documents_every_contract_column() {
        let readme = include_str!("../../README.md");
        for contract in Registry::builtin().iter() {
            let section = readme
                .split(&format!(
                    "**{}**: key `{}`",
                    contract.name,
                    contract.key_column().name
                ))
                .nth(1)
                .unwrap_or_else(|| panic!("README has no table for {}", contract.name));
            let table: String = section
                .lines()
                .skip(1)
                .take_while(|l| l.is_empty() || l.starts_with('|'))
                .collect();
            for column in &contract.columns {
                assert!(
                    table.contains(&column.name),
                    "README table of {} lacks {}",
                    contract.name,
                    column.name
                );
            }
        }
    }

    #[test]
    fn unknown_fields_in_a_contract_are_errors_not_silently_ignored() {
        let text = r#"
            name = "x"
            key = "id"
            version_column = "ts"
            [[columns]]
            name = "id"
            type = "string"
            required = true
            requird = true
        "#;
        let err = Contract::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("requird"), "{err}");
    }
}
