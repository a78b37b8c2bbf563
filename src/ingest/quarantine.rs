//! The rejected-rows file: CSV with the source line number, the reason, and the row's raw fields
//! exactly as they arrived (so a fixed row can be re-submitted).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::input::RawRecord;

pub const LINE_COLUMN: &str = "_source_line";
pub const REASON_COLUMN: &str = "_reason";

/// Streams rejected rows to a spool file; created lazily on the first reject.
pub struct QuarantineWriter {
    path: PathBuf,
    header: ByteRecord,
    writer: Option<csv::Writer<BufWriter<File>>>,
    rows: u64,
    /// Rows per reason category ([`reason_category`]): what a reject-rate alert lists.
    categories: BTreeMap<String, u64>,
}

/// A reason without the value it quotes, so it can be counted and shown in alerts (which never
/// carry data): `email: "x@" does not match ^…$` becomes `email: does not match ^…$`.
pub fn reason_category(reason: &str) -> String {
    if reason.starts_with("row has ") {
        return "row has the wrong number of fields".into();
    }
    let Some((column, rest)) = reason.split_once(": ") else {
        return reason.to_owned();
    };
    let rule = if let Some(quoted) = rest.strip_prefix('"') {
        // The value is quoted with `escape_debug`: a quote inside it is escaped.
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        match end {
            Some(i) => quoted[i + 1..].trim_start_matches('…').trim_start(),
            None => "has an unreadable value",
        }
    } else {
        rest.strip_prefix("value (withheld: personal data) ")
            .unwrap_or(rest)
    };
    format!("{column}: {rule}")
}

impl QuarantineWriter {
    pub fn new(path: impl Into<PathBuf>, source_header: &RawRecord<'_>) -> Self {
        QuarantineWriter {
            path: path.into(),
            header: source_header.fields().collect(),
            writer: None,
            rows: 0,
            categories: BTreeMap::new(),
        }
    }

    /// Rejected rows per reason category so far (a row with two reasons counts for both).
    pub fn categories(&self) -> &BTreeMap<String, u64> {
        &self.categories
    }

    pub fn reject(&mut self, reasons: &[String], raw: &RawRecord<'_>) -> io::Result<()> {
        if self.writer.is_none() {
            let file = File::create(&self.path)?;
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .from_writer(BufWriter::new(file));
            let mut header = ByteRecord::new();
            header.push_field(LINE_COLUMN.as_bytes());
            header.push_field(REASON_COLUMN.as_bytes());
            header.extend(self.header.iter());
            w.write_byte_record(&header)?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        let mut record = ByteRecord::with_capacity(raw.concatenated().len() + 64, raw.len() + 2);
        record.push_field(raw.line.to_string().as_bytes());
        record.push_field(reasons.join("; ").as_bytes());
        record.extend(raw.fields());
        w.write_byte_record(&record)?;
        self.rows += 1;
        for reason in reasons {
            *self.categories.entry(reason_category(reason)).or_default() += 1;
        }
        Ok(())
    }

    /// Flushes the file; returns its path and row count, or `None` when nothing was rejected.
    pub fn finish(self) -> io::Result<Option<(PathBuf, u64)>> {
        match self.writer {
            Some(w) => {
                w.into_inner()
                    .map_err(|e| e.into_error())?
                    .into_inner()
                    .map_err(|e| e.into_error())?;
                Ok(Some((self.path, self.rows)))
            }
            None => Ok(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::OwnedRecord;

    #[test]
    fn categories_drop_the_quoted_value() {
        for (reason, category) in [
            (
                r#"currency: "eu\"r" does not match ^[A-Z]{3}$"#,
                "currency: does not match ^[A-Z]{3}$",
            ),
            (
                r#"total_amount: "12,5" is not a decimal"#,
                "total_amount: is not a decimal",
            ),
            (r#"note: "aaaaaaaa…" is too long"#, "note: is too long"),
            (
                "email: value (withheld: personal data) does not match ^x$",
                "email: does not match ^x$",
            ),
            (
                "order_ts: required value is missing",
                "order_ts: required value is missing",
            ),
            (
                "row has 3 field(s) but the header has 9",
                "row has the wrong number of fields",
            ),
            (
                "column 4: value is not valid UTF-8",
                "column 4: value is not valid UTF-8",
            ),
        ] {
            assert_eq!(reason_category(reason), category, "{reason}");
        }
    }

    #[test]
    fn rejected_rows_keep_their_raw_bytes_line_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = QuarantineWriter::new(
            dir.path().join("r.csv"),
            &OwnedRecord::new(1, &["id", "amount"]).as_raw(),
        );
        q.reject(
            &["amount: bad".into(), "id: missing".into()],
            &OwnedRecord::new(7, &["", "1,5"]).as_raw(),
        )
        .unwrap();
        q.reject(
            &["row has 3 field(s)".into()],
            &OwnedRecord::new(9, &[b"a".to_vec(), vec![0xff], b"c".to_vec()]).as_raw(),
        )
        .unwrap();
        let (path, rows) = q.finish().unwrap().unwrap();
        assert_eq!(rows, 2);
        let bytes = std::fs::read(path).unwrap();
        let mut expected = b"_source_line,_reason,id,amount\n7,amount: bad; id: missing,,\"1,5\"\n9,row has 3 field(s),a,".to_vec();
        expected.extend_from_slice(&[0xff]);
        expected.extend_from_slice(b",c\n");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn no_rejects_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let q = QuarantineWriter::new(
            dir.path().join("r.csv"),
            &OwnedRecord::new(1, &["id"]).as_raw(),
        );
        assert!(q.finish().unwrap().is_none());
        assert!(!dir.path().join("r.csv").exists());
    }
}
