use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use super::{clean_text_with_format, redacted_kind, sealed, stored_str, InvalidData, Kind, Reason};

const KIND: Kind = Kind::PurchaseRecord;

fn err(reason: Reason) -> InvalidData {
    InvalidData::new(KIND, reason)
}

/// The last day whose midnight (UTC) a [`Timestamp`](crate::time::Timestamp)
/// can hold, counted in days from 1970-01-01: 2554-07-21, since a timestamp is
/// a `u64` of nanoseconds and ends at 2554-07-21T23:34:33Z.
const LAST_DAY: i64 = (u64::MAX / 1_000_000_000 / 86_400) as i64;

/// A calendar date (proleptic Gregorian), from 1970-01-01 to 2554-07-21.
///
/// The range is the one whose [`start`](Self::start) a
/// [`Timestamp`](crate::time::Timestamp) holds exactly: timestamps are
/// nanoseconds since the Unix epoch in a `u64`, which ends on 2554-07-21.
///
/// ```
/// use privacy_pledge::data::Date;
/// assert!(Date::new(2024, 2, 29).is_ok());
/// assert!(Date::new(2023, 2, 29).is_err());
/// assert_eq!(Date::new(2018, 6, 30)?.to_string(), "2018-06-30");
/// assert_eq!(Date::new(2554, 7, 21)?, Date::LAST);
/// assert_eq!(Date::LAST.start().to_string(), "2554-07-21T00:00:00Z");
/// assert!(Date::new(2554, 7, 22).is_err());
/// assert!(Date::new(1969, 12, 31).is_err());
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Zeroize)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The first date accepted: 1970-01-01, the Unix epoch.
    ///
    /// ```
    /// use privacy_pledge::data::Date;
    /// assert_eq!(Date::FIRST.start().unix_seconds(), 0);
    /// ```
    pub const FIRST: Date = Date {
        year: 1970,
        month: 1,
        day: 1,
    };

    /// The last date accepted: 2554-07-21, the last whose midnight (UTC) a
    /// [`Timestamp`](crate::time::Timestamp) can hold.
    ///
    /// ```
    /// use privacy_pledge::data::Date;
    /// assert_eq!(Date::LAST.to_string(), "2554-07-21");
    /// assert_eq!(Date::LAST.start().unix_seconds(), 18_446_659_200);
    /// ```
    pub const LAST: Date = Date {
        year: 2554,
        month: 7,
        day: 21,
    };

    /// A date, if it exists and lies in 1970-01-01 to 2554-07-21
    /// ([`FIRST`](Self::FIRST) to [`LAST`](Self::LAST)); otherwise
    /// [`Reason::InvalidField`].
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, InvalidData> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(err(Reason::InvalidField)),
        };
        if year < 1970 || day == 0 || day > days {
            return Err(err(Reason::InvalidField));
        }
        let date = Date { year, month, day };
        if date.days_since_epoch() > LAST_DAY {
            return Err(err(Reason::InvalidField));
        }
        Ok(date)
    }

    /// A date whose parts the caller has already checked: a real calendar
    /// date from [`FIRST`](Self::FIRST) to [`LAST`](Self::LAST).
    ///
    /// Crate-internal, for [`Timestamp::date`](crate::time::Timestamp::date):
    /// the date of any timestamp lies in that range, so no error is possible.
    pub(crate) fn from_checked_parts(year: u16, month: u8, day: u8) -> Self {
        let date = Date { year, month, day };
        debug_assert!(
            Date::new(year, month, day).is_ok_and(|d| d == date),
            "{date} is not a date from 1970-01-01 to 2554-07-21"
        );
        date
    }

    /// The year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month, 1–31.
    pub fn day(&self) -> u8 {
        self.day
    }

    fn days_since_epoch(&self) -> i64 {
        crate::time::days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }

    /// Midnight UTC at the start of this date, exact for every date accepted.
    pub fn start(&self) -> crate::time::Timestamp {
        // From 1970-01-01 to LAST_DAY: never negative, never past u64::MAX ns.
        let days = u64::try_from(self.days_since_epoch()).unwrap_or(0);
        crate::time::Timestamp::from_unix_seconds(days * 86_400)
    }
}

