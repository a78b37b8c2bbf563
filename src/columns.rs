//! Typed, columnar storage for validated rows: what the validator fills, deduplication reads,
//! spill files hold and the Parquet writer consumes. Values are kept in their physical form
//! (days, microseconds, scaled integers) so nothing is re-parsed after validation.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use crate::contract::{ColumnKind, Contract, Physical};
use crate::varint;

/// One column: its values, and for each row whether it has one.
#[derive(Debug, Clone)]
struct ColumnBuffer {
    valid: Validity,
    values: Values,
}

/// Which rows of a column have a value. Nothing is held while every row has one (most columns
/// are required): a byte per row per column was 9 MB of a 1 M-row orders bucket, memory faulted
/// in for nothing. Once a null arrives, one `bool` per row, `false` for a null; the list is
/// never kept without a null in it, so two columns with the same rows compare the same.
#[derive(Debug, Clone, Default)]
struct Validity(Option<Vec<bool>>);

impl Validity {
    fn get(&self, row: usize) -> bool {
        self.0.as_ref().is_none_or(|v| v[row])
    }

    fn all_valid(&self) -> bool {
        self.0.is_none()
    }

    /// The list, started for a column of `len` rows (all valid so far) if there was none.
    fn list(&mut self, len: usize) -> &mut Vec<bool> {
        self.0.get_or_insert_with(|| vec![true; len])
    }

    /// Appends one row to a column; `len` gives its rows before this one, asked only when the
    /// list starts (this runs for every value validated).
    fn push(&mut self, present: bool, len: impl FnOnce() -> usize) {
        match &mut self.0 {
            Some(list) => list.push(present),
            None if present => {}
            None => self.list(len()).push(false),
        }
    }

    /// Appends the validity of further rows to a column of `len` rows.
    fn extend(&mut self, len: usize, rows: impl Iterator<Item = bool> + Clone) {
        if self.0.is_none() && rows.clone().all(|v| v) {
            return;
        }
        self.list(len).extend(rows);
    }

    /// Appends the validity of `src`'s rows `rows` to a column of `len` rows.
    fn extend_from(
        &mut self,
        len: usize,
        src: &Validity,
        rows: impl Iterator<Item = usize> + Clone,
    ) {
        // Both without nulls (the common case): nothing to hold, nothing to look at.
        if !(src.all_valid() && self.all_valid()) {
            self.extend(len, rows.map(|r| src.get(r)));
        }
    }

    /// Keeps rows `rows` (ascending), in place.
    fn retain(&mut self, rows: &[u32]) {
        if let Some(list) = &mut self.0 {
            retain_values(list, rows);
            if list.iter().all(|&v| v) {
                self.0 = None;
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, Vec::len)
    }

    fn clear(&mut self) {
        self.0 = None;
    }

    /// Eight rows a byte, the first row in the lowest bit (for spill files); empty while every
    /// row has a value.
    fn bitmap(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.iter().flat_map(|list| {
            list.chunks(8).map(|bits| {
                bits.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &v)| b | (u8::from(v) << i))
            })
        })
    }
}

/// A column's values in their physical type; a null row holds an empty string or 0.
#[derive(Debug, Clone)]
enum Values {
    Utf8 {
        /// Every row's text, concatenated. A `String`, so reading a row back is a slice, not a
        /// second UTF-8 validation (that re-check was an eighth of ingest's CPU time).
        bytes: String,
        /// `offsets[i]..offsets[i + 1]` is row i; starts with 0. Always on char boundaries.
        offsets: Vec<usize>,
    },
    /// An enum: each row's position in the contract's list of values. Two bytes a row instead
    /// of an 8-byte offset and the text: at 1 M one-day orders the two enums (`status`,
    /// `customer_region`) took about 26 MB of a bucket of about 115 bytes a row (84 now, with
    /// [`Validity`]), and every byte of a bucket is memory faulted in once (most of ingest's
    /// system time).
    Code {
        codes: Vec<u16>,
        names: Arc<[Box<str>]>,
    },
    Int32(Vec<i32>),
    Int64(Vec<i64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Utf8 { offsets, .. } => offsets.len() - 1,
            Values::Code { codes, .. } => codes.len(),
            Values::Int32(x) => x.len(),
            Values::Int64(x) => x.len(),
        }
    }
}

/// A value ready to be appended to a [`ColumnBuffer`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Str(std::borrow::Cow<'a, str>),
    /// An enum's value by its position in the contract's list.
    Code(u16),
    I32(i32),
    I64(i64),
}

impl ColumnBuffer {
    fn new(kind: &ColumnKind) -> Self {
        let values = match kind.physical() {
            Physical::Utf8 => Values::Utf8 {
                bytes: String::new(),
                offsets: vec![0],
            },
            Physical::Code => Values::Code {
                codes: Vec::new(),
                names: match kind {
                    ColumnKind::Enum { values } => {
                        values.iter().map(|v| v.as_str().into()).collect()
                    }
                    _ => unreachable!("only an enum is held as codes"),
                },
            },
            Physical::Int32 => Values::Int32(Vec::new()),
            Physical::Int64 => Values::Int64(Vec::new()),
        };
        ColumnBuffer {
            valid: Validity::default(),
            values,
        }
    }

