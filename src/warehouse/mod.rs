//! The Redshift warehouse: SQL generated from the contracts, run through the Data API.

pub mod data_api;
pub mod loader;
pub mod sql;

pub use data_api::{DataApiExecutor, DataApiSettings, SqlExecutor, Target, WarehouseError};
pub use loader::{BatchLoad, LoadError, LoadReport, Loader};
pub use sql::{CopyGroup, Warehouse, copy_manifest};
