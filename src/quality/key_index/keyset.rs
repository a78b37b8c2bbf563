//! The file format of shards and deltas (v4): a magic line, then the keys in strictly increasing
//! byte order, each front-coded against the key before it: the length of the prefix the two
//! share and the length of the rest (LEB128 varints), then the rest. The keys come in blocks of
//! [`BLOCK_KEYS`], each after a header: the length of its entries in bytes, and its last key,
//! front-coded against the block before's last key.
//!
//! Why front-coded: a check reads every shard its references fall into, which hold every
//! customer ever, and sorted neighbours share most of their bytes when ids are numbered
//! (`C0001000022`, `C0001000031`), as many shop platforms number them. On the 365-day lake of
//! `make bench-history` (2.46 M customers) the 16 shards took 39.4 MB as length-prefixed keys
//! (v2) and take 9.7 MB front-coded, about 4 bytes a key. Random ids (UUIDs) share only their
//! first few characters with a neighbour and gain little. The walk gets cheaper too: the next
//! wanted key is compared with a file's key only where that key branches off the one before
//! within the prefix the wanted key shares with it, which most keys do not (see [`Search`]).
//!
//! Why blocks: a night's batch wants a few thousand keys of a shard that holds every key ever,
//! so most of a shard lies between two wanted keys. A look-up reads a block's header and, when
//! the next wanted key is above the block's last key, passes over its entries without decoding
//! them: the walk decodes the blocks the wanted keys fall into and one header per other block,
//! not every key of all history. The bytes are still read (a base is streamed once); what the
//! blocks save is the per-key decoding, most of a look-up's time at a long history.
//!
//! Files of v2 (each key as a little-endian `u32` length and its bytes) and v3 (the front-coded
//! keys without blocks) are still read, so a lake's shards change format as merges rewrite them;
//! every file written is v4. A binary older than v4 refuses a v4 file as corrupt: roll back
//! only together with deleting `index/` (the gate rebuilds it from silver).

use std::ops::Range;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::varint;

const MAGIC: &[u8] = b"shoplake-keys-v4\n";
const MAGIC_V3: &[u8] = b"shoplake-keys-v3\n";
const MAGIC_V2: &[u8] = b"shoplake-keys-v2\n";

/// Keys in a block of a v4 file. A block the walk passes over costs its header, about one
/// key's decoding, and a block a wanted key falls into costs its keys up to the last wanted
/// one: on the H=365 bench night (about 1,000 wanted keys a shard of 154 k) whole blocks of 32
/// decoded about a fifth of the keys. A header takes about 6 bytes, 5% of a block of 4-byte
/// keys.
const BLOCK_KEYS: usize = 32;

/// Bytes a look-up reads at a time (the shard itself is never held).
const READ_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Copy)]
enum Format {
    V2,
    V3,
    V4,
}

fn format_of(magic: &[u8]) -> Result<Format, &'static str> {
    match magic {
        MAGIC => Ok(Format::V4),
        MAGIC_V3 => Ok(Format::V3),
        MAGIC_V2 => Ok(Format::V2),
        _ => Err("not a key index file"),
    }
}

/// How many leading bytes `a` and `b` share.
#[inline]
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A file of `keys` (meant sorted and distinct: a reader refuses anything else).
pub fn encode<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    encode_blocks(keys, BLOCK_KEYS)
}

/// A v4 file of `keys` in blocks of `per_block`.
fn encode_blocks<'a>(keys: impl IntoIterator<Item = &'a [u8]>, per_block: usize) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut body = Vec::new();
    // The key before, and the last key of the block before.
    let (mut before, mut block_before): (&[u8], &[u8]) = (&[], &[]);
    let mut in_block = 0;
    for key in keys {
        put_entry(&mut body, before, key);
        before = key;
        in_block += 1;
        if in_block == per_block.max(1) {
            put_block(&mut out, &body, block_before, key);
            (block_before, in_block) = (key, 0);
            body.clear();
        }
    }
    if in_block > 0 {
        put_block(&mut out, &body, block_before, before);
    }
    out
}

/// Appends `key` front-coded against `before`.
fn put_entry(out: &mut Vec<u8>, before: &[u8], key: &[u8]) {
    let shared = shared_prefix(before, key);
    varint::put(out, shared as u64);
    varint::put(out, (key.len() - shared) as u64);
    out.extend_from_slice(&key[shared..]);
}

/// Appends a block: its header (the bytes of `body`, and `last` front-coded against the block
/// before's last key, `block_before`), then `body`.
fn put_block(out: &mut Vec<u8>, body: &[u8], block_before: &[u8], last: &[u8]) {
    varint::put(out, body.len() as u64);
    put_entry(out, block_before, last);
    out.extend_from_slice(body);
}

/// A v3 file, as `encode` wrote it before v4.
#[cfg(test)]
pub(super) fn encode_v3<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = MAGIC_V3.to_vec();
    let mut before: &[u8] = &[];
    for key in keys {
        put_entry(&mut out, before, key);
        before = key;
    }
    out
}

/// One entry at the start of a file's remaining bytes.
struct Entry {
    /// The bytes it takes.
    size: usize,
    /// The prefix it shares with the key before (v3); v2 stores whole keys.
    shared: Option<usize>,
    /// Where the rest of its key lies in the bytes (v2: the whole key).
    rest: Range<usize>,
}

