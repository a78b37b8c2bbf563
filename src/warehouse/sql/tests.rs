use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;

use super::*;

fn warehouse() -> Warehouse {
    Warehouse {
        schema: "shoplake".into(),
        copy_role_arn: "arn:aws:iam::123456789012:role/shoplake-copy".into(),
    }
}

fn group(region: Option<&str>, uri: &str) -> CopyGroup {
    CopyGroup {
        identity: region
            .map(|r| BTreeMap::from([("customer_region".to_owned(), r.to_owned())]))
            .unwrap_or_default(),
        manifest_uri: uri.into(),
    }
}

/// Every statement must parse as Redshift SQL.
fn assert_parses(statements: &[String]) {
    for sql in statements {
        if let Err(e) = Parser::parse_sql(&RedshiftSqlDialect {}, sql) {
            panic!("does not parse as Redshift SQL ({e}):\n{sql}");
        }
    }
}

#[test]
fn every_generated_statement_parses_as_redshift_sql() {
    let reg = Registry::builtin();
    let wh = warehouse();
    let ddl = wh.ddl(&reg);
    assert_eq!(
        ddl.len(),
        2 + 3 + 2 + 4,
        "schema, ledger, three silver tables, daily_kpis, payment_methods_daily, four views"
    );
    assert_parses(&ddl);
    for contract in reg.iter() {
        let groups = vec![
            group(Some("EU"), "s3://b/loads/x/eu.manifest"),
            group(Some("NA"), "s3://b/loads/x/na.manifest"),
        ];
        assert_parses(&wh.load_batch(contract, "20261121T010512Z-3f2a9c0b1d4e", &groups, 42));
        assert_parses(&[wh.ledger_lookup(&contract.name, "b'1")]);
    }
    assert_parses(&wh.replace_month(
        "2026-11",
        "s3://b/gold/daily_kpis/month=2026-11/daily_kpis.parquet",
    ));
    assert_parses(&wh.replace_gold_month(
        METHODS_TABLE,
        "2026-11",
        "s3://b/gold/payment_methods_daily/month=2026-11/payment_methods_daily.parquet",
    ));
}

#[test]
fn orders_load_statements_snapshot() {
    let reg = Registry::builtin();
    let orders = reg.get("orders").unwrap();
    let got = warehouse().load_batch(
        orders,
        "20261121T010512Z-3f2a9c0b1d4e",
        &[group(
            Some("EU"),
            "s3://lake/loads/orders/b/customer_region=EU.manifest",
        )],
        900,
    );
    let file = "order_id VARCHAR(256) NOT NULL, customer_id VARCHAR(256) NOT NULL, order_ts TIMESTAMP NOT NULL, status VARCHAR(16) NOT NULL, currency VARCHAR(256) NOT NULL, total_amount DECIMAL(18,2) NOT NULL, item_count INTEGER NOT NULL, updated_at TIMESTAMP NOT NULL, _ingested_at TIMESTAMP NOT NULL, _source_file VARCHAR(1024) NOT NULL, _batch_id VARCHAR(64) NOT NULL";
    let table = "order_id VARCHAR(256) NOT NULL, customer_id VARCHAR(256) NOT NULL, order_ts TIMESTAMP NOT NULL, status VARCHAR(16) NOT NULL, customer_region VARCHAR(16) NOT NULL, currency VARCHAR(256) NOT NULL, total_amount DECIMAL(18,2) NOT NULL, item_count INTEGER NOT NULL, updated_at TIMESTAMP NOT NULL, order_date DATE NOT NULL, _ingested_at TIMESTAMP NOT NULL, _source_file VARCHAR(1024) NOT NULL, _batch_id VARCHAR(64) NOT NULL";
    let names = "order_id, customer_id, order_ts, status, customer_region, currency, total_amount, item_count, updated_at, order_date, _ingested_at, _source_file, _batch_id";
    let want = vec![
        format!("CREATE TEMP TABLE stage_raw_orders ({file})"),
        format!("CREATE TEMP TABLE stage_orders ({table})"),
        "COPY stage_raw_orders FROM 's3://lake/loads/orders/b/customer_region=EU.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/shoplake-copy' FORMAT AS PARQUET MANIFEST".to_owned(),
        format!("INSERT INTO stage_orders ({names}) SELECT order_id, customer_id, order_ts, status, 'EU' AS customer_region, currency, total_amount, item_count, updated_at, CAST(order_ts AS DATE) AS order_date, _ingested_at, _source_file, _batch_id FROM stage_raw_orders"),
        "DELETE FROM stage_raw_orders".to_owned(),
        "DELETE FROM stage_orders WHERE EXISTS (SELECT 1 FROM shoplake.load_ledger WHERE dataset = 'orders' AND batch_id = '20261121T010512Z-3f2a9c0b1d4e')".to_owned(),
        "DELETE FROM stage_orders USING shoplake.orders AS t WHERE stage_orders.order_id = t.order_id AND (stage_orders.updated_at < t.updated_at OR (stage_orders.updated_at = t.updated_at AND (stage_orders._ingested_at < t._ingested_at OR (stage_orders._ingested_at = t._ingested_at AND stage_orders._batch_id < t._batch_id))))".to_owned(),
        format!("MERGE INTO shoplake.orders USING stage_orders AS s ON shoplake.orders.order_id = s.order_id WHEN MATCHED THEN UPDATE SET customer_id = s.customer_id, order_ts = s.order_ts, status = s.status, customer_region = s.customer_region, currency = s.currency, total_amount = s.total_amount, item_count = s.item_count, updated_at = s.updated_at, order_date = s.order_date, _ingested_at = s._ingested_at, _source_file = s._source_file, _batch_id = s._batch_id WHEN NOT MATCHED THEN INSERT ({names}) VALUES (s.order_id, s.customer_id, s.order_ts, s.status, s.customer_region, s.currency, s.total_amount, s.item_count, s.updated_at, s.order_date, s._ingested_at, s._source_file, s._batch_id)"),
        "INSERT INTO shoplake.load_ledger (dataset, batch_id, rows_loaded, loaded_at) SELECT 'orders', '20261121T010512Z-3f2a9c0b1d4e', 900, GETDATE() WHERE NOT EXISTS (SELECT 1 FROM shoplake.load_ledger WHERE dataset = 'orders' AND batch_id = '20261121T010512Z-3f2a9c0b1d4e')".to_owned(),
        "DROP TABLE stage_orders".to_owned(),
        "DROP TABLE stage_raw_orders".to_owned(),
    ];
    assert_eq!(got, want);
}

