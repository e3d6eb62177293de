//! Data kinds: the only personal information the policy collects (rule R1).
//!
//! Each kind validates when it is parsed, keeps its text in a
//! [`SecretString`](secrecy::SecretString) that is wiped on drop, prints as
//! `[redacted]`, has no `Serialize`, no `Deref` to its text, and compares in
//! constant time. Reading the text is an explicit, greppable
//! [`expose_secret`](secrecy::ExposeSecret::expose_secret) call, and once a
//! value is collected into a [`PersonalInfo`](crate::PersonalInfo) it can only be
//! read inside a custodian closure.
//!
//! ```
//! use privacy_pledge::data::{EmailAddress, PhoneNumber};
//! use privacy_pledge::ExposeSecret;
//!
//! let email = EmailAddress::parse("Ada@Example.com")?;
//! assert_eq!(email.domain(), "Example.com");
//! assert_eq!(format!("{email:?}"), "EmailAddress([redacted])");
//!
//! let phone = PhoneNumber::parse("+44 (20) 7946-0958")?;
//! assert_eq!(phone.expose_secret(), "+442079460958");
//!
//! let err = EmailAddress::parse("ada.example.com").unwrap_err();
//! assert_eq!(err.to_string(), "invalid email address: there is no '@'");
//! # Ok::<(), privacy_pledge::data::InvalidData>(())
//! ```
//!
//! There is no card-number type at all: card data goes straight to the payment
//! processor, which hands back an opaque [`PaymentToken`]. A data kind cannot be
//! serialized as plaintext:
//!
//! ```compile_fail
//! let email = privacy_pledge::data::EmailAddress::parse("ada@example.com").unwrap();
//! serde_json::to_string(&email).unwrap(); // R9: no Serialize
//! ```

use serde::{Deserialize, Serialize};

mod email;
mod name;
mod phone;
mod postal;
mod purchase;
mod token;

pub use email::EmailAddress;
pub use name::FullName;
pub use phone::PhoneNumber;
pub use postal::PostalAddress;
pub use purchase::{Amount, Date, PurchaseRecord};
pub use token::PaymentToken;

pub(crate) mod sealed {
    use super::InvalidData;

    /// Private supertrait: closes the set of data kinds and carries the
    /// crate-internal codec used for sealing and pseudonyms.
    #[diagnostic::on_unimplemented(
        message = "R1: `{Self}` is not a kind of personal information the policy collects",
        label = "not a data kind of the policy",
        note = "the kinds are FullName, EmailAddress, PostalAddress, PhoneNumber, PurchaseRecord and PaymentToken"
    )]
    pub trait Sealed: Sized {
        /// Length of the canonical byte form, so buffers holding plaintext
        /// are allocated once and never reallocated (no stray copies).
        fn encoded_len(&self) -> usize;
        /// Appends the canonical byte form to `out` (sealed inside envelopes).
        fn encode_into(&self, out: &mut Vec<u8>);
        /// Rebuilds the value from its canonical byte form.
        fn decode(bytes: &[u8]) -> Result<Self, InvalidData>;
        /// Appends the normalised form that pseudonyms are computed over.
        fn normalized_into(&self, out: &mut Vec<u8>);
        /// Appends the value as the subject should read it in a report.
        fn report_into(&self, out: &mut String);
    }
}

/// A kind of personal information the policy collects: sealed, closed set (R1).
#[diagnostic::on_unimplemented(
    message = "R1: `{Self}` is not a kind of personal information the policy collects",
    label = "not a data kind of the policy",
    note = "the kinds are FullName, EmailAddress, PostalAddress, PhoneNumber, PurchaseRecord and PaymentToken; card numbers are never held, only the processor's PaymentToken"
)]
pub trait DataKind: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The kind as a value.
    const KIND: Kind;
}

