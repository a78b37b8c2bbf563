//! The aggregate stage on any object store: `daily_kpis` and `payment_methods_daily` from silver
//! with polars, the months that changed, and the report pages.
//!
//! The scheduled run is incremental ([`crate::gold::incremental`]): it lists the manifests
//! after its watermark, recomputes only the days their batches changed from those days'
//! partitions and its own state, and merges those days into their gold months. Its first run
//! (no state yet) and `{"full": true}` recompute everything and rebuild the state; a range
//! backfill recomputes everything and writes the range's months, leaving the state alone. Both
//! recompute every day a group of days at a time ([`Full`]), so they need the memory of a
//! night, not of all of silver. Silver in S3 is downloaded into a local work directory (by day
//! for a night, whole for a full recompute; kept across warm Lambda invocations, so only new
//! files are downloaded); a local lake is read in place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use polars::prelude::DataFrame;
use serde::Serialize;
use tracing::info;

use super::nightly::{self, FirstOrdersOut, RunState, SeenCursor, StoreFirstOrders, StoreSilver};
use super::request::AggregateRequest;
use crate::catalog::{self, Catalog, CatalogError};
use crate::contract::Registry;
use crate::error::Retryable;
use crate::gold::full::{Full, NoFirstOrders};
use crate::gold::incremental::{self, FirstOrderBuckets, KpiState, Night, Nightly};
use crate::gold::{self, GoldError, KpiContracts, kpis};
use crate::layout;
use crate::report::{self, ReportError};
use crate::silver::read::scan_dataset;
use crate::state::{LakeState, StateError};
use crate::storage::{ObjectStore, StorageError, root_uri};

/// How long a claim on the aggregate run lasts (longer than an invocation may run).
const RUN_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(16 * 60);

#[derive(Debug, Clone, Serialize)]
pub struct AggregateReport {
    /// Rows recomputed: the changed days' rows in a nightly run, every row otherwise.
    pub kpi_rows: usize,
    pub months_written: Vec<String>,
    pub new_batches: usize,
    /// Keys of the HTML reports written (`gold/report/…`).
    pub reports_written: Vec<String>,
    /// `nightly` (the changed days only), `full` (everything, state rebuilt) or `backfill`
    /// (everything, the range's months written).
    pub mode: String,
}

/// What one of the two ways of computing produced.
struct Computed {
    kpi_rows: usize,
    new_batches: usize,
    months_written: Vec<String>,
    method_months: Vec<String>,
    kpis: DataFrame,
    methods: DataFrame,
    mode: &'static str,
    /// The state to write once everything else is written.
    save: Option<StateToSave>,
    /// The state kept as it was (nothing new).
    keep: Option<RunState>,
}

struct StateToSave {
    previous: Option<RunState>,
    cursors: BTreeMap<String, SeenCursor>,
    first_orders: FirstOrdersOut,
    kpi: KpiState,
}

const KPI_KEYS: [&str; 3] = ["kpi_date", "customer_region", "currency"];
const METHOD_KEYS: [&str; 4] = ["kpi_date", "customer_region", "currency", "payment_method"];

