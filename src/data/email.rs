use secrecy::{ExposeSecret, SecretString};

use super::{redacted_kind, sealed, stored_str, text_codec, InvalidData, Kind, Plaintext, Reason};

/// An email address, validated on [`parse`](Self::parse).
///
/// Accepted: the practical subset of RFC 5321/5322 that mail systems deliver
/// to — `local@domain` where the local part is a dot-atom of at most 64 bytes,
/// the domain is a host name of at least two labels (each 1–63 letters, digits
/// or inner hyphens, the last not all digits), and the whole is at most 254
/// bytes. Refused explicitly: quoted local parts, address literals
/// (`user@[192.0.2.1]`) and non-ASCII text; internationalised domains are
/// accepted in their A-label form (`xn--…`).
///
/// Two addresses are equal when they are equal ignoring ASCII case, which is
/// also how [`Pseudonym`](crate::Pseudonym)s normalise them.
///
/// ```
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::ExposeSecret;
///
/// let a = EmailAddress::parse(" Ada.Lovelace+orders@example.co.uk ")?;
/// assert_eq!(a.local_part(), "Ada.Lovelace+orders");
/// assert_eq!(a.domain(), "example.co.uk");
/// assert_eq!(a.expose_secret(), "Ada.Lovelace+orders@example.co.uk");
/// assert_eq!(a, EmailAddress::parse("ada.lovelace+orders@EXAMPLE.co.uk")?);
///
/// assert!(EmailAddress::parse("ada@localhost").is_err());
/// assert!(EmailAddress::parse("ada..lovelace@example.com").is_err());
/// assert!(EmailAddress::parse("ada@bücher.example").is_err());
/// assert!(EmailAddress::parse("ada@xn--bcher-kva.example").is_ok());
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone)]
pub struct EmailAddress {
    text: SecretString,
    at: usize,
}

const KIND: Kind = Kind::EmailAddress;
const MAX_LEN: usize = 254;
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

fn err(reason: Reason) -> InvalidData {
    InvalidData::new(KIND, reason)
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn check_local(local: &str) -> Result<(), InvalidData> {
    if local.starts_with('"') {
        return Err(err(Reason::Unsupported));
    }
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err(err(Reason::InvalidLocalPart));
    }
    let ok = local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    if ok {
        Ok(())
    } else {
        Err(err(Reason::InvalidLocalPart))
    }
}

fn check_domain(domain: &str) -> Result<(), InvalidData> {
    if domain.starts_with('[') {
        return Err(err(Reason::Unsupported));
    }
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return Err(err(Reason::InvalidDomain));
    }
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-';
        if !ok {
            return Err(err(Reason::InvalidDomain));
        }
        labels += 1;
        last = label;
    }
    if labels < 2 || last.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err(Reason::InvalidDomain));
    }
    Ok(())
}

impl EmailAddress {
    /// Validates and takes an email address. White space around it is trimmed.
    ///
    /// The error says why, never what: it does not contain the input.
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        let s = input.trim();
        if s.is_empty() {
            return Err(err(Reason::Empty));
        }
        if s.len() > MAX_LEN {
            return Err(err(Reason::TooLong { max: MAX_LEN }));
        }
        if !s.is_ascii() {
            return Err(err(Reason::NonAscii));
        }
        if s.bytes().any(|b| b.is_ascii_control()) {
            return Err(err(Reason::ControlCharacter));
        }
        let at = s.rfind('@').ok_or(err(Reason::MissingAt))?;
        check_local(&s[..at])?;
        check_domain(&s[at + 1..])?;
        Ok(EmailAddress {
            text: SecretString::from(s),
            at,
        })
    }

    /// The part after `@`, as given.
    pub fn domain(&self) -> &str {
        let t = self.text.expose_secret();
        t.get(self.at + 1..).unwrap_or("")
    }

    /// The part before `@`, as given.
    pub fn local_part(&self) -> &str {
        let t = self.text.expose_secret();
        t.get(..self.at).unwrap_or("")
    }
}

impl ExposeSecret<str> for EmailAddress {
    fn expose_secret(&self) -> &str {
        self.text.expose_secret()
    }
}

