//! Subjects: the people personal information is about.
//!
//! A [`SubjectId`] is a random 128-bit handle. It carries no value, but it is
//! an identifier: it ties a person's records, consents and key together, and
//! appears in audit events, envelopes and the host's tables. Logs get a
//! [`SubjectTag`] instead (a short keyed tag,
//! [`Custodian::subject_tag`](crate::Custodian::subject_tag)), and the
//! crate's error messages name no id. The redacted `Debug` forms (of
//! [`PersonalInfo`](crate::PersonalInfo), sealed envelopes, consent
//! records) and [`TracingSink`](crate::audit::TracingSink)'s lines show the
//! id's first two bytes (`subject 7f3a…`): to someone who also holds the
//! ids, as the database operator does, that names one subject among
//! thousands; the custodian's own `tracing` spans carry the tag.
//!
//! ```
//! use privacy_pledge::SubjectId;
//!
//! let id = SubjectId::from(0x7f3a_u128);
//! assert_eq!(id.to_string(), "00000000000000000000000000007f3a");
//! assert_eq!(id.to_string().parse::<SubjectId>(), Ok(id));
//! assert_ne!(SubjectId::random(), SubjectId::random());
//! ```
//!
//! With the `sqlite`, `postgres`, `sqlx-sqlite` or `sqlx-postgres` feature a
//! `SubjectId` is also a column type of those clients: its 16 bytes in a
//! `BLOB` / `bytea` column (see [`store::columns`](crate::store::columns)).

use core::fmt;
use core::str::FromStr;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The id of a data subject: 16 bytes, shown as 32 lowercase hex digits.
///
/// Stored as `[u8; 16]` rather than `u128` so that it has alignment 1 and a
/// `PersonalInfo<T, P>` is exactly `T` plus 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId([u8; 16]);

impl SubjectId {
    /// A fresh random id from the operating system's generator.
    ///
    /// For a sign-up, [`Custodian::new_subject`](crate::Custodian::new_subject)
    /// draws the same kind of id and spares the subject's first seal a read
    /// of the key store.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random generator fails, which `ring`
    /// treats as unrecoverable. Use [`try_random`](Self::try_random) to handle it.
    pub fn random() -> Self {
        Self::try_random().expect("the operating system's random generator failed")
    }

    /// A fresh random id, or `Err` if the system generator fails.
    pub fn try_random() -> Result<Self, crate::Error> {
        crate::crypto::random_array().map(SubjectId)
    }

    /// The id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        SubjectId(bytes)
    }

    /// The id's 16 bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The id's bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A short form for redacted output: the first four hex digits and `…`.
    pub(crate) fn short(&self) -> impl fmt::Display + '_ {
        struct Short<'a>(&'a [u8; 16]);
        impl fmt::Display for Short<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:02x}{:02x}…", self.0[0], self.0[1])
            }
        }
        Short(&self.0)
    }
}

impl From<u128> for SubjectId {
    fn from(v: u128) -> Self {
        SubjectId(v.to_be_bytes())
    }
}

impl From<SubjectId> for u128 {
    fn from(id: SubjectId) -> Self {
        u128::from_be_bytes(id.0)
    }
}

/// The id from a slice of exactly 16 bytes (a database column, a message
/// field); any other length is refused.
///
/// ```
/// use privacy_pledge::SubjectId;
///
/// let id = SubjectId::random();
/// assert_eq!(SubjectId::try_from(id.as_bytes().as_slice()), Ok(id));
/// assert!(SubjectId::try_from(&id.as_bytes()[..15]).is_err());
/// ```
impl TryFrom<&[u8]> for SubjectId {
    type Error = InvalidSubjectId;
    fn try_from(bytes: &[u8]) -> Result<Self, InvalidSubjectId> {
        <[u8; 16]>::try_from(bytes)
            .map(SubjectId)
            .map_err(|_| InvalidSubjectId)
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({self})")
    }
}

