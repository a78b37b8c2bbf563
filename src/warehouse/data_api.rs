//! Runs generated SQL on Redshift (Serverless workgroup or provisioned cluster) through the
//! Redshift Data API: one batch is one transaction; statements are polled with backoff until
//! they finish, fail or time out; transient API errors are retried.

use std::time::Duration;

use crate::error::Retryable;
use async_trait::async_trait;
use aws_sdk_redshiftdata::Client;
use aws_sdk_redshiftdata::error::DisplayErrorContext;
use aws_sdk_redshiftdata::types::{Field, StatementStatusString, StatusString};
use tracing::{info, warn};

/// Where the SQL runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Workgroup(String),
    Cluster {
        identifier: String,
        db_user: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct DataApiSettings {
    pub target: Target,
    pub database: String,
    /// Secrets Manager ARN with the database credentials (else the cluster's `db_user` or IAM).
    pub secret_arn: Option<String>,
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// Longest a statement may run before the load gives up on it.
    pub timeout: Duration,
    /// Attempts per API call when the error is transient (throttling, 5xx).
    pub attempts: u32,
}

impl DataApiSettings {
    pub fn new(target: Target, database: impl Into<String>) -> Self {
        DataApiSettings {
            target,
            database: database.into(),
            secret_arn: None,
            first_poll: Duration::from_millis(250),
            max_poll: Duration::from_secs(5),
            timeout: Duration::from_secs(15 * 60),
            attempts: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("Redshift statement {id} failed: {error}\n  statement: {statement}")]
    Failed {
        id: String,
        error: String,
        statement: String,
    },
    #[error("Redshift statement {id} was aborted")]
    Aborted { id: String },
    #[error("Redshift statement {id} did not finish within {seconds}s (last status: {status})")]
    Timeout {
        id: String,
        seconds: u64,
        status: String,
    },
    #[error("Data API {operation} failed after {attempts} attempt(s): {message}")]
    Api {
        operation: &'static str,
        attempts: u32,
        message: String,
        retryable: bool,
    },
    #[error("unexpected result of `{sql}`: {detail}")]
    Result { sql: String, detail: String },
    /// The PostgreSQL server could not be reached or the connection broke (worth a retry).
    #[error("PostgreSQL {operation} failed: {message}")]
    Postgres {
        operation: &'static str,
        message: String,
    },
}

impl Retryable for WarehouseError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            WarehouseError::Timeout { .. }
                | WarehouseError::Aborted { .. }
                | WarehouseError::Postgres { .. }
        ) || matches!(
            self,
            WarehouseError::Api {
                retryable: true,
                ..
            }
        )
    }
}

/// The warehouse port.
#[async_trait]
pub trait SqlExecutor: Send + Sync + std::fmt::Debug {
    /// Runs the statements as one transaction.
    async fn execute_batch(&self, sqls: &[String]) -> Result<(), WarehouseError>;
    /// Runs a query returning one integer (e.g. a ledger lookup).
    async fn query_i64(&self, sql: &str) -> Result<i64, WarehouseError>;
    /// Runs a query and returns its rows, every value as text (NULL as `None`); for small
    /// results such as a table's columns.
    async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError>;
}

#[derive(Debug, Clone)]
pub struct DataApiExecutor {
    client: Client,
    settings: DataApiSettings,
}

/// Runs an API call, retrying transient errors with exponential backoff.
macro_rules! with_retries {
    ($self:ident, $operation:literal, $call:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match $call.await {
                Ok(out) => break Ok(out),
                Err(e) => {
                    let retryable = crate::aws::is_transient(&e);
                    if !retryable || attempt >= $self.settings.attempts {
                        break Err(WarehouseError::Api {
                            operation: $operation,
                            attempts: attempt,
                            message: DisplayErrorContext(&e).to_string(),
                            retryable,
                        });
                    }
                    warn!(operation = $operation, attempt, error = %DisplayErrorContext(&e), "transient Data API error; retrying");
                    tokio::time::sleep($self.settings.first_poll * 2u32.pow(attempt - 1)).await;
                }
            }
        }
    }};
}

impl DataApiExecutor {
    pub fn new(client: Client, settings: DataApiSettings) -> Self {
        DataApiExecutor { client, settings }
    }

    /// Workgroup, cluster and database user, as the Data API's request fields.
    fn target_fields(&self) -> (Option<String>, Option<String>, Option<String>) {
        match &self.settings.target {
            Target::Workgroup(w) => (Some(w.clone()), None, None),
            Target::Cluster {
                identifier,
                db_user,
            } => (None, Some(identifier.clone()), db_user.clone()),
        }
    }

