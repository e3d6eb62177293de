//! Sealed envelopes: the only form in which personal information is stored.

use core::fmt;
use core::marker::PhantomData;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::aead::{Algorithm, NONCE_LEN, TAG_LEN};
use crate::data::DataKind;
use crate::purpose::Purpose;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// The envelope format version this crate writes.
pub const FORMAT_VERSION: u8 = 1;

pub(crate) const HEADER_LEN: usize = 47;
/// The part of the header that is authenticated (everything before the nonce).
pub(crate) const BOUND_LEN: usize = 35;
pub(crate) const AAD_LEN: usize = BOUND_LEN + 2;
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
}

/// The fields of a v1 header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) algorithm: Algorithm,
    pub(crate) padded: bool,
    pub(crate) subject: SubjectId,
    pub(crate) key_id: u32,
    pub(crate) collected: u64,
    pub(crate) nonce: [u8; NONCE_LEN],
}

impl Header {
    /// Writes the header for a ciphertext of `ct_len` bytes.
    pub(crate) fn write(&self, ct_len: u32, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        out.push(self.algorithm.code());
        out.push(if self.padded { FLAG_PADDED } else { 0 });
        out.extend_from_slice(self.subject.as_bytes());
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&self.collected.to_be_bytes());
        out.extend_from_slice(&ct_len.to_be_bytes());
        out.extend_from_slice(&self.nonce);
    }

    /// Parses and checks the whole envelope's framing.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, EnvelopeError> {
        if bytes.is_empty() {
            return Err(EnvelopeError::Empty);
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(EnvelopeError::UnknownVersion(bytes[0]));
        }
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                needed: HEADER_LEN + TAG_LEN,
            });
        }
        let algorithm =
            Algorithm::from_code(bytes[1]).ok_or(EnvelopeError::UnknownAlgorithm(bytes[1]))?;
        if bytes[2] & !FLAG_PADDED != 0 {
            return Err(EnvelopeError::UnknownFlags(bytes[2]));
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let mut subject = [0u8; 16];
        subject.copy_from_slice(&bytes[3..19]);
        let mut collected = [0u8; 8];
        collected.copy_from_slice(&bytes[23..31]);
        // Checked: on a 32-bit target a length near 4 GiB would overflow.
        let expected = usize::try_from(u32_at(31))
            .ok()
            .and_then(|n| n.checked_add(HEADER_LEN + TAG_LEN))
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
        nonce.copy_from_slice(&bytes[35..47]);
        Ok(Header {
            algorithm,
            padded: bytes[2] & FLAG_PADDED != 0,
            subject: SubjectId::from_bytes(subject),
            key_id: u32_at(19),
            collected: u64::from_be_bytes(collected),
            nonce,
        })
    }
}

/// The associated data: the authenticated header fields, then the data kind
/// and purpose taken from the *type* being opened — so an envelope opened as
/// another kind or purpose fails authentication.
pub(crate) fn aad(bound: &[u8], kind: u8, purpose: u8) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..BOUND_LEN].copy_from_slice(&bound[..BOUND_LEN]);
    a[BOUND_LEN] = kind;
    a[BOUND_LEN + 1] = purpose;
    a
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
/// # Layout (format version 1)
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 1 | format version, `0x01` |
/// | 1 | 1 | algorithm: `0x01` AES-256-GCM, `0x02` ChaCha20-Poly1305 |
/// | 2 | 1 | flags: bit 0 = length-bucket padding; other bits zero |
/// | 3 | 16 | subject id |
/// | 19 | 4 | key id: the subject's data-key generation (big-endian) |
/// | 23 | 8 | collected at, Unix seconds (big-endian) |
/// | 31 | 4 | ciphertext length *n*, tag excluded (big-endian) |
/// | 35 | 12 | nonce (random) |
/// | 47 | *n* | ciphertext |
/// | 47 + *n* | 16 | tag |
///
/// The associated data is bytes 0–34 followed by the data kind and purpose
/// codes of `T` and `P` (37 bytes, fixed width). Which key-encryption-key
/// version wrapped the data key is kept in the key store, not here, so
/// rewrapping never touches sealed data.
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
/// assert!(!json.contains("ada"));
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