#[test]
fn the_staging_table_matches_the_parquet_files_column_for_column() {
    // COPY from Parquet maps by position: the raw staging table must be the file schema.
    let reg = Registry::builtin();
    for contract in reg.iter() {
        let schema = crate::silver::silver_schema(contract).unwrap();
        let files: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
        let staged: Vec<String> = file_columns(contract).into_iter().map(|c| c.name).collect();
        assert_eq!(staged, files, "{}", contract.name);
    }
}

#[test]
fn ddl_uses_exact_types_keys_and_the_star_schema_has_no_personal_data() {
    let reg = Registry::builtin();
    let wh = warehouse();
    let payments = wh.create_table(reg.get("payments").unwrap());
    assert!(
        payments.contains("amount DECIMAL(18,2) NOT NULL"),
        "{payments}"
    );
    assert!(payments.contains("payment_date DATE NOT NULL"));
    assert!(
        payments.ends_with("PRIMARY KEY (payment_id)) DISTKEY(payment_id) SORTKEY(payment_date)"),
        "{payments}"
    );
    let kpis = wh.create_daily_kpis();
    for col in KPI_COLUMNS {
        assert!(
            kpis.contains(&format!("{col} ")),
            "{col} missing from {kpis}"
        );
    }
    assert!(
        kpis.contains("revenue DECIMAL(18,2) NOT NULL")
            && kpis.contains("retention_rate DOUBLE PRECISION")
    );
    let methods = wh.create_payment_methods_daily();
    for col in crate::gold::methods::COLUMNS {
        assert!(
            methods.contains(&format!("{col} ")),
            "{col} missing from {methods}"
        );
    }
    assert!(
        methods.contains("succeeded_amount DECIMAL(18,2) NOT NULL")
            && methods.contains("refunded_amount DECIMAL(18,2) NOT NULL")
            && methods
                .contains("PRIMARY KEY (kpi_date, customer_region, currency, payment_method)"),
        "{methods}"
    );
    assert_eq!(
        wh.replace_gold_month(METHODS_TABLE, "2026-11", "s3://b/x.parquet")[0],
        "DELETE FROM shoplake.payment_methods_daily WHERE kpi_date >= CAST('2026-11-01' AS DATE) AND kpi_date < DATEADD(month, 1, CAST('2026-11-01' AS DATE))"
    );
    let views = wh.create_views(&reg).join("\n");
    for view in [
        "fact_orders",
        "dim_customer",
        "dim_date",
        "dim_payment_method",
    ] {
        assert!(
            views.contains(&format!("VIEW shoplake.{view} AS")),
            "{view}"
        );
    }
    assert!(
        !views.contains("email") && !views.contains("first_name"),
        "no personal data in BI views"
    );
    assert!(views.contains("SELECT 'bank_transfer' AS payment_method"));
}

