//! Where everything lives in the lake (an S3 bucket or a local directory with the same keys).
//! Every key the pipeline writes is built here, so the layout is defined in one place.
//!
//! ```text
//! raw/<dataset>/…                                            bronze: the exports as delivered
//! processed/<dataset>/<k>=<v>/…/part-<batch_id>-<n>.parquet  silver: typed, deduplicated
//! quarantine/<dataset>/<batch_id>/rejected_rows.csv          rows that broke the contract
//! quarantine/<dataset>/<batch_id>/<source file name>         whole files that could not be read
//! manifests/<dataset>/<batch_id>.json                        one per ingested source object
//! manifests/<dataset>/_pending/<batch_id>.json               outputs of an ingest in progress
//! quality/<dataset>/<batch_id>.json                          the quality gate's report
//! index/<dataset>/keys-<nnn>.json                            distinct keys of a referenced parent
//! keys/<dataset>/<k>=<v>/…/<silver file name>-<size>.keys     a silver file's keys (window parents)
//! gold/daily_kpis/month=YYYY-MM/daily_kpis.parquet           gold, one object per month
//! gold/payment_methods_daily/month=YYYY-MM/….parquet         gold per payment method, the same way
//! gold/report/index.html, gold/report/month=YYYY-MM/index.html  the HTML KPI report
//! loads/<dataset>/<batch_id>/<n>.manifest                    COPY manifests of a Redshift load
//! runs/loaded/<dataset>/<batch_id>                           a batch is in the warehouse
//! runs/loaded/<dataset>/_cursor.json                          where the next load lists from
//! runs/compact/<dataset>/<digest>.json                        a compaction in progress
//! runs/compacted/<dataset>/_cursor.json                       which partitions the next compaction lists
//! runs/loaded/gold_months.json                               gold months loaded, by ETag
//! runs/aggregate/state.json                                   the nightly KPIs' watermark and state files
//! runs/aggregate/<table>-<digest>.parquet                     its first orders and tombstones
//! runs/load/<date>.json                                      a successful load of a day (SLA check)
//! alerts/…                                                   alert deduplication and digest state
//! outbox/<n>-<type>-<dataset>.txt                            alerts "sent" by the local notifier
//! catalog/<database>/<table>.json                            the local catalog
//! claims/…                                                   who is working on a batch or a stage's state
//! ```

use sha2::{Digest, Sha256};

use crate::storage::ObjectMeta;

pub const RAW: &str = "raw";
pub const PROCESSED: &str = "processed";
pub const QUARANTINE: &str = "quarantine";
pub const MANIFESTS: &str = "manifests";
pub const QUALITY: &str = "quality";
pub const ALERTS: &str = "alerts";
pub const OUTBOX: &str = "outbox";
pub const GOLD: &str = "gold";
pub const LOADS: &str = "loads";
pub const RUNS: &str = "runs";
pub const CATALOG: &str = "catalog";
pub const INDEX: &str = "index";
/// Key lists of silver files ([`crate::silver::file_keys`]).
pub const KEYS: &str = "keys";

/// One shard of a dataset's key index (see `quality::key_index`).
pub fn key_index_shard_key(dataset: &str, shard: usize) -> String {
    format!("{INDEX}/{dataset}/keys-{shard:03}.bin")
}

/// Where the batches' keys wait to be merged into a dataset's key index shards.
pub fn key_index_delta_prefix(dataset: &str) -> String {
    format!("{INDEX}/{dataset}/delta/")
}

/// One batch's keys, waiting to be merged into its dataset's key index shards; `name` is the
/// batch id and a digest of the keys (`KeyIndex::add`).
pub fn key_index_delta_key(dataset: &str, name: &str) -> String {
    format!("{}{name}.bin", key_index_delta_prefix(dataset))
}

/// Present once a dataset's key index holds every key in silver. Versioned with the index's
/// layout (binary shards and deltas since v2, shards' recent parts since v3): a lake whose index
/// predates v2 is rebuilt from silver once, one of v2 is renamed (`KeyIndex::ensure_built`). The
/// files' own format (front-coded) is read in any version, so it did not change the marker.
pub fn key_index_built_key(dataset: &str) -> String {
    format!("{INDEX}/{dataset}/_built-v3.json")
}

/// The marker of an index complete before shards had recent parts: read as complete, and
/// renamed to [`key_index_built_key`] so an older binary rebuilds rather than miss their keys.
pub fn key_index_built_key_v2(dataset: &str) -> String {
    format!("{INDEX}/{dataset}/_built-v2.json")
}

