//! Turns a byte stream into CSV records: transparent gzip (detected by its magic bytes, not the
//! name), RFC 4180 quoting, CRLF, LF or CR line ends, and a leading UTF-8 byte-order mark.
//!
//! Built on `csv-core` rather than `csv::Reader` because rejected rows must carry the physical
//! source line they start on, and `csv::Reader` miscounts lines after CRLF and blank lines.

use std::io::{self, Cursor, Read};

use csv_core::ReadRecordResult;
use flate2::read::MultiGzDecoder;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// What a hostile or broken file may cost before it is rejected whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Longest record (its bytes and field ends); a longer one rejects the file. One endless
    /// field (a file of zeros, a quote never closed) must not take the memory with it.
    pub max_record_bytes: usize,
    /// Most bytes a gzip may decompress to per byte it holds: CSV compresses 5 to 15 times, so
    /// far more is a bomb, not an export.
    pub max_gzip_expansion: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_record_bytes: 1024 * 1024,
            max_gzip_expansion: 100,
        }
    }
}

/// Decompressed gzip cut off, with an error, past `limit` bytes, or past `planned` bytes
/// (a [`PlanExceeded`] error: memory was planned for less than the source holds).
struct Bounded<R> {
    inner: R,
    read: u64,
    limit: u64,
    expansion: u64,
    planned: u64,
}

/// A gzip source decompressed to more than the size its trailer declared (it has several
/// members, so the trailer gave only the last one's size): the memory plan no longer holds,
/// and the file must be processed again under the conservative one.
#[derive(Debug, thiserror::Error)]
#[error("the gzip source holds more than the {planned} bytes its trailer declares")]
pub struct PlanExceeded {
    pub planned: u64,
}

/// Whether reading stopped because the source outgrew its plan.
pub fn is_plan_exceeded(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<PlanExceeded>())
}

/// The CSV size to plan memory for when a gzip source of `stored_bytes` declares `declared`
/// bytes in its trailer (ISIZE), or `None` when that says nothing about the whole.
///
/// ISIZE is only the last member's size, modulo 4 GiB: a source with several members (`cat`,
/// `bgzip`) or past 4 GiB declares less than it holds. Text compresses at least twofold, so a
/// smaller figure is dismissed here; a plausible but short one is caught while reading
/// ([`PlanExceeded`]).
pub fn declared_gzip_size(stored_bytes: u64, declared: u32) -> Option<u64> {
    let declared = u64::from(declared);
    (stored_bytes > 0 && declared >= stored_bytes.saturating_mul(2)).then_some(declared)
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.planned {
            return Err(io::Error::other(PlanExceeded {
                planned: self.planned,
            }));
        }
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it decompresses to more than {} MiB, over {} times its compressed size: a gzip bomb or a broken archive (raise LAKE_MAX_GZIP_EXPANSION if such exports are real)",
                    self.limit >> 20,
                    self.expansion
                ),
            ));
        }
        Ok(n)
    }
}

/// One parsed record, borrowed from the reader until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Physical line (1-based) the record starts on.
    pub line: u64,
    data: &'a [u8],
    ends: &'a [usize],
}

impl<'a> RawRecord<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn field(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    pub fn fields(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(|i| self.field(i))
    }

    /// All field bytes concatenated (for a single UTF-8 check).
    pub fn concatenated(&self) -> &'a [u8] {
        &self.data[..self.ends.last().copied().unwrap_or(0)]
    }
}

/// An owned record, for building records outside a reader (tests, generated input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub line: u64,
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl OwnedRecord {
    pub fn new<F: AsRef<[u8]>>(line: u64, fields: &[F]) -> Self {
        let (mut data, mut ends) = (Vec::new(), Vec::new());
        for f in fields {
            data.extend_from_slice(f.as_ref());
            ends.push(data.len());
        }
        OwnedRecord { line, data, ends }
    }

    pub fn as_raw(&self) -> RawRecord<'_> {
        RawRecord {
            line: self.line,
            data: &self.data,
            ends: &self.ends,
        }
    }
}

