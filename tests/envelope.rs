//! Sealed envelopes: round trips for every data kind, purpose, algorithm and
//! padding setting; rejection of every altered, misbound, foreign or malformed
//! envelope with its own typed error; a strict text form; no plaintext in any
//! error; no panic on arbitrary input.

use std::sync::{Arc, OnceLock};

use privacy_pledge::crypto::{Algorithm, EnvelopeError, KeyError, Keyring, MemoryKeyStore};
use privacy_pledge::data::{
    Amount, DataKind, Date, EmailAddress, FullName, Kind, PaymentToken, PhoneNumber, PostalAddress,
    PurchaseRecord,
};
use privacy_pledge::purpose::{
    Correspondence, Improvement, Newsletter, Personalization, Promotion, Purpose, PurposeId,
    SeesPlaintext, ServiceNotice, Support, Transaction,
};
use privacy_pledge::{Custodian, Error, ExposeSecret, PersonalInfo, Sealed, SubjectId};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Header length, tag length and the offsets of the v1 layout.
const HEADER: usize = 49;
const TAG: usize = 16;
const KIND: usize = 3;
const PURPOSE: usize = 4;
const SUBJECT: core::ops::Range<usize> = 5..21;
const KEY_ID: core::ops::Range<usize> = 21..25;
const COLLECTED: core::ops::Range<usize> = 25..33;
const CT_LEN: core::ops::Range<usize> = 33..37;

/// The exact value of a data kind as a string (for comparing round trips)
/// and the length of its sealed byte form.
trait Exact: DataKind {
    fn exact(&self) -> String;
    fn sealed_len(&self) -> usize {
        self.exact().len()
    }
}

impl Exact for FullName {
    fn exact(&self) -> String {
        self.expose_secret().to_owned()
    }
}
impl Exact for EmailAddress {
    fn exact(&self) -> String {
        self.expose_secret().to_owned()
    }
}
impl Exact for PhoneNumber {
    fn exact(&self) -> String {
        self.expose_secret().to_owned()
    }
}
impl Exact for PaymentToken {
    fn exact(&self) -> String {
        self.expose_secret().to_owned()
    }
}
impl Exact for PostalAddress {
    fn exact(&self) -> String {
        format!("{}\n{}", self.expose_secret(), self.country().code())
    }
}
impl Exact for PurchaseRecord {
    fn exact(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.order_id(),
            self.product(),
            self.amount().minor_units(),
            self.amount().currency(),
            self.date()
        )
    }
    fn sealed_len(&self) -> usize {
        1 + self.order_id().len() + 2 + self.product().len() + 8 + 3 + 4
    }
}

/// The four custodian configurations: both algorithms, padding off and on.
fn custodians() -> &'static [(Algorithm, bool, Custodian)] {
    static C: OnceLock<Vec<(Algorithm, bool, Custodian)>> = OnceLock::new();
    C.get_or_init(|| {
        let mut v = Vec::new();
        for alg in [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
            for pad in [false, true] {
                let c = Custodian::builder()
                    .algorithm(alg)
                    .length_padding(pad)
                    .build()
                    .unwrap();
                v.push((alg, pad, c));
            }
        }
        v
    })
}

/// A fresh subject with live consent for the consent-based purposes, so
/// their envelopes are within retention and open.
fn consenting(c: &Custodian) -> SubjectId {
    let s = SubjectId::random();
    c.consents().grant::<Newsletter>(s).unwrap();
    c.consents().grant::<Promotion>(s).unwrap();
    c.consents().grant::<Personalization>(s).unwrap();
    s
}

fn padded_len(len: usize) -> usize {
    let n = len + 1;
    match n {
        0..=16 => 16,
        17..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => n.div_ceil(256) * 256,
    }
}

