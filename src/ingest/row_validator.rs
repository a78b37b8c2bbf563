//! Applies a contract to CSV records: binds the source header to contract columns, then turns
//! each raw record into typed values or a list of reasons naming the offending columns.

use std::borrow::Cow;

use super::input::RawRecord;
use crate::manifest::SchemaDrift;

use crate::columns::{Batch, Value};
use crate::contract::{Bound, Case, Column, ColumnKind, Contract};
use crate::values::{self, ValueError};

/// Longest excerpt of a bad value quoted in a rejection reason.
const MAX_QUOTED_CHARS: usize = 40;

/// Why a header cannot be used; the whole file is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file has no header row")]
    Empty,
    #[error("the header row is not valid UTF-8")]
    NotUtf8,
    #[error("missing required column(s): {}", .0.join(", "))]
    MissingColumns(Vec<String>),
    #[error("column(s) appear more than once in the header: {}", .0.join(", "))]
    DuplicateColumns(Vec<String>),
}

/// A contract bound to one file's header.
#[derive(Debug)]
pub struct RowValidator<'c> {
    contract: &'c Contract,
    /// For each contract column, its field index in the source records.
    bindings: Vec<Option<usize>>,
    header_len: usize,
    pub drift: SchemaDrift,
    /// The header's column names as normalised for matching, in source order.
    pub source_columns: Vec<String>,
}

fn normalise_name(raw: &str) -> String {
    raw.trim().to_lowercase()
}

impl<'c> RowValidator<'c> {
    /// Matches header names to contract columns case-insensitively after trimming, in any order.
    pub fn bind(contract: &'c Contract, header: &RawRecord<'_>) -> Result<Self, HeaderError> {
        if header.is_empty()
            || (header.len() == 1 && header.field(0).iter().all(u8::is_ascii_whitespace))
        {
            return Err(HeaderError::Empty);
        }
        let names = header
            .fields()
            .map(|f| std::str::from_utf8(f).map(normalise_name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| HeaderError::NotUtf8)?;

        let mut bindings = vec![None; contract.columns.len()];
        let mut duplicates = Vec::new();
        let mut drift = SchemaDrift::default();
        for (field, name) in names.iter().enumerate() {
            match contract.column_index(name) {
                Some(col) if bindings[col].is_some() => duplicates.push(name.clone()),
                Some(col) => bindings[col] = Some(field),
                None if name.is_empty() => drift
                    .extra_columns
                    .push(format!("(unnamed column {})", field + 1)),
                None => drift.extra_columns.push(name.clone()),
            }
        }
        if !duplicates.is_empty() {
            duplicates.dedup();
            return Err(HeaderError::DuplicateColumns(duplicates));
        }
        let (mut missing_required, mut missing_optional) = (Vec::new(), Vec::new());
        for (column, binding) in contract.columns.iter().zip(&bindings) {
            if binding.is_none() {
                let list = if column.required {
                    &mut missing_required
                } else {
                    &mut missing_optional
                };
                list.push(column.name.clone());
            }
        }
        if !missing_required.is_empty() {
            return Err(HeaderError::MissingColumns(missing_required));
        }
        drift.missing_columns = missing_optional;
        Ok(RowValidator {
            contract,
            bindings,
            header_len: header.len(),
            drift,
            source_columns: names,
        })
    }

    pub fn contract(&self) -> &'c Contract {
        self.contract
    }