/// Records copied out of a reader, so they can be validated on another thread.
#[derive(Debug, Default)]
pub struct RecordChunk {
    data: Vec<u8>,
    /// Field ends of every record, each relative to its record's start (as in [`RawRecord`]).
    ends: Vec<usize>,
    /// Per record: source line, end of its bytes in `data`, end of its fields in `ends`.
    records: Vec<(u64, usize, usize)>,
}

impl RecordChunk {
    pub fn push(&mut self, record: &RawRecord<'_>) {
        self.data.extend_from_slice(record.data);
        self.ends.extend_from_slice(record.ends);
        self.records
            .push((record.line, self.data.len(), self.ends.len()));
    }

    pub fn get(&self, i: usize) -> RawRecord<'_> {
        let (data_start, ends_start) = match i {
            0 => (0, 0),
            _ => (self.records[i - 1].1, self.records[i - 1].2),
        };
        let (line, data_end, ends_end) = self.records[i];
        RawRecord {
            line,
            data: &self.data[data_start..data_end],
            ends: &self.ends[ends_start..ends_end],
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of record data held.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.records.clear();
    }
}

/// Counts physical lines: `\n`, `\r\n` and a lone `\r` each end one.
#[derive(Debug, Default)]
struct LineCounter {
    line: u64,
    prev_cr: bool,
}

impl LineCounter {
    fn advance(&mut self, bytes: &[u8]) {
        // Every byte of the input passes through here: jump between line ends, not byte by byte.
        let mut after_cr = self.prev_cr;
        let mut next = 0;
        for i in memchr::memchr2_iter(b'\n', b'\r', bytes) {
            let crlf = bytes[i] == b'\n' && after_cr && i == next;
            if !crlf {
                self.line += 1;
            }
            after_cr = bytes[i] == b'\r';
            next = i + 1;
        }
        if let Some(&last) = bytes.last() {
            self.prev_cr = last == b'\r';
        }
    }
}

/// A streaming CSV record reader that tracks source lines.
pub struct RecordReader<R> {
    inner: R,
    max_record_bytes: usize,
    core: csv_core::Reader,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    out: Vec<u8>,
    ends: Vec<usize>,
    lines: LineCounter,
    first: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(inner: R) -> Self {
        RecordReader {
            inner,
            max_record_bytes: InputLimits::default().max_record_bytes,
            core: csv_core::Reader::new(),
            buf: vec![0; READ_BUFFER_BYTES],
            pos: 0,
            len: 0,
            eof: false,
            out: vec![0; 4096],
            ends: vec![0; 64],
            lines: LineCounter {
                line: 1,
                prev_cr: false,
            },
            first: true,
        }
    }

    fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// Grows a record buffer, or refuses when the record would pass the limit.
    fn grow(&self, current: usize, unit: usize, line: u64) -> io::Result<usize> {
        if current * unit >= self.max_record_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the record starting on line {line} is longer than {} KiB (a quote never closed, or no line ends at all); raise LAKE_MAX_RECORD_KB if such records are real",
                    self.max_record_bytes >> 10
                ),
            ));
        }
        Ok(current * 2)
    }

    fn refill(&mut self) -> io::Result<()> {
        if self.pos < self.len || self.eof {
            return Ok(());
        }
        // A full buffer (short only at end of input) also guarantees a whole BOM is visible.
        let n = read_up_to(&mut self.inner, &mut self.buf)?;
        self.pos = 0;
        self.len = n;
        self.eof = n < self.buf.len();
        Ok(())
    }

    /// The next record, or `None` at the end of input. A UTF-8 BOM before the first record is dropped.
    pub fn next_record(&mut self) -> io::Result<Option<RawRecord<'_>>> {
        let (mut out_len, mut n_ends) = (0, 0);
        let mut start_line = None;
        loop {
            self.refill()?;
            if start_line.is_none() {
                // Skip blank lines ourselves so the record's first line is known exactly.
                let input = &self.buf[self.pos..self.len];
                let mut skip = input
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                if self.first && skip == 0 && input.starts_with(UTF8_BOM) {
                    skip = UTF8_BOM.len();
                } else {
                    self.lines.advance(&input[..skip]);
                }
                self.pos += skip;
                if self.pos == self.len && !self.eof {
                    continue;
                }
                self.first = false;
                start_line = Some(self.lines.line);
            }
            let input = &self.buf[self.pos..self.len];
            let (result, n_in, n_out, n_end) =
                self.core
                    .read_record(input, &mut self.out[out_len..], &mut self.ends[n_ends..]);
            self.lines.advance(&input[..n_in]);
            self.pos += n_in;
            out_len += n_out;
            n_ends += n_end;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let line = start_line.unwrap_or(self.lines.line);
                    let size = self.grow(self.out.len(), 1, line)?;
                    self.out.resize(size, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let line = start_line.unwrap_or(self.lines.line);
                    let size = self.grow(self.ends.len(), size_of::<usize>(), line)?;
                    self.ends.resize(size, 0);
                }
                ReadRecordResult::Record => {
                    return Ok(Some(RawRecord {
                        line: start_line.unwrap_or(self.lines.line),
                        data: &self.out[..out_len],
                        ends: &self.ends[..n_ends],
                    }));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

/// Reads up to `buf.len()` bytes, fewer only at end of input.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A record reader over `input`, decompressing it when it is gzip. Returns whether it was.
#[cfg(test)]
pub(crate) fn csv_reader<'a>(
    input: impl Read + Send + 'a,
) -> io::Result<(RecordReader<Box<dyn Read + Send + 'a>>, bool)> {
    limited_csv_reader(input, u64::MAX, InputLimits::default(), None)
}

/// [`csv_reader`] for a source of `stored_bytes` under `limits`. A gzip source that
/// decompresses past `planned` bytes stops with a [`PlanExceeded`] error.
pub fn limited_csv_reader<'a>(
    mut input: impl Read + Send + 'a,
    stored_bytes: u64,
    limits: InputLimits,
    planned: Option<u64>,
) -> io::Result<(RecordReader<Box<dyn Read + Send + 'a>>, bool)> {
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut input, &mut magic)?;
    let rejoined = Cursor::new(magic[..n].to_vec()).chain(input);
    let gzip = magic[..n] == GZIP_MAGIC;
    let decoded: Box<dyn Read + Send + 'a> = if gzip {
        let decoder =
            MultiGzDecoder::new(io::BufReader::with_capacity(READ_BUFFER_BYTES, rejoined));
        Box::new(Bounded {
            inner: decoder,
            read: 0,
            // Small files may expand further without harm: the floor is 64 MiB.
            limit: stored_bytes
                .saturating_mul(limits.max_gzip_expansion)
                .max(64 << 20),
            expansion: limits.max_gzip_expansion,
            planned: planned.unwrap_or(u64::MAX),
        })
    } else {
        Box::new(rejoined)
    };
    let reader = RecordReader::new(decoded).with_max_record_bytes(limits.max_record_bytes);
    Ok((reader, gzip))
}

