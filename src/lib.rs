//! shoplake: a contract-driven e-commerce analytics pipeline. Daily CSV exports become a
//! quarantined, deduplicated, hive-partitioned Parquet lake.
//!
//! The library holds all logic; the Lambda binaries under `functions/` and the `lake` CLI only
//! translate events and arguments into calls here.

pub mod alert;
pub mod aws;
pub mod catalog;
pub mod columns;
pub mod config;
pub mod contract;
pub mod generate;
pub mod gold;
pub mod handlers;
pub mod ingest;
pub mod layout;
pub mod local;
pub mod manifest;
pub mod metrics;
pub mod partition;
pub mod quality;
pub mod storage;
pub mod telemetry;
pub mod validate;
pub mod values;
pub mod warehouse;
