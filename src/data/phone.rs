use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{redacted_kind, sealed, stored_text, text_codec, InvalidData, Kind, Plaintext, Reason};

/// A phone number in international (E.164) form.
///
/// [`parse`](Self::parse) accepts `+`, a country calling code assigned in
/// ITU-T E.164, and a national significant number of a length possible for
/// that code (at most 15 digits in all), with spaces, dashes, dots, slashes
/// and brackets between digits ignored; the value is kept normalised
/// (`+442079460958`). Numbers without the `+` and country code are refused,
/// since the policy's customers live in many countries and a national number
/// is ambiguous.
///
/// A trunk prefix written as `(0)` right after the country code, as in
/// `+44 (0)20 7946 0958`, is dropped: it is dialled only from inside the
/// country and is not part of the number. Where dropping it could change the
/// number, the input is refused ([`Reason::TrunkPrefix`]): a `(0)` anywhere
/// else, more than one, or after a code whose countries have no trunk prefix
/// `0` (in Italy, `+39`, the `0` of `06` belongs to the number). Other zeros
/// are digits like any other and are kept.
///
/// Lengths are checked against a table of the country calling codes in
/// service, each with the shortest and longest national significant number
/// any of its countries uses (taken from the metadata of Google's
/// libphonenumber, release 9.0.35). Whether a number is actually assigned is
/// not checked.
///
/// ```
/// use privacy_pledge::data::{PhoneNumber, Reason};
/// use privacy_pledge::ExposeSecret;
///
/// let p = PhoneNumber::parse("+1 (415) 555-0132")?;
/// assert_eq!(p.expose_secret(), "+14155550132");
/// let uk = PhoneNumber::parse("+44 (0) 20 7946 0958")?;
/// assert_eq!(uk.expose_secret(), "+442079460958");
/// let niue = PhoneNumber::parse("+683 4002")?;
/// assert_eq!(niue.expose_secret(), "+6834002");
///
/// assert!(PhoneNumber::parse("415 555 0132").is_err());
/// assert_eq!(PhoneNumber::parse("+1 234").unwrap_err().reason(), Reason::DigitCount);
/// assert_eq!(PhoneNumber::parse("+28 1234 5678").unwrap_err().reason(), Reason::UnknownCountryCode);
/// assert_eq!(PhoneNumber::parse("+39 (0)6 6982 1234").unwrap_err().reason(), Reason::TrunkPrefix);
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

/// The most digits an E.164 number has, country code included.
const MAX_DIGITS: usize = 15;

