//! Small row groups, encoded as polars encodes them, without the cardinality estimate it
//! computes and then ignores.
//!
//! For a column that may be dictionary-encoded, polars' Parquet writer (polars-parquet 0.55,
//! `encode_as_dictionary_optional`) first tries a min/max shortcut for integers, and otherwise
//! estimates the column's distinct values with a HyperLogLog sketch of 16,384 registers to
//! decide between a dictionary and plain values. It heeds the estimate only above 128 rows:
//! at 128 rows or fewer it always casts the column to a dictionary (plain values where the cast
//! fails, as for decimals), yet it builds and counts the sketch first: a fixed cost of tens of
//! microseconds per column chunk. A night's late updates land as a few rows in each of many old
//! partitions (the 10% updates of one orders export reach 150 partitions): `perf` of that
//! ingest at 365 days of history put 27% of its CPU time in `HyperLogLog::count`. Here a chunk
//! that would reach the estimate is cast to the dictionary directly and handed to the same page
//! encoder, so the bytes are polars' own (a test compares the two writers on every contract's
//! columns). Their pages are compressed with a zstd context kept per thread, where polars makes
//! one per page ([`compressed`]).

use polars::prelude::*;
use polars_arrow::array::{Array, PrimitiveArray};
use polars_arrow::datatypes::{ArrowDataType, IntegerType, PhysicalType, PrimitiveType};
use polars_arrow::types::NativeType;
use polars_compute::cast::cast;
use polars_parquet::parquet::CowBuffer;
use polars_parquet::parquet::page::{CompressedDictPage, DataPageHeader};
use polars_parquet::read::ParquetError;
use polars_parquet::write::{
    CompressedDataPage, CompressedPage, CompressionOptions, DynStreamingIterator, Encoding,
    FallibleStreamingIterator, Page, ParquetType, RowGroupIterColumns, WriteOptions,
    array_to_columns, compress,
};

/// The most rows polars dictionary-encodes whatever their distinct count
/// (`array.len() > 128` guards its estimate's verdict).
const ALWAYS_DICTIONARY_ROWS: usize = 128;

/// Whether a row group of `rows` rows takes this path.
pub fn applies(rows: usize) -> bool {
    (1..=ALWAYS_DICTIONARY_ROWS).contains(&rows)
}

type Column = <RowGroupIterColumns<'static, PolarsError> as Iterator>::Item;

