use secrecy::{ExposeSecret, SecretString};

use super::{clean_text, fold, redacted_kind, sealed, stored_text, text_codec, InvalidData, Kind};

/// A person's full name, as they wrote it.
///
/// [`parse`](Self::parse) trims white space and refuses an empty name, a name
/// over [`MAX_CHARS`](Self::MAX_CHARS) characters, and control characters.
/// Nothing else is assumed about names: any script, any number of parts.
///
/// ```
/// use privacy_pledge::data::FullName;
/// use privacy_pledge::ExposeSecret;
///
/// let n = FullName::parse("  Ada King, Countess of Lovelace ")?;
/// assert_eq!(n.expose_secret(), "Ada King, Countess of Lovelace");
/// assert!(FullName::parse(" \t ").is_err());
/// assert_eq!(FullName::parse("Zoë Ñúñez")?, FullName::parse("ZOË  ÑÚÑEZ")?);
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone)]
pub struct FullName {
    text: SecretString,
}

const KIND: Kind = Kind::FullName;

impl FullName {
    /// The longest name accepted, in characters.
    pub const MAX_CHARS: usize = 256;

    /// Validates and takes a full name.
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        clean_text(KIND, input, Self::MAX_CHARS, false).map(|s| FullName {
            text: SecretString::from(s),
        })
    }
}

impl ExposeSecret<str> for FullName {
    fn expose_secret(&self) -> &str {
        self.text.expose_secret()
    }
}

impl sealed::Sealed for FullName {
    text_codec!(text);

    fn decode(bytes: &[u8]) -> Result<Self, InvalidData> {
        stored_text(KIND, bytes).map(|s| FullName {
            text: SecretString::from(s),
        })
    }

    fn normalized_into(&self, out: &mut Vec<u8>) {
        fold(self.text.expose_secret(), out);
    }
}

redacted_kind!(FullName);
