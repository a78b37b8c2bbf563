//! What Redshift rejects although sqlparser parses it (its MERGE grammar is the same in every
//! dialect), checked over the AST of every generated statement. Sources: the Amazon Redshift
//! Database Developer Guide, MERGE (no predicate on WHEN clauses; the source is a table or view;
//! no WITH), TRUNCATE (commits the current transaction, so never inside a batch), the Data API's
//! BatchExecuteStatement (at most 40 statements) and Reserved words (plus START and CONNECT,
//! which fail as aliases).

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use sqlparser::ast::{Query, SetExpr, Statement, TableFactor};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;

use super::*;

const RESERVED: &str = "AES128 AES256 ALL ALLOWOVERWRITE ANALYSE ANALYZE AND ANY ARRAY AS ASC AUTHORIZATION AZ64 BACKUP BETWEEN BINARY BLANKSASNULL BOTH BYTEDICT BZIP2 CASE CAST CHECK COLLATE COLUMN CONSTRAINT CREATE CREDENTIALS CROSS CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER CURRENT_USER_ID DEFAULT DEFERRABLE DEFLATE DEFRAG DELTA DELTA32K DESC DISABLE DISTINCT DO ELSE EMPTYASNULL ENABLE ENCODE ENCRYPT ENCRYPTION END EXCEPT EXPLICIT FALSE FOR FOREIGN FREEZE FROM FULL GLOBALDICT256 GLOBALDICT64K GRANT GROUP GZIP HAVING IDENTITY IGNORE ILIKE IN INITIALLY INNER INTERSECT INTERVAL INTO IS ISNULL JOIN LEADING LEFT LIKE LIMIT LOCALTIME LOCALTIMESTAMP LUN LUNS LZO LZOP MINUS MOSTLY16 MOSTLY32 MOSTLY8 NATURAL NEW NOT NOTNULL NULL NULLS OFF OFFLINE OFFSET OID OLD ON ONLY OPEN OR ORDER OUTER OVERLAPS PARALLEL PARTITION PERCENT PERMISSIONS PIVOT PLACING PRIMARY RAW READRATIO RECOVER REFERENCES REJECTLOG RESORT RESPECT RESTORE RIGHT SELECT SESSION_USER SIMILAR SNAPSHOT SOME SYSDATE SYSTEM TABLE TAG TDES TEXT255 TEXT32K THEN TIMESTAMP TO TOP TRAILING TRUE TRUNCATECOLUMNS UNION UNIQUE UNNEST UNPIVOT USER USING VERBOSE WALLET WHEN WHERE WITH WITHOUT START CONNECT";

static RESERVED_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| RESERVED.split_whitespace().collect());
/// Every unquoted identifier in an AST's debug form (column definitions, aliases, names).
static IDENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"Ident \{ value: "([^"]*)", quote_style: None"#).expect("valid regex")
});
/// The identifiers that name functions (`MAX`, `CAST`…), which are not identifiers to check.
static FUNCTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"Function\(Function \{ name: ObjectName\(\[Identifier\(Ident \{ value: "([^"]*)""#)
        .expect("valid regex")
});

fn check_merge(statement: &Statement, with: bool, problems: &mut Vec<String>) {
    let Statement::Merge(merge) = statement else {
        return;
    };
    if with {
        problems.push("MERGE cannot have a WITH clause in Redshift".into());
    }
    if !matches!(merge.source, TableFactor::Table { .. }) {
        problems.push(format!(
            "MERGE's source must be a table in Redshift, not `{}`",
            merge.source
        ));
    }
    for clause in &merge.clauses {
        if let Some(p) = &clause.predicate {
            problems.push(format!(
                "Redshift's MERGE takes no condition on WHEN clauses (`{} AND {p}`)",
                clause.clause_kind
            ));
        }
    }
}

fn check_query(query: &Query, problems: &mut Vec<String>) {
    if let SetExpr::Merge(m) = query.body.as_ref() {
        check_merge(m, query.with.is_some(), problems);
    }
}

