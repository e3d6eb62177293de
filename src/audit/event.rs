//! The audit event: what was done, to whose data, for what purpose, under which rule.

use serde::{Deserialize, Serialize};

use crate::country::Country;
use crate::data::Kind;
use crate::policy::RuleId;
use crate::purpose::PurposeId;
use crate::recipient::RoleId;
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::transfer::Mechanism;

/// The schema version of [`AuditEvent`] this crate writes.
pub const SCHEMA_VERSION: u8 = 1;

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Action {
    /// A value was collected for a purpose.
    Collect = 1,
    /// A value was read inside `Custodian::access`.
    Access = 2,
    /// A value was handed to a recipient inside `Custodian::disclose`.
    Disclose = 3,
    /// A value moved to another purpose (see [`AuditEvent::target_purpose`]).
    Repurpose = 4,
    /// The subject granted consent for a purpose.
    ConsentGranted = 5,
    /// The subject withdrew consent for a purpose.
    ConsentWithdrawn = 6,
    /// A value was transferred to another country (see [`AuditEvent::country`]).
    Transfer = 7,
    /// A value was sealed for storage.
    Seal = 8,
    /// A sealed value was opened.
    Open = 9,
    /// The subject was erased by destroying its data key.
    Erase = 10,
    /// A subject's report was produced for them. (Code 11 is unused.)
    Report = 12,
    /// The consent register was rebuilt from a verified trail (not about one
    /// subject: the event's subject is the all-zero id).
    ConsentRestored = 13,
    /// The key-encryption keys were rotated and the old versions retired,
    /// so copies of the key store from before stop opening anything, erased
    /// subjects' data included (R11; not about one subject: the all-zero
    /// id). Recorded when the rotation starts, before any key changes.
    KeysRotated = 14,
    /// The freshness anchor's log was rewritten as the state it holds
    /// ([`Custodian::compact_anchor`](crate::Custodian::compact_anchor)):
    /// every anchored consent and erasure kept, their history dropped (not
    /// about one subject: the all-zero id). Recorded before the log is
    /// replaced.
    AnchorCompacted = 15,
}

impl Action {
    /// Every action, in code order.
    pub const ALL: [Action; 14] = [
        Action::Collect,
        Action::Access,
        Action::Disclose,
        Action::Repurpose,
        Action::ConsentGranted,
        Action::ConsentWithdrawn,
        Action::Transfer,
        Action::Seal,
        Action::Open,
        Action::Erase,
        Action::Report,
        Action::ConsentRestored,
        Action::KeysRotated,
        Action::AnchorCompacted,
    ];

    pub(crate) const fn code(self) -> u8 {
        self as u8
    }

    /// Its name as serialized and stored in the stores' `action` column
    /// (`"access"`, …): the stable, documented name.
    #[cfg(any(feature = "sqlite", feature = "postgres", test))]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Action::Collect => "collect",
            Action::Access => "access",
            Action::Disclose => "disclose",
            Action::Repurpose => "repurpose",
            Action::ConsentGranted => "consent_granted",
            Action::ConsentWithdrawn => "consent_withdrawn",
            Action::Transfer => "transfer",
            Action::Seal => "seal",
            Action::Open => "open",
            Action::Erase => "erase",
            Action::Report => "report",
            Action::ConsentRestored => "consent_restored",
            Action::KeysRotated => "keys_rotated",
            Action::AnchorCompacted => "anchor_compacted",
        }
    }
}

/// Whether the use went ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Outcome {
    /// The rule allowed it; recorded before it took effect.
    Allowed = 1,
    /// A run-time check refused it; nothing happened.
    Denied = 2,
}

/// A recipient as recorded: its name and role (R5).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientRef {
    /// The name the host gave the recipient.
    pub name: Box<str>,
    /// Its role.
    pub role: RoleId,
}

/// The chain fields a [`ChainedAuditLog`](super::ChainedAuditLog) adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainLink {
    /// What the previous entry's chain ends in (all zero for the first): its
    /// `mac` (versions 1 and 3) or its link hash (version 2).
    #[serde(with = "hex32")]
    pub prev: [u8; 32],
    /// This entry's MAC: HMAC-SHA-256 over `prev` and the entry's canonical
    /// encoding (version 1) or over its link hash (version 2); for version
    /// 3, the 16-byte GMAC tag over the first half of `prev` and the
    /// canonical encoding, then 16 zero bytes.
    #[serde(with = "hex32")]
    pub mac: [u8; 32],
}