/// The recent part of a shard: keys merged since its base was last rewritten.
pub fn key_index_recent_key(dataset: &str, shard: usize) -> String {
    format!("{}{shard:03}.bin", key_index_recent_prefix(dataset))
}

/// Every shard's recent part starts with this.
pub fn key_index_recent_prefix(dataset: &str) -> String {
    format!("{INDEX}/{dataset}/recent-")
}

/// The gold KPI table and its one object per month.
pub const DAILY_KPIS: &str = "daily_kpis";
/// The gold per-payment-method table, one object per month like `daily_kpis`.
pub const PAYMENT_METHODS_DAILY: &str = "payment_methods_daily";
/// Every gold table, each `gold/<table>/month=YYYY-MM/<table>.parquet`.
pub const GOLD_TABLES: [&str; 2] = [DAILY_KPIS, PAYMENT_METHODS_DAILY];

/// The HTML report of the latest days of gold, written by the aggregate stage.
pub const REPORT_INDEX_KEY: &str = "gold/report/index.html";

/// The HTML report of one month (`YYYY-MM`).
pub fn report_month_key(month: &str) -> String {
    format!("{GOLD}/report/month={month}/index.html")
}

pub fn gold_prefix(table: &str) -> String {
    format!("{GOLD}/{table}/")
}

/// The object holding one month (`YYYY-MM`) of a gold table.
pub fn gold_month_key(table: &str, month: &str) -> String {
    format!("{GOLD}/{table}/month={month}/{table}.parquet")
}

/// The month (`YYYY-MM`) of a gold object key.
pub fn month_of_gold_key(key: &str) -> Option<&str> {
    key.split('/').find_map(|p| p.strip_prefix("month="))
}

/// A COPY manifest of one group of a batch's files.
pub fn copy_manifest_key(dataset: &str, batch_id: &str, group: usize) -> String {
    format!("{LOADS}/{dataset}/{batch_id}/{group:03}.manifest")
}

/// Present once a batch is in the warehouse (or has nothing to load).
pub fn loaded_marker_key(dataset: &str, batch_id: &str) -> String {
    format!("{RUNS}/loaded/{dataset}/{batch_id}")
}

/// The load stage's cursor over a dataset's manifests (a watermark and the batches still open),
/// beside the markers, so deleting `runs/loaded/<dataset>/` reloads the dataset from scratch.
pub fn load_cursor_key(dataset: &str) -> String {
    format!("{RUNS}/loaded/{dataset}/_cursor.json")
}

/// `lake quality`'s cursor over a dataset's manifests when it looks for batches without a
/// report (a watermark only: a run writes it after checking every batch it found).
pub fn quality_cursor_key(dataset: &str) -> String {
    format!("{RUNS}/quality/{dataset}/_cursor.json")
}

/// `lake quality`'s cursor over a dataset's manifests when it looks for verdicts the alert stage
/// never handled (a run killed between a report and its alert).
pub fn verdict_cursor_key(dataset: &str) -> String {
    format!("{RUNS}/alerted/{dataset}/_cursor.json")
}

/// The ETag of each gold month as last loaded into the warehouse.
pub const LOADED_GOLD_MONTHS_KEY: &str = "runs/loaded/gold_months.json";

/// The nightly aggregate's state: its batch watermark and the keys of its state tables.
pub const AGGREGATE_STATE_KEY: &str = "runs/aggregate/state.json";

/// Where the nightly aggregate keeps its state.
pub const AGGREGATE_STATE_PREFIX: &str = "runs/aggregate/";

/// One generation of one nightly aggregate state table (`tombstones`; `first_orders` in version
/// 1), named by a digest of what it was computed from.
pub fn aggregate_state_table_key(table: &str, digest: &str) -> String {
    format!("{AGGREGATE_STATE_PREFIX}{table}-{digest}.parquet")
}

/// Bucket `bucket` of `count` of one generation of a bucketed nightly aggregate state table
/// (`first_orders`).
pub fn aggregate_state_bucket_key(
    table: &str,
    digest: &str,
    bucket: usize,
    count: usize,
) -> String {
    format!("{AGGREGATE_STATE_PREFIX}{table}-{digest}-{bucket:05}-of-{count:05}.parquet")
}

/// Where the load stage records batches (and gold months) that failed to load.
pub const LOAD_FAILURES_PREFIX: &str = "runs/load_failures/";

pub fn load_failure_key(dataset: &str, batch_id: &str) -> String {
    format!("{LOAD_FAILURES_PREFIX}{dataset}/{batch_id}.json")
}

/// Where the load stage records each day's successful run.
pub const LOAD_RUNS_PREFIX: &str = "runs/load/";

pub const CLAIMS: &str = "claims";

