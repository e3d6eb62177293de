//! Sealed envelopes: the only form in which personal information is stored.

use core::fmt;
use core::marker::PhantomData;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::aead::{Algorithm, NONCE_LEN, TAG_LEN};
use crate::data::{DataKind, Kind};
use crate::purpose::{Purpose, PurposeId};
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// The envelope format version this crate writes. Version 1 envelopes (no
/// kind and purpose in the header) still open.
pub const FORMAT_VERSION: u8 = 2;

/// The header length of a version 2 envelope.
pub(crate) const HEADER_LEN: usize = 49;
/// The header length of a version 1 envelope.
const HEADER_LEN_V1: usize = 47;
/// The associated data's length, in both versions: the header before the
/// nonce (v2), or the header before the nonce with the kind and purpose
/// codes of the type being opened appended (v1).
pub(crate) const AAD_LEN: usize = 37;
pub(crate) const FLAG_PADDED: u8 = 0b0000_0001;

/// An envelope's bytes or text are malformed. Each is a distinct, typed error
/// found before any decryption; none carries envelope contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// No bytes at all.
    #[error("envelope is empty")]
    Empty,
    /// Fewer bytes than the header and tag need, or than the header announces.
    #[error("envelope is truncated: {len} bytes, {needed} needed")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// More bytes than the header announces.
    #[error("envelope is extended: {len} bytes, {expected} expected")]
    Extended {
        /// Bytes present.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A format version this crate does not know.
    #[error("unknown envelope format version {0}")]
    UnknownVersion(u8),
    /// An algorithm id this crate does not know.
    #[error("unknown envelope algorithm {0}")]
    UnknownAlgorithm(u8),
    /// Flag bits this crate does not know.
    #[error("unknown envelope flags {0:#04x}")]
    UnknownFlags(u8),
    /// The text form is not the canonical unpadded URL-safe base64.
    #[error("envelope text is not canonical unpadded URL-safe base64")]
    BadText,
    /// The header names a data kind or purpose code this crate does not
    /// know.
    #[error("envelope names an unknown data kind or purpose code")]
    UnknownType,
    /// The envelope holds another kind or purpose than the type it was read
    /// as: a column read as the wrong type. Found from the authenticated
    /// header, before any decryption; it still cannot be opened as the type
    /// asked for.
    #[error(
        "this envelope holds {holds_kind} for {holds_purpose}; it was read as {asked_kind} for {asked_purpose}"
    )]
    WrongType {
        /// The kind the envelope holds.
        holds_kind: Kind,
        /// The purpose it is held for.
        holds_purpose: PurposeId,
        /// The kind asked for.
        asked_kind: Kind,
        /// The purpose asked for.
        asked_purpose: PurposeId,
    },
}

/// The fields of a header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    /// The format version (1 or 2).
    pub(crate) version: u8,
    pub(crate) algorithm: Algorithm,
    pub(crate) padded: bool,
    /// The kind and purpose codes (version 2; zero in version 1, where the
    /// type being opened supplies them).
    pub(crate) kind: u8,
    pub(crate) purpose: u8,
    pub(crate) subject: SubjectId,
    pub(crate) key_id: u32,
    pub(crate) collected: u64,
    pub(crate) nonce: [u8; NONCE_LEN],
}

impl Header {
    /// The header's length in bytes: where the ciphertext starts.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        if self.version == 1 {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }

    /// Writes a version 2 header for a ciphertext of `ct_len` bytes.
    ///
    /// Built as one array and appended at once (one capacity check, not
    /// one per field).
    #[inline]
    pub(crate) fn write(&self, ct_len: u32, out: &mut Vec<u8>) {
        debug_assert_eq!(self.version, FORMAT_VERSION);
        let mut h = [0u8; HEADER_LEN];
        h[0] = FORMAT_VERSION;
        h[1] = self.algorithm.code();
        h[2] = if self.padded { FLAG_PADDED } else { 0 };
        h[3] = self.kind;
        h[4] = self.purpose;
        h[5..21].copy_from_slice(self.subject.as_bytes());
        h[21..25].copy_from_slice(&self.key_id.to_be_bytes());
        h[25..33].copy_from_slice(&self.collected.to_be_bytes());
        h[33..37].copy_from_slice(&ct_len.to_be_bytes());
        h[37..].copy_from_slice(&self.nonce);
        out.extend_from_slice(&h);
    }

    /// The associated data of the envelope `bytes` (whose header is `self`)
    /// opened or sealed as `kind` for `purpose`.
    #[inline]
    pub(crate) fn aad(&self, bytes: &[u8], kind: u8, purpose: u8) -> [u8; AAD_LEN] {
        let mut a = [0u8; AAD_LEN];
        if self.version == 1 {
            // Version 1 binds the kind and purpose of the *type* being
            // opened: opened as another, it fails authentication.
            a[..AAD_LEN - 2].copy_from_slice(&bytes[..AAD_LEN - 2]);
            a[AAD_LEN - 2] = kind;
            a[AAD_LEN - 1] = purpose;
        } else {
            a.copy_from_slice(&bytes[..AAD_LEN]);
        }
        a
    }