    fn empty_like(&self) -> Self {
        let values = match &self.values {
            Values::Utf8 { .. } => Values::Utf8 {
                bytes: String::new(),
                offsets: vec![0],
            },
            Values::Code { names, .. } => Values::Code {
                codes: Vec::new(),
                names: names.clone(),
            },
            Values::Int32(_) => Values::Int32(Vec::new()),
            Values::Int64(_) => Values::Int64(Vec::new()),
        };
        ColumnBuffer {
            valid: Validity::default(),
            values,
        }
    }

    /// Rows held.
    fn len(&self) -> usize {
        self.values.len()
    }

    fn push(&mut self, value: &Value<'_>) {
        let present = match (&mut self.values, value) {
            (Values::Utf8 { bytes, offsets }, v) => {
                if let Value::Str(s) = v {
                    bytes.push_str(s);
                }
                offsets.push(bytes.len());
                matches!(v, Value::Str(_))
            }
            (Values::Code { codes, names }, Value::Code(c)) => {
                // The validator's codes are positions in this very list.
                debug_assert!(
                    usize::from(*c) < names.len(),
                    "code {c} past the enum's list"
                );
                codes.push(*c);
                true
            }
            (Values::Code { codes, names }, Value::Str(s)) => {
                // Validated rows come as codes (ingest pushes nothing else); this is for rows
                // built from text, which only tests do.
                let code = names
                    .iter()
                    .position(|n| **n == **s)
                    .expect("an enum value is one of the contract's: validate it first");
                codes.push(code as u16);
                true
            }
            (Values::Code { codes, .. }, _) => {
                codes.push(0);
                false
            }
            (Values::Int32(x), Value::I32(v)) => {
                x.push(*v);
                true
            }
            (Values::Int64(x), Value::I64(v)) => {
                x.push(*v);
                true
            }
            (Values::Int32(x), _) => {
                x.push(0);
                false
            }
            (Values::Int64(x), _) => {
                x.push(0);
                false
            }
        };
        let values = &self.values;
        // The values now hold this row too.
        self.valid.push(present, || values.len() - 1);
    }

    /// Appends rows `rows` of `src`, a column of the same type.
    fn extend_from(&mut self, src: &ColumnBuffer, rows: Range<usize>) {
        self.valid.extend_from(self.len(), &src.valid, rows.clone());
        match (&mut self.values, &src.values) {
            (
                Values::Utf8 { bytes, offsets },
                Values::Utf8 {
                    bytes: b,
                    offsets: o,
                },
            ) => {
                let (first, last, base) = (o[rows.start], o[rows.end], bytes.len());
                bytes.push_str(&b[first..last]);
                offsets.extend(
                    o[rows.start + 1..=rows.end]
                        .iter()
                        .map(|end| base + end - first),
                );
            }
            (Values::Code { codes: x, .. }, Values::Code { codes: y, .. }) => {
                x.extend_from_slice(&y[rows])
            }
            (Values::Int32(x), Values::Int32(y)) => x.extend_from_slice(&y[rows]),
            (Values::Int64(x), Values::Int64(y)) => x.extend_from_slice(&y[rows]),
            _ => unreachable!("batches of one contract have the same column types"),
        }
    }

    /// Appends the rows of `src` (a column of the same type) named by `rows`, in that order.
    fn gather(&mut self, src: &ColumnBuffer, rows: &[u32]) {
        let rows = rows.iter().map(|&r| r as usize);
        self.valid.extend_from(self.len(), &src.valid, rows.clone());
        match (&mut self.values, &src.values) {
            (
                Values::Utf8 { bytes, offsets },
                Values::Utf8 {
                    bytes: b,
                    offsets: o,
                },
            ) => {
                for r in rows {
                    bytes.push_str(&b[o[r]..o[r + 1]]);
                    offsets.push(bytes.len());
                }
            }
            (Values::Code { codes: x, .. }, Values::Code { codes: y, .. }) => {
                x.extend(rows.map(|r| y[r]))
            }
            (Values::Int32(x), Values::Int32(y)) => x.extend(rows.map(|r| y[r])),
            (Values::Int64(x), Values::Int64(y)) => x.extend(rows.map(|r| y[r])),
            _ => unreachable!("batches of one contract have the same column types"),
        }
    }

