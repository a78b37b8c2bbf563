//! The Redshift warehouse: SQL generated from the contracts, run through the Data API.

pub mod data_api;
pub mod sql;

pub use data_api::{DataApiExecutor, DataApiSettings, SqlExecutor, Target, WarehouseError};
pub use sql::{CopyGroup, Warehouse, copy_manifest};