/// The entry at the start of `bytes`: `Ok(Err(reason))` when `bytes` ends inside it (the
/// reason, should the file end there), `Err` when it cannot be one.
#[inline]
fn entry(bytes: &[u8], format: Format) -> Result<Result<Entry, &'static str>, &'static str> {
    match format {
        Format::V2 => {
            let Some((len, tail)) = bytes.split_first_chunk::<4>() else {
                return Ok(Err("truncated length"));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Ok(Err("truncated key"));
            }
            Ok(Ok(Entry {
                size: 4 + len,
                shared: None,
                rest: 4..4 + len,
            }))
        }
        Format::V3 | Format::V4 => {
            let Some((shared, a)) = varint::get(bytes)? else {
                return Ok(Err("truncated length"));
            };
            let Some((len, b)) = varint::get(&bytes[a..])? else {
                return Ok(Err("truncated length"));
            };
            let shared = usize::try_from(shared).map_err(|_| "key too long")?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| (a + b).checked_add(len))
                .ok_or("key too long")?;
            if bytes.len() < end {
                return Ok(Err("truncated key"));
            }
            Ok(Ok(Entry {
                size: end,
                shared: Some(shared),
                rest: a + b..end,
            }))
        }
    }
}

/// A v4 block's header at the start of a file's remaining bytes.
struct Header {
    /// The bytes it takes.
    size: usize,
    /// The bytes of the block's entries, which follow it.
    body: usize,
    /// The block's last key, front-coded against the block before's last key (its `rest`
    /// within the header's bytes).
    last: Entry,
}

/// The header at the start of `bytes`, as [`entry`] reads an entry.
#[inline]
fn header(bytes: &[u8]) -> Result<Result<Header, &'static str>, &'static str> {
    let Some((body, a)) = varint::get(bytes)? else {
        return Ok(Err("truncated block header"));
    };
    let body = usize::try_from(body).map_err(|_| "block too long")?;
    if body == 0 {
        return Err("an empty block");
    }
    let last = match entry(&bytes[a..], Format::V4)? {
        Ok(last) => last,
        Err(_) => return Ok(Err("truncated block header")),
    };
    Ok(Ok(Header {
        size: a + last.size,
        body,
        last: Entry {
            size: last.size,
            shared: last.shared,
            rest: a + last.rest.start..a + last.rest.end,
        },
    }))
}

/// Bytes a short rest is copied in: one fixed-size move instead of a call to `memmove` per key
/// (which was 15% of a look-up at 365 days of history).
const BLOCK: usize = 16;

/// The key walked last, rebuilt entry by entry and checked: strictly above the one before.
/// `bytes[..len]` is the key; the bytes after it are spare room for [`BLOCK`] copies.
#[derive(Default)]
struct Last {
    bytes: Vec<u8>,
    len: usize,
    started: bool,
}

impl Last {
    fn key(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Moves to `other`'s key, which shares its first `same` bytes with this one: only the
    /// bytes after them are copied.
    fn take(&mut self, other: &Last, same: usize) {
        let key = other.key();
        if self.bytes.len() < key.len().max(BLOCK) {
            self.bytes.resize(key.len().max(BLOCK), 0);
        }
        self.bytes[same..key.len()].copy_from_slice(&key[same..]);
        self.len = key.len();
        self.started = true;
    }

    /// Moves to the key of the entry whose rest is `from[rest]` (`from` goes on past it, as
    /// far as the bytes read go); returns the prefix it shares with the key before.
    #[inline]
    fn advance(
        &mut self,
        shared: Option<usize>,
        from: &[u8],
        rest: Range<usize>,
    ) -> Result<usize, &'static str> {
        let (shared, rest) = match shared {
            Some(shared) => (shared, rest),
            None => {
                let shared = shared_prefix(self.key(), &from[rest.clone()]);
                (shared, rest.start + shared..rest.end)
            }
        };
        if shared > self.len {
            return Err("a key shares more than the key before holds");
        }
        // Above the key before: it goes on past it, or differs from it by a greater byte.
        // Written by `encode`, a shared prefix is the longest, so that byte never equals.
        let above = match (from.get(rest.start), self.key().get(shared)) {
            _ if rest.is_empty() => !self.started,
            (Some(next), Some(before)) => next > before,
            _ => true,
        };
        if !above {
            return Err("keys out of order");
        }
        let n = rest.len();
        if self.bytes.len() < shared + n.max(BLOCK) {
            self.bytes.resize(shared + n.max(BLOCK), 0);
        }
        match from.get(rest.start..rest.start + BLOCK) {
            Some(block) if n <= BLOCK => {
                let to: &mut [u8; BLOCK] = (&mut self.bytes[shared..shared + BLOCK])
                    .try_into()
                    .expect("a block");
                *to = block.try_into().expect("a block");
            }
            _ => self.bytes[shared..shared + n].copy_from_slice(&from[rest]),
        }
        self.len = shared + n;
        self.started = true;
        Ok(shared)
    }
}

/// A file's keys, checked, in one buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.ends.len()).map(|i| self.get(i))
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }
}