/// A short keyed tag of a [`SubjectId`], for logs: 8 hex digits, the first
/// four bytes of HMAC-SHA-256 of the id under a key derived from the keyring
/// ([`Custodian::subject_tag`](crate::Custodian::subject_tag)).
///
/// A log line can then say "this customer again" without naming them. An
/// id is an identifier, and so is any prefix of it; a tag is not: whoever
/// reads the log without the keyring can neither tell which id a tag belongs
/// to nor compute the tag of an id they know (the database operator knows
/// every id). Whoever holds the keyring computes the tag of one customer's
/// id to find their lines. Every process of a service with one keyring gives
/// a subject the same tag, across restarts too.
///
/// Four bytes: among about 93,000 subjects one pair is expected to share a
/// tag. A tag points at lines to look at; it does not identify anyone.
///
/// ```
/// use privacy_pledge::{Custodian, SubjectId};
///
/// let custodian = Custodian::in_memory();
/// let ada = SubjectId::random();
/// let tag = custodian.subject_tag(ada);
/// assert_eq!(tag, custodian.subject_tag(ada));
/// assert_eq!(tag.to_string().len(), 8);
/// assert!(!ada.to_string().contains(&tag.to_string()));
/// eprintln!("refund failed for subject {tag}");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubjectTag([u8; 4]);

impl SubjectTag {
    pub(crate) fn compute(key: &ring::hmac::Key, subject: SubjectId) -> Self {
        let mut msg = [0u8; 32];
        msg[..16].copy_from_slice(b"pp/subject-tag/1");
        msg[16..].copy_from_slice(subject.as_bytes());
        let mac = ring::hmac::sign(key, &msg);
        let mut out = [0u8; 4];
        out.copy_from_slice(&mac.as_ref()[..4]);
        SubjectTag(out)
    }
}

impl fmt::Display for SubjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SubjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectTag({self})")
    }
}

/// The text or bytes were not a subject id: exactly 32 lowercase hex digits
/// ([`FromStr`]), or exactly 16 bytes (`TryFrom<&[u8]>`, a database column),
/// are accepted. The message never repeats the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a subject id: expected 32 lowercase hex digits or 16 bytes")]
pub struct InvalidSubjectId;

/// Hashes subject ids for the caches on every use (the key cache, the
/// consent cache): a folded 64 × 64 → 128-bit multiply
/// of the id's two halves, each XORed with a random key, then a second one
/// by a constant, where std's SipHash-1-3 took about 10 ns of every seal and
/// open. (With the first multiply alone, some keys gave sequential ids,
/// `SubjectId::from(n)`, a third of the buckets they should spread over.)
///
/// Subject ids come from host code and envelopes, so they may be chosen to
/// collide: the keys are random per cache (drawn from std's `RandomState`,
/// itself seeded from the OS), so which ids share a bucket cannot be known
/// from outside the process.
#[derive(Clone, Copy)]
pub(crate) struct SubjectHash {
    k0: u64,
    k1: u64,
}

impl SubjectHash {
    pub(crate) fn new() -> Self {
        let seed = RandomState::new();
        SubjectHash {
            k0: seed.hash_one(0x243f_6a88_85a3_08d3_u64),
            k1: seed.hash_one(0x1319_8a2e_0370_7344_u64),
        }
    }
}

impl BuildHasher for SubjectHash {
    type Hasher = SubjectHasher;

    fn build_hasher(&self) -> SubjectHasher {
        SubjectHasher { keys: *self, h: 0 }
    }
}

/// The state of one [`SubjectHash`] hash.
pub(crate) struct SubjectHasher {
    keys: SubjectHash,
    h: u64,
}