impl core::fmt::Display for Date {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The active ISO 4217 currency codes with their minor unit (the number of
/// decimal digits of the amount in the major unit), sorted for binary search.
///
/// These are the codes of ISO 4217 list one (published 2024-06-25) that have
/// a decimal minor unit, and `XCG`, the Caribbean guilder, in circulation
/// since 2025-03-31. Codes with no minor unit (precious metals such as `XAU`,
/// `XDR`, the bond-market units `XBA`–`XBD`, `XSU`, `XUA`, and `XTS`, `XXX`)
/// are not what a purchase is paid in and are left out, as are withdrawn
/// codes (`HRK`, `SLL`, `ZWL`, …).
#[rustfmt::skip]
const CURRENCIES: [(&str, u8); 167] = [
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2),
    ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4),
    ("CLP", 0), ("CNY", 2), ("COP", 2), ("COU", 2), ("CRC", 2), ("CUC", 2), ("CUP", 2), ("CVE", 2),
    ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2),
    ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2),
    ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2), ("HUF", 2), ("IDR", 2),
    ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3), ("JPY", 0),
    ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0), ("KWD", 3), ("KYD", 2),
    ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LYD", 3), ("MAD", 2),
    ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2),
    ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2),
    ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2),
    ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2),
    ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2), ("SHP", 2),
    ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2), ("SZL", 2),
    ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2), ("TWD", 2),
    ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4),
    ("UZS", 2), ("VED", 2), ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2),
    ("XCG", 2), ("XOF", 0), ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// An amount of money in minor units of an active ISO 4217 currency: cents
/// of `USD`, yen of `JPY` (no minor unit), fils of `BHD` (1 000 to the dinar).
///
/// It prints with as many decimals as the currency's minor unit has digits.
///
/// ```
/// use privacy_pledge::data::{Amount, Reason};
/// let a = Amount::new(4_999, "USD")?;
/// assert_eq!(a.minor_units(), 4_999);
/// assert_eq!(a.currency(), "USD");
/// assert_eq!(a.to_string(), "49.99 USD");
/// assert_eq!(Amount::new(500, "JPY")?.to_string(), "500 JPY");
/// assert_eq!(Amount::new(1_500, "BHD")?.to_string(), "1.500 BHD");
/// assert_eq!(Amount::new(1, "usd").unwrap_err().reason(), Reason::InvalidCurrencyCode);
/// assert_eq!(Amount::new(1, "XYZ").unwrap_err().reason(), Reason::UnknownCurrency);
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Zeroize)]
pub struct Amount {
    minor_units: u64,
    currency: [u8; 3],
    /// Digits of the minor unit, from [`CURRENCIES`].
    digits: u8,
}

impl Amount {
    /// An amount; `currency` is an active ISO 4217 code, in upper case.
    ///
    /// Anything but three upper-case ASCII letters is refused with
    /// [`Reason::InvalidCurrencyCode`]; three letters that are not an active
    /// code with a decimal minor unit with [`Reason::UnknownCurrency`].
    /// Lower case is refused, not normalised: a code has one form, here and
    /// in the stored form of a purchase record, which is checked by this same
    /// function when it is opened.
    ///
    /// ```
    /// use privacy_pledge::data::Amount;
    ///
    /// let err = Amount::new(100, "eur").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid purchase record: the currency must be an ISO 4217 code in upper case (three letters A to Z, such as EUR)"
    /// );
    /// assert_eq!(Amount::new(100, "EUR")?.to_string(), "1.00 EUR");
    /// # Ok::<(), privacy_pledge::data::InvalidData>(())
    /// ```
    pub fn new(minor_units: u64, currency: &str) -> Result<Self, InvalidData> {
        let c = currency.as_bytes();
        if c.len() != 3 || !c.iter().all(u8::is_ascii_uppercase) {
            return Err(err(Reason::InvalidCurrencyCode));
        }
        let i = CURRENCIES
            .binary_search_by(|(code, _)| code.as_bytes().cmp(c))
            .map_err(|_| err(Reason::UnknownCurrency))?;
        Ok(Amount {
            minor_units,
            currency: [c[0], c[1], c[2]],
            digits: CURRENCIES[i].1,
        })
    }

    /// The amount in minor units.
    pub fn minor_units(&self) -> u64 {
        self.minor_units
    }

    /// The currency code.
    pub fn currency(&self) -> &str {
        core::str::from_utf8(&self.currency).unwrap_or("???")
    }

