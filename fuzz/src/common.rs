//! Fixtures shared by the targets: a fixed keyring, a custodian that keeps
//! no audit log, and the JSON round-trip property.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{Custodian, SubjectId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The master secret of the fixed keyring: seeds made from it (chained
/// trails, consent rows, wrapped keys) stay valid from run to run.
pub const MASTER: [u8; 32] = [0x5a; 32];

/// The time the fixtures' clocks show: 2018-06-30T00:00:00Z.
pub const NOW: u64 = 1_530_316_800;

/// The subject the fixtures seal for.
pub const SUBJECT: SubjectId = SubjectId::from_bytes([0x11; 16]);

/// Keeps nothing: fuzzing must not grow an in-memory log without bound.
pub struct Discard;

impl AuditSink for Discard {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
}

/// The fixed keyring (versions 1 and 2, derived from [`MASTER`]).
pub fn keyring() -> Arc<Keyring> {
    static K: OnceLock<Arc<Keyring>> = OnceLock::new();
    K.get_or_init(|| Arc::new(Keyring::from_master(MASTER, [1, 2]).expect("keyring")))
        .clone()
}

/// A clock standing at [`NOW`].
pub fn clock() -> FixedClock {
    FixedClock::new(Timestamp::from_unix_seconds(NOW))
}

/// A custodian over the fixed keyring with in-memory stores, no audit log
/// and a clock at [`NOW`], shared by every call.
pub fn custodian() -> &'static Custodian {
    static C: OnceLock<Custodian> = OnceLock::new();
    C.get_or_init(|| {
        Custodian::builder()
            .keyring(keyring())
            .audit(Discard)
            .clock(clock())
            .build()
            .expect("custodian")
    })
}

/// If `data` is JSON of a `T`: it serializes, the serialized form parses
/// back to the same value, and serializing that gives the same bytes
/// (the form the crate writes is canonical and stable).
pub fn json_round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&value).expect("a decoded value serializes");
    let again: T = serde_json::from_slice(&json).expect("own JSON parses");
    assert_eq!(again, value, "JSON does not round-trip");
    let json2 = serde_json::to_vec(&again).expect("serializes");
    assert_eq!(json, json2, "JSON is not stable");
    Some(value)
}
