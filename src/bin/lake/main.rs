//! `lake`: the pipeline on a local directory laid out like the bucket, no AWS needed. Every
//! command calls the same stage services as the Lambdas (`shoplake::stages`), with local
//! adapters: the directory as the object store, JSON files as the catalog, `outbox/` as SNS,
//! a recording SQL executor for `load --dry-run`.

mod present;
mod warehouse_load;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoplake::alert::{Notifier, OutboxNotifier, SnsNotifier};
use shoplake::catalog::{Catalog, GlueCatalog, LocalCatalog};
use shoplake::contract::Registry;
use shoplake::generate::{GenerateOptions, generate};
use shoplake::ingest::ReadProgress;
use shoplake::layout;
use shoplake::manifest::{BatchStatus, BatchSummary};
use shoplake::quality::{CheckStatus, QualityReport};
use shoplake::report;
use shoplake::stages::aggregate::{AggregateRequest, Aggregator, nightly_group_bytes};
use shoplake::stages::alert::config::ALERT_TOPIC_ARN;
use shoplake::stages::alert::{AlertRequest, AlertService, AlertSettings};
use shoplake::stages::compact::{CompactRequest, CompactService};
use shoplake::stages::ingest::{IngestRequest, IngestService, config::ingest_settings_from_env};
use shoplake::stages::load::{BatchLoad, LoadRequest, Loader};
use shoplake::stages::quality::QualityService;
use shoplake::stages::{Stage, StoreFactory};
use shoplake::state::LakeState;
use shoplake::storage::{LocalStore, ObjectStore, PrefixedStore, S3Store};
use shoplake::warehouse::{RecordingExecutor, Warehouse};

/// `lake quality`'s exit code when a batch failed its gate and will not be loaded.
const QUALITY_FAILED_EXIT: u8 = 3;

/// The bucket name local stores answer to (the lake directory is the whole store).
const LOCAL_BUCKET: &str = "lake";
/// The local catalog's database (`catalog/shoplake/<table>.json`).
const LOCAL_DATABASE: &str = "shoplake";
/// What a command that registers partitions skips without a catalog.
const NOT_REGISTERED: &str = "new partitions are not registered in Glue";

/// One example per command, shown by `lake --help`.
const EXAMPLES: &str = "\
Examples:
  lake generate --out exports --days 7 --defect-rate 0.05
  lake ingest --lake lake --dataset orders exports/orders.csv
  lake quality --lake lake
  lake aggregate --lake lake --from 2026-11-01 --to 2026-11-30
  lake report --lake lake --out report.html
  lake load --lake lake --dry-run
  lake run --lake lake exports
  lake show --lake lake
  lake compact --lake lake --dataset orders

Every command prints a short summary; --json prints JSON instead (schemas in README.md).";