/// Whether a read error means the content itself is broken (bad input, not worth a retry).
pub fn is_corrupt_input(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn records(bytes: &[u8]) -> Vec<(u64, Vec<String>)> {
        let (mut r, _) = csv_reader(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((
                rec.line,
                rec.fields()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            ));
        }
        out
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn quoting_line_endings_blank_lines_and_bom() {
        let want = vec![
            (1, s(&["id", "note"])),
            (2, s(&["1", "a, \"quoted\"\nvalue"])),
            (4, s(&["2", "plain"])),
            (6, s(&["3", ""])),
            (7, s(&["4", "last"])),
        ];
        let lf = b"\xEF\xBB\xBFid,note\n1,\"a, \"\"quoted\"\"\nvalue\"\n2,plain\n\n3,\"\"\n4,last";
        assert_eq!(records(lf), want);
        let crlf: Vec<u8> = String::from_utf8_lossy(lf)
            .replace('\n', "\r\n")
            .into_bytes();
        let got = records(&crlf);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 4, 6, 7]);
        assert_eq!(got[1].1[1], "a, \"quoted\"\r\nvalue");
        let cr: Vec<u8> = String::from_utf8_lossy(lf).replace('\n', "\r").into_bytes();
        assert_eq!(
            records(&cr).iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 4, 6, 7]
        );
    }

    #[test]
    fn a_chunk_gives_back_the_records_it_was_given() {
        let input = b"id,note\n1,\"a\nb\"\n\n2,\n,\n";
        let (mut r, _) = csv_reader(&input[..]).unwrap();
        let mut chunk = RecordChunk::default();
        while let Some(rec) = r.next_record().unwrap() {
            chunk.push(&rec);
        }
        let got: Vec<(u64, Vec<String>)> = (0..chunk.len())
            .map(|i| {
                let rec = chunk.get(i);
                let fields = rec
                    .fields()
                    .map(|f| String::from_utf8_lossy(f).into_owned());
                (rec.line, fields.collect())
            })
            .collect();
        assert_eq!(got, records(input));
        assert_eq!(chunk.len(), 4);
        chunk.clear();
        assert!(chunk.is_empty() && chunk.data_bytes() == 0);
    }

    #[test]
    fn line_counting_matches_a_byte_by_byte_count_however_the_input_is_split() {
        // \n, \r\n and a lone \r each end a line; a \r\n split across calls ends one.
        let naive = |bytes: &[u8]| {
            let (mut lines, mut prev_cr) = (1u64, false);
            for &b in bytes {
                lines += u64::from(b == b'\r' || (b == b'\n' && !prev_cr));
                prev_cr = b == b'\r';
            }
            lines
        };
        let input = b"a\r\nb\n\rc\r\r\n\n\rd\r";
        for split in 0..=input.len() {
            for second in split..=input.len() {
                let mut counter = LineCounter {
                    line: 1,
                    prev_cr: false,
                };
                counter.advance(&input[..split]);
                counter.advance(&input[split..second]);
                counter.advance(&input[second..]);
                assert_eq!(counter.line, naive(input), "split at {split} and {second}");
            }
        }
    }

    #[test]
    fn line_numbers_survive_buffer_boundaries() {
        let mut data = b"h\r\n".to_vec();
        for i in 0..100_000 {
            data.extend_from_slice(format!("{i}\r\n").as_bytes());
        }
        let got = records(&data);
        assert_eq!(got.len(), 100_001);
        assert!(got.iter().enumerate().all(|(i, r)| r.0 == i as u64 + 1));
    }

    #[test]
    fn empty_and_header_only_inputs() {
        assert!(records(b"").is_empty());
        assert!(records(b"\r\n\n").is_empty());
        assert_eq!(records(b"a,b\r\n"), vec![(1, s(&["a", "b"]))]);
    }

    #[test]
    fn gzip_is_detected_by_content() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a,b\n1,2\n").unwrap();
        let bytes = gz.finish().unwrap();
        assert!(csv_reader(bytes.as_slice()).unwrap().1);
        assert_eq!(
            records(&bytes),
            vec![(1, s(&["a", "b"])), (2, s(&["1", "2"]))]
        );
        assert!(!csv_reader(&b"a"[..]).unwrap().1);
        assert!(!csv_reader(&b""[..]).unwrap().1);
    }

    #[test]
    fn truncated_gzip_is_corrupt_input() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"a,b\n1,2\n".repeat(1000)).unwrap();
        let bytes = gz.finish().unwrap();
        let (mut r, _) = csv_reader(&bytes[..bytes.len() / 2]).unwrap();
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("truncation not noticed"),
                Err(e) => break e,
            }
        };
        assert!(is_corrupt_input(&err), "{err:?}");
    }
}