/// At most this many times a file's bytes (plus [`EXPANSION_SLACK`]) come out of [`decode`].
/// Front coding lets a few bytes stand for a long key, so a corrupt file of entries that each
/// extend the key before by one byte would decode to the square of its size and take a merge
/// down; real keys expand 3× here (11-byte ids in about 4 bytes each).
const MAX_EXPANSION: usize = 64;
const EXPANSION_SLACK: usize = 1 << 20;

/// The keys of a file, checked.
pub fn decode(bytes: &[u8]) -> Result<Keys, &'static str> {
    let limit = bytes
        .len()
        .saturating_mul(MAX_EXPANSION)
        .saturating_add(EXPANSION_SLACK);
    if bytes.len() < MAGIC.len() {
        return Err("not a key index file");
    }
    let format = format_of(&bytes[..MAGIC.len()])?;
    let rest = &bytes[MAGIC.len()..];
    let (mut last, mut keys) = (Last::default(), Keys::default());
    let mut push = |key: &[u8]| {
        if keys.bytes.len() + key.len() > limit {
            return Err("keys far longer than the file: not written by this program");
        }
        keys.bytes.extend_from_slice(key);
        keys.ends.push(keys.bytes.len());
        Ok(())
    };
    match format {
        Format::V2 | Format::V3 => entries(rest, format, &mut last, &mut push)?,
        Format::V4 => {
            let (mut rest, mut blocks) = (rest, Last::default());
            while !rest.is_empty() {
                let h = header(rest)??;
                blocks.advance(h.last.shared, rest, h.last.rest)?;
                rest = &rest[h.size..];
                let body = rest.get(..h.body).ok_or("truncated block")?;
                entries(body, format, &mut last, &mut push)?;
                if last.key() != blocks.key() {
                    return Err("a block's last key is not its header's");
                }
                rest = &rest[h.body..];
            }
        }
    }
    Ok(keys)
}

/// Walks the entries that fill `bytes`, each checked against the key before (`last`), and
/// gives each key to `each`.
fn entries(
    mut bytes: &[u8],
    format: Format,
    last: &mut Last,
    each: &mut impl FnMut(&[u8]) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    while !bytes.is_empty() {
        let e = entry(bytes, format)??;
        last.advance(e.shared, bytes, e.rest)?;
        each(last.key())?;
        bytes = &bytes[e.size..];
    }
    Ok(())
}

/// Why a look-up stopped.
#[derive(Debug)]
pub enum LookupError {
    /// The file is not a key index file, or not a well-formed one.
    Format(&'static str),
    /// Reading the file failed.
    Read(std::io::Error),
}

impl PartialEq<&'static str> for LookupError {
    fn eq(&self, reason: &&'static str) -> bool {
        matches!(self, LookupError::Format(r) if r == reason)
    }
}