/// The ITU-T E.164 country calling codes in service, sorted (as text) for
/// binary search: `(code, min, max, trunk_zero)`.
///
/// `min` and `max` are the shortest and longest national significant number
/// (the digits after the country code) among all number types of all the
/// countries that share the code, from the `possibleLengths` of Google's
/// libphonenumber metadata (release 9.0.35), with `max` capped so the whole
/// number has at most 15 digits. A range may hold lengths no number of the
/// code has (`+44` has 7, 9 and 10, not 8): the check is for a plausible
/// length, not a valid number. `trunk_zero` is whether every country of
/// the code dials `0` before national numbers (its `nationalPrefix`), which
/// is when a `(0)` after the code can only be that prefix.
///
/// This table is a deliberate choice over depending on the `phonenumber`
/// crate: it is a few kilobytes, adds no dependency (that crate brings its
/// whole metadata, regexes and a build step), and length per country code is
/// all the validation this kind promises. Codes are prefix-free, so at most
/// one of a number's first one, two or three digits is in the table.
/// Assigned codes with no numbers in service (`+379`, `+388`, `+991`, …) and
/// spare codes are absent, and refused.
const CALLING_CODES: [(&str, u8, u8, bool); 215] = [
    // North America: libphonenumber also lists 7 digits, for Canada's 310-xxxx
    // service numbers, which are dialled locally, never in international form.
    ("1", 10, 10, false),   // US, CA and 23 more
    ("20", 8, 10, true),    // EG
    ("211", 9, 9, true),    // SS
    ("212", 9, 9, true),    // EH MA
    ("213", 8, 9, true),    // DZ
    ("216", 8, 8, false),   // TN
    ("218", 9, 9, true),    // LY
    ("220", 7, 7, false),   // GM
    ("221", 9, 9, false),   // SN
    ("222", 8, 8, false),   // MR
    ("223", 8, 8, false),   // ML
    ("224", 8, 9, false),   // GN
    ("225", 10, 10, false), // CI
    ("226", 8, 8, false),   // BF
    ("227", 8, 8, false),   // NE
    ("228", 8, 8, false),   // TG
    ("229", 8, 10, false),  // BJ
    ("230", 7, 10, false),  // MU
    ("231", 7, 9, true),    // LR
    ("232", 8, 8, true),    // SL
    ("233", 8, 9, true),    // GH
    ("234", 10, 12, true),  // NG
    ("235", 8, 8, false),   // TD
    ("236", 8, 8, false),   // CF
    ("237", 8, 9, false),   // CM
    ("238", 7, 7, false),   // CV
    ("239", 7, 7, false),   // ST
    ("240", 9, 9, false),   // GQ
    ("241", 7, 8, false),   // GA
    ("242", 9, 9, false),   // CG
    ("243", 7, 10, true),   // CD
    ("244", 9, 9, false),   // AO
    ("245", 7, 9, false),   // GW
    ("246", 7, 7, false),   // IO
    ("247", 5, 6, false),   // AC
    ("248", 7, 7, false),   // SC
    ("249", 9, 9, true),    // SD
    ("250", 8, 9, true),    // RW
    ("251", 9, 9, true),    // ET
    ("252", 6, 9, true),    // SO
    ("253", 8, 8, false),   // DJ
    ("254", 7, 10, true),   // KE
    ("255", 9, 9, true),    // TZ
    ("256", 9, 9, true),    // UG
    ("257", 8, 8, false),   // BI
    ("258", 8, 9, false),   // MZ
    ("260", 9, 9, true),    // ZM
    ("261", 9, 9, true),    // MG
    ("262", 9, 9, true),    // RE YT
    ("263", 5, 10, true),   // ZW
    ("264", 8, 9, true),    // NA
    ("265", 7, 9, true),    // MW
    ("266", 8, 8, false),   // LS
    ("267", 7, 10, false),  // BW
    ("268", 8, 9, false),   // SZ
    ("269", 7, 7, false),   // KM
    ("27", 5, 10, true),    // ZA
    ("290", 4, 5, false),   // SH TA
    ("291", 7, 7, true),    // ER
    ("297", 7, 7, false),   // AW
    ("298", 6, 6, false),   // FO
    ("299", 6, 6, false),   // GL
    ("30", 10, 12, false),  // GR
    ("31", 5, 11, true),    // NL
    ("32", 8, 9, true),     // BE
    ("33", 9, 9, true),     // FR
    ("34", 9, 9, false),    // ES
    ("350", 8, 8, false),   // GI
    ("351", 9, 9, false),   // PT
    ("352", 4, 11, false),  // LU
    ("353", 7, 10, true),   // IE
    ("354", 7, 9, false),   // IS
    ("355", 6, 9, true),    // AL
    ("356", 8, 8, false),   // MT
    ("357", 8, 8, false),   // CY
    ("358", 5, 12, true),   // AX FI
    ("359", 6, 12, true),   // BG
    ("36", 8, 9, false),    // HU
    ("370", 8, 8, true),    // LT
    ("371", 8, 8, false),   // LV
    ("372", 7, 10, false),  // EE
    ("373", 8, 8, true),    // MD
    ("374", 8, 8, true),    // AM
    ("375", 6, 11, false),  // BY
    ("376", 6, 9, false),   // AD
    ("377", 8, 9, true),    // MC
    ("378", 8, 10, false),  // SM
    ("380", 9, 10, true),   // UA
    ("381", 6, 12, true),   // RS
    ("382", 8, 9, true),    // ME
    ("383", 8, 12, true),   // XK
    ("385", 7, 9, true),    // HR
    ("386", 5, 8, true),    // SI
    ("387", 8, 9, true),    // BA
    ("389", 8, 8, true),    // MK
    ("39", 6, 12, false),   // IT VA
    ("40", 6, 9, true),     // RO
    ("41", 9, 12, true),    // CH
    ("420", 9, 12, false),  // CZ
    ("421", 6, 9, true),    // SK
    ("423", 7, 9, true),    // LI
    ("43", 4, 13, true),    // AT
    ("44", 7, 10, true),    // GB GG IM JE
    ("45", 8, 8, false),    // DK
    ("46", 6, 12, true),    // SE
    ("47", 5, 8, false),    // NO SJ
    ("48", 6, 10, false),   // PL
    ("49", 4, 13, true),    // DE
    ("500", 5, 5, false),   // FK
    ("501", 7, 11, false),  // BZ
    ("502", 8, 11, false),  // GT
    ("503", 7, 11, false),  // SV
    ("504", 8, 11, false),  // HN
    ("505", 8, 8, false),   // NI
    ("506", 8, 10, false),  // CR
    ("507", 7, 11, false),  // PA
    ("508", 6, 9, true),    // PM
    ("509", 8, 8, false),   // HT
    ("51", 8, 9, true),     // PE
    ("52", 10, 10, false),  // MX
    ("53", 6, 10, true),    // CU
    ("54", 10, 11, true),   // AR
    ("55", 8, 11, true),    // BR
    ("56", 9, 11, false),   // CL
    ("57", 8, 11, true),    // CO
    ("58", 10, 10, true),   // VE
    ("590", 9, 9, true),    // BL GP MF
    ("591", 8, 9, true),    // BO
    ("592", 7, 7, false),   // GY
    ("593", 8, 11, true),   // EC
    ("594", 9, 9, true),    // GF
    ("595", 6, 11, true),   // PY
    ("596", 9, 9, true),    // MQ
    ("597", 6, 7, false),   // SR
    ("598", 4, 12, true),   // UY
    ("599", 7, 8, false),   // BQ CW
    ("60", 8, 10, true),    // MY
    ("61", 5, 12, true),    // AU CC CX
    ("62", 7, 13, true),    // ID
    ("63", 6, 13, true),    // PH
    ("64", 5, 10, true),    // NZ
    ("65", 8, 11, false),   // SG
    ("66", 8, 13, true),    // TH
    ("670", 7, 8, false),   // TL
    ("672", 6, 6, false),   // NF
    ("673", 7, 7, false),   // BN
    ("674", 7, 7, false),   // NR
    ("675", 7, 8, false),   // PG
    ("676", 5, 7, false),   // TO
    ("677", 5, 7, false),   // SB
    ("678", 5, 7, false),   // VU
    ("679", 7, 11, false),  // FJ
    ("680", 7, 7, false),   // PW
    ("681", 6, 9, false),   // WF
    ("682", 5, 5, false),   // CK
    ("683", 4, 7, false),   // NU
    ("685", 5, 10, false),  // WS
    ("686", 5, 8, true),    // KI
    ("687", 6, 6, false),   // NC
    ("688", 5, 7, false),   // TV
    ("689", 6, 9, false),   // PF
    ("690", 4, 7, false),   // TK
    ("691", 7, 7, false),   // FM
    ("692", 7, 7, false),   // MH
    ("7", 10, 14, false),   // KZ RU
    ("800", 8, 8, false),   // non-geographic: international freephone
    ("808", 8, 8, false),   // non-geographic: shared cost
    ("81", 8, 13, true),    // JP
    ("82", 5, 13, true),    // KR
    ("84", 7, 10, true),    // VN
    ("850", 8, 10, true),   // KP
    ("852", 5, 11, false),  // HK
    ("853", 7, 8, false),   // MO
    ("855", 8, 10, true),   // KH
    ("856", 8, 10, true),   // LA
    ("86", 7, 12, true),    // CN
    ("870", 9, 12, false),  // non-geographic: Inmarsat
    ("878", 12, 12, false), // non-geographic: personal numbers
    ("880", 6, 10, true),   // BD
    ("881", 9, 10, false),  // non-geographic: satellite (GMSS)
    ("882", 7, 12, false),  // non-geographic: international networks
    ("883", 8, 12, false),  // non-geographic: international networks
    ("886", 7, 11, true),   // TW
    ("888", 11, 11, false), // non-geographic: humanitarian (OCHA)
    ("90", 7, 13, true),    // TR
    ("91", 8, 13, true),    // IN
    ("92", 8, 12, true),    // PK
    ("93", 9, 9, true),     // AF
    ("94", 9, 9, true),     // LK
    ("95", 6, 10, true),    // MM
    ("960", 7, 10, false),  // MV
    ("961", 7, 8, true),    // LB
    ("962", 8, 9, true),    // JO
    ("963", 8, 9, true),    // SY
    ("964", 8, 10, true),   // IQ
    ("965", 7, 8, false),   // KW
    ("966", 9, 10, true),   // SA
    ("967", 7, 9, true),    // YE
    ("968", 7, 9, false),   // OM
    ("970", 8, 10, true),   // PS
    ("971", 5, 12, true),   // AE
    ("972", 7, 12, true),   // IL
    ("973", 8, 8, false),   // BH
    ("974", 7, 11, false),  // QA
    ("975", 7, 8, false),   // BT
    ("976", 8, 10, true),   // MN
    ("977", 8, 11, true),   // NP
    ("979", 9, 9, false),   // non-geographic: premium rate
    ("98", 4, 10, true),    // IR
    ("992", 9, 9, false),   // TJ
    ("993", 8, 8, false),   // TM
    ("994", 9, 9, true),    // AZ
    ("995", 9, 9, true),    // GE
    ("996", 9, 10, true),   // KG
    ("998", 9, 9, false),   // UZ
];

