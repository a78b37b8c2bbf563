//! The synchronous core of ingest: one source stream in, staged silver files and a quarantine
//! file out, with every row accounted for.
//!
//! Memory stays bounded by the budget, not the file: valid rows are hash-partitioned by key
//! into buckets sized to fit the budget (spilled to the work directory when there is more than
//! one), then each bucket is deduplicated and written on its own. All rows of a key land in the
//! same bucket, so latest-wins needs no global state.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use super::dedup;
use super::input::{self, RecordReader};
use super::parallel::{Plan, Stop, validate_records};
use super::quarantine::QuarantineWriter;
use super::row_validator::RowValidator;
use super::writer::PartitionFile;
use crate::columns::Batch;
use crate::contract::{Contract, Partition, PartitionTransform};
use crate::layout;
use crate::manifest::SchemaDrift;
use crate::manifest::{ColumnStats, PartitionSummary, WrittenFile};
use crate::partition::hive_partition_path;
use crate::silver::{self, Lineage};
use crate::values::{self, stable_hash};

/// A fixed-seed hasher: fast on short keys, and the same on every run.
type FastHash = foldhash::fast::FixedState;

/// Assumed expansion of gzip input when sizing buckets (CSV typically compresses 5-10x).
const GZIP_EXPANSION: u64 = 10;
/// Most buckets one file is split into.
const MAX_BUCKETS: u64 = 4096;

/// Everything the processor needs to know about one source file.
#[derive(Debug, Clone)]
pub struct FileJob<'a> {
    pub contract: &'a Contract,
    pub batch_id: &'a str,
    pub source_uri: &'a str,
    pub ingested_at_micros: i64,
    /// Stored size of the source; with the budget it decides the number of buckets.
    pub input_bytes: u64,
    /// For a gzip source, the CSV size its trailer declares ([`input::declared_gzip_size`]):
    /// memory is planned for that instead of a worst-case expansion. A source that holds more
    /// fails with [`input::PlanExceeded`] (as [`ProcessError::Read`]), to be processed again
    /// without it.
    pub declared_csv_bytes: Option<u64>,
    pub memory_budget_bytes: usize,
    /// Scratch space for spill, staged Parquet and the quarantine file.
    pub work_dir: &'a Path,
    pub limits: input::InputLimits,
}

/// A Parquet file staged in the work directory, ready to upload to `file.key`.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub path: PathBuf,
    pub file: WrittenFile,
}

#[derive(Debug)]
pub struct ProcessedFile {
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    pub duplicates_dropped: u64,
    pub files: Vec<StagedFile>,
    pub partitions: Vec<PartitionSummary>,
    /// Staged rejected-rows CSV and its row count.
    pub rejects: Option<(PathBuf, u64)>,
    /// Rejected rows per reason category (no values).
    pub reject_reasons: BTreeMap<String, u64>,
    pub drift: SchemaDrift,
    pub source_columns: Vec<String>,
    pub stats: ColumnStats,
    pub buckets: usize,
}

/// The file cannot be used at all; it is quarantined as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedFile {
    pub reason: String,
    /// Records seen (all of them count as rejected).
    pub rows_read: u64,
    pub source_columns: Vec<String>,
}

#[derive(Debug)]
pub enum FileOutcome {
    Processed(Box<ProcessedFile>),
    Rejected(RejectedFile),
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("reading the source failed: {0}")]
    Read(#[source] io::Error),
    #[error("writing {path} in the work directory failed: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing Parquet failed: {0}")]
    Parquet(#[from] polars::error::PolarsError),
}

fn work_err(path: &Path) -> impl FnOnce(io::Error) -> ProcessError + '_ {
    move |source| ProcessError::WorkDir {
        path: path.to_owned(),
        source,
    }
}

/// How many hash buckets keep one bucket's rows within a third of the memory budget
/// (the rest is for the dedup index and the Parquet encoder).
pub fn plan_buckets(csv_bytes: u64, memory_budget_bytes: usize) -> usize {
    // Columnar rows take about 1.5x their CSV size.
    let in_memory = csv_bytes.saturating_mul(3) / 2;
    let per_bucket = (memory_budget_bytes as u64 / 3).max(1);
    in_memory.div_ceil(per_bucket).clamp(1, MAX_BUCKETS) as usize
}

