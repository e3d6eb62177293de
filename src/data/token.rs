use secrecy::{ExposeSecret, SecretString};

use super::{redacted_kind, sealed, stored_text, text_codec, InvalidData, Kind, Plaintext, Reason};

/// An opaque token from the payment processor that stands for a card.
///
/// The policy's processors "encrypt all the customer's personal information
/// before it is sent to us": the vendor never sees a card number, so this crate
/// has no card-number type (R1). A token is 1 to 255 visible ASCII characters.
///
/// ```
/// use privacy_pledge::data::PaymentToken;
///
/// let t = PaymentToken::parse("tok_1NX2bq2eZvKYlo2C")?;
/// assert_eq!(t.to_string(), "[redacted]");
/// assert!(PaymentToken::parse("tok with spaces").is_err());
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
///
/// # A card number is not a token
///
/// [`parse`](Self::parse) refuses input with the shape of a card number,
/// with [`Reason::CardNumber`], whose message names R1:
///
/// - 13 to 19 digits that pass the Luhn check (the check digit of every
///   card number);
/// - written together or in groups separated by spaces, hyphens, dots,
///   underscores, slashes or any other ASCII punctuation (runs of them
///   too), or Unicode spaces and dashes, as a number is copied from a form
///   or a receipt (`4242 4242 4242 4242`, `4242-4242-4242-4242`,
///   `4242.4242.4242.4242`);
/// - anywhere in the token, not only as the whole of it: `tok_4242424242424242`
///   and `4242 4242 4242 4242 12/25` are refused too. A number is set off
///   from letters by a separator or an end of the token; the digit groups
///   between two letters are checked in every run of consecutive groups
///   holding 13 to 19 digits, so a number followed by an expiry date or
///   preceded by a prefix is found.
///
/// Digits that fail the Luhn check are accepted: no issuer gives out such a
/// card number, and processors do use long numeric references
/// (`4242424242424241` is accepted). So are digits glued to letters
/// (`tok4242424242424242`, the digits of a hex id: part of a word, not a
/// written number), a token in the canonical UUID form (8-4-4-4-12 hex
/// digits, as some processors issue them), and a number otherwise encoded.
/// The check keeps a card number *as people and payment forms write it* out
/// of the crate; hiding one on purpose is a breach of the policy by the
/// host that no parser can detect. Real processor tokens (`tok_…`, `pm_…`,
/// `card_…`, `src_…`, UUIDs) pass. Tokens sealed before this check was
/// added still open: the check is made when a token is parsed.
///
/// ```
/// use privacy_pledge::data::{PaymentToken, Reason};
///
/// for card in ["4242424242424242", "4242 4242 4242 4242", "5555-5555-5555-4444",
///              "378282246310005", "tok_4242424242424242"] {
///     let e = PaymentToken::parse(card).unwrap_err();
///     assert_eq!(e.reason(), Reason::CardNumber);
///     assert!(e.to_string().contains("R1"));
///     assert!(!e.to_string().contains("4242")); // never the input
/// }
/// assert!(PaymentToken::parse("pm_1NX2bq2eZvKYlo2C4242").is_ok());
/// assert!(PaymentToken::parse("4242424242424241").is_ok()); // fails the Luhn check
/// ```
#[derive(Clone)]
pub struct PaymentToken {
    text: SecretString,
}

const KIND: Kind = Kind::PaymentToken;

impl PaymentToken {
    /// Validates and takes a processor token: 1 to 255 visible ASCII
    /// characters (after trimming), and not a card number (see
    /// [above](Self#a-card-number-is-not-a-token)).
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        let s = input.trim();
        if s.is_empty() {
            return Err(InvalidData::new(KIND, Reason::Empty));
        }
        if s.len() > 255 {
            return Err(InvalidData::new(KIND, Reason::TooLong { max: 255 }));
        }
        // Before the character check, so that a number written with spaces
        // is refused for what it is.
        if holds_card_number(s) {
            return Err(InvalidData::new(KIND, Reason::CardNumber));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidData::new(KIND, Reason::InvalidCharacter));
        }
        Ok(PaymentToken {
            text: SecretString::from(s),
        })
    }
}

/// The most digits a card number has (ISO/IEC 7812).
const MAX_DIGITS: usize = 19;
/// The fewest digits a card number has in use today.
const MIN_DIGITS: usize = 13;

/// Whether a character may stand between the digit groups of a written
/// number: ASCII punctuation and white space, Unicode white space and the
/// Unicode dashes.
fn is_separator(c: char) -> bool {
    c.is_ascii_punctuation()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}' | '\u{ff0d}'
        )
}

