//! Lookup tokens (a blind index): equality search over sealed columns.
//!
//! A sealed column cannot be searched: every envelope of the same value is
//! different. A [`LookupToken<T>`] is the equality index beside it — a keyed,
//! deterministic token of the value's canonical form, under a key of its own
//! (derived from the keyring, separate from pseudonyms and from every data
//! key), so "find the customer whose email is X" is one indexed lookup:
//!
//! ```
//! use privacy_pledge::{Custodian, LookupToken, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Transaction;
//!
//! let custodian = Custodian::in_memory();
//! // Sign-up: the token goes into an indexed column beside the sealed email.
//! let subject = SubjectId::random();
//! let email = custodian.collect::<EmailAddress, Transaction>(
//!     subject,
//!     EmailAddress::parse("Ada@Example.com")?,
//! )?;
//! let column: LookupToken<EmailAddress> = custodian.lookup_token(&email)?;
//!
//! // Login: the address as typed, with no subject and nothing written.
//! let typed = EmailAddress::parse("ada@example.COM")?;
//! assert_eq!(custodian.lookup_token_of(&typed), column);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::marker::PhantomData;

use ring::hmac;

use super::pseudonym::keyed_token_impls;
use crate::data::{DataKind, Kind};

/// The domain separation prefix of every lookup token's input.
const CONTEXT: &[u8] = b"privacy-pledge lookup v1\0";

/// The key lookup tokens are computed under (see [`LookupToken`]).
///
/// [`Keyring::lookup_key`](crate::crypto::Keyring::lookup_key) derives it
/// from the master secret, so every process of a fleet makes the same
/// tokens.
pub struct LookupKey {
    key: hmac::Key,
}

impl LookupKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        LookupKey { key }
    }

    /// A fresh random key: tokens made under it match only tokens made under
    /// the same key, so a custodian with no keyring makes tokens that do not
    /// survive a restart.
    pub fn generate() -> Result<Self, crate::Error> {
        super::random_array::<32>().map(Self::from_bytes)
    }

    /// The token of `value`.
    pub(crate) fn token<T: DataKind>(&self, value: &T) -> LookupToken<T> {
        let mut input = crate::data::WipedBuf::with_capacity(CONTEXT.len() + 96);
        input.extend_from_slice(CONTEXT);
        input.push(T::KIND.code());
        value.normalized_into(&mut input);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(&self.key, input.as_slice()).as_ref());
        LookupToken {
            tag,
            kind: PhantomData,
        }
    }
}

impl core::fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LookupKey([redacted])")
    }
}

/// A lookup token of a value of kind `T`: a keyed, deterministic equality
/// index for a sealed column, made by
/// [`Custodian::lookup_token`](crate::Custodian::lookup_token) (from stored
/// data) and [`Custodian::lookup_token_of`](crate::Custodian::lookup_token_of)
/// (from a value a user typed).
///
/// Typed by kind, so an email token is never compared with a name token;
/// compared in constant time; 32 bytes ([`as_bytes`](Self::as_bytes),
/// [`from_bytes`](Self::from_bytes)) or 64 lowercase hex digits (`Display`,
/// `FromStr`, serde). With the `sqlite`, `postgres` or `sqlx` feature it is
/// a column type (`BLOB`, `bytea`).
///
/// Anyone can write 32 bytes, so a token read back from storage is only an
/// index key: finding a row by it says the row's value *is probably* the one
/// looked up; open the row's sealed value when the answer matters.
///
/// # Canonical forms
///
/// Two values give the same token exactly when their canonical forms are
/// equal:
///
/// | kind | canonical form |
/// |---|---|
/// | [`EmailAddress`](crate::data::EmailAddress) | the whole address lowercased (ASCII: the parser accepts only ASCII addresses). The domain is case-insensitive by definition; the local part is treated as case-insensitive too, as practically every provider does. No provider-specific rules: dots and `+tags` are significant. |
/// | [`FullName`](crate::data::FullName) | Unicode NFC, then full case folding, inner whitespace collapsed to one space |
/// | [`PhoneNumber`](crate::data::PhoneNumber) | E.164 (`+` and digits) |
/// | [`PostalAddress`](crate::data::PostalAddress) | its lines as for names, then the ISO 3166 country code |
/// | [`PaymentToken`](crate::data::PaymentToken) | its exact stored form |
/// | [`PurchaseRecord`](crate::data::PurchaseRecord) | its exact stored form, all of it: order id, product, amount (minor units and currency) and date, each length-prefixed or of fixed size |
///
/// # What a token is, and what it leaks
///
/// `HMAC-SHA-256(lookup key, "privacy-pledge lookup v1" ‖ 0x00 ‖ kind code ‖
/// canonical form)`, all 32 bytes ([`LookupToken::LEN`]); stored as a
/// 32-byte `BLOB`/`bytea` or 64 lowercase hex digits.
///
/// Whoever reads the index column but holds no key (the database operator,
/// A2; a backup holder, A3) learns which rows hold **equal values of one
/// kind** — and so how often a value repeats — and nothing else: not the
/// value, not its length, not whether two values are close, and nothing
/// across kinds (the kind is part of the input). Whoever holds the keyring
/// can test guesses ("is this row ada@example.com?"), which is why tokens are
/// made only through the custodian, from data whose purpose sees plaintext.
///
/// The key does not change when a subject is erased (the index must keep
/// working for everyone else), so an erased subject's token still matches
/// their old value: the [`ErasureReceipt`](crate::ErasureReceipt) lists the
/// tokens made from the subject's stored data, and the host deletes those
/// index entries.
///
/// ```
/// use privacy_pledge::LookupToken;
/// use privacy_pledge::data::EmailAddress;
///
/// let bytes = [7u8; 32]; // as read from a BLOB column
/// let token = LookupToken::<EmailAddress>::from_bytes(&bytes)?;
/// assert_eq!(token.as_bytes(), &bytes);
/// assert_eq!(token.to_string().parse::<LookupToken<EmailAddress>>()?, token);
/// assert!(LookupToken::<EmailAddress>::from_bytes(&bytes[..31]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LookupToken<T> {
    tag: [u8; 32],
    kind: PhantomData<fn() -> T>,
}

