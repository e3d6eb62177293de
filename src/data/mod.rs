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
//! Constructors follow one convention: a validated type built from text is
//! made with `parse` ([`EmailAddress::parse`], [`FullName::parse`],
//! [`PhoneNumber::parse`], [`PostalAddress::parse`], [`PaymentToken::parse`],
//! [`Country::parse`](crate::country::Country::parse)), and one built from
//! typed parts with `new` ([`Date::new`], [`Amount::new`],
//! [`PurchaseRecord::new`], [`PostalAddress::new`]).
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
use zeroize::Zeroize as _;

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

pub(crate) use sealed::{Plaintext, Token, WipedBuf};

pub(crate) mod sealed {
    use super::InvalidData;

    /// Proof that the caller is this crate, which [`Sealed::decode`] takes:
    /// generic code bounded by `DataKind` can name the codec's methods, but
    /// cannot make one of these (its field is the crate's), so it cannot
    /// build a value that skipped `parse` — a card number as a
    /// `PaymentToken`, a name with control characters (R1).
    pub struct Token(pub(crate) ());

    /// A byte buffer for a normalised (plaintext) form that leaves no copy
    /// behind: when it must grow, the bytes move to a larger allocation and
    /// the old one is wiped before it is freed (a `Vec` would free it as it
    /// was), and it is wiped when dropped. Public only inside this private
    /// module, as the trait that names it.
    #[derive(Default)]
    pub struct WipedBuf(pub(super) Vec<u8>);

    /// A stored form in a buffer of its own, exactly its length: an
    /// envelope's plaintext, decrypted in place, as
    /// [`decode_owned`](Sealed::decode_owned) receives it.
    ///
    /// Wiped when dropped (on every error path, and after a kind has decoded
    /// from it), unless a kind takes the buffer over as its value's text
    /// ([`into_text`](Self::into_text), then
    /// [`Text::into_secret`](super::Text::into_secret)). Public only inside
    /// this private module, as the trait that names it.
    pub struct Plaintext(pub(super) Vec<u8>);

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
        /// Rebuilds the value from its canonical byte form (an envelope's
        /// plaintext, which `parse` once admitted); only the crate can call
        /// it ([`Token`]).
        fn decode(bytes: &[u8], crate_only: Token) -> Result<Self, InvalidData>;
        /// Rebuilds the value from its canonical byte form held in a buffer
        /// of its own (an envelope's plaintext, decrypted in place). A kind
        /// whose value is that text takes the buffer over, so the plaintext
        /// is never copied; the others decode from it, and it is wiped.
        fn decode_owned(bytes: Plaintext) -> Result<Self, InvalidData> {
            Self::decode(bytes.as_bytes(), Token(()))
        }
        /// Appends the normalised form that pseudonyms are computed over.
        fn normalized_into(&self, out: &mut super::WipedBuf);
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