/// The high and low halves of the full product, XORed.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for SubjectHasher {
    /// A `SubjectId` arrives as one 16-byte write (after its length, see
    /// `write_usize`): one multiply. Other lengths, which the cache never
    /// hashes, are taken 16 bytes at a time, the last chunk zero-padded and
    /// its length mixed in.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut block = [0u8; 16];
            block[..chunk.len()].copy_from_slice(chunk);
            let block = u128::from_le_bytes(block);
            let (lo, hi) = (block as u64, (block >> 64) as u64);
            self.h = folded_multiply(
                lo ^ self.keys.k0 ^ self.h,
                hi ^ self.keys.k1 ^ chunk.len() as u64,
            );
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // The slice length `Hash` writes before the bytes: folded into the
        // next block rather than given a multiply of its own.
        self.h ^= n as u64;
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Spreads the bits of a product whose inputs varied only in a few
        // bits over all of the hash (hashbrown uses the low bits for the
        // bucket and the top 7 for the tag).
        folded_multiply(self.h, 0x243f_6a88_85a3_08d3)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex digits of `bytes` to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// Writes the lowercase hex digits of `bytes` to `f`, 32 bytes per write.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (pair, &b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        // Only ASCII digits were written.
        f.write_str(core::str::from_utf8(&buf[..chunk.len() * 2]).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

pub(crate) fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes exactly `N * 2` lowercase hex digits.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (hex_nibble(pair[0])? << 4) | hex_nibble(pair[1])?;
    }
    Some(out)
}

impl FromStr for SubjectId {
    type Err = InvalidSubjectId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex::<16>(s).map(SubjectId).ok_or(InvalidSubjectId)
    }
}

impl Serialize for SubjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for SubjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = SubjectId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a subject id (32 lowercase hex digits or 16 bytes)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SubjectId, E> {
                v.parse().map_err(|_| E::custom(InvalidSubjectId))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<SubjectId, E> {
                <[u8; 16]>::try_from(v)
                    .map(SubjectId)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    #[test]
    fn subject_hash_is_keyed_and_spreads_ids() {
        let (a, b) = (SubjectHash::new(), SubjectHash::new());
        assert!((a.k0, a.k1) != (b.k0, b.k1), "keys are drawn per cache");
        let id = |i: u128| SubjectId::from(i);
        assert_eq!(a.hash_one(id(7)), a.hash_one(id(7)));
        assert_ne!(a.hash_one(id(7)), b.hash_one(id(7)));
        // Whatever the keys, ids that are small counters (in either half)
        // or differ in one bit land apart, in both the low bits (the bucket)
        // and the top 7 bits (the tag). 8,320 distinct ids over 2^13 bucket
        // patterns fill about 5,200 of them when spread at random.
        for _ in 0..50 {
            let keys = SubjectHash::new();
            let ids: HashSet<u128> = (0..4096u128)
                .flat_map(|i| [i, i << 64])
                .chain((0..128).map(|bit| 1u128 << bit))
                .collect();
            let hashes: Vec<u64> = ids.iter().map(|&x| keys.hash_one(id(x))).collect();
            let low: HashSet<u64> = hashes.iter().map(|h| h & 0x1fff).collect();
            let high: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            assert!(low.len() > 4900, "{} of 8192 low-bit patterns", low.len());
            assert_eq!(high.len(), 128);
            let distinct: HashSet<u64> = hashes.iter().copied().collect();
            assert_eq!(distinct.len(), ids.len(), "no two distinct ids collide");
        }
        // Lengths other than 16 still hash deterministically.
        let mut h1 = a.build_hasher();
        h1.write(b"a longer key of 37 bytes, or so.....");
        let mut h2 = a.build_hasher();
        h2.write(b"a longer key of 37 bytes, or so.....");
        assert_eq!(h1.finish(), h2.finish());
    }

    use super::*;

    #[test]
    fn strict_text_form() {
        let id = SubjectId::from(u128::MAX - 5);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<SubjectId>(), Ok(id));
        assert!(s.to_uppercase().parse::<SubjectId>().is_err());
        assert!(s[..31].parse::<SubjectId>().is_err());
        assert!(format!("{s}0").parse::<SubjectId>().is_err());
        assert!("".parse::<SubjectId>().is_err());
        assert!("é".repeat(16).parse::<SubjectId>().is_err());
        assert_eq!(u128::from(id), u128::MAX - 5);
    }

    #[test]
    fn json_round_trip() {
        let id = SubjectId::random();
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SubjectId>(&j).unwrap(), id);
        assert!(serde_json::from_str::<SubjectId>("\"zz\"").is_err());
    }
}
