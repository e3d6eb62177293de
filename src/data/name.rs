use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization as _;
use zeroize::Zeroizing;

use super::{
    clean_text, fold, redacted_kind, sealed, stored_text, text_codec, InvalidData, Kind, Plaintext,
    Reason,
};

/// A person's full name, as they wrote it.
///
/// [`parse`](Self::parse) trims white space and refuses an empty name, a name
/// over [`MAX_CHARS`](Self::MAX_CHARS) characters, control characters and
/// invisible format characters (zero-width spaces and joiners, the soft
/// hyphen, bidirectional controls: [`Reason::InvisibleCharacter`]). Nothing
/// else is assumed about names: any script, any number of parts.
///
/// The name is kept in Unicode normalisation form C (NFC), so a name typed
/// with composed letters and the same name typed with combining marks are
/// stored, sealed and shown as the same text. Two names are equal, and get
/// the same pseudonym, when they match caselessly: after NFC and full Unicode
/// case folding, with runs of white space counted as one space (`Straße` and
/// `STRASSE` are equal). The comparison is in constant time over that form.
///
/// ```
/// use privacy_pledge::data::{FullName, Reason};
/// use privacy_pledge::ExposeSecret;
///
/// let n = FullName::parse("  Ada King, Countess of Lovelace ")?;
/// assert_eq!(n.expose_secret(), "Ada King, Countess of Lovelace");
/// assert!(FullName::parse(" \t ").is_err());
/// assert_eq!(FullName::parse("Zoë Ñúñez")?, FullName::parse("ZOË  ÑÚÑEZ")?);
///
/// // "e" + U+0308 COMBINING DIAERESIS is kept as "ë" (U+00EB).
/// let decomposed = FullName::parse("Zoe\u{308} Stra\u{df}e")?;
/// assert_eq!(decomposed.expose_secret(), "Zo\u{eb} Stra\u{df}e");
/// assert_eq!(decomposed, FullName::parse("ZOË STRASSE")?);
///
/// let hidden = FullName::parse("Ada\u{200b}Lovelace").unwrap_err();
/// assert_eq!(hidden.reason(), Reason::InvisibleCharacter);
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone)]
pub struct FullName {
    text: SecretString,
}

const KIND: Kind = Kind::FullName;

impl FullName {
    /// The longest name accepted, in characters (of its NFC form).
    pub const MAX_CHARS: usize = 256;

    /// Validates and takes a full name, kept in NFC.
    pub fn parse(input: &str) -> Result<Self, InvalidData> {
        let input = input.trim();
        // A bound on the input before normalising it: no spelling of a name
        // of MAX_CHARS characters in NFC takes more than 12 bytes a character
        // (a Hangul syllable written as three jamo takes 9).
        if input.len() > Self::MAX_CHARS * 12 {
            return Err(InvalidData::new(
                KIND,
                Reason::TooLong {
                    max: Self::MAX_CHARS,
                },
            ));
        }
        // NFC is at most three times as long as its input in UTF-8 bytes
        // (UAX #15 §9): the buffer never grows, so no copy is left unwiped.
        let mut nfc = Zeroizing::new(String::with_capacity(input.len() * 3));
        nfc.extend(input.nfc());
        clean_text(KIND, &nfc, Self::MAX_CHARS, false).map(|s| FullName {
            text: SecretString::from(s),
        })
    }
}

impl ExposeSecret<str> for FullName {
    /// The name as given, trimmed and in NFC.
    fn expose_secret(&self) -> &str {
        self.text.expose_secret()
    }
}

impl sealed::Sealed for FullName {
    text_codec!(text);

    fn decode(bytes: &[u8], _: super::Token) -> Result<Self, InvalidData> {
        stored_text(KIND, bytes).map(|s| FullName {
            text: SecretString::from(s),
        })
    }

    fn decode_owned(bytes: Plaintext) -> Result<Self, InvalidData> {
        bytes.into_stored_text(KIND).map(|t| FullName {
            text: t.into_secret(),
        })
    }

    fn normalized_into(&self, out: &mut super::WipedBuf) {
        fold(self.text.expose_secret(), out);
    }
}

redacted_kind!(FullName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_storage_and_caseless_equality() {
        let composed = FullName::parse("Zo\u{eb}").unwrap();
        let decomposed = FullName::parse("Zoe\u{308}").unwrap();
        assert_eq!(decomposed.expose_secret(), "Zo\u{eb}");
        assert_eq!(composed, decomposed);
        let mut a = crate::data::WipedBuf::default();
        let mut b = crate::data::WipedBuf::default();
        sealed::Sealed::normalized_into(&composed, &mut a);
        sealed::Sealed::normalized_into(&decomposed, &mut b);
        assert_eq!(a.as_slice(), "zo\u{eb}".as_bytes());
        assert_eq!(a.as_slice(), b.as_slice());
        assert_eq!(
            FullName::parse("Straße").unwrap(),
            FullName::parse("STRASSE").unwrap()
        );
        assert_ne!(
            FullName::parse("Zoë").unwrap(),
            FullName::parse("Zoe").unwrap()
        );
    }

    #[test]
    fn invisible_characters_refused() {
        for c in [
            '\u{200b}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{e0041}',
        ] {
            let text = format!("Ada{c}Lovelace");
            assert_eq!(
                FullName::parse(&text).unwrap_err().reason(),
                Reason::InvisibleCharacter,
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn length_counts_nfc_characters() {
        // 256 letters, each written decomposed (two characters): accepted.
        let long: String = "e\u{301}".repeat(FullName::MAX_CHARS);
        let n = FullName::parse(&long).unwrap();
        assert_eq!(n.expose_secret().chars().count(), FullName::MAX_CHARS);
        let longer: String = "e\u{301}".repeat(FullName::MAX_CHARS + 1);
        assert_eq!(
            FullName::parse(&longer).unwrap_err().reason(),
            Reason::TooLong { max: 256 }
        );
        let huge = "a".repeat(FullName::MAX_CHARS * 12 + 1);
        assert_eq!(
            FullName::parse(&huge).unwrap_err().reason(),
            Reason::TooLong { max: 256 }
        );
    }
}
