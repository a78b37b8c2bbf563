//! The on-disk shape of a contract file and its translation into a checked [`Contract`].

use regex::Regex;
use serde::Deserialize;

use super::quality::QualityRules;
use super::{
    Bound, Case, Column, ColumnKind, Contract, ContractError, Domain, Partition, PartitionTransform,
};
use crate::values;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContractSpec {
    name: String,
    #[serde(default)]
    description: String,
    key: String,
    version_column: String,
    #[serde(default)]
    partition_by: Vec<PartitionSpec>,
    columns: Vec<ColumnSpec>,
    #[serde(default)]
    quality: QualityRules,
    arrival: Option<super::arrival::ArrivalSpec>,
    #[serde(default)]
    max_date_move_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionSpec {
    name: String,
    source: String,
    #[serde(default)]
    transform: TransformName,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum TransformName {
    #[default]
    Identity,
    UtcDate,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TypeName {
    String,
    Enum,
    Date,
    Timestamp,
    Decimal,
    Int32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    name: String,
    #[serde(rename = "type")]
    kind: TypeName,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    pii: bool,
    case: Option<Case>,
    pattern: Option<String>,
    domain: Option<String>,
    /// Longest string in UTF-8 bytes (default 256, at most 65535).
    max_bytes: Option<usize>,
    values: Option<Vec<String>>,
    precision: Option<u8>,
    scale: Option<u8>,
    minimum: Option<String>,
    exclusive_minimum: Option<String>,
    maximum: Option<String>,
}

/// Collects every problem in a contract so its author fixes them in one go.
struct Problems {
    contract: String,
    list: Vec<String>,
}

impl Problems {
    fn add(&mut self, message: impl Into<String>) {
        self.list.push(message.into());
    }
}

impl ContractSpec {
    pub(super) fn parse(text: &str) -> Result<Self, ContractError> {
        Ok(toml::from_str(text)?)
    }

    pub(super) fn compile(self) -> Result<Contract, ContractError> {
        let mut problems = Problems {
            contract: self.name.clone(),
            list: Vec::new(),
        };
        if !is_identifier(&self.name) {
            problems.add(format!(
                "name `{}` must be lower-case letters, digits and _",
                self.name
            ));
        }
        let mut columns = Vec::with_capacity(self.columns.len());
        for spec in self.columns {
            if columns.iter().any(|c: &Column| c.name == spec.name) {
                problems.add(format!("column `{}` is declared twice", spec.name));
            }
            if !is_identifier(&spec.name) {
                problems.add(format!(
                    "column name `{}` must be lower-case letters, digits and _",
                    spec.name
                ));
            }
            if let Some(kind) = compile_kind(&spec, &mut problems) {
                columns.push(Column {
                    name: spec.name,
                    kind,
                    required: spec.required,
                    pii: spec.pii,
                });
            }
        }
        let find = |name: &str| columns.iter().position(|c| c.name == name);

        let key = find(&self.key);
        match key.map(|i| &columns[i]) {
            None => problems.add(format!("key column `{}` is not declared", self.key)),
            Some(c) if !c.required => {
                problems.add(format!("key column `{}` must be required", c.name))
            }
            Some(c) if c.pii => problems.add(format!(
                "key column `{}` cannot be personal data: keys appear in reports",
                c.name
            )),
            Some(_) => {}
        }
        let version = find(&self.version_column);
        match version.map(|i| &columns[i]) {
            Some(c) if matches!(c.kind, ColumnKind::Timestamp) && c.required => {}
            _ => problems.add(format!(
                "version column `{}` must be a declared, required timestamp",
                self.version_column
            )),
        }

        let mut partitions = Vec::new();
        for p in self.partition_by {
            let Some(source) = find(&p.source) else {
                problems.add(format!(
                    "partition `{}` reads column `{}`, which is not declared",
                    p.name, p.source
                ));
                continue;
            };
            let column = &columns[source];
            let transform = match p.transform {
                TransformName::Identity => PartitionTransform::Identity,
                TransformName::UtcDate => PartitionTransform::UtcDate,
            };
            if !column.required {
                problems.add(format!(
                    "partition `{}` needs a required source column",
                    p.name
                ));
            }
            if column.pii {
                problems.add(format!(
                    "partition `{}` would put personal data into object keys",
                    p.name
                ));
            }
            match (transform, &column.kind) {
                (PartitionTransform::UtcDate, ColumnKind::Timestamp) => {}
                (PartitionTransform::Identity, ColumnKind::Enum { .. }) => {}
                (PartitionTransform::Identity, _) if p.name != p.source => problems.add(format!(
                    "identity partition `{}` must be named like its column `{}`",
                    p.name, p.source
                )),
                (PartitionTransform::Identity, ColumnKind::String { .. }) => {}
                _ => problems.add(format!(
                    "partition `{}`: transform does not apply to a {} column",
                    p.name,
                    column.kind.type_name()
                )),
            }
            if transform == PartitionTransform::UtcDate && find(&p.name).is_some() {
                problems.add(format!(
                    "partition `{}` has the name of a declared column",
                    p.name
                ));
            }
            partitions.push(Partition {
                name: p.name,
                source,
                transform,
            });
        }

        for p in self.quality.problems(&columns) {
            problems.add(p);
        }
        let mut arrival_problems = Vec::new();
        let arrival = self.arrival.and_then(|a| a.compile(&mut arrival_problems));
        arrival_problems.into_iter().for_each(|p| problems.add(p));

        if !problems.list.is_empty() {
            return Err(ContractError::Invalid {
                contract: problems.contract,
                message: problems.list.join("; "),
            });
        }
        Ok(Contract {
            name: self.name,
            description: self.description,
            columns,
            key: key.expect("checked above"),
            version: version.expect("checked above"),
            partitions,
            quality: self.quality,
            arrival,
            max_date_move_days: self.max_date_move_days,
        })
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn compile_kind(spec: &ColumnSpec, problems: &mut Problems) -> Option<ColumnKind> {
    let name = &spec.name;
    let mut misplaced = |field: &str, present: bool| {
        if present {
            problems.add(format!(
                "column `{name}`: `{field}` does not apply to a {:?} column",
                spec.kind
            ));
        }
    };
    let is = |k: TypeName| spec.kind == k;
    misplaced("case", spec.case.is_some() && !is(TypeName::String));
    misplaced("pattern", spec.pattern.is_some() && !is(TypeName::String));
    misplaced("domain", spec.domain.is_some() && !is(TypeName::String));
    misplaced(
        "max_bytes",
        spec.max_bytes.is_some() && !is(TypeName::String),
    );
    misplaced("values", spec.values.is_some() && !is(TypeName::Enum));
    let numeric = is(TypeName::Decimal) || is(TypeName::Int32);
    misplaced(
        "precision/scale",
        (spec.precision.is_some() || spec.scale.is_some()) && !is(TypeName::Decimal),
    );
    misplaced(
        "minimum/maximum",
        (spec.minimum.is_some() || spec.exclusive_minimum.is_some() || spec.maximum.is_some())
            && !numeric,
    );

    Some(match spec.kind {
        TypeName::String => {
            let pattern = spec.pattern.as_deref().and_then(|p| match Regex::new(p) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.add(format!("column `{name}`: pattern does not compile: {e}"));
                    None
                }
            });
            let domain = spec.domain.as_deref().and_then(|d| {
                let found = Domain::by_name(d);
                if found.is_none() {
                    problems.add(format!("column `{name}`: unknown domain `{d}`"));
                }
                found
            });
            let max_bytes = spec.max_bytes.unwrap_or(super::DEFAULT_MAX_BYTES);
            if !(1..=super::MAX_VARCHAR_BYTES).contains(&max_bytes) {
                problems.add(format!(
                    "column `{name}`: max_bytes must be 1 to {} (Redshift's longest VARCHAR), got {max_bytes}",
                    super::MAX_VARCHAR_BYTES
                ));
            }
            ColumnKind::String {
                case: spec.case,
                pattern,
                domain,
                max_bytes,
            }
        }
        TypeName::Enum => {
            let values = spec.values.clone().unwrap_or_default();
            if values.is_empty() {
                problems.add(format!("column `{name}`: an enum needs `values`"));
            }
            if values.len() > super::MAX_ENUM_VALUES {
                problems.add(format!(
                    "column `{name}`: an enum lists at most {} values, this one {}; use a \
                     string column (with a `pattern` if the values have a shape) instead",
                    super::MAX_ENUM_VALUES,
                    values.len()
                ));
            }
            ColumnKind::Enum { values }
        }
        TypeName::Date => ColumnKind::Date,
        TypeName::Timestamp => ColumnKind::Timestamp,
        TypeName::Decimal => {
            let precision = spec.precision.unwrap_or(18);
            let scale = spec.scale.unwrap_or(2);
            // Values are held as i64, which covers 18 digits exactly.
            if !(1..=18).contains(&precision) || scale > precision {
                problems.add(format!(
                    "column `{name}`: precision {precision} / scale {scale} unsupported (1 <= scale <= precision <= 18)"
                ));
                return None;
            }
            let parse = |text: &str| values::parse_decimal(text, precision, scale).ok();
            let (min, max) = bounds(spec, parse, problems)?;
            ColumnKind::Decimal {
                precision,
                scale,
                min,
                max,
            }
        }
        TypeName::Int32 => {
            let parse = |text: &str| values::parse_int32(text).ok().map(i64::from);
            let (min, max) = bounds(spec, parse, problems)?;
            ColumnKind::Int32 { min, max }
        }
    })
}

type Bounds = (Option<Bound>, Option<Bound>);

fn bounds(
    spec: &ColumnSpec,
    parse: impl Fn(&str) -> Option<i64>,
    problems: &mut Problems,
) -> Option<Bounds> {
    if spec.minimum.is_some() && spec.exclusive_minimum.is_some() {
        problems.add(format!(
            "column `{}`: give either minimum or exclusive_minimum",
            spec.name
        ));
    }
    let mut ok = true;
    let mut bound = |field: &str, text: &Option<String>, inclusive: bool| {
        let text = text.as_ref()?;
        match parse(text) {
            Some(value) => Some(Bound {
                value,
                inclusive,
                text: text.clone(),
            }),
            None => {
                ok = false;
                problems.add(format!(
                    "column `{}`: {field} `{text}` is not a value of the column's type",
                    spec.name
                ));
                None
            }
        }
    };
    let min = bound("minimum", &spec.minimum, true)
        .or_else(|| bound("exclusive_minimum", &spec.exclusive_minimum, false));
    let max = bound("maximum", &spec.maximum, true);
    ok.then_some((min, max))
}
