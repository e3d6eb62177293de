use secrecy::{ExposeSecret, SecretString};

use super::{redacted_kind, sealed, stored_text, text_codec, InvalidData, Kind, Reason};

/// A phone number in international (E.164) form.
///
/// [`parse`](Self::parse) accepts `+` followed by 8 to 15 digits, the first not
/// `0`, with spaces, dashes, dots, slashes and brackets between digits ignored;
/// the value is kept normalised (`+442079460958`). Numbers without the `+` and
/// country code are refused, since the policy's customers live in many
/// countries and a national number is ambiguous.
///
/// ```
/// use privacy_pledge::data::PhoneNumber;
/// use privacy_pledge::ExposeSecret;
///
/// let p = PhoneNumber::parse("+1 (415) 555-0132")?;
/// assert_eq!(p.expose_secret(), "+14155550132");
/// assert!(PhoneNumber::parse("415 555 0132").is_err());
/// assert!(PhoneNumber::parse("+1 234").is_err());
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone)]
pub struct PhoneNumber {
    e164: SecretString,
}

const KIND: Kind = Kind::PhoneNumber;

fn err(reason: Reason) -> InvalidData {
    InvalidData::new(KIND, reason)
}

fn normalise(input: &str) -> Result<String, InvalidData> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(Reason::Empty));
    }
    if s.len() > 64 {
        return Err(err(Reason::TooLong { max: 64 }));
    }
    let rest = s.strip_prefix('+').ok_or(err(Reason::MissingPlus))?;
    let mut out = String::with_capacity(16);
    out.push('+');
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            _ => return Err(err(Reason::InvalidCharacter)),
        }
    }
    let digits = out.len() - 1;
    if !(8..=15).contains(&digits) || out.as_bytes()[1] == b'0' {
        return Err(err(Reason::DigitCount));
    }
    Ok(out)
}

impl PhoneNumber {
    /// Validates and normalises a phone number in international form.
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        normalise(input).map(|n| PhoneNumber {
            e164: SecretString::from(n),
        })
    }
}

impl ExposeSecret<str> for PhoneNumber {
    /// The normalised E.164 form, `+` and digits.
    fn expose_secret(&self) -> &str {
        self.e164.expose_secret()
    }
}

impl sealed::Sealed for PhoneNumber {
    text_codec!(e164);

    fn decode(bytes: &[u8]) -> Result<Self, InvalidData> {
        match stored_text(KIND, bytes)? {
            s if s.starts_with('+') => Ok(PhoneNumber {
                e164: SecretString::from(s),
            }),
            _ => Err(err(Reason::Malformed)),
        }
    }

    fn normalized_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.e164.expose_secret().as_bytes());
    }
}

redacted_kind!(PhoneNumber);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(
            PhoneNumber::parse("+49 30 1234-5678")
                .unwrap()
                .expose_secret(),
            "+493012345678"
        );
        let cases: &[(&str, Reason)] = &[
            ("", Reason::Empty),
            ("0049301234567", Reason::MissingPlus),
            ("+49 30 CALL ME", Reason::InvalidCharacter),
            ("+1234567", Reason::DigitCount),
            ("+1234567890123456", Reason::DigitCount),
            ("+0123456789", Reason::DigitCount),
            ("+", Reason::DigitCount),
        ];
        for (input, reason) in cases {
            assert_eq!(
                PhoneNumber::parse(input).unwrap_err().reason(),
                *reason,
                "{input}"
            );
        }
        assert!(PhoneNumber::parse("+12345678").is_ok());
        assert!(PhoneNumber::parse("+123456789012345").is_ok());
    }
}