/// One entry of the audit trail.
///
/// An event names *which* value was used — the subject id, the data kind and
/// the purpose — never the value itself: no field can hold personal
/// information (R9). The recipient name is the host's label for an organisation.
///
/// Fields, in order:
///
/// | field | meaning |
/// |---|---|
/// | `v` | schema version: [`SCHEMA_VERSION`] (1) unchained or in a single chain, [`STREAMED_SCHEMA_VERSION`](super::STREAMED_SCHEMA_VERSION) (2) or [`KEYED_SCHEMA_VERSION`](super::KEYED_SCHEMA_VERSION) (4; 3 in older trails) in a stream |
/// | `seq` | position in the chain, from 1, gap-free; 0 when unchained |
/// | `time` | when the use was recorded (nanoseconds since the Unix epoch) |
/// | `subject` | the subject id (a random handle, not a value) |
/// | `kind` | the data kind, where the event is about one value |
/// | `purpose` | the purpose the value is held for (its Fideslang key via [`PurposeId::fides_key`]) |
/// | `target_purpose` | for `repurpose`: the purpose it moved to |
/// | `action` | what was done |
/// | `outcome` | allowed (recorded before it happened) or denied |
/// | `rule` | the rule that allowed or denied it |
/// | `recipient` | for `disclose`: name and role |
/// | `country`, `mechanism` | for `transfer`: destination and legal mechanism |
/// | `stream` | versions 2 and 3: the writer's stream (see [`StreamId`](super::StreamId)) |
/// | `chain` | `prev` and `mac` when written through a chained log |
///
/// Deserializing refuses unknown fields: the authenticated bytes are the only
/// truth, so nothing can ride along in a stored entry (plaintext included)
/// that the chain MAC does not cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub(crate) v: u8,
    pub(crate) seq: u64,
    pub(crate) time: Timestamp,
    pub(crate) subject: SubjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) purpose: Option<PurposeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target_purpose: Option<PurposeId>,
    pub(crate) action: Action,
    pub(crate) outcome: Outcome,
    pub(crate) rule: RuleId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recipient: Option<RecipientRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) country: Option<Country>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mechanism: Option<Mechanism>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stream: Option<super::StreamId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) chain: Option<ChainLink>,
}

impl AuditEvent {
    pub(crate) fn new(time: Timestamp, subject: SubjectId, action: Action, rule: RuleId) -> Self {
        AuditEvent {
            v: SCHEMA_VERSION,
            seq: 0,
            time,
            subject,
            kind: None,
            purpose: None,
            target_purpose: None,
            action,
            outcome: Outcome::Allowed,
            rule,
            recipient: None,
            country: None,
            mechanism: None,
            stream: None,
            chain: None,
        }
    }

    pub(crate) fn about(mut self, kind: Kind, purpose: PurposeId) -> Self {
        self.kind = Some(kind);
        self.purpose = Some(purpose);
        self
    }

    pub(crate) fn denied(mut self, rule: RuleId) -> Self {
        self.outcome = Outcome::Denied;
        self.rule = rule;
        self
    }

