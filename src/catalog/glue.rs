//! [`Catalog`] on the Glue Data Catalog through aws-sdk-glue.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, PartitionValueList, SerDeInfo, StorageDescriptor,
    TableInput,
};
use chrono::NaiveDate;
use tracing::warn;

use super::defs::{
    ColumnDef, PARQUET_INPUT_FORMAT, PARQUET_OUTPUT_FORMAT, PARQUET_SERDE, PartitionDef, TableDef,
};
use super::{Catalog, CatalogError};

/// BatchCreatePartition takes at most this many partitions per call.
pub const MAX_PARTITIONS_PER_CALL: usize = 100;
/// BatchDeletePartition takes at most this many partitions per call.
pub const MAX_PARTITIONS_PER_DELETE: usize = 25;
/// Attempts for partitions Glue reports as throttled inside a successful call.
const PARTITION_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: Client,
    database: String,
    first_backoff: Duration,
}

fn glue_error<E>(
    operation: &'static str,
    target: &str,
    err: SdkError<E, aws_sdk_glue::config::http::HttpResponse>,
) -> CatalogError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = crate::aws::is_transient(&err);
    CatalogError::Glue {
        operation,
        target: target.to_owned(),
        message: DisplayErrorContext(&err).to_string(),
        retryable,
    }
}

fn columns(defs: &[ColumnDef]) -> Vec<Column> {
    defs.iter()
        .map(|c| {
            Column::builder()
                .name(&c.name)
                .r#type(&c.hive_type)
                .build()
                .expect("name is set")
        })
        .collect()
}

fn storage(columns_: Vec<Column>, location: &str) -> StorageDescriptor {
    StorageDescriptor::builder()
        .set_columns(Some(columns_))
        .location(location)
        .input_format(PARQUET_INPUT_FORMAT)
        .output_format(PARQUET_OUTPUT_FORMAT)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(PARQUET_SERDE)
                .build(),
        )
        .build()
}

fn table_input(t: &TableDef) -> TableInput {
    TableInput::builder()
        .name(&t.name)
        .description(&t.description)
        .table_type("EXTERNAL_TABLE")
        .parameters("classification", "parquet")
        .parameters("EXTERNAL", "TRUE")
        .storage_descriptor(storage(columns(&t.columns), &t.location))
        .set_partition_keys(Some(columns(&t.partition_keys)))
        .build()
        .expect("name is set")
}

impl GlueCatalog {
    pub fn new(client: Client, database: impl Into<String>) -> Self {
        GlueCatalog {
            client,
            database: database.into(),
            first_backoff: Duration::from_millis(200),
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// [`Catalog::partitions_before`] without a server-side filter: the position of `date_key`
    /// from the table, then every partition, compared here.
    async fn partitions_before_unfiltered(
        &self,
        table: &str,
        date_key: &str,
        before: NaiveDate,
    ) -> Result<Vec<Vec<String>>, CatalogError> {
        let found = match self
            .client
            .get_table()
            .database_name(&self.database)
            .name(table)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(se)) if se.err().is_entity_not_found_exception() => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(glue_error("GetTable", table, e)),
        };
        let Some(at) = found
            .table()
            .and_then(|t| t.partition_keys().iter().position(|k| k.name() == date_key))
        else {
            return Err(CatalogError::UnknownPartitionKey {
                table: table.into(),
                key: date_key.into(),
            });
        };
        Ok(self
            .partitions(table)
            .await?
            .into_iter()
            .filter(|values| {
                values
                    .get(at)
                    .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
                    .is_some_and(|d| d < before)
            })
            .collect())
    }