/// Whether `s` holds 13 to 19 digits passing the Luhn check, in consecutive
/// digit groups between separators, set off from any letter (or other
/// character that is neither a digit nor a separator) by a separator or an
/// end of `s`.
///
/// A digit group glued to a letter (`tok4242…`, the digits of a hex id) is
/// part of a word, not a written number, and is left out.
///
/// `s` is at most 255 bytes (checked before), and each start group is
/// extended by at most 19 digits: linear work.
fn holds_card_number(s: &str) -> bool {
    if is_uuid(s) {
        return false;
    }
    // The digit groups of the current stretch without letters, as (start,
    // end) byte offsets into `s`.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut found = false;
    // The open group: its start, and whether a letter is right before it.
    let mut open: Option<(usize, bool)> = None;
    let mut after_letter = false;
    for (i, c) in s.char_indices() {
        if c.is_ascii_digit() {
            open.get_or_insert((i, after_letter));
            continue;
        }
        let separator = is_separator(c);
        if let Some((start, glued)) = open.take() {
            if !glued && separator {
                groups.push((start, i));
            }
        }
        if !separator {
            found |= stretch_holds_card_number(s.as_bytes(), &groups);
            groups.clear();
        }
        after_letter = !separator;
    }
    if let Some((start, glued)) = open {
        if !glued {
            groups.push((start, s.len()));
        }
    }
    found || stretch_holds_card_number(s.as_bytes(), &groups)
}

/// Whether `s` is a UUID in its canonical text form (8-4-4-4-12 hex
/// digits), as some processors issue tokens. No section holds 13 digits, and
/// nobody writes a card number in groups of 8, 4 and 4.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether a run of consecutive `groups` of one stretch holds 13 to 19
/// digits that pass the Luhn check.
fn stretch_holds_card_number(bytes: &[u8], groups: &[(usize, usize)]) -> bool {
    let mut digits = [0u8; MAX_DIGITS];
    for first in 0..groups.len() {
        let mut n = 0;
        for &(start, end) in &groups[first..] {
            if n + (end - start) > MAX_DIGITS {
                break;
            }
            for &b in &bytes[start..end] {
                digits[n] = b - b'0';
                n += 1;
            }
            if n >= MIN_DIGITS && luhn(&digits[..n]) {
                return true;
            }
        }
    }
    false
}

/// The Luhn (mod 10) check over `digits`, most significant first.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl ExposeSecret<str> for PaymentToken {
    fn expose_secret(&self) -> &str {
        self.text.expose_secret()
    }
}

impl sealed::Sealed for PaymentToken {
    text_codec!(text);

    fn decode(bytes: &[u8], _: super::Token) -> Result<Self, InvalidData> {
        stored_text(KIND, bytes).map(|s| PaymentToken {
            text: SecretString::from(s),
        })
    }

    fn decode_owned(bytes: Plaintext) -> Result<Self, InvalidData> {
        bytes.into_stored_text(KIND).map(|t| PaymentToken {
            text: t.into_secret(),
        })
    }

    fn normalized_into(&self, out: &mut super::WipedBuf) {
        out.extend_from_slice(self.text.expose_secret().as_bytes());
    }
}

redacted_kind!(PaymentToken);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_of_known_numbers() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        for good in [
            "4242424242424242",
            "5555555555554444",
            "378282246310005",
            "79927398713",
        ] {
            assert!(luhn(&digits(good)), "{good}");
        }
        for bad in ["4242424242424241", "5555555555554443", "79927398710"] {
            assert!(!luhn(&digits(bad)), "{bad}");
        }
    }

    #[test]
    fn card_numbers_are_found_where_they_are_written() {
        for s in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "4242.4242.4242.4242",
            "4242_4242_4242_4242",
            "4242 - 4242 / 4242 , 4242",
            "4242\u{a0}4242\u{2013}4242\u{2009}4242",
            "tok_4242424242424242",
            "x_4242424242424242-y",
            "4242 4242 4242 4242 12/25 123",
            "exp 12/25 4242424242424242",
            "0004242424242424242", // leading zeros do not change the check
            "6011111111111117",
            "3530111333300000",
            "4000056655665556",
            "4222222222222", // 13 digits
        ] {
            assert!(holds_card_number(s), "{s:?}");
        }
        for s in [
            "tok_1NX2bq2eZvKYlo2C",
            "pm_1NirD82eZvKYlo2C",
            "tok_visa_4242",
            "4242424242424241",
            "424242424242",         // 12 digits
            "42424242424242424242", // 20 digits, one group, fails
            "4242a4242b4242c4242",
            "tok4242424242424242", // glued to letters: part of a word
            "4242424242424242xy",
            "ab4242 4242 4242 4242",
            "",
        ] {
            assert!(!holds_card_number(s), "{s:?}");
        }
    }

    #[test]
    fn random_processor_tokens_pass() {
        // Base62 like Stripe's ids, and UUIDs as other processors issue:
        // a fixed sequence of pseudo-random tokens (xorshift), none refused.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut refused_uuids = 0;
        let mut refused_hex = 0;
        for _ in 0..10_000 {
            let id: String = (0..24)
                .map(|_| B62[(next() % 62) as usize] as char)
                .collect();
            assert!(!holds_card_number(&format!("tok_{id}")), "{id}");
            let hex: String = (0..32)
                .map(|_| char::from_digit((next() % 16) as u32, 16).unwrap())
                .collect();
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            refused_uuids += usize::from(holds_card_number(&uuid));
            refused_hex += usize::from(holds_card_number(&hex));
        }
        // Without the exemption of the UUID form, about 1 in 8,000 random
        // UUIDs has sections of decimal digits alone, joined by hyphens,
        // that pass the check (24 of 200,000 in one run).
        assert_eq!(refused_uuids, 0);
        // A hex id's digit runs are glued to its letters.
        assert_eq!(refused_hex, 0);
    }
}
