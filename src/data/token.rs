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
#[derive(Clone)]
pub struct PaymentToken {
    text: SecretString,
}

const KIND: Kind = Kind::PaymentToken;

impl PaymentToken {
    /// Validates and takes a processor token.
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        let s = input.trim();
        if s.is_empty() {
            return Err(InvalidData::new(KIND, Reason::Empty));
        }
        if s.len() > 255 {
            return Err(InvalidData::new(KIND, Reason::TooLong { max: 255 }));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidData::new(KIND, Reason::InvalidCharacter));
        }
        Ok(PaymentToken {
            text: SecretString::from(s),
        })
    }
}

impl ExposeSecret<str> for PaymentToken {
    fn expose_secret(&self) -> &str {
        self.text.expose_secret()
    }
}

impl sealed::Sealed for PaymentToken {
    text_codec!(text);

    fn decode(bytes: &[u8]) -> Result<Self, InvalidData> {
        stored_text(KIND, bytes).map(|s| PaymentToken {
            text: SecretString::from(s),
        })
    }

    fn decode_owned(bytes: Plaintext) -> Result<Self, InvalidData> {
        bytes.into_stored_text(KIND).map(|t| PaymentToken {
            text: t.into_secret(),
        })
    }

    fn normalized_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.text.expose_secret().as_bytes());
    }
}

redacted_kind!(PaymentToken);