/// The CSV a source of `input_bytes` is planned to hold: its size; for gzip, the size its
/// trailer declared if that was plausible, else [`GZIP_EXPANSION`] times the stored size.
pub fn expected_csv_bytes(input_bytes: u64, gzip: bool, declared: Option<u64>) -> u64 {
    match (gzip, declared) {
        (false, _) => input_bytes,
        (true, Some(declared)) => declared,
        (true, None) => input_bytes.saturating_mul(GZIP_EXPANSION),
    }
}

/// Smallest chunk a bucket spills at once.
const MIN_SPILL_BYTES: usize = 32 * 1024;

/// Buffer for reading a spill file back (one bucket at a time).
const SPILL_IO_BYTES: usize = 1024 * 1024;

/// Batches being spilled at once besides the buckets themselves: one queued, one being written,
/// one emptied and on its way back.
const SPILLS_IN_FLIGHT: usize = 3;

/// Rows of every bucket: in memory, plus a spill file for each bucket that outgrew its share of
/// the budget.
struct Buckets {
    rows: Vec<Batch>,
    /// Each bucket's spill file, if it has one; known once the spill writer is done.
    spilled: Vec<Option<PathBuf>>,
    spilled_bytes: u64,
    flush_bytes: usize,
    /// The key and version columns: duplicates are dropped as they pile up, not only at the end.
    key: usize,
    version: usize,
    /// Size at which each bucket's rows are next deduplicated in memory.
    compact_at: Vec<usize>,
    /// The first size at which that happens: a third of the budget, or the spill size.
    compact_floor: usize,
    /// Rows dropped by those early deduplications (the final one counts the rest).
    dropped: u64,
    /// Reused to read every spill chunk back.
    scratch: Vec<u8>,
}

/// Keeps only each key's latest version in `batch`, in batch order; returns the rows dropped.
/// Latest-wins is decided by (version, source line), so dropping early picks the same winners
/// as dropping at the end, and the rows left keep their order.
fn compact(batch: &mut Batch, key: usize, version: usize) -> u64 {
    let (winners, dropped) = dedup::latest_wins(batch, key, version);
    if dropped > 0 {
        // In place: the batch keeps its memory instead of a second copy being made.
        batch.retain(&winners);
    }
    dropped
}

impl Buckets {
    fn new(contract: &Contract, count: usize, memory_budget_bytes: usize) -> Self {
        // With one bucket everything stays in memory (it was sized to fit). Otherwise the
        // buckets and the batches on their way to disk share a third of the budget; the floor
        // only keeps spill writes from becoming tiny, and is low because every bucket may hold
        // that much at once.
        let flush_bytes = if count == 1 {
            usize::MAX
        } else {
            (memory_budget_bytes / 3 / (count + SPILLS_IN_FLIGHT)).max(MIN_SPILL_BYTES)
        };
        let compact_floor = flush_bytes
            .min(memory_budget_bytes / 3)
            .max(MIN_SPILL_BYTES);
        Buckets {
            rows: (0..count).map(|_| Batch::new(contract)).collect(),
            spilled: vec![None; count],
            spilled_bytes: 0,
            flush_bytes,
            key: contract.key,
            version: contract.version,
            compact_at: vec![compact_floor; count],
            compact_floor,
            dropped: 0,
            scratch: Vec::new(),
        }
    }

    /// The bucket's rows when they outgrew their share, for the spill writer; an empty batch
    /// (a reused one from `free` if there is one) takes their place.
    fn full(&mut self, index: usize, free: &mpsc::Receiver<Batch>) -> Option<Batch> {
        let bytes = self.rows[index].heap_bytes();
        if bytes >= self.compact_at[index] {
            // One key repeated a million times stays one row instead of outgrowing the budget.
            // When few duplicates turn up, the next try waits until the rows have doubled, so
            // unique data pays for this a logarithmic number of times.
            self.dropped += compact(&mut self.rows[index], self.key, self.version);
            let left = self.rows[index].heap_bytes();
            self.compact_at[index] = if left * 2 <= bytes {
                self.compact_floor
            } else {
                left.saturating_mul(2).max(self.compact_floor)
            };
        }
        if self.rows[index].heap_bytes() < self.flush_bytes {
            return None;
        }
        let empty = free
            .try_recv()
            .unwrap_or_else(|_| self.rows[index].empty_like());
        Some(std::mem::replace(&mut self.rows[index], empty))
    }