    /// Keeps only rows `rows` (ascending, no repeats), in place: each kept row moves to an
    /// earlier or the same position, so nothing new is allocated.
    fn retain(&mut self, rows: &[u32]) {
        self.valid.retain(rows);
        match &mut self.values {
            Values::Utf8 { bytes, offsets } => {
                let mut text = std::mem::take(bytes).into_bytes();
                let mut end = 0;
                for (to, &from) in rows.iter().enumerate() {
                    let (start, stop) = (offsets[from as usize], offsets[from as usize + 1]);
                    text.copy_within(start..stop, end);
                    end += stop - start;
                    offsets[to + 1] = end;
                }
                text.truncate(end);
                offsets.truncate(rows.len() + 1);
                // Whole rows of valid text, so still valid text (checked again all the same:
                // this runs once per compaction, not per row).
                *bytes = String::from_utf8(text).expect("rows are whole strings");
            }
            Values::Code { codes, .. } => retain_values(codes, rows),
            Values::Int32(x) => retain_values(x, rows),
            Values::Int64(x) => retain_values(x, rows),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.valid.heap_bytes()
            + match &self.values {
                Values::Utf8 { bytes, offsets } => bytes.len() + offsets.len() * 8,
                Values::Code { codes, .. } => codes.len() * 2,
                Values::Int32(x) => x.len() * 4,
                Values::Int64(x) => x.len() * 8,
            }
    }

    fn clear(&mut self) {
        self.valid.clear();
        match &mut self.values {
            Values::Utf8 { bytes, offsets } => {
                bytes.clear();
                offsets.truncate(1);
            }
            Values::Code { codes, .. } => codes.clear(),
            Values::Int32(x) => x.clear(),
            Values::Int64(x) => x.clear(),
        }
    }
}

fn retain_values<T: Copy>(values: &mut Vec<T>, rows: &[u32]) {
    for (to, &from) in rows.iter().enumerate() {
        values[to] = values[from as usize];
    }
    values.truncate(rows.len());
}

/// Validated rows of one dataset, with the source line each came from.
#[derive(Debug, Clone)]
pub struct Batch {
    columns: Vec<ColumnBuffer>,
    pub lines: Vec<u64>,
}

impl Batch {
    pub fn new(contract: &Contract) -> Self {
        Batch {
            columns: contract
                .columns
                .iter()
                .map(|c| ColumnBuffer::new(&c.kind))
                .collect(),
            lines: Vec::new(),
        }
    }