    /// The kind with code `code`, if there is one.
    pub(crate) fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(code).checked_sub(1)?).copied()
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
    /// An invisible format character (Unicode general category `Cf`): zero-width
    /// spaces and joiners, the word joiner, the byte-order mark, the soft hyphen,
    /// bidirectional embeddings, overrides and isolates, and the like. Refused in
    /// names and postal addresses, where they would make two values that look
    /// the same compare different.
    InvisibleCharacter,
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
    /// A phone number whose digits after `+` do not begin with a country
    /// calling code assigned in ITU-T E.164 (a code starting with `0` included).
    UnknownCountryCode,
    /// A phone number whose national significant number is too short or too
    /// long for its country calling code, or that has more than the 15 digits
    /// E.164 allows in all (or none).
    DigitCount,
    /// A phone number with a `(0)` that cannot be a trunk prefix to drop: it is
    /// not right after the country code, there is more than one, or that
    /// country has no trunk prefix `0` (so the `0` may be part of the number).
    TrunkPrefix,
    /// A postal address needs at least one street line and a country line.
    MissingLines,
    /// The country line is not an ISO 3166-1 alpha-2 code.
    InvalidCountry,
    /// A date that does not exist or is out of range (1970-01-01 to
    /// 2554-07-21).
    InvalidField,
    /// A currency that is not three upper-case ASCII letters: ISO 4217 codes
    /// are written in upper case (`EUR`, not `eur`), and lower case is
    /// refused, not normalised, so that a code has exactly one form.
    InvalidCurrencyCode,
    /// An order id with a space or a character that is not visible ASCII
    /// (order ids are letters, digits and punctuation).
    InvalidOrderId,
    /// Three upper-case letters that are not an active ISO 4217 currency code
    /// with a decimal minor unit.
    UnknownCurrency,
    /// The stored form is malformed.
    Malformed,
    /// A payment token that has the shape of a card number: 13 to 19 digits
    /// passing the Luhn check, alone or inside the token, with or without
    /// separators. The policy holds no card numbers, only the processor's
    /// opaque token (R1).
    CardNumber,
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reason::Empty => f.write_str("it is empty"),
            Reason::TooLong { max } => write!(f, "it is longer than {max}"),
            Reason::ControlCharacter => f.write_str("it contains a control character"),
            Reason::InvisibleCharacter => f.write_str(
                "it contains an invisible format character (zero-width, soft hyphen or bidirectional control)",
            ),
            Reason::MissingAt => f.write_str("there is no '@'"),
            Reason::InvalidLocalPart => f.write_str("the part before '@' is not a valid dot-atom"),
            Reason::InvalidDomain => f.write_str("the part after '@' is not a valid domain name"),
            Reason::NonAscii => f.write_str("it contains non-ASCII characters (give internationalised domains in xn-- form)"),
            Reason::Unsupported => f.write_str("quoted local parts and address literals are not accepted"),
            Reason::MissingPlus => f.write_str("it is not in international form (+ and country code)"),
            Reason::InvalidCharacter => f.write_str("it contains a character other than digits, spaces, dashes, dots, slashes and brackets"),
            Reason::UnknownCountryCode => f.write_str("it does not begin with an assigned country calling code"),
            Reason::DigitCount => f.write_str("its number of digits does not fit its country calling code (at most 15 in all)"),
            Reason::TrunkPrefix => f.write_str("'(0)' is accepted only right after a country calling code whose trunk prefix is 0"),
            Reason::MissingLines => f.write_str("it needs at least one address line and a country line"),
            Reason::InvalidCountry => f.write_str("the last line is not an ISO 3166-1 alpha-2 country code"),
            Reason::InvalidField => f.write_str("a field is out of range"),
            Reason::InvalidCurrencyCode => f.write_str("the currency must be an ISO 4217 code in upper case (three letters A to Z, such as EUR)"),
            Reason::InvalidOrderId => f.write_str("the order id may hold only visible ASCII characters (letters, digits and punctuation, no spaces)"),
            Reason::UnknownCurrency => f.write_str("the currency is not an active ISO 4217 code"),
            Reason::Malformed => f.write_str("its stored form is malformed"),
            Reason::CardNumber => f.write_str(
                "R1: it has the shape of a card number (13 to 19 digits passing the Luhn check); card numbers are never held, only the payment processor's opaque token",
            ),
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

/// Trims, refuses empty, over-long (in characters), control characters and
/// invisible format characters ([`is_invisible`]). `multiline` allows `\n`
/// between lines.
///
/// For the free text of names and postal addresses, where an invisible
/// character would make two values that look the same differ.
pub(crate) fn clean_text(
    kind: Kind,
    input: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<&str, InvalidData> {
    let s = clean_text_with_format(kind, input, max_chars, multiline)?;
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if is_invisible(c) && !is_joiner_between_letters(&chars, i) {
            return Err(InvalidData::new(kind, Reason::InvisibleCharacter));
        }
    }
    Ok(s)
}

