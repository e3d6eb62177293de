//! `ids`: the small text and JSON forms: subject ids, countries,
//! timestamps, stream ids, checkpoint keys, pseudonyms, lookup tokens (and
//! their index-column bytes), rule ids, transfer
//! mechanisms, and the enums and records that audit entries, consent rows
//! and transfer records are made of.
//!
//! Every input is tried against every decoder, as text (lossy UTF-8) and as
//! JSON. Properties, beyond "no panic":
//! - the strict text forms (`SubjectId`, `Country`, `StreamId`,
//!   `CheckpointKey`, `Pseudonym`, `LookupToken`, `RuleId`, `Mechanism`)
//!   accept only their one spelling: what parses prints back as exactly the
//!   input, and a lookup token's bytes are exactly 32, kept as given;
//! - every JSON form round-trips: serialize, parse, serialize again gives
//!   the same value and the same bytes;
//! - a timestamp prints as RFC 3339 whose date part is its `date()`.

use std::fmt::Display;
use std::str::FromStr;

use privacy_pledge::audit::{Action, ChainLink, CheckpointKey, Outcome, RecipientRef, StreamId};
use privacy_pledge::consent::{ConsentRecord, ConsentState};
use privacy_pledge::country::Country;
use privacy_pledge::crypto::{Algorithm, LookupRef, LookupToken, Pseudonym, PseudonymRef};
use privacy_pledge::data::{EmailAddress, Kind};
use privacy_pledge::policy::RuleId;
use privacy_pledge::purpose::PurposeId;
use privacy_pledge::recipient::RoleId;
use privacy_pledge::retention::{Retention, RetentionPolicy};
use privacy_pledge::time::Timestamp;
use privacy_pledge::transfer::{Mechanism, Transfer, TransferRecord};
use privacy_pledge::SubjectId;

use super::common::json_round_trip;

/// What one input did: how many decoders accepted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Text forms that parsed.
    pub text: usize,
    /// JSON forms that parsed.
    pub json: usize,
}

/// Parses `s` as a `T`; if it parses, it must print back as `s` exactly.
fn strict<T>(s: &str, out: &mut Accepted)
where
    T: FromStr + Display,
{
    if let Ok(v) = s.parse::<T>() {
        assert_eq!(v.to_string(), s, "a second spelling was accepted");
        out.text += 1;
    }
}

fn json<T>(data: &[u8], out: &mut Accepted) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v = json_round_trip::<T>(data);
    out.json += usize::from(v.is_some());
    v
}

/// Checks the text form of a timestamp.
pub fn check_timestamp(t: Timestamp) {
    let shown = t.to_string();
    // A u64 of nanoseconds ends in 2554: always a four-digit year.
    assert_eq!(shown.len(), 20, "{shown}");
    assert!(shown.starts_with(&t.date().to_string()), "{shown}");
    assert!(shown.ends_with('Z'));
    assert_eq!(t.unix_seconds(), t.unix_nanos() / 1_000_000_000);
}

/// Runs every decoder on `data`. Panics only on a broken property.
pub fn check(data: &[u8]) -> Accepted {
    let mut out = Accepted::default();
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;
    strict::<SubjectId>(s, &mut out);
    strict::<Country>(s, &mut out);
    strict::<StreamId>(s, &mut out);
    strict::<CheckpointKey>(s, &mut out);
    strict::<Pseudonym<EmailAddress>>(s, &mut out);
    strict::<LookupToken<EmailAddress>>(s, &mut out);
    strict::<RuleId>(s, &mut out);
    strict::<Mechanism>(s, &mut out);
    if let Ok(c) = s.parse::<Country>() {
        assert!(Country::all().any(|k| k == c));
        assert_eq!(c.code(), s);
    }

    if let Some(id) = json::<SubjectId>(data, &mut out) {
        assert_eq!(id.to_string().parse::<SubjectId>(), Ok(id));
    }
    json::<Country>(data, &mut out);
    if let Some(t) = json::<Timestamp>(data, &mut out) {
        check_timestamp(t);
    }
    json::<StreamId>(data, &mut out);
    json::<Pseudonym<EmailAddress>>(data, &mut out);
    json::<PseudonymRef>(data, &mut out);
    json::<LookupToken<EmailAddress>>(data, &mut out);
    json::<LookupRef>(data, &mut out);
    // An index column's bytes: exactly 32, kept as they are.
    match LookupToken::<EmailAddress>::from_bytes(data) {
        Ok(t) => {
            assert_eq!(&t.as_bytes()[..], data);
            out.text += 1;
        }
        Err(_) => assert_ne!(data.len(), LookupToken::<EmailAddress>::LEN),
    }
    json::<PurposeId>(data, &mut out);
    json::<Kind>(data, &mut out);
    json::<Action>(data, &mut out);
    json::<Outcome>(data, &mut out);
    json::<RoleId>(data, &mut out);
    json::<RuleId>(data, &mut out);
    json::<Mechanism>(data, &mut out);
    json::<Algorithm>(data, &mut out);
    json::<Retention>(data, &mut out);
    json::<RetentionPolicy>(data, &mut out);
    json::<Transfer>(data, &mut out);
    json::<TransferRecord>(data, &mut out);
    json::<RecipientRef>(data, &mut out);
    json::<ChainLink>(data, &mut out);
    json::<ConsentState>(data, &mut out);
    json::<ConsentRecord>(data, &mut out);
    out
}