    /// All rows of a bucket into `all`, chunk by chunk in file order: spilled chunks first,
    /// then what is still in memory. `all` is the previous bucket's batch: its memory, already
    /// touched, is filled again instead of fresh memory being faulted in for every bucket.
    fn take_into(&mut self, index: usize, all: &mut Batch) -> Result<(), ProcessError> {
        let empty = self.rows[index].empty_like();
        let mut in_memory = std::mem::replace(&mut self.rows[index], empty);
        let Some(path) = self.spilled[index].take() else {
            if self.rows.len() == 1 {
                // The only bucket: nothing comes after it to reuse memory for.
                std::mem::swap(all, &mut in_memory);
            } else {
                all.clear();
                all.append(&in_memory);
            }
            return Ok(());
        };
        all.clear();
        let file = File::open(&path).map_err(work_err(&path))?;
        let mut reader = BufReader::with_capacity(SPILL_IO_BYTES, file);
        // Deduplicated as it is read back, so many copies of few keys never fill the memory.
        let mut compact_at = self.compact_floor.max(self.flush_bytes.saturating_mul(4));
        while all
            .read_chunk_with(&mut reader, &mut self.scratch)
            .map_err(work_err(&path))?
        {
            let bytes = all.heap_bytes();
            if bytes >= compact_at {
                self.dropped += compact(all, self.key, self.version);
                compact_at = all.heap_bytes().saturating_mul(2).max(compact_at);
            }
        }
        std::fs::remove_file(&path).map_err(work_err(&path))?;
        // The rows still in memory came last: appended, not spilled and read back.
        all.append(&in_memory);
        Ok(())
    }
}

/// Appends full buckets to their spill files. It runs on a thread of its own, so the merging
/// thread hands a bucket over and goes on instead of waiting for the disk. Emptied batches go
/// back through `free` to be filled again.
fn write_spills(
    jobs: mpsc::Receiver<(usize, Batch)>,
    free: mpsc::Sender<Batch>,
    work_dir: &Path,
    count: usize,
) -> Result<(Vec<Option<PathBuf>>, u64), ProcessError> {
    let mut written = 0u64;
    let mut files: Vec<Option<(PathBuf, File)>> = (0..count).map(|_| None).collect();
    // A chunk is encoded here and written with one call: one buffer for all buckets, where a
    // buffered writer per bucket would cost its buffer times thousands of buckets.
    let mut encoded = Vec::new();
    for (index, mut rows) in jobs {
        let (path, file) = match &mut files[index] {
            Some(open) => open,
            slot @ None => {
                let path = work_dir.join(format!("spill-{index:04}.bin"));
                let file = File::create(&path).map_err(work_err(&path))?;
                slot.insert((path, file))
            }
        };
        encoded.clear();
        rows.write_chunk(&mut encoded);
        file.write_all(&encoded).map_err(work_err(path))?;
        written += encoded.len() as u64;
        rows.clear();
        // The merger may be done and gone.
        let _ = free.send(rows);
    }
    let paths = files.into_iter().map(|f| f.map(|(path, _)| path)).collect();
    Ok((paths, written))
}

/// Why reading stopped early: the content is broken (reject the file) or the read failed.
enum ReadFailure {
    Corrupt(String),
    Io(io::Error),
}

fn classify(e: io::Error) -> ReadFailure {
    if input::is_corrupt_input(&e) {
        ReadFailure::Corrupt(format!("the file cannot be decoded: {e}"))
    } else {
        ReadFailure::Io(e)
    }
}

/// Counts the remaining records of a file that is being rejected whole.
fn count_rest(reader: &mut RecordReader<impl Read>, mut seen: u64) -> Result<u64, ProcessError> {
    loop {
        match reader.next_record() {
            Ok(Some(_)) => seen += 1,
            Ok(None) => return Ok(seen),
            Err(e) => match classify(e) {
                ReadFailure::Corrupt(_) => return Ok(seen),
                ReadFailure::Io(e) => return Err(ProcessError::Read(e)),
            },
        }
    }
}