/// The country calling code `digits` starts with: its length and entry.
fn calling_code(digits: &[u8]) -> Option<(usize, u8, u8, bool)> {
    (1..=3.min(digits.len())).find_map(|len| {
        let prefix = &digits[..len];
        CALLING_CODES
            .binary_search_by(|entry| entry.0.as_bytes().cmp(prefix))
            .ok()
            .map(|i| {
                let (_, min, max, trunk_zero) = CALLING_CODES[i];
                (len, min, max, trunk_zero)
            })
    })
}

/// The length of a `(0)` group (spaces allowed inside) at the start of `s`.
fn trunk_group(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    let skip = |i: &mut usize| {
        while s.get(*i) == Some(&b' ') {
            *i += 1;
        }
    };
    skip(&mut i);
    if s.get(i) != Some(&b'0') {
        return None;
    }
    i += 1;
    skip(&mut i);
    (s.get(i) == Some(&b')')).then_some(i + 1)
}

fn normalise(input: &str) -> Result<String, InvalidData> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(Reason::Empty));
    }
    if s.len() > 64 {
        return Err(err(Reason::TooLong { max: 64 }));
    }
    let rest = s
        .strip_prefix('+')
        .ok_or(err(Reason::MissingPlus))?
        .as_bytes();
    // Digits on the stack (the input is at most 64 bytes), wiped on return.
    let mut digits = Zeroizing::new([0u8; 64]);
    let mut n = 0;
    // Where a `(0)` stood, counted in digits before it.
    let mut trunk = None;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            d @ b'0'..=b'9' => {
                digits[n] = d;
                n += 1;
            }
            b'(' => {
                if let Some(len) = trunk_group(&rest[i..]) {
                    if trunk.replace(n).is_some() {
                        return Err(err(Reason::TrunkPrefix));
                    }
                    i += len;
                    continue;
                }
            }
            b' ' | b'-' | b'.' | b'/' | b')' => {}
            _ => return Err(err(Reason::InvalidCharacter)),
        }
        i += 1;
    }
    let digits = &digits[..n];
    if digits.is_empty() || digits.len() > MAX_DIGITS {
        return Err(err(Reason::DigitCount));
    }
    let (code_len, min, max, trunk_zero) =
        calling_code(digits).ok_or(err(Reason::UnknownCountryCode))?;
    if let Some(at) = trunk {
        if at != code_len || !trunk_zero {
            return Err(err(Reason::TrunkPrefix));
        }
    }
    let national = digits.len() - code_len;
    if national < usize::from(min) || national > usize::from(max) {
        return Err(err(Reason::DigitCount));
    }
    let mut out = String::with_capacity(1 + MAX_DIGITS);
    out.push('+');
    out.extend(digits.iter().map(|&d| char::from(d)));
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

    fn decode(bytes: &[u8], _: super::Token) -> Result<Self, InvalidData> {
        match stored_text(KIND, bytes)? {
            s if s.starts_with('+') => Ok(PhoneNumber {
                e164: SecretString::from(s),
            }),
            _ => Err(err(Reason::Malformed)),
        }
    }

    fn decode_owned(bytes: Plaintext) -> Result<Self, InvalidData> {
        match bytes.into_stored_text(KIND)? {
            t if t.as_str().starts_with('+') => Ok(PhoneNumber {
                e164: t.into_secret(),
            }),
            _ => Err(err(Reason::Malformed)),
        }
    }

    fn normalized_into(&self, out: &mut super::WipedBuf) {
        out.extend_from_slice(self.e164.expose_secret().as_bytes());
    }
}