/// Reads `buf` full, or as much as there is; returns how much that was.
async fn read_up_to(
    file: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> Result<usize, LookupError> {
    let mut at = 0;
    while at < buf.len() {
        match file.read(&mut buf[at..]).await.map_err(LookupError::Read)? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}

/// The merge of the sorted wanted keys with a file's keys, as they come.
///
/// Invariant between keys: the next wanted key is above the file's key walked last and shares
/// `common` bytes with it. A new key that shares more than `common` bytes with the key before
/// differs from the wanted key where the key before did, by the same smaller byte: it is below
/// the wanted key and shares `common` bytes with it too, so it needs no compare at all. Only a
/// key that branches off within those bytes is compared, from where they branch.
struct Search<'w> {
    wanted: std::iter::Peekable<std::vec::IntoIter<&'w str>>,
    common: usize,
    held: Vec<&'w str>,
    missing: Vec<&'w str>,
}

impl<'w> Search<'w> {
    fn new(wanted: Vec<&'w str>) -> Self {
        Search {
            wanted: wanted.into_iter().peekable(),
            common: 0,
            held: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// The file's next key, `key`, sharing `shared` bytes with the key before: true when it
    /// settled a wanted key (held or missing).
    #[inline(always)]
    fn step(&mut self, shared: usize, key: &[u8]) -> bool {
        shared <= self.common && self.compare(shared, key)
    }

    fn compare(&mut self, shared: usize, key: &[u8]) -> bool {
        // `key` and the wanted key share at least `from` bytes: what `key` shares with the key
        // before, which the wanted key shares too (`shared <= common`).
        let mut from = shared;
        let mut settled = false;
        while let Some(&w) = self.wanted.peek() {
            let w = w.as_bytes();
            let common = from + shared_prefix(&w[from..], &key[from..]);
            // A key that ends is below the one that goes on.
            match w.get(common).cmp(&key.get(common)) {
                std::cmp::Ordering::Greater => {
                    self.common = common;
                    return settled;
                }
                std::cmp::Ordering::Equal => self.held.extend(self.wanted.next()),
                std::cmp::Ordering::Less => self.missing.extend(self.wanted.next()),
            }
            settled = true;
            from = 0;
        }
        settled
    }

    /// True when a block whose last key is `last` may hold the next wanted key: it is at most
    /// `last`.
    #[inline]
    fn wants_up_to(&mut self, last: &[u8]) -> bool {
        self.wanted.peek().is_some_and(|w| w.as_bytes() <= last)
    }

    /// The file's keys up to `last` were passed over: the next wanted key is above `last`, the
    /// key walked last from now on.
    fn passed(&mut self, last: &[u8]) {
        if let Some(w) = self.wanted.peek() {
            self.common = shared_prefix(w.as_bytes(), last);
        }
    }

    fn finish(mut self) -> (Vec<&'w str>, Vec<&'w str>) {
        self.missing.extend(self.wanted);
        (self.held, self.missing)
    }
}

/// Where a walk of a v4 file is.
#[derive(Clone, Copy)]
enum Pos {
    /// At a block's header (or the file's end).
    Header,
    /// Inside a block it decodes, this many bytes before its end.
    Body(usize),
    /// Inside a block it passes over, this many bytes before its end.
    Pass(usize),
}

/// A look-up's walk over a file's entries as they arrive.
struct Walk<'w> {
    format: Format,
    search: Search<'w>,
    /// The key walked last.
    last: Last,
    /// The last key of the block walked last (v4).
    block: Last,
    /// Inside a block it decodes, how many leading bytes the key walked last surely shares with
    /// the block's last key: the least prefix shared since the block before's last key, which
    /// both were built from. The block's end compares only the bytes after it, so a walk stays
    /// linear in a file's bytes however long its keys.
    same: usize,
    pos: Pos,
}

impl<'w> Walk<'w> {
    /// A walk from a file's first entry, after its `magic`, looking for `wanted`.
    fn start(magic: &[u8], mut wanted: Vec<&'w str>) -> Result<Self, LookupError> {
        wanted.sort_unstable();
        wanted.dedup();
        Ok(Walk {
            format: format_of(magic).map_err(LookupError::Format)?,
            search: Search::new(wanted),
            last: Last::default(),
            block: Last::default(),
            same: 0,
            pos: Pos::Header,
        })
    }

    /// Walks what it can of `buf[at..end]` (the bytes past `end` are stale but allocated:
    /// `advance` may copy some past the key, never into it): returns where it stopped and why
    /// (the reason, should the file end there).
    #[inline]
    fn walk(
        &mut self,
        buf: &[u8],
        mut at: usize,
        end: usize,
    ) -> Result<(usize, &'static str), &'static str> {
        loop {
            match self.pos {
                Pos::Header if matches!(self.format, Format::V2 | Format::V3) => {
                    match entry(&buf[at..end], self.format)? {
                        Ok(e) => {
                            let shared = self.last.advance(e.shared, &buf[at..], e.rest)?;
                            let _ = self.search.step(shared, self.last.key());
                            at += e.size;
                        }
                        Err(reason) => return Ok((at, reason)),
                    }
                }
                Pos::Header => match header(&buf[at..end])? {
                    Ok(h) => {
                        // Checked before it decides: each block ends above the one before.
                        let shared = self.block.advance(h.last.shared, &buf[at..], h.last.rest)?;
                        self.pos = if self.search.wants_up_to(self.block.key()) {
                            self.same = shared;
                            Pos::Body(h.body)
                        } else {
                            // At a header the key walked last is the block before's last key,
                            // which this block's last key shares `shared` bytes with.
                            self.last.take(&self.block, shared);
                            self.search.passed(self.block.key());
                            Pos::Pass(h.body)
                        };
                        at += h.size;
                    }
                    Err(reason) => return Ok((at, reason)),
                },
                Pos::Body(left) => {
                    let here = (end - at).min(left);
                    match entry(&buf[at..at + here], self.format)? {
                        Ok(e) => {
                            let shared = self.last.advance(e.shared, &buf[at..], e.rest)?;
                            let settled = self.search.step(shared, self.last.key());
                            self.same = self.same.min(shared);
                            at += e.size;
                            let (last, block) = (self.last.key(), self.block.key());
                            self.pos = match left - e.size {
                                0 if last.len() != block.len()
                                    || last[self.same..] != block[self.same..] =>
                                {
                                    return Err("a block's last key is not its header's");
                                }
                                0 => Pos::Header,
                                // The block's wanted keys are settled: the rest of it is passed
                                // over, as a whole block is (half a block decoded on average,
                                // rather than all of it).
                                left if settled && !self.search.wants_up_to(block) => {
                                    self.last.take(&self.block, self.same);
                                    self.search.passed(self.block.key());
                                    Pos::Pass(left)
                                }
                                left => Pos::Body(left),
                            };
                        }
                        // The block's bytes are all here: the entry runs past its end.
                        Err(reason) if here == left => return Err(reason),
                        Err(reason) => return Ok((at, reason)),
                    }
                }
                Pos::Pass(left) => {
                    let here = (end - at).min(left);
                    at += here;
                    if here < left {
                        self.pos = Pos::Pass(left - here);
                        return Ok((at, "truncated block"));
                    }
                    self.pos = Pos::Header;
                }
            }
        }
    }
}

/// Splits `wanted` into the keys the file holds and those it does not (each once), in one walk
/// over the file as it is read: a look-up holds one read of [`READ_BYTES`], the entry that
/// straddles it, the key walked last and the wanted keys, nothing of the file's size. A shard
/// holds every distinct key of all history (about 340 MB a shard at 1 M orders a day after
/// 3 years, 250 k new customers a day, as v2); holding it whole made a check's memory grow with
/// history. What it decodes is checked as [`decode`] checks it; in a v4 file that is every
/// block's header (each block's last key above the one before) and the blocks it does not pass
/// over.
///
/// The keys are walked in the bytes read, not read one by one: through a buffered reader, two
/// reads and a copy per key were most of the orders check at 365 days of history (2.46 M
/// customers: `perf` put the look-up's polls, copies and compares at about 60% of its time).
pub async fn lookup(
    file: impl AsyncRead + Unpin,
    wanted: Vec<&str>,
) -> Result<(Vec<&str>, Vec<&str>), LookupError> {
    let mut file = file;
    let mut magic = [0u8; MAGIC.len()];
    if read_up_to(&mut file, &mut magic).await? < MAGIC.len() {
        return Err(LookupError::Format("not a key index file"));
    }
    let mut walk = Walk::start(&magic, wanted)?;
    // `buf[at..end]` has arrived and is not walked yet. The buffer is zeroed once, not per
    // read: a store's reader may return a few KiB a time.
    let mut buf = vec![0u8; READ_BYTES];
    let (mut at, mut end) = (0usize, 0usize);
    loop {
        let straddles;
        (at, straddles) = walk.walk(&buf, at, end).map_err(LookupError::Format)?;
        // What was walked goes; the next read goes after the rest.
        buf.copy_within(at..end, 0);
        (at, end) = (0, end - at);
        if end == buf.len() {
            // An entry longer than the buffer: it grows, but only once what arrived fills it,
            // so a corrupt length allocates at most twice what the file holds.
            buf.resize(2 * buf.len(), 0);
        }
        let n = file
            .read(&mut buf[end..])
            .await
            .map_err(LookupError::Read)?;
        if n == 0 {
            return match (end, walk.pos) {
                (0, Pos::Header) => Ok(walk.search.finish()),
                _ => Err(LookupError::Format(straddles)),
            };
        }
        end += n;
    }
}

/// [`lookup`] of a file already in memory: walked where it lies, without a reader's buffer
/// (zeroing 256 KiB for each of the 775 small key lists of a payments check at a year of history
/// was 7% of its time, `perf`).
pub fn lookup_in<'w>(
    bytes: &[u8],
    wanted: Vec<&'w str>,
) -> Result<(Vec<&'w str>, Vec<&'w str>), LookupError> {
    if bytes.len() < MAGIC.len() {
        return Err(LookupError::Format("not a key index file"));
    }
    let mut walk = Walk::start(&bytes[..MAGIC.len()], wanted)?;
    let (at, straddles) = walk
        .walk(bytes, MAGIC.len(), bytes.len())
        .map_err(LookupError::Format)?;
    match (at == bytes.len(), walk.pos) {
        (true, Pos::Header) => Ok(walk.search.finish()),
        _ => Err(LookupError::Format(straddles)),
    }
}

/// A file of the older format, as `encode` wrote it before v3.
#[cfg(test)]
pub(super) fn encode_v2<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = MAGIC_V2.to_vec();
    for k in keys {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

/// The sorted union of two sorted, distinct key lists (a merge walk, no set).
pub fn union<'a>(
    old: impl IntoIterator<Item = &'a [u8]>,
    new: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<&'a [u8]> {
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    let mut out = Vec::new();
    loop {
        let next = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => match o.cmp(n) {
                std::cmp::Ordering::Less => old.next(),
                std::cmp::Ordering::Greater => new.next(),
                std::cmp::Ordering::Equal => {
                    new.next();
                    old.next()
                }
            },
            (Some(_), None) => old.next(),
            (None, Some(_)) => new.next(),
            (None, None) => return out,
        };
        out.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeSet;

    /// `keys` in every format a reader takes: v4 in blocks of the default size and of one and
    /// two keys (so keys and headers alternate), v3 and v2.
    fn every(keys: &[&[u8]]) -> [Vec<u8>; 5] {
        let keys = || keys.iter().copied();
        [
            encode(keys()),
            encode_blocks(keys(), 1),
            encode_blocks(keys(), 2),
            encode_v3(keys()),
            encode_v2(keys()),
        ]
    }

    fn is_v4(body: &[u8]) -> bool {
        body.starts_with(MAGIC)
    }

    #[test]
    fn the_file_format_round_trips_and_refuses_what_it_cannot_search() {
        for body in every(&["Müller".as_bytes(), b"a", b"ab", b"b"]) {
            let keys = decode(&body).unwrap();
            let listed: Vec<&[u8]> = keys.iter().collect();
            assert_eq!(listed, ["Müller".as_bytes(), b"a", b"ab", b"b"]);
            let holds = |k: &[u8]| keys.iter().any(|x| x == k);
            assert!(holds(b"ab") && holds("Müller".as_bytes()));
            assert!(!holds(b"") && !holds(b"aa") && !holds(b"c"));
            assert_eq!(
                union(keys.iter(), [b"0".as_slice(), b"b", b"c"]),
                [
                    b"0".as_slice(),
                    "Müller".as_bytes(),
                    b"a",
                    b"ab",
                    b"b",
                    b"c"
                ]
            );
            let truncated = if is_v4(&body) {
                "truncated block"
            } else {
                "truncated key"
            };
            assert_eq!(decode(&body[..body.len() - 1]), Err(truncated));
        }
        for unsorted in every(&[b"b".as_slice(), b"a"]) {
            assert_eq!(decode(&unsorted), Err("keys out of order"));
        }
        for repeated in every(&[b"ab".as_slice(), b"ab"]) {
            assert_eq!(decode(&repeated), Err("keys out of order"));
        }
        for shorter in every(&[b"ab".as_slice(), b"a"]) {
            assert_eq!(decode(&shorter), Err("keys out of order"));
        }
        // Only an empty first key may be empty.
        for per_block in [1, 2] {
            let empty_first = encode_blocks([b"".as_slice(), b"a"], per_block);
            assert_eq!(decode(&empty_first).unwrap().iter().count(), 2);
        }
        assert_eq!(decode(b"[]"), Err("not a key index file"));
        let mut past = MAGIC_V3.to_vec();
        past.extend_from_slice(&[0, 1, b'a', 2, 1, b'b']);
        assert_eq!(
            decode(&past),
            Err("a key shares more than the key before holds")
        );
        // A shared prefix shorter than the longest is not how `encode` writes: refused.
        let mut short = MAGIC_V3.to_vec();
        short.extend_from_slice(&[0, 2, b'a', b'b', 0, 2, b'a', b'c']);
        assert_eq!(decode(&short), Err("keys out of order"));
        let mut first = MAGIC_V3.to_vec();
        first.extend_from_slice(&[1, 1, b'a']);
        assert_eq!(
            decode(&first),
            Err("a key shares more than the key before holds")
        );
    }

    #[test]
    fn a_v4_file_refuses_blocks_that_disagree_with_their_headers() {
        // A block: its entries' length, its last key front-coded against the block before's,
        // then its entries.
        let block = |body: &[u8], shared: u8, last: &[u8]| {
            let mut out = vec![body.len() as u8, shared, last.len() as u8];
            out.extend_from_slice(last);
            out.extend_from_slice(body);
            out
        };
        let file = |blocks: &[Vec<u8>]| {
            let mut out = MAGIC.to_vec();
            blocks.iter().for_each(|b| out.extend_from_slice(b));
            out
        };
        let a_b = [0, 1, b'a', 0, 1, b'b'];
        assert_eq!(
            decode(&file(&[block(&a_b, 0, b"b")])).unwrap().len(),
            2,
            "well formed"
        );
        assert_eq!(
            decode(&file(&[block(&a_b, 0, b"c")])),
            Err("a block's last key is not its header's")
        );
        assert_eq!(
            decode(&file(&[
                block(&a_b, 0, b"b"),
                block(&[0, 1, b'a'], 0, b"a")
            ])),
            Err("keys out of order"),
            "a block's last key below the one before"
        );
        assert_eq!(decode(&file(&[block(&[], 0, b"a")])), Err("an empty block"));
        // The block's length ends inside an entry.
        let mut short = block(&a_b, 0, b"b");
        short[0] = 5;
        short.push(b'z');
        assert_eq!(decode(&file(&[short])), Err("truncated key"));
        let mut past = block(&a_b, 0, b"b");
        past[0] = 7;
        assert_eq!(decode(&file(&[past])), Err("truncated block"));
        assert_eq!(decode(&file(&[vec![6, 0]])), Err("truncated block header"));
    }

    #[tokio::test]
    async fn a_lookup_decodes_only_the_blocks_its_keys_may_be_in() {
        let block = |body: &[u8], shared: u8, last: &[u8]| {
            let mut out = vec![body.len() as u8, shared, last.len() as u8];
            out.extend_from_slice(last);
            out.extend_from_slice(body);
            out
        };
        // Three blocks: "a".."b", then a block whose header says "d" but whose entries are out
        // of order ("c" then "b"), then "e".."f".
        let mut body = MAGIC.to_vec();
        body.extend(block(&[0, 1, b'a', 0, 1, b'b'], 0, b"b"));
        body.extend(block(&[0, 1, b'c', 0, 1, b'b'], 0, b"d"));
        body.extend(block(&[0, 1, b'e', 0, 1, b'f'], 0, b"f"));
        assert_eq!(decode(&body), Err("keys out of order"));
        // Keys outside the middle block pass over it: its entries are never decoded.
        let (held, missing) = lookup(&body[..], vec!["a", "e", "ee", "0"]).await.unwrap();
        assert_eq!((held, missing), (vec!["a", "e"], vec!["0", "ee"]));
        // A key up to its last key decodes it, as far as the key is settled: past "c" for
        // "cc" and "d", not for "bb" (missing once "c" is read).
        for wanted in ["cc", "d"] {
            let err = lookup(&body[..], vec![wanted]).await.unwrap_err();
            assert_eq!(err, "keys out of order", "{wanted}");
        }
        let (held, missing) = lookup(&body[..], vec!["bb"]).await.unwrap();
        assert!(held.is_empty() && missing == ["bb"]);
        // Decoding stops once the block's wanted keys are settled: its third entry (sharing
        // more than the key before holds) is reached only by a key wanted past the second.
        let mut tail = MAGIC.to_vec();
        tail.extend(block(&[0, 1, b'a', 0, 1, b'b', 5, 1, b'z'], 0, b"z"));
        let (held, missing) = lookup(&tail[..], vec!["a", "aa"]).await.unwrap();
        assert_eq!((held, missing), (vec!["a"], vec!["aa"]));
        let err = lookup(&tail[..], vec!["a", "y"]).await.unwrap_err();
        assert_eq!(err, "a key shares more than the key before holds");
        // A block whose entries end elsewhere than its header says, decoded and passed over.
        let mut wrong = MAGIC.to_vec();
        wrong.extend(block(&[0, 1, b'a', 0, 1, b'b'], 0, b"c"));
        wrong.extend(block(&[0, 1, b'd'], 0, b"d"));
        let err = lookup(&wrong[..], vec!["a", "bb"]).await.unwrap_err();
        assert_eq!(err, "a block's last key is not its header's");
        let (held, _) = lookup(&wrong[..], vec!["d"]).await.unwrap();
        assert_eq!(held, ["d"]);
    }

    #[test]
    fn a_file_that_decodes_far_larger_than_itself_is_refused() {
        // Each entry adds one byte to a 64 KiB key: 3 bytes in, 64 KiB out.
        let mut body = MAGIC_V3.to_vec();
        varint::put(&mut body, 0);
        varint::put(&mut body, 1 << 16);
        body.extend(std::iter::repeat_n(b'a', 1 << 16));
        for i in 0..2000u64 {
            varint::put(&mut body, (1 << 16) + i);
            varint::put(&mut body, 1);
            body.push(b'a');
        }
        assert_eq!(
            decode(&body),
            Err("keys far longer than the file: not written by this program")
        );
        // A look-up holds one key at a time: it walks the same file to its end.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (held, missing) = rt.block_on(lookup(&body[..], vec!["a"])).unwrap();
        assert!(held.is_empty() && missing == ["a"]);
    }

    #[test]
    fn neighbours_share_their_prefix() {
        let keys: Vec<String> = (1000..1100).map(|i| format!("C000100{i}")).collect();
        let body = encode(keys.iter().map(String::as_bytes));
        let v2 = encode_v2(keys.iter().map(String::as_bytes));
        // 11-byte keys: two varints and the last 1-4 digits, against a u32 and the whole key.
        assert!(body.len() * 2 < v2.len(), "{} vs {}", body.len(), v2.len());
    }

    /// A look-up of a file in memory gives what one through a reader gives, for every format,
    /// every length the file may be cut to, and wanted keys held, missing or none.
    #[tokio::test]
    async fn a_lookup_in_memory_agrees_with_one_through_a_reader() {
        let keys: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("O{:05}", i * 7).into_bytes())
            .collect();
        let wanted_sets = [
            vec![],
            vec!["O00000", "O00350", "O00693", "O00694", "Z"],
            vec!["O00001", "A"],
        ];
        for body in every(&keys.iter().map(Vec::as_slice).collect::<Vec<_>>()) {
            for cut in 0..=body.len() {
                for wanted in &wanted_sets {
                    let through = lookup(&body[..cut], wanted.clone()).await;
                    let in_memory = lookup_in(&body[..cut], wanted.clone());
                    assert_eq!(
                        format!("{in_memory:?}"),
                        format!("{through:?}"),
                        "cut at {cut} of {}",
                        body.len()
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_lookup_walks_the_file_once_and_splits_the_wanted_keys() {
        for body in every(&[b"C1".as_slice(), b"C3", b"C5", "Müller".as_bytes()]) {
            // Unsorted, repeated, before, between and after the file's keys.
            let wanted = vec!["C5", "Müller", "C0", "C3", "C4", "C5", "Z"];
            let (held, missing) = lookup(&body[..], wanted).await.unwrap();
            assert_eq!(held, ["C3", "C5", "Müller"]);
            assert_eq!(missing, ["C0", "C4", "Z"]);
        }
        for empty in [encode([]), encode_v3([]), encode_v2([])] {
            let (held, missing) = lookup(&empty[..], vec!["C1"]).await.unwrap();
            assert!(held.is_empty());
            assert_eq!(missing, ["C1"]);
        }
        let err = |r: Result<_, LookupError>| r.unwrap_err();
        let unsorted = every(&[b"a".as_slice(), b"c", b"b"]);
        let equal = every(&[b"a".as_slice(), b"a"]);
        for (i, (unsorted, equal)) in unsorted.iter().zip(&equal).enumerate() {
            // v2 and v3: checked as a decode checks it, even past the last wanted key. v4: each
            // block's header, and a block's entries up to its last wanted key; in blocks of one
            // and two the headers are out of order, in one block ("a", "c", "b" under "b") the
            // walk stops once "a" is settled.
            match i {
                0 => {
                    assert!(lookup(&unsorted[..], vec!["a"]).await.is_ok());
                    assert_eq!(decode(unsorted), Err("keys out of order"));
                }
                _ => assert_eq!(
                    err(lookup(&unsorted[..], vec!["a"]).await),
                    "keys out of order"
                ),
            }
            // A v4 block passed over is checked by its header alone: with both keys in one
            // block (the default size and blocks of two) the header is in order.
            match i {
                0 | 2 => {
                    assert!(lookup(&equal[..], vec![]).await.is_ok());
                    assert_eq!(decode(equal), Err("keys out of order"));
                }
                _ => assert_eq!(err(lookup(&equal[..], vec![]).await), "keys out of order"),
            }
        }
        for body in every(&[b"C1".as_slice(), b"C3", b"C5", "Müller".as_bytes()]) {
            // Wanted, the last key's block is decoded.
            assert_eq!(
                err(lookup(&body[..body.len() - 1], vec!["C1", "Müller"]).await),
                "truncated key"
            );
            // Passed over, a block cut short is found by its length.
            if is_v4(&body) {
                assert_eq!(
                    err(lookup(&body[..body.len() - 1], vec![]).await),
                    "truncated block"
                );
            }
        }
        let v3 = encode_v3([b"C1".as_slice(), b"C3", b"C5", "Müller".as_bytes()]);
        // "Müller" is 7 bytes after its two one-byte varints.
        assert_eq!(
            err(lookup(&v3[..v3.len() - 8], vec!["C1"]).await),
            "truncated length"
        );
        let v2 = encode_v2([b"C1".as_slice(), b"C3", b"C5", "Müller".as_bytes()]);
        assert_eq!(
            err(lookup(&v2[..v2.len() - 8], vec!["C1"]).await),
            "truncated length"
        );
        // A length past the end of the file allocates nothing of that size.
        let mut huge = encode_v3([]);
        varint::put(&mut huge, 0);
        varint::put(&mut huge, u64::from(u32::MAX));
        huge.extend_from_slice(b"C1");
        assert_eq!(err(lookup(&huge[..], vec![]).await), "truncated key");
        // A block that says it is longer than the file, passed over, and decoded until its
        // wanted key is settled, then passed over.
        let mut huge_v4 = encode([]);
        varint::put(&mut huge_v4, u64::from(u32::MAX));
        huge_v4.extend_from_slice(&[0, 2, b'C', b'1', 0, 2, b'C', b'1']);
        assert_eq!(err(lookup(&huge_v4[..], vec![]).await), "truncated block");
        assert_eq!(
            err(lookup(&huge_v4[..], vec!["C1"]).await),
            "truncated block"
        );
        let mut huge_v2 = encode_v2([]);
        huge_v2.extend_from_slice(&u32::MAX.to_le_bytes());
        huge_v2.extend_from_slice(b"C1");
        assert_eq!(err(lookup(&huge_v2[..], vec![]).await), "truncated key");
        assert_eq!(
            err(lookup(&b"[]"[..], vec![]).await),
            "not a key index file"
        );
    }

    #[tokio::test]
    async fn a_key_longer_than_a_read_is_looked_up_whole() {
        let long = "L".repeat(600 << 10);
        let longer = format!("{long}M");
        for body in every(&[b"A".as_slice(), long.as_bytes(), longer.as_bytes(), b"Z"]) {
            let wanted = vec![long.as_str(), longer.as_str(), "B"];
            let (held, missing) = lookup(&body[..], wanted).await.unwrap();
            assert_eq!(held, [long.as_str(), longer.as_str()]);
            assert_eq!(missing, ["B"]);
        }
    }

    proptest::proptest! {
        /// Read a few bytes at a time, so keys and lengths straddle every read, a look-up
        /// splits the wanted keys exactly as the sets do, in every format and block size.
        #[test]
        fn a_streamed_lookup_splits_the_wanted_keys_as_the_sets_do(
            file in proptest::collection::btree_set("[a-d]{0,6}(x{0,20})?", 0..60),
            wanted in proptest::collection::vec("[a-d]{0,6}(x{0,20})?", 0..40),
            chunk in 1usize..9,
            format in 0usize..4,
            per_block in 1usize..6,
        ) {
            let keys = file.iter().map(|k| k.as_bytes());
            let body = match format {
                0 => encode_v2(keys),
                1 => encode_v3(keys),
                2 => encode(keys),
                _ => encode_blocks(keys, per_block),
            };
            let reader = tokio_util::io::StreamReader::new(futures_util::stream::iter(
                body.chunks(chunk)
                    .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            ));
            let wanted_refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (held, missing) = rt.block_on(lookup(reader, wanted_refs)).unwrap();
            let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
            let expect_held: Vec<&str> =
                wanted.iter().copied().filter(|k| file.contains(*k)).collect();
            let expect_missing: Vec<&str> =
                wanted.iter().copied().filter(|k| !file.contains(*k)).collect();
            proptest::prop_assert_eq!(held, expect_held);
            proptest::prop_assert_eq!(missing, expect_missing);
            let decoded: Vec<Vec<u8>> = decode(&body).unwrap().iter().map(<[u8]>::to_vec).collect();
            let expect: Vec<Vec<u8>> = file.iter().map(|k| k.as_bytes().to_vec()).collect();
            proptest::prop_assert_eq!(decoded, expect);
        }
    }
}