/// Held while a batch is being ingested.
pub fn ingest_claim_key(dataset: &str, batch_id: &str) -> String {
    format!("{CLAIMS}/ingest/{dataset}/{batch_id}.json")
}

/// Held while a batch's quality report is written (evaluation or override).
pub fn quality_claim_key(dataset: &str, batch_id: &str) -> String {
    format!("{CLAIMS}/quality/{dataset}/{batch_id}.json")
}

/// Held while a stage reads and rewrites its run state (`alerts`, `aggregate`, `load`).
pub fn stage_claim_key(stage: &str) -> String {
    format!("{CLAIMS}/{stage}.json")
}

/// One message of the local notifier (`n` counts up, so the outbox lists in send order).
pub fn outbox_key(n: usize, alert_type: &str, dataset: &str) -> String {
    format!("{OUTBOX}/{n:05}-{alert_type}-{dataset}.txt")
}

/// A table of the local catalog.
pub fn catalog_table_key(database: &str, table: &str) -> String {
    format!("{CATALOG}/{database}/{table}.json")
}

/// When an alert with this deduplication key was last sent.
pub fn alert_sent_key(dedup_key: &str) -> String {
    format!("{ALERTS}/sent/{dedup_key}.json")
}

/// Present once the alert stage has handled a batch's quality verdict.
pub fn verdict_alerted_key(dataset: &str, batch_id: &str) -> String {
    format!("{ALERTS}/verdicts/{dataset}/{batch_id}.json")
}

/// What the arrival check has said about a dataset's export of a day (missing, late).
pub fn arrival_record_key(dataset: &str, day: &str) -> String {
    format!("{ALERTS}/arrivals/{dataset}/{day}.json")
}

/// The manifests of the batches whose source object arrived on `day` (`YYYY-MM-DD`): batch ids
/// start with the arrival time.
pub fn manifests_arrived_prefix(dataset: &str, day: &str) -> String {
    format!("{MANIFESTS}/{dataset}/{}", day.replace('-', ""))
}

/// Recent send times (storm detection) and alerts held back for a digest.
pub const ALERT_RECENT_KEY: &str = "alerts/recent.json";
pub const ALERT_DIGEST_KEY: &str = "alerts/digest.json";

/// Written by the load stage when a day's load succeeded; read by the SLA check.
pub fn load_run_key(date: &str) -> String {
    format!("{LOAD_RUNS_PREFIX}{date}.json")
}

/// The dataset named by a bronze key `raw/<dataset>/<file>`, if the key has that shape.
pub fn dataset_of_raw_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(RAW)?.strip_prefix('/')?;
    let (dataset, file) = rest.split_once('/')?;
    (!dataset.is_empty() && !file.is_empty() && !file.ends_with('/')).then_some(dataset)
}

/// The last path segment of a key.
pub fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

pub fn raw_key(dataset: &str, file_name: &str) -> String {
    format!("{RAW}/{dataset}/{file_name}")
}

/// Where a local file is staged: named by a digest of its content, so two different files of
/// the same name are two objects (two batches) and the same content is always one.
pub fn staged_raw_key(dataset: &str, content_digest: &str, file_name: &str) -> String {
    format!("{RAW}/{dataset}/{content_digest}/{file_name}")
}

/// How long silver objects live: the `processed/` lifecycle rule of infra/template.yaml
/// (`processed-365-days`). A partition dated within this many days of today is complete.
pub const SILVER_RETENTION_DAYS: i64 = 365;

pub fn processed_prefix(dataset: &str) -> String {
    format!("{PROCESSED}/{dataset}/")
}

/// A batch's silver file in one partition (one per partition, whatever the number of buckets).
pub fn silver_key(dataset: &str, partition_path: &str, batch_id: &str) -> String {
    format!("{PROCESSED}/{dataset}/{partition_path}/part-{batch_id}.parquet")
}

/// The file a compaction writes for a partition (`digest` names its inputs).
pub fn compacted_silver_key(dataset: &str, partition_path: &str, digest: &str) -> String {
    format!("{PROCESSED}/{dataset}/{partition_path}/part-compacted-{digest}.parquet")
}

/// Where a compaction records its inputs and output until it has finished.
pub fn compaction_record_prefix(dataset: &str) -> String {
    format!("{RUNS}/compact/{dataset}/")
}

/// The compaction's cursor: the manifests it has listed and the partition directories that
/// may still hold files young enough to compact (`compact::CompactCursor`).
pub fn compact_cursor_key(dataset: &str) -> String {
    format!("{RUNS}/compacted/{dataset}/_cursor.json")
}

pub fn compaction_record_key(dataset: &str, digest: &str) -> String {
    format!("{}{digest}.json", compaction_record_prefix(dataset))
}

