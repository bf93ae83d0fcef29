//! The one canonical byte encoding used for everything Quire signs, hashes, stores or sends.
//!
//! Rules (also in docs/chain-format.md): integers are fixed-width big-endian; fixed-size byte
//! strings (hashes, keys, signatures) are written raw; variable byte strings and sequences are a
//! `u32` length followed by the bytes or items; enums and options are a `u8` tag then the fields.
//! There is exactly one encoding of every value, so `decode(encode(x)) == x` and
//! `encode(decode(b)) == b` for every `b` that decodes.
//!
//! Decoding never trusts a length: a sequence of `count` items is only allocated after checking
//! that the remaining input could hold `count` items of the type's minimum encoded size.

use thiserror::Error;

/// Why some bytes are not a valid encoding. Always the sender's or the file's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input ends early: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("{what}: length {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: unknown tag {tag}")]
    BadTag { what: &'static str, tag: u8 },
    #[error("{what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Something with a canonical encoding.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Something that can be decoded from its canonical encoding.
pub trait Decode: Sized {
    /// The fewest bytes any value of this type encodes to; bounds pre-allocation.
    const MIN_LEN: usize;

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole buffer, refusing trailing bytes (so the encoding stays canonical).
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::decode(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

/// A cursor over input bytes that checks every read.
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Truncated {
                offset: self.offset,
                needed: len - self.remaining(),
            });
        }
        let out = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { what: "bool", tag }),
        }
    }

    /// A `u32`-length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        Ok(self.take(len)?.to_vec())
    }

    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(what, max)?).map_err(|_| DecodeError::Invalid {
            what,
            reason: "not UTF-8",
        })
    }

    /// A `u32`-count-prefixed sequence of at most `max` items.
    pub fn seq<T: Decode>(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(DecodeError::TooLong {
                what,
                len: count,
                max,
            });
        }
        // Never allocate for more items than the remaining input could possibly hold.
        let fits = self.remaining() / T::MIN_LEN.max(1);
        if count > fits {
            return Err(DecodeError::Truncated {
                offset: self.offset,
                needed: (count - fits) * T::MIN_LEN.max(1),
            });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(T::decode(self)?);
        }
        Ok(out)
    }

    pub fn option<T: Decode>(&mut self) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(self)?)),
            tag => Err(DecodeError::BadTag {
                what: "option",
                tag,
            }),
        }
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(v as u8);
}

/// Writes a length as `u32`. Every caller bounds its lengths far below 4 GiB (frames are capped),
/// so a longer one is our own bug.
fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("encoded lengths are capped far below 4 GiB");
    put_u32(out, len);
}

pub fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    put_len(out, v.len());
    out.extend_from_slice(v);
}

pub fn put_seq<T: Encode>(out: &mut Vec<u8>, items: &[T]) {
    put_len(out, items.len());
    for item in items {
        item.encode(out);
    }
}

pub fn put_option<T: Encode>(out: &mut Vec<u8>, v: &Option<T>) {
    match v {
        None => out.push(0),
        Some(x) => {
            out.push(1);
            x.encode(out);
        }
    }
}

impl Encode for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, *self)
    }
}
impl Decode for u64 {
    const MIN_LEN: usize = 8;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u64()
    }
}
impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, *self)
    }
}
impl Decode for u32 {
    const MIN_LEN: usize = 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_big_endian() {
        let mut out = Vec::new();
        put_u64(&mut out, 0x0102_0304_0506_0708);
        put_u32(&mut out, 7);
        assert_eq!(&out[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut r = Reader::new(&out);
        assert_eq!(r.u64().unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(r.u32().unwrap(), 7);
        r.finish().unwrap();
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut out = Vec::new();
        put_u32(&mut out, u32::MAX);
        let err = Reader::new(&out)
            .seq::<u64>("items", usize::MAX)
            .unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }));
        let err = Reader::new(&out).seq::<u64>("items", 10).unwrap_err();
        assert!(matches!(err, DecodeError::TooLong { .. }));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(
            u32::from_bytes(&[0, 0, 0, 1, 9]),
            Err(DecodeError::Trailing(1))
        );
        assert!(matches!(
            u32::from_bytes(&[0, 0]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_bool_and_option_tags_are_refused() {
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[5]).option::<u32>().is_err());
    }
}