/// A run's report and the gold tables it computed (what `lake` prints).
#[derive(Debug, Clone)]
pub struct AggregateRun {
    pub report: AggregateReport,
    pub kpis: DataFrame,
    /// `payment_methods_daily`, for every day of silver.
    pub methods: DataFrame,
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Gold(#[from] GoldError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("the KPIs read dataset `{0}`, which has no contract here; add contracts/{0}.toml")]
    MissingInput(String),
    #[error("the KPI computation stopped unexpectedly")]
    Worker,
    #[error("writing the KPI report: {0}")]
    Report(#[from] ReportError),
}

impl Retryable for AggregateError {
    fn is_retryable(&self) -> bool {
        match self {
            AggregateError::Storage(e) => e.is_retryable(),
            AggregateError::State(e) => e.is_retryable(),
            AggregateError::Catalog(e) => e.is_retryable(),
            AggregateError::Gold(GoldError::Storage(e)) => e.is_retryable(),
            AggregateError::Worker => true,
            AggregateError::Report(e) => e.is_retryable(),
            AggregateError::Gold(GoldError::Polars(_)) | AggregateError::MissingInput(_) => false,
        }
    }
}

/// Computes `daily_kpis` and `payment_methods_daily` from all the silver under `root` at once,
/// on a thread of its own (polars is CPU-bound and blocks, so it must not run on, or need, the
/// async runtime's threads). Only for contracts whose payments reference orders without a
/// window: then no day bounds where a payment's order (its region) lies, and neither the
/// nightly run nor [`Full`] can recompute a day on its own.
async fn kpis_from_local_silver(
    root: PathBuf,
    contracts: KpiContracts,
    with_state: bool,
) -> Result<(DataFrame, DataFrame, Option<(DataFrame, KpiState)>), AggregateError> {
    crate::offload::on_own_thread(move || {
        type Out = (DataFrame, DataFrame, Option<(DataFrame, KpiState)>);
        let compute = || -> Result<Out, GoldError> {
            let (order_columns, payment_columns) = incremental::kpi_columns(&contracts);
            let orders = scan_dataset(&root, &contracts.orders)?.select(order_columns);
            let payments = scan_dataset(&root, &contracts.payments)?.select(payment_columns);
            let kpis = gold::daily_kpis(orders.clone(), payments.clone(), &contracts)?;
            let methods =
                gold::payment_methods_daily(orders.clone(), payments.clone(), &contracts)?;
            let state = with_state
                .then(|| KpiState::from_full(&contracts, orders, payments))
                .transpose()?;
            Ok((kpis, methods, state))
        };
        compute().map_err(AggregateError::from)
    })
    .await
    .unwrap_or(Err(AggregateError::Worker))
}

#[derive(Debug, Clone)]
pub struct Aggregator {
    store: Arc<dyn ObjectStore>,
    state: LakeState,
    registry: Arc<Registry>,
    work_dir: PathBuf,
    catalog: Option<Arc<dyn Catalog>>,
    group_bytes: u64,
    bucket_customers: usize,
    delta_share: usize,
}

impl Aggregator {
    /// `work_dir` holds the silver mirror (e.g. `/tmp/silver`) when the store is not local.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        registry: Arc<Registry>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        Aggregator {
            state: LakeState::new(store.clone()),
            store,
            registry,
            work_dir: work_dir.into(),
            catalog: None,
            group_bytes: incremental::group_bytes(super::config::DEFAULT_MEMORY_BUDGET_BYTES),
            bucket_customers: incremental::BUCKET_CUSTOMERS,
            delta_share: incremental::DELTA_SHARE,
        }
    }

    /// Keeps at most about `customers` customers per bucket of the first-order state (default
    /// [`incremental::BUCKET_CUSTOMERS`]; small in tests, to exercise many buckets).
    pub fn with_bucket_customers(mut self, customers: usize) -> Self {
        self.bucket_customers = customers.max(1);
        self
    }

    /// Folds a first-order bucket's delta into its base once `delta rows × share > base rows`
    /// (default [`incremental::DELTA_SHARE`]; in tests `usize::MAX` folds every changed
    /// bucket and 0 never folds one).
    pub fn with_delta_share(mut self, share: usize) -> Self {
        self.delta_share = share;
        self
    }

    /// Recomputes a night's days in groups of at most `bytes` of silver on disk (default: from
    /// [`super::config::DEFAULT_MEMORY_BUDGET_BYTES`]; see [`incremental::group_bytes`]).
    pub fn with_group_bytes(mut self, bytes: u64) -> Self {
        self.group_bytes = bytes;
        self
    }

    /// Registers written months as partitions of `daily_kpis`.
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Makes the local mirror of `processed/<dataset>/` equal to the store's.
    async fn mirror(&self, dataset: &str) -> Result<(), AggregateError> {
        let prefix = layout::processed_prefix(dataset);
        Ok(nightly::mirror_prefix(&self.store, &self.work_dir, &prefix).await?)
    }

    /// Where the KPIs read silver from: the lake itself when it is a local directory, else a
    /// mirror in the work directory.
    async fn silver_root(&self) -> Result<PathBuf, AggregateError> {
        if let Some(root) = self.store.local_root() {
            return Ok(root.to_owned());
        }
        for dataset in kpis::INPUTS {
            self.mirror(dataset).await?;
        }
        Ok(self.work_dir.clone())
    }

    /// Computes the KPIs and writes the months the request calls for. One run at a time: a
    /// second waits for the first, so the run state is never read by two and written by both.
    pub async fn aggregate(
        &self,
        request: AggregateRequest,
    ) -> Result<AggregateRun, AggregateError> {
        self.aggregate_at(request, chrono::Utc::now()).await
    }