    /// Validates one record. On success the typed row is appended to `out`; otherwise the
    /// returned reasons name every offending column (no value of a personal-data column is quoted).
    pub fn validate_into(
        &self,
        record: &RawRecord<'_>,
        out: &mut Batch,
    ) -> Result<(), Vec<String>> {
        if record.len() != self.header_len {
            return Err(vec![format!(
                "row has {} field(s) but the header has {}",
                record.len(),
                self.header_len
            )]);
        }
        let mut reasons = Vec::new();
        // Whole-record check first: bytes that are not UTF-8 reject the row even in ignored columns.
        if std::str::from_utf8(record.concatenated()).is_err() {
            for (field, bytes) in record.fields().enumerate() {
                if std::str::from_utf8(bytes).is_err() {
                    let name = self
                        .bindings
                        .iter()
                        .position(|b| *b == Some(field))
                        .map_or_else(
                            || format!("column {}", field + 1),
                            |c| self.contract.columns[c].name.clone(),
                        );
                    reasons.push(format!("{name}: value is not valid UTF-8"));
                }
            }
            return Err(reasons);
        }
        let mut values: Vec<Value<'_>> = Vec::with_capacity(self.bindings.len());
        for (column, binding) in self.contract.columns.iter().zip(&self.bindings) {
            let raw = binding
                .map(|field| {
                    std::str::from_utf8(record.field(field))
                        .unwrap_or_default()
                        .trim()
                })
                .unwrap_or_default();
            match check_value(column, raw) {
                Ok(v) => values.push(v),
                Err(reason) => {
                    reasons.push(reason);
                    values.push(Value::Null);
                }
            }
        }
        if reasons.is_empty() {
            out.push_row(record.line, &values);
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// Quotes a bad value for a reason, or withholds it when it is personal data.
fn quoted(column: &Column, raw: &str) -> String {
    if column.pii {
        return "value (withheld: personal data)".into();
    }
    let mut chars = raw.chars();
    let head: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    let ellipsis = if chars.next().is_some() { "…" } else { "" };
    format!("\"{}{ellipsis}\"", head.escape_debug())
}

fn describe_bound(bound: &Bound, is_min: bool) -> String {
    match (is_min, bound.inclusive) {
        (true, true) => format!("is below the minimum {}", bound.text),
        (true, false) => format!("must be greater than {}", bound.text),
        (false, true) => format!("is above the maximum {}", bound.text),
        (false, false) => format!("must be less than {}", bound.text),
    }
}

fn check_bounds(
    column: &Column,
    raw: &str,
    value: i64,
    min: &Option<Bound>,
    max: &Option<Bound>,
) -> Result<(), String> {
    if let Some(b) = min
        && (value < b.value || (!b.inclusive && value == b.value))
    {
        return Err(format!(
            "{}: {} {}",
            column.name,
            quoted(column, raw),
            describe_bound(b, true)
        ));
    }
    if let Some(b) = max
        && (value > b.value || (!b.inclusive && value == b.value))
    {
        return Err(format!(
            "{}: {} {}",
            column.name,
            quoted(column, raw),
            describe_bound(b, false)
        ));
    }
    Ok(())
}

fn normalise_case(raw: &str, case: Option<Case>) -> Cow<'_, str> {
    match case {
        Some(Case::Lower) if raw.chars().any(char::is_uppercase) => Cow::Owned(raw.to_lowercase()),
        Some(Case::Upper) if raw.chars().any(char::is_lowercase) => Cow::Owned(raw.to_uppercase()),
        _ => Cow::Borrowed(raw),
    }
}

/// Checks one trimmed field against its column's rules.
fn check_value<'a>(column: &'a Column, raw: &'a str) -> Result<Value<'a>, String> {
    if raw.is_empty() {
        return if column.required {
            Err(format!("{}: required value is missing", column.name))
        } else {
            Ok(Value::Null)
        };
    }
    let type_error = |e: ValueError| format!("{}: {} {e}", column.name, quoted(column, raw));
    match &column.kind {
        ColumnKind::String {
            case,
            pattern,
            domain,
            max_bytes,
        } => {
            let value = normalise_case(raw, *case);
            // The warehouse sizes strings in bytes; the value itself is not quoted (it may be
            // personal data and is long anyway).
            if value.len() > *max_bytes {
                return Err(format!(
                    "{}: value is {} bytes of UTF-8, longer than the column's max_bytes of {max_bytes}",
                    column.name,
                    value.len()
                ));
            }
            if let Some(re) = pattern
                && !re.is_match(&value)
            {
                return Err(format!(
                    "{}: {} does not match {}",
                    column.name,
                    quoted(column, raw),
                    re.as_str()
                ));
            }
            if let Some(d) = domain
                && !d.contains(&value)
            {
                return Err(format!(
                    "{}: {} is not {}",
                    column.name,
                    quoted(column, raw),
                    d.description()
                ));
            }
            Ok(Value::Str(value))
        }
        // The contract caps an enum at MAX_ENUM_VALUES, so a position fits a code.
        ColumnKind::Enum { values } => values
            .iter()
            .position(|v| v.eq_ignore_ascii_case(raw))
            .map(|i| Value::Code(i as u16))
            .ok_or_else(|| {
                format!(
                    "{}: {} is not one of {}",
                    column.name,
                    quoted(column, raw),
                    values.join(", ")
                )
            }),
        ColumnKind::Date => values::parse_date(raw).map(Value::I32).map_err(type_error),
        ColumnKind::Timestamp => values::parse_timestamp(raw)
            .map(Value::I64)
            .map_err(type_error),
        ColumnKind::Decimal {
            precision,
            scale,
            min,
            max,
        } => {
            let v = values::parse_decimal(raw, *precision, *scale).map_err(type_error)?;
            check_bounds(column, raw, v, min, max)?;
            Ok(Value::I64(v))
        }
        ColumnKind::Int32 { min, max } => {
            let v = values::parse_int32(raw).map_err(type_error)?;
            check_bounds(column, raw, i64::from(v), min, max)?;
            Ok(Value::I32(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::ingest::OwnedRecord;

    fn rec(fields: &[&str]) -> OwnedRecord {
        OwnedRecord::new(2, fields)
    }

    const ORDERS_HEADER: &[&str] = &[
        "order_id",
        "customer_id",
        "order_ts",
        "status",
        "customer_region",
        "currency",
        "total_amount",
        "item_count",
        "updated_at",
    ];

    fn good_order() -> Vec<&'static str> {
        vec![
            "o-1",
            "c-1",
            "2026-11-21T10:00:00Z",
            "paid",
            "EU",
            "eur",
            "12.50",
            "2",
            "2026-11-21 10:05:00",
        ]
    }

    fn check_order(change: impl FnOnce(&mut Vec<&'static str>)) -> Result<Batch, String> {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let v = RowValidator::bind(orders, &rec(ORDERS_HEADER).as_raw()).unwrap();
        let mut row = good_order();
        change(&mut row);
        let mut batch = Batch::new(orders);
        v.validate_into(&rec(&row).as_raw(), &mut batch)
            .map(|()| batch)
            .map_err(|r| r.join("; "))
    }

    #[test]
    fn strings_are_limited_in_utf8_bytes_not_characters() {
        // order_id has the default max_bytes of 256.
        let at = |value: String| check_order(|r| r[0] = value.leak());
        // 85 three-byte characters and one ASCII: 86 characters, exactly 256 bytes.
        assert!(at(format!("{}a", "日".repeat(85))).is_ok());
        // 128 two-byte characters: 256 bytes.
        assert!(at("é".repeat(128)).is_ok());
        // One byte more (129 characters, far from 256) is quarantined, naming column and limit.
        let err = at(format!("{}a", "é".repeat(128))).unwrap_err();
        assert_eq!(
            err,
            "order_id: value is 257 bytes of UTF-8, longer than the column's max_bytes of 256"
        );
        assert!(at("日".repeat(86)).unwrap_err().contains("258 bytes"));
    }

    #[test]
    fn header_matching_ignores_case_whitespace_and_order_and_reports_drift() {
        let reg = Registry::builtin();
        let customers = reg.get("customers").unwrap();
        let header = rec(&[
            " Updated_At ",
            "EMAIL",
            "customer_id",
            "signup_date",
            "customer_region",
            "loyalty_tier",
            "",
        ]);
        let v = RowValidator::bind(customers, &header.as_raw()).unwrap();
        assert_eq!(
            v.drift.extra_columns,
            ["loyalty_tier", "(unnamed column 7)"]
        );
        assert_eq!(
            v.drift.missing_columns,
            ["first_name", "last_name", "country"]
        );
        let mut batch = Batch::new(customers);
        v.validate_into(
            &rec(&[
                "2026-01-01T00:00:00Z",
                " A@B.Example ",
                "c1",
                "2025-05-05",
                "na",
                "gold",
                "",
            ])
            .as_raw(),
            &mut batch,
        )
        .unwrap();
        assert_eq!(batch.str(1, 0), Some("a@b.example"));
        assert_eq!(batch.str(4, 0), Some("NA"), "NA is North America, not null");
        assert!(batch.is_null(5, 0));
    }

    #[test]
    fn header_problems_reject_the_whole_file_and_name_the_columns() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let err = RowValidator::bind(orders, &rec(&["order_id", "status"]).as_raw()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required column(s): customer_id, order_ts, customer_region, currency, total_amount, item_count, updated_at"
        );
        let mut dup = ORDERS_HEADER.to_vec();
        dup.push("Order_ID");
        assert_eq!(
            RowValidator::bind(orders, &rec(&dup).as_raw()).unwrap_err(),
            HeaderError::DuplicateColumns(vec!["order_id".into()])
        );
        assert_eq!(
            RowValidator::bind(orders, &rec(&[""]).as_raw()).unwrap_err(),
            HeaderError::Empty
        );
        let bad = OwnedRecord::new(1, &[b"order_id".to_vec(), vec![0xff, 0xfe]]);
        assert_eq!(
            RowValidator::bind(orders, &bad.as_raw()).unwrap_err(),
            HeaderError::NotUtf8
        );
    }

    #[test]
    fn a_good_row_is_normalised_and_typed() {
        let b = check_order(|_| {}).unwrap();
        assert_eq!(b.str(5, 0), Some("EUR"));
        assert_eq!(b.i64(6, 0), Some(1250));
        assert_eq!(b.i32(7, 0), Some(2));
        assert_eq!(b.lines, [2]);
        let b = check_order(|r| r[3] = " SHIPPED ").unwrap();
        assert_eq!(b.str(3, 0), Some("shipped"));
    }

    #[test]
    fn every_rule_rejects_with_a_reason_naming_the_column() {
        type Change = Box<dyn FnOnce(&mut Vec<&'static str>)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|r| r[0] = "  "),
                "order_id: required value is missing",
            ),
            (
                Box::new(|r| r[2] = "yesterday"),
                "order_ts: \"yesterday\" is not a valid timestamp",
            ),
            (
                Box::new(|r| r[3] = "shiped"),
                "status: \"shiped\" is not one of placed, paid, shipped",
            ),
            (
                Box::new(|r| r[4] = "MARS"),
                "customer_region: \"MARS\" is not one of NA, EU, APAC, LATAM, MEA",
            ),
            (
                Box::new(|r| r[5] = "euro"),
                "currency: \"euro\" does not match ^[A-Z]{3}$",
            ),
            (
                Box::new(|r| r[6] = "-1.00"),
                "total_amount: \"-1.00\" is below the minimum 0",
            ),
            (
                Box::new(|r| r[6] = "1.005"),
                "total_amount: \"1.005\" has more than 2 fraction digits",
            ),
            (
                Box::new(|r| r[6] = "12,50"),
                "total_amount: \"12,50\" is not a decimal number",
            ),
            (
                Box::new(|r| r[7] = "0"),
                "item_count: \"0\" is below the minimum 1",
            ),
            (
                Box::new(|r| r[7] = "2.5"),
                "item_count: \"2.5\" is not a whole number",
            ),
            (
                Box::new(|r| r[8] = ""),
                "updated_at: required value is missing",
            ),
        ];
        for (change, want) in cases {
            let err = check_order(change).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
        let err = check_order(|r| {
            r[3] = "lost";
            r[7] = "-3";
        })
        .unwrap_err();
        assert!(
            err.contains("status:") && err.contains("item_count:"),
            "all reasons listed: {err}"
        );
    }

    #[test]
    fn wrong_field_counts_and_bad_utf8_reject_the_row() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let v = RowValidator::bind(orders, &rec(ORDERS_HEADER).as_raw()).unwrap();
        let mut batch = Batch::new(orders);
        let mut short = good_order();
        short.pop();
        assert_eq!(
            v.validate_into(&rec(&short).as_raw(), &mut batch)
                .unwrap_err(),
            ["row has 8 field(s) but the header has 9"]
        );
        let mut long = good_order();
        long.push("extra");
        assert!(v.validate_into(&rec(&long).as_raw(), &mut batch).is_err());
        let mut fields: Vec<Vec<u8>> = good_order().iter().map(|s| s.as_bytes().to_vec()).collect();
        fields[1] = vec![b'c', 0xc3, 0x28];
        assert_eq!(
            v.validate_into(&OwnedRecord::new(4, &fields).as_raw(), &mut batch)
                .unwrap_err(),
            ["customer_id: value is not valid UTF-8"]
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn payments_amount_must_be_strictly_positive() {
        let reg = Registry::builtin();
        let payments = reg.get("payments").unwrap();
        let header = rec(&[
            "payment_id",
            "order_id",
            "payment_ts",
            "method",
            "status",
            "amount",
            "currency",
            "updated_at",
        ]);
        let v = RowValidator::bind(payments, &header.as_raw()).unwrap();
        let mut batch = Batch::new(payments);
        let row = |amount| {
            rec(&[
                "p1",
                "o1",
                "2026-11-21T10:00:00Z",
                "CARD",
                "succeeded",
                amount,
                "usd",
                "2026-11-21T10:00:00Z",
            ])
        };
        assert_eq!(
            v.validate_into(&row("0.00").as_raw(), &mut batch)
                .unwrap_err(),
            ["amount: \"0.00\" must be greater than 0"]
        );
        v.validate_into(&row("0.01").as_raw(), &mut batch).unwrap();
        assert_eq!(batch.str(3, 0), Some("card"));
    }

    #[test]
    fn personal_data_is_never_quoted_in_reasons() {
        let reg = Registry::builtin();
        let customers = reg.get("customers").unwrap();
        let header = rec(&[
            "customer_id",
            "email",
            "customer_region",
            "country",
            "signup_date",
            "updated_at",
        ]);
        let v = RowValidator::bind(customers, &header.as_raw()).unwrap();
        let mut batch = Batch::new(customers);
        let err = v
            .validate_into(
                &rec(&[
                    "c1",
                    "jane.doe(at)example.com",
                    "EU",
                    "uk",
                    "2025-01-01",
                    "2025-01-01T00:00:00Z",
                ])
                .as_raw(),
                &mut batch,
            )
            .unwrap_err()
            .join("; ");
        assert!(!err.contains("jane"), "{err}");
        assert!(
            err.contains("email: value (withheld: personal data) does not match"),
            "{err}"
        );
        assert!(
            err.contains("country: \"uk\" is not an ISO 3166-1 alpha-2 country code"),
            "{err}"
        );
    }

    #[test]
    fn long_values_are_truncated_in_reasons() {
        let long = "x".repeat(100);
        let leaked: &'static str = Box::leak(long.into_boxed_str());
        let err = check_order(|r| r[3] = leaked).unwrap_err();
        assert!(err.len() < 150 && err.contains('…'), "{err}");
    }
}
