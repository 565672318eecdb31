//! Strict big-endian reader and writer for the byte formats (docs/spec/conventions.md).

/// Why a structure failed to decode; logged, never returned.
pub(crate) type Malformed = &'static str;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err("truncated");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn vec16(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A `vec16` that must be UTF-8.
    pub(crate) fn string16(&mut self) -> Result<String, Malformed> {
        let bytes = self.vec16()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8")
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn finish(self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    /// A `u16` length and the bytes; callers bound the length (names ≤ 4096 bytes).
    fn put_vec16(&mut self, v: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_vec16(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        debug_assert!(v.len() <= usize::from(u16::MAX));
        self.put_u16(len);
        self.extend_from_slice(&v[..usize::from(len)]);
    }
}
