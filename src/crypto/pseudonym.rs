//! Keyed pseudonyms (R6): deterministic HMAC-SHA-256 tokens of normalised values.

use core::fmt;
use core::marker::PhantomData;

use ring::hmac;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};

use crate::data::{DataKind, Kind};

/// The key pseudonyms are computed under. Separate from the data keys: erasing
/// a subject does not change it, so tokens stay stable for analysis, and the
/// host deletes an erased subject's tokens from the list in the
/// [`ErasureReceipt`](crate::ErasureReceipt).
pub struct PseudonymKey {
    bytes: SecretBox<[u8; 32]>,
    key: hmac::Key,
}

impl PseudonymKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        let boxed = SecretBox::new(Box::new(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        PseudonymKey { bytes: boxed, key }
    }

    /// A fresh random key. Tokens made under it match only tokens made under
    /// the same key: keep its bytes to keep tokens stable across restarts.
    pub fn generate() -> Result<Self, crate::Error> {
        super::random_array::<32>().map(Self::from_bytes)
    }

    /// The key's bytes, to keep in the host's secret store.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        self.bytes.expose_secret()
    }

    pub(crate) fn tag(&self, data: &[u8]) -> [u8; 32] {
        let t = hmac::sign(&self.key, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(t.as_ref());
        out
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey([redacted])")
    }
}

/// A keyed pseudonym of a value of kind `T`: the only form in which
/// `Improvement` (analysis, research) sees personal information (R6).
///
/// Deterministic under one key, so equal values (after normalisation: emails
/// compare case-insensitively, names ignoring case and spacing, phones in E.164,
/// purchase records by all of their fields, as for
/// [lookup tokens](crate::LookupToken#canonical-forms)) give equal tokens — joins, counts and "find the customer with this email"
/// work without plaintext. Without the key, a token reveals nothing.
///
/// Shown and serialized as 64 lowercase hex digits; compared in constant time.
///
/// ```
/// use privacy_pledge::{Custodian, PersonalInfo, Pseudonym, SubjectId};
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::purpose::{Improvement, Transaction};
///
/// let custodian = Custodian::in_memory();
/// let a: PersonalInfo<EmailAddress, Transaction> =
///     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("Ada@Example.com")?);
/// let b: PersonalInfo<EmailAddress, Improvement> =
///     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
/// let ta: Pseudonym<EmailAddress> = custodian.pseudonym(&a)?;
/// assert_eq!(ta, custodian.pseudonym(&b)?);
/// assert_eq!(ta.to_string().len(), 64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pseudonym<T> {
    tag: [u8; 32],
    kind: PhantomData<fn() -> T>,
}

impl<T: DataKind> Pseudonym<T> {
    pub(crate) fn compute(key: &PseudonymKey, value: &T) -> Self {
        // The normalised value is wiped after use, and as it grows.
        let mut buf = crate::data::WipedBuf::with_capacity(80);
        buf.push(T::KIND.code());
        value.normalized_into(&mut buf);
        Pseudonym {
            tag: key.tag(buf.as_slice()),
            kind: PhantomData,
        }
    }

    /// The token's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.tag
    }

    /// The token for storage lists: kind and bytes.
    pub fn to_ref(&self) -> PseudonymRef {
        PseudonymRef {
            kind: T::KIND,
            token: self.tag,
        }
    }
}

/// The impls every keyed token type shares: copy, constant-time equality,
/// hashing, a short `Debug`, and 64 lowercase hex digits as `Display`,
/// `FromStr` and serde form.
macro_rules! keyed_token_impls {
    ($ty:ident, $invalid:ident) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T> Copy for $ty<T> {}

        impl<T> PartialEq for $ty<T> {
            fn eq(&self, other: &Self) -> bool {
                crate::ct::eq(&self.tag, &other.tag)
            }
        }
        impl<T> Eq for $ty<T> {}

        impl<T> core::hash::Hash for $ty<T> {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                self.tag.hash(state);
            }
        }

        impl<T: crate::data::DataKind> core::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}<{}>(", stringify!($ty), T::KIND)?;
                super::pseudonym::write_hex(f, &self.tag[..4])?;
                f.write_str("…)")
            }
        }

        impl<T> core::fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                super::pseudonym::write_hex(f, &self.tag)
            }
        }

        impl<T> core::str::FromStr for $ty<T> {
            type Err = $invalid;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                crate::subject::decode_hex::<32>(s)
                    .map(|tag| $ty {
                        tag,
                        kind: core::marker::PhantomData,
                    })
                    .ok_or($invalid)
            }
        }

        impl<T> serde::Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de, T> serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use keyed_token_impls;

keyed_token_impls!(Pseudonym, InvalidPseudonym);

pub(crate) use crate::subject::write_hex;

/// The text is not a pseudonym (64 lowercase hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a pseudonym: expected 64 lowercase hex digits")]
pub struct InvalidPseudonym;

/// A pseudonym with its kind, as listed in an erasure receipt.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PseudonymRef {
    /// The data kind it was computed from.
    pub kind: Kind,
    /// The token.
    #[serde(with = "crate::audit::event::hex32")]
    pub token: [u8; 32],
}

impl fmt::Debug for PseudonymRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymRef({}:", self.kind)?;
        write_hex(f, &self.token[..4])?;
        f.write_str("…)")
    }
}

impl fmt::Display for PseudonymRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.token)
    }
}