pub fn rejected_rows_key(dataset: &str, batch_id: &str) -> String {
    format!("{QUARANTINE}/{dataset}/{batch_id}/rejected_rows.csv")
}

pub fn quarantined_source_key(dataset: &str, batch_id: &str, source_key: &str) -> String {
    format!(
        "{QUARANTINE}/{dataset}/{batch_id}/{}",
        file_name(source_key)
    )
}

pub fn manifest_prefix(dataset: &str) -> String {
    format!("{MANIFESTS}/{dataset}/")
}

pub fn manifest_key(dataset: &str, batch_id: &str) -> String {
    format!("{MANIFESTS}/{dataset}/{batch_id}.json")
}

pub fn pending_key(dataset: &str, batch_id: &str) -> String {
    format!("{MANIFESTS}/{dataset}/_pending/{batch_id}.json")
}

pub fn quality_report_key(dataset: &str, batch_id: &str) -> String {
    format!("{QUALITY}/{dataset}/{batch_id}.json")
}

/// The dataset and batch of a manifest key `manifests/<dataset>/<batch_id>.json` (not `_pending`).
pub fn parse_manifest_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(MANIFESTS)?.strip_prefix('/')?;
    let (dataset, file) = rest.split_once('/')?;
    let batch = file.strip_suffix(".json")?;
    (!dataset.is_empty() && !batch.is_empty() && !batch.contains('/')).then_some((dataset, batch))
}

/// The batch id of a source object: its modification time (sortable) and a digest of its URI
/// and ETag or version. The same object version always gets the same id, so a redelivered
/// event or a retried invocation rewrites its own outputs; a rewritten object gets a new one.
pub fn batch_id(source_uri: &str, meta: &ObjectMeta) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source_uri.as_bytes());
    hasher.update(b"\n");
    hasher.update(meta.version_id.as_deref().unwrap_or(&meta.etag).as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", meta.last_modified.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn datasets_come_from_the_raw_prefix() {
        assert_eq!(
            dataset_of_raw_key("raw/orders/2026-11-21.csv"),
            Some("orders")
        );
        assert_eq!(
            dataset_of_raw_key("raw/orders/sub/dir/x.csv.gz"),
            Some("orders")
        );
        for bad in [
            "raw/orders/",
            "raw/x.csv",
            "raw//x.csv",
            "processed/orders/x.csv",
            "rawx/orders/a.csv",
            "raw",
        ] {
            assert_eq!(dataset_of_raw_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn manifest_keys_round_trip_and_pending_records_are_not_manifests() {
        let key = manifest_key("orders", "20261121T100000Z-abc");
        assert_eq!(
            parse_manifest_key(&key),
            Some(("orders", "20261121T100000Z-abc"))
        );
        assert_eq!(parse_manifest_key(&pending_key("orders", "b")), None);
        assert_eq!(parse_manifest_key("manifests/orders/b.txt"), None);
    }

    #[test]
    fn batch_ids_are_stable_per_object_version() {
        let meta = |etag: &str| ObjectMeta {
            key: "raw/orders/a.csv".into(),
            size: 1,
            etag: etag.into(),
            version_id: None,
            last_modified: Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap(),
        };
        use chrono::Utc;
        let a = batch_id("s3://b/raw/orders/a.csv", &meta("e1"));
        assert_eq!(a, batch_id("s3://b/raw/orders/a.csv", &meta("e1")));
        assert!(a.starts_with("20261121T100000Z-") && a.len() == 29, "{a}");
        assert_ne!(a, batch_id("s3://b/raw/orders/a.csv", &meta("e2")));
        assert_ne!(a, batch_id("s3://b/raw/orders/b.csv", &meta("e1")));
    }

    #[test]
    fn silver_and_quarantine_keys() {
        assert_eq!(
            silver_key("orders", "order_date=2026-11-21/customer_region=EU", "B"),
            "processed/orders/order_date=2026-11-21/customer_region=EU/part-B.parquet"
        );
        assert_eq!(
            quarantined_source_key("orders", "B", "raw/orders/x y.csv"),
            "quarantine/orders/B/x y.csv"
        );
        let month = gold_month_key(DAILY_KPIS, "2026-11");
        assert_eq!(month, "gold/daily_kpis/month=2026-11/daily_kpis.parquet");
        assert_eq!(month_of_gold_key(&month), Some("2026-11"));
        assert_eq!(
            copy_manifest_key("orders", "B", 7),
            "loads/orders/B/007.manifest"
        );
        assert_eq!(
            outbox_key(3, "quality_fail", "orders"),
            "outbox/00003-quality_fail-orders.txt"
        );
    }
}