keyed_token_impls!(LookupToken, InvalidLookupToken);

impl<T: DataKind> LookupToken<T> {
    /// The length of a token in bytes.
    pub const LEN: usize = 32;

    /// The token's bytes, for an index column.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.tag
    }

    /// A token read back from an index column: exactly [`LEN`](Self::LEN)
    /// bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidLookupToken> {
        let tag: [u8; 32] = bytes.try_into().map_err(|_| InvalidLookupToken)?;
        Ok(LookupToken {
            tag,
            kind: PhantomData,
        })
    }

    /// The token with its kind, as an erasure receipt lists it.
    pub fn to_ref(&self) -> LookupRef {
        LookupRef {
            lookup: T::KIND,
            token: self.tag,
        }
    }
}

/// The bytes or text are not a lookup token (32 bytes, or 64 lowercase hex
/// digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a lookup token: expected 32 bytes or 64 lowercase hex digits")]
pub struct InvalidLookupToken;

/// A lookup token with its kind, as listed in an
/// [`ErasureReceipt`](crate::ErasureReceipt): the host deletes the index
/// entries holding it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LookupRef {
    /// The data kind the token was made from.
    pub lookup: Kind,
    /// The token.
    #[serde(with = "crate::audit::event::hex32")]
    pub token: [u8; 32],
}

impl core::fmt::Debug for LookupRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LookupRef({}:", self.lookup)?;
        super::pseudonym::write_hex(f, &self.token[..4])?;
        f.write_str("…)")
    }
}

impl core::fmt::Display for LookupRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        super::pseudonym::write_hex(f, &self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{EmailAddress, FullName, PhoneNumber};

    /// A frozen vector: the token format must never change silently (a
    /// changed format empties every host's index).
    #[test]
    fn frozen_vector() {
        let key = LookupKey::from_bytes([0x42; 32]);
        let t = key.token(&EmailAddress::parse("Ada@Example.com").unwrap());
        // HMAC-SHA-256(0x42 * 32, "privacy-pledge lookup v1\0" || 0x02 || "ada@example.com"),
        // computed independently (Python's hmac module).
        let mut input = CONTEXT.to_vec();
        input.push(Kind::EmailAddress.code());
        input.extend_from_slice(b"ada@example.com");
        let raw = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[0x42; 32]), &input);
        assert_eq!(t.as_bytes().as_slice(), raw.as_ref());
        assert_eq!(
            t.to_string(),
            "3e1fa2a8f75fd5ca64a8747b9a3b7c26d850d4bc8ee96aca7caa9cae694c211b",
        );
    }

    #[test]
    fn canonical_forms_and_kinds() {
        let key = LookupKey::from_bytes([1; 32]);
        let name = |s: &str| key.token(&FullName::parse(s).unwrap());
        assert_eq!(name("Zo\u{eb}  Smith"), name("ZOE\u{308} smith"));
        assert_ne!(name("Zoe Smith"), name("Zo\u{eb} Smith"));
        let phone = |s: &str| key.token(&PhoneNumber::parse(s).unwrap());
        assert_eq!(phone("+44 20 7946 0958"), phone("+442079460958"));
        let email = |s: &str| key.token(&EmailAddress::parse(s).unwrap());
        assert_ne!(email("ada+x@example.com"), email("ada@example.com"));
        // Another key, another token.
        let other = LookupKey::from_bytes([2; 32]);
        assert_ne!(
            other.token(&EmailAddress::parse("ada@example.com").unwrap()),
            email("ada@example.com")
        );
    }
}
