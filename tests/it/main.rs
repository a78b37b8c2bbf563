//! Integration tests, in one binary so polars and the AWS SDKs are linked once.
//! AWS paths run against a real moto server on 127.0.0.1 that the harness starts and stops.

mod support;

mod browser;
mod byte_identical;
mod catalog;
mod chaos;
mod chaos_processes;
mod compaction;
mod data_api_faults;
mod glue_faults;
mod gold_local;
mod gold_methods;
mod hostile_input;
mod incremental_kpis;
mod infra;
mod ingest_local;
mod ingest_s3;
mod lake_on_s3;
mod load_redshift;
mod load_watermark;
mod memory_bound;
mod new_dataset;
mod notifier_conformance;
mod notifier_faults;
mod properties;
mod quality_alert;
mod quality_bounded;
mod report;
mod sample_events;
mod store_conformance;
mod warehouse_postgres;
