//! shoplake: a contract-driven e-commerce analytics pipeline. Daily CSV exports become a
//! quarantined, deduplicated, hive-partitioned Parquet lake.
//!
//! The library holds all logic; the Lambda binaries under `functions/` and the `lake` CLI only
//! translate events and arguments into calls here.
//!
//! The kernel (contracts, values, columns, partitions, layout, manifests, lake state, silver,
//! and the storage, catalog, notifier and warehouse ports) never imports a stage; the stages
//! (`stages::{ingest, quality, alert, aggregate, load}`) use the kernel and the engines
//! (`ingest`, `quality`, `gold`, `alert`, `warehouse`).

pub mod alert;
pub mod alloc;
pub mod aws;
pub mod catalog;
pub mod columns;
pub mod compact;
pub mod config;
pub mod contract;
pub mod error;
pub mod generate;
pub mod gold;
pub mod ingest;
pub mod layout;
pub mod manifest;
pub mod metrics;
pub mod offload;
pub mod partition;
pub mod quality;
pub mod report;
pub mod scratch;
pub mod silver;
pub mod stages;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod values;
pub mod varint;
pub mod warehouse;

pub use error::Retryable;
