//! Countries: ISO 3166-1 alpha-2 codes, validated against the standard's list.
//!
//! Used for postal addresses, for the facilities a host declares and for
//! transfer destinations (R8).
//!
//! ```
//! use privacy_pledge::country::Country;
//!
//! let de: Country = "DE".parse()?;
//! assert!(de.in_eea());
//! assert!(!"US".parse::<Country>()?.in_eea());
//! assert!("XX".parse::<Country>().is_err());
//! assert!("de".parse::<Country>().is_err()); // one spelling only
//! # Ok::<(), privacy_pledge::country::InvalidCountry>(())
//! ```

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The officially assigned ISO 3166-1 alpha-2 codes, sorted.
const ISO_3166_1: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Members of the European Economic Area: the 27 EU states, Iceland,
/// Liechtenstein and Norway.
const EEA: &str =
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IS IT LI LT LU LV MT NL NO PL PT RO SE SI SK";

/// A country, by its ISO 3166-1 alpha-2 code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

/// The text is not an assigned ISO 3166-1 alpha-2 code in upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO 3166-1 alpha-2 country code (two upper-case letters, officially assigned)")]
pub struct InvalidCountry;

/// Whether `code` is in `list` (sorted two-letter codes, one space apart):
/// a binary search, so validating a code costs a handful of comparisons.
fn listed(list: &str, code: [u8; 2]) -> bool {
    let b = list.as_bytes();
    let n = b.len().div_ceil(3);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match [b[mid * 3], b[mid * 3 + 1]].cmp(&code) {
            core::cmp::Ordering::Less => lo = mid + 1,
            core::cmp::Ordering::Greater => hi = mid,
            core::cmp::Ordering::Equal => return true,
        }
    }
    false
}

impl Country {
    /// The country with this code, if `code` is an officially assigned
    /// ISO 3166-1 alpha-2 code in upper case; otherwise [`InvalidCountry`].
    ///
    /// One spelling only: no lower case, no surrounding space, no
    /// three-letter codes. [`FromStr`] and deserializing take the same path.
    ///
    /// ```
    /// use privacy_pledge::country::{Country, InvalidCountry};
    ///
    /// let de = Country::parse("DE")?;
    /// assert_eq!(de.code(), "DE");
    /// assert_eq!("DE".parse::<Country>()?, de);
    /// assert_eq!(Country::parse("de"), Err(InvalidCountry));
    /// assert_eq!(Country::parse("DEU"), Err(InvalidCountry));
    /// assert_eq!(Country::parse("XX"), Err(InvalidCountry)); // not assigned
    /// # Ok::<(), InvalidCountry>(())
    /// ```
    pub fn parse(code: &str) -> Result<Self, InvalidCountry> {
        let b = code.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(InvalidCountry);
        }
        let code = [b[0], b[1]];
        if listed(ISO_3166_1, code) {
            Ok(Country(code))
        } else {
            Err(InvalidCountry)
        }
    }

    /// The former name of [`parse`](Self::parse), which it calls: validated
    /// types built from text are made with `parse`.
    ///
    /// ```
    /// use privacy_pledge::country::Country;
    ///
    /// #[allow(deprecated)]
    /// let us = Country::new("US")?;
    /// assert_eq!(us, Country::parse("US")?);
    /// # Ok::<(), privacy_pledge::country::InvalidCountry>(())
    /// ```
    #[deprecated(since = "0.1.0", note = "use Country::parse")]
    pub fn new(code: &str) -> Result<Self, InvalidCountry> {
        Country::parse(code)
    }

    /// The two-letter code.
    ///
    /// ```
    /// use privacy_pledge::country::Country;
    /// assert_eq!(Country::parse("JP")?.code(), "JP");
    /// # Ok::<(), privacy_pledge::country::InvalidCountry>(())
    /// ```
    pub fn code(&self) -> &str {
        // Only ever built from upper-case ASCII letters.
        core::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Whether the country is in the European Economic Area.
    ///
    /// ```
    /// use privacy_pledge::country::Country;
    /// assert!(Country::parse("NO")?.in_eea());
    /// assert!(!Country::parse("CH")?.in_eea());
    /// # Ok::<(), privacy_pledge::country::InvalidCountry>(())
    /// ```
    pub fn in_eea(&self) -> bool {
        listed(EEA, self.0)
    }

    /// Every assigned code, in order.
    ///
    /// ```
    /// use privacy_pledge::country::Country;
    /// assert_eq!(Country::all().count(), 249);
    /// assert_eq!(Country::all().next().map(|c| c.to_string()).as_deref(), Some("AD"));
    /// ```
    pub fn all() -> impl Iterator<Item = Country> {
        ISO_3166_1
            .as_bytes()
            .chunks(3)
            .map(|c| Country([c[0], c[1]]))
    }
}

impl FromStr for Country {
    type Err = InvalidCountry;
    /// The same as [`Country::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Country::parse(s)
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.code())
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Country::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_complete_and_well_formed() {
        let all: Vec<_> = Country::all().collect();
        assert_eq!(all.len(), 249);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ISO_3166_1.len(), 249 * 3 - 1);
    }

    #[test]
    fn binary_search_agrees_with_a_scan() {
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let scan = ISO_3166_1.split(' ').any(|c| c.as_bytes() == [a, b]);
                assert_eq!(listed(ISO_3166_1, [a, b]), scan);
                let eea = EEA.split(' ').any(|c| c.as_bytes() == [a, b]);
                assert_eq!(listed(EEA, [a, b]), eea);
            }
        }
    }

    #[test]
    fn eea_has_thirty_members_all_assigned() {
        let eea: Vec<_> = Country::all().filter(Country::in_eea).collect();
        assert_eq!(eea.len(), 30);
        assert_eq!(EEA.len(), 30 * 3 - 1);
        assert!(!Country::parse("GB").unwrap().in_eea());
        assert!(!Country::parse("CH").unwrap().in_eea());
    }

    #[test]
    fn rejects_other_spellings() {
        for bad in ["", "D", "DEU", "de", "De", "XK", "ÄÖ", "D\u{0}"] {
            assert!(Country::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    #[allow(deprecated)]
    fn new_from_str_and_deserialize_agree_with_parse() {
        let mut texts: Vec<String> = Vec::new();
        for a in (b'A'..=b'Z').chain(b'a'..=b'z') {
            for b in b'A'..=b'Z' {
                texts.push(String::from_utf8(vec![a, b]).unwrap());
            }
        }
        texts.extend(["", "D", "DEU", " DE", "DE ", "ÄÖ"].map(String::from));
        for text in &texts {
            let parsed = Country::parse(text);
            assert_eq!(Country::new(text), parsed, "{text:?}");
            assert_eq!(text.parse::<Country>(), parsed, "{text:?}");
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(
                serde_json::from_str::<Country>(&json).ok(),
                parsed.ok(),
                "{text:?}"
            );
            if let Ok(c) = parsed {
                assert_eq!(c.code(), text);
                assert_eq!(serde_json::to_string(&c).unwrap(), json);
            }
        }
        assert_eq!(Country::all().count(), 249);
        assert!(Country::all().all(|c| Country::parse(c.code()) == Ok(c)));
    }
}
