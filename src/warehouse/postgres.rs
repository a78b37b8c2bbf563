//! A [`SqlExecutor`] on PostgreSQL (15 or newer): the local warehouse of `lake load --postgres`
//! and the engine the integration tests run the generated SQL on. Every statement goes through
//! [`translate`](super::translate) (the one place Redshift SQL becomes PostgreSQL); each batch
//! runs in one transaction, as `BatchExecuteStatement` runs it on Redshift, so a failing
//! statement rolls the whole batch back.
//!
//! COPY reads the Parquet files from the lake's object store (the URIs in the statements are the
//! store's) and sends every value as text (`COPY … FROM STDIN`), so decimals stay exact NUMERIC.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::SinkExt;
use polars::prelude::*;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

use super::data_api::{SqlExecutor, WarehouseError};
use super::translate::{PgStatement, translate};
use crate::storage::{ObjectStore, root_uri};

/// Rows sent to COPY per message.
const COPY_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct PostgresExecutor {
    client: Mutex<Client>,
    /// Where the URIs of COPY statements point: the lake the loader reads.
    store: Arc<dyn ObjectStore>,
    /// Name of this connection in errors (the statement id of the Data API).
    name: String,
}

fn connection_error(operation: &'static str, e: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Postgres {
        operation,
        message: e.to_string(),
    }
}

/// PostgreSQL's error as Redshift's is reported: severity, message, SQLSTATE. This text reaches
/// logs and alerts, so nothing that may quote data: never the detail ("Failing row contains
/// …"), and for a data exception (SQLSTATE class 22, e.g. `invalid input syntax for type
/// numeric: "…"`) not the message either.
fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let message = if code.starts_with("22") {
                "a value was rejected (data exception; the value is not quoted here)"
            } else {
                db.message()
            };
            format!("{}: {message} (SQLSTATE {code})", db.severity())
        }
        None => e.to_string(),
    }
}

impl PostgresExecutor {
    /// Connects (`postgresql://user@host:port/db` or `host=… user=… dbname=…`); the session
    /// runs in UTC like Redshift. `store` is the lake the COPY statements read.
    pub async fn connect(url: &str, store: Arc<dyn ObjectStore>) -> Result<Self, WarehouseError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
            connection_error(
                "connect",
                format!("{e} (is the server running, and does the URL name it and a database?)"),
            )
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "PostgreSQL connection ended with an error");
            }
        });
        client
            .batch_execute("SET TIME ZONE 'UTC'; SET client_min_messages = warning")
            .await
            .map_err(|e| connection_error("session setup", e))?;
        Ok(PostgresExecutor {
            client: Mutex::new(client),
            store,
            name: "postgres".into(),
        })
    }

    /// A statement's error: the server's rejection is the statement's failure (as a FAILED
    /// Data API statement); a broken connection is the warehouse's, worth retrying the run.
    fn pg_failed(&self, i: usize, e: &tokio_postgres::Error, statement: &str) -> WarehouseError {
        if e.as_db_error().is_some() {
            self.failed(i, db_error_text(e), statement)
        } else {
            connection_error("statement", format!("{e} (while running: {statement})"))
        }
    }

    fn failed(&self, i: usize, error: String, statement: &str) -> WarehouseError {
        WarehouseError::Failed {
            id: format!("{}:{i}", self.name),
            error,
            statement: statement.into(),
        }
    }

    /// The object key a COPY URI names in the lake store.
    fn key_of<'u>(&self, uri: &'u str) -> Result<&'u str, String> {
        let root = root_uri(self.store.as_ref());
        uri.strip_prefix(&root)
            .and_then(|k| k.strip_prefix('/'))
            .ok_or_else(|| format!("{uri} is not in the lake this loader reads ({root})"))
    }

    async fn object(&self, uri: &str) -> Result<Bytes, String> {
        let key = self.key_of(uri)?;
        self.store
            .get(key)
            .await
            .map_err(|e| format!("reading {uri}: {e}"))?
            .ok_or_else(|| format!("{uri} does not exist"))
    }

    /// The Parquet files a COPY reads, as Redshift would: a manifest's entries, or one file.
    async fn copy_sources(&self, uri: &str, manifest: bool) -> Result<Vec<String>, String> {
        if !manifest {
            return Ok(vec![uri.to_owned()]);
        }
        let body = self.object(uri).await?;
        let m: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("COPY manifest {uri} is not JSON: {e}"))?;
        m["entries"]
            .as_array()
            .ok_or_else(|| format!("COPY manifest {uri} has no entries"))?
            .iter()
            .map(|e| {
                e["url"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("COPY manifest {uri} has an entry without url"))
            })
            .collect()
    }
}

