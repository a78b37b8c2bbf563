//! The one place where the generated Redshift SQL becomes PostgreSQL (15 or newer: it has
//! MERGE). [`PostgresExecutor`](super::PostgresExecutor) runs every statement through
//! [`translate`], so the engine tests and `lake load --postgres` execute the very statements the
//! load function sends to Redshift, changed only by these rules:
//!
//! 1. `COPY t FROM '<uri>' IAM_ROLE '…' FORMAT AS PARQUET [MANIFEST]` becomes
//!    [`PgStatement::Copy`]: the executor reads the Parquet files the URI names (through the COPY
//!    manifest when `MANIFEST` is given) from the lake's object store and streams their rows,
//!    column by position as Redshift maps them, into `COPY t FROM STDIN`.
//! 2. Redshift's physical-design clauses `DISTKEY(…)`, `SORTKEY(…)`, `DISTSTYLE …` and
//!    `ENCODE …` are stripped (PostgreSQL has no equivalent and needs none).
//! 3. `GETDATE()` becomes `LOCALTIMESTAMP` (the executor's sessions run in UTC, as Redshift does).
//! 4. `DATEADD(part, n, expr)` becomes `((expr) + (n) * INTERVAL '1 part')`.
//!
//! Everything else is sent verbatim. One difference is left on purpose: PostgreSQL's
//! `VARCHAR(n)` counts characters where Redshift's counts bytes; ingest's `max_bytes` check is
//! what keeps values within Redshift's limit. Transactions are the executor's business: each batch runs in
//! one transaction, as `BatchExecuteStatement` runs it on Redshift.

use std::sync::LazyLock;

use regex::Regex;

/// A translated statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgStatement {
    /// SQL to run as it is.
    Sql(String),
    /// Rows of Parquet files to copy into `table`, column by position.
    Copy {
        table: String,
        /// The `s3://…`/`file://…` URI from the Redshift statement.
        uri: String,
        /// Whether `uri` is a COPY manifest listing the files (else it is one Parquet file).
        manifest: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot translate this Redshift statement to PostgreSQL ({reason}); extend src/warehouse/translate.rs\n  statement: {statement}"
)]
pub struct TranslateError {
    pub reason: String,
    pub statement: String,
}

static COPY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^COPY (\S+) FROM '((?:[^']|'')*)' IAM_ROLE '(?:[^']|'')*' FORMAT AS PARQUET( MANIFEST)?$",
    )
    .expect("valid regex")
});
static PHYSICAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\s+(?:(?:DISTKEY|SORTKEY)\s*\([^)]*\)|DISTSTYLE\s+\w+|ENCODE\s+\w+)")
        .expect("valid regex")
});

/// Translates one generated Redshift statement (see the module documentation for the rules).
pub fn translate(redshift: &str) -> Result<PgStatement, TranslateError> {
    let sql = redshift.trim();
    if sql.starts_with("COPY ") {
        let c = COPY.captures(sql).ok_or_else(|| TranslateError {
            reason: "only `COPY t FROM '…' IAM_ROLE '…' FORMAT AS PARQUET [MANIFEST]` is known"
                .into(),
            statement: sql.into(),
        })?;
        return Ok(PgStatement::Copy {
            table: c[1].to_owned(),
            uri: c[2].replace("''", "'"),
            manifest: c.get(3).is_some(),
        });
    }
    let mut out = sql.to_owned();
    if out.starts_with("CREATE TABLE") {
        out = PHYSICAL.replace_all(&out, "").into_owned();
    }
    out = out.replace("GETDATE()", "LOCALTIMESTAMP");
    while let Some(start) = out.find("DATEADD(") {
        let open = start + "DATEADD".len();
        let close = matching_paren(&out, open).ok_or_else(|| TranslateError {
            reason: "unbalanced DATEADD(".into(),
            statement: sql.into(),
        })?;
        let args = split_top_level(&out[open + 1..close]);
        let [part, n, expr] = args.as_slice() else {
            return Err(TranslateError {
                reason: format!("DATEADD takes 3 arguments, got {}", args.len()),
                statement: sql.into(),
            });
        };
        let part = part.trim().trim_matches('\'');
        if !part.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(TranslateError {
                reason: format!("unknown DATEADD part {part:?}"),
                statement: sql.into(),
            });
        }
        let replacement = format!("(({}) + ({}) * INTERVAL '1 {part}')", expr.trim(), n.trim());
        out.replace_range(start..=close, &replacement);
    }
    Ok(PgStatement::Sql(out))
}

/// The index of the `)` closing the `(` at `open`, skipping string literals.
fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '\'' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits function arguments on the commas outside parentheses and string literals.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut in_string, mut from) = (Vec::new(), 0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_becomes_a_copy_of_the_named_parquet() {
        assert_eq!(
            translate("COPY stage_raw_orders FROM 's3://b/loads/o''k.manifest' IAM_ROLE 'arn:r' FORMAT AS PARQUET MANIFEST").unwrap(),
            PgStatement::Copy { table: "stage_raw_orders".into(), uri: "s3://b/loads/o'k.manifest".into(), manifest: true }
        );
        assert_eq!(
            translate("COPY s.daily_kpis FROM 'file:///l/gold/x.parquet' IAM_ROLE 'arn:r' FORMAT AS PARQUET").unwrap(),
            PgStatement::Copy { table: "s.daily_kpis".into(), uri: "file:///l/gold/x.parquet".into(), manifest: false }
        );
        assert!(
            translate("COPY t FROM 's3://b/x.csv' IAM_ROLE 'r' CSV")
                .unwrap_err()
                .to_string()
                .contains("translate.rs")
        );
    }

    #[test]
    fn physical_design_is_stripped_and_functions_are_shimmed() {
        let t = |s: &str| match translate(s).unwrap() {
            PgStatement::Sql(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            t("CREATE TABLE IF NOT EXISTS s.o (a INT, PRIMARY KEY (a)) DISTKEY(a) SORTKEY(d, a)"),
            "CREATE TABLE IF NOT EXISTS s.o (a INT, PRIMARY KEY (a))"
        );
        assert_eq!(
            t("CREATE TABLE IF NOT EXISTS s.l (a INT) DISTSTYLE ALL SORTKEY(a)"),
            "CREATE TABLE IF NOT EXISTS s.l (a INT)"
        );
        assert_eq!(
            t("INSERT INTO l VALUES ('x', GETDATE())"),
            "INSERT INTO l VALUES ('x', LOCALTIMESTAMP)"
        );
        assert_eq!(
            t("DELETE FROM k WHERE d < DATEADD(month, 1, CAST('2026-11-01' AS DATE))"),
            "DELETE FROM k WHERE d < ((CAST('2026-11-01' AS DATE)) + (1) * INTERVAL '1 month')"
        );
        // Literals that look like Redshift clauses are left alone outside CREATE TABLE.
        assert_eq!(t("SELECT 'DISTKEY(x)'"), "SELECT 'DISTKEY(x)'");
    }
}