/// Checks the envelope's framing against the documented layout.
fn check_frame<T: Exact, P: Purpose>(
    sealed: &Sealed<T, P>,
    value: &T,
    alg: Algorithm,
    pad: bool,
    subject: SubjectId,
) -> Result<(), TestCaseError> {
    let b = sealed.as_bytes();
    let ct_len = if pad {
        padded_len(value.sealed_len())
    } else {
        value.sealed_len()
    };
    prop_assert_eq!(b.len(), HEADER + ct_len + TAG);
    prop_assert_eq!(b[0], 2);
    prop_assert_eq!(b[1], alg as u8);
    prop_assert_eq!(b[2], u8::from(pad));
    prop_assert_eq!(b[KIND], T::KIND as u8);
    prop_assert_eq!(b[PURPOSE], P::ID as u8);
    prop_assert_eq!(&b[SUBJECT], subject.as_bytes());
    prop_assert_eq!(&b[CT_LEN], &(ct_len as u32).to_be_bytes());
    prop_assert_eq!(sealed.algorithm(), alg);
    prop_assert_eq!(sealed.subject(), subject);
    prop_assert_eq!(sealed.to_bytes(), b.to_vec());
    // The plaintext never shows in the bytes, the text or the Debug form.
    let plain = value.exact();
    if plain.len() >= 4 {
        prop_assert!(!b.windows(plain.len()).any(|w| w == plain.as_bytes()));
        let shown = format!("{sealed:?}");
        prop_assert!(!shown.contains(&plain));
    }
    Ok(())
}

/// Seals, checks the frame, reopens (directly, via bytes, text and JSON) and
/// compares the exact value, for a purpose that sees plaintext.
fn round_trip_plain<T: Exact, P: SeesPlaintext>(value: &T) -> Result<(), TestCaseError> {
    for (alg, pad, c) in custodians() {
        let subject = consenting(c);
        let info: PersonalInfo<T, P> = PersonalInfo::collect(subject, value.clone());
        let sealed = c.seal(&info).unwrap();
        check_frame(&sealed, value, *alg, *pad, subject)?;
        let copies = [
            sealed.clone(),
            Sealed::<T, P>::from_bytes(sealed.as_bytes()).unwrap(),
            Sealed::<T, P>::from_text(&sealed.to_text()).unwrap(),
            serde_json::from_str(&serde_json::to_string(&sealed).unwrap()).unwrap(),
        ];
        for copy in &copies {
            prop_assert_eq!(copy, &sealed);
            let opened = c.open(copy).unwrap();
            prop_assert_eq!(opened.subject(), subject);
            prop_assert_eq!(c.access(&opened, |v| v.exact()).unwrap(), value.exact());
        }
    }
    Ok(())
}

/// The same for `Improvement`, which never sees plaintext: the reopened value
/// must give the same keyed pseudonym and re-seal to the same length.
fn round_trip_improvement<T: Exact>(value: &T) -> Result<(), TestCaseError> {
    for (alg, pad, c) in custodians() {
        let subject = SubjectId::random();
        let info: PersonalInfo<T, Improvement> = PersonalInfo::collect(subject, value.clone());
        let sealed = c.seal(&info).unwrap();
        check_frame(&sealed, value, *alg, *pad, subject)?;
        let text = Sealed::<T, Improvement>::from_text(&sealed.to_text()).unwrap();
        let opened = c.open(&text).unwrap();
        prop_assert_eq!(opened.subject(), subject);
        prop_assert_eq!(c.pseudonym(&opened).unwrap(), c.pseudonym(&info).unwrap());
        prop_assert_eq!(
            c.seal(&opened).unwrap().as_bytes().len(),
            sealed.as_bytes().len()
        );
    }
    Ok(())
}

fn every_purpose<T: Exact>(value: T) -> Result<(), TestCaseError> {
    round_trip_plain::<T, Transaction>(&value)?;
    round_trip_plain::<T, Support>(&value)?;
    round_trip_plain::<T, Correspondence>(&value)?;
    round_trip_plain::<T, ServiceNotice>(&value)?;
    round_trip_plain::<T, Newsletter>(&value)?;
    round_trip_plain::<T, Promotion>(&value)?;
    round_trip_plain::<T, Personalization>(&value)?;
    round_trip_improvement::<T>(&value)
}

fn names() -> impl Strategy<Value = FullName> {
    "[A-Za-zÀ-ÿ'.-]{1,20}( [A-Za-zÀ-ÿ'.-]{1,20}){0,3}".prop_map(|s| FullName::parse(&s).unwrap())
}

