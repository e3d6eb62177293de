//! Structured input decoded by hand from the fuzzer's bytes.
//!
//! Targets that need more than one value (a row of several columns, a
//! record of several fields) read them from the front of the input with an
//! [`Input`], so that libFuzzer's byte mutations move one field at a time.
//! This does the job `arbitrary` would, without a dependency, so the corpus
//! replay test builds on stable with the crate's own dependencies.

/// A cursor over the fuzzer's bytes. Every read succeeds: past the end it
/// yields zeros and empty slices, so every input decodes to some structure.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// A big-endian integer of `N` bytes (zero-filled at the end).
    fn be<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.be())
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.be())
    }

    /// The next eight bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.be())
    }

    /// A field with a one-byte length in front.
    pub fn field(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    /// A field with a one-byte length in front, as text (lossy UTF-8).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.field()).into_owned()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A length-prefixed field for [`Input::field`], for building seeds.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let n = bytes.len().min(255);
    let mut out = vec![n as u8];
    out.extend_from_slice(&bytes[..n]);
    out
}