    async fn ensure_database(&self) -> Result<(), CatalogError> {
        let input = DatabaseInput::builder()
            .name(&self.database)
            .description("shoplake: silver and gold tables of the e-commerce lake")
            .build()
            .expect("name is set");
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se)) if se.err().is_already_exists_exception() => Ok(()),
            Err(e) => Err(glue_error("CreateDatabase", &self.database, e)),
        }
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn ensure_tables(&self, tables: &[TableDef]) -> Result<(), CatalogError> {
        self.ensure_database().await?;
        for t in tables {
            let exists = match self
                .client
                .get_table()
                .database_name(&self.database)
                .name(&t.name)
                .send()
                .await
            {
                Ok(_) => true,
                Err(SdkError::ServiceError(se)) if se.err().is_entity_not_found_exception() => {
                    false
                }
                Err(e) => return Err(glue_error("GetTable", &t.name, e)),
            };
            if exists {
                self.client
                    .update_table()
                    .database_name(&self.database)
                    .table_input(table_input(t))
                    .send()
                    .await
                    .map_err(|e| glue_error("UpdateTable", &t.name, e))?;
            } else {
                match self
                    .client
                    .create_table()
                    .database_name(&self.database)
                    .table_input(table_input(t))
                    .send()
                    .await
                {
                    Ok(_) => {}
                    // Another instance created it in the meantime.
                    Err(SdkError::ServiceError(se)) if se.err().is_already_exists_exception() => {}
                    Err(e) => return Err(glue_error("CreateTable", &t.name, e)),
                }
            }
        }
        Ok(())
    }

    async fn add_partitions(
        &self,
        table: &str,
        partitions: &[PartitionDef],
    ) -> Result<usize, CatalogError> {
        let mut added = 0;
        for chunk in partitions.chunks(MAX_PARTITIONS_PER_CALL) {
            let mut pending: Vec<&PartitionDef> = chunk.iter().collect();
            let mut failures = Vec::new();
            for attempt in 1..=PARTITION_ATTEMPTS {
                let inputs: Vec<PartitionInput> = pending
                    .iter()
                    .map(|p| {
                        PartitionInput::builder()
                            .set_values(Some(p.values.clone()))
                            .storage_descriptor(storage(vec![], &p.location))
                            .build()
                    })
                    .collect();
                let out = self
                    .client
                    .batch_create_partition()
                    .database_name(&self.database)
                    .table_name(table)
                    .set_partition_input_list(Some(inputs))
                    .send()
                    .await
                    .map_err(|e| glue_error("BatchCreatePartition", table, e))?;
                let mut retry = Vec::new();
                failures.clear();
                let sent = pending.len();
                let mut existing = 0;
                for err in out.errors() {
                    let code = err
                        .error_detail()
                        .and_then(|d| d.error_code())
                        .unwrap_or_default();
                    let values = err.partition_values().to_vec();
                    match code {
                        "AlreadyExistsException" => existing += 1,
                        "ThrottlingException"
                        | "InternalServiceException"
                        | "ConcurrentModificationException" => {
                            if let Some(p) = pending.iter().find(|p| p.values == values) {
                                retry.push(*p);
                            }
                        }
                        _ => failures.push(format!(
                            "{}: {code} {}",
                            values.join("/"),
                            err.error_detail()
                                .and_then(|d| d.error_message())
                                .unwrap_or_default()
                        )),
                    }
                }
                added += sent - existing - retry.len() - failures.len();
                if retry.is_empty() || attempt == PARTITION_ATTEMPTS {
                    failures.extend(
                        retry
                            .iter()
                            .map(|p| format!("{}: still throttled", p.values.join("/"))),
                    );
                    break;
                }
                warn!(
                    table,
                    throttled = retry.len(),
                    attempt,
                    "Glue throttled partition registration; retrying"
                );
                tokio::time::sleep(self.first_backoff * 2u32.pow(attempt - 1)).await;
                pending = retry;
            }
            if !failures.is_empty() {
                return Err(CatalogError::Partitions {
                    table: table.into(),
                    failed: failures.len(),
                    details: failures.join("; "),
                });
            }
        }
        Ok(added)
    }

    async fn partitions(&self, table: &str) -> Result<Vec<Vec<String>>, CatalogError> {
        let mut pages = self
            .client
            .get_partitions()
            .database_name(&self.database)
            .table_name(table)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| glue_error("GetPartitions", table, e))?;
            out.extend(page.partitions().iter().map(|p| p.values().to_vec()));
        }
        out.sort();
        Ok(out)
    }

    async fn partitions_before(
        &self,
        table: &str,
        date_key: &str,
        before: NaiveDate,
    ) -> Result<Vec<Vec<String>>, CatalogError> {
        // The key goes into the expression unquoted (Glue's grammar has no identifier quoting);
        // contract partition names are plain identifiers, anything else is refused rather than
        // spliced in.
        if date_key.is_empty()
            || !date_key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(CatalogError::UnknownPartitionKey {
                table: table.into(),
                key: date_key.into(),
            });
        }
        let expression = format!("{date_key} < '{}'", before.format("%Y-%m-%d"));
        let mut pages = self
            .client
            .get_partitions()
            .database_name(&self.database)
            .table_name(table)
            .expression(&expression)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => out.extend(page.partitions().iter().map(|p| p.values().to_vec())),
                // No table (or database) yet: nothing was ever registered, nothing is old.
                Err(SdkError::ServiceError(se)) if se.err().is_entity_not_found_exception() => {
                    return Ok(Vec::new());
                }
                // Glue has been reported to refuse expressions on tables whose partition keys
                // mix types (orders: a date and a string). Rather than never sweeping, list
                // every partition and compare here: correct, but one paginated listing of the
                // whole table, which grows with the history; the warning says so.
                Err(SdkError::ServiceError(se)) if se.err().is_invalid_input_exception() => {
                    warn!(
                        table,
                        expression,
                        error = %DisplayErrorContext(se.err()),
                        "Glue refused the partition filter; listing every partition instead"
                    );
                    return self
                        .partitions_before_unfiltered(table, date_key, before)
                        .await;
                }
                Err(e) => return Err(glue_error("GetPartitions", table, e)),
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whole-call failures (throttling, 5xx) are retried by the SDK's retry configuration;
    /// failures Glue reports per partition inside a successful call are reported, not retried
    /// here: the caller (the nightly compact run) is retried whole, and deleting is idempotent.
    async fn delete_partitions(
        &self,
        table: &str,
        partitions: &[Vec<String>],
    ) -> Result<usize, CatalogError> {
        let mut removed = 0;
        let mut failures = Vec::new();
        let mut retryable = true;
        for chunk in partitions.chunks(MAX_PARTITIONS_PER_DELETE) {
            let values: Vec<PartitionValueList> = chunk
                .iter()
                .map(|v| {
                    PartitionValueList::builder()
                        .set_values(Some(v.clone()))
                        .build()
                        .expect("values are set")
                })
                .collect();
            let out = match self
                .client
                .batch_delete_partition()
                .database_name(&self.database)
                .table_name(table)
                .set_partitions_to_delete(Some(values))
                .send()
                .await
            {
                Ok(out) => out,
                // The table (or database) is gone, and its partitions with it.
                Err(SdkError::ServiceError(se)) if se.err().is_entity_not_found_exception() => {
                    break;
                }
                Err(e) => return Err(glue_error("BatchDeletePartition", table, e)),
            };
            let mut not_removed = 0;
            for err in out.errors() {
                not_removed += 1;
                let code = err
                    .error_detail()
                    .and_then(|d| d.error_code())
                    .unwrap_or_default();
                match code {
                    "EntityNotFoundException" => {}
                    _ => {
                        retryable &= matches!(
                            code,
                            "ThrottlingException"
                                | "InternalServiceException"
                                | "ConcurrentModificationException"
                                | "OperationTimeoutException"
                        );
                        failures.push(format!(
                            "{}: {code} {}",
                            err.partition_values().join("/"),
                            err.error_detail()
                                .and_then(|d| d.error_message())
                                .unwrap_or_default()
                        ));
                    }
                }
            }
            removed += chunk.len().saturating_sub(not_removed);
        }
        if !failures.is_empty() {
            warn!(
                table,
                failed = failures.len(),
                removed,
                "Glue kept partitions it was asked to delete"
            );
            return Err(CatalogError::PartitionsNotRemoved {
                table: table.into(),
                failed: failures.len(),
                details: failures.join("; "),
                retryable,
            });
        }
        Ok(removed)
    }
}