#[derive(Parser)]
#[command(
    name = "lake",
    version,
    about = "Contract-driven e-commerce lake, run locally",
    after_help = EXAMPLES
)]
struct Cli {
    /// Directory of `*.toml` data contracts to use instead of the built-in ones (default:
    /// LAKE_CONTRACTS_DIR, else the contracts built into `lake`).
    #[arg(long, global = true, value_name = "DIR")]
    contracts: Option<PathBuf>,
    /// Print JSON for machines instead of the text summary (one object per line; the schema of
    /// each command is in README.md).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write customers.csv, orders.csv and payments.csv with realistic values (and defects).
    Generate {
        /// Directory to write the three CSV files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// How many customers.
        #[arg(long, default_value_t = 1_000)]
        customers: usize,
        /// How many orders (payments follow from them).
        #[arg(long, default_value_t = 5_000)]
        orders: usize,
        /// Random seed: the same seed and options give the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of rows (0 to 1) given a defect, duplicate or newer version.
        #[arg(long, default_value_t = 0.0)]
        defect_rate: f64,
        /// Last day of the export window, YYYY-MM-DD (default: yesterday, UTC: a daily export
        /// covers finished days).
        #[arg(long)]
        end_date: Option<NaiveDate>,
        /// How many days the export window spans, ending at --end-date.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Ingest CSV exports of one dataset into the lake directory; a line per file
    Ingest {
        /// The lake directory (laid out like the bucket; created if missing).
        #[arg(long)]
        lake: PathBuf,
        /// The dataset the files hold: a contract name (customers, orders, payments, …).
        #[arg(long)]
        dataset: String,
        /// Re-process files whose batch was ingested before.
        #[arg(long)]
        force: bool,
        /// Memory budget per file in MiB (default: LAKE_MEMORY_BUDGET_MB, else 512).
        #[arg(long, value_parser = budget_mib())]
        memory_budget_mb: Option<usize>,
        /// CSV or CSV.gz exports to ingest, each its own batch.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check batches against their quality rules; alerts go to outbox/ in the lake.
    ///
    /// Exits 0 when every batch checked passed or warned (or failed but was overridden), and 3
    /// when any failed and will not be loaded, so a script can gate on it (1 is an error).
    Quality {
        /// The lake directory.
        #[arg(long)]
        lake: PathBuf,
        /// Check this batch (default: every batch without a report yet).
        #[arg(long)]
        batch: Option<String>,
        /// Let a failed batch be loaded anyway; needs --batch, --by and --reason.
        #[arg(long, requires_all = ["batch", "by", "reason"])]
        r#override: bool,
        /// Who overrides (recorded in the report), with --override.
        #[arg(long)]
        by: Option<String>,
        /// Why the batch may be loaded anyway (recorded in the report), with --override.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Compute gold (daily_kpis, payment_methods_daily, the HTML report) from silver
    ///
    /// Without a range, what the nightly schedule does: only the days the batches since the last
    /// run changed are recomputed (the first run recomputes everything), and the last --days
    /// days are printed. With --from/--to, those dates' months are rewritten from all of silver
    /// and the range is printed day by day with its totals; --full recomputes every month.
    Aggregate {
        /// The lake directory.
        #[arg(long)]
        lake: PathBuf,
        /// Backfill: rewrite months from this date's month on.
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Backfill: rewrite months up to this date's month.
        #[arg(long)]
        to: Option<NaiveDate>,
        /// Recompute every month from all of silver and rebuild the nightly state (first
        /// orders, tombstones, batch watermark); without it and --from/--to, only the days the
        /// new batches changed are recomputed, as the scheduled Lambda does.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        full: bool,
        /// How many recent days to print (without --from/--to).
        #[arg(long, default_value_t = 3)]
        days: usize,
        /// Memory budget in MiB that sizes the groups of days a nightly run recomputes at once
        /// (default: LAKE_MEMORY_BUDGET_MB, else 40% of AWS_LAMBDA_FUNCTION_MEMORY_SIZE, else 1024).
        #[arg(long, value_parser = budget_mib())]
        memory_budget_mb: Option<usize>,
    },
    /// Load every gated batch and the changed gold months into the warehouse
    ///
    /// Into a PostgreSQL database (`--postgres URL`: the very statements the load function sends
    /// to Redshift, through one translation), or `--dry-run` to print that SQL.
    Load {
        /// The lake directory.
        #[arg(long)]
        lake: PathBuf,
        /// Print the statements instead of running them; writes nothing to the lake.
        #[arg(long)]
        dry_run: bool,
        /// Load into this PostgreSQL (15+) database, e.g. postgresql://user@127.0.0.1:5432/db:
        /// the same loader and statements as Redshift, through src/warehouse/translate.rs.
        #[arg(long, conflicts_with = "dry_run")]
        postgres: Option<String>,
        /// Retry a batch (or gold month) that failed to load: its attempts start again. A gold
        /// month is named with its table (daily_kpis/2026-11, payment_methods_daily/2026-11);
        /// any id may be given as DATASET/BATCH.
        #[arg(long, value_name = "BATCH", requires = "postgres")]
        retry: Option<String>,
        /// Never load a batch (or gold month, as TABLE/YYYY-MM) that failed to load; needs --by
        /// and --reason.
        #[arg(long, value_name = "BATCH", requires_all = ["by", "reason"], conflicts_with_all = ["retry", "dry_run"])]
        skip: Option<String>,
        /// Who decided to skip the batch (recorded with it).
        #[arg(long, requires = "skip")]
        by: Option<String>,
        /// Why the batch is skipped (recorded with it).
        #[arg(long, requires = "skip")]
        reason: Option<String>,
        /// Warehouse schema the statements name.
        #[arg(long, default_value = "shoplake")]
        schema: String,
        /// IAM role the COPY statements name.
        #[arg(
            long,
            default_value = "arn:aws:iam::000000000000:role/shoplake-redshift-copy"
        )]
        copy_role_arn: String,
    },
    /// The whole pipeline locally: ingest, quality, aggregate (with the report)
    ///
    /// Ingests every export in INPUT_DIR (dataset from the file name, e.g. orders*.csv), checks
    /// quality, aggregates, prints recent KPIs and the path of the HTML report.
    Run {
        /// The lake directory (created if missing).
        #[arg(long)]
        lake: PathBuf,
        /// Directory of exports; each file's dataset is the contract name it starts with.
        input_dir: PathBuf,
        /// How many recent days of KPIs to print.
        #[arg(long, default_value_t = 3)]
        days: usize,
    },
    /// Write the HTML KPI report of a range of days of gold to a file
    ///
    /// Charts, totals against the previous period, the quality verdicts of the period's batches
    /// and the gold rows; self-contained (nothing fetched when it is opened).
    Report {
        /// The lake directory (laid out like the bucket).
        #[arg(long)]
        lake: PathBuf,
        /// First day, YYYY-MM-DD (default: 29 days before --to, at most back to gold's first day).
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last day, YYYY-MM-DD (default: the latest day in gold).
        #[arg(long)]
        to: Option<NaiveDate>,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print batches, the silver partition tree and sample quarantined rows.
    Show {
        /// The lake directory.
        #[arg(long)]
        lake: PathBuf,
        /// How many quarantined rows to show per batch.
        #[arg(long, default_value_t = 3)]
        rejects: usize,
    },
    /// Rewrite partitions that gathered many small files into one latest-wins file each
    /// (files written in the last 31 days; older ones keep their own expiry)
    ///
    /// Only files of batches already in the warehouse (and earlier compacted files) take part;
    /// a killed run is finished by the next one, and readers see every row once meanwhile.
    /// Then, as the nightly function does, catalog partitions dated before the silver retention
    /// whose files are gone are removed (the directory's catalog; on S3 Glue's GLUE_DATABASE).
    Compact {
        /// The lake directory, or s3://bucket[/prefix].
        #[arg(long)]
        lake: PathBuf,
        /// Compact this dataset (default: every dataset).
        #[arg(long)]
        dataset: Option<String>,
        /// Leave partitions with fewer eligible files than this alone.
        #[arg(long, default_value_t = 8)]
        min_files: usize,
        /// Also compact a partition of two or more files once none came for this many hours.
        #[arg(long, default_value_t = shoplake::compact::SETTLE_HOURS)]
        settle_hours: u32,
        /// The run's time (RFC 3339, default: the clock): which files are young enough to take,
        /// which partitions have settled, which catalog partitions have expired. For replaying
        /// a night, or simulated nights whose files carry their night's time (bench-history).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Aggregate { .. } | Command::Run { .. }) {
        // The aggregate's scan settings, as its Lambda has them in its environment.
        // SAFETY: no other thread has started yet (the runtime is built below).
        unsafe { shoplake::gold::scans::set_scan_env() };
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(cli_main(cli)),
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn cli_main(cli: Cli) -> ExitCode {
    shoplake::telemetry::init_cli();
    shoplake::alloc::limit_arenas();
    match run(cli).await {
        Ok(code) => code,
        // A closed pipe (`lake … | head`) is the reader's choice, not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on stderr while stderr is a terminal; hidden (drawing nothing) otherwise.
fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A spinner with `message` on stderr while stderr is a terminal; hidden otherwise.
fn spinner(message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A memory budget flag: a positive number of MiB, at most 1 TiB (so its bytes fit).
fn budget_mib() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1 << 20)
}

/// Writes one line to stdout, reporting a closed pipe as an error instead of panicking.
fn emit(line: impl std::fmt::Display) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")
}

/// A local lake: the directory as the object store of every stage.
struct Lake {
    store: Arc<dyn ObjectStore>,
    /// The directory, when the lake is one (`--lake DIR`).
    local: Option<Arc<LocalStore>>,
    /// The AWS configuration, when the lake is a bucket (`--lake s3://bucket[/prefix]`).
    aws: Option<aws_config::SdkConfig>,
    registry: Arc<Registry>,
}

/// Where `--lake` points: a directory, or a bucket (and prefix) on S3.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// A location as given; anything that looks like a URL but is not `s3://bucket[/prefix]` is
    /// an error, never a directory of that name.
    fn parse(given: &Path) -> anyhow::Result<Location> {
        let Some(text) = given.to_str() else {
            return Ok(Location::Dir(given.to_owned()));
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(
                !bucket.is_empty(),
                "--lake {text}: name the bucket, as s3://bucket or s3://bucket/prefix"
            );
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let scheme = text.split_once(':').map(|(s, _)| s).filter(|s| {
            s.len() > 1
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        });
        if let Some(scheme) = scheme
            && (text.contains("://") || scheme.eq_ignore_ascii_case("s3"))
        {
            anyhow::bail!(
                "--lake {text}: only a directory or s3://bucket[/prefix] can hold a lake ({scheme}: is not supported)"
            );
        }
        Ok(Location::Dir(given.to_owned()))
    }
}

impl Lake {
    async fn open(given: &Path, registry: Arc<Registry>) -> anyhow::Result<Self> {
        let lake = match Location::parse(given)? {
            Location::Dir(dir) => {
                let local = Arc::new(
                    LocalStore::new(&dir)
                        .with_context(|| format!("opening lake {}", dir.display()))?,
                );
                Lake {
                    store: local.clone(),
                    local: Some(local),
                    aws: None,
                    registry,
                }
            }
            Location::S3 { bucket, prefix } => {
                // The standard AWS configuration: credentials, AWS_REGION, AWS_ENDPOINT_URL.
                let sdk = shoplake::aws::sdk_config().await;
                let s3: Arc<dyn ObjectStore> =
                    Arc::new(S3Store::new(shoplake::aws::s3_client(&sdk), &bucket));
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    s3
                } else {
                    Arc::new(PrefixedStore::new(s3, &prefix)?)
                };
                Lake {
                    store,
                    local: None,
                    aws: Some(sdk),
                    registry,
                }
            }
        };
        // Claims left by killed runs would otherwise wait for their family's next claim.
        LakeState::new(lake.store.clone())
            .sweep_claims(&format!("{}/", layout::CLAIMS))
            .await?;
        Ok(lake)
    }

    fn stores(&self) -> StoreFactory {
        let store = self.store.clone();
        Arc::new(move |_| store.clone() as Arc<dyn ObjectStore>)
    }

    /// The directory's JSON catalog; on S3 the Glue database named by GLUE_DATABASE (as the
    /// functions are configured), else none (then what `skipped` says is not done, on stderr).
    fn catalog(&self, skipped: &str) -> Option<Arc<dyn Catalog>> {
        match &self.aws {
            None => Some(Arc::new(LocalCatalog::new(
                self.store.clone(),
                LOCAL_DATABASE,
            ))),
            Some(sdk) => match std::env::var(shoplake::config::GLUE_DATABASE) {
                Ok(database) if !database.is_empty() => Some(Arc::new(GlueCatalog::new(
                    shoplake::aws::glue_client(sdk),
                    database,
                ))),
                _ => {
                    eprintln!(
                        "lake: {} is not set: {skipped}",
                        shoplake::config::GLUE_DATABASE
                    );
                    None
                }
            },
        }
    }

    fn ingest(&self, settings: shoplake::ingest::IngestSettings) -> IngestService {
        let service = IngestService::new(self.stores(), self.registry.clone(), settings);
        match self.catalog(NOT_REGISTERED) {
            Some(catalog) => service.with_catalog(catalog),
            None => service,
        }
    }

    fn quality(&self) -> QualityService {
        QualityService::new(self.stores(), self.registry.clone())
    }

    /// Alerts go to outbox/ in the lake; on S3 to the SNS topic ALERT_TOPIC_ARN names when set
    /// (as the alert function sends them), else to outbox/ in the bucket.
    fn alerts(&self) -> AlertService {
        let notifier: Arc<dyn Notifier> = match (&self.aws, std::env::var(ALERT_TOPIC_ARN)) {
            (Some(sdk), Ok(topic)) if !topic.is_empty() => {
                Arc::new(SnsNotifier::new(shoplake::aws::sns_client(sdk), topic))
            }
            _ => Arc::new(OutboxNotifier::new(self.store.clone())),
        };
        AlertService::new(self.store.clone(), notifier, AlertSettings::default())
            .with_registry(self.registry.clone())
    }

    /// The aggregate stage on this lake, its nightly groups sized by `memory_budget_mb`, else
    /// by the environment as the Lambda's are (`LAKE_MEMORY_BUDGET_MB`, the Lambda's memory).
    fn aggregator(&self, memory_budget_mb: Option<usize>) -> anyhow::Result<Aggregator> {
        let group_bytes = match memory_budget_mb {
            Some(mb) => shoplake::gold::incremental::group_bytes(mb * 1024 * 1024),
            None => nightly_group_bytes(|name| std::env::var(name).ok())?,
        };
        // A local lake is read in place; the work directory is only for a mirror of S3.
        let aggregator = Aggregator::new(
            self.store.clone(),
            self.registry.clone(),
            std::env::temp_dir(),
        )
        .with_group_bytes(group_bytes);
        Ok(match self.catalog(NOT_REGISTERED) {
            Some(catalog) => aggregator.with_catalog(catalog),
            None => aggregator,
        })
    }

    /// Brings `file` into `raw/<dataset>/` (unless it is there already) and ingests it.
    async fn ingest_file(
        &self,
        service: &IngestService,
        dataset: &str,
        file: &Path,
    ) -> anyhow::Result<shoplake::ingest::IngestOutcome> {
        let key = match &self.local {
            Some(local) => stage_into_raw(local, dataset, file)?,
            None => self.upload_into_raw(dataset, file).await?,
        };
        let mut outcomes = service
            .ingest(IngestRequest::object(LOCAL_BUCKET, &key))
            .await?;
        Ok(outcomes.remove(0))
    }

    /// The key of `file` in a bucket lake: an `s3://` URI of an object already under
    /// `raw/<dataset>/` of this lake is ingested where it is (re-ingesting a raw object); a local
    /// file is uploaded to `raw/<dataset>/<content digest>/<name>` first, as `lake` stages it
    /// into a directory.
    async fn upload_into_raw(&self, dataset: &str, file: &Path) -> anyhow::Result<String> {
        let text = file.to_string_lossy();
        if text.starts_with("s3://") {
            let lake_root = shoplake::storage::root_uri(self.store.as_ref());
            let root = format!("{lake_root}/");
            let key = text
                .strip_prefix(root.as_str())
                .map(str::to_owned)
                .with_context(|| format!("{text} is not in this lake ({})", lake_root))?;
            anyhow::ensure!(
                layout::dataset_of_raw_key(&key) == Some(dataset),
                "{text} is in the lake but not under raw/{dataset}/"
            );
            anyhow::ensure!(
                self.store.head(&key).await?.is_some(),
                "{text} does not exist"
            );
            return Ok(key);
        }
        let md = std::fs::metadata(file).with_context(|| file.display().to_string())?;
        anyhow::ensure!(
            md.is_file(),
            shoplake::storage::StorageError::NotAFile {
                path: file.display().to_string()
            }
        );
        let digest = file_digest(file)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "export.csv".into());
        let key = layout::staged_raw_key(dataset, &digest, &name);
        // The same content staged before is the same object (and so the same batch).
        if self.store.head(&key).await?.is_none() {
            self.store.put_file(&key, file).await?;
        }
        Ok(key)
    }

    /// Checks `batch` (or every batch without a report) and sends the alerts the verdicts
    /// call for to `outbox/`, as the quality and alert functions do in AWS. Returns each
    /// report with the text of the emails it caused.
    async fn check(
        &self,
        batch: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<(QualityReport, Vec<String>)>> {
        let quality = self.quality();
        let reports = match batch {
            Some(b) => vec![quality.check_batch(LOCAL_BUCKET, b, now).await?],
            None => {
                // A run killed after a report and before its alert left a verdict unsent.
                let mut reports = quality.unalerted_reports(LOCAL_BUCKET).await?;
                reports.extend(quality.check_unchecked(LOCAL_BUCKET, now).await?);
                reports
            }
        };
        let alerts = self.alerts();
        let mut out = Vec::new();
        for report in reports {
            let before = self.store.list(&format!("{}/", layout::OUTBOX)).await?;
            alerts
                .handle_all(vec![AlertRequest::Quality(Box::new(report.clone()))], now)
                .await?;
            let mut emails = Vec::new();
            for meta in self.store.list(&format!("{}/", layout::OUTBOX)).await? {
                if !before.iter().any(|b| b.key == meta.key)
                    && let Some(text) = self.store.get(&meta.key).await?
                {
                    emails.push(String::from_utf8_lossy(&text).into_owned());
                }
            }
            out.push((report, emails));
        }
        Ok(out)
    }
}

/// The key of `file` in the lake: itself when it is already under `raw/<dataset>/`, else a
/// copy staged under `raw/<dataset>/<content digest>/<name>` (so two different files of the same
/// name are two batches, and the same file staged twice, even at once, is one).
fn stage_into_raw(store: &LocalStore, dataset: &str, file: &Path) -> anyhow::Result<String> {
    if let Some(key) = store.key_of(file) {
        anyhow::ensure!(
            layout::dataset_of_raw_key(&key) == Some(dataset),
            "{} is inside the lake but not under raw/{dataset}/",
            file.display()
        );
        let md = std::fs::metadata(file).with_context(|| file.display().to_string())?;
        anyhow::ensure!(
            md.is_file(),
            shoplake::storage::StorageError::NotAFile {
                path: file.display().to_string()
            }
        );
        return Ok(key);
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "export.csv".into());
    Ok(store.import(file, |digest| {
        layout::staged_raw_key(dataset, digest, &name)
    })?)
}

/// The first 8 bytes of a file's SHA-256, in hex: how staged exports are told apart.
fn file_digest(file: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| file.display().to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What `lake report` wrote.
#[derive(serde::Serialize)]
struct ReportSummary {
    out: String,
    from: NaiveDate,
    to: NaiveDate,
    kpi_rows: usize,
    method_rows: usize,
    batches: usize,
}

/// Writes the HTML report of `from..=to` of the lake's gold to `out`. Quality reports are linked
/// by their `file://` URI, so the page works wherever it is written.
async fn write_report(
    lake: &Lake,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    out: &Path,
) -> anyhow::Result<ReportSummary> {
    let kpis =
        report::kpi_rows(&report::read_gold(lake.store.as_ref(), layout::DAILY_KPIS).await?)?;
    let methods = report::method_rows(
        &report::read_gold(lake.store.as_ref(), layout::PAYMENT_METHODS_DAILY).await?,
    )?;
    let (from, to) = match (from, to) {
        (from, Some(to)) => (
            from.unwrap_or(to - chrono::TimeDelta::days(report::INDEX_DAYS - 1)),
            to,
        ),
        (from, None) => {
            let (first, to) = report::index_range(&kpis)
                .context("gold has no daily_kpis yet: run `lake aggregate` first, or give --to")?;
            (from.unwrap_or(first), to)
        }
    };
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let store = lake.store.clone();
    let href = move |key: &str| store.uri(key);
    let state = LakeState::new(lake.store.clone());
    let batches = report::period_batches(
        &report::lake_batches(&state, &lake.registry, from).await?,
        from,
        to,
        &href,
    );
    let input = report::input_for(
        format!("Daily KPIs: {from} to {to}"),
        from,
        to,
        chrono::Utc::now().date_naive(),
        &kpis,
        &methods,
        batches,
    );
    let html = report::render(&input)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, html).with_context(|| format!("writing {}", out.display()))?;
    let in_range = |d: NaiveDate| d >= from && d <= to;
    Ok(ReportSummary {
        out: out.display().to_string(),
        from,
        to,
        kpi_rows: input.kpis.iter().filter(|r| in_range(r.kpi_date)).count(),
        method_rows: input
            .methods
            .iter()
            .filter(|r| in_range(r.kpi_date))
            .count(),
        batches: input.batches.len(),
    })
}

/// The dataset an export belongs to by its file name: the longest dataset name it starts with.
fn dataset_of_file<'r>(registry: &'r Registry, file: &Path) -> Option<&'r str> {
    let name = file.file_name()?.to_str()?;
    registry
        .names()
        .filter(|d| name.starts_with(d))
        .max_by_key(|d| d.len())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(match &cli.contracts {
        Some(dir) => Registry::from_dir(dir)?,
        None => Registry::from_env()?,
    });
    let json = cli.json;
    match cli.command {
        Command::Generate {
            out,
            customers,
            orders,
            seed,
            defect_rate,
            end_date,
            days,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&defect_rate),
                "--defect-rate must be between 0 and 1"
            );
            let end_date = end_date
                .unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Duration::days(1));
            let opts = GenerateOptions {
                customers,
                orders,
                seed,
                defect_rate,
                end_date,
                days,
            };
            for file in
                generate(&out, &opts).with_context(|| format!("writing to {}", out.display()))?
            {
                if json {
                    emit(serde_json::to_string(&file)?)?;
                } else {
                    let e = &file.expected;
                    emit(format!(
                        "wrote {:<9} {}: {} row(s); expect {} written, {} rejected, {} duplicate(s)",
                        file.dataset,
                        file.path.display(),
                        e.rows,
                        e.written,
                        e.rejected,
                        e.duplicates
                    ))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            lake,
            dataset,
            force,
            memory_budget_mb,
            files,
        } => {
            anyhow::ensure!(
                registry.get(&dataset).is_some(),
                "unknown dataset `{dataset}` (known: {})",
                registry.known()
            );
            let lake = Lake::open(&lake, registry).await?;
            let mut settings = ingest_settings_from_env()?;
            settings.force = force;
            if let Some(mb) = memory_budget_mb {
                settings.memory_budget_bytes = mb * 1024 * 1024;
            }
            // Bytes read of all the files, with throughput, while stderr is a terminal.
            let sizes: Vec<u64> = files
                .iter()
                .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
                .collect();
            let bar = progress_bar(
                sizes.iter().sum(),
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            );
            let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
            {
                let (bar, done) = (bar.clone(), done.clone());
                settings.progress = Some(ReadProgress(Arc::new(move |read, _| {
                    bar.set_position(done.load(std::sync::atomic::Ordering::Relaxed) + read);
                })));
            }
            let service = lake.ingest(settings);
            let mut failed = false;
            for (file, size) in files.iter().zip(&sizes) {
                bar.set_message(format!("ingest {dataset}"));
                let outcome = lake.ingest_file(&service, &dataset, file).await;
                done.fetch_add(*size, std::sync::atomic::Ordering::Relaxed);
                bar.set_position(done.load(std::sync::atomic::Ordering::Relaxed));
                match outcome {
                    Ok(o) => {
                        let summary = BatchSummary::new(&o.manifest, o.replayed);
                        bar.suspend(|| -> std::io::Result<()> {
                            if json {
                                emit(serde_json::to_string(&summary)?)
                            } else {
                                emit(present::batch_line(&summary))
                            }
                        })?;
                        if o.manifest.status == BatchStatus::Rejected {
                            failed = true;
                            eprintln!(
                                "error: {} rejected whole: {} (quarantined as {})",
                                file.display(),
                                o.manifest.error.as_deref().unwrap_or("unknown reason"),
                                o.manifest.quarantined_source.as_deref().unwrap_or("-")
                            );
                        }
                    }
                    Err(e) => {
                        failed = true;
                        bar.suspend(|| eprintln!("error: {}: {e:#}", file.display()));
                    }
                }
            }
            bar.finish_and_clear();
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Quality {
            lake,
            batch,
            r#override,
            by,
            reason,
        } => {
            let lake = Lake::open(&lake, registry).await?;
            let now = chrono::Utc::now();
            if r#override {
                let (batch, by, reason) = (
                    batch.unwrap_or_default(),
                    by.unwrap_or_default(),
                    reason.unwrap_or_default(),
                );
                let report = lake
                    .quality()
                    .override_batch(LOCAL_BUCKET, &batch, &by, &reason, now)
                    .await?;
                if json {
                    emit(serde_json::to_string(&report)?)?;
                    return Ok(ExitCode::SUCCESS);
                }
                emit(format!(
                    "{} {} {}: overridden by {by}; loadable: {}",
                    report.verdict.label(),
                    report.dataset,
                    report.batch_id,
                    report.loadable
                ))?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut held_back = false;
            for (r, emails) in lake.check(batch.as_deref(), now).await? {
                held_back |= !r.loadable;
                if json {
                    emit(serde_json::to_string(&r)?)?;
                    continue;
                }
                emit(format!(
                    "{:<4} {:<9} {}  {}",
                    r.verdict.label(),
                    r.dataset,
                    r.batch_id,
                    r.summary
                ))?;
                for c in r.checks.iter().filter(|c| c.status != CheckStatus::Pass) {
                    emit(format!(
                        "       {:<7} {:<40} {:<28} {}",
                        format!("{:?}", c.status).to_lowercase(),
                        c.display_name(),
                        c.observed_text,
                        c.threshold
                    ))?;
                }
                for email in &emails {
                    emit(format!(
                        "\n  --- alert email (outbox) ---\n  {}\n",
                        email.trim_end().replace('\n', "\n  ")
                    ))?;
                }
            }
            Ok(if held_back {
                ExitCode::from(QUALITY_FAILED_EXIT)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Aggregate {
            lake,
            from,
            to,
            full,
            days,
            memory_budget_mb,
        } => {
            let lake = Lake::open(&lake, registry).await?;
            let request = match (from, to) {
                (None, None) if full => AggregateRequest::Full {},
                (None, None) => AggregateRequest::Scheduled {},
                (from, to) => AggregateRequest::Range {
                    from: from.unwrap_or(NaiveDate::MIN),
                    to: to.unwrap_or(NaiveDate::MAX),
                },
            };
            let spinner = spinner("aggregate: computing gold from silver");
            let run = lake.aggregator(memory_budget_mb)?.aggregate(request).await;
            spinner.finish_and_clear();
            let run = run?;
            let rows = report::kpi_rows(&run.kpis)?;
            // The range asked for (within the days gold has), else the last `days` days.
            let mut dates: Vec<NaiveDate> = rows.iter().map(|r| r.kpi_date).collect();
            dates.sort_unstable();
            dates.dedup();
            let (lo, hi) = match request {
                AggregateRequest::Range { from, to } => (
                    from.max(dates.first().copied().unwrap_or(from)),
                    to.min(dates.last().copied().unwrap_or(to)),
                ),
                AggregateRequest::Scheduled {} | AggregateRequest::Full {} => (
                    dates
                        .get(dates.len().saturating_sub(days))
                        .copied()
                        .unwrap_or(NaiveDate::MAX),
                    dates.last().copied().unwrap_or(NaiveDate::MIN),
                ),
            };
            let totals =
                present::Totals::of(rows.iter().filter(|r| r.kpi_date >= lo && r.kpi_date <= hi));
            if json {
                emit(serde_json::to_string(&serde_json::json!({
                    "report": &run.report,
                    "from": (lo <= hi).then_some(lo),
                    "to": (lo <= hi).then_some(hi),
                    "totals": totals,
                }))?)?;
                return Ok(ExitCode::SUCCESS);
            }
            emit(format!(
                "gold/daily_kpis: {} row(s); months written: {}; report: {}",
                run.report.kpi_rows,
                if run.report.months_written.is_empty() {
                    "none".to_owned()
                } else {
                    run.report.months_written.join(", ")
                },
                run.report
                    .reports_written
                    .first()
                    .map_or("none".into(), |k| lake.store.uri(k))
            ))?;
            match request {
                AggregateRequest::Range { from, to } => {
                    emit(present::range_kpis(&rows, from, to, lo, hi, &totals))?
                }
                AggregateRequest::Scheduled {} | AggregateRequest::Full {} => {
                    emit(present::recent_kpis(&run.kpis, days)?)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            lake,
            dry_run,
            postgres,
            retry,
            skip,
            by,
            reason,
            schema,
            copy_role_arn,
        } => {
            anyhow::ensure!(
                dry_run || postgres.is_some() || skip.is_some(),
                "give --postgres URL to load into a PostgreSQL database, or --dry-run to print the SQL the load function would send"
            );
            let lake = Lake::open(&lake, registry.clone()).await?;
            let warehouse = Warehouse {
                schema,
                copy_role_arn,
            };
            if postgres.is_some() || skip.is_some() {
                let operator = match (retry, skip) {
                    (Some(batch_id), _) => Some(LoadRequest::Retry { batch_id }),
                    (None, Some(batch_id)) => Some(LoadRequest::Skip {
                        batch_id,
                        by: by.unwrap_or_default(),
                        reason: reason.unwrap_or_default(),
                    }),
                    (None, None) => None,
                };
                let (store, alerts) = (lake.store.clone(), lake.alerts());
                return warehouse_load::run(
                    store, registry, warehouse, postgres, operator, alerts, json,
                )
                .await;
            }
            let executor = Arc::new(RecordingExecutor::new());
            let loader =
                Loader::new(lake.store.clone(), executor.clone(), warehouse, registry).dry_run();
            let spinner = spinner("load: planning the warehouse statements");
            let report = loader.run(LoadRequest::Pending, chrono::Utc::now()).await;
            spinner.finish_and_clear();
            let report = report?;
            if json {
                emit(serde_json::to_string(&serde_json::json!({
                    "report": &report,
                    "transactions": executor.batches(),
                }))?)?;
                return Ok(ExitCode::SUCCESS);
            }
            for (i, batch) in executor.batches().iter().enumerate() {
                emit(format!("-- transaction {}", i + 1))?;
                for sql in batch {
                    emit(format!("{sql};"))?;
                }
            }
            for b in &report.batches {
                emit(format!("-- {}", serde_json::to_string(b)?))?;
            }
            let loaded = report
                .batches
                .iter()
                .filter(|b| matches!(b, BatchLoad::Loaded { .. }))
                .count();
            emit(format!(
                "-- dry run: {loaded} batch(es) to load, {} skipped, {} gold month(s) to replace, {} transaction(s); nothing was written",
                report.batches.len() - loaded,
                report.months.len(),
                executor.batches().len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            lake,
            input_dir,
            days,
        } => {
            let lake = Lake::open(&lake, registry.clone()).await?;
            let service = lake.ingest(ingest_settings_from_env()?);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&input_dir)
                .with_context(|| format!("reading {}", input_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let mut failed = false;
            let mut ingested = Vec::new();
            // Parents first, so references resolve in the quality gate.
            for contract in registry.load_order() {
                let dataset = contract.name.as_str();
                for file in files
                    .iter()
                    .filter(|f| dataset_of_file(&registry, f) == Some(dataset))
                {
                    match lake.ingest_file(&service, dataset, file).await {
                        Ok(o) => {
                            let m = &o.manifest;
                            ingested.push(BatchSummary::new(m, o.replayed));
                            if json {
                                continue;
                            }
                            emit(format!(
                                "ingest  {dataset:<9} {:<40} read {:>7} written {:>7} rejected {:>6} duplicates {:>5}{}",
                                file.file_name()
                                    .and_then(|n| n.to_str())
                                    .unwrap_or_default(),
                                m.rows_read,
                                m.rows_written,
                                m.rows_rejected,
                                m.duplicates_dropped,
                                m.error
                                    .as_deref()
                                    .map(|e| format!("  REJECTED: {e}"))
                                    .unwrap_or_default()
                            ))?;
                        }
                        Err(e) => {
                            failed = true;
                            eprintln!("error: {}: {e:#}", file.display());
                        }
                    }
                }
            }
            let mut verdicts = Vec::new();
            for (r, _) in lake.check(None, chrono::Utc::now()).await? {
                verdicts.push(serde_json::json!({
                    "dataset": r.dataset,
                    "batch_id": r.batch_id,
                    "verdict": r.verdict,
                    "loadable": r.loadable,
                    "summary": r.summary,
                }));
                if json {
                    continue;
                }
                emit(format!(
                    "quality {:<9} {} {:<4} {}",
                    r.dataset,
                    r.batch_id,
                    r.verdict.label(),
                    r.summary
                ))?;
            }
            let run = lake
                .aggregator(None)?
                .aggregate(AggregateRequest::Scheduled {})
                .await?;
            if json {
                emit(serde_json::to_string(&serde_json::json!({
                    "ingested": ingested,
                    "quality": verdicts,
                    "aggregate": &run.report,
                }))?)?;
                return Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            emit(format!(
                "\ngold/daily_kpis: {} row(s) in month(s) {}; the last {days} day(s):",
                run.report.kpi_rows,
                run.report.months_written.join(", ")
            ))?;
            emit(present::recent_kpis(&run.kpis, days)?)?;
            if let Some(key) = run.report.reports_written.first() {
                emit(format!("\nreport: {}", lake.store.uri(key)))?;
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Report {
            lake,
            from,
            to,
            out,
        } => {
            let lake = Lake::open(&lake, registry.clone()).await?;
            let summary = write_report(&lake, from, to, &out).await?;
            if json {
                emit(serde_json::to_string(&summary)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            emit(format!(
                "wrote {}: {} to {}, {} daily_kpis row(s), {} payment_methods_daily row(s), {} batch verdict(s)",
                out.display(),
                summary.from,
                summary.to,
                summary.kpi_rows,
                summary.method_rows,
                summary.batches
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact {
            lake,
            dataset,
            min_files,
            settle_hours,
            at,
        } => {
            let lake = Lake::open(&lake, registry.clone()).await?;
            // The compact function's service: compaction, then the catalog's expired partitions.
            let service = CompactService::new(
                lake.store.clone(),
                registry.clone(),
                min_files,
                settle_hours,
            );
            let service = match lake.catalog("expired partitions are not removed from Glue") {
                Some(catalog) => service.with_catalog(catalog),
                None => service,
            };
            let request = match dataset {
                Some(d) => CompactRequest::Dataset(d),
                None => CompactRequest::All,
            };
            let now = at.unwrap_or_else(chrono::Utc::now);
            let response = service.handle(request, now).await?;
            for d in response.datasets {
                let report = d.report;
                if json {
                    emit(serde_json::to_string(&serde_json::json!({
                        "dataset": d.dataset,
                        "report": report,
                        "expired_partitions": d.expired_partitions,
                        "index_merge": d.index_merge,
                    }))?)?;
                } else {
                    emit(format!(
                        "{}: {} partition(s) compacted, {} file(s) into {}, {} row(s) kept of {}{}{}{}",
                        d.dataset,
                        report.partitions,
                        report.files_in,
                        report.partitions,
                        report.rows_out,
                        report.rows_in,
                        match report.resumed {
                            0 => String::new(),
                            n => format!("; {n} interrupted run(s) finished"),
                        },
                        match d.expired_partitions {
                            None => String::new(),
                            Some(e) => format!(
                                "; {} catalog partition(s) dated before {} removed{}",
                                e.removed,
                                e.before,
                                match e.waiting {
                                    0 => String::new(),
                                    n =>
                                        format!(", {n} kept until their later-written files expire"),
                                }
                            ),
                        },
                        match d.index_merge {
                            Some(m) if m.deltas > 0 => format!(
                                "; {} batch(es) of keys merged into the key index ({} shard(s) written, {} folded into their base)",
                                m.deltas, m.shards_written, m.shards_folded
                            ),
                            _ => String::new(),
                        }
                    ))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { lake, rejects } => {
            let lake = Lake::open(&lake, registry.clone()).await?;
            let state = LakeState::new(lake.store.clone());
            if json {
                for m in present::all_manifests(&state, &registry).await? {
                    emit(serde_json::to_string(&BatchSummary::new(&m, false))?)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            write!(
                std::io::stdout().lock(),
                "{}",
                present::overview(&state, &registry, rejects).await?
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of `cmd` and its subcommands (clap's own help and version aside) without
    /// help text, and every subcommand without a description; also counts the arguments seen.
    fn undocumented(cmd: &clap::Command, path: &str, seen: &mut usize, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            *seen += 1;
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                out.push(format!("{path} {id}"));
            }
        }
        // clap's own `help` subcommand only mirrors the others.
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            if sub.get_about().is_none() {
                out.push(format!("{path} {}: no description", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), seen, out);
        }
    }

    #[test]
    fn every_argument_of_every_command_has_help() {
        let mut cmd = Cli::command();
        cmd.build();
        let (mut seen, mut missing) = (0, Vec::new());
        undocumented(&cmd, "lake", &mut seen, &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        assert!(seen > 30, "the walk saw {seen} arguments");

        // The walk finds what it is meant to find.
        let mut bad = clap::Command::new("x")
            .arg(
                clap::Arg::new("documented")
                    .long("documented")
                    .help("Has help."),
            )
            .subcommand(clap::Command::new("sub").arg(clap::Arg::new("bare").long("bare")));
        bad.build();
        let (mut seen, mut missing) = (0, Vec::new());
        undocumented(&bad, "x", &mut seen, &mut missing);
        assert_eq!(missing, ["x sub: no description", "x sub bare"]);
    }

    #[test]
    fn lake_help_lists_every_command_with_an_example() {
        let mut cmd = Cli::command();
        let help = cmd.render_long_help().to_string();
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .filter(|n| n != "help")
            .collect();
        assert_eq!(names.len(), 9, "{names:?}");
        for name in names {
            let example = format!("lake {name} ");
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(&example)),
                "no example of `{name}` in:\n{help}"
            );
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{name} "))),
                "`{name}` not listed in:\n{help}"
            );
        }
    }

    #[test]
    fn every_command_takes_json() {
        for args in [
            &["lake", "generate", "--out", "x", "--json"][..],
            &["lake", "--json", "show", "--lake", "x"],
            &["lake", "report", "--lake", "x", "--out", "y", "--json"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert!(cli.json, "{args:?}");
        }
    }
}
