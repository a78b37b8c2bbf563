//! Hive-style partition paths (`order_date=2026-11-21/customer_region=EU`), the layout Glue,
//! Athena, Redshift Spectrum, DuckDB and pyarrow discover without options.

use crate::columns::Batch;
use crate::contract::{Contract, PartitionTransform};
use crate::values;

/// Hive's name for a partition whose value is null.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Escapes a partition value the way Hive does (`FileUtils.escapePathName`).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let escaped = c.is_control()
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            );
        if escaped {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape_value`]: `%XX` becomes the byte it encodes. A value that is not valid
/// escaping of UTF-8 (a path written by something else) is returned as it is.
pub fn unescape_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_owned())
}

/// The `(name, value)` pairs of a hive partition path, values unescaped; Hive's null partition
/// is `None`. Segments without `=` are not partitions and are skipped.
pub fn parse_partition_path(path: &str) -> Vec<(String, Option<String>)> {
    path.split('/')
        .filter_map(|segment| segment.split_once('='))
        .map(|(name, value)| {
            let value = (value != HIVE_NULL).then(|| unescape_value(value));
            (name.to_owned(), value)
        })
        .collect()
}

/// `name=value/name=value` for the given pairs, values escaped, null as Hive's default partition.
pub fn hive_partition_path<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    pairs
        .into_iter()
        .map(|(name, value)| match value {
            Some(v) if !v.is_empty() => format!("{name}={}", escape_value(v)),
            _ => format!("{name}={HIVE_NULL}"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The partition values of one row of a batch, as strings, in contract order.
pub fn row_partition_values(contract: &Contract, batch: &Batch, row: usize) -> Vec<Option<String>> {
    contract
        .partitions
        .iter()
        .map(|p| match p.transform {
            PartitionTransform::Identity => batch.str(p.source, row).map(str::to_owned),
            PartitionTransform::UtcDate => batch
                .i64(p.source, row)
                .map(|micros| values::format_date(values::utc_day_of(micros))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths() {
        type Pairs<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(Pairs, &str)] = &[
            (
                &[
                    ("order_date", Some("2026-11-21")),
                    ("customer_region", Some("EU")),
                ],
                "order_date=2026-11-21/customer_region=EU",
            ),
            (&[("customer_region", Some("NA"))], "customer_region=NA"),
            (
                &[("payment_date", None)],
                "payment_date=__HIVE_DEFAULT_PARTITION__",
            ),
            (&[("k", Some(""))], "k=__HIVE_DEFAULT_PARTITION__"),
            (&[("k", Some("a/b=c"))], "k=a%2Fb%3Dc"),
            (&[("k", Some("50%:x"))], "k=50%25%3Ax"),
            (&[("k", Some("São Paulo"))], "k=São Paulo"),
            (&[("k", Some("tab\there"))], "k=tab%09here"),
        ];
        for (pairs, want) in cases {
            assert_eq!(hive_partition_path(pairs.iter().copied()), *want);
        }
    }

    #[test]
    fn partition_paths_parse_back_to_their_values() {
        for value in [
            "EU",
            "a/b=c",
            "50%:x",
            "São Paulo",
            "tab\there",
            "100%",
            "x+y",
        ] {
            let path = hive_partition_path([("k", Some(value)), ("d", None)]);
            assert_eq!(
                parse_partition_path(&path),
                [
                    ("k".to_owned(), Some(value.to_owned())),
                    ("d".to_owned(), None)
                ],
                "{path}"
            );
        }
        // Not our escaping: kept as written rather than guessed at.
        assert_eq!(unescape_value("bad%zz"), "bad%zz");
        assert_eq!(unescape_value("%FF"), "%FF");
        assert_eq!(parse_partition_path("part-x.parquet"), []);
    }
}