/// One column chunk of a small row group, encoded and compressed as polars' writer would.
pub fn pages(
    array: &ArrayRef,
    type_: &ParquetType,
    encoding: &[Encoding],
    options: WriteOptions,
) -> PolarsResult<Vec<Column>> {
    let encoded = if estimated(array.as_ref(), type_, encoding) {
        let dictionary =
            ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(array.dtype().clone()), false);
        match cast(array.as_ref(), &dictionary, Default::default()) {
            Ok(array) => array_to_columns(array, type_.clone(), options, encoding)?,
            // Where no dictionary can hold the type (decimals), polars falls back to plain
            // values.
            Err(_) => array_to_columns(array, type_.clone(), options, &[Encoding::Plain])?,
        }
    } else {
        array_to_columns(array, type_.clone(), options, encoding)?
    };
    // As polars-io's `pages_iter_to_compressor`, but zstd pages are compressed with this
    // thread's context ([`compressed`]).
    encoded
        .into_iter()
        .map(|pages| {
            let pages = pages
                .map(|page| {
                    page.map_err(|e| {
                        ParquetError::FeatureNotSupported(format!("reraised in polars: {e}"))
                    })
                    .and_then(|page| compressed(page, options.compression))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let column: Column = Ok(DynStreamingIterator::new(Compressed {
                pages: pages.into_iter(),
                current: None,
            }));
            Ok(column)
        })
        .collect()
}

/// A column chunk's pages, compressed already, as the page writer takes them.
struct Compressed {
    pages: std::vec::IntoIter<CompressedPage>,
    current: Option<CompressedPage>,
}

impl FallibleStreamingIterator for Compressed {
    type Item = CompressedPage;
    type Error = PolarsError;

    fn advance(&mut self) -> Result<(), PolarsError> {
        self.current = self.pages.next();
        Ok(())
    }

    fn get(&self) -> Option<&CompressedPage> {
        self.current.as_ref()
    }
}

thread_local! {
    /// This thread's zstd context and the level it was made for. `zstd::bulk::compress_to_buffer`,
    /// which polars-parquet calls per page, makes a context per call: a small partition's
    /// column chunk is two pages of a few hundred bytes, so making the context (and faulting in
    /// its tables) cost more than compressing them. On the orders ingest at 365 days of history
    /// (155 partition files, most of a few dozen rows) a context per thread took the process's
    /// task-clock from a median 327 to 269 ms (5 alternating runs; README, Performance).
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The highest zstd level whose pages a kept context compresses. Up to level 3 (zstd's default,
/// what silver uses) zstd's strategies are `fast` and `dfast`, whose output depends only on the
/// level and the input, so a kept context writes a fresh one's bytes. From the `greedy`
/// strategies on, zstd 1.5.5+ may use its row match finder, whose hash salt a reused context
/// advances at every reset: still valid zstd, but not polars' bytes.
const KEPT_CONTEXT_MAX_LEVEL: i32 = 3;

/// `page` compressed as polars-parquet's `compress` does (same codec, level and bytes), zstd up
/// to [`KEPT_CONTEXT_MAX_LEVEL`] with this thread's context.
fn compressed(page: Page, compression: CompressionOptions) -> Result<CompressedPage, ParquetError> {
    // As polars-parquet: no level is zstd's default (0, which zstd reads as 3).
    let level = match compression {
        CompressionOptions::Zstd(level) => level.map(|l| l.compression_level()).unwrap_or_default(),
        _ => return compress(page, vec![], compression),
    };
    if level > KEPT_CONTEXT_MAX_LEVEL {
        return compress(page, vec![], compression);
    }
    // Appends to `out`, as polars-parquet does: zstd writes from the start of the buffer it is
    // given, so it is given the space after what `out` holds (a v2 page's levels).
    let zstd = |input: &[u8], out: &mut Vec<u8>| -> Result<(), ParquetError> {
        ZSTD.with_borrow_mut(|slot| {
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                *slot = Some((level, zstd::bulk::Compressor::new(level)?));
            }
            let (_, context) = slot.as_mut().expect("made above");
            let start = out.len();
            out.resize(start + zstd::zstd_safe::compress_bound(input.len()), 0);
            let written = context.compress_to_buffer(input, &mut out[start..])?;
            out.truncate(start + written);
            Ok::<_, std::io::Error>(())
        })
        .map_err(ParquetError::from)
    };
    match page {
        Page::Data(page) => {
            let header = page.header().clone();
            let buffer = page.buffer();
            let mut out = Vec::new();
            // A v2 page keeps its levels uncompressed, ahead of the values.
            let levels = match &header {
                DataPageHeader::V1(_) => 0,
                DataPageHeader::V2(h) => {
                    (h.repetition_levels_byte_length + h.definition_levels_byte_length) as usize
                }
            };
            out.extend_from_slice(&buffer[..levels]);
            zstd(&buffer[levels..], &mut out)?;
            let num_rows = page.num_rows.ok_or_else(|| {
                ParquetError::InvalidParameter("a data page to write has no row count".into())
            })?;
            Ok(CompressedPage::Data(CompressedDataPage::new(
                header,
                CowBuffer::Owned(out),
                compression.into(),
                buffer.len(),
                page.descriptor,
                num_rows,
            )))
        }
        Page::Dict(page) => {
            let mut out = Vec::new();
            zstd(&page.buffer, &mut out)?;
            Ok(CompressedPage::Dict(CompressedDictPage::new(
                CowBuffer::Owned(out),
                compression.into(),
                page.buffer.len(),
                page.num_values,
                page.is_sorted,
            )))
        }
    }
}

/// Whether polars would estimate this chunk's distinct values: a flat column it would
/// dictionary-encode (`RleDictionary`), not already a dictionary, and not an integer whose
/// min/max shortcut decides on its own.
fn estimated(array: &dyn Array, type_: &ParquetType, encoding: &[Encoding]) -> bool {
    if !matches!(type_, ParquetType::PrimitiveType(_))
        || encoding != [Encoding::RleDictionary]
        || array.is_empty()
    {
        return false;
    }
    match array.dtype().to_physical_type() {
        PhysicalType::Dictionary(_) => false,
        PhysicalType::Primitive(p) => match p {
            PrimitiveType::Int8 => !decided::<i8>(array, u8::MAX.into()),
            PrimitiveType::Int16 => !decided::<i16>(array, u16::MAX.into()),
            PrimitiveType::Int32 => !decided::<i32>(array, u16::MAX.into()),
            PrimitiveType::Int64 => !decided::<i64>(array, u16::MAX.into()),
            PrimitiveType::UInt8 => !decided::<u8>(array, u8::MAX.into()),
            PrimitiveType::UInt16 => !decided::<u16>(array, u16::MAX.into()),
            PrimitiveType::UInt32 => !decided::<u32>(array, u16::MAX.into()),
            PrimitiveType::UInt64 => !decided::<u64>(array, u16::MAX.into()),
            _ => true,
        },
        _ => true,
    }
}

/// Whether polars' integer shortcut decides a chunk by itself: it has a non-null value, and
/// its max − min neither overflows nor exceeds `threshold` (polars-parquet's
/// `MinMaxThreshold::BITMASK_THRESHOLD`: `u8::MAX` for 8-bit integers, `u16::MAX` otherwise).
fn decided<T>(array: &dyn Array, threshold: u128) -> bool
where
    T: NativeType + Ord + Into<i128>,
{
    let Some(array) = array.as_any().downcast_ref::<PrimitiveArray<T>>() else {
        return false;
    };
    let mut values = array.non_null_values_iter();
    let Some(first) = values.next() else {
        return false;
    };
    let (min, max) = values.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // In i128 every difference of two 64-bit integers fits; polars' own `checked_sub` in the
    // type overflows only where the difference exceeds the type's range, far above the
    // threshold either way.
    let diff = max.into() - min.into();
    u128::try_from(diff).is_ok_and(|d| d <= threshold)
}

#[cfg(test)]
mod tests {
    use std::io::BufWriter;

    use polars::prelude::*;
    use proptest::prelude::*;

    use super::super::PartitionFile;
    use crate::contract::Registry;
    use crate::silver::silver_schema;

    /// A column of `dtype` with `n` values from `seed`: about `nulls` in 8 null, and values
    /// drawn from `spread` distinct ones (so some chunks repeat values and some do not; below
    /// 2^40, so a second's microseconds stay within an i64).
    fn column(
        name: &str,
        dtype: &DataType,
        n: usize,
        seed: u64,
        nulls: u64,
        spread: u64,
    ) -> Column {
        let mut state = seed ^ (name.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut draw = move || {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let values: Vec<Option<u64>> = (0..n)
            .map(|_| {
                let (v, null) = (draw(), draw() % 8 < nulls);
                (!null).then_some(v % spread.max(1))
            })
            .collect();
        let ints = |scale: i64| -> Vec<Option<i64>> {
            values.iter().map(|v| v.map(|v| v as i64 * scale)).collect()
        };
        let series = match dtype {
            DataType::String => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| format!("K-{v:08}")))
                    .collect::<Vec<_>>(),
            ),
            DataType::Boolean => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| v % 2 == 0))
                    .collect::<Vec<_>>(),
            ),
            DataType::Int8 => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| (v % 200) as i16 as i8))
                    .collect::<Vec<_>>(),
            ),
            DataType::Int32 => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| (v as i32).wrapping_mul(977)))
                    .collect::<Vec<_>>(),
            ),
            DataType::UInt64 => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| v.wrapping_mul(3)))
                    .collect::<Vec<_>>(),
            ),
            DataType::Int64 => Series::new(name.into(), ints(1)),
            DataType::Float64 => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| v as f64 / 7.0))
                    .collect::<Vec<_>>(),
            ),
            DataType::Date => Series::new(
                name.into(),
                values
                    .iter()
                    .map(|v| v.map(|v| 20_000 + (v % 40_000) as i32))
                    .collect::<Vec<_>>(),
            )
            .cast(dtype)
            .unwrap(),
            // Microseconds a second apart: past polars' integer shortcut.
            DataType::Datetime(_, _) => Series::new(name.into(), ints(1_000_000))
                .cast(dtype)
                .unwrap(),
            DataType::Decimal(_, _) => Series::new(name.into(), ints(1))
                .cast(&DataType::Int128)
                .unwrap()
                .cast(dtype)
                .unwrap(),
            other => panic!("no generator for {other:?}"),
        };
        series.into_column()
    }

    fn frame(schema: &Schema, n: usize, seed: u64, nulls: u64, spread: u64) -> DataFrame {
        let columns = schema
            .iter()
            .map(|(name, dtype)| column(name, dtype, n, seed, nulls, spread))
            .collect();
        DataFrame::new(n, columns).unwrap()
    }

    /// The bytes polars' own batched writer gives, with [`PartitionFile`]'s settings, `df`
    /// written in `groups` row groups of equal size (the last shorter).
    fn polars_bytes(df: &DataFrame, groups: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let out = BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut writer = ParquetWriter::new(out)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions::default())
            .set_parallel(false)
            .batched(df.schema())
            .unwrap();
        for part in parts(df, groups) {
            writer.write_batch(&part).unwrap();
        }
        writer.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    fn parts(df: &DataFrame, groups: usize) -> Vec<DataFrame> {
        let size = df.height().div_ceil(groups.max(1)).max(1);
        (0..df.height())
            .step_by(size)
            .map(|offset| df.slice(offset as i64, size))
            .collect()
    }

    fn our_bytes(df: &DataFrame, groups: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let mut file = PartitionFile::create(&path, df.schema(), 8 << 10).unwrap();
        for mut part in parts(df, groups) {
            file.write(&mut part).unwrap();
        }
        file.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    fn schemas() -> Vec<Schema> {
        let registry = Registry::builtin();
        let mut all: Vec<Schema> = registry.iter().map(|c| silver_schema(c).unwrap()).collect();
        all.push(Schema::from_iter([
            ("s".into(), DataType::String),
            ("b".into(), DataType::Boolean),
            ("i8".into(), DataType::Int8),
            ("i32".into(), DataType::Int32),
            ("i64".into(), DataType::Int64),
            ("u64".into(), DataType::UInt64),
            ("f".into(), DataType::Float64),
            ("d".into(), DataType::Date),
            ("t".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
            ("m".into(), DataType::Decimal(18, 2)),
        ]));
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Row groups of up to 128 rows (the path here) and just above it (polars' own) give
        /// exactly the file polars writes, for every contract's silver columns and more types:
        /// nulls from none to all, values from one distinct to all distinct.
        #[test]
        fn small_row_groups_write_polars_own_bytes(
            n in 1usize..=140,
            seed in any::<u64>(),
            nulls in 0u64..=8,
            spread in prop_oneof![Just(1u64), Just(3), Just(100), Just(1u64 << 40)],
        ) {
            for schema in schemas() {
                let df = frame(&schema, n, seed, nulls, spread);
                prop_assert!(our_bytes(&df, 1) == polars_bytes(&df, 1), "{n} rows of {schema:?}");
            }
        }
    }

    /// Several small row groups in one file (a partition written a bucket at a time) also
    /// match polars, one `write_batch` per group.
    #[test]
    fn several_small_row_groups_match_polars_group_by_group() {
        for schema in schemas() {
            let df = frame(&schema, 300, 7, 2, 50);
            assert!(our_bytes(&df, 3) == polars_bytes(&df, 3), "{schema:?}");
        }
    }

    /// Each page compressed here is the page polars-parquet's `compress` gives: v1 and v2
    /// pages (a v2 page keeps its levels ahead of the compressed values), zstd's default and
    /// other levels (above [`super::KEPT_CONTEXT_MAX_LEVEL`], polars' own call), one thread's
    /// context kept from page to page and level to level.
    #[test]
    fn compressed_pages_are_polars_own_for_every_page_version_and_level() {
        use polars_parquet::write::{
            CompressionOptions, Encoding, Version, WriteOptions, ZstdLevel, array_to_columns,
            compress, to_parquet_type,
        };
        let schema = schemas().pop().unwrap();
        let df = frame(&schema, 100, 11, 3, 3);
        let arrow = df.schema().to_arrow(CompatLevel::newest());
        let levels = [None, Some(1), Some(3), Some(9)];
        let mut pages = 0;
        for batch in df.iter_chunks(CompatLevel::newest(), false) {
            for (array, field) in batch.columns().iter().zip(arrow.iter_values()) {
                let type_ = to_parquet_type(field).unwrap();
                for version in [Version::V1, Version::V2] {
                    for level in levels {
                        let compression =
                            CompressionOptions::Zstd(level.map(|l| ZstdLevel::try_new(l).unwrap()));
                        let options = WriteOptions {
                            statistics: StatisticsOptions::default(),
                            version,
                            compression,
                            data_page_size: None,
                        };
                        let encoded = || {
                            array_to_columns(array, type_.clone(), options, &[Encoding::Plain])
                                .unwrap()
                                .into_iter()
                                .flatten()
                                .map(Result::unwrap)
                        };
                        for (ours, theirs) in encoded().zip(encoded()) {
                            let ours = super::compressed(ours, compression).unwrap();
                            let theirs = compress(theirs, vec![], compression).unwrap();
                            assert_eq!(
                                format!("{ours:?}"),
                                format!("{theirs:?}"),
                                "{} {version:?} {level:?}",
                                field.name
                            );
                            pages += 1;
                        }
                    }
                }
            }
        }
        assert!(pages >= schema.len() * 2 * levels.len(), "{pages} pages");
    }

    #[test]
    fn only_one_to_128_rows_take_this_path() {
        assert!(!super::applies(0));
        assert!(super::applies(1));
        assert!(super::applies(128));
        assert!(!super::applies(129));
    }
}