    /// Parses and checks the whole envelope's framing.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, EnvelopeError> {
        let Some(&version) = bytes.first() else {
            return Err(EnvelopeError::Empty);
        };
        // Version 2 adds the kind and purpose codes after the flags.
        let (header_len, shift) = match version {
            1 => (HEADER_LEN_V1, 0),
            2 => (HEADER_LEN, 2),
            v => return Err(EnvelopeError::UnknownVersion(v)),
        };
        if bytes.len() < header_len + TAG_LEN {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                needed: header_len + TAG_LEN,
            });
        }
        let algorithm =
            Algorithm::from_code(bytes[1]).ok_or(EnvelopeError::UnknownAlgorithm(bytes[1]))?;
        if bytes[2] & !FLAG_PADDED != 0 {
            return Err(EnvelopeError::UnknownFlags(bytes[2]));
        }
        let (kind, purpose) = if version == 2 {
            (bytes[3], bytes[4])
        } else {
            (0, 0)
        };
        let at = |i: usize| i + shift;
        let u32_at = |i: usize| {
            let i = at(i);
            u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
        };
        let mut subject = [0u8; 16];
        subject.copy_from_slice(&bytes[at(3)..at(19)]);
        let mut collected = [0u8; 8];
        collected.copy_from_slice(&bytes[at(23)..at(31)]);
        // Checked: on a 32-bit target a length near 4 GiB would overflow.
        let expected = usize::try_from(u32_at(31))
            .ok()
            .and_then(|n| n.checked_add(header_len + TAG_LEN))
            .unwrap_or(usize::MAX);
        if bytes.len() < expected {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                needed: expected,
            });
        }
        if bytes.len() > expected {
            return Err(EnvelopeError::Extended {
                len: bytes.len(),
                expected,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[at(35)..at(47)]);
        Ok(Header {
            version,
            algorithm,
            padded: bytes[2] & FLAG_PADDED != 0,
            kind,
            purpose,
            subject: SubjectId::from_bytes(subject),
            key_id: u32_at(19),
            collected: u64::from_be_bytes(collected),
            nonce,
        })
    }

    /// For a version 2 header: refuses an envelope read as another kind or
    /// purpose than it holds.
    fn check_type<T: DataKind, P: Purpose>(&self) -> Result<(), EnvelopeError> {
        if self.version == 1 || (self.kind, self.purpose) == (T::KIND.code(), P::ID.code()) {
            return Ok(());
        }
        let kind = Kind::from_code(self.kind).ok_or(EnvelopeError::UnknownType)?;
        let purpose = PurposeId::from_code(self.purpose).ok_or(EnvelopeError::UnknownType)?;
        Err(EnvelopeError::WrongType {
            holds_kind: kind,
            holds_purpose: purpose,
            asked_kind: T::KIND,
            asked_purpose: P::ID,
        })
    }
}

/// A sealed value of kind `T` held for purpose `P`: AEAD-encrypted under the
/// subject's data key, bound to subject, kind and purpose.
///
/// This is what the host stores. It is `Serialize + Deserialize` (canonical
/// unpadded URL-safe base64 text in human-readable formats such as JSON, raw
/// bytes in binary formats), and [`to_bytes`](Self::to_bytes) /
/// [`from_bytes`](Self::from_bytes) give the raw form. Only the custodian
/// holding the subject's key can [`open`](crate::Custodian::open) it.
///
/// # Layout (format version 2)
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 1 | format version, `0x02` |
/// | 1 | 1 | algorithm: `0x01` AES-256-GCM, `0x02` ChaCha20-Poly1305 |
/// | 2 | 1 | flags: bit 0 = length-bucket padding; other bits zero |
/// | 3 | 1 | data kind code (`FullName` 1 … `PaymentToken` 6) |
/// | 4 | 1 | purpose code (`Transaction` 1 … `Improvement` 8) |
/// | 5 | 16 | subject id |
/// | 21 | 4 | key id: the subject's data-key generation (big-endian) |
/// | 25 | 8 | collected at, Unix seconds (big-endian) |
/// | 33 | 4 | ciphertext length *n*, tag excluded (big-endian) |
/// | 37 | 12 | nonce (random) |
/// | 49 | *n* | ciphertext |
/// | 49 + *n* | 16 | tag |
///
/// The associated data is bytes 0–36: everything before the nonce, kind and
/// purpose included. Because the kind and purpose are in the header,
/// reading an envelope as another type is refused when it is parsed, with
/// [`EnvelopeError::WrongType`] naming what it holds and what was asked,
/// before any decryption; editing those two bytes to match the type asked
/// for fails authentication. Which key-encryption-key version wrapped the
/// data key is kept in the key store, not here, so rewrapping never touches
/// sealed data.
///
/// Format version 1 (still read, no longer written) lacks bytes 3–4; its
/// associated data is bytes 0–34 followed by the kind and purpose codes of
/// the *type being opened*, so a version 1 envelope read as another type
/// parses, and then fails authentication.
///
/// ```
/// use privacy_pledge::{Custodian, PersonalInfo, Sealed, SubjectId};
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::purpose::Transaction;
///
/// let custodian = Custodian::in_memory();
/// let email: PersonalInfo<EmailAddress, Transaction> =
///     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
/// let sealed = custodian.seal(&email)?;
///
/// let json = serde_json::to_string(&sealed)?;        // store this
/// assert!(!json.contains("ada@") && !json.contains("example.com"));
/// let back: Sealed<EmailAddress, Transaction> = serde_json::from_str(&json)?;
/// let opened = custodian.open(&back)?;
/// assert_eq!(custodian.access(&opened, |e| e.domain().to_owned())?, "example.com");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sealed<T, P> {
    header: Header,
    bytes: Vec<u8>,
    types: PhantomData<fn() -> (T, P)>,
}

