//! `data_kinds`: every data-kind parser of `privacy_pledge::data`.
//!
//! The first byte picks the parser; the rest is its input: text (lossy
//! UTF-8) for `EmailAddress`, `FullName`, `PhoneNumber`, `PostalAddress` and
//! `PaymentToken`; fields read with [`Input`] for `Amount`, `Date` and
//! `PurchaseRecord`.
//!
//! Properties, beyond "no panic":
//! - parsing is idempotent: what a parser accepts, it accepts again in the
//!   form it keeps (`parse(expose(parse(x)))` gives the same text and an
//!   equal value);
//! - the kind's documented invariants hold on every value accepted (an
//!   email address is `local@domain` within 254 bytes, a phone number is
//!   `+` and at most 15 digits, a name is trimmed NFC, …);
//! - a value that parses seals and opens back to the same text: the
//!   crate's private stored form (the bytes inside an envelope) round-trips
//!   for every value the public parsers accept.

use privacy_pledge::data::{
    Amount, DataKind, Date, EmailAddress, FullName, PaymentToken, PhoneNumber, PostalAddress,
    PurchaseRecord,
};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::time::Timestamp;
use privacy_pledge::{ExposeSecret, PersonalInfo};
use unicode_normalization::is_nfc;

use super::common::{custodian, SUBJECT};
use super::input::Input;

/// The number of parsers the first byte chooses from.
pub const PARSERS: u8 = 8;