fn emails() -> impl Strategy<Value = EmailAddress> {
    "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\\.[a-z0-9]{1,10}){0,2}@[a-z0-9]{1,12}(\\.[a-z]{2,8}){1,3}"
        .prop_map(|s| EmailAddress::parse(&s).unwrap())
}

fn phones() -> impl Strategy<Value = PhoneNumber> {
    // Any digits after a country code; only numbers the parser accepts
    // (a known calling code, a length that fits it) are kept.
    "\\+[1-9][0-9]{6,14}".prop_filter_map("a valid E.164 number", |s| PhoneNumber::parse(&s).ok())
}

fn postal() -> impl Strategy<Value = PostalAddress> {
    let countries: Vec<String> = privacy_pledge::country::Country::all()
        .map(|c| c.code().to_owned())
        .collect();
    (
        prop::collection::vec("[A-Za-z0-9][A-Za-z0-9 ,.#/-]{0,126}", 1..=7),
        prop::sample::select(countries),
    )
        .prop_map(|(lines, country)| {
            let text = format!("{}\n{country}", lines.join("\n"));
            PostalAddress::parse(&text).unwrap()
        })
}

fn purchases() -> impl Strategy<Value = PurchaseRecord> {
    (
        "[!-~]{1,64}",
        "[A-Za-z0-9][A-Za-z0-9 ]{0,100}",
        any::<u64>(),
        prop::sample::select(vec!["USD", "EUR", "GBP", "JPY", "BHD", "KWD", "CHF", "ISK"]),
        (1970u16..=2553, 1u8..=12, 1u8..=28),
    )
        .prop_map(|(id, product, minor, cur, (y, m, d))| {
            PurchaseRecord::new(
                &id,
                &product,
                Amount::new(minor, cur).unwrap(),
                Date::new(y, m, d).unwrap(),
            )
            .unwrap()
        })
}