    /// How many decimal digits the currency's minor unit has (its ISO 4217
    /// exponent): 0 for `JPY` and `KRW`, 2 for `USD` and `EUR`, 3 for `BHD`,
    /// `KWD` and `TND`, 4 for `CLF` and `UYW`.
    ///
    /// ```
    /// use privacy_pledge::data::Amount;
    /// assert_eq!(Amount::new(500, "JPY")?.minor_unit_digits(), 0);
    /// assert_eq!(Amount::new(500, "USD")?.minor_unit_digits(), 2);
    /// assert_eq!(Amount::new(500, "KWD")?.minor_unit_digits(), 3);
    /// assert_eq!(Amount::new(500, "CLF")?.minor_unit_digits(), 4);
    /// # Ok::<(), privacy_pledge::data::InvalidData>(())
    /// ```
    pub fn minor_unit_digits(&self) -> u8 {
        self.digits
    }

    /// Every currency code [`new`](Self::new) accepts, in alphabetical order.
    ///
    /// ```
    /// use privacy_pledge::data::Amount;
    /// assert!(Amount::currencies().any(|c| c == "EUR"));
    /// assert!(Amount::currencies().all(|c| Amount::new(0, c).is_ok()));
    /// ```
    pub fn currencies() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|&(code, _)| code)
    }
}

impl core::fmt::Display for Amount {
    /// The amount in the major unit with the currency's number of decimals,
    /// then the code: `49.99 USD`, `500 JPY`, `1.500 BHD`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let digits = u32::from(self.digits);
        if digits == 0 {
            return write!(f, "{} {}", self.minor_units, self.currency());
        }
        let unit = 10u64.pow(digits);
        write!(
            f,
            "{}.{:0width$} {}",
            self.minor_units / unit,
            self.minor_units % unit,
            self.currency(),
            width = digits as usize
        )
    }
}

/// What a customer bought: order id, product, amount and date.
///
/// Printing shows `[redacted]`; the fields are read inside a custodian closure.
///
/// Two records are equal (`==`, in constant time), and have the same
/// [lookup token](crate::LookupToken) and [pseudonym](crate::Pseudonym),
/// only when all four fields are: the product exactly as stored, the
/// amount with its currency, the date. Two records with one order id and
/// anything else different are two different records.
///
/// ```
/// use privacy_pledge::data::{Amount, Date, PurchaseRecord};
///
/// let r = PurchaseRecord::new("ORD-1001", "Data Recovery Pro", Amount::new(6_995, "USD")?, Date::new(2018, 6, 30)?)?;
/// assert_eq!(r.order_id(), "ORD-1001");
/// assert_eq!(format!("{r:?}"), "PurchaseRecord([redacted])");
/// let refund = PurchaseRecord::new("ORD-1001", "Data Recovery Pro", Amount::new(0, "USD")?, Date::new(2018, 6, 30)?)?;
/// assert_ne!(r, refund);
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone)]
pub struct PurchaseRecord {
    order_id: SecretString,
    product: SecretString,
    amount: Amount,
    date: Date,
}

impl PurchaseRecord {
    /// Longest order id, in bytes (visible ASCII).
    pub const MAX_ORDER_ID: usize = 64;
    /// Longest product name, in characters.
    pub const MAX_PRODUCT_CHARS: usize = 200;

    /// Validates and builds a purchase record.
    ///
    /// The order id is 1 to [`MAX_ORDER_ID`](Self::MAX_ORDER_ID) visible
    /// ASCII characters (trimmed); a space or any other character is refused
    /// with [`Reason::InvalidOrderId`]. The product is one line of text of at
    /// most [`MAX_PRODUCT_CHARS`](Self::MAX_PRODUCT_CHARS) characters.
    ///
    /// ```
    /// use privacy_pledge::data::{Amount, Date, PurchaseRecord, Reason};
    ///
    /// let (amount, date) = (Amount::new(6_995, "USD")?, Date::new(2018, 6, 30)?);
    /// let err = PurchaseRecord::new("ORD 1", "Data Recovery Pro", amount, date).unwrap_err();
    /// assert_eq!(err.reason(), Reason::InvalidOrderId);
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid purchase record: the order id may hold only visible ASCII characters (letters, digits and punctuation, no spaces)"
    /// );
    /// # Ok::<(), privacy_pledge::data::InvalidData>(())
    /// ```
    pub fn new(
        order_id: &str,
        product: &str,
        amount: Amount,
        date: Date,
    ) -> Result<Self, InvalidData> {
        let id = order_id.trim();
        if id.is_empty() {
            return Err(err(Reason::Empty));
        }
        if id.len() > Self::MAX_ORDER_ID {
            return Err(err(Reason::TooLong {
                max: Self::MAX_ORDER_ID,
            }));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(Reason::InvalidOrderId));
        }
        let product = clean_text_with_format(KIND, product, Self::MAX_PRODUCT_CHARS, false)?;
        Ok(PurchaseRecord {
            order_id: SecretString::from(id),
            product: SecretString::from(product),
            amount,
            date,
        })
    }

    /// The order id.
    pub fn order_id(&self) -> &str {
        self.order_id.expose_secret()
    }

    /// The product bought.
    pub fn product(&self) -> &str {
        self.product.expose_secret()
    }

    /// The amount paid.
    pub fn amount(&self) -> Amount {
        self.amount
    }

    /// The date of the purchase.
    pub fn date(&self) -> Date {
        self.date
    }
}