    /// An empty batch of the same columns.
    pub fn empty_like(&self) -> Self {
        Batch {
            columns: self.columns.iter().map(ColumnBuffer::empty_like).collect(),
            lines: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Appends one row; `values` has one entry per contract column.
    pub fn push_row(&mut self, line: u64, values: &[Value<'_>]) {
        debug_assert_eq!(values.len(), self.columns.len());
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(value);
        }
        self.lines.push(line);
    }

    /// Appends every row of `other` (a batch of the same contract).
    pub fn append(&mut self, other: &Batch) {
        self.append_rows(other, 0..other.len());
    }

    /// Appends the rows `rows` of `other` (a batch of the same contract).
    pub fn append_rows(&mut self, other: &Batch, rows: Range<usize>) {
        for (dst, src) in self.columns.iter_mut().zip(&other.columns) {
            dst.extend_from(src, rows.clone());
        }
        self.lines.extend_from_slice(&other.lines[rows]);
    }

    /// Appends the rows of `other` named by `rows`, in that order.
    pub fn gather(&mut self, other: &Batch, rows: &[u32]) {
        for (dst, src) in self.columns.iter_mut().zip(&other.columns) {
            dst.gather(src, rows);
        }
        self.lines
            .extend(rows.iter().map(|&r| other.lines[r as usize]));
    }

    /// Keeps only the rows named by `rows` (ascending, no repeats), in place.
    pub fn retain(&mut self, rows: &[u32]) {
        debug_assert!(rows.windows(2).all(|w| w[0] < w[1]));
        for column in &mut self.columns {
            column.retain(rows);
        }
        retain_values(&mut self.lines, rows);
    }

    pub fn is_null(&self, column: usize, row: usize) -> bool {
        !self.columns[column].valid.get(row)
    }

    pub fn str(&self, column: usize, row: usize) -> Option<&str> {
        let c = &self.columns[column];
        match &c.values {
            Values::Utf8 { bytes, offsets } if c.valid.get(row) => {
                bytes.get(offsets[row]..offsets[row + 1])
            }
            Values::Code { codes, names } if c.valid.get(row) => {
                names.get(usize::from(codes[row])).map(|n| &**n)
            }
            _ => None,
        }
    }

    /// How many of `rows` hold each value of an enum column, by value (values no row holds are
    /// left out); `None` for a column of another kind. Counted by code, not by text.
    pub fn enum_counts(&self, column: usize, rows: &[u32]) -> Option<Vec<(&str, u64)>> {
        let c = &self.columns[column];
        let Values::Code { codes, names } = &c.values else {
            return None;
        };
        let mut counts = vec![0u64; names.len()];
        for &r in rows {
            if c.valid.get(r as usize) {
                counts[usize::from(codes[r as usize])] += 1;
            }
        }
        Some(
            names
                .iter()
                .zip(counts)
                .filter(|&(_, n)| n > 0)
                .map(|(name, n)| (&**name, n))
                .collect(),
        )
    }

    pub fn i32(&self, column: usize, row: usize) -> Option<i32> {
        let c = &self.columns[column];
        match &c.values {
            Values::Int32(x) if c.valid.get(row) => Some(x[row]),
            _ => None,
        }
    }

    pub fn i64(&self, column: usize, row: usize) -> Option<i64> {
        let c = &self.columns[column];
        match &c.values {
            Values::Int64(x) if c.valid.get(row) => Some(x[row]),
            _ => None,
        }
    }

    /// Approximate heap size, used to keep memory within the configured budget.
    pub fn heap_bytes(&self) -> usize {
        self.lines.len() * 8
            + self
                .columns
                .iter()
                .map(ColumnBuffer::heap_bytes)
                .sum::<usize>()
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.columns.iter_mut().for_each(ColumnBuffer::clear);
    }

    /// Appends the rows to `out` as one chunk of a spill file: the row count, then the line
    /// numbers and each column as a length-prefixed section (read back one section at a time,
    /// so the reader buffers one column, not the chunk). Sections are compact because every
    /// spilled byte is copied into the page cache and back, which was most of the kernel's time
    /// on exports larger than the memory budget: line numbers as zigzag varint deltas, a
    /// column's validity as one tag byte when every row has a value (else a bitmap), text
    /// lengths and integers as varints. At 10 M orders that is 40% fewer bytes (851 -> 510 MiB)
    /// than fixed-width fields.
    pub fn write_chunk(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        section(out, |out| {
            let mut previous = 0u64;
            for &line in &self.lines {
                varint::put(out, zigzag(line.wrapping_sub(previous) as i64));
                previous = line;
            }
        });
        for column in &self.columns {
            section(out, |out| {
                if column.valid.all_valid() {
                    out.push(ALL_VALID);
                } else {
                    out.push(BITMAP);
                    out.extend(column.valid.bitmap());
                }
                match &column.values {
                    Values::Utf8 { bytes, offsets } => {
                        for pair in offsets.windows(2) {
                            varint::put(out, (pair[1] - pair[0]) as u64);
                        }
                        varint::put(out, bytes.len() as u64);
                        out.extend_from_slice(bytes.as_bytes());
                    }
                    Values::Code { codes, .. } => {
                        codes.iter().for_each(|&c| varint::put(out, u64::from(c)))
                    }
                    Values::Int32(x) => x
                        .iter()
                        .for_each(|&v| varint::put(out, zigzag(i64::from(v)))),
                    Values::Int64(x) => x.iter().for_each(|&v| varint::put(out, zigzag(v))),
                }
            });
        }
    }

    /// Appends the next chunk written by [`Batch::write_chunk`]; `Ok(false)` at end of input.
    pub fn read_chunk(&mut self, r: &mut impl Read) -> io::Result<bool> {
        self.read_chunk_with(r, &mut Vec::new())
    }

    /// [`Batch::read_chunk`] with a scratch buffer kept by the caller: a spill file is read
    /// back chunk by chunk, and a fresh buffer each time was fresh memory each time.
    pub fn read_chunk_with(&mut self, r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut word = [0u8; 8];
        match r.read_exact(&mut word) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        let n = u64::from_le_bytes(word) as usize;
        let mut c = read_section(r, buf)?;
        let mut line = 0u64;
        for _ in 0..n {
            line = line.wrapping_add(unzigzag(c.varint()?) as u64);
            self.lines.push(line);
        }
        c.end()?;
        for column in &mut self.columns {
            let mut c = read_section(r, buf)?;
            let len = column.len();
            match c.byte()? {
                ALL_VALID => column.valid.extend(len, std::iter::repeat_n(true, n)),
                BITMAP => {
                    let bits = c.take(n.div_ceil(8))?;
                    column
                        .valid
                        .extend(len, (0..n).map(|i| bits[i / 8] & (1 << (i % 8)) != 0));
                }
                _ => return Err(corrupt()),
            }
            match &mut column.values {
                Values::Utf8 { bytes, offsets } => {
                    let base = bytes.len();
                    let mut end = base;
                    for _ in 0..n {
                        end = end
                            .checked_add(usize::try_from(c.varint()?).map_err(|_| corrupt())?)
                            .ok_or_else(corrupt)?;
                        offsets.push(end);
                    }
                    let total = usize::try_from(c.varint()?).map_err(|_| corrupt())?;
                    if base.checked_add(total) != Some(end) {
                        return Err(corrupt());
                    }
                    let text = c.take(total)?;
                    // Checked once per chunk, so rows read back are slices of valid text.
                    bytes.push_str(std::str::from_utf8(text).map_err(|_| corrupt())?);
                    if !offsets[offsets.len() - n..]
                        .iter()
                        .all(|&o| bytes.is_char_boundary(o))
                    {
                        return Err(corrupt());
                    }
                }
                Values::Code { codes, names } => {
                    for _ in 0..n {
                        let code = c.varint()?;
                        if code >= names.len() as u64 {
                            return Err(corrupt());
                        }
                        codes.push(code as u16);
                    }
                }
                Values::Int32(x) => {
                    for _ in 0..n {
                        let v = i32::try_from(unzigzag(c.varint()?)).map_err(|_| corrupt())?;
                        x.push(v);
                    }
                }
                Values::Int64(x) => {
                    for _ in 0..n {
                        x.push(unzigzag(c.varint()?));
                    }
                }
            }
            c.end()?;
        }
        Ok(true)
    }
}

/// Writes `fill`'s bytes to `out` behind their length (u64, little-endian).
fn section(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    fill(out);
    let length = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&length.to_le_bytes());
}

/// Reads one section written by [`section`] into `buf`.
fn read_section<'a>(r: &mut impl Read, buf: &'a mut Vec<u8>) -> io::Result<Decoder<'a>> {
    let mut word = [0u8; 8];
    r.read_exact(&mut word)?;
    let length = u64::from_le_bytes(word);
    // Room for the section up front, so reading it does not double the buffer past it; but a
    // corrupt length must not make us allocate whatever it says: beyond 64 MiB the buffer
    // grows only with what is actually read.
    buf.clear();
    buf.reserve(usize::try_from(length).unwrap_or(usize::MAX).min(64 << 20));
    r.take(length).read_to_end(buf)?;
    if buf.len() as u64 != length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Decoder { buf, at: 0 })
}