#[test]
fn literals_are_quoted_and_manifests_list_exact_files() {
    assert_eq!(literal("O'Brien"), "'O''Brien'");
    let m: serde_json::Value =
        serde_json::from_str(&copy_manifest(&[("s3://b/k1.parquet".into(), 10)])).unwrap();
    assert_eq!(m["entries"][0]["url"], "s3://b/k1.parquet");
    assert_eq!(m["entries"][0]["mandatory"], true);
    assert_eq!(m["entries"][0]["meta"]["content_length"], 10);
}

/// The table of `contract` as information_schema would describe it after its CREATE TABLE.
fn existing(contract: &Contract) -> Vec<ExistingColumn> {
    table_columns(contract)
        .into_iter()
        .map(|c| {
            let (data_type, length, precision, scale) = info_type(&c.sql_type);
            ExistingColumn {
                name: c.name,
                data_type,
                length,
                precision,
                scale,
                nullable: !c.not_null,
            }
        })
        .collect()
}

#[test]
fn new_optional_columns_are_added_and_incompatible_changes_name_the_column_and_the_fix() {
    let reg = Registry::builtin();
    let wh = warehouse();
    let customers = reg.get("customers").unwrap();
    let now = existing(customers);
    assert_eq!(
        wh.schema_changes(customers, &now).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        wh.schema_changes(customers, &[]).unwrap(),
        Vec::<String>::new(),
        "a new table"
    );

    // The table lacks an optional column the contract has: it is added.
    let without_country: Vec<ExistingColumn> = now
        .iter()
        .filter(|c| c.name != "country")
        .cloned()
        .collect();
    assert_eq!(
        wh.schema_changes(customers, &without_country).unwrap(),
        ["ALTER TABLE shoplake.customers ADD COLUMN country VARCHAR(256)"]
    );
    // ... a required one cannot be.
    let without_signup: Vec<ExistingColumn> = now
        .iter()
        .filter(|c| c.name != "signup_date")
        .cloned()
        .collect();
    let err = wh.schema_changes(customers, &without_signup).unwrap_err();
    assert_eq!(err.column, "signup_date");
    assert!(err.to_string().contains("required = false"), "{err}");

    // A type change.
    let mut retyped = now.clone();
    retyped
        .iter_mut()
        .find(|c| c.name == "signup_date")
        .unwrap()
        .data_type = "character varying".into();
    let err = wh.schema_changes(customers, &retyped).unwrap_err();
    assert_eq!(err.column, "signup_date");
    assert!(
        err.to_string().contains("DATE in the contract")
            && err.to_string().contains("DROP TABLE shoplake.customers"),
        "{err}"
    );
    let payments = reg.get("payments").unwrap();
    let mut scale = existing(payments);
    scale.iter_mut().find(|c| c.name == "amount").unwrap().scale = Some(4);
    assert_eq!(
        wh.schema_changes(payments, &scale).unwrap_err().column,
        "amount"
    );

    // A required column the contract no longer has.
    let mut dropped = now.clone();
    dropped.push(ExistingColumn {
        name: "loyalty_tier".into(),
        data_type: "character varying".into(),
        length: Some(16),
        precision: None,
        scale: None,
        nullable: false,
    });
    let err = wh.schema_changes(customers, &dropped).unwrap_err();
    assert_eq!(err.column, "loyalty_tier");
    assert!(
        err.to_string().contains("DROP COLUMN loyalty_tier"),
        "{err}"
    );
    // ... an optional one is left alone.
    dropped.last_mut().unwrap().nullable = true;
    assert!(wh.schema_changes(customers, &dropped).unwrap().is_empty());

    // A narrower VARCHAR than the contract's max_bytes.
    let mut narrow = now.clone();
    narrow
        .iter_mut()
        .find(|c| c.name == "country")
        .unwrap()
        .length = Some(64);
    let err = wh.schema_changes(customers, &narrow).unwrap_err();
    assert!(
        err.to_string()
            .contains("ALTER COLUMN country TYPE VARCHAR(256)"),
        "{err}"
    );

    assert_eq!(
        parse_columns(&[vec![
            Some("amount".into()),
            Some("numeric".into()),
            None,
            Some("18".into()),
            Some("2".into()),
            Some("NO".into())
        ]]),
        [ExistingColumn {
            name: "amount".into(),
            data_type: "numeric".into(),
            length: None,
            precision: Some(18),
            scale: Some(2),
            nullable: false
        }]
    );
}