/// The Redshift restrictions one batch (one BatchExecuteStatement, one transaction) violates.
pub fn violations(batch: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if batch.len() > MAX_BATCH_STATEMENTS {
        problems.push(format!(
            "{} statements in one batch; BatchExecuteStatement takes at most {MAX_BATCH_STATEMENTS}",
            batch.len()
        ));
    }
    for sql in batch {
        let statements = match Parser::parse_sql(&RedshiftSqlDialect {}, sql) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("does not parse as Redshift SQL ({e}): {sql}"));
                continue;
            }
        };
        for statement in &statements {
            match statement {
                Statement::Truncate(_) => problems.push(
                    "TRUNCATE commits the transaction in Redshift: use DELETE inside a batch"
                        .into(),
                ),
                Statement::Query(q) => check_query(q, &mut problems),
                other => check_merge(other, false, &mut problems),
            }
            let debug = format!("{statement:?}");
            let functions: Vec<String> = FUNCTION
                .captures_iter(&debug)
                .map(|c| c[1].to_uppercase())
                .collect();
            let mut functions_left = functions.clone();
            for c in IDENT.captures_iter(&debug) {
                let word = c[1].to_uppercase();
                if let Some(i) = functions_left.iter().position(|f| *f == word) {
                    functions_left.swap_remove(i);
                    continue;
                }
                if RESERVED_SET.contains(word.as_str()) {
                    problems.push(format!(
                        "`{}` is a Redshift reserved word; rename it or quote it: {sql}",
                        &c[1]
                    ));
                }
            }
        }
    }
    problems
}

fn warehouse() -> Warehouse {
    Warehouse {
        schema: "shoplake".into(),
        copy_role_arn: "arn:aws:iam::123456789012:role/shoplake-copy".into(),
    }
}

#[test]
fn every_generated_batch_keeps_to_redshifts_restrictions() {
    let reg = Registry::builtin();
    let wh = warehouse();
    let mut batches = vec![wh.ddl(&reg)];
    for contract in reg.iter() {
        // As many partition groups as one contract's identity partitions can have.
        let groups: Vec<CopyGroup> = ["NA", "EU", "APAC", "LATAM", "MEA"]
            .iter()
            .map(|r| CopyGroup {
                identity: BTreeMap::from([("customer_region".to_owned(), (*r).to_owned())]),
                manifest_uri: format!("s3://b/loads/x/{r}.manifest"),
            })
            .collect();
        batches.push(wh.load_batch(contract, "20261121T010512Z-3f2a9c0b1d4e", &groups, 7));
        batches.push(vec![wh.ledger_lookup(&contract.name, "b")]);
    }
    batches.push(wh.replace_month("2026-11", "s3://b/gold/daily_kpis/month=2026-11/d.parquet"));
    for batch in &batches {
        assert_eq!(violations(batch), Vec::<String>::new(), "{batch:#?}");
    }
}

#[test]
fn each_restriction_rejects_a_violating_statement() {
    let one = |sql: &str| violations(&[sql.to_owned()]);
    let cases = [
        (
            "MERGE INTO s.t USING stage AS x ON s.t.id = x.id WHEN MATCHED AND x.v > s.t.v THEN UPDATE SET v = x.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (x.id, x.v)",
            "no condition on WHEN clauses",
        ),
        (
            "MERGE INTO s.t USING (SELECT id, v FROM stage) AS x ON s.t.id = x.id WHEN MATCHED THEN UPDATE SET v = x.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (x.id, x.v)",
            "source must be a table",
        ),
        ("TRUNCATE TABLE s.t", "TRUNCATE commits"),
        (
            "CREATE TABLE s.t (id INTEGER, tag VARCHAR(8))",
            "`tag` is a Redshift reserved word",
        ),
        (
            "SELECT o.id FROM s.t AS start",
            "`start` is a Redshift reserved word",
        ),
    ];
    for (sql, needle) in cases {
        let got = one(sql);
        assert!(
            got.iter().any(|p| p.contains(needle)),
            "{needle:?} not in {got:?} for {sql}"
        );
    }
    // WITH before MERGE: rejected whether sqlparser reads it as a MERGE with WITH or not at all.
    let with = one(
        "WITH x AS (SELECT id, v FROM stage) MERGE INTO s.t USING x ON s.t.id = x.id WHEN MATCHED THEN UPDATE SET v = x.v",
    );
    assert!(
        with.iter()
            .any(|p| p.contains("WITH clause") || p.contains("does not parse")),
        "{with:?}"
    );
    let many = vec!["DELETE FROM s.t".to_owned(); MAX_BATCH_STATEMENTS + 1];
    assert!(violations(&many)[0].contains("at most 40"));
    assert!(violations(&many[..MAX_BATCH_STATEMENTS]).is_empty());
}