/// A spilled column's validity: every row has a value (nothing follows), or a bitmap follows.
const ALL_VALID: u8 = 1;
const BITMAP: u8 = 0;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a section written by [`section`], every read bounds-checked.
struct Decoder<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    fn byte(&mut self) -> io::Result<u8> {
        let b = *self.buf.get(self.at).ok_or_else(corrupt)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(corrupt)?;
        let s = self.buf.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(s)
    }

    /// Every byte of the section was used: one left over means a corrupt chunk.
    fn end(&self) -> io::Result<()> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(corrupt())
        }
    }

    fn varint(&mut self) -> io::Result<u64> {
        match varint::get(&self.buf[self.at..]) {
            Ok(Some((v, n))) => {
                self.at += n;
                Ok(v)
            }
            _ => Err(corrupt()),
        }
    }
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt spill chunk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Registry;
    use proptest::prelude::*;
    use std::borrow::Cow;

    fn row<'a>(id: &'a str, amount: Option<i64>) -> Vec<Value<'a>> {
        // orders: order_id, customer_id, order_ts, status, region, currency, total, items, updated
        vec![
            Value::Str(Cow::Borrowed(id)),
            Value::Str(Cow::Borrowed("c1")),
            Value::I64(10),
            Value::Str(Cow::Borrowed("paid")),
            Value::Str(Cow::Borrowed("EU")),
            Value::Str(Cow::Borrowed("EUR")),
            amount.map_or(Value::Null, Value::I64),
            Value::I32(2),
            Value::I64(20),
        ]
    }

    #[test]
    fn rows_survive_a_round_trip_through_spill_chunks() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut a = Batch::new(orders);
        a.push_row(2, &row("o-1", Some(1250)));
        a.push_row(3, &row("o-ü", None));
        let mut spill = Vec::new();
        a.write_chunk(&mut spill);
        a.clear();
        a.push_row(9, &row("", Some(-5)));
        a.write_chunk(&mut spill);

        let mut b = Batch::new(orders);
        let mut cursor = spill.as_slice();
        while b.read_chunk(&mut cursor).unwrap() {}
        assert_eq!(b.lines, [2, 3, 9]);
        assert_eq!(b.str(0, 1), Some("o-ü"));
        assert_eq!(b.str(0, 2), Some(""));
        assert_eq!(b.i64(6, 0), Some(1250));
        assert!(b.is_null(6, 1));
        assert_eq!(b.i64(6, 2), Some(-5));
        assert_eq!(b.i32(7, 2), Some(2));
    }

    #[test]
    fn appending_a_batch_equals_appending_or_gathering_its_rows() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut other = Batch::new(orders);
        other.push_row(4, &row("o-2", None));
        other.push_row(5, &row("o-ü3", Some(7)));
        let mut bulk = Batch::new(orders);
        bulk.push_row(2, &row("o-1", Some(1)));
        let (mut by_row, mut gathered) = (bulk.clone(), bulk.clone());
        bulk.append(&other);
        (0..other.len()).for_each(|r| by_row.append_rows(&other, r..r + 1));
        gathered.gather(&other, &[0, 1]);
        assert_eq!(format!("{bulk:?}"), format!("{by_row:?}"));
        assert_eq!(format!("{bulk:?}"), format!("{gathered:?}"));
        assert_eq!(bulk.str(0, 2), Some("o-ü3"));
        assert!(bulk.is_null(6, 1));

        let mut reordered = Batch::new(orders);
        reordered.gather(&bulk, &[2, 0, 2]);
        assert_eq!(reordered.lines, [5, 2, 5]);
        let ids: Vec<_> = (0..3).map(|r| reordered.str(0, r)).collect();
        assert_eq!(ids, [Some("o-ü3"), Some("o-1"), Some("o-ü3")]);
        let amounts: Vec<_> = (0..3).map(|r| reordered.i64(6, r)).collect();
        assert_eq!(amounts, [Some(7), Some(1), Some(7)]);
    }

    #[test]
    fn retaining_rows_in_place_equals_gathering_them() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut b = Batch::new(orders);
        for (i, id) in ["o-1", "o-ü2", "", "o-333", "o-4"].iter().enumerate() {
            let amount = (i % 2 == 0).then_some(i as i64);
            b.push_row(i as u64 + 2, &row(id, amount));
        }
        for keep in [
            vec![],
            vec![0],
            vec![1, 3],
            vec![0, 2, 4],
            vec![0, 1, 2, 3, 4],
        ] {
            let mut gathered = b.empty_like();
            gathered.gather(&b, &keep);
            let mut retained = b.clone();
            retained.retain(&keep);
            assert_eq!(format!("{retained:?}"), format!("{gathered:?}"), "{keep:?}");
        }
    }

    #[test]
    fn a_reused_scratch_buffer_reads_the_same_rows() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut spill = Vec::new();
        let mut a = Batch::new(orders);
        a.push_row(2, &row("a-long-order-id", Some(1)));
        a.write_chunk(&mut spill);
        a.clear();
        a.push_row(3, &row("é", None));
        a.push_row(4, &row("x", Some(3)));
        a.write_chunk(&mut spill);
        let (mut fresh, mut reused) = (Batch::new(orders), Batch::new(orders));
        let mut scratch = vec![0xff; 3];
        let mut cursor = spill.as_slice();
        while fresh.read_chunk(&mut cursor).unwrap() {}
        let mut cursor = spill.as_slice();
        while reused.read_chunk_with(&mut cursor, &mut scratch).unwrap() {}
        assert_eq!(format!("{fresh:?}"), format!("{reused:?}"));
        assert_eq!(reused.str(0, 1), Some("é"));
    }

    #[test]
    fn extreme_values_nulls_past_a_byte_of_bits_and_unordered_lines_survive_a_spill() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut a = Batch::new(orders);
        let lines = [u64::MAX, 0, 7, 3, 1 << 40, 2, 9, 11, 12, 13];
        for (i, &line) in lines.iter().enumerate() {
            let amount = match i {
                0 => Some(i64::MIN),
                1 => Some(i64::MAX),
                9 => Some(-1),
                _ if i % 3 == 0 => None,
                _ => Some(i as i64 * 1_000_003),
            };
            let mut values = row("o", amount);
            values[7] = Value::I32(if i % 2 == 0 { i32::MIN } else { i32::MAX });
            values[2] = Value::I64(1_764_000_000_000_000 + i as i64);
            a.push_row(line, &values);
        }
        let mut spill = Vec::new();
        a.write_chunk(&mut spill);
        let mut b = Batch::new(orders);
        assert!(b.read_chunk(&mut spill.as_slice()).unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // Nothing but the chunk was read.
        assert!(!b.read_chunk(&mut &spill[spill.len()..]).unwrap());
    }

    #[test]
    fn an_enum_is_held_as_codes_and_reads_back_as_the_contract_spells_it() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let status = orders.column_index("status").unwrap();
        let ColumnKind::Enum { values } = &orders.columns[status].kind else {
            panic!("orders.status is an enum");
        };
        let mut a = Batch::new(orders);
        for (i, _) in values.iter().enumerate() {
            let mut r = row("o", Some(1));
            r[status] = Value::Code(i as u16);
            a.push_row(i as u64 + 2, &r);
        }
        let mut null = row("o", Some(1));
        null[status] = Value::Null;
        a.push_row(99, &null);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(a.str(status, i), Some(v.as_str()));
        }
        assert!(a.is_null(status, values.len()));
        assert_eq!(a.str(status, values.len()), None);

        let mut spill = Vec::new();
        a.write_chunk(&mut spill);
        let mut b = Batch::new(orders);
        assert!(b.read_chunk(&mut spill.as_slice()).unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));

        // A spilled code past the contract's list is a corrupt chunk, not a wrong value: find
        // the status section (after the row count, the lines and the columns before it) and
        // point its first code one past the end.
        let mut at = 8;
        for _ in 0..=status {
            at += 8 + u64::from_le_bytes(spill[at..at + 8].try_into().unwrap()) as usize;
        }
        assert_eq!(spill[at + 8], BITMAP, "a null makes the validity a bitmap");
        let first_code = at + 8 + 1 + (values.len() + 1).div_ceil(8);
        assert_eq!(spill[first_code], 0);
        spill[first_code] = values.len() as u8;
        assert!(
            Batch::new(orders)
                .read_chunk(&mut spill.as_slice())
                .is_err()
        );
        spill[first_code] = values.len() as u8 - 1;
        assert!(
            Batch::new(orders)
                .read_chunk(&mut spill.as_slice())
                .unwrap()
        );
    }

    #[test]
    fn a_column_holds_no_validity_until_its_first_null_and_drops_it_with_the_last() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut a = Batch::new(orders);
        for line in 2..5 {
            a.push_row(line, &row("o", Some(1)));
        }
        let valid_only = a.clone();
        assert!(a.columns.iter().all(|c| c.valid.all_valid()));
        a.push_row(5, &row("o", None));
        assert!(!a.columns[6].valid.all_valid());
        assert!(a.is_null(6, 3) && !a.is_null(6, 2));
        assert_eq!(a.columns[6].valid.heap_bytes(), 4);
        // Without the null row, the column is back to holding nothing.
        a.retain(&[0, 1, 2]);
        assert_eq!(format!("{a:?}"), format!("{valid_only:?}"));
        // A null in the first row, and rows appended after it.
        let mut b = Batch::new(orders);
        b.push_row(2, &row("o", None));
        b.append(&valid_only);
        assert!(b.is_null(6, 0) && !b.is_null(6, 3));
        let mut spill = Vec::new();
        b.write_chunk(&mut spill);
        let mut c = Batch::new(orders);
        assert!(c.read_chunk(&mut spill.as_slice()).unwrap());
        assert_eq!(format!("{b:?}"), format!("{c:?}"));
    }

    #[test]
    fn enum_counts_count_the_rows_asked_for_by_value_and_skip_nulls() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let status = orders.column_index("status").unwrap();
        let mut a = Batch::new(orders);
        for (line, value) in [
            (2, Value::Str(Cow::Borrowed("shipped"))),
            (3, Value::Str(Cow::Borrowed("paid"))),
            (4, Value::Null),
            (5, Value::Str(Cow::Borrowed("shipped"))),
            (6, Value::Str(Cow::Borrowed("returned"))),
        ] {
            let mut r = row("o", Some(1));
            r[status] = value;
            a.push_row(line, &r);
        }
        // In the contract's order; a value no row asked for holds is left out.
        assert_eq!(
            a.enum_counts(status, &[0, 1, 2, 3]),
            Some(vec![("paid", 1), ("shipped", 2)])
        );
        assert_eq!(a.enum_counts(status, &[]), Some(vec![]));
        assert_eq!(a.enum_counts(0, &[0]), None, "order_id is not an enum");
    }

    /// A row of the model: line, `total_amount` (a nullable i64) and `status` (an enum code,
    /// nullable here although the contract requires it: the batch does not check that).
    type ModelRow = (u64, Option<i64>, Option<u16>);

    #[derive(Debug, Clone)]
    enum Op {
        Push(Vec<ModelRow>),
        AppendRows(Vec<ModelRow>, Range<usize>),
        Gather(Vec<ModelRow>, Vec<u32>),
        Retain(Vec<bool>),
        Clear,
        /// A batch of these rows spilled and read back onto the end of this one.
        ReadChunk(Vec<ModelRow>),
        /// This batch spilled and read back into an empty one.
        RoundTrip,
    }

    fn model_rows() -> impl Strategy<Value = Vec<ModelRow>> {
        let value = prop_oneof![3 => any::<i64>().prop_map(Some), 1 => Just(None)];
        let code = prop_oneof![3 => (0u16..6).prop_map(Some), 1 => Just(None)];
        // Either every row has values (the common case, which holds no validity) or some may not.
        let rows = prop::collection::vec((any::<u64>(), value, code), 0..12);
        prop_oneof![
            rows.clone().prop_map(|rs| rs
                .into_iter()
                .map(|(l, v, c)| (l, Some(v.unwrap_or(1)), Some(c.unwrap_or(0))))
                .collect()),
            rows,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            model_rows().prop_map(Op::Push),
            (model_rows(), any::<(usize, usize)>()).prop_map(|(rs, (a, b))| {
                let (a, b) = (a % (rs.len() + 1), b % (rs.len() + 1));
                Op::AppendRows(rs, a.min(b)..a.max(b))
            }),
            (model_rows(), prop::collection::vec(any::<u32>(), 0..8)).prop_map(|(rs, at)| {
                let at = if rs.is_empty() {
                    Vec::new()
                } else {
                    at.into_iter().map(|i| i % rs.len() as u32).collect()
                };
                Op::Gather(rs, at)
            }),
            prop::collection::vec(any::<bool>(), 0..64).prop_map(Op::Retain),
            Just(Op::Clear),
            model_rows().prop_map(Op::ReadChunk),
            Just(Op::RoundTrip),
        ]
    }

    fn batch_of(contract: &Contract, rows: &[ModelRow]) -> Batch {
        let mut b = Batch::new(contract);
        for &(line, amount, status) in rows {
            let mut r = row("o", amount);
            r[3] = status.map_or(Value::Null, Value::Code);
            b.push_row(line, &r);
        }
        b
    }

    proptest::proptest! {
        /// Every way rows reach a batch (pushed, appended, gathered, kept, cleared, read back from
        /// a spill) gives the rows a plain list of them has, with validity held exactly while a
        /// column has a null, one entry a row.
        #[test]
        fn a_batch_holds_what_a_plain_list_of_its_rows_holds(ops in prop::collection::vec(op(), 1..10)) {
            let reg = Registry::builtin();
            let orders = reg.get("orders").unwrap();
            let (mut b, mut model) = (Batch::new(orders), Vec::<ModelRow>::new());
            for op in ops {
                match op {
                    Op::Push(rows) => {
                        for &(line, amount, status) in &rows {
                            let mut r = row("o", amount);
                            r[3] = status.map_or(Value::Null, Value::Code);
                            b.push_row(line, &r);
                        }
                        model.extend(rows);
                    }
                    Op::AppendRows(rows, range) => {
                        b.append_rows(&batch_of(orders, &rows), range.clone());
                        model.extend_from_slice(&rows[range]);
                    }
                    Op::Gather(rows, at) => {
                        b.gather(&batch_of(orders, &rows), &at);
                        model.extend(at.iter().map(|&i| rows[i as usize]));
                    }
                    Op::Retain(keep) => {
                        let kept: Vec<u32> = (0..model.len() as u32)
                            .filter(|&i| keep.get(i as usize).copied().unwrap_or(true))
                            .collect();
                        b.retain(&kept);
                        model = kept.iter().map(|&i| model[i as usize]).collect();
                    }
                    Op::Clear => {
                        b.clear();
                        model.clear();
                    }
                    Op::ReadChunk(rows) => {
                        let mut spill = Vec::new();
                        batch_of(orders, &rows).write_chunk(&mut spill);
                        proptest::prop_assert!(b.read_chunk(&mut spill.as_slice()).unwrap());
                        model.extend(rows);
                    }
                    Op::RoundTrip => {
                        let mut spill = Vec::new();
                        b.write_chunk(&mut spill);
                        let mut c = b.empty_like();
                        proptest::prop_assert!(c.read_chunk(&mut spill.as_slice()).unwrap());
                        proptest::prop_assert_eq!(format!("{b:?}"), format!("{c:?}"));
                        b = c;
                    }
                }
                proptest::prop_assert_eq!(b.len(), model.len());
                let names = ["placed", "paid", "shipped", "delivered", "cancelled", "returned"];
                for (i, &(line, amount, status)) in model.iter().enumerate() {
                    proptest::prop_assert_eq!(b.lines[i], line);
                    proptest::prop_assert_eq!(b.i64(6, i), amount);
                    proptest::prop_assert_eq!(b.is_null(6, i), amount.is_none());
                    proptest::prop_assert_eq!(b.str(3, i), status.map(|c| names[usize::from(c)]));
                }
                for (column, nulls) in [
                    (6, model.iter().any(|r| r.1.is_none())),
                    (3, model.iter().any(|r| r.2.is_none())),
                ] {
                    let valid = &b.columns[column].valid;
                    proptest::prop_assert_eq!(valid.all_valid(), !nulls);
                    proptest::prop_assert!(valid.0.as_ref().is_none_or(|l| l.len() == model.len()));
                }
                let every: Vec<u32> = (0..model.len() as u32).collect();
                let counted: u64 = b.enum_counts(3, &every).unwrap().iter().map(|c| c.1).sum();
                proptest::prop_assert_eq!(counted, model.iter().filter(|r| r.2.is_some()).count() as u64);
            }
        }
    }

    /// One orders row (line 2) as one spill chunk.
    fn one_row_chunk() -> Vec<u8> {
        let reg = Registry::builtin();
        let mut a = Batch::new(reg.get("orders").unwrap());
        a.push_row(2, &row("o-1", Some(1)));
        let mut spill = Vec::new();
        a.write_chunk(&mut spill);
        spill
    }

    /// Reads `spill`'s first chunk into a fresh orders batch.
    fn read_back(spill: &[u8]) -> io::Result<bool> {
        let reg = Registry::builtin();
        Batch::new(reg.get("orders").unwrap()).read_chunk(&mut &spill[..])
    }

    #[test]
    fn a_chunk_whose_length_claims_more_than_is_there_is_an_error() {
        assert!(read_back(&one_row_chunk()).unwrap());
        let mut spill = one_row_chunk();
        spill[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_back(&spill).is_err());
        // A section longer than its rows need is corrupt too: the line section gets one more
        // byte (a zero varint would read as a valid delta).
        let mut longer = one_row_chunk();
        let length = u64::from_le_bytes(longer[8..16].try_into().unwrap());
        longer.insert(16 + length as usize, 0);
        longer[8..16].copy_from_slice(&(length + 1).to_le_bytes());
        assert!(read_back(&longer).is_err());
    }

    #[test]
    fn a_truncated_spill_chunk_is_an_error_not_garbage() {
        let mut spill = one_row_chunk();
        spill.truncate(spill.len() - 3);
        assert!(read_back(&spill).is_err());
    }

    #[test]
    fn spilled_text_that_is_not_utf8_or_splits_a_character_is_an_error() {
        let reg = Registry::builtin();
        let orders = reg.get("orders").unwrap();
        let mut a = Batch::new(orders);
        a.push_row(2, &row("é", Some(1)));
        a.push_row(3, &row("x", Some(2)));
        let mut spill = Vec::new();
        a.write_chunk(&mut spill);
        let at = |bytes: &[u8], needle: &[u8]| {
            bytes
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        let text = at(&spill, "éx".as_bytes());

        let mut invalid = spill.clone();
        invalid[text] = 0xff;
        assert!(
            Batch::new(orders)
                .read_chunk(&mut invalid.as_slice())
                .is_err()
        );

        // Row lengths 1 and 2 instead of 2 and 1 (the two varints before the total, 3, that
        // comes just before the text): the first row would end inside "é".
        assert_eq!(spill[text - 3..text], [2, 1, 3]);
        let mut split = spill.clone();
        split[text - 3..text - 1].copy_from_slice(&[1, 2]);
        assert!(
            Batch::new(orders)
                .read_chunk(&mut split.as_slice())
                .is_err()
        );

        let mut b = Batch::new(orders);
        assert!(b.read_chunk(&mut spill.as_slice()).unwrap());
        assert_eq!((b.str(0, 0), b.str(0, 1)), (Some("é"), Some("x")));
    }
}