/// Where the last `@` of a stored form is (as `rfind('@')`, without the
/// generic searcher's set-up cost on a short string; a UTF-8 continuation
/// byte is never `@`).
fn last_at(s: &str) -> Result<usize, InvalidData> {
    s.bytes()
        .rposition(|b| b == b'@')
        .ok_or(err(Reason::Malformed))
}

impl sealed::Sealed for EmailAddress {
    text_codec!(text);

    fn decode(bytes: &[u8], _: super::Token) -> Result<Self, InvalidData> {
        // Authenticated bytes that this crate encoded from a parsed value: a
        // light structural check is enough, and keeps `open` fast.
        let s = stored_str(KIND, bytes)?;
        Ok(EmailAddress {
            at: last_at(s)?,
            text: SecretString::from(s),
        })
    }

    fn decode_owned(bytes: Plaintext) -> Result<Self, InvalidData> {
        // The plaintext's own buffer becomes the value's text: no copy.
        let text = bytes.into_text(KIND)?;
        Ok(EmailAddress {
            at: last_at(text.as_str())?,
            text: text.into_secret(),
        })
    }

    fn normalized_into(&self, out: &mut super::WipedBuf) {
        let text = self.text.expose_secret().as_bytes();
        out.reserved(text.len())
            .extend(text.iter().map(u8::to_ascii_lowercase));
    }
}

redacted_kind!(EmailAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_practical_addresses() {
        for ok in [
            "a@b.co",
            "ada@example.com",
            "first.last@sub.example.org",
            "x+tag@example.io",
            "o'brien@example.ie",
            "user@xn--bcher-kva.example",
            "a@1.example",
            &format!("{}@example.com", "a".repeat(64)),
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_with_reasons() {
        let cases: &[(&str, Reason)] = &[
            ("", Reason::Empty),
            ("plain", Reason::MissingAt),
            ("@example.com", Reason::InvalidLocalPart),
            (".a@example.com", Reason::InvalidLocalPart),
            ("a.@example.com", Reason::InvalidLocalPart),
            ("a..b@example.com", Reason::InvalidLocalPart),
            ("a b@example.com", Reason::InvalidLocalPart),
            ("a@b@example.com", Reason::InvalidLocalPart),
            ("\"a b\"@example.com", Reason::Unsupported),
            ("a@[192.0.2.1]", Reason::Unsupported),
            ("a@localhost", Reason::InvalidDomain),
            ("a@-x.com", Reason::InvalidDomain),
            ("a@x-.com", Reason::InvalidDomain),
            ("a@x..com", Reason::InvalidDomain),
            ("a@example.123", Reason::InvalidDomain),
            ("a@", Reason::InvalidDomain),
            ("ä@example.com", Reason::NonAscii),
            ("a@exämple.com", Reason::NonAscii),
            ("a\u{7}@example.com", Reason::ControlCharacter),
        ];
        for (input, reason) in cases {
            let e = EmailAddress::parse(input).unwrap_err();
            assert_eq!(e.reason(), *reason, "{input:?}");
            assert_eq!(e.kind(), Kind::EmailAddress);
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(
            EmailAddress::parse(&long_local).unwrap_err().reason(),
            Reason::InvalidLocalPart
        );
        let long = format!("a@{}.com", "b".repeat(260));
        assert_eq!(
            EmailAddress::parse(&long).unwrap_err().reason(),
            Reason::TooLong { max: 254 }
        );
        let long_label = format!("a@{}.com", "b".repeat(64));
        assert_eq!(
            EmailAddress::parse(&long_label).unwrap_err().reason(),
            Reason::InvalidDomain
        );
    }

    #[test]
    fn codec_round_trip() {
        use sealed::Sealed;
        let a = EmailAddress::parse("Ada@Example.com").unwrap();
        let mut buf = Vec::new();
        a.encode_into(&mut buf);
        let b = EmailAddress::decode(&buf, crate::data::Token(())).unwrap();
        assert_eq!(b.expose_secret(), "Ada@Example.com");
        assert_eq!(b.domain(), "Example.com");
        assert!(EmailAddress::decode(&[0xff, 0x40], crate::data::Token(())).is_err());
        assert!(EmailAddress::decode(b"noat", crate::data::Token(())).is_err());
    }
}
