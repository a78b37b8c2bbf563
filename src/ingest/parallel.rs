//! Validation of a file's records in chunks: parsed on the calling thread, validated on worker
//! threads, and handed back in source order, so the result is the same as validating inline.
//!
//! Parsing is sequential (a quoted field may hide any number of line ends), but validation is
//! most of the per-row work and needs nothing but the record, so it spreads over the cores.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};

use super::input::{RecordChunk, RecordReader};
use super::process::ProcessError;
use super::row_validator::RowValidator;
use crate::columns::Batch;

/// A chunk's records after validation.
pub struct Validated {
    /// The records themselves (rejected rows are quarantined with their raw fields).
    pub chunk: RecordChunk,
    /// Valid rows grouped by bucket and, within a bucket, by partition; in record order within
    /// a partition.
    pub rows: Batch,
    /// The bucket of each run of `rows`, in bucket order. Grouping here, on the workers, leaves
    /// the merger one bulk append per bucket instead of one per row.
    pub runs: Vec<(u32, Range<usize>)>,
    /// Rejected records: index in `chunk` and the reasons.
    pub rejects: Vec<(u32, Vec<String>)>,
    /// The other row buffer, travelling along to be reused.
    spare: Batch,
}

impl Validated {
    fn into_buffers(self) -> Buffers {
        Buffers {
            chunk: self.chunk,
            valid: self.spare,
            grouped: self.rows,
        }
    }
}

/// The buffers one chunk needs, reused from chunk to chunk.
pub struct Buffers {
    chunk: RecordChunk,
    /// Valid rows in record order, before grouping.
    valid: Batch,
    grouped: Batch,
}

impl Buffers {
    fn new(plan: &Plan<'_, '_>) -> Self {
        Buffers {
            chunk: RecordChunk::default(),
            valid: Batch::new(plan.validator.contract()),
            grouped: Batch::new(plan.validator.contract()),
        }
    }
}

/// How records are validated and grouped.
pub struct Plan<'a, 'c> {
    pub validator: &'a RowValidator<'c>,
    /// Bucket of row `row` of a validated batch.
    pub route: &'a (dyn Fn(&Batch, usize) -> u32 + Sync),
    /// A hash of the partition of row `row`. Rows of a partition are kept together, so the
    /// Parquet writer, which builds one partition at a time, reads runs of rows instead of
    /// single rows scattered over the whole bucket.
    pub partition: &'a (dyn Fn(&Batch, usize) -> u64 + Sync),
    /// Worker threads; 0 validates on the calling thread.
    pub workers: usize,
    /// Record bytes per chunk.
    pub chunk_bytes: usize,
}

/// Why reading stopped before the end of the input.
pub enum Stop {
    /// The source could not be read or decoded; the caller decides which.
    Read(io::Error),
    /// Handing a chunk on failed.
    Merge(ProcessError),
}

fn validate_chunk(plan: &Plan<'_, '_>, buffers: Buffers) -> Validated {
    let Buffers {
        chunk,
        mut valid,
        mut grouped,
    } = buffers;
    valid.clear();
    let (mut order, mut rejects) = (Vec::with_capacity(chunk.len()), Vec::new());
    for i in 0..chunk.len() {
        match plan.validator.validate_into(&chunk.get(i), &mut valid) {
            Ok(()) => {
                let row = valid.len() - 1;
                let bucket = (plan.route)(&valid, row);
                order.push((bucket, (plan.partition)(&valid, row), row as u32));
            }
            Err(reasons) => rejects.push((i as u32, reasons)),
        }
    }
    // The row index last: sorted, a partition keeps its rows in record order.
    let grouped_already = order.is_sorted();
    if !grouped_already {
        order.sort_unstable();
    }
    let mut runs: Vec<(u32, Range<usize>)> = Vec::new();
    for (at, &(bucket, _, _)) in order.iter().enumerate() {
        match runs.last_mut() {
            Some((b, rows)) if *b == bucket => rows.end = at + 1,
            _ => runs.push((bucket, at..at + 1)),
        }
    }
    let rows = if grouped_already {
        // Hand the rows on as they are.
        std::mem::swap(&mut valid, &mut grouped);
        grouped
    } else {
        let order: Vec<u32> = order.iter().map(|&(_, _, row)| row).collect();
        grouped.clear();
        grouped.gather(&valid, &order);
        grouped
    };
    Validated {
        chunk,
        rows,
        runs,
        rejects,
        spare: valid,
    }
}