/// Processes one source stream. A bad row never fails the file; a file that cannot be used at
/// all comes back as [`FileOutcome::Rejected`]; only infrastructure failures are errors.
pub fn process_file(
    source: impl Read + Send,
    job: &FileJob<'_>,
) -> Result<FileOutcome, ProcessError> {
    let contract = job.contract;
    let (mut reader, gzip) = match input::limited_csv_reader(
        source,
        job.input_bytes,
        job.limits,
        job.declared_csv_bytes,
    ) {
        Ok(r) => r,
        Err(e) if input::is_corrupt_input(&e) => {
            return Ok(rejected(
                format!("the file cannot be decoded: {e}"),
                0,
                vec![],
            ));
        }
        Err(e) => return Err(ProcessError::Read(e)),
    };
    let (validator, mut quarantine) = match reader.next_record() {
        Ok(Some(header)) => {
            let quarantine = QuarantineWriter::new(job.work_dir.join("rejected_rows.csv"), &header);
            match RowValidator::bind(contract, &header) {
                Ok(v) => (v, quarantine),
                Err(e) => {
                    let names = header
                        .fields()
                        .map(|f| String::from_utf8_lossy(f).trim().to_lowercase())
                        .collect();
                    let rows = count_rest(&mut reader, 0)?;
                    return Ok(rejected(e.to_string(), rows, names));
                }
            }
        }
        Ok(None) => {
            return Ok(rejected(
                "the file is empty: it has no header row".into(),
                0,
                vec![],
            ));
        }
        Err(e) => match classify(e) {
            ReadFailure::Corrupt(reason) => return Ok(rejected(reason, 0, vec![])),
            ReadFailure::Io(e) => return Err(ProcessError::Read(e)),
        },
    };

    let started = std::time::Instant::now();
    // Counted only for the debug log: each count reads /proc.
    let counting = tracing::enabled!(tracing::Level::DEBUG);
    let faults = || {
        if counting {
            crate::telemetry::minor_faults()
        } else {
            0
        }
    };
    let faults_at_start = faults();
    let csv_bytes = expected_csv_bytes(job.input_bytes, gzip, job.declared_csv_bytes);
    let bucket_count = plan_buckets(csv_bytes, job.memory_budget_bytes);
    let mut buckets = Buckets::new(contract, bucket_count, job.memory_budget_bytes);
    let mut rows_read = 0u64;
    let key = contract.key;
    let route = |rows: &Batch, row: usize| match bucket_count {
        1 => 0,
        n => (stable_hash(rows.str(key, row).unwrap_or_default().as_bytes()) % n as u64) as u32,
    };
    // Hashed value by value: no key is built per row.
    let partition = |rows: &Batch, row: usize| {
        let mut hasher = FastHash::default().build_hasher();
        for p in &contract.partitions {
            part_value(p, rows, row).hash(&mut hasher);
        }
        hasher.finish()
    };
    let plan = Plan {
        validator: &validator,
        route: &route,
        partition: &partition,
        workers: validation_workers(job.memory_budget_bytes),
        chunk_bytes: (job.memory_budget_bytes / 256).clamp(64 * 1024, 1024 * 1024),
    };
    let (merged, spilled) = std::thread::scope(|scope| {
        let (spill_tx, spill_rx) = mpsc::sync_channel::<(usize, Batch)>(1);
        let (free_tx, free_rx) = mpsc::channel::<Batch>();
        let writer = scope.spawn(|| write_spills(spill_rx, free_tx, job.work_dir, bucket_count));
        let merged = validate_records(&mut reader, &plan, &mut rows_read, |done| {
            for (i, reasons) in &done.rejects {
                quarantine
                    .reject(reasons, &done.chunk.get(*i as usize))
                    .map_err(work_err(quarantine.path()))?;
            }
            for (index, rows) in &done.runs {
                let index = *index as usize;
                buckets.rows[index].append_rows(&done.rows, rows.clone());
                if let Some(full) = buckets.full(index, &free_rx)
                    && spill_tx.send((index, full)).is_err()
                {
                    // The writer stopped on an error; it is the one reported below.
                    return Err(work_err(job.work_dir)(io::Error::other("spilling stopped")));
                }
            }
            Ok(())
        });
        drop(spill_tx);
        let spilled = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (merged, spilled)
    });
    match (merged, spilled) {
        (_, Err(e)) => return Err(e),
        (Ok(()), Ok((paths, bytes))) => (buckets.spilled, buckets.spilled_bytes) = (paths, bytes),
        (Err(Stop::Merge(e)), _) => return Err(e),
        (Err(Stop::Read(e)), _) => match classify(e) {
            ReadFailure::Corrupt(reason) => {
                let rows = count_rest(&mut reader, rows_read)?;
                return Ok(rejected(reason, rows, validator.source_columns.clone()));
            }
            ReadFailure::Io(e) => return Err(ProcessError::Read(e)),
        },
    }
    let quarantine_path = quarantine.path().to_owned();
    let reject_reasons = quarantine.categories().clone();
    let rejects = quarantine.finish().map_err(work_err(&quarantine_path))?;

    let lineage = Lineage {
        ingested_at_micros: job.ingested_at_micros,
        source_uri: job.source_uri,
        batch_id: job.batch_id,
    };
    let mut out = Outputs::new(contract)?;
    let mut duplicates_dropped = 0;
    let read = started.elapsed();
    let faults_after_read = faults();
    let peak_after_read = if counting {
        crate::telemetry::peak_rss_mib()
    } else {
        0
    };
    let mut dedup_faults = 0;
    let (mut load, mut dedup, mut write) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut batch = Batch::new(contract);
    let mut table = dedup::Table::default();
    for index in 0..bucket_count {
        let t = std::time::Instant::now();
        buckets.take_into(index, &mut batch)?;
        load += t.elapsed();
        if batch.is_empty() {
            continue;
        }
        let t = std::time::Instant::now();
        let f = faults();
        let (winners, dropped) =
            dedup::latest_wins_in(&mut table, &batch, contract.key, contract.version);
        dedup += t.elapsed();
        dedup_faults += faults().saturating_sub(f);
        duplicates_dropped += dropped;
        let t = std::time::Instant::now();
        let reuse = crate::alloc::ReuseFreedMemory::new(crate::alloc::Keep::PARTITION_WRITES);
        let last = index + 1 == bucket_count;
        out.write_bucket(contract, &batch, &winners, &lineage, job, last)?;
        drop(reuse);
        write += t.elapsed();
    }
    // Those dropped early, as they piled up in memory or came back from disk.
    duplicates_dropped += buckets.dropped;
    let (files, partitions, stats) = out.finish()?;
    let faults_at_end = faults();
    tracing::debug!(
        buckets = bucket_count,
        spilled_mib = buckets.spilled_bytes >> 20,
        read_validate_ms = read.as_millis() as u64,
        bucket_load_ms = load.as_millis() as u64,
        dedup_ms = dedup.as_millis() as u64,
        parquet_ms = write.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        read_minor_faults = faults_after_read.saturating_sub(faults_at_start),
        dedup_minor_faults = dedup_faults,
        peak_rss_read_mib = peak_after_read,
        peak_rss_mib = if counting {
            crate::telemetry::peak_rss_mib()
        } else {
            0
        },
        load_write_minor_faults = faults_at_end
            .saturating_sub(faults_after_read)
            .saturating_sub(dedup_faults),
        "file processed"
    );
    let rows_written = files.iter().map(|f| f.file.rows).sum();
    Ok(FileOutcome::Processed(Box::new(ProcessedFile {
        rows_read,
        rows_written,
        rows_rejected: rejects.as_ref().map_or(0, |(_, n)| *n),
        duplicates_dropped,
        files,
        partitions,
        rejects,
        reject_reasons,
        drift: validator.drift.clone(),
        source_columns: validator.source_columns.clone(),
        stats,
        buckets: bucket_count,
    })))
}