fn tokens() -> impl Strategy<Value = PaymentToken> {
    "[!-~]{1,255}".prop_map(|s| PaymentToken::parse(&s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn full_names_round_trip(v in names()) { every_purpose(v)?; }

    #[test]
    fn emails_round_trip(v in emails()) { every_purpose(v)?; }

    #[test]
    fn phone_numbers_round_trip(v in phones()) { every_purpose(v)?; }

    #[test]
    fn postal_addresses_round_trip(v in postal()) { every_purpose(v)?; }

    #[test]
    fn purchase_records_round_trip(v in purchases()) { every_purpose(v)?; }

    #[test]
    fn payment_tokens_round_trip(v in tokens()) { every_purpose(v)?; }
}

// ---------------------------------------------------------------------------
// Tampering, misbinding and foreign keys.

const SECRET_EMAIL: &str = "ada.lovelace.secret@analytical-engine.example";

fn email(subject: SubjectId) -> PersonalInfo<EmailAddress, Transaction> {
    PersonalInfo::collect(subject, EmailAddress::parse(SECRET_EMAIL).unwrap())
}

/// Neither form of the error shows the plaintext or a recognisable part of it.
fn assert_no_plaintext(e: &dyn std::fmt::Debug, display: String) {
    let debug = format!("{e:?}");
    for needle in [SECRET_EMAIL, "lovelace", "analytical"] {
        assert!(!debug.contains(needle), "Debug leaks: {debug}");
        assert!(!display.contains(needle), "Display leaks: {display}");
    }
}

fn open_err<T: DataKind, P: Purpose>(c: &Custodian, s: &Sealed<T, P>) -> Error {
    match c.open(s) {
        Ok(_) => panic!("an envelope that must not open opened"),
        Err(e) => {
            assert_no_plaintext(&e, e.to_string());
            e
        }
    }
}

/// Every single-bit flip of envelopes of both algorithms, padded or not, is
/// refused: at parse time with a typed error, or at open time as unauthentic
/// or as a key that does not exist. Never `Ok`, never a panic.
#[test]
fn every_bit_flip_is_rejected() {
    for (alg, pad, c) in custodians() {
        let subject = SubjectId::random();
        let sealed = c.seal(&email(subject)).unwrap();
        let bytes = sealed.to_bytes();
        let (mut at_parse, mut unauthentic, mut unknown_key, mut expired) = (0, 0, 0, 0);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            match Sealed::<EmailAddress, Transaction>::from_bytes(&b) {
                Err(e) => {
                    assert_no_plaintext(&e, e.to_string());
                    at_parse += 1;
                }
                Ok(s) => match open_err(c, &s) {
                    Error::Unauthentic => unauthentic += 1,
                    Error::Key(KeyError::UnknownKey { .. }) => unknown_key += 1,
                    // A collection date moved decades back is refused as past
                    // retention before decryption; moved elsewhere, it fails
                    // authentication.
                    Error::Expired { .. } if COLLECTED.contains(&(i / 8)) => expired += 1,
                    other => panic!("bit {i} ({alg:?}, padded {pad}): unexpected {other:?}"),
                },
            }
        }
        // Version, algorithm, flag, kind, purpose and length bytes fail to
        // parse (a kind or purpose flipped to another known one is
        // `WrongType`); subject and key id flips find no key; everything
        // else fails authentication.
        assert_eq!(at_parse, 8 + 8 + 7 + 8 + 8 + 32);
        assert_eq!(unknown_key, 16 * 8 + 4 * 8);
        assert_eq!(
            at_parse + unauthentic + unknown_key + expired,
            bytes.len() * 8
        );
        // The original still opens.
        assert!(c.open(&sealed).is_ok());
    }
}

#[test]
fn swapped_subject_is_rejected() {
    let c = Custodian::in_memory();
    let (a, b) = (SubjectId::random(), SubjectId::random());
    let sealed_a = c.seal(&email(a)).unwrap();
    c.seal(&email(b)).unwrap(); // b has a generation-0 key too
    let mut bytes = sealed_a.to_bytes();
    bytes[SUBJECT].copy_from_slice(b.as_bytes());
    let moved = Sealed::<EmailAddress, Transaction>::from_bytes(&bytes).unwrap();
    assert_eq!(moved.subject(), b);
    // b's key is found, but the envelope was not sealed under it for b.
    assert!(matches!(open_err(&c, &moved), Error::Unauthentic));
    // A subject with no keys at all.
    let nobody = SubjectId::random();
    bytes[SUBJECT].copy_from_slice(nobody.as_bytes());
    let moved = Sealed::<EmailAddress, Transaction>::from_bytes(&bytes).unwrap();
    assert!(matches!(
        open_err(&c, &moved),
        Error::Key(KeyError::UnknownKey { subject, key_id: 0 }) if subject == nobody
    ));
    assert!(c.open(&sealed_a).is_ok());
}

/// An envelope read as another kind or purpose is refused before any
/// decryption, with an error that says what it holds and what was asked —
/// from bytes, text and serde alike.
#[test]
fn swapped_kind_and_purpose_are_refused_with_what_the_envelope_holds() {
    for (_, _, c) in custodians() {
        let sealed = c.seal(&email(consenting(c))).unwrap();
        let bytes = sealed.as_bytes();
        macro_rules! refused {
            ($t:ty, $p:ty) => {{
                let expected = EnvelopeError::WrongType {
                    holds_kind: Kind::EmailAddress,
                    holds_purpose: PurposeId::Transaction,
                    asked_kind: <$t as DataKind>::KIND,
                    asked_purpose: <$p as Purpose>::ID,
                };
                assert_eq!(Sealed::<$t, $p>::from_bytes(bytes).unwrap_err(), expected);
                assert_eq!(
                    Sealed::<$t, $p>::from_text(&sealed.to_text()).unwrap_err(),
                    expected
                );
                let json = serde_json::to_string(&sealed).unwrap();
                let err = serde_json::from_str::<Sealed<$t, $p>>(&json).unwrap_err();
                assert!(
                    err.to_string()
                        .contains("this envelope holds EmailAddress for Transaction"),
                    "{err}"
                );
                assert_no_plaintext(&expected, expected.to_string());
            }};
        }
        // Another kind, same purpose.
        refused!(FullName, Transaction);
        refused!(PostalAddress, Transaction);
        refused!(PhoneNumber, Transaction);
        refused!(PurchaseRecord, Transaction);
        refused!(PaymentToken, Transaction);
        // Same kind, another purpose.
        refused!(EmailAddress, Support);
        refused!(EmailAddress, Correspondence);
        refused!(EmailAddress, ServiceNotice);
        refused!(EmailAddress, Newsletter);
        refused!(EmailAddress, Promotion);
        refused!(EmailAddress, Personalization);
        refused!(EmailAddress, Improvement);
        // Both.
        refused!(FullName, Support);
        assert!(c.open(&sealed).is_ok());
    }
}

/// The kind and purpose bytes are authenticated: an envelope whose header
/// was edited to name the type it is read as still does not open.
#[test]
fn edited_kind_and_purpose_fail_authentication() {
    for (_, _, c) in custodians() {
        let sealed = c.seal(&email(consenting(c))).unwrap();
        let mut bytes = sealed.to_bytes();
        bytes[KIND] = Kind::FullName as u8;
        let other = Sealed::<FullName, Transaction>::from_bytes(&bytes).unwrap();
        assert!(matches!(open_err(c, &other), Error::Unauthentic));
        let mut bytes = sealed.to_bytes();
        bytes[PURPOSE] = PurposeId::Support as u8;
        let other = Sealed::<EmailAddress, Support>::from_bytes(&bytes).unwrap();
        assert!(matches!(open_err(c, &other), Error::Unauthentic));
        // Codes no kind or purpose has.
        for (at, code) in [
            (KIND, 0u8),
            (KIND, 7),
            (PURPOSE, 0),
            (PURPOSE, 9),
            (KIND, 0xff),
        ] {
            let mut bytes = sealed.to_bytes();
            bytes[at] = code;
            assert_eq!(
                Sealed::<EmailAddress, Transaction>::from_bytes(&bytes).unwrap_err(),
                EnvelopeError::UnknownType
            );
        }
    }
}

#[test]
fn a_custodian_with_other_keys_cannot_open() {
    let subject = SubjectId::random();
    let store = Arc::new(MemoryKeyStore::new());
    let ours = Custodian::builder()
        .keyring(Keyring::generate().unwrap())
        .key_store(store.clone())
        .build()
        .unwrap();
    let sealed = ours.seal(&email(subject)).unwrap();

    // Other keys and no stored data key for the subject.
    let stranger = Custodian::in_memory();
    assert!(matches!(
        open_err(&stranger, &sealed),
        Error::Key(KeyError::UnknownKey { key_id: 0, .. })
    ));
    // The same key store but another keyring: the wrapped data key does not unwrap.
    let thief = Custodian::builder()
        .keyring(Keyring::generate().unwrap())
        .key_store(store.clone())
        .build()
        .unwrap();
    assert!(matches!(
        open_err(&thief, &sealed),
        Error::Key(KeyError::Unwrap)
    ));
    // A stranger's own key for the same subject does not open it either.
    stranger.seal(&email(subject)).unwrap();
    assert!(matches!(open_err(&stranger, &sealed), Error::Unauthentic));
    assert!(ours.open(&sealed).is_ok());
}

#[test]
fn malformed_envelopes_have_distinct_typed_errors() {
    let c = Custodian::in_memory();
    let subject = SubjectId::random();
    let sealed = c.seal(&email(subject)).unwrap();
    let good = sealed.to_bytes();
    let n = good.len();
    type S = Sealed<EmailAddress, Transaction>;

    assert_eq!(S::from_bytes(&[]).unwrap_err(), EnvelopeError::Empty);
    assert_eq!(
        S::from_bytes(&good[..n - 1]).unwrap_err(),
        EnvelopeError::Truncated {
            len: n - 1,
            needed: n
        }
    );
    assert_eq!(
        S::from_bytes(&good[..HEADER]).unwrap_err(),
        EnvelopeError::Truncated {
            len: HEADER,
            needed: HEADER + TAG
        }
    );
    for cut in 1..n {
        assert!(matches!(
            S::from_bytes(&good[..cut]).unwrap_err(),
            EnvelopeError::Truncated { len, .. } if len == cut
        ));
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        S::from_bytes(&longer).unwrap_err(),
        EnvelopeError::Extended {
            len: n + 1,
            expected: n
        }
    );
    for version in [0u8, 3, 0x7f, 0xff] {
        let mut b = good.clone();
        b[0] = version;
        assert_eq!(
            S::from_bytes(&b).unwrap_err(),
            EnvelopeError::UnknownVersion(version)
        );
    }
    for alg in [0u8, 3, 0xff] {
        let mut b = good.clone();
        b[1] = alg;
        assert_eq!(
            S::from_bytes(&b).unwrap_err(),
            EnvelopeError::UnknownAlgorithm(alg)
        );
    }
    let mut b = good.clone();
    b[2] = 0x80;
    assert_eq!(
        S::from_bytes(&b).unwrap_err(),
        EnvelopeError::UnknownFlags(0x80)
    );
    // A length field far beyond the bytes present.
    let mut b = good.clone();
    b[CT_LEN].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        S::from_bytes(&b).unwrap_err(),
        EnvelopeError::Truncated { len, .. } if len == n
    ));

    // A well-formed envelope naming a key generation that does not exist.
    let mut b = good.clone();
    b[KEY_ID].copy_from_slice(&7u32.to_be_bytes());
    let unknown = S::from_bytes(&b).unwrap();
    assert_eq!(unknown.key_id(), 7);
    assert!(matches!(
        open_err(&c, &unknown),
        Error::Key(KeyError::UnknownKey { subject: s, key_id: 7 }) if s == subject
    ));

    // Every parse error is distinct and none leaks anything.
    let errors = [
        EnvelopeError::Empty,
        S::from_bytes(&good[..n - 1]).unwrap_err(),
        S::from_bytes(&longer).unwrap_err(),
        EnvelopeError::UnknownVersion(3),
        EnvelopeError::UnknownAlgorithm(3),
        EnvelopeError::UnknownFlags(0x80),
        EnvelopeError::BadText,
        EnvelopeError::UnknownType,
        Sealed::<FullName, Transaction>::from_bytes(&good).unwrap_err(),
    ];
    let shown: std::collections::HashSet<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), errors.len());
    for e in &errors {
        assert_no_plaintext(e, e.to_string());
        let wrapped = Error::from(*e);
        assert_no_plaintext(&wrapped, wrapped.to_string());
    }
    // Through serde too, as an error rather than a panic.
    assert!(serde_json::from_str::<S>("\"\"").is_err());
    assert!(serde_json::from_str::<S>("\"AQ\"").is_err());
    assert!(c.open(&sealed).is_ok());
}