/// U+200C zero-width non-joiner and U+200D joiner are part of how names are
/// written in Persian and several Indic scripts, so they are allowed between
/// two letters (and only there); [`fold`] drops them, so a name compares and
/// pseudonymises the same with or without them.
fn is_joiner_between_letters(chars: &[char], i: usize) -> bool {
    matches!(chars[i], '\u{200C}' | '\u{200D}')
        && i > 0
        && chars[i - 1].is_alphabetic()
        && chars.get(i + 1).is_some_and(|c| c.is_alphabetic())
}

/// [`clean_text`] without the check for invisible format characters: for
/// text that is not compared as a person's data (a product name may hold an
/// emoji sequence joined with U+200D).
pub(crate) fn clean_text_with_format(
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

/// The code points of Unicode general category `Cf` (format characters,
/// invisible by design), as sorted inclusive ranges (Unicode 16.0).
///
/// Among them: U+00AD soft hyphen, U+200B–U+200F zero-width space,
/// non-joiner, joiner and the directional marks, U+202A–U+202E bidirectional
/// embeddings and overrides, U+2060–U+2064 word joiner and invisible
/// operators, U+2066–U+2069 bidirectional isolates, U+FEFF byte-order mark
/// (zero-width no-break space) and the tag characters U+E0001, U+E0020–U+E007F.
const FORMAT_CHARACTERS: [(char, char); 21] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is an invisible format character (general category `Cf`).
pub(crate) fn is_invisible(c: char) -> bool {
    FORMAT_CHARACTERS
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                core::cmp::Ordering::Less
            } else if lo > c {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Decodes UTF-8 from a stored form.
///
/// Validated with SIMD (`simdutf8`, which accepts exactly what
/// `core::str::from_utf8` accepts): on a 1 KiB postal address with some
/// non-ASCII text, std's validator took a third of the time of `open`.
pub(crate) fn stored_str(kind: Kind, bytes: &[u8]) -> Result<&str, InvalidData> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| InvalidData::new(kind, Reason::Malformed))
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

/// Up to this length a text form becomes the value's own buffer, validated
/// by std's `String::from_utf8` (as fast as SIMD on short text, and no copy
/// is made); a longer one is validated with SIMD and copied once, since
/// std's validator costs more than the copy on long non-ASCII text.
const OWNED_TEXT_MAX: usize = 128;

impl Plaintext {
    /// A copy of `bytes` in a new buffer whose capacity is exactly its
    /// length (so the text made from it is boxed without reallocating).
    pub(crate) fn copy_of(bytes: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        Plaintext(buf)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// The stored form as text, or `Malformed` if it is not UTF-8 (the
    /// bytes are wiped either way unless they become the text).
    pub(crate) fn into_text(mut self, kind: Kind) -> Result<Text, InvalidData> {
        if self.0.len() > OWNED_TEXT_MAX {
            // `self` is wiped when this returns.
            return stored_str(kind, &self.0).map(|s| Text(String::from(s)));
        }
        match String::from_utf8(core::mem::take(&mut self.0)) {
            Ok(text) => Ok(Text(text)),
            Err(e) => {
                wipe(&mut e.into_bytes());
                Err(InvalidData::new(kind, Reason::Malformed))
            }
        }
    }

    /// [`into_text`](Self::into_text), refusing empty text as
    /// [`stored_text`] does.
    pub(crate) fn into_stored_text(self, kind: Kind) -> Result<Text, InvalidData> {
        match self.into_text(kind)? {
            t if t.as_str().is_empty() => Err(InvalidData::new(kind, Reason::Malformed)),
            t => Ok(t),
        }
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Wipes a buffer that held plaintext, as a slice (one fill, see
/// `crypto::vault::Wiped`). An empty one (a buffer taken over by a value)
/// is left alone: glibc's AVX-512 `memset` of 0 bytes at an empty `Vec`'s
/// dangling address is a fully masked store to an unmapped page, which the
/// CPU handles with a slow fault-suppression assist (measured here: 106 ns
/// against 3 ns at a live buffer, a fifth of a 64-byte `open`).
fn wipe(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        buf.as_mut_slice().zeroize();
    }
}

/// Validated text of a stored form, wiped when dropped unless it becomes a
/// value's secret.
pub(crate) struct Text(String);

impl Text {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as a value's secret, in the same buffer.
    pub(crate) fn into_secret(mut self) -> secrecy::SecretString {
        if self.0.len() == self.0.capacity() {
            // `into_boxed_str` keeps the buffer when it has no spare room.
            secrecy::SecretString::from(core::mem::take(&mut self.0))
        } else {
            // Boxing would reallocate and might leave an unwiped copy
            // behind: copy into an exact buffer instead, and wipe this one.
            secrecy::SecretString::from(self.as_str())
        }
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        wipe(&mut core::mem::take(&mut self.0).into_bytes());
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

/// Appends the comparison form of free text (names, address lines) to `out`:
/// the form that equality and pseudonyms are computed over.
///
/// Canonical caseless matching (Unicode §3.13, D145) made into one string:
/// the text is decomposed (NFD), given full Unicode case folding
/// (`CaseFolding.txt`, status C and F, so `ß` folds to `ss` and `Σ`/`ς` to
/// `σ`), then recomposed (NFC). Composed and decomposed spellings of the
/// same text (`Zoë` as U+00EB, or as `e` + U+0308) and spellings that differ
/// only in case (`Straße`, `STRASSE`) fold to the same bytes. Invisible format
/// characters ([`is_invisible`]; refused by `parse`, dropped here should an
/// older stored value hold one) are left out; white space is trimmed and each
/// run of it becomes one space. Works on the characters as a stream, so no
/// intermediate copy of the text is left behind in memory.
impl WipedBuf {
    /// An empty buffer of `capacity` bytes.
    #[inline]
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        WipedBuf(Vec::with_capacity(capacity))
    }

    /// Room for `extra` more bytes, grown as described above.
    #[inline]
    pub(crate) fn reserve(&mut self, extra: usize) {
        if self.0.capacity() - self.0.len() < extra {
            self.grow(extra);
        }
    }

    #[cold]
    fn grow(&mut self, extra: usize) {
        let wanted = (self.0.len() + extra).max(self.0.capacity() * 2);
        let mut bigger = Vec::with_capacity(wanted);
        bigger.extend_from_slice(&self.0);
        let mut old = core::mem::replace(&mut self.0, bigger);
        // Only the first `len` bytes were ever written (nothing is
        // truncated), and a slice is wiped with one fill, a `Vec` byte by
        // byte.
        old.as_mut_slice().zeroize();
    }

    /// Appends one byte.
    #[inline]
    pub(crate) fn push(&mut self, byte: u8) {
        self.reserve(1);
        self.0.push(byte);
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    /// The vector, with room for `extra` more bytes, for a writer that
    /// appends exactly that many (`encode_into` with `encoded_len`).
    #[inline]
    pub(crate) fn reserved(&mut self, extra: usize) -> &mut Vec<u8> {
        self.reserve(extra);
        &mut self.0
    }

    /// The bytes.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for WipedBuf {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

pub(crate) fn fold(text: &str, out: &mut WipedBuf) {
    use caseless::Caseless as _;
    use unicode_normalization::UnicodeNormalization as _;

    let mut space = false;
    let mut started = false;
    for c in text
        .chars()
        .filter(|&c| !is_invisible(c))
        .nfd()
        .default_case_fold()
        .nfc()
    {
        if c.is_whitespace() {
            space = started;
            continue;
        }
        if space {
            out.push(b' ');
            space = false;
        }
        started = true;
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
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
                let mut a = crate::data::WipedBuf::default();
                let mut b = crate::data::WipedBuf::default();
                crate::data::sealed::Sealed::normalized_into(self, &mut a);
                crate::data::sealed::Sealed::normalized_into(other, &mut b);
                crate::ct::eq(a.as_slice(), b.as_slice())
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
        // Joiners only between letters (Persian "می‌خواهم" style names).
        assert!(clean_text(k, "\u{0645}\u{06CC}\u{200C}\u{062E}", 10, false).is_ok());
        for bad in [
            "\u{200C}ab",
            "ab\u{200C}",
            "a \u{200D}b",
            "a\u{200B}b",
            "a\u{202E}b",
        ] {
            assert_eq!(
                clean_text(k, bad, 10, false).unwrap_err().reason(),
                Reason::InvisibleCharacter,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fold_lowercases_and_collapses() {
        let mut out = WipedBuf::default();
        fold("  Ada \t LOVELACE ", &mut out);
        assert_eq!(out.as_slice(), b"ada lovelace");
    }

    fn folded(text: &str) -> String {
        let mut out = WipedBuf::default();
        fold(text, &mut out);
        String::from_utf8(out.as_slice().to_vec()).unwrap()
    }

    /// Growing moves the bytes and keeps them in order, from empty, one
    /// byte at a time and in one large step.
    #[test]
    fn a_wiped_buffer_grows_like_a_vec() {
        let mut buf = WipedBuf::with_capacity(2);
        let mut want = Vec::new();
        for b in 0..=255u8 {
            buf.push(b);
            want.push(b);
        }
        buf.extend_from_slice(&[7; 1000]);
        want.extend_from_slice(&[7; 1000]);
        buf.reserved(3).extend_from_slice(b"end");
        want.extend_from_slice(b"end");
        assert_eq!(buf.as_slice(), &want[..]);
    }

    #[test]
    fn fold_normalises_and_case_folds() {
        assert_eq!(folded("Zo\u{eb}"), "zo\u{eb}");
        assert_eq!(folded("Zoe\u{308}"), "zo\u{eb}");
        assert_eq!(folded("ZOE\u{308}"), "zo\u{eb}");
        assert_eq!(folded("Straße"), "strasse");
        assert_eq!(folded("STRASSE"), "strasse");
        assert_eq!(folded("ΣΊΣΥΦΟΣ"), folded("σίσυφος"));
        // Canonical order of combining marks does not matter.
        assert_eq!(folded("q\u{307}\u{323}"), folded("q\u{323}\u{307}"));
        // U+0345 (iota subscript) folds the same composed or not.
        assert_eq!(folded("\u{1fb3}"), folded("\u{3b1}\u{345}"));
        assert_eq!(folded("\u{1fbc}"), folded("\u{1fb3}"));
        // Invisible characters are left out, white space collapsed.
        assert_eq!(
            folded("\u{200b} Ada\u{ad}\u{a0}\u{2003} Love\u{200d}lace "),
            "ada lovelace"
        );
        // Appends: what is in `out` is kept.
        let mut out = WipedBuf::default();
        out.push(b'x');
        fold(" A ", &mut out);
        assert_eq!(out.as_slice(), b"xa");
    }

    #[test]
    fn invisible_is_category_cf() {
        for pair in FORMAT_CHARACTERS.windows(2) {
            assert!(pair[0].1 < pair[1].0);
        }
        for c in [
            '\u{ad}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{e0001}',
            '\u{e007f}',
            '\u{1343f}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        }
        for c in [
            'a',
            ' ',
            '\u{a0}',
            '\u{301}',
            '\u{2065}',
            '\u{fffc}',
            'ß',
            '\u{10ffff}',
        ] {
            assert!(!is_invisible(c), "U+{:04X}", u32::from(c));
        }
        let k = Kind::PostalAddress;
        assert_eq!(
            clean_text(k, "a\u{200b}b", 10, false).unwrap_err().reason(),
            Reason::InvisibleCharacter
        );
        assert_eq!(
            clean_text_with_format(k, "a\u{200d}b", 10, false),
            Ok("a\u{200d}b")
        );
    }

    #[test]
    fn simd_validation_agrees_with_std() {
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"ada@example.com".to_vec(),
            "Zo\u{eb} \u{1F600} \u{10FFFF}".as_bytes().to_vec(),
            vec![0xff],
            vec![0xc0, 0x80],             // overlong NUL
            vec![0xed, 0xa0, 0x80],       // surrogate
            vec![0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
            vec![0xe2, 0x82],             // truncated
        ];
        // Every single byte, and a long mixed text cut at every length.
        cases.extend((0..=255u8).map(|b| vec![b]));
        let long = "x\u{e9}\u{4e2d}\u{1F600}".repeat(40).into_bytes();
        cases.extend((0..long.len()).map(|n| long[..n].to_vec()));
        for c in &cases {
            assert_eq!(
                stored_str(Kind::FullName, c).ok(),
                core::str::from_utf8(c).ok(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn owned_text_keeps_its_buffer() {
        use secrecy::ExposeSecret as _;
        let short = "Ad\u{e9}@example.com";
        let p = Plaintext::copy_of(short.as_bytes());
        let at = p.as_bytes().as_ptr();
        let secret = p.into_text(Kind::EmailAddress).unwrap().into_secret();
        assert_eq!(secret.expose_secret(), short);
        // Decrypted in place, handed over: never copied.
        assert_eq!(secret.expose_secret().as_ptr(), at);

        // Longer text is validated with SIMD and copied (the buffer wiped).
        let long = "\u{4e2d}".repeat(OWNED_TEXT_MAX);
        let p = Plaintext::copy_of(long.as_bytes());
        let secret = p.into_text(Kind::FullName).unwrap().into_secret();
        assert_eq!(secret.expose_secret(), long);

        for len in [1, OWNED_TEXT_MAX + 1] {
            let mut bytes = vec![b'a'; len];
            bytes[0] = 0xff;
            let e = Plaintext::copy_of(&bytes)
                .into_text(Kind::PhoneNumber)
                .err()
                .unwrap();
            assert_eq!(e.reason(), Reason::Malformed);
            assert_eq!(e.kind(), Kind::PhoneNumber);
        }
        let e = Plaintext::copy_of(b"")
            .into_stored_text(Kind::PaymentToken)
            .err()
            .unwrap();
        assert_eq!(e.reason(), Reason::Malformed);
    }

    #[test]
    fn every_kind_decodes_the_same_owned_or_borrowed() {
        fn same<T: DataKind + core::fmt::Debug>(value: &T) {
            let mut buf = Vec::new();
            value.encode_into(&mut buf);
            let encoded = |v: &T| {
                let mut out = Vec::new();
                v.encode_into(&mut out);
                out
            };
            let borrowed = T::decode(&buf, Token(())).unwrap();
            let owned = T::decode_owned(Plaintext::copy_of(&buf)).unwrap();
            assert_eq!(encoded(&borrowed), buf, "{value:?}");
            assert_eq!(encoded(&owned), buf, "{value:?}");
            // Damaged forms are refused the same way by both paths.
            for cut in 0..buf.len() {
                for bytes in [&buf[..cut], &[&buf[..cut], &[0xff][..]].concat()[..]] {
                    let a = T::decode(bytes, Token(())).err();
                    let b = T::decode_owned(Plaintext::copy_of(bytes)).err();
                    assert_eq!(a, b, "{value:?} cut at {cut}");
                }
            }
        }
        same(&EmailAddress::parse("ada@example.com").unwrap());
        same(&FullName::parse("Zo\u{eb} \u{4e2d}\u{6587}").unwrap());
        same(&FullName::parse(&"\u{e9}".repeat(100)).unwrap());
        same(&PhoneNumber::parse("+44 20 7946 0958").unwrap());
        same(&PaymentToken::parse("tok_1NirD82eZvKYlo2C").unwrap());
        same(&PostalAddress::parse("1 Rue de la Paix\n75002 Paris\nFR").unwrap());
        let amount = Amount::new(4995, "EUR").unwrap();
        let date = Date::new(2018, 6, 30).unwrap();
        same(&PurchaseRecord::new("o-1", "Tea", amount, date).unwrap());
    }
}
