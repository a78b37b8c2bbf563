//! The quality gate's I/O: reads a batch's manifest, the manifests of earlier batches and the
//! keys in silver, runs the checks, and writes the report. Used by the `quality` Lambda (on
//! manifest arrival) and by `lake quality`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures_util::stream::{self, StreamExt};
use tracing::info;

use super::checks::{self, Facts, ReferenceFacts};
use super::key_index::{KeyIndex, KeyIndexError};
use super::report::{MAX_OFFENDING_KEYS, Override, QualityReport, REPORT_VERSION};
use crate::contract::{Contract, Registry};
use crate::error::Retryable;
use crate::layout;
use crate::manifest::{BatchStatus, Manifest};
use crate::partition::parse_partition_path;
use crate::silver::file_keys;
use crate::silver::read::{self, ReadError};
use crate::state::{BatchCursor, LakeState, StateError, batch_time, manifests_from};
use crate::storage::{self, ObjectStore, StorageError};
use crate::values;

/// The checks' sets of keys: probed once per parent row read (a 32-day window of orders is
/// about a million rows), where std's SipHash was a cost of its own.
type Set<T> = HashSet<T, foldhash::fast::RandomState>;

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("no manifest {key}: the batch was never ingested (or not under this name)")]
    ManifestMissing { key: String },
    #[error("no quality report {key}: evaluate the batch first")]
    ReportMissing { key: String },
    #[error("{key} is not a quality gate input: expected manifests/<dataset>/<batch_id>.json")]
    NotAManifest { key: String },
    #[error("no data contract for dataset `{0}`")]
    UnknownDataset(String),
    #[error("no batch {0} in the lake (see `lake show`)")]
    UnknownBatch(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    KeyIndex(#[from] KeyIndexError),
}

impl Retryable for QualityError {
    fn is_retryable(&self) -> bool {
        match self {
            QualityError::State(e) => e.is_retryable(),
            QualityError::Read(e) => e.is_retryable(),
            QualityError::Storage(e) => e.is_retryable(),
            QualityError::KeyIndex(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What the checks read of one of a batch's silver files: its date (the value of its date
/// partition), its key column, and each reference rule's column in the contract's order.
struct BatchFile {
    date: Option<NaiveDate>,
    keys: Vec<Option<String>>,
    refs: Vec<Vec<Option<String>>>,
}

/// What a reference check found of a batch's references.
enum Found<'a> {
    /// The references the parent holds (a rule without a window: anywhere in the parent).
    Held(Set<String>),
    /// The references the parent does not hold within their rows' windows, by the rows' dates
    /// (a rule with a window); a date not here was not searched.
    MissingOn(BTreeMap<NaiveDate, Set<&'a str>>),
}

impl Found<'_> {
    /// Whether the reference `r` of a row dated `date` was found.
    fn holds(&self, date: Option<NaiveDate>, r: &str) -> bool {
        match self {
            Found::Held(keys) => keys.contains(r),
            Found::MissingOn(missing) => date
                .and_then(|d| missing.get(&d))
                .is_some_and(|m| !m.contains(r)),
        }
    }
}

/// A key list as listed: its key and size (which bounds its fetch).
type ListedList = (String, u64);

/// What a window search has read of the parent so far: each date's files (with their key
/// lists', when they have one), and the key lists fetched, up to [`KEPT_LIST_BYTES`]. A row
/// unresolved on its own date is looked for on the days before it in later steps, and those
/// days were mostly read for their own rows already: without this they were listed and fetched
/// again (62 date reads for the 32 dates of the H=90 night of `make bench-history`).
#[derive(Default)]
struct WindowReads {
    /// Each listed date's parent files, with the key list beside each.
    files: HashMap<NaiveDate, Vec<(storage::ObjectMeta, Option<ListedList>)>>,
    lists: HashMap<String, bytes::Bytes>,
    bytes: u64,
}

/// The most key list bytes a window search keeps for its later steps: a key list takes about
/// 4 bytes a key, so this holds the 32 days a night's payments are dated on up to about 500 k
/// orders a day; beyond that the later steps fetch what did not fit again.
const KEPT_LIST_BYTES: u64 = 64 << 20;

impl WindowReads {
    /// Lists the dates of `dates` not listed yet (their parent files under `prefix_of(date)`,
    /// and, when the parent keeps key lists (`listed`), the lists there are), many at a time.
    async fn list_new<'d>(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        listed: bool,
        dates: impl Iterator<Item = &'d NaiveDate>,
        prefix_of: impl Fn(&NaiveDate) -> String,
    ) -> Result<(), QualityError> {
        let new: Vec<NaiveDate> = dates
            .filter(|d| !self.files.contains_key(*d))
            .copied()
            .collect();
        let listings = storage::list_each(store, new.iter().map(&prefix_of).collect()).await?;
        let lists: HashMap<String, u64> = if listed {
            let prefixes = new
                .iter()
                .filter_map(|d| file_keys::list_prefix(&prefix_of(d)))
                .collect();
            storage::list_many(store, prefixes)
                .await?
                .into_iter()
                .map(|m| (m.key, m.size))
                .collect()
        } else {
            HashMap::new()
        };
        for (date, metas) in new.into_iter().zip(listings) {
            let files = metas
                .into_iter()
                .filter(|m| m.key.ends_with(".parquet"))
                .map(|m| {
                    // With the list's own size, which bounds its fetch.
                    let list = file_keys::list_key(&m.key, m.size)
                        .and_then(|k| lists.get(&k).map(|size| (k, *size)));
                    (m, list)
                })
                .collect();
            self.files.insert(date, files);
        }
        Ok(())
    }

    /// Reads the file `key` of `date` itself from now on: its list is no key list.
    fn forget_list(&mut self, date: NaiveDate, key: &str) {
        for (m, l) in self.files.get_mut(&date).into_iter().flatten() {
            if m.key == key {
                *l = None;
            }
        }
    }

    fn keep(&mut self, list: String, bytes: bytes::Bytes) {
        let size = bytes.len() as u64;
        if self.bytes + size <= KEPT_LIST_BYTES {
            self.bytes += size;
            self.lists.insert(list, bytes);
        }
    }
}

/// How long a claim on a batch's report lasts: longer than the quality function may run (300 s
/// in the template).
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 60);

#[derive(Debug, Clone)]
pub struct QualityGate {
    store: Arc<dyn ObjectStore>,
    state: LakeState,
    registry: Arc<Registry>,
}

impl QualityGate {
    pub fn new(store: Arc<dyn ObjectStore>, registry: Arc<Registry>) -> Self {
        QualityGate {
            state: LakeState::new(store.clone()),
            store,
            registry,
        }
    }

    fn contract(&self, dataset: &str) -> Result<&Contract, QualityError> {
        self.registry
            .get(dataset)
            .ok_or_else(|| QualityError::UnknownDataset(dataset.to_owned()))
    }

    /// Keys appearing more than once across the batch's silver files.
    fn duplicate_keys(files: &[BatchFile]) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut dups = Vec::new();
        for k in files.iter().flat_map(|f| f.keys.iter().flatten()) {
            if !seen.insert(k.as_str()) {
                dups.push(k.clone());
            }
        }
        dups
    }

    /// What the checks read of each of the batch's silver files (the key and each reference
    /// rule's column), in the manifest's order, the files fetched many at a time
    /// (`storage::get_many`) and each parsed frame dropped once its columns are taken. Read
    /// once for every check: read per check, the orders check at 365 days of history opened
    /// and decoded the batch's 160 files twice.
    async fn batch_files(
        &self,
        contract: &Contract,
        m: &Manifest,
    ) -> Result<Vec<BatchFile>, QualityError> {
        let key = contract.key_column().name.as_str();
        let rules = &contract.quality.references;
        let mut columns = vec![key];
        for rule in rules {
            if !columns.contains(&rule.column.as_str()) {
                columns.push(&rule.column);
            }
        }
        // The date of a row is the value of the batch file's date partition.
        let date_of = |partition: &str| -> Option<NaiveDate> {
            let name = &contract.date_partition()?.name;
            parse_partition_path(partition)
                .into_iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| NaiveDate::parse_from_str(v.as_deref()?, "%Y-%m-%d").ok())
        };
        let files = m.files.iter().map(|f| (f.key.clone(), f.bytes)).collect();
        let mut fetched = storage::get_many(&self.store, files).zip(stream::iter(&m.files));
        let mut out = Vec::with_capacity(m.files.len());
        while let Some((got, f)) = fetched.next().await {
            let (_, bytes) = got?;
            let df = read::columns_of(bytes, &f.key, &columns)?;
            let refs = rules
                .iter()
                .map(|rule| read::strings(&df, &rule.column, &f.key))
                .collect::<Result<_, _>>()?;
            out.push(BatchFile {
                date: date_of(&f.partition),
                keys: read::strings(&df, key, &f.key)?,
                refs,
            });
        }
        Ok(out)
    }

    /// The batch's referenced values that the parent's key index holds (a reference without a
    /// window): the index is read only in the shards those values fall into, and its size is
    /// the parent's distinct keys, not its versions or batches.
    async fn indexed_keys(
        &self,
        rule: &crate::contract::quality::ReferenceRule,
        wanted: &Set<&str>,
    ) -> Result<Set<String>, QualityError> {
        let parent = self.contract(&rule.dataset)?;
        let index = KeyIndex::new(self.store.clone());
        index.ensure_built(parent).await?;
        Ok(index.found(&rule.dataset, wanted).await?)
    }

    /// Which keys the parent's date partitions hold of those wanted on each date of `wanted`
    /// (one listing per date, under `processed/<parent>/<date partition>=<date>/`). A file is
    /// searched in its key list when it has one ([`file_keys`]), or else its key column is
    /// read. Only wanted keys are kept: memory follows the batch, not the partitions read.
    /// What an earlier step of the same search listed or fetched is taken from `reads`.
    async fn window_keys(
        &self,
        parent: &Contract,
        wanted: &BTreeMap<NaiveDate, Vec<&str>>,
        reads: &mut WindowReads,
    ) -> Result<HashMap<NaiveDate, Set<String>>, QualityError> {
        let key = parent.key_column().name.as_str();
        let mut held: HashMap<NaiveDate, Set<String>> = HashMap::new();
        let Some(partition) = parent.window_partition() else {
            return Ok(held);
        };
        let prefix_of = |date: &NaiveDate| {
            format!(
                "{}{}={}/",
                layout::processed_prefix(&parent.name),
                partition.name,
                date.format("%Y-%m-%d")
            )
        };
        let listed = file_keys::is_kept(&self.registry, &parent.name);
        reads
            .list_new(&self.store, listed, wanted.keys(), prefix_of)
            .await?;

        // Adds the keys of `date`'s wanted that `list` holds; false when it is no key list.
        let search = |held: &mut HashMap<NaiveDate, Set<String>>, date: NaiveDate, list: &[u8]| {
            file_keys::held(list, wanted[&date].clone())
                .map(|found| {
                    held.entry(date)
                        .or_default()
                        .extend(found.into_iter().map(str::to_owned))
                })
                .is_some()
        };
        let mut unlisted = Vec::new();
        let mut fetch = Vec::new();
        for date in wanted.keys() {
            for (meta, list) in &reads.files[date] {
                match list {
                    // A kept list decoded once already; should it not, the file is read.
                    Some((list, _)) if reads.lists.contains_key(list) => {
                        if !search(&mut held, *date, &reads.lists[list]) {
                            unlisted.push((*date, meta.clone()));
                        }
                    }
                    Some(list) => fetch.push((*date, meta.clone(), list.clone())),
                    None => unlisted.push((*date, meta.clone())),
                }
            }
        }
        let keys = fetch.iter().map(|(_, _, list)| list.clone()).collect();
        let mut fetched = storage::get_many(&self.store, keys).zip(stream::iter(fetch));
        while let Some((got, (date, meta, (list, _)))) = fetched.next().await {
            let bytes = match got {
                Ok((_, bytes)) => bytes,
                // Deleted since it was listed (an ingest retry clears a name's lists before it
                // writes the name again): the file itself is read.
                Err(StorageError::NotFound { .. }) => {
                    reads.forget_list(date, &meta.key);
                    unlisted.push((date, meta));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if search(&mut held, date, &bytes) {
                reads.keep(list, bytes);
            } else {
                // Not a key list after all: the file itself is read, now and later.
                reads.forget_list(date, &meta.key);
                unlisted.push((date, meta));
            }
        }
        if unlisted.is_empty() {
            return Ok(held);
        }
        let fetch = unlisted
            .iter()
            .map(|(_, meta)| (meta.key.clone(), meta.size))
            .collect();
        let sets: HashMap<NaiveDate, Set<&str>> = wanted
            .iter()
            .map(|(d, keys)| (*d, keys.iter().copied().collect()))
            .collect();
        // Fetched many at a time (`storage::get_many`), parsed one at a time.
        let mut frames = storage::get_many(&self.store, fetch).zip(stream::iter(unlisted));
        while let Some((got, (date, _))) = frames.next().await {
            let (file, bytes) = got?;
            let df = read::columns_of(bytes, &file, &[key])?;
            let (wanted, found) = (&sets[&date], held.entry(date).or_default());
            for k in read::str_column(&df, key, &file)?.iter().flatten() {
                if wanted.contains(k) && !found.contains(k) {
                    found.insert(k.to_owned());
                }
            }
        }
        Ok(held)
    }

    /// The references of a windowed rule that the parent does not hold within their rows'
    /// windows, by the rows' dates. Searched nearest days first: for the rows of date `d`
    /// still unresolved, the parent's dates `d`, then `d-1`, then `d-2..d-3`, `d-4..d-7`, … down
    /// to `d - days` (never before `retained_from`). On each parent date only the keys of the
    /// rows whose step reaches it are looked for: a key held on a date outside its row's window
    /// is not within the window, as the rule says, even when another row's search reads that
    /// date. A batch whose parents are all near its rows (the common case: a payment of today's
    /// or a recent order) reads a few days, not the window; only a reference that is not there
    /// (an orphan) makes it read the whole window of its row.
    async fn window_search<'a>(
        &self,
        parent: &Contract,
        days: i64,
        retained_from: NaiveDate,
        mut unresolved: BTreeMap<NaiveDate, Set<&'a str>>,
    ) -> Result<BTreeMap<NaiveDate, Set<&'a str>>, QualityError> {
        let mut read = 0usize;
        let mut reads = WindowReads::default();
        let (mut near, mut width) = (0i64, 1i64);
        while near <= days {
            let far = (near + width - 1).min(days);
            let mut wanted: BTreeMap<NaiveDate, Vec<&str>> = BTreeMap::new();
            for (d, refs) in &unresolved {
                if refs.is_empty() {
                    continue;
                }
                for back in near..=far {
                    let x = *d - Duration::days(back);
                    if x >= retained_from {
                        wanted.entry(x).or_default().extend(refs.iter().copied());
                    }
                }
            }
            // Sorted once here: a key list's look-up walks them in order, file by file.
            for keys in wanted.values_mut() {
                keys.sort_unstable();
                keys.dedup();
            }
            if !wanted.is_empty() {
                read += wanted.len();
                let held = self.window_keys(parent, &wanted, &mut reads).await?;
                for (d, refs) in unresolved.iter_mut() {
                    for back in near..=far {
                        if let Some(held) = held.get(&(*d - Duration::days(back))) {
                            refs.retain(|r| !held.contains(*r));
                        }
                    }
                }
            }
            if unresolved.values().all(Set::is_empty) {
                break;
            }
            near = far + 1;
            width *= 2;
        }
        info!(
            parent = %parent.name,
            window_days = days,
            parent_dates_read = read,
            "reference window searched"
        );
        Ok(unresolved)
    }

    async fn references(
        &self,
        contract: &Contract,
        files: &[BatchFile],
        now: DateTime<Utc>,
    ) -> Result<Vec<ReferenceFacts>, QualityError> {
        let mut out = Vec::new();
        // Older parent partitions may have expired (`processed/` lifecycle rule).
        let retained_from = now.date_naive() - Duration::days(layout::SILVER_RETENTION_DAYS);
        for (i, rule) in contract.quality.references.iter().enumerate() {
            let windowed = match rule.window_days {
                Some(days) if self.contract(&rule.dataset)?.window_partition().is_some() => {
                    Some(i64::from(days))
                }
                _ => None,
            };
            let target = match windowed {
                Some(days) => {
                    // Each row is looked for in its own window: the parent's dates from its
                    // date back `days` days (what is still retained of them).
                    let mut unresolved: BTreeMap<NaiveDate, Set<&str>> = BTreeMap::new();
                    for f in files {
                        if let Some(d) = f.date {
                            unresolved
                                .entry(d)
                                .or_default()
                                .extend(f.refs[i].iter().flatten().map(String::as_str));
                        }
                    }
                    Found::MissingOn(
                        self.window_search(
                            self.contract(&rule.dataset)?,
                            days,
                            retained_from,
                            unresolved,
                        )
                        .await?,
                    )
                }
                None => {
                    let wanted: Set<&str> = files
                        .iter()
                        .flat_map(|f| f.refs[i].iter().flatten().map(String::as_str))
                        .collect();
                    Found::Held(self.indexed_keys(rule, &wanted).await?)
                }
            };
            let mut facts = ReferenceFacts {
                rule: rule.clone(),
                checked: 0,
                orphans: 0,
                unverifiable: 0,
                sample: vec![],
                missing: HashMap::new(),
            };
            for f in files {
                // A row whose window reaches before the retained history (or that has no date)
                // may reference a parent that expired: not found is then no proof of an orphan.
                let verifiable = match windowed {
                    None => true,
                    Some(days) => f
                        .date
                        .is_some_and(|d| d - Duration::days(days) >= retained_from),
                };
                for (k, r) in f.keys.iter().zip(&f.refs[i]) {
                    facts.checked += 1;
                    if r.as_ref().is_some_and(|r| target.holds(f.date, r)) {
                        continue;
                    }
                    if !verifiable && r.is_some() {
                        facts.unverifiable += 1;
                        continue;
                    }
                    facts.orphans += 1;
                    if facts.sample.len() < MAX_OFFENDING_KEYS {
                        facts.sample.extend(k.clone());
                    }
                    // Cloned once per distinct value, not once per orphan row.
                    match facts.missing.get_mut(r) {
                        Some(n) => *n += 1,
                        None => {
                            facts.missing.insert(r.clone(), 1);
                        }
                    }
                }
            }
            out.push(facts);
        }
        Ok(out)
    }

    /// The last `n` successful batches of `dataset` before `batch_id`, oldest first: only the
    /// manifests the volume and distribution checks use are read (newest first, stopping at `n`),
    /// and only the manifests of the `4n` days before the batch are listed (a dataset has about
    /// a batch a day); a sparser dataset is listed further back, to its first batch.
    async fn recent_history(
        &self,
        dataset: &str,
        batch_id: &str,
        n: usize,
    ) -> Result<Vec<Manifest>, QualityError> {
        let prefix = layout::manifest_prefix(dataset);
        let window =
            batch_time(batch_id).map(|t| manifests_from(dataset, t - Duration::days(4 * n as i64)));
        let mut out = Vec::with_capacity(n);
        // The window first; then, if it held too few, everything before it.
        let passes = [
            window.clone().map(|w| (w, None)),
            Some((String::new(), window)),
        ];
        for (after, before) in passes.into_iter().flatten() {
            let listed = self.store.list_after(&prefix, &after, None).await?;
            let ids: Vec<&str> = listed
                .iter()
                .filter(|m| before.as_ref().is_none_or(|b| m.key.as_str() <= b.as_str()))
                .filter_map(|m| layout::parse_manifest_key(&m.key).map(|(_, b)| b))
                .filter(|b| *b < batch_id)
                .collect();
            for id in ids.iter().rev() {
                if out.len() >= n {
                    break;
                }
                if let Some(m) = self.state.manifest(dataset, id).await?
                    && m.status == BatchStatus::Succeeded
                {
                    out.push(m);
                }
            }
            if out.len() >= n {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Evaluates the batch of a manifest key (what the quality Lambda receives).
    pub async fn evaluate_manifest_key(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let (dataset, batch) =
            layout::parse_manifest_key(key).ok_or_else(|| QualityError::NotAManifest {
                key: key.to_owned(),
            })?;
        self.evaluate(dataset, batch, now).await
    }

    /// Runs every check on a batch and writes its report. Re-evaluation keeps an override.
    #[tracing::instrument(skip(self, now))]
    pub async fn evaluate(
        &self,
        dataset: &str,
        batch_id: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        // The report keeps an earlier override: read, then rewritten, by one run at a time.
        self.state
            .with_claim(
                &layout::quality_claim_key(dataset, batch_id),
                CLAIM_TTL,
                CLAIM_TTL,
                async || self.evaluate_claimed(dataset, batch_id, now).await,
            )
            .await
    }

    async fn evaluate_claimed(
        &self,
        dataset: &str,
        batch_id: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let contract = self.contract(dataset)?;
        let manifest_key = layout::manifest_key(dataset, batch_id);
        let manifest: Manifest = self.state.get_json(&manifest_key).await?.ok_or_else(|| {
            QualityError::ManifestMissing {
                key: manifest_key.clone(),
            }
        })?;
        let history = self
            .recent_history(dataset, batch_id, contract.quality.volume.history)
            .await?;
        let (duplicate_keys, references) = if manifest.status == BatchStatus::Succeeded {
            let files = self.batch_files(contract, &manifest).await?;
            (
                Some(Self::duplicate_keys(&files)),
                self.references(contract, &files, now).await?,
            )
        } else {
            (None, vec![])
        };
        let facts = Facts {
            contract,
            manifest: &manifest,
            history: &history,
            duplicate_keys,
            references,
            now,
        };
        let checks = checks::evaluate(&facts);
        let (verdict, summary) = QualityReport::verdict_of(&checks);
        let report_key = layout::quality_report_key(dataset, batch_id);
        let previous: Option<QualityReport> = self.state.get_json(&report_key).await?;
        let override_ = previous.and_then(|p| p.override_);
        let report = QualityReport {
            report_version: REPORT_VERSION,
            dataset: dataset.to_owned(),
            batch_id: batch_id.to_owned(),
            batch_date: manifest
                .source
                .last_modified
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            source: manifest.source.uri.clone(),
            manifest: self.store.uri(&manifest_key),
            evaluated_at: values::format_timestamp(now.timestamp_micros()),
            verdict,
            loadable: verdict != super::Verdict::Fail || override_.is_some(),
            summary,
            rows_read: manifest.rows_read,
            rows_written: manifest.rows_written,
            rows_rejected: manifest.rows_rejected,
            duplicates_dropped: manifest.duplicates_dropped,
            rejects_file: manifest.rejects_file.as_deref().map(|k| self.store.uri(k)),
            quarantined_source: manifest
                .quarantined_source
                .as_deref()
                .map(|k| self.store.uri(k)),
            checks,
            override_,
        };
        self.write(&report_key, &report).await?;
        info!(verdict = ?report.verdict, summary = %report.summary, loadable = report.loadable, "batch checked");
        Ok(report)
    }

    async fn write(&self, key: &str, report: &QualityReport) -> Result<(), QualityError> {
        Ok(self.state.put_json(key, report).await?)
    }

    pub async fn report(
        &self,
        dataset: &str,
        batch_id: &str,
    ) -> Result<Option<QualityReport>, QualityError> {
        Ok(self
            .state
            .get_json(&layout::quality_report_key(dataset, batch_id))
            .await?)
    }

    /// Records a person's decision to load a failed batch anyway.
    pub async fn override_batch(
        &self,
        dataset: &str,
        batch_id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        self.state
            .with_claim(
                &layout::quality_claim_key(dataset, batch_id),
                CLAIM_TTL,
                CLAIM_TTL,
                async || {
                    self.override_claimed(dataset, batch_id, by, reason, now)
                        .await
                },
            )
            .await
    }

    async fn override_claimed(
        &self,
        dataset: &str,
        batch_id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let key = layout::quality_report_key(dataset, batch_id);
        let mut report = self
            .report(dataset, batch_id)
            .await?
            .ok_or(QualityError::ReportMissing { key: key.clone() })?;
        report.override_ = Some(Override {
            by: by.to_owned(),
            reason: reason.to_owned(),
            at: values::format_timestamp(now.timestamp_micros()),
        });
        report.loadable = true;
        self.write(&key, &report).await?;
        info!(by, "quality verdict overridden");
        Ok(report)
    }

    /// Checks every batch of the lake that has no report yet, parents' datasets first, and
    /// returns the reports. Each dataset's manifests are listed from a cursor
    /// (`runs/quality/<dataset>/_cursor.json`, see [`BatchCursor`]), so a run costs what was
    /// ingested since the last one, not the history. The cursor is written after a dataset's
    /// batches are all checked: a run that fails leaves the old one, and the next lists the same
    /// batches again (the reports say which are done), so nothing needs keeping open.
    pub async fn check_unchecked(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<QualityReport>, QualityError> {
        // Claims a crashed check left would otherwise stay until that batch is checked again.
        self.state
            .sweep_claims(&format!("{}/quality/", layout::CLAIMS))
            .await?;
        let mut out = Vec::new();
        for contract in self.registry.load_order() {
            let dataset = contract.name.as_str();
            let cursor_key = layout::quality_cursor_key(dataset);
            let mut cursor: BatchCursor = self.state.get_json_or_default(&cursor_key).await?;
            let listing = cursor.list(self.store.as_ref(), dataset).await?;
            for batch in listing.listed.keys() {
                let report = layout::quality_report_key(dataset, batch);
                if !self.state.exists(&report).await? {
                    out.push(self.evaluate(dataset, batch, now).await?);
                }
            }
            self.state.put_json(&cursor_key, &cursor).await?;
        }
        Ok(out)
    }

    /// The dataset that has a manifest for `batch_id`.
    pub async fn dataset_of_batch(&self, batch_id: &str) -> Result<String, QualityError> {
        for dataset in self.registry.names() {
            if self
                .state
                .exists(&layout::manifest_key(dataset, batch_id))
                .await?
            {
                return Ok(dataset.to_owned());
            }
        }
        Err(QualityError::UnknownBatch(batch_id.to_owned()))
    }
}