/// A data kind as a value, for audit events, envelopes and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    /// [`FullName`].
    FullName = 1,
    /// [`EmailAddress`].
    EmailAddress = 2,
    /// [`PostalAddress`].
    PostalAddress = 3,
    /// [`PhoneNumber`].
    PhoneNumber = 4,
    /// [`PurchaseRecord`].
    PurchaseRecord = 5,
    /// [`PaymentToken`].
    PaymentToken = 6,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 6] = [
        Kind::FullName,
        Kind::EmailAddress,
        Kind::PostalAddress,
        Kind::PhoneNumber,
        Kind::PurchaseRecord,
        Kind::PaymentToken,
    ];

    /// The kind's name, as in the type name.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::FullName => "FullName",
            Kind::EmailAddress => "EmailAddress",
            Kind::PostalAddress => "PostalAddress",
            Kind::PhoneNumber => "PhoneNumber",
            Kind::PurchaseRecord => "PurchaseRecord",
            Kind::PaymentToken => "PaymentToken",
        }
    }

    /// The closest data category of the Fideslang taxonomy.
    pub const fn fides_category(self) -> &'static str {
        match self {
            Kind::FullName => "user.name",
            Kind::EmailAddress => "user.contact.email",
            Kind::PostalAddress => "user.contact.address",
            Kind::PhoneNumber => "user.contact.phone_number",
            Kind::PurchaseRecord => "user.financial",
            Kind::PaymentToken => "user.financial.account_number",
        }
    }

    /// The kind in plain words ("email address"), as errors and letters say it.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::FullName => "full name",
            Kind::EmailAddress => "email address",
            Kind::PostalAddress => "postal address",
            Kind::PhoneNumber => "phone number",
            Kind::PurchaseRecord => "purchase record",
            Kind::PaymentToken => "payment token",
        }
    }

    pub(crate) const fn code(self) -> u8 {
        self as u8
    }
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a value was rejected. Never contains the value itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Nothing left after trimming white space.
    Empty,
    /// Longer than the limit (in characters or bytes, as documented per kind).
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A control character (or, in a one-line field, a line break).
    ControlCharacter,
    /// No `@` in an email address.
    MissingAt,
    /// The part before `@` is not a dot-atom (RFC 5322 §3.2.3).
    InvalidLocalPart,
    /// The part after `@` is not a host name of at least two labels.
    InvalidDomain,
    /// Non-ASCII text where only ASCII is accepted (internationalised domains
    /// must be given in their A-label form, `xn--…`).
    NonAscii,
    /// A quoted local part or an address literal: valid in RFC 5321, refused here.
    Unsupported,
    /// A phone number not in international form (`+` then the country code).
    MissingPlus,
    /// A phone number with a character other than digits and ` -.()/`.
    InvalidCharacter,
    /// A phone number with fewer than 8 or more than 15 digits, or a country code starting with 0.
    DigitCount,
    /// A postal address needs at least one street line and a country line.
    MissingLines,
    /// The country line is not an ISO 3166-1 alpha-2 code.
    InvalidCountry,
    /// A date that does not exist, or a currency that is not three upper-case letters.
    InvalidField,
    /// The stored form is malformed.
    Malformed,
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reason::Empty => f.write_str("it is empty"),
            Reason::TooLong { max } => write!(f, "it is longer than {max}"),
            Reason::ControlCharacter => f.write_str("it contains a control character"),
            Reason::MissingAt => f.write_str("there is no '@'"),
            Reason::InvalidLocalPart => f.write_str("the part before '@' is not a valid dot-atom"),
            Reason::InvalidDomain => f.write_str("the part after '@' is not a valid domain name"),
            Reason::NonAscii => f.write_str("it contains non-ASCII characters (give internationalised domains in xn-- form)"),
            Reason::Unsupported => f.write_str("quoted local parts and address literals are not accepted"),
            Reason::MissingPlus => f.write_str("it is not in international form (+ and country code)"),
            Reason::InvalidCharacter => f.write_str("it contains a character other than digits, spaces, dashes, dots, slashes and brackets"),
            Reason::DigitCount => f.write_str("it must have 8 to 15 digits after '+', not starting with 0"),
            Reason::MissingLines => f.write_str("it needs at least one address line and a country line"),
            Reason::InvalidCountry => f.write_str("the last line is not an ISO 3166-1 alpha-2 country code"),
            Reason::InvalidField => f.write_str("a field is out of range"),
            Reason::Malformed => f.write_str("its stored form is malformed"),
        }
    }
}

/// A value was rejected by its kind's validation.
///
/// Carries the kind and the reason, never the rejected text (R9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {}: {reason}", kind.label())]
pub struct InvalidData {
    kind: Kind,
    reason: Reason,
}