impl<T: DataKind, P: Purpose> Sealed<T, P> {
    pub(crate) fn from_parts(header: Header, bytes: Vec<u8>) -> Self {
        Sealed {
            header,
            bytes,
            types: PhantomData,
        }
    }

    /// Parses raw envelope bytes. Malformed framing is a typed
    /// [`EnvelopeError`]; authenticity is checked when the envelope is opened.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let header = Header::parse(bytes)?;
        header.check_type::<T, P>()?;
        Ok(Self::from_parts(header, bytes.to_vec()))
    }

    /// Parses the text form (canonical unpadded URL-safe base64).
    pub fn from_text(text: &str) -> Result<Self, EnvelopeError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| EnvelopeError::BadText)?;
        // Canonical only: decoding must round-trip to the same text.
        if URL_SAFE_NO_PAD.encode(&bytes) != text {
            return Err(EnvelopeError::BadText);
        }
        Self::from_bytes(&bytes)
    }

    /// A column's value: the envelope's bytes, or the bytes of its text
    /// form (a client that hands a `TEXT` value over as its UTF-8 bytes,
    /// as sqlx's SQLite driver does). Never ambiguous: an envelope starts
    /// with its format version (1 or 2), text with a base64 character.
    #[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
    pub(crate) fn from_column(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        match Self::from_bytes(bytes) {
            Err(EnvelopeError::UnknownVersion(_)) => match core::str::from_utf8(bytes) {
                Ok(text) => Self::from_text(text),
                Err(_) => Self::from_bytes(bytes),
            },
            read => read,
        }
    }

    /// The raw envelope bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The raw envelope bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The text form: unpadded URL-safe base64 of the bytes.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.bytes)
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// The subject the envelope belongs to (stored in clear so the right key
    /// can be found; authenticated, so it cannot be changed).
    pub fn subject(&self) -> SubjectId {
        self.header().subject
    }

    /// When the value was collected (from the authenticated header).
    pub fn collected_at(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.header().collected)
    }

    /// The subject data-key generation it was sealed under.
    pub fn key_id(&self) -> u32 {
        self.header().key_id
    }

    /// The AEAD algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.header().algorithm
    }
}

impl<T, P> Clone for Sealed<T, P> {
    fn clone(&self) -> Self {
        Sealed {
            header: self.header,
            bytes: self.bytes.clone(),
            types: PhantomData,
        }
    }
}

impl<T, P> PartialEq for Sealed<T, P> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<T, P> Eq for Sealed<T, P> {}

impl<T: DataKind, P: Purpose> fmt::Debug for Sealed<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed<{}, {}>(subject {}, key {}, {} bytes)",
            T::KIND,
            P::ID,
            self.subject().short(),
            self.key_id(),
            self.bytes.len()
        )
    }
}

impl<T, P> Serialize for Sealed<T, P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&URL_SAFE_NO_PAD.encode(&self.bytes))
        } else {
            s.serialize_bytes(&self.bytes)
        }
    }
}

impl<'de, T: DataKind, P: Purpose> Deserialize<'de> for Sealed<T, P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, P>(PhantomData<fn() -> (T, P)>);
        impl<'de, T: DataKind, P: Purpose> de::Visitor<'de> for V<T, P> {
            type Value = Sealed<T, P>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sealed envelope (base64 text or bytes)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Sealed::from_text(v).map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Sealed::from_bytes(v).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Sealed::from_bytes(&bytes).map_err(de::Error::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V(PhantomData))
        } else {
            d.deserialize_bytes(V(PhantomData))
        }
    }
}