    /// Polls until the statement ends; returns an error for anything but FINISHED.
    async fn wait(&self, id: &str, sqls: &[String]) -> Result<(), WarehouseError> {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let mut pause = self.settings.first_poll;
        loop {
            let d = with_retries!(
                self,
                "DescribeStatement",
                self.client.describe_statement().id(id).send()
            )?;
            match d.status() {
                Some(StatusString::Finished) => return Ok(()),
                Some(StatusString::Aborted) => {
                    return Err(WarehouseError::Aborted { id: id.into() });
                }
                Some(StatusString::Failed) => {
                    // Name the statement that failed, not the whole batch.
                    let failed = d
                        .sub_statements()
                        .iter()
                        .find(|s| s.status() == Some(&StatementStatusString::Failed));
                    let statement = failed
                        .and_then(|s| s.query_string())
                        .or(d.query_string())
                        .map(str::to_owned)
                        .unwrap_or_else(|| sqls.join(";\n"));
                    let error = failed
                        .and_then(|s| s.error())
                        .or(d.error())
                        .unwrap_or("no error text")
                        .to_owned();
                    return Err(WarehouseError::Failed {
                        id: id.into(),
                        error,
                        statement,
                    });
                }
                other => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(WarehouseError::Timeout {
                            id: id.into(),
                            seconds: self.settings.timeout.as_secs(),
                            status: other
                                .map(|s| s.as_str().to_owned())
                                .unwrap_or_else(|| "unknown".into()),
                        });
                    }
                    tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
                    pause = (pause * 2).min(self.settings.max_poll);
                }
            }
        }
    }
}

#[async_trait]
impl SqlExecutor for DataApiExecutor {
    async fn execute_batch(&self, sqls: &[String]) -> Result<(), WarehouseError> {
        let s = &self.settings;
        let (workgroup, cluster, db_user) = self.target_fields();
        let out = with_retries!(
            self,
            "BatchExecuteStatement",
            self.client
                .batch_execute_statement()
                .set_sqls(Some(sqls.to_vec()))
                .database(&s.database)
                .set_workgroup_name(workgroup.clone())
                .set_cluster_identifier(cluster.clone())
                .set_db_user(db_user.clone())
                .set_secret_arn(s.secret_arn.clone())
                .send()
        )?;
        let id = out.id().unwrap_or_default().to_owned();
        info!(statement_id = %id, statements = sqls.len(), "Data API batch submitted");
        self.wait(&id, sqls).await
    }

    async fn query_i64(&self, sql: &str) -> Result<i64, WarehouseError> {
        let result = self.query(sql).await?;
        match result.records().first().and_then(|r| r.first()) {
            Some(Field::LongValue(v)) => Ok(*v),
            other => Err(WarehouseError::Result {
                sql: sql.into(),
                detail: format!("expected one integer, got {other:?}"),
            }),
        }
    }

    async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        let result = self.query(sql).await?;
        Ok(result
            .records()
            .iter()
            .map(|row| {
                row.iter()
                    .map(|f| match f {
                        Field::StringValue(v) => Some(v.clone()),
                        Field::LongValue(v) => Some(v.to_string()),
                        Field::DoubleValue(v) => Some(v.to_string()),
                        Field::BooleanValue(v) => Some(v.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .collect())
    }
}

impl DataApiExecutor {
    /// Runs one statement and fetches its result (the first page: small results only).
    async fn query(
        &self,
        sql: &str,
    ) -> Result<
        aws_sdk_redshiftdata::operation::get_statement_result::GetStatementResultOutput,
        WarehouseError,
    > {
        let s = &self.settings;
        let (workgroup, cluster, db_user) = self.target_fields();
        let out = with_retries!(
            self,
            "ExecuteStatement",
            self.client
                .execute_statement()
                .sql(sql)
                .database(&s.database)
                .set_workgroup_name(workgroup.clone())
                .set_cluster_identifier(cluster.clone())
                .set_db_user(db_user.clone())
                .set_secret_arn(s.secret_arn.clone())
                .send()
        )?;
        let id = out.id().unwrap_or_default().to_owned();
        self.wait(&id, &[sql.to_owned()]).await?;
        with_retries!(
            self,
            "GetStatementResult",
            self.client.get_statement_result().id(&id).send()
        )
    }
}