/// Runs the parser the first byte of `data` picks on the rest. Returns
/// whether the input was accepted. Panics only on a broken property.
pub fn check(data: &[u8]) -> bool {
    let Some((&which, rest)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    match which % PARSERS {
        0 => email(&text),
        1 => full_name(&text),
        2 => phone(&text),
        3 => postal(&text),
        4 => token(&text),
        5 => amount(Input::new(rest)),
        6 => date(Input::new(rest)),
        _ => purchase(Input::new(rest)),
    }
}

/// Seals `value` for its subject, opens it again, and checks with `same`
/// that what comes out is what went in.
fn seal_and_open<T: DataKind>(value: &T, same: impl FnOnce(&T, &T) -> bool) {
    let c = custodian();
    let info = PersonalInfo::<T, Transaction>::collect(SUBJECT, value.clone());
    let sealed = c.seal(&info).expect("a parsed value seals");
    let opened = c.open(&sealed).expect("an envelope just sealed opens");
    let ok = c
        .access(&opened, |v| same(v, value))
        .expect("access for the purpose held");
    assert!(ok, "the stored form does not round-trip");
}

fn same_text<T: ExposeSecret<str>>(a: &T, b: &T) -> bool {
    a.expose_secret() == b.expose_secret()
}

fn email(text: &str) -> bool {
    let Ok(e) = EmailAddress::parse(text) else {
        return false;
    };
    let s = e.expose_secret();
    assert!(!s.is_empty() && s.len() <= 254 && s.is_ascii());
    assert_eq!(format!("{}@{}", e.local_part(), e.domain()), s);
    let again = EmailAddress::parse(s).expect("own form parses");
    assert_eq!(again.expose_secret(), s);
    assert!(again == e);
    // Equality ignores ASCII case, and changing case keeps it valid.
    let upper = EmailAddress::parse(&s.to_ascii_uppercase()).expect("upper case parses");
    assert!(upper == e, "email equality is not caseless");
    seal_and_open(&e, same_text);
    true
}

fn full_name(text: &str) -> bool {
    let Ok(n) = FullName::parse(text) else {
        return false;
    };
    let s = n.expose_secret();
    assert!(!s.is_empty() && s.trim() == s, "not trimmed");
    assert!(is_nfc(s), "not NFC");
    assert!(s.chars().count() <= FullName::MAX_CHARS);
    assert!(!s.chars().any(char::is_control));
    let again = FullName::parse(s).expect("own form parses");
    assert_eq!(again.expose_secret(), s);
    assert!(again == n);
    seal_and_open(&n, same_text);
    true
}

fn phone(text: &str) -> bool {
    let Ok(p) = PhoneNumber::parse(text) else {
        return false;
    };
    let s = p.expose_secret();
    let digits = s.strip_prefix('+').expect("starts with +");
    assert!((1..=15).contains(&digits.len()), "{} digits", digits.len());
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    let again = PhoneNumber::parse(s).expect("own form parses");
    assert_eq!(again.expose_secret(), s);
    assert!(again == p);
    seal_and_open(&p, same_text);
    true
}

fn postal(text: &str) -> bool {
    let Ok(a) = PostalAddress::parse(text) else {
        return false;
    };
    let lines: Vec<&str> = a.lines().collect();
    assert!(!lines.is_empty() && lines.len() < PostalAddress::MAX_LINES);
    for line in &lines {
        assert!(!line.is_empty() && line.trim() == *line && !line.contains('\n'));
        assert!(line.chars().count() <= PostalAddress::MAX_LINE_CHARS);
    }
    let text = format!("{}\n{}", a.expose_secret(), a.country());
    let again = PostalAddress::parse(&text).expect("own form parses");
    assert_eq!(again.expose_secret(), a.expose_secret());
    assert_eq!(again.country(), a.country());
    let built = PostalAddress::new(lines.iter().copied(), a.country()).expect("own lines build");
    assert_eq!(built.expose_secret(), a.expose_secret());
    assert!(again == a && built == a);
    seal_and_open(&a, |x, y| {
        x.expose_secret() == y.expose_secret() && x.country() == y.country()
    });
    true
}

fn token(text: &str) -> bool {
    let Ok(t) = PaymentToken::parse(text) else {
        return false;
    };
    let s = t.expose_secret();
    assert!((1..=255).contains(&s.len()));
    assert!(s.bytes().all(|b| b.is_ascii_graphic()));
    let again = PaymentToken::parse(s).expect("own form parses");
    assert_eq!(again.expose_secret(), s);
    seal_and_open(&t, same_text);
    true
}

/// Checks an accepted amount: its text shows the minor units with the
/// currency's number of decimals, then the code.
fn check_amount(a: &Amount, minor: u64, currency: &str) {
    assert_eq!(a.minor_units(), minor);
    assert_eq!(a.currency(), currency);
    assert!(Amount::currencies().any(|c| c == currency));
    let shown = a.to_string();
    let (number, code) = shown.split_once(' ').expect("number and code");
    assert_eq!(code, currency);
    let digits = usize::from(a.minor_unit_digits());
    match number.split_once('.') {
        Some((_, frac)) => assert_eq!(frac.len(), digits, "{shown}"),
        None => assert_eq!(digits, 0, "{shown}"),
    }
    let units: u64 = number.replace('.', "").parse().expect("digits");
    assert_eq!(units, minor, "{shown}");
}

fn amount(mut input: Input<'_>) -> bool {
    let minor = input.u64();
    let currency = String::from_utf8_lossy(input.rest()).into_owned();
    let Ok(a) = Amount::new(minor, &currency) else {
        return false;
    };
    check_amount(&a, minor, &currency);
    true
}

/// Whether the date exists in the proleptic Gregorian calendar and lies
/// in the range `Date` documents, computed without the crate.
fn date_is_valid(year: u16, month: u8, day: u8) -> bool {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    day >= 1 && day <= days && (1970..=2554).contains(&year) && (year, month, day) <= (2554, 7, 21)
}

fn check_date(d: &Date, year: u16, month: u8, day: u8) {
    assert_eq!((d.year(), d.month(), d.day()), (year, month, day));
    let shown = d.to_string();
    assert_eq!(shown, format!("{year:04}-{month:02}-{day:02}"));
    let start = d.start();
    assert_eq!(start.date().to_string(), shown, "start is on another day");
    assert_eq!(start.unix_seconds() % 86_400, 0);
    assert!(start >= Date::FIRST.start() && start <= Date::LAST.start());
    assert!(start <= Timestamp::from_unix_nanos(u64::MAX));
}

fn date(mut input: Input<'_>) -> bool {
    let (year, month, day) = (input.u16(), input.u8(), input.u8());
    let d = Date::new(year, month, day);
    assert_eq!(
        d.is_ok(),
        date_is_valid(year, month, day),
        "{year}-{month}-{day}"
    );
    match d {
        Ok(d) => {
            check_date(&d, year, month, day);
            true
        }
        Err(_) => false,
    }
}

fn purchase(mut input: Input<'_>) -> bool {
    let minor = input.u64();
    let currency = String::from_utf8_lossy(input.bytes(3)).into_owned();
    let (year, month, day) = (input.u16(), input.u8(), input.u8());
    let order_id = input.text();
    let product = String::from_utf8_lossy(input.rest()).into_owned();
    let amount = match Amount::new(minor, &currency) {
        Ok(a) => a,
        // Still reach the record's checks, with a valid amount.
        Err(_) => Amount::new(minor, "EUR").expect("EUR"),
    };
    let date = Date::new(year, month, day).unwrap_or(Date::FIRST);
    let Ok(r) = PurchaseRecord::new(&order_id, &product, amount, date) else {
        return false;
    };
    let id = r.order_id();
    assert!(!id.is_empty() && id.len() <= PurchaseRecord::MAX_ORDER_ID);
    assert!(id.bytes().all(|b| b.is_ascii_graphic()));
    let p = r.product();
    assert!(!p.is_empty() && p.trim() == p);
    assert!(p.chars().count() <= PurchaseRecord::MAX_PRODUCT_CHARS);
    assert_eq!((r.amount(), r.date()), (amount, date));
    let again = PurchaseRecord::new(id, p, amount, date).expect("own fields build");
    assert_eq!((again.order_id(), again.product()), (id, p));
    seal_and_open(&r, |x, y| {
        x.order_id() == y.order_id()
            && x.product() == y.product()
            && x.amount() == y.amount()
            && x.date() == y.date()
    });
    true
}