impl InvalidData {
    pub(crate) const fn new(kind: Kind, reason: Reason) -> Self {
        InvalidData { kind, reason }
    }

    /// The kind that rejected the value.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Why it was rejected.
    pub fn reason(&self) -> Reason {
        self.reason
    }
}

/// Trims, refuses empty, over-long (in characters) and control characters.
/// `multiline` allows `\n` between lines.
pub(crate) fn clean_text(
    kind: Kind,
    input: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<&str, InvalidData> {
    let s = input.trim();
    if s.is_empty() {
        return Err(InvalidData::new(kind, Reason::Empty));
    }
    if s.chars().count() > max_chars {
        return Err(InvalidData::new(kind, Reason::TooLong { max: max_chars }));
    }
    if s.chars()
        .any(|c| c.is_control() && !(multiline && c == '\n'))
    {
        return Err(InvalidData::new(kind, Reason::ControlCharacter));
    }
    Ok(s)
}

/// Decodes UTF-8 from a stored form.
pub(crate) fn stored_str(kind: Kind, bytes: &[u8]) -> Result<&str, InvalidData> {
    core::str::from_utf8(bytes).map_err(|_| InvalidData::new(kind, Reason::Malformed))
}

/// Text of a stored form: UTF-8 and not empty.
///
/// Stored forms are decoded only from authenticated plaintext that this crate
/// encoded from a validated value, so decoding checks structure, not every
/// rule of `parse` again (that would cost more than the decryption).
pub(crate) fn stored_text(kind: Kind, bytes: &[u8]) -> Result<&str, InvalidData> {
    match stored_str(kind, bytes)? {
        "" => Err(InvalidData::new(kind, Reason::Malformed)),
        s => Ok(s),
    }
}

/// The codec items shared by kinds whose stored form is one text field.
macro_rules! text_codec {
    ($field:ident) => {
        fn encoded_len(&self) -> usize {
            self.$field.expose_secret().len()
        }

        fn encode_into(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(self.$field.expose_secret().as_bytes());
        }

        fn report_into(&self, out: &mut String) {
            out.push_str(self.$field.expose_secret());
        }
    };
}
pub(crate) use text_codec;

/// Lower-cases and folds runs of white space to one space.
pub(crate) fn fold(text: &str, out: &mut Vec<u8>) {
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(b' ');
            space = false;
        }
        for l in c.to_lowercase() {
            let mut buf = [0u8; 4];
            out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Implements redacted `Debug`/`Display`, constant-time `PartialEq`/`Eq`, and
/// `ExposeSecret<str>` for a data kind whose text is in field `$field`.
macro_rules! redacted_kind {
    ($ty:ident) => {
        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($ty), "([redacted])"))
            }
        }
        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("[redacted]")
            }
        }
        impl PartialEq for $ty {
            /// Compares the normalised forms in constant time.
            fn eq(&self, other: &Self) -> bool {
                let mut a = zeroize::Zeroizing::new(Vec::new());
                let mut b = zeroize::Zeroizing::new(Vec::new());
                crate::data::sealed::Sealed::normalized_into(self, &mut a);
                crate::data::sealed::Sealed::normalized_into(other, &mut b);
                crate::ct::eq(&a, &b)
            }
        }
        impl Eq for $ty {}
        impl crate::data::DataKind for $ty {
            const KIND: crate::data::Kind = crate::data::Kind::$ty;
        }
    };
}
pub(crate) use redacted_kind;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_rules() {
        let k = Kind::FullName;
        assert_eq!(clean_text(k, "  Ada  ", 10, false), Ok("Ada"));
        assert_eq!(
            clean_text(k, "   ", 10, false).unwrap_err().reason(),
            Reason::Empty
        );
        assert_eq!(
            clean_text(k, "abcdefghijk", 10, false)
                .unwrap_err()
                .reason(),
            Reason::TooLong { max: 10 }
        );
        assert_eq!(
            clean_text(k, "a\nb", 10, false).unwrap_err().reason(),
            Reason::ControlCharacter
        );
        assert_eq!(clean_text(k, "a\nb", 10, true), Ok("a\nb"));
    }

    #[test]
    fn fold_lowercases_and_collapses() {
        let mut out = Vec::new();
        fold("  Ada \t LOVELACE ", &mut out);
        assert_eq!(out, b"ada lovelace");
    }
}