    /// `aggregate` at `now`, which decides the day the reports mark as partial (today, UTC).
    pub async fn aggregate_at(
        &self,
        request: AggregateRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AggregateRun, AggregateError> {
        self.state
            .with_claim(
                &layout::stage_claim_key("aggregate"),
                RUN_CLAIM_TTL,
                RUN_CLAIM_TTL,
                async || self.aggregate_claimed(request, now).await,
            )
            .await
    }

    /// Writes `gold/report/index.html` (the last days of gold) and the page of every month in
    /// `months`. Links to quality reports are relative, so they work wherever the lake is
    /// served or copied from. Returns the keys written.
    async fn write_reports(
        &self,
        kpis: &DataFrame,
        methods: &DataFrame,
        months: &BTreeSet<String>,
        today: chrono::NaiveDate,
    ) -> Result<Vec<String>, AggregateError> {
        let kpi_rows = report::kpi_rows(kpis)?;
        let method_rows = report::method_rows(methods)?;
        let Some((from, to)) = report::index_range(&kpi_rows) else {
            return Ok(Vec::new());
        };
        let mut pages = vec![(
            layout::REPORT_INDEX_KEY.to_owned(),
            format!("Daily KPIs: the last {} days", report::INDEX_DAYS),
            from,
            to,
        )];
        for month in months {
            if let Some((from, to)) = report::month_range(month) {
                pages.push((
                    layout::report_month_key(month),
                    format!("Daily KPIs: {month}"),
                    from,
                    to,
                ));
            }
        }
        let since = pages.iter().map(|p| p.2).min().unwrap_or(from);
        let batches = report::lake_batches(&self.state, &self.registry, since).await?;
        let mut written = Vec::new();
        for (key, title, from, to) in pages {
            let up = "../".repeat(key.matches('/').count());
            let href = move |k: &str| format!("{up}{k}");
            let shown = report::period_batches(&batches, from, to, &href);
            let input = report::input_for(title, from, to, today, &kpi_rows, &method_rows, shown);
            let html = report::render(&input)?;
            self.store.put(&key, html.into()).await?;
            written.push(key);
        }
        Ok(written)
    }

    fn contracts(&self) -> Result<KpiContracts, AggregateError> {
        let [orders, payments] = kpis::INPUTS.map(|d| {
            self.registry
                .get(d)
                .cloned()
                .ok_or_else(|| AggregateError::MissingInput(d.to_owned()))
        });
        Ok(KpiContracts {
            orders: orders?,
            payments: payments?,
        })
    }

    /// Advances every input's batch cursor: the new batch ids per dataset, and the cursors
    /// that have seen them.
    async fn new_batches(
        &self,
        previous: Option<&RunState>,
    ) -> Result<(BTreeMap<String, Vec<String>>, BTreeMap<String, SeenCursor>), AggregateError> {
        let mut new = BTreeMap::new();
        let mut cursors = BTreeMap::new();
        for dataset in kpis::INPUTS {
            let cursor = previous
                .and_then(|p| p.cursors.get(dataset))
                .cloned()
                .unwrap_or_default();
            let (ids, next) = cursor.advance(self.store.as_ref(), dataset).await?;
            new.insert(dataset.to_owned(), ids);
            cursors.insert(dataset.to_owned(), next);
        }
        Ok((new, cursors))
    }

    /// Everything from all of silver: `Full` and a first scheduled run also rebuild the state.
    /// `current` is the state in place, if any: the rebuilt one is named after it too, so a
    /// rebuild with nothing new since the last never writes over the objects it names.
    async fn recompute_all(
        &self,
        contracts: KpiContracts,
        request: AggregateRequest,
        current: Option<RunState>,
    ) -> Result<Computed, AggregateError> {
        let rebuild = !matches!(request, AggregateRequest::Range { .. });
        // Listed before silver is read: a batch landing meanwhile is left for the next run.
        let (new, cursors) = self.new_batches(None).await?;
        let (kpis, methods, state) = if contracts.window_days().is_some() {
            self.recompute_all_by_days(&contracts, rebuild, current.as_ref(), &cursors)
                .await?
        } else {
            let root = self.silver_root().await?;
            let (kpis, methods, state) = kpis_from_local_silver(root, contracts, rebuild).await?;
            let state = state.map(|(table, kpi)| (FirstOrdersOut::Table(table), kpi));
            (kpis, methods, state)
        };
        let keep: Box<dyn Fn(&str) -> bool + Send + Sync> = match request {
            AggregateRequest::Range { from, to } => {
                let (lo, hi) = (
                    from.format("%Y-%m").to_string(),
                    to.format("%Y-%m").to_string(),
                );
                Box::new(move |m| m >= lo.as_str() && m <= hi.as_str())
            }
            AggregateRequest::Scheduled {} | AggregateRequest::Full {} => Box::new(|_| true),
        };
        let months_written = gold::write_months(self.store.as_ref(), &kpis, &keep).await?;
        let method_months = gold::write_table_months(
            self.store.as_ref(),
            layout::PAYMENT_METHODS_DAILY,
            &methods,
            &keep,
        )
        .await?;
        let save = state.map(|(first_orders, kpi)| StateToSave {
            previous: current,
            cursors,
            first_orders,
            kpi,
        });
        Ok(Computed {
            kpi_rows: kpis.height(),
            new_batches: new.values().map(Vec::len).sum(),
            months_written,
            method_months,
            kpis,
            methods,
            mode: if rebuild { "full" } else { "backfill" },
            save,
            keep: None,
        })
    }

    /// Every day of silver recomputed as a night recomputes its days, a group at a time
    /// ([`Full`]); with `rebuild`, the first-order state is written under the generation the
    /// state after the run takes (that of `current` and `cursors`).
    async fn recompute_all_by_days(
        &self,
        contracts: &KpiContracts,
        rebuild: bool,
        current: Option<&RunState>,
        cursors: &BTreeMap<String, SeenCursor>,
    ) -> Result<(DataFrame, DataFrame, Option<(FirstOrdersOut, KpiState)>), AggregateError> {
        let _reuse = crate::alloc::ReuseFreedMemory::new(crate::alloc::Keep::NIGHTLY_KPIS);
        let source = StoreSilver::new(self.store.clone(), self.work_dir.clone());
        // Every day is read: each dataset downloaded after one listing, not a listing per day.
        for contract in [&contracts.orders, &contracts.payments] {
            source.mirror_all(contract).await?;
        }
        let buckets = rebuild.then(|| {
            StoreFirstOrders::new(
                self.store.clone(),
                nightly::BucketKeys::default(),
                nightly::generation(current, cursors),
            )
        });
        let first_orders: &dyn FirstOrderBuckets = match &buckets {
            Some(buckets) => buckets,
            None => &NoFirstOrders,
        };
        let result = Full {
            source: &source,
            contracts,
            first_orders,
            bucket_customers: self.bucket_customers,
            group_bytes: self.group_bytes,
            work_dir: &self.work_dir,
        }
        .run()
        .await?;
        info!(
            days = result.dates.len(),
            moved_keys = result.moved_keys,
            "every day recomputed"
        );
        let state = match buckets {
            Some(buckets) => Some((FirstOrdersOut::Written(buckets.keys()?), result.state)),
            None => None,
        };
        Ok((result.kpis, result.methods, state))
    }

    /// The scheduled run with a state: only the days the new batches changed.
    async fn recompute_night(
        &self,
        contracts: KpiContracts,
        previous: RunState,
        kpi: KpiState,
    ) -> Result<Computed, AggregateError> {
        // Reads a few hundred small files over and over: keep what it frees (`crate::alloc`).
        let _reuse = crate::alloc::ReuseFreedMemory::new(crate::alloc::Keep::NIGHTLY_KPIS);
        let (new, cursors) = self.new_batches(Some(&previous)).await?;
        let mut night = Night::default();
        for (dataset, ids) in &new {
            let date = self
                .registry
                .get(dataset)
                .and_then(|c| c.window_partition())
                .map(|p| p.name.clone());
            let mut touched = BTreeSet::new();
            let mut files = Vec::new();
            for batch in ids {
                let Some(m) = self.state.manifest(dataset, batch).await? else {
                    continue;
                };
                files.extend(m.files.iter().map(|f| f.key.clone()));
                for p in &m.partitions {
                    if let Some(day) = date.as_ref().and_then(|d| p.values.get(d)) {
                        touched.extend(day.parse::<chrono::NaiveDate>().ok());
                    }
                }
            }
            night
                .new_batches
                .insert(dataset.clone(), ids.iter().cloned().collect());
            night.touched.insert(dataset.clone(), touched);
            night.files.insert(dataset.clone(), files);
        }
        let new_batches = new.values().map(Vec::len).sum();
        let source = StoreSilver::new(self.store.clone(), self.work_dir.clone());
        let buckets = StoreFirstOrders::new(
            self.store.clone(),
            nightly::BucketKeys::of(&previous),
            nightly::generation(Some(&previous), &cursors),
        );
        let result = Nightly {
            source: &source,
            contracts: &contracts,
            state: &kpi,
            first_orders: &buckets,
            bucket_customers: self.bucket_customers,
            delta_share: self.delta_share,
            group_bytes: self.group_bytes,
        }
        .run(&night)
        .await?;
        let months_written = gold::merge_days(
            self.store.as_ref(),
            layout::DAILY_KPIS,
            &result.kpis,
            &result.dates,
            &KPI_KEYS,
        )
        .await?;
        let method_months = gold::merge_days(
            self.store.as_ref(),
            layout::PAYMENT_METHODS_DAILY,
            &result.methods,
            &result.dates,
            &METHOD_KEYS,
        )
        .await?;
        let (save, keep) = if new_batches > 0 {
            let save = StateToSave {
                previous: Some(previous),
                cursors,
                first_orders: FirstOrdersOut::Written(buckets.keys()?),
                kpi: result.state.clone(),
            };
            (Some(save), None)
        } else {
            (None, Some(previous))
        };
        info!(
            days = result.dates.len(),
            moved_keys = result.moved_keys,
            searched_customers = result.searched_customers,
            "nightly days recomputed"
        );
        // What the report pages and `lake` show: the months written and the last days.
        let mut shown: BTreeSet<String> = months_written.iter().cloned().collect();
        if let Some(last) = result.dates.last() {
            for d in [*last, *last - chrono::Duration::days(report::INDEX_DAYS)] {
                shown.insert(d.format("%Y-%m").to_string());
            }
        }
        let read = |table: &'static str, like: &DataFrame| {
            let shown = shown.clone();
            let empty = like.head(Some(0));
            async move {
                Ok::<_, AggregateError>(
                    gold::read_months(self.store.as_ref(), table, &shown)
                        .await?
                        .unwrap_or(empty),
                )
            }
        };
        let kpis = read(layout::DAILY_KPIS, &result.kpis).await?;
        let methods = read(layout::PAYMENT_METHODS_DAILY, &result.methods).await?;
        Ok(Computed {
            kpi_rows: result.kpis.height(),
            new_batches,
            months_written,
            method_months,
            kpis,
            methods,
            mode: "nightly",
            save,
            keep,
        })
    }