#[test]
fn text_form_is_strict() {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
    use base64::Engine as _;
    type S = Sealed<EmailAddress, Transaction>;
    let c = Custodian::in_memory();
    // 47 bytes of plaintext: 112 envelope bytes, so the last character of the
    // text carries unused bits. Seal until the text uses both URL-safe
    // characters, so the alphabet swaps below really change it.
    let value = EmailAddress::parse("ada.lovelace.secrets@analytical-engines.example").unwrap();
    let sealed = (0..10_000)
        .map(|_| {
            c.seal(&PersonalInfo::<_, Transaction>::collect(
                SubjectId::random(),
                value.clone(),
            ))
            .unwrap()
        })
        .find(|s| {
            let t = s.to_text();
            t.contains('-') && t.contains('_')
        })
        .unwrap();
    let text = sealed.to_text();
    assert_eq!(text.len() % 4, 2);
    assert!(S::from_text(&text).is_ok());
    let bad = |t: &str| {
        assert_eq!(
            S::from_text(t).unwrap_err(),
            EnvelopeError::BadText,
            "{t:?}"
        );
        let json = serde_json::to_string(t).unwrap();
        assert!(serde_json::from_str::<S>(&json).is_err());
    };
    // Padding.
    bad(&URL_SAFE.encode(sealed.as_bytes()));
    bad(&format!("{text}="));
    bad(&format!("{text}=="));
    // The standard alphabet.
    bad(&STANDARD_NO_PAD.encode(sealed.as_bytes()));
    bad(&STANDARD.encode(sealed.as_bytes()));
    bad(&text.replace('-', "+"));
    bad(&text.replace('_', "/"));
    // White space anywhere.
    bad(&format!(" {text}"));
    bad(&format!("{text}\n"));
    bad(&format!("{}\n{}", &text[..40], &text[40..]));
    bad(&format!("{}\r\n{}", &text[..76], &text[76..]));
    bad(&format!("{}\t{}", &text[..10], &text[10..]));
    // Non-canonical: the unused low bits of the last character set.
    let last = text.as_bytes()[text.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|&a| a == last).unwrap();
    let unused = if text.len() % 4 == 2 { 0b1111 } else { 0b11 };
    for low in 1..=unused {
        let other = alphabet[(idx & !unused) | low] as char;
        let t = format!("{}{other}", &text[..text.len() - 1]);
        if t != text {
            bad(&t);
        }
    }
    // Not base64 at all; a length no base64 text has.
    bad("not base64!");
    bad(&format!("{text}AAA"));
    assert_eq!(S::from_text("").unwrap_err(), EnvelopeError::Empty);
}