fn rejected(reason: String, rows_read: u64, source_columns: Vec<String>) -> FileOutcome {
    FileOutcome::Rejected(RejectedFile {
        reason,
        rows_read,
        source_columns,
    })
}

/// A row's partition, compared without formatting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PartValue<'a> {
    Str(Option<&'a str>),
    Day(Option<i32>),
}

impl PartValue<'_> {
    fn render(self) -> Option<String> {
        match self {
            PartValue::Str(s) => s.map(str::to_owned),
            PartValue::Day(d) => d.map(values::format_date),
        }
    }
}

/// The partition of row `row`, into `key`.
fn partition_key<'b>(
    contract: &Contract,
    batch: &'b Batch,
    row: usize,
    key: &mut Vec<PartValue<'b>>,
) {
    key.clear();
    key.extend(
        contract
            .partitions
            .iter()
            .map(|p| part_value(p, batch, row)),
    );
}

/// Row `row`'s value of partition `p`.
fn part_value<'b>(p: &Partition, batch: &'b Batch, row: usize) -> PartValue<'b> {
    match p.transform {
        PartitionTransform::Identity => PartValue::Str(batch.str(p.source, row)),
        PartitionTransform::UtcDate => {
            PartValue::Day(batch.i64(p.source, row).map(values::utc_day_of))
        }
    }
}

/// Memory one validation worker is allowed from the budget (the chunks it has out).
const VALIDATOR_BYTES: usize = 16 * 1024 * 1024;

/// Validation workers for a budget: one per core, none (validate inline) on one core or when
/// the budget is too small to keep chunks in flight.
fn validation_workers(memory_budget_bytes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 || memory_budget_bytes < 2 * VALIDATOR_BYTES {
        0
    } else {
        cores.min(memory_budget_bytes / VALIDATOR_BYTES)
    }
}

/// Memory one Parquet encoder thread is allowed from the budget.
const ENCODER_BYTES: usize = 32 * 1024 * 1024;

