use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use super::{clean_text, redacted_kind, sealed, stored_str, InvalidData, Kind, Reason};

const KIND: Kind = Kind::PurchaseRecord;

fn err(reason: Reason) -> InvalidData {
    InvalidData::new(KIND, reason)
}

/// A calendar date (proleptic Gregorian), from 1970 to 9999.
///
/// ```
/// use privacy_pledge::data::Date;
/// assert!(Date::new(2024, 2, 29).is_ok());
/// assert!(Date::new(2023, 2, 29).is_err());
/// assert_eq!(Date::new(2018, 6, 30)?.to_string(), "2018-06-30");
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Zeroize)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// A date, if it exists and lies in 1970–9999.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, InvalidData> {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(err(Reason::InvalidField)),
        };
        if !(1970..=9999).contains(&year) || day == 0 || day > days {
            return Err(err(Reason::InvalidField));
        }
        Ok(Date { year, month, day })
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

    /// Midnight UTC at the start of this date.
    pub fn start(&self) -> crate::time::Timestamp {
        let days = crate::time::days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        );
        // Years from 1970 on: never negative.
        crate::time::Timestamp::from_unix_seconds(u64::try_from(days).unwrap_or(0) * 86_400)
    }
}

impl core::fmt::Display for Date {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// An amount of money in minor units (cents) of an ISO 4217 currency.
///
/// ```
/// use privacy_pledge::data::Amount;
/// let a = Amount::new(4_999, "USD")?;
/// assert_eq!(a.minor_units(), 4_999);
/// assert_eq!(a.currency(), "USD");
/// assert!(Amount::new(1, "usd").is_err());
/// # Ok::<(), privacy_pledge::data::InvalidData>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Zeroize)]
pub struct Amount {
    minor_units: u64,
    currency: [u8; 3],
}

impl Amount {
    /// An amount; `currency` is three upper-case letters.
    pub fn new(minor_units: u64, currency: &str) -> Result<Self, InvalidData> {
        let c = currency.as_bytes();
        if c.len() != 3 || !c.iter().all(u8::is_ascii_uppercase) {
            return Err(err(Reason::InvalidField));
        }
        Ok(Amount {
            minor_units,
            currency: [c[0], c[1], c[2]],
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
}

/// What a customer bought: order id, product, amount and date.
///
/// Printing shows `[redacted]`; the fields are read inside a custodian closure.
///
/// ```
/// use privacy_pledge::data::{Amount, Date, PurchaseRecord};
///
/// let r = PurchaseRecord::new("ORD-1001", "Data Recovery Pro", Amount::new(6_995, "USD")?, Date::new(2018, 6, 30)?)?;
/// assert_eq!(r.order_id(), "ORD-1001");
/// assert_eq!(format!("{r:?}"), "PurchaseRecord([redacted])");
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
            return Err(err(Reason::InvalidCharacter));
        }
        let product = clean_text(KIND, product, Self::MAX_PRODUCT_CHARS, false)?;
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

    fn decode(mut bytes: &[u8]) -> Result<Self, InvalidData> {
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
        let amount = Amount::new(minor, currency)?;
        let date = Date::new(u16::from_be_bytes([y[0], y[1]]), md[0], md[1])?;
        PurchaseRecord::new(id, product, amount, date).map_err(|_| err(Reason::Malformed))
    }

    fn normalized_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.order_id.expose_secret().as_bytes());
    }

    fn report_into(&self, out: &mut String) {
        use core::fmt::Write as _;
        let _ = write!(
            out,
            "order {} on {}: {}, {}.{:02} {}",
            self.order_id.expose_secret(),
            self.date,
            self.product.expose_secret(),
            self.amount.minor_units / 100,
            self.amount.minor_units % 100,
            self.amount.currency()
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
        let back = PurchaseRecord::decode(&buf).unwrap();
        assert_eq!(back.order_id(), "ORD-7");
        assert_eq!(back.product(), "Partition Manager");
        assert_eq!(back.amount(), r.amount());
        assert_eq!(back.date(), r.date());
        for cut in 0..buf.len() {
            assert!(PurchaseRecord::decode(&buf[..cut]).is_err());
        }
        buf.push(0);
        assert!(PurchaseRecord::decode(&buf).is_err());
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
}
