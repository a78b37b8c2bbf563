//! LEB128 varints (seven bits a byte, low bits first), shared by the file formats that store
//! lengths and small integers: the spill chunks of `columns` and the key index's shards.

/// Appends `v`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at the start of `bytes` and the bytes it takes; `None` when `bytes` ends inside
/// it (a streamed reader reads on), an error when it is longer than a `u64`.
#[inline]
pub fn get(bytes: &[u8]) -> Result<Option<(u64, usize)>, &'static str> {
    // One byte, the usual length (a key index reads two per key): inlined where it is read.
    match bytes.first() {
        Some(&b) if b < 0x80 => Ok(Some((u64::from(b), 1))),
        _ => get_long(bytes),
    }
}

fn get_long(bytes: &[u8]) -> Result<Option<(u64, usize)>, &'static str> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        // The tenth byte holds the 64th bit alone.
        if i == 9 && bits > 1 {
            return Err("varint longer than 64 bits");
        }
        v |= bits << (7 * i);
        if b < 0x80 {
            return Ok(Some((v, i + 1)));
        }
    }
    if bytes.len() >= 10 {
        Err("varint longer than 64 bits")
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn a_varint_reads_back_and_any_prefix_of_it_asks_for_more(v: u64) {
            let mut out = Vec::new();
            put(&mut out, v);
            proptest::prop_assert_eq!(get(&out), Ok(Some((v, out.len()))));
            for cut in 0..out.len() {
                proptest::prop_assert_eq!(get(&out[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn more_than_64_bits_is_refused() {
        assert!(get(&[0x80; 10]).is_err());
        assert!(get(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err());
        assert_eq!(
            get(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Ok(Some((u64::MAX, 10)))
        );
    }
}
