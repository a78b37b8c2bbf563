//! The warehouse port: Redshift SQL generated from the contracts (`sql`), run through the Data
//! API (`data_api`), on PostgreSQL through one documented translation (`postgres`, `translate`)
//! or only recorded (`recording`). The stage that loads is `stages::load`.

pub mod data_api;
pub mod postgres;
pub mod recording;
pub mod sql;
pub mod translate;

pub use data_api::{DataApiExecutor, DataApiSettings, SqlExecutor, Target, WarehouseError};
pub use postgres::PostgresExecutor;
pub use recording::RecordingExecutor;
pub use sql::{CopyGroup, ExistingColumn, SchemaChangeError, Warehouse, copy_manifest};