    async fn aggregate_claimed(
        &self,
        request: AggregateRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AggregateRun, AggregateError> {
        let contracts = self.contracts()?;
        let previous = nightly::load_state(&self.state).await?;
        let computed = match (request, previous) {
            (AggregateRequest::Scheduled {}, Some((run, kpi)))
                if contracts.window_days().is_some() =>
            {
                self.recompute_night(contracts, run, kpi).await?
            }
            (request, previous) => {
                self.recompute_all(contracts, request, previous.map(|(run, _)| run))
                    .await?
            }
        };
        let Computed {
            kpi_rows,
            new_batches,
            months_written,
            method_months,
            kpis,
            methods,
            mode,
            save,
            keep,
        } = computed;
        if let Some(cat) = &self.catalog {
            let root = root_uri(self.store.as_ref());
            cat.ensure_tables(&catalog::gold_tables(&root)).await?;
            for (table, months) in [
                (layout::DAILY_KPIS, &months_written),
                (layout::PAYMENT_METHODS_DAILY, &method_months),
            ] {
                let parts: Vec<_> = months
                    .iter()
                    .map(|m| catalog::gold_month_partition(table, m, &root))
                    .collect();
                cat.add_partitions(table, &parts).await?;
            }
        }
        let months: BTreeSet<String> = months_written
            .iter()
            .chain(&method_months)
            .cloned()
            .collect();
        let reports_written = self
            .write_reports(&kpis, &methods, &months, now.date_naive())
            .await?;
        // Only now: if writing gold, the catalog or the reports failed, the next run sees these
        // batches again and redoes all of it.
        if let Some(StateToSave {
            previous,
            cursors,
            first_orders,
            kpi,
        }) = save
        {
            nightly::save_state(
                &self.state,
                previous.as_ref(),
                cursors,
                first_orders,
                &kpi,
                self.bucket_customers,
            )
            .await?;
        }
        if let Some(run) = keep {
            // A run that died between its pointer and its clean-up left the old tables.
            nightly::prune(&self.state, &run).await?;
        }
        info!(
            mode,
            kpi_rows,
            method_rows = methods.height(),
            months = ?months_written,
            new_batches,
            reports = reports_written.len(),
            "daily KPIs aggregated"
        );
        Ok(AggregateRun {
            report: AggregateReport {
                kpi_rows,
                months_written,
                new_batches,
                reports_written,
                mode: mode.to_owned(),
            },
            kpis,
            methods,
        })
    }
}