/// Appends one value in PostgreSQL's COPY text format (`\N` is NULL).
fn push_text(out: &mut String, value: &AnyValue) -> Result<(), String> {
    match value {
        AnyValue::Null => out.push_str("\\N"),
        AnyValue::String(s) => push_escaped(out, s),
        AnyValue::StringOwned(s) => push_escaped(out, s),
        AnyValue::Boolean(b) => out.push_str(if *b { "t" } else { "f" }),
        AnyValue::Int8(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::Int16(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::Int32(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::Int64(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::UInt8(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::UInt16(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::UInt32(v) => write!(out, "{v}").unwrap_or(()),
        AnyValue::UInt64(v) => write!(out, "{v}").unwrap_or(()),
        // Shortest text that reads back as the same double.
        AnyValue::Float32(v) => write!(out, "{v:?}").unwrap_or(()),
        AnyValue::Float64(v) => write!(out, "{v:?}").unwrap_or(()),
        AnyValue::Decimal(v, _, scale) => push_decimal(out, *v, *scale),
        AnyValue::Date(days) => {
            let d = chrono::DateTime::from_timestamp(i64::from(*days) * 86_400, 0)
                .ok_or_else(|| format!("date {days} out of range"))?;
            write!(out, "{}", d.format("%Y-%m-%d")).unwrap_or(());
        }
        AnyValue::Datetime(v, unit, _) | AnyValue::DatetimeOwned(v, unit, _) => {
            let micros = match unit {
                TimeUnit::Nanoseconds => v.div_euclid(1_000),
                TimeUnit::Microseconds => *v,
                TimeUnit::Milliseconds => v * 1_000,
            };
            let t = chrono::DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| format!("timestamp {v} out of range"))?;
            write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f")).unwrap_or(());
        }
        other => return Err(format!("no COPY text for a {} value", other.dtype())),
    }
    Ok(())
}

/// A scaled integer as exact decimal text (`1234`, scale 2 → `12.34`).
fn push_decimal(out: &mut String, v: i128, scale: usize) {
    let digits = v.unsigned_abs().to_string();
    if v < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
        return;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let _ = write!(out, "{int}.{frac}");
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The rows of a Parquet file in COPY text format, in chunks.
fn copy_text(parquet: Bytes) -> Result<Vec<Bytes>, String> {
    let df = ParquetReader::new(std::io::Cursor::new(parquet))
        .finish()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let columns: Vec<Series> = df
        .columns()
        .iter()
        .map(|c| c.as_materialized_series().rechunk())
        .collect();
    let mut chunks = Vec::new();
    let mut buf = String::new();
    for row in 0..df.height() {
        for (i, s) in columns.iter().enumerate() {
            if i > 0 {
                buf.push('\t');
            }
            let value = s.get(row).map_err(|e| e.to_string())?;
            push_text(&mut buf, &value).map_err(|e| format!("column {}: {e}", s.name()))?;
        }
        buf.push('\n');
        if buf.len() >= COPY_CHUNK_BYTES {
            chunks.push(Bytes::from(std::mem::take(&mut buf)));
        }
    }
    if !buf.is_empty() {
        chunks.push(Bytes::from(buf));
    }
    Ok(chunks)
}

#[async_trait]
impl SqlExecutor for PostgresExecutor {
    async fn execute_batch(&self, sqls: &[String]) -> Result<(), WarehouseError> {
        let mut client = self.client.lock().await;
        let tx = client
            .transaction()
            .await
            .map_err(|e| connection_error("BEGIN", e))?;
        for (i, sql) in sqls.iter().enumerate() {
            let statement = translate(sql).map_err(|e| self.failed(i, e.reason.clone(), sql))?;
            match statement {
                PgStatement::Sql(pg) => tx
                    .batch_execute(&pg)
                    .await
                    .map_err(|e| self.pg_failed(i, &e, sql))?,
                PgStatement::Copy {
                    table,
                    uri,
                    manifest,
                } => {
                    let files = self
                        .copy_sources(&uri, manifest)
                        .await
                        .map_err(|e| self.failed(i, e, sql))?;
                    let sink = tx
                        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN"))
                        .await
                        .map_err(|e| self.pg_failed(i, &e, sql))?;
                    let mut sink = std::pin::pin!(sink);
                    for file in &files {
                        let body = self
                            .object(file)
                            .await
                            .map_err(|e| self.failed(i, e, sql))?;
                        let chunks = copy_text(body)
                            .map_err(|e| self.failed(i, format!("{file}: {e}"), sql))?;
                        for chunk in chunks {
                            sink.send(chunk)
                                .await
                                .map_err(|e| self.pg_failed(i, &e, sql))?;
                        }
                    }
                    let rows = sink
                        .finish()
                        .await
                        .map_err(|e| self.pg_failed(i, &e, sql))?;
                    info!(table, files = files.len(), rows, "PostgreSQL COPY");
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| self.pg_failed(sqls.len(), &e, "COMMIT"))
    }

    async fn query_i64(&self, sql: &str) -> Result<i64, WarehouseError> {
        let pg = match translate(sql).map_err(|e| self.failed(0, e.reason.clone(), sql))? {
            PgStatement::Sql(pg) => pg,
            PgStatement::Copy { .. } => {
                return Err(WarehouseError::Result {
                    sql: sql.into(),
                    detail: "a COPY returns no integer".into(),
                });
            }
        };
        let client = self.client.lock().await;
        let row = client
            .query_one(&pg, &[])
            .await
            .map_err(|e| self.pg_failed(0, &e, sql))?;
        row.try_get::<_, i64>(0)
            .map_err(|e| WarehouseError::Result {
                sql: sql.into(),
                detail: format!("expected one integer: {e}"),
            })
    }

    async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        let pg = match translate(sql).map_err(|e| self.failed(0, e.reason.clone(), sql))? {
            PgStatement::Sql(pg) => pg,
            PgStatement::Copy { .. } => return Ok(Vec::new()),
        };
        let client = self.client.lock().await;
        // The simple protocol returns every value as text.
        let messages = client
            .simple_query(&pg)
            .await
            .map_err(|e| self.pg_failed(0, &e, sql))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sent_as_exact_text() {
        let mut s = String::new();
        for (v, want) in [
            (AnyValue::Decimal(1234, 18, 2), "12.34"),
            (AnyValue::Decimal(-5, 18, 2), "-0.05"),
            (AnyValue::Decimal(7, 18, 0), "7"),
            (AnyValue::Null, "\\N"),
            (AnyValue::String("a\tb\\c\nd"), "a\\tb\\\\c\\nd"),
            (AnyValue::Date(20_413), "2025-11-21"),
            (
                AnyValue::Datetime(1_763_719_200_123_456, TimeUnit::Microseconds, None),
                "2025-11-21 10:00:00.123456",
            ),
            (AnyValue::Float64(0.1), "0.1"),
        ] {
            s.clear();
            push_text(&mut s, &v).unwrap();
            assert_eq!(s, want, "{v:?}");
        }
    }
}