impl Drop for PurchaseRecord {
    fn drop(&mut self) {
        self.amount.zeroize();
        self.date.zeroize();
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], InvalidData> {
    if bytes.len() < n {
        return Err(err(Reason::Malformed));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

impl sealed::Sealed for PurchaseRecord {
    fn encoded_len(&self) -> usize {
        1 + self.order_id.expose_secret().len() + 2 + self.product.expose_secret().len() + 8 + 3 + 4
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let id = self.order_id.expose_secret().as_bytes();
        let product = self.product.expose_secret().as_bytes();
        // Lengths are bounded by `new`: id <= 64 bytes, product <= 800 bytes.
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&(product.len() as u16).to_be_bytes());
        out.extend_from_slice(product);
        out.extend_from_slice(&self.amount.minor_units.to_be_bytes());
        out.extend_from_slice(&self.amount.currency);
        out.extend_from_slice(&self.date.year.to_be_bytes());
        out.push(self.date.month);
        out.push(self.date.day);
    }

    fn decode(mut bytes: &[u8], _: super::Token) -> Result<Self, InvalidData> {
        let b = &mut bytes;
        let n = take(b, 1)?[0] as usize;
        let id = stored_str(KIND, take(b, n)?)?;
        let len = take(b, 2)?;
        let n = u16::from_be_bytes([len[0], len[1]]) as usize;
        let product = stored_str(KIND, take(b, n)?)?;
        let minor = take(b, 8)?;
        let minor = u64::from_be_bytes(minor.try_into().map_err(|_| err(Reason::Malformed))?);
        let currency = stored_str(KIND, take(b, 3)?)?;
        let y = take(b, 2)?;
        let md = take(b, 2)?;
        if !b.is_empty() {
            return Err(err(Reason::Malformed));
        }
        // Checked again, not trusted: a form stored by a version that took any
        // three letters, or years to 9999, is an error here, never a panic.
        let amount = Amount::new(minor, currency)?;
        let date = Date::new(u16::from_be_bytes([y[0], y[1]]), md[0], md[1])?;
        PurchaseRecord::new(id, product, amount, date).map_err(|_| err(Reason::Malformed))
    }

    /// The whole stored form — order id, product, amount and date, each
    /// length-prefixed or of fixed size — so that equality, lookup tokens
    /// and pseudonyms cover the whole record, not only its order id.
    fn normalized_into(&self, out: &mut super::WipedBuf) {
        self.encode_into(out.reserved(self.encoded_len()));
    }

    fn report_into(&self, out: &mut String) {
        use core::fmt::Write as _;
        let _ = write!(
            out,
            "order {} on {}: {}, {}",
            self.order_id.expose_secret(),
            self.date,
            self.product.expose_secret(),
            self.amount
        );
    }
}

redacted_kind!(PurchaseRecord);

#[cfg(test)]
mod tests {
    use super::*;
    use sealed::Sealed;

    fn sample() -> PurchaseRecord {
        PurchaseRecord::new(
            "ORD-7",
            "Partition Manager",
            Amount::new(4_995, "EUR").unwrap(),
            Date::new(2018, 6, 30).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn codec_round_trip_and_garbage() {
        let r = sample();
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        let back = PurchaseRecord::decode(&buf, crate::data::Token(())).unwrap();
        assert_eq!(back.order_id(), "ORD-7");
        assert_eq!(back.product(), "Partition Manager");
        assert_eq!(back.amount(), r.amount());
        assert_eq!(back.date(), r.date());
        for cut in 0..buf.len() {
            assert!(PurchaseRecord::decode(&buf[..cut], crate::data::Token(())).is_err());
        }
        buf.push(0);
        assert!(PurchaseRecord::decode(&buf, crate::data::Token(())).is_err());
    }

    #[test]
    fn validation() {
        let a = Amount::new(1, "USD").unwrap();
        let d = Date::new(2020, 1, 1).unwrap();
        assert!(PurchaseRecord::new("", "x", a, d).is_err());
        assert!(PurchaseRecord::new("has space", "x", a, d).is_err());
        assert!(PurchaseRecord::new("ok", "", a, d).is_err());
        assert!(Date::new(1969, 12, 31).is_err());
        assert!(Date::new(2000, 13, 1).is_err());
        assert!(Date::new(1900, 2, 29).is_err());
        assert!(Date::new(2000, 2, 29).is_ok());
        assert_eq!(
            Date::new(1970, 1, 2).unwrap().start().unix_seconds(),
            86_400
        );
    }

    #[test]
    fn currency_table_is_sorted_and_well_formed() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, digits) in CURRENCIES {
            assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(digits <= 4, "{code}");
            assert_eq!(Amount::new(1, code).unwrap().minor_unit_digits(), digits);
        }
    }

    #[test]
    fn dates_end_where_timestamps_do() {
        assert_eq!(
            Date::LAST.days_since_epoch(),
            LAST_DAY,
            "LAST is the last day"
        );
        let last = Date::new(2554, 7, 21).unwrap();
        assert_eq!(last, Date::LAST);
        assert_eq!(last.start().unix_seconds(), 18_446_659_200);
        assert!(last.start().unix_nanos() < u64::MAX);
        // The next midnight does not fit a u64 of nanoseconds.
        assert!((18_446_659_200u64 + 86_400)
            .checked_mul(1_000_000_000)
            .is_none());
        for (y, m, d) in [(2554, 7, 22), (2554, 8, 1), (2555, 1, 1), (9999, 12, 31)] {
            assert_eq!(
                Date::new(y, m, d).unwrap_err().reason(),
                Reason::InvalidField,
                "{y}-{m}-{d}"
            );
        }
        assert_eq!(Date::FIRST.start().unix_seconds(), 0);
    }

    type Ymd = (u16, u8, u8);

    fn stored(currency: &[u8; 3], (y, m, d): Ymd) -> Vec<u8> {
        let mut buf = Vec::new();
        sample().encode_into(&mut buf);
        let tail = buf.len() - 3 - 4;
        buf[tail..tail + 3].copy_from_slice(currency);
        buf[tail + 3..tail + 5].copy_from_slice(&y.to_be_bytes());
        buf[tail + 5] = m;
        buf[tail + 6] = d;
        buf
    }

    #[test]
    fn decode_refuses_what_new_refuses() {
        let ok =
            PurchaseRecord::decode(&stored(b"JPY", (2554, 7, 21)), crate::data::Token(())).unwrap();
        assert_eq!(ok.amount().to_string(), "4995 JPY");
        assert_eq!(ok.date(), Date::LAST);
        let cases: [(&[u8; 3], Ymd, Reason); 5] = [
            (b"XYZ", (2018, 6, 30), Reason::UnknownCurrency),
            (b"XAU", (2018, 6, 30), Reason::UnknownCurrency),
            (b"eur", (2018, 6, 30), Reason::InvalidCurrencyCode),
            (b"EUR", (2554, 7, 22), Reason::InvalidField),
            (b"EUR", (9999, 12, 31), Reason::InvalidField),
        ];
        for (currency, date, reason) in cases {
            let e = PurchaseRecord::decode(&stored(currency, date), crate::data::Token(()))
                .unwrap_err();
            assert_eq!(e.reason(), reason, "{date:?}");
        }
        assert_eq!(
            PurchaseRecord::decode(
                &stored(&[0xff, b'U', b'R'], (2018, 6, 30)),
                crate::data::Token(())
            )
            .unwrap_err()
            .reason(),
            Reason::Malformed
        );
    }

    #[test]
    fn report_uses_the_minor_unit() {
        let d = Date::new(2018, 6, 30).unwrap();
        for (minor, currency, shown) in [
            (4_995, "EUR", "49.95 EUR"),
            (5, "USD", "0.05 USD"),
            (500, "JPY", "500 JPY"),
            (1_500, "BHD", "1.500 BHD"),
            (7, "KWD", "0.007 KWD"),
            (12_345, "CLF", "1.2345 CLF"),
            (u64::MAX, "UYW", "1844674407370955.1615 UYW"),
        ] {
            let r = PurchaseRecord::new(
                "ORD-7",
                "Partition Manager",
                Amount::new(minor, currency).unwrap(),
                d,
            )
            .unwrap();
            let mut out = String::new();
            r.report_into(&mut out);
            assert_eq!(
                out,
                format!("order ORD-7 on 2018-06-30: Partition Manager, {shown}")
            );
        }
    }
}