redacted_kind!(PhoneNumber);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_prefix_free_and_within_e164() {
        for pair in CALLING_CODES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, min, max, _) in CALLING_CODES {
            assert!((1..=3).contains(&code.len()), "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0'));
            assert!(0 < min && min <= max, "{code}");
            assert!(code.len() + usize::from(max) <= MAX_DIGITS, "{code}");
            for (other, ..) in CALLING_CODES {
                assert!(
                    other == code || !other.starts_with(code),
                    "{code} / {other}"
                );
            }
            assert_eq!(calling_code(code.as_bytes()).map(|c| c.0), Some(code.len()));
        }
    }

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
            ("+49 30 ١٢٣", Reason::InvalidCharacter),
            ("+1234567", Reason::DigitCount),
            ("+12345678", Reason::DigitCount),
            ("+123456789", Reason::DigitCount),
            ("+1234567890123456", Reason::DigitCount),
            ("+123456789012345", Reason::DigitCount),
            ("+0123456789", Reason::UnknownCountryCode),
            ("+280 1234 5678", Reason::UnknownCountryCode),
            ("+", Reason::DigitCount),
            ("+()", Reason::DigitCount),
            ("+44 (0)", Reason::DigitCount),
            ("+44 20 (0) 7946 0958", Reason::TrunkPrefix),
            ("+(0)44 20 7946 0958", Reason::TrunkPrefix),
            ("+44 (0)(0)20 7946 0958", Reason::TrunkPrefix),
            ("+1 (0) 415 555 0132", Reason::TrunkPrefix),
            ("+39 (0)6 6982 1234", Reason::TrunkPrefix),
            ("+44 (020) 7946 0958", Reason::DigitCount),
        ];
        for (input, reason) in cases {
            assert_eq!(
                PhoneNumber::parse(input).unwrap_err().reason(),
                *reason,
                "{input}"
            );
        }
        for (input, e164) in [
            ("+12345678901", "+12345678901"),
            ("+44 ( 0 ) 20 7946 0958", "+442079460958"),
            ("+44(0)2079460958", "+442079460958"),
            ("+49 (0)30 123456", "+4930123456"),
            ("+39 06 6982 1234", "+390669821234"),
            ("+43 1234", "+431234"),
            ("+49 1234 5678 9012 3", "+491234567890123"),
        ] {
            assert_eq!(
                PhoneNumber::parse(input).unwrap().expose_secret(),
                e164,
                "{input}"
            );
        }
    }
}