/// A partition file still being written, with what it will be uploaded as.
struct OpenPartition {
    file: FileState,
    staged: PathBuf,
    key: String,
}

/// A partition file is finished after its rows of the last bucket, so its encoder and buffer
/// are freed for the next partition instead of 300 of them (a 60-day export) staying resident.
enum FileState {
    /// Boxed: a writer is some 700 bytes, a finished file eight.
    Writing(Box<PartitionFile>),
    /// Closed, this many bytes long.
    Finished(u64),
}

impl FileState {
    /// Closes the file if it is still being written; its length either way.
    fn close(&mut self) -> Result<u64, ProcessError> {
        let bytes = match std::mem::replace(self, FileState::Finished(0)) {
            FileState::Writing(file) => file.finish()?,
            FileState::Finished(bytes) => bytes,
        };
        *self = FileState::Finished(bytes);
        Ok(bytes)
    }
}

/// Accumulates partition files, summaries and column statistics across buckets.
struct Outputs {
    schema: polars::prelude::Schema,
    open: BTreeMap<String, OpenPartition>,
    partitions: BTreeMap<String, PartitionSummary>,
    stats: ColumnStats,
    max_version: Option<i64>,
    /// Sliced into every frame; rebuilt longer when a frame needs more rows.
    lineage: Option<silver::LineageColumns>,
}

impl Outputs {
    fn new(contract: &Contract) -> Result<Self, ProcessError> {
        let mut stats = ColumnStats::default();
        for (_, c) in contract.file_columns().filter(|(_, c)| !c.required) {
            stats.null_counts.insert(c.name.clone(), 0);
        }
        Ok(Outputs {
            schema: silver::silver_schema(contract)?,
            open: BTreeMap::new(),
            partitions: BTreeMap::new(),
            stats,
            max_version: None,
            lineage: None,
        })
    }

