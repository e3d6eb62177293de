use secrecy::{ExposeSecret, SecretString};

use super::{clean_text, fold, redacted_kind, sealed, stored_text, InvalidData, Kind, Reason};
use crate::country::Country;

/// A mailing address: one or more address lines and a country.
///
/// [`parse`](Self::parse) takes the address as it would be written on an
/// envelope, one line per line, with the ISO 3166-1 alpha-2 country code as the
/// last line. Blank lines and white space around lines are dropped. At least
/// one address line is required, at most [`MAX_LINES`](Self::MAX_LINES) lines of
/// at most [`MAX_LINE_CHARS`](Self::MAX_LINE_CHARS) characters each.
///
/// ```
/// use privacy_pledge::data::PostalAddress;
///
/// let a = PostalAddress::parse("221B Baker Street\nLondon NW1 6XE\nGB")?;
/// assert_eq!(a.country().code(), "GB");
/// assert_eq!(a.lines().count(), 2);
/// assert!(PostalAddress::parse("GB").is_err());
/// assert!(PostalAddress::parse("221B Baker Street\nEngland").is_err());
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone)]
pub struct PostalAddress {
    /// Address lines joined with `\n` (without the country line).
    lines: SecretString,
    country: Country,
}

const KIND: Kind = Kind::PostalAddress;

fn err(reason: Reason) -> InvalidData {
    InvalidData::new(KIND, reason)
}

impl PostalAddress {
    /// Most lines accepted, country line included.
    pub const MAX_LINES: usize = 8;
    /// Longest line accepted, in characters.
    pub const MAX_LINE_CHARS: usize = 128;

    /// Validates and takes an address: lines, then the country code on the last line.
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        let mut lines = Vec::new();
        for line in input.split('\n') {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            lines.push(clean_text(KIND, line, Self::MAX_LINE_CHARS, false)?);
        }
        if lines.len() > Self::MAX_LINES {
            return Err(err(Reason::TooLong {
                max: Self::MAX_LINES,
            }));
        }
        let (country, street) = lines.split_last().ok_or(err(Reason::Empty))?;
        if street.is_empty() {
            return Err(err(Reason::MissingLines));
        }
        let country = Country::parse(country).map_err(|_| err(Reason::InvalidCountry))?;
        Ok(PostalAddress {
            lines: SecretString::from(street.join("\n")),
            country,
        })
    }

    /// Builds an address from its lines and country.
    pub fn new<'a>(
        lines: impl IntoIterator<Item = &'a str>,
        country: Country,
    ) -> Result<Self, InvalidData> {
        let mut text = String::new();
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(country.code());
        let parsed = Self::parse(&text);
        zeroize::Zeroize::zeroize(&mut text);
        parsed
    }

    /// The address lines, without the country.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.expose_secret().split('\n')
    }

    /// The country.
    pub fn country(&self) -> Country {
        self.country
    }
}

impl ExposeSecret<str> for PostalAddress {
    /// The address lines joined with `\n`, without the country.
    fn expose_secret(&self) -> &str {
        self.lines.expose_secret()
    }
}

impl sealed::Sealed for PostalAddress {
    fn encoded_len(&self) -> usize {
        self.lines.expose_secret().len() + 3
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.lines.expose_secret().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.country.code().as_bytes());
    }

    fn decode(bytes: &[u8], _: super::Token) -> Result<Self, InvalidData> {
        let s = stored_text(KIND, bytes)?;
        let (lines, country) = s.rsplit_once('\n').ok_or(err(Reason::Malformed))?;
        let country = Country::parse(country).map_err(|_| err(Reason::Malformed))?;
        if lines.is_empty() {
            return Err(err(Reason::Malformed));
        }
        Ok(PostalAddress {
            lines: SecretString::from(lines),
            country,
        })
    }

    fn normalized_into(&self, out: &mut super::WipedBuf) {
        fold(self.lines.expose_secret(), out);
        out.push(b'\n');
        out.extend_from_slice(self.country.code().as_bytes());
    }

    fn report_into(&self, out: &mut String) {
        for line in self.lines() {
            out.push_str(line);
            out.push_str(", ");
        }
        out.push_str(self.country.code());
    }
}

redacted_kind!(PostalAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        let a = PostalAddress::parse("\n  1 Main St \n\n Springfield 12345\n US \n").unwrap();
        assert_eq!(
            a.lines().collect::<Vec<_>>(),
            ["1 Main St", "Springfield 12345"]
        );
        assert_eq!(a.country().code(), "US");
        let cases: &[(&str, Reason)] = &[
            ("", Reason::Empty),
            ("US", Reason::MissingLines),
            ("1 Main St\nUSA", Reason::InvalidCountry),
            ("1 Main St\tx\nUS", Reason::ControlCharacter),
            ("a\nb\nc\nd\ne\nf\ng\nh\nUS", Reason::TooLong { max: 8 }),
        ];
        for (input, reason) in cases {
            assert_eq!(
                PostalAddress::parse(input).unwrap_err().reason(),
                *reason,
                "{input:?}"
            );
        }
    }

    #[test]
    fn new_matches_parse() {
        let us = Country::parse("US").unwrap();
        let a = PostalAddress::new(["1 Main St", "Springfield"], us).unwrap();
        assert_eq!(
            a,
            PostalAddress::parse("1 Main St\nSpringfield\nUS").unwrap()
        );
    }
}