    /// Schema version.
    pub fn version(&self) -> u8 {
        self.v
    }
    /// Position in the chain (from 1); 0 if the event was not chained.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// When the use was recorded.
    pub fn time(&self) -> Timestamp {
        self.time
    }
    /// The subject.
    pub fn subject(&self) -> SubjectId {
        self.subject
    }
    /// The data kind, if the event is about one value.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }
    /// The purpose the value is held for, or the consent's purpose.
    pub fn purpose(&self) -> Option<PurposeId> {
        self.purpose
    }
    /// For a repurposing, the new purpose.
    pub fn target_purpose(&self) -> Option<PurposeId> {
        self.target_purpose
    }
    /// What was done.
    pub fn action(&self) -> Action {
        self.action
    }
    /// Allowed or denied.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
    /// The rule that allowed or denied the use.
    pub fn rule(&self) -> RuleId {
        self.rule
    }
    /// For a disclosure, the recipient.
    pub fn recipient(&self) -> Option<&RecipientRef> {
        self.recipient.as_ref()
    }
    /// For a transfer, the destination country; for a disclosure to a
    /// recipient processing abroad, the country it went to (the first
    /// outside the EEA, else the first outside the home country), or, for
    /// a refused one, the country that was refused.
    pub fn country(&self) -> Option<Country> {
        self.country
    }
    /// For a transfer, or a disclosure to a recipient processing abroad,
    /// the legal mechanism it went under (required out of the EEA).
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }
    /// The chain fields, if written through a chained log.
    pub fn chain(&self) -> Option<&ChainLink> {
        self.chain.as_ref()
    }
    /// The stream the event was chained in (versions 2 and 3), if any.
    pub fn stream(&self) -> Option<super::StreamId> {
        self.stream
    }

    /// The fixed-size part of the canonical encoding that chain MACs
    /// cover; the recipient name ([`canonical_name`](Self::canonical_name))
    /// follows it.
    ///
    /// Layout: `v` (1) `seq` (8, BE) `time` (8, BE) `subject` (16) `kind`
    /// (1, 0 = none) `purpose` (1) `target_purpose` (1) `action` (1)
    /// `outcome` (1) `rule` (1) `role` (1, 0 = none) `country` (2, zero =
    /// none) `mechanism` (1) `name length` (4, BE), then for a stream (versions 2 and 3) the
    /// `stream` id (16), then `name` (UTF-8). Returns the buffer and how much
    /// of it is used (47 bytes for version 1, 63 for versions 2 and 3).
    ///
    /// A fixed array rather than a growing buffer: the chain computes this
    /// for every event, and verification for every entry.
    pub(crate) fn canonical_fixed(&self) -> ([u8; CANONICAL_MAX_LEN], usize) {
        let mut out = [0u8; CANONICAL_MAX_LEN];
        let len = self.write_canonical_fixed(&mut out);
        (out, len)
    }

    /// Writes the fixed part of the canonical encoding (see
    /// [`canonical_fixed`](Self::canonical_fixed)) into `out` and returns
    /// its length.
    pub(crate) fn write_canonical_fixed(&self, out: &mut [u8; CANONICAL_MAX_LEN]) -> usize {
        let name = self.canonical_name();
        out[0] = self.v;
        out[1..9].copy_from_slice(&self.seq.to_be_bytes());
        out[9..17].copy_from_slice(&self.time.unix_nanos().to_be_bytes());
        out[17..33].copy_from_slice(self.subject.as_bytes());
        out[33] = self.kind.map_or(0, Kind::code);
        out[34] = self.purpose.map_or(0, PurposeId::code);
        out[35] = self.target_purpose.map_or(0, PurposeId::code);
        out[36] = self.action.code();
        out[37] = self.outcome as u8;
        out[38] = self.rule.index() as u8 + 1;
        out[39] = self.recipient.as_ref().map_or(0, |r| r.role.code());
        match self.country {
            Some(c) => out[40..42].copy_from_slice(c.code().as_bytes()),
            None => out[40..42].copy_from_slice(&[0, 0]),
        }
        out[42] = self.mechanism.map_or(0, Mechanism::code);
        out[43..47].copy_from_slice(&(name.len() as u32).to_be_bytes());
        match self.stream {
            Some(stream) => {
                out[47..63].copy_from_slice(stream.as_bytes());
                CANONICAL_MAX_LEN
            }
            None => CANONICAL_FIXED_LEN,
        }
    }

    /// The variable-size tail of the canonical encoding: the recipient name.
    pub(crate) fn canonical_name(&self) -> &[u8] {
        self.recipient.as_ref().map_or("", |r| &r.name).as_bytes()
    }

    /// Appends the whole canonical encoding (fixed part, then the name).
    #[cfg(test)]
    pub(crate) fn encode_canonical(&self, out: &mut Vec<u8>) {
        let (fixed, len) = self.canonical_fixed();
        out.extend_from_slice(&fixed[..len]);
        out.extend_from_slice(self.canonical_name());
    }
}

/// Length of the fixed part of a version-1 event's canonical encoding.
pub(crate) const CANONICAL_FIXED_LEN: usize = 47;
/// Length of the fixed part of a version-2 (streamed) event's encoding.
pub(crate) const CANONICAL_MAX_LEN: usize = CANONICAL_FIXED_LEN + 16;

pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(64);
        crate::subject::push_hex(&mut out, v);
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::subject::decode_hex::<32>(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lowercase hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_actions_name_is_its_serialized_form() {
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.name(), "{a:?}");
        }
    }

    #[test]
    fn all_actions_are_listed_once() {
        // Exhaustive on purpose: a new action fails to compile here until it
        // is added to `Action::ALL`.
        let listed = |a: Action| match a {
            Action::Collect
            | Action::Access
            | Action::Disclose
            | Action::Repurpose
            | Action::ConsentGranted
            | Action::ConsentWithdrawn
            | Action::Transfer
            | Action::Seal
            | Action::Open
            | Action::Erase
            | Action::Report
            | Action::ConsentRestored
            | Action::KeysRotated
            | Action::AnchorCompacted => Action::ALL.iter().filter(|b| **b == a).count(),
        };
        for a in Action::ALL {
            assert_eq!(listed(a), 1, "{a:?}");
        }
        let codes: std::collections::BTreeSet<u8> = Action::ALL.iter().map(|a| a.code()).collect();
        assert_eq!(codes.len(), Action::ALL.len());
    }
}