#[test]
fn debug_and_errors_never_show_plaintext() {
    let c = Custodian::in_memory();
    let subject = SubjectId::random();
    let info = email(subject);
    assert_no_plaintext(&info, info.to_string());
    let sealed = c.seal(&info).unwrap();
    assert_no_plaintext(&sealed, format!("{sealed:?}"));
    let opened = c.open(&sealed).unwrap();
    assert_no_plaintext(&opened, opened.to_string());
    c.erase(subject).unwrap();
    let e = open_err(&c, &sealed);
    assert!(matches!(e, Error::Erased { .. }));
    // The builder and custodian do not show key material either.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("master"), "{dbg}");
}

/// An envelope whose header is well formed but whose bytes are arbitrary.
fn framed(bytes: &[u8], alg: u8, flags: u8, key_id: u32, subject: SubjectId) -> Vec<u8> {
    let mut out = vec![
        2,
        alg,
        flags,
        Kind::EmailAddress as u8,
        PurposeId::Transaction as u8,
    ];
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&key_id.to_be_bytes());
    // Collected now, so the envelope is within retention and reaches decryption.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    out.extend_from_slice(&now.to_be_bytes());
    let ct = bytes.len().saturating_sub(NONCE + TAG);
    out.extend_from_slice(&(ct as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out.resize(HEADER + ct + TAG, 0);
    out
}
const NONCE: usize = 12;

fn shared() -> &'static (Custodian, SubjectId) {
    static C: OnceLock<(Custodian, SubjectId)> = OnceLock::new();
    C.get_or_init(|| {
        let c = Custodian::in_memory();
        let s = SubjectId::random();
        c.seal(&email(s)).unwrap();
        (c, s)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn from_bytes_never_panics(
        mut bytes in prop::collection::vec(any::<u8>(), 0..200),
        fix_frame in any::<bool>(),
    ) {
        let (c, _) = shared();
        // Half the inputs get a version byte and a length field that agree
        // with their size, so parsing gets past the framing checks.
        if fix_frame && bytes.len() >= HEADER + TAG {
            bytes[0] = 2;
            let ct = (bytes.len() - HEADER - TAG) as u32;
            bytes[CT_LEN].copy_from_slice(&ct.to_be_bytes());
        }
        if let Ok(s) = Sealed::<EmailAddress, Transaction>::from_bytes(&bytes) {
            prop_assert!(c.open(&s).is_err());
        }
        if let Ok(s) = Sealed::<PurchaseRecord, Improvement>::from_bytes(&bytes) {
            prop_assert!(c.open(&s).is_err());
        }
    }

    #[test]
    fn from_text_never_panics(text in ".{0,120}") {
        let (c, _) = shared();
        if let Ok(s) = Sealed::<FullName, Support>::from_text(&text) {
            prop_assert!(c.open(&s).is_err());
        }
    }

    /// Well-framed envelopes for a subject that has a key, with arbitrary
    /// nonce, ciphertext and tag: parse, then fail authentication.
    #[test]
    fn forged_envelopes_do_not_open(
        body in prop::collection::vec(any::<u8>(), 28..160),
        alg in 1u8..=2,
        flags in 0u8..=1,
    ) {
        let (c, subject) = shared();
        let bytes = framed(&body, alg, flags, 0, *subject);
        let s = Sealed::<EmailAddress, Transaction>::from_bytes(&bytes).unwrap();
        let e = c.open(&s).unwrap_err();
        prop_assert!(matches!(e, Error::Unauthentic), "{:?}", e);
    }
}
