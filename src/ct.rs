//! Constant-time helpers for comparing secrets.

/// Compares two byte strings in time that depends only on their lengths.
///
/// Lengths are not secret here (they are visible in storage anyway); the
/// contents are, so the loop never exits early.
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_and_unequal() {
        assert!(super::eq(b"abc", b"abc"));
        assert!(!super::eq(b"abc", b"abd"));
        assert!(!super::eq(b"abc", b"ab"));
        assert!(super::eq(b"", b""));
    }
}