    fn write_bucket(
        &mut self,
        contract: &Contract,
        batch: &Batch,
        winners: &[u32],
        lineage: &Lineage<'_>,
        job: &FileJob<'_>,
        last_bucket: bool,
    ) -> Result<(), ProcessError> {
        self.collect_stats(contract, batch, winners);
        // Each row's partition key is built in one reused buffer: a key is allocated per
        // partition, not per row.
        let mut group_of: HashMap<Vec<PartValue<'_>>, usize, FastHash> = HashMap::default();
        let mut grouped: Vec<Vec<u32>> = Vec::new();
        let mut key = Vec::with_capacity(contract.partitions.len());
        for &row in winners {
            partition_key(contract, batch, row as usize, &mut key);
            let group = match group_of.get(key.as_slice()) {
                Some(&group) => group,
                None => {
                    group_of.insert(key.clone(), grouped.len());
                    grouped.push(Vec::new());
                    grouped.len() - 1
                }
            };
            grouped[group].push(row);
        }
        let groups: Vec<(BTreeMap<String, String>, String, Vec<u32>)> = group_of
            .into_iter()
            .map(|(key, group)| (key, std::mem::take(&mut grouped[group])))
            .map(|(key, rows)| {
                let values: Vec<Option<String>> = key.into_iter().map(PartValue::render).collect();
                let path = hive_partition_path(
                    contract
                        .partitions
                        .iter()
                        .zip(&values)
                        .map(|(p, v)| (p.name.as_str(), v.as_deref())),
                );
                let named = contract
                    .partitions
                    .iter()
                    .zip(values)
                    .map(|(p, v)| (p.name.clone(), v.unwrap_or_default()))
                    .collect();
                (named, path, rows)
            })
            .collect();
        // Files are opened and counted in order; encoding, most of the time, runs on every core
        // (each partition has its own file, so the writers never share anything).
        let mut rows_of: HashMap<String, Vec<u32>> = HashMap::with_capacity(groups.len());
        for (values, path, rows) in groups {
            if !self.open.contains_key(&path) {
                let key = layout::silver_key(&contract.name, &path, job.batch_id);
                // Staged flat, beside the spill files: mirroring the key's directories cost two
                // more directories (inodes) per partition, and creating inodes is most of what
                // a wide export's partitions cost the kernel.
                let staged = job
                    .work_dir
                    .join(format!("part-{:05}.parquet", self.open.len()));
                let buffer = super::writer::buffer_bytes(job.memory_budget_bytes);
                let file = PartitionFile::create(&staged, &self.schema, buffer)?;
                self.open.insert(
                    path.clone(),
                    OpenPartition {
                        file: FileState::Writing(Box::new(file)),
                        staged,
                        key,
                    },
                );
            }
            let summary = self
                .partitions
                .entry(path.clone())
                .or_insert_with(|| PartitionSummary {
                    path: path.clone(),
                    values,
                    rows: 0,
                });
            summary.rows += rows.len() as u64;
            rows_of.insert(path, rows);
        }
        let mut targets: Vec<(Mutex<&mut OpenPartition>, &[u32])> = self
            .open
            .iter_mut()
            .filter_map(|(path, open)| Some((Mutex::new(open), rows_of.get(path)?.as_slice())))
            .collect();
        // Largest first, so the last partition to finish is a small one.
        targets.sort_by_key(|(_, rows)| std::cmp::Reverse(rows.len()));
        // Frames are built a row group at a time, so the lineage columns need only be as long
        // as the largest row group, not the largest partition: at one day of 1 M rows (row
        // groups of 50 k rows) 2.5 MB of memory faulted in instead of 10.
        let longest = targets
            .iter()
            .flat_map(|(_, rows)| super::writer::row_groups(rows))
            .map(<[u32]>::len)
            .max()
            .unwrap_or(0);
        if self.lineage.as_ref().is_none_or(|l| l.len() < longest) {
            // A quarter more than needed (the next bucket's partitions are about as large), never
            // more than a row group can hold.
            let len = (longest + longest / 4).min(super::writer::MAX_ROW_GROUP_ROWS);
            self.lineage = Some(silver::LineageColumns::new(lineage, len));
        }
        let lineage = self.lineage.as_ref().expect("built above");
        let next = AtomicUsize::new(0);
        // Each extra encoder holds a partition's DataFrame, a zstd context and an allocator
        // arena of its own: the budget decides how many may run, not only the cores.
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(job.memory_budget_bytes / ENCODER_BYTES)
            .min(targets.len())
            .max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<(), ProcessError> {
                        while let Some((target, rows)) =
                            targets.get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            let mut open = target.lock().unwrap_or_else(PoisonError::into_inner);
                            let FileState::Writing(file) = &mut open.file else {
                                unreachable!("a file is finished after its last bucket only")
                            };
                            for rows in super::writer::row_groups(rows) {
                                let mut df =
                                    silver::to_dataframe_with(contract, batch, rows, lineage)?;
                                file.write(&mut df)?;
                            }
                            if last_bucket {
                                open.file.close()?;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }

    /// Closes every partition file; in partition order, so manifests are reproducible.
    fn finish(self) -> Result<(Vec<StagedFile>, Vec<PartitionSummary>, ColumnStats), ProcessError> {
        let mut files = Vec::with_capacity(self.open.len());
        for (path, mut open) in self.open {
            let bytes = open.file.close()?;
            files.push(StagedFile {
                path: open.staged,
                file: WrittenFile {
                    key: open.key,
                    rows: self.partitions[&path].rows,
                    partition: path,
                    bytes,
                },
            });
        }
        Ok((files, self.partitions.into_values().collect(), self.stats))
    }

    fn collect_stats(&mut self, contract: &Contract, batch: &Batch, winners: &[u32]) {
        for (idx, column) in contract.columns.iter().enumerate() {
            if let Some(nulls) = self.stats.null_counts.get_mut(&column.name) {
                *nulls += winners
                    .iter()
                    .filter(|&&r| batch.is_null(idx, r as usize))
                    .count() as u64;
            }
            // Enum columns only (others have no codes to count).
            if let Some(found) = batch.enum_counts(idx, winners) {
                let counts = self
                    .stats
                    .value_counts
                    .entry(column.name.clone())
                    .or_default();
                for (value, n) in found {
                    *counts.entry(value.to_owned()).or_default() += n;
                }
            }
        }
        let newest = winners
            .iter()
            .filter_map(|&r| batch.i64(contract.version, r as usize))
            .max();
        self.max_version = self.max_version.max(newest);
        self.stats.max_version = self.max_version.map(values::format_timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::MAX_ROW_GROUP_ROWS;
    use super::*;

    #[test]
    fn bucket_plans_follow_size_and_budget() {
        const MB: u64 = 1024 * 1024;
        assert_eq!(plan_buckets(10 * MB, 512 * MB as usize), 1);
        assert_eq!(plan_buckets(0, 1), 1);
        // 850 MB of CSV under a 256 MB budget: about 1.3 GB of rows in ~85 MB buckets.
        assert_eq!(plan_buckets(850 * MB, 256 * MB as usize), 15);
        let gzip = |declared| expected_csv_bytes(85 * MB, true, declared);
        assert_eq!(plan_buckets(gzip(None), 256 * MB as usize), 15);
        // Trusting the trailer: a fourfold expansion fits in 6 buckets.
        assert_eq!(plan_buckets(gzip(Some(340 * MB)), 256 * MB as usize), 6);
        assert_eq!(plan_buckets(u64::MAX, 1), MAX_BUCKETS as usize);
    }

    #[test]
    fn a_spill_that_cannot_be_written_is_the_error_reported() {
        let registry = crate::contract::Registry::builtin();
        let mut csv = String::from(
            "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
        );
        for i in 0..20_000 {
            csv.push_str(&format!(
                "o{i},c{},2026-11-21T10:00:00Z,paid,EU,EUR,9.99,1,2026-11-21T10:00:00Z\n",
                i % 97
            ));
        }
        let work = tempfile::tempdir().unwrap();
        let missing = work.path().join("gone");
        let job = orders_job(&registry, &csv, 1024 * 1024, &missing);
        assert!(plan_buckets(job.input_bytes, job.memory_budget_bytes) > 1);
        match process_file(csv.as_bytes(), &job) {
            Err(ProcessError::WorkDir { path, .. }) => {
                assert!(path.starts_with(&missing) && path.to_string_lossy().contains("spill-"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// A job ingesting `csv` as orders under `budget`.
    fn orders_job<'a>(
        registry: &'a crate::contract::Registry,
        csv: &str,
        budget: usize,
        work_dir: &'a Path,
    ) -> FileJob<'a> {
        FileJob {
            contract: registry.get("orders").unwrap(),
            batch_id: "b",
            source_uri: "mem://test",
            ingested_at_micros: 0,
            input_bytes: csv.len() as u64,
            declared_csv_bytes: None,
            memory_budget_bytes: budget,
            work_dir,
            limits: Default::default(),
        }
    }

    /// `rows` orders of one day and region (one partition), the last tenth newer versions.
    fn one_partition_export(rows: usize) -> String {
        let mut csv = String::from(
            "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
        );
        for i in 0..rows {
            let (id, at) = if i >= rows - rows / 10 {
                (i % 1000, "12")
            } else {
                (i, "11")
            };
            csv.push_str(&format!(
                "o{id},c{},2026-11-21T10:00:00Z,paid,EU,EUR,9.99,1,2026-11-21T{at}:00:00Z\n",
                i % 97
            ));
        }
        csv
    }

    #[test]
    fn a_large_partition_is_written_in_capped_row_groups_and_every_row_read_back() {
        use polars::prelude::{ParquetReader, SerReader};
        let registry = crate::contract::Registry::builtin();
        // After dedup, between two and three caps: three row groups.
        let rows = 3 * MAX_ROW_GROUP_ROWS;
        let csv = one_partition_export(rows);
        // One bucket, and a budget that spills many: the last bucket finishes the file early.
        for budget in [512 << 20, 4 << 20] {
            let work = tempfile::tempdir().unwrap();
            let job = orders_job(&registry, &csv, budget, work.path());
            let FileOutcome::Processed(p) = process_file(csv.as_bytes(), &job).unwrap() else {
                panic!("rejected")
            };
            assert_eq!(p.files.len(), 1, "one partition");
            let kept = rows - rows / 10;
            assert_eq!(p.rows_written, kept as u64);
            assert_eq!(p.duplicates_dropped, (rows / 10) as u64);
            let f = &p.files[0];
            assert_eq!(f.file.bytes, std::fs::metadata(&f.path).unwrap().len());
            let mut reader = ParquetReader::new(File::open(&f.path).unwrap());
            let groups = reader.get_metadata().unwrap().row_groups.clone();
            assert!(
                groups.iter().all(|g| g.num_rows() <= MAX_ROW_GROUP_ROWS),
                "budget {budget}"
            );
            if p.buckets == 1 {
                assert_eq!(groups.len(), 3, "{kept} rows in one bucket");
            }
            let df = reader.finish().unwrap();
            assert_eq!(df.height(), kept, "budget {budget}");
            let distinct = df.column("order_id").unwrap().n_unique().unwrap();
            assert_eq!(distinct, kept, "every key once, budget {budget}");
        }
    }

    #[test]
    fn the_bucket_hash_is_stable() {
        // Changing it would regroup the row groups of a re-ingested source's files, which must
        // come out byte for byte the same.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"o-1"), stable_hash(b"o-1"));
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