/// Fills `chunk` with the next records; returns whether the input has more.
fn fill(
    reader: &mut RecordReader<impl Read>,
    chunk: &mut RecordChunk,
    chunk_bytes: usize,
    rows_read: &mut u64,
) -> io::Result<bool> {
    chunk.clear();
    while chunk.data_bytes() < chunk_bytes {
        match reader.next_record()? {
            Some(record) => {
                chunk.push(&record);
                *rows_read += 1;
            }
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Reads every remaining record of `reader`, validates it and passes the results to `merge`,
/// chunk by chunk in source order. `rows_read` counts the records parsed, also when reading fails.
pub fn validate_records<R: Read + Send>(
    reader: &mut RecordReader<R>,
    plan: &Plan<'_, '_>,
    rows_read: &mut u64,
    mut merge: impl FnMut(&Validated) -> Result<(), ProcessError>,
) -> Result<(), Stop> {
    if plan.workers == 0 {
        let mut buffers = Buffers::new(plan);
        loop {
            let more = fill(reader, &mut buffers.chunk, plan.chunk_bytes, rows_read)
                .map_err(Stop::Read)?;
            let done = validate_chunk(plan, buffers);
            merge(&done).map_err(Stop::Merge)?;
            buffers = done.into_buffers();
            if !more {
                return Ok(());
            }
        }
    }
    // Three stages run at once: this thread parses, workers validate, and the calling thread
    // merges (routing rows to buckets costs as much as parsing, so neither can take the other's
    // place). A fixed set of chunk buffers circulates between them, which bounds memory.
    let (free_tx, free_rx) = mpsc::channel::<Buffers>();
    for _ in 0..plan.workers * 2 {
        free_tx
            .send(Buffers::new(plan))
            .expect("receiver held here");
    }
    let (work_tx, work_rx) = mpsc::channel::<(u64, Buffers)>();
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Message>();
    std::thread::scope(|scope| {
        for _ in 0..plan.workers {
            let (work_rx, done_tx) = (&work_rx, done_tx.clone());
            scope.spawn(move || {
                loop {
                    let job = work_rx
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .recv();
                    let Ok((seq, buffers)) = job else { return };
                    // A panic is passed on to the merger, which would otherwise wait for it forever.
                    let done =
                        panic::catch_unwind(AssertUnwindSafe(|| validate_chunk(plan, buffers)));
                    if done_tx.send(Message::Chunk(seq, done)).is_err() {
                        return;
                    }
                }
            });
        }
        let reader_done = done_tx.clone();
        scope.spawn(move || {
            // Owned here: when reading ends, however it ends, the workers see the channel close.
            let work_tx = work_tx;
            let (mut sent, mut rows) = (0u64, 0u64);
            let result = loop {
                // No free buffer ever again means the merger has stopped.
                let Ok(mut buffers) = free_rx.recv() else {
                    break Ok(());
                };
                let more = match fill(reader, &mut buffers.chunk, plan.chunk_bytes, &mut rows) {
                    Ok(more) => more,
                    Err(e) => break Err(e),
                };
                if !buffers.chunk.is_empty() {
                    if work_tx.send((sent, buffers)).is_err() {
                        break Ok(());
                    }
                    sent += 1;
                }
                if !more {
                    break Ok(());
                }
            };
            let _ = reader_done.send(Message::End {
                chunks: sent,
                rows_read: rows,
                result,
            });
        });
        drop(done_tx);
        // Owned here: if merging stops early, the reader and the workers see their channels close.
        let (done_rx, free_tx) = (done_rx, free_tx);
        let mut waiting = BTreeMap::new();
        let mut merged = 0u64;
        let mut end = None;
        loop {
            if let Some(chunks) = end
                && merged == chunks
            {
                return Ok(());
            }
            match done_rx
                .recv()
                .expect("the reader reports its end before it stops")
            {
                Message::End {
                    chunks,
                    rows_read: rows,
                    result,
                } => {
                    *rows_read += rows;
                    result.map_err(Stop::Read)?;
                    end = Some(chunks);
                }
                Message::Chunk(seq, done) => {
                    let done = done.unwrap_or_else(|payload| panic::resume_unwind(payload));
                    waiting.insert(seq, done);
                    while let Some(done) = waiting.remove(&merged) {
                        merge(&done).map_err(Stop::Merge)?;
                        // The reader may have finished and gone; then nobody needs the buffers.
                        let _ = free_tx.send(done.into_buffers());
                        merged += 1;
                    }
                }
            }
        }
    })
}

/// What the merger hears from the reader and the workers.
enum Message {
    Chunk(u64, std::thread::Result<Validated>),
    End {
        chunks: u64,
        rows_read: u64,
        result: io::Result<()>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use crate::ingest::input::csv_reader;

    const HEADER: &str = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";

    fn export(rows: usize) -> String {
        let mut csv = HEADER.to_owned();
        for i in 0..rows {
            // Every seventh row breaks a rule, every fifth has a quoted line end in its id.
            let amount = if i % 7 == 3 { "-1" } else { "9.99" };
            let id = if i % 5 == 0 {
                format!("\"o\n{i}\"")
            } else {
                format!("o{i}")
            };
            csv.push_str(&format!(
                "{id},c{},2026-11-21T10:00:00Z,paid,EU,EUR,{amount},1,2026-11-21T10:00:00Z\n",
                i % 13
            ));
        }
        csv
    }

    /// What `merge` saw: (line, bucket, partition) per valid row and (line, reasons) per reject,
    /// in order.
    type Seen = (Vec<(u64, u32, u64)>, Vec<(u64, String)>);

    fn run(
        csv: &[u8],
        workers: usize,
        fail_at_chunk: Option<usize>,
    ) -> (Result<(), String>, Seen, u64) {
        let registry = Registry::builtin();
        let contract = registry.get("orders").unwrap();
        let (mut reader, _) = csv_reader(csv).unwrap();
        let header = reader.next_record().unwrap().unwrap();
        let validator = RowValidator::bind(contract, &header).unwrap();
        let route = |rows: &Batch, row: usize| rows.str(0, row).unwrap().len() as u32 % 3;
        // Partitions by the customer (the second column).
        let partition = |rows: &Batch, row: usize| rows.str(1, row).unwrap().len() as u64;
        let plan = Plan {
            validator: &validator,
            route: &route,
            partition: &partition,
            workers,
            chunk_bytes: 200,
        };
        let (mut seen, mut chunks, mut rows_read): (Seen, usize, u64) = Default::default();
        let result = validate_records(&mut reader, &plan, &mut rows_read, |done| {
            if Some(chunks) == fail_at_chunk {
                return Err(ProcessError::Read(io::Error::other("merge failed")));
            }
            chunks += 1;
            for (bucket, rows) in &done.runs {
                let partitions: Vec<u64> = rows.clone().map(|r| partition(&done.rows, r)).collect();
                assert!(
                    partitions.is_sorted(),
                    "a run keeps each partition together"
                );
                for row in rows.clone() {
                    assert_eq!(route(&done.rows, row), *bucket);
                    seen.0
                        .push((done.rows.lines[row], *bucket, partition(&done.rows, row)));
                }
            }
            for (i, reasons) in &done.rejects {
                seen.1
                    .push((done.chunk.get(*i as usize).line, reasons.join("; ")));
            }
            Ok(())
        });
        let result = result.map_err(|stop| match stop {
            Stop::Read(e) => format!("read: {e}"),
            Stop::Merge(e) => format!("merge: {e}"),
        });
        (result, seen, rows_read)
    }

    #[test]
    fn workers_give_the_same_result_in_the_same_order_as_inline() {
        let csv = export(500);
        let (result, inline, read) = run(csv.as_bytes(), 0, None);
        assert!(result.is_ok());
        assert_eq!(read, 500);
        assert_eq!(inline.0.len() + inline.1.len(), 500);
        assert_eq!(inline.1.len(), (0..500).filter(|i| i % 7 == 3).count());
        assert!(inline.1[0].1.contains("total_amount"), "{:?}", inline.1[0]);
        // Record order within a partition of a bucket.
        let groups: std::collections::BTreeSet<(u32, u64)> =
            inline.0.iter().map(|r| (r.1, r.2)).collect();
        assert!(groups.len() > 3, "{groups:?}");
        for (bucket, part) in groups {
            let lines: Vec<u64> = inline
                .0
                .iter()
                .filter(|r| (r.1, r.2) == (bucket, part))
                .map(|r| r.0)
                .collect();
            assert!(lines.is_sorted(), "bucket {bucket}, partition {part}");
        }
        for workers in [1, 2, 5] {
            let (result, threaded, read) = run(csv.as_bytes(), workers, None);
            assert!(result.is_ok());
            assert_eq!(read, 500);
            assert_eq!(threaded, inline, "{workers} workers");
        }
    }

    #[test]
    fn a_failed_merge_stops_the_workers_and_is_returned() {
        let csv = export(300);
        for workers in [0, 2] {
            let (result, seen, read) = run(csv.as_bytes(), workers, Some(2));
            assert_eq!(
                result,
                Err("merge: reading the source failed: merge failed".into())
            );
            assert!(
                read < 300 && !seen.0.is_empty(),
                "{workers} workers, {read} read"
            );
        }
    }

    #[test]
    fn a_read_failure_keeps_the_count_of_records_parsed() {
        // Larger than the reader's buffer, so the header is read before the stream breaks off.
        let csv = export(6000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let truncated = &gz[..gz.len() * 2 / 3];
        for workers in [0, 2] {
            let (result, _, read) = run(truncated, workers, None);
            assert!(result.unwrap_err().starts_with("read: "));
            assert!(read > 0 && read < 6000, "{workers} workers, {read} read");
        }
    }
}
