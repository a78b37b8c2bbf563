//! Writes a partition's silver Parquet file: zstd, min/max/null statistics, row groups of at
//! most [`MAX_ROW_GROUP_ROWS`] rows, split anew for each bucket.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use polars::io::parquet::write::get_encodings;
use polars::prelude::*;
use polars_parquet::write::{DynIter, Encoding, ParquetType, Version, WriteOptions};

mod small;

/// Most rows in one row group. Each encoding thread holds its row group twice over, as a polars
/// frame and as encoded pages, and that memory is faulted in afresh (page faults are most of
/// ingest's system time here). A one-day export of 1 M orders has partitions of 200 k rows:
/// encoded whole, the two encoders took 80 MiB of ingest's 210 MiB peak; in row groups of
/// 50 k rows the peak was 161 MiB and the page faults 24% fewer (5 alternating runs), at the
/// same speed. The files grew 4.6% (17.4 to 18.2 MB; DuckDB's, of 122,880-row groups, are
/// 19.0 MB). Partitions of a wide export are far smaller and keep one row group a bucket.
pub const MAX_ROW_GROUP_ROWS: usize = 64 * 1024;

/// `rows` in order, in as few row groups as [`MAX_ROW_GROUP_ROWS`] allows, of about equal size:
/// a short last group would cost its own dictionaries and statistics for a few rows.
pub fn row_groups(rows: &[u32]) -> impl Iterator<Item = &[u32]> {
    let groups = rows.len().div_ceil(MAX_ROW_GROUP_ROWS).max(1);
    rows.chunks(rows.len().div_ceil(groups).max(1))
}

/// One partition's zstd Parquet file: a batch leaves one file per partition however many
/// buckets its memory budget needed.
pub struct PartitionFile {
    writer: polars::io::parquet::write::BatchedWriter<BufWriter<File>>,
    /// What the writer was built with, for [`small`]'s row groups.
    columns: Vec<(ParquetType, Vec<Encoding>)>,
    options: WriteOptions,
}

/// Output buffer of one partition file. The encoder writes every page header and footer piece
/// on its own (about 44 bytes each): unbuffered, 300 partitions of 1 M rows were 534,000 system
/// calls. Every open partition has one, so small budgets get small buffers.
pub fn buffer_bytes(memory_budget_bytes: usize) -> usize {
    if memory_budget_bytes < 64 << 20 {
        8 << 10
    } else {
        64 << 10
    }
}

impl PartitionFile {
    /// Creates the file at `path`, in a directory that exists.
    pub fn create(path: &Path, schema: &Schema, buffer_bytes: usize) -> PolarsResult<Self> {
        // The encoder flushes it when it writes the footer, so a write error is never lost.
        let out = BufWriter::with_capacity(buffer_bytes, File::create(path)?);
        let compression = ParquetCompression::Zstd(None);
        // min, max and nulls: what readers prune with (distinct counts cost a hash per value).
        let statistics = StatisticsOptions::default();
        let mut writer = ParquetWriter::new(out)
            .with_compression(compression)
            .with_statistics(statistics)
            // Ingest already encodes one partition per core; polars' own column parallelism
            // would only hand each column to its thread pool and back.
            .set_parallel(false)
            .batched(schema)?;
        let arrow = schema.to_arrow(CompatLevel::newest());
        let columns = writer
            .parquet_schema()
            .fields()
            .iter()
            .cloned()
            .zip(get_encodings(&arrow).iter().cloned())
            .collect();
        // As `ParquetWriter` builds them (`materialize_options`); a test holds the two
        // writers to the same bytes.
        let options = WriteOptions {
            statistics,
            compression: compression.into(),
            version: Version::V1,
            data_page_size: None,
        };
        Ok(Self {
            writer,
            columns,
            options,
        })
    }

    pub fn write(&mut self, df: &mut DataFrame) -> PolarsResult<()> {
        df.rechunk_mut();
        if !small::applies(df.height()) {
            return self.writer.write_batch(df);
        }
        // polars' own path would zip them the same way; a frame of other columns is a bug.
        polars_ensure!(
            df.width() == self.columns.len(),
            ShapeMismatch: "a frame of {} columns written to a partition file of {}",
            df.width(),
            self.columns.len()
        );
        for batch in df.iter_chunks(CompatLevel::newest(), false) {
            let mut columns = Vec::with_capacity(self.columns.len());
            for (array, (type_, encoding)) in batch.columns().iter().zip(&self.columns) {
                columns.extend(small::pages(array, type_, encoding, self.options)?);
            }
            let mut file = self.writer.get_writer().lock().map_err(
                |_| polars_err!(ComputeError: "a partition file's writer failed earlier"),
            )?;
            file.write(batch.len() as u64, DynIter::new(columns.into_iter()))?;
        }
        Ok(())
    }

    /// Writes the footer; returns the file's size in bytes.
    pub fn finish(self) -> PolarsResult<u64> {
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_of_other_columns_is_an_error_not_a_short_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::from_iter([
            ("a".into(), DataType::String),
            ("b".into(), DataType::Int64),
        ]);
        let mut file =
            PartitionFile::create(&dir.path().join("p.parquet"), &schema, 8 << 10).unwrap();
        let mut df = DataFrame::new(2, vec![Column::new("a".into(), ["x", "y"])]).unwrap();
        let err = file.write(&mut df).unwrap_err();
        assert!(err.to_string().contains("1 columns"), "{err}");
    }

    #[test]
    fn row_groups_are_as_few_as_the_cap_allows_and_about_equal() {
        let max = MAX_ROW_GROUP_ROWS;
        for n in [
            0,
            1,
            7,
            max - 1,
            max,
            max + 1,
            3 * max,
            3 * max + 1,
            200_000,
            1_000_003,
        ] {
            let rows: Vec<u32> = (0..n as u32).collect();
            let groups: Vec<&[u32]> = row_groups(&rows).collect();
            assert_eq!(groups.len(), n.div_ceil(max), "{n} rows");
            assert_eq!(groups.concat(), rows, "{n} rows, in order");
            let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            let (low, high) = (sizes.iter().min(), sizes.iter().max());
            assert!(high.is_none_or(|&h| h <= max), "{n} rows: {sizes:?}");
            // Shorter only by what an even split cannot spread: less than one row a group.
            if let (Some(low), Some(high)) = (low, high) {
                assert!(high - low < groups.len(), "{n} rows: {sizes:?}");
            }
        }
    }
}
