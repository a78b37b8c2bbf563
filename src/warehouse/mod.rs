//! The Redshift warehouse: SQL generated from the contracts.

pub mod sql;

pub use sql::{CopyGroup, Warehouse, copy_manifest};
