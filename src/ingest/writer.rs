//! Writes a partition's silver Parquet file: zstd, min/max/null statistics, a row group per
//! bucket.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

/// One partition's zstd Parquet file, written a row group per bucket: a batch leaves one file
/// per partition however many buckets its memory budget needed.
pub struct PartitionFile {
    writer: polars::io::parquet::write::BatchedWriter<File>,
}

impl PartitionFile {
    pub fn create(path: &Path, schema: &Schema) -> PolarsResult<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let writer = ParquetWriter::new(File::create(path)?)
            .with_compression(ParquetCompression::Zstd(None))
            // min, max and nulls: what readers prune with (distinct counts cost a hash per value).
            .with_statistics(StatisticsOptions::default())
            // Ingest already encodes one partition per core; polars' own column parallelism
            // would only hand each column to its thread pool and back.
            .set_parallel(false)
            .batched(schema)?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, df: &mut DataFrame) -> PolarsResult<()> {
        df.rechunk_mut();
        self.writer.write_batch(df)
    }

    /// Writes the footer; returns the file's size in bytes.
    pub fn finish(self) -> PolarsResult<u64> {
        self.writer.finish()
    }
}
