//! The subject's own view (rule R11): everything held on a person, for them.
//!
//! [`Custodian::subject_report`](crate::Custodian::subject_report) takes the
//! subject's sealed records from host storage and the audit trail, and gives
//! a [`SubjectReport`]: every value held (decrypted, for that person alone,
//! and recorded as a disclosure to them; data held only for `Improvement` is
//! listed as held, never opened),
//! its purpose, when it was collected and until when it is kept, who received
//! what and when, live consents, and transfers. It serialises to JSON and
//! renders as a short plain-text letter.
//!
//! ```
//! use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Transaction;
//! use privacy_pledge::report::StoredRecord;
//!
//! let custodian = Custodian::in_memory();
//! let ada = SubjectId::random();
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     PersonalInfo::collect(ada, EmailAddress::parse("ada@example.com")?);
//! let row = custodian.seal(&email)?;
//!
//! let log = custodian.builtin_audit_log().unwrap();
//! let trail = custodian.verify_trail(log.inner().events())?;
//! let records: Vec<&dyn StoredRecord> = vec![&row];
//! let report = custodian.subject_report(ada, &records, &trail)?;
//! assert_eq!(report.records().len(), 1);
//! assert!(report.to_letter().contains("ada@example.com"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::fmt::Write as _;

use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

use crate::audit::{Action, AuditEvent, Outcome, RecipientRef, VerifiedTrail};
use crate::consent::ConsentState;
use crate::country::Country;
use crate::crypto::Sealed;
use crate::data::{DataKind, Kind};
use crate::purpose::{Purpose, PurposeId};
use crate::recipient::RoleId;
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::transfer::Mechanism;
use crate::{Custodian, Error};

pub(crate) mod sealed {
    use crate::{Custodian, Error};

    /// A value only the crate can make: a method that takes one cannot be
    /// called from outside, even where the trait that has it is reachable.
    pub struct Only(pub(super) ());

    /// Private supertrait: closes the set of stored records and carries the
    /// crate-internal report path. Not nameable outside the crate, and its
    /// method needs an [`Only`] besides, so no host code can call it.
    pub trait Sealed {
        /// Opens the record as a disclosure to its subject (audited) and
        /// renders the value for them; `Ok(None)` where the purpose never
        /// shows plaintext.
        fn open_for_subject(
            &self,
            custodian: &Custodian,
            only: Only,
        ) -> Result<Option<super::ReportValue>, Error>;
    }
}

/// A stored envelope of any kind and purpose, as a host's rows hold them: the
/// object-safe view of [`Sealed<T, P>`] used by reports and retention sweeps.
///
/// It exposes only what the envelope's header says in the clear. Opening
/// happens only inside [`Custodian::subject_report`], as an audited
/// disclosure to the subject; there is no public method that returns a
/// value.
pub trait StoredRecord: sealed::Sealed {
    /// The subject.
    fn subject(&self) -> SubjectId;
    /// The data kind.
    fn kind(&self) -> Kind;
    /// The purpose.
    fn purpose(&self) -> PurposeId;
    /// When the value was collected.
    fn collected_at(&self) -> Timestamp;
}

impl<T: DataKind, P: Purpose> sealed::Sealed for Sealed<T, P> {
    fn open_for_subject(
        &self,
        custodian: &Custodian,
        _: sealed::Only,
    ) -> Result<Option<ReportValue>, Error> {
        // Data held for a purpose that never sees plaintext (Improvement) is
        // shown as held, never opened (R6).
        if !P::ID.sees_plaintext() {
            return Ok(None);
        }
        let mut event = AuditEvent::new(
            custodian.now(),
            Sealed::subject(self),
            Action::Disclose,
            crate::policy::RuleId::R11,
        )
        .about(T::KIND, P::ID);
        event.recipient = Some(RecipientRef {
            name: SUBJECT_RECIPIENT.into(),
            role: RoleId::DataSubject,
        });
        let info = custodian.open_as(self, event)?;
        let mut text = Zeroizing::new(String::new());
        info.value().report_into(&mut text);
        Ok(Some(ReportValue(text)))
    }
}

/// The recipient name a report's disclosures to the subject are recorded under.
pub const SUBJECT_RECIPIENT: &str = "the data subject";

impl<T: DataKind, P: Purpose> StoredRecord for Sealed<T, P> {
    fn subject(&self) -> SubjectId {
        Sealed::subject(self)
    }
    fn kind(&self) -> Kind {
        T::KIND
    }
    fn purpose(&self) -> PurposeId {
        P::ID
    }
    fn collected_at(&self) -> Timestamp {
        Sealed::collected_at(self)
    }
}

/// A value shown to its subject: wiped on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct ReportValue(Zeroizing<String>);

impl ReportValue {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ReportValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReportValue([redacted])")
    }
}

impl Serialize for ReportValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why a record's value is not shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// Past its retention period.
    Expired,
    /// The subject was erased.
    Erased,
    /// The envelope did not open (altered, or sealed under other keys).
    Unreadable,
    /// Held for a purpose that never sees plaintext
    /// ([`Improvement`](crate::purpose::Improvement), R6): held, not shown.
    NotShown,
}

/// One record held on the subject.
#[derive(Clone, Debug, Serialize)]
pub struct HeldRecord {
    /// The data kind.
    pub kind: Kind,
    /// The purpose it is held for.
    pub purpose: PurposeId,
    /// The purpose's Fideslang data-use key.
    pub fides_key: &'static str,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// When its retention period ends, if it has a fixed one.
    pub kept_until: Option<Timestamp>,
    /// The value, for the subject's eyes.
    pub value: Option<ReportValue>,
    /// Why the value is not shown, if it is not.
    pub withheld: Option<Withheld>,
}

/// A disclosure of the subject's data, from the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DisclosureEntry {
    /// When.
    pub at: Timestamp,
    /// To whom.
    pub recipient: String,
    /// The recipient's role.
    pub role: RoleId,
    /// What kind of data.
    pub kind: Option<Kind>,
    /// Held for what purpose.
    pub purpose: Option<PurposeId>,
    /// Whether only a pseudonym was shared.
    pub pseudonym_only: bool,
}

/// A transfer of the subject's data, from the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TransferEntry {
    /// When.
    pub at: Timestamp,
    /// Where to.
    pub country: Option<Country>,
    /// Under which mechanism.
    pub mechanism: Option<Mechanism>,
    /// What kind of data.
    pub kind: Option<Kind>,
}

/// A consent the subject gave, as the report shows it: whether it is live,
/// when it was last given and when last withdrawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentEntry {
    /// The purpose.
    pub purpose: PurposeId,
    /// Whether the consent is live.
    pub granted: bool,
    /// When it was last granted or withdrawn.
    pub since: Timestamp,
    /// When it was last given: the consent's own time while it is live,
    /// otherwise the last grant the verified trail holds (`None` if the
    /// trail holds none, e.g. archived away).
    pub granted_at: Option<Timestamp>,
    /// When it was last withdrawn, if ever.
    pub withdrawn_at: Option<Timestamp>,
}

/// Everything held on one subject, for that subject.
///
/// Contains plaintext by design (it answers the person's right of access), so
/// it is produced only through the audited
/// [`Custodian::subject_report`](crate::Custodian::subject_report); values are
/// wiped on drop and `Debug` redacts them.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectReport {
    subject: SubjectId,
    generated_at: Timestamp,
    erased_at: Option<Timestamp>,
    records: Vec<HeldRecord>,
    disclosures: Vec<DisclosureEntry>,
    transfers: Vec<TransferEntry>,
    #[serde(skip)]
    consents: Vec<ConsentState>,
    #[serde(rename = "consents")]
    consent_entries: Vec<ConsentEntry>,
    trail: TrailCoverage,
}

/// How far the audit trail a report was made from is vouched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
struct TrailCoverage {
    fully_vouched: bool,
    unvouched_entries: u64,
    archived_entries: u64,
}

impl SubjectReport {
    /// The subject.
    pub fn subject(&self) -> SubjectId {
        self.subject
    }
    /// When the report was made.
    pub fn generated_at(&self) -> Timestamp {
        self.generated_at
    }
    /// When the subject was erased, if they were.
    pub fn erased_at(&self) -> Option<Timestamp> {
        self.erased_at
    }
    /// The records held.
    pub fn records(&self) -> &[HeldRecord] {
        &self.records
    }
    /// Who received what and when.
    pub fn disclosures(&self) -> &[DisclosureEntry] {
        &self.disclosures
    }
    /// Transfers to other countries, and disclosures to recipients that
    /// process the data abroad (each listed under its disclosure too).
    pub fn transfers(&self) -> &[TransferEntry] {
        &self.transfers
    }
    /// Consents recorded, live or withdrawn.
    pub fn consents(&self) -> &[ConsentState] {
        &self.consents
    }
    /// Whether trusted checkpoints (not chosen by the report's caller) vouch
    /// for every entry of the trail the report was made from. When `false`,
    /// "we shared none of it" means only "none in the entries we could
    /// check": entries past the last checkpoint could have been cut.
    pub fn is_fully_vouched(&self) -> bool {
        self.trail.fully_vouched
    }
    /// How many entries of that trail no trusted checkpoint vouches for
    /// ([`VerifiedTrail::unvouched`]).
    pub fn unvouched_entries(&self) -> u64 {
        self.trail.unvouched_entries
    }
    /// How many entries were archived before the trail the report was made
    /// from ([`VerifiedTrail::archived`]): what they record (a disclosure,
    /// a transfer) is not in the report, and the letter says so.
    pub fn archived_entries(&self) -> u64 {
        self.trail.archived_entries
    }
    /// Consents recorded, live or withdrawn, with when each was given and
    /// withdrawn (what the JSON's `consents` holds).
    pub fn consent_entries(&self) -> &[ConsentEntry] {
        &self.consent_entries
    }

    /// The report as JSON, for the subject.
    pub fn to_json(&self) -> Result<Zeroizing<String>, serde_json::Error> {
        serde_json::to_string_pretty(self).map(Zeroizing::new)
    }

    /// The report as a short plain-text letter, for the subject.
    pub fn to_letter(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        let w = &mut *out;
        let _ = writeln!(w, "What we hold about you (reference {})", self.subject);
        let _ = writeln!(w, "Prepared {}.", self.generated_at);
        if !self.trail.fully_vouched {
            let _ = writeln!(
                w,
                "Caution: {} entries of our records of use are not yet confirmed by a signed checkpoint, so this account may be incomplete.",
                self.trail.unvouched_entries
            );
        }
        if self.trail.archived_entries > 0 {
            let _ = writeln!(
                w,
                "Caution: {} older entries of our records of use are archived and not part of this account; what they record is not listed below.",
                self.trail.archived_entries
            );
        }
        let _ = writeln!(w);
        if let Some(at) = self.erased_at {
            let _ = writeln!(
                w,
                "Your personal information was erased on {at}: the keys that protected it were destroyed, so no copy of it can be read any more."
            );
        }
        if self.records.is_empty() {
            let _ = writeln!(w, "We hold no readable personal information about you.");
        } else {
            let _ = writeln!(
                w,
                "{}",
                if self.erased_at.is_some() {
                    "Records still in storage, which no one can read any more:"
                } else {
                    "Information we hold:"
                }
            );
            for r in &self.records {
                let shown = match (&r.value, r.withheld) {
                    (Some(v), _) => v.as_str().to_owned(),
                    (None, Some(Withheld::Expired)) => {
                        "(past its retention period, due for deletion)".into()
                    }
                    (None, Some(Withheld::Erased)) => "(erased)".into(),
                    (None, Some(Withheld::NotShown)) => {
                        "(held only as a pseudonym for analysis; not shown)".into()
                    }
                    _ => "(unreadable)".into(),
                };
                let kept = r
                    .kept_until
                    .map(|t| format!(", kept until {}", t.date()))
                    .unwrap_or_default();
                let _ = writeln!(
                    w,
                    "- your {} (held for {}): {} (collected {}{kept})",
                    r.kind.label(),
                    r.purpose,
                    shown,
                    r.collected_at.date()
                );
            }
        }
        let _ = writeln!(w);
        if self.disclosures.is_empty() {
            let _ = writeln!(
                w,
                "{}",
                if self.trail.archived_entries > 0 {
                    "We shared none of it with anyone in the records this account covers."
                } else {
                    "We shared none of it with anyone."
                }
            );
        } else {
            let _ = writeln!(w, "Who received it:");
            for d in &self.disclosures {
                let what = d.kind.map(|k| k.label()).unwrap_or("data");
                let why = d.purpose.map(|p| format!(" for {p}")).unwrap_or_default();
                let how = if d.pseudonym_only {
                    " (a pseudonym only)"
                } else {
                    ""
                };
                let _ = writeln!(
                    w,
                    "- {} ({}) received your {what}{how}{why} on {}",
                    d.recipient, d.role, d.at
                );
            }
        }
        if !self.transfers.is_empty() {
            let _ = writeln!(w, "Transfers abroad:");
            for t in &self.transfers {
                let to = t.country.map(|c| c.to_string()).unwrap_or_default();
                let under = t
                    .mechanism
                    .map(|m| format!(" under {m}"))
                    .unwrap_or_default();
                let _ = writeln!(w, "- to {to}{under} on {}", t.at);
            }
        }
        let live: Vec<_> = self.consent_entries.iter().filter(|c| c.granted).collect();
        if live.is_empty() {
            let _ = writeln!(w, "You have given no marketing consent.");
        } else {
            let _ = writeln!(w, "Consents you have given (withdraw any time):");
            for c in live {
                let _ = writeln!(w, "- {} since {}", c.purpose, c.since);
            }
        }
        let withdrawn: Vec<_> = self.consent_entries.iter().filter(|c| !c.granted).collect();
        if !withdrawn.is_empty() {
            let _ = writeln!(w, "Consents you withdrew:");
            for c in withdrawn {
                let given = c
                    .granted_at
                    .map(|t| format!("given {t}, "))
                    .unwrap_or_default();
                let _ = writeln!(w, "- {} ({given}withdrawn {})", c.purpose, c.since);
            }
        }
        out
    }
}

impl Custodian {
    /// When the report says the subject was erased: as the freshness anchor
    /// says, else as the verified trail's `erase` event says. A key-store
    /// tombstone backs neither (a row the operator can write, A2). Beside
    /// the subject's keys it is refused (a store's `destroy` deletes them
    /// with the same commit); otherwise it is believed only where anchor
    /// and trail cannot speak: with no anchor, or with part of the trail
    /// archived (the erasure may be in the archive). Otherwise it is a
    /// tombstone nobody wrote, and the report fails rather than say a live
    /// subject was erased and hide their values.
    fn reported_erasure(
        &self,
        subject: SubjectId,
        trail: &[AuditEvent],
        archived: u64,
    ) -> Result<Option<Timestamp>, Error> {
        if let Some(at) = self.anchored_erasure(subject)? {
            return Ok(Some(at));
        }
        let erased = |e: &&AuditEvent| {
            e.subject() == subject && e.action() == Action::Erase && e.outcome() == Outcome::Allowed
        };
        if let Some(e) = trail.iter().find(erased) {
            return Ok(Some(e.time()));
        }
        // Not in the anchor: what `erased_at` answers is the tombstone.
        match self.erased_at(subject)? {
            Some(_) if self.has_anchor() && archived == 0 => {
                Err(Error::Anchor(crate::freshness::AnchorError::new(
                    "the key store holds an erasure tombstone for the subject that neither the \
                     freshness anchor nor the verified trail records (a row written into the \
                     database)",
                )))
            }
            // Beside the subject's keys it is a row nobody's `destroy`
            // wrote (A2): believed, it would hide values that still open.
            Some(_) if self.holds_keys_of(subject)? => Err(crate::crypto::KeyStoreError::Conflict(
                "the key store holds an erasure tombstone for the subject beside its live keys \
                 (a row written into the database, or keys put back)"
                    .into(),
            )
            .into()),
            Some(at) => Ok(Some(at)),
            None => Ok(None),
        }
    }

    /// Produces the subject's report from their stored records and the audit
    /// trail (R11). Records of other subjects in `records` and events of other
    /// subjects in `trail` are ignored.
    ///
    /// The trail is a [`VerifiedTrail`] that this custodian verified
    /// ([`Custodian::verify_trail`], against checkpoints from its own
    /// checkpoint store): a trail with disclosure events filtered out or cut
    /// short of a checkpoint, or a forged erasure added, does not verify, so
    /// the letter cannot be made to say "we shared none of it" or to hide
    /// the values. Nor can an erasure tombstone written into the key store:
    /// with a freshness anchor, a tombstone that neither the anchor nor the
    /// verified trail records fails the report ([`Error::Anchor`]) unless
    /// part of the trail is archived (the erasure may be there); and with
    /// or without an anchor, a tombstone beside the subject's keys fails it
    /// ([`Error::KeyStore`]: a store's `destroy` deletes the keys in the
    /// commit that writes it). Left unseen: a tombstone written, and the
    /// keys deleted, by the operator where the anchor cannot speak — the
    /// values are then lost, and the letter dates their erasure as the row
    /// says. Entries archived before the trail (behind an archive
    /// base) are not in it: the report counts them
    /// ([`SubjectReport::archived_entries`]) and the letter says what it
    /// does not cover. Entries no trusted checkpoint vouches for (or a trail
    /// verified against a checkpoint its caller chose,
    /// [`Custodian::verify_trail_unverified`]) are not refused, but the
    /// report says so ([`SubjectReport::is_fully_vouched`], and a caution in
    /// the letter).
    ///
    /// A consent row of the subject that cannot be read or fails its checks
    /// (edited, deleted, rolled back) fails the report with that error: a
    /// letter that left the consent out would misstate it.
    ///
    /// Recorded first as a `report` event. Each value shown is a disclosure
    /// to the subject, recorded before the envelope is opened (recipient
    /// [`SUBJECT_RECIPIENT`], role [`RoleId::DataSubject`]). Data held for
    /// [`Improvement`](crate::purpose::Improvement) is listed as held and
    /// never opened ([`Withheld::NotShown`]).
    pub fn subject_report(
        &self,
        subject: SubjectId,
        records: &[&dyn StoredRecord],
        trail: &VerifiedTrail,
    ) -> Result<SubjectReport, Error> {
        trail.check_owner(self.id)?;
        let coverage = TrailCoverage {
            fully_vouched: trail.is_fully_vouched(),
            unvouched_entries: trail.unvouched(),
            archived_entries: trail.archived(),
        };
        let trail = trail.events();
        let now = self.now();
        self.record(AuditEvent::new(
            now,
            subject,
            Action::Report,
            crate::policy::RuleId::R11,
        ))?;
        let erased_at = self.reported_erasure(subject, trail, coverage.archived_entries)?;
        let mut held = Vec::new();
        for r in records.iter().filter(|r| r.subject() == subject) {
            let (value, withheld) = if erased_at.is_some() {
                (None, Some(Withheld::Erased))
            } else {
                match r.open_for_subject(self, sealed::Only(())) {
                    Ok(Some(v)) => (Some(v), None),
                    Ok(None) => (None, Some(Withheld::NotShown)),
                    Err(Error::Expired { .. }) => (None, Some(Withheld::Expired)),
                    Err(Error::Erased { .. }) => (None, Some(Withheld::Erased)),
                    Err(e @ (Error::Audit(_) | Error::Reentrant)) => return Err(e),
                    Err(_) => (None, Some(Withheld::Unreadable)),
                }
            };
            held.push(HeldRecord {
                kind: r.kind(),
                purpose: r.purpose(),
                fides_key: r.purpose().fides_key(),
                collected_at: r.collected_at(),
                kept_until: match withheld {
                    Some(Withheld::Erased) => None,
                    _ => self.retention().expires_at(r.purpose(), r.collected_at()),
                },
                value,
                withheld,
            });
        }
        let mine = || {
            trail
                .iter()
                .filter(move |e| e.subject() == subject && e.outcome() == Outcome::Allowed)
        };
        let disclosures = mine()
            .filter(|e| e.action() == Action::Disclose)
            .filter_map(|e| {
                e.recipient()
                    .filter(|r| r.role != RoleId::DataSubject)
                    .map(|r| DisclosureEntry {
                        at: e.time(),
                        recipient: r.name.to_string(),
                        role: r.role,
                        kind: e.kind(),
                        purpose: e.purpose(),
                        pseudonym_only: e.target_purpose() == Some(PurposeId::Improvement),
                    })
            })
            .collect();
        // Transfers, and disclosures to a recipient processing abroad
        // (their events name the country).
        let transfers = mine()
            .filter(|e| {
                e.action() == Action::Transfer
                    || e.action() == Action::Disclose && e.country().is_some()
            })
            .map(|e| TransferEntry {
                at: e.time(),
                country: e.country(),
                mechanism: e.mechanism(),
                kind: e.kind(),
            })
            .collect();
        // A consent row that cannot be read (edited, deleted, rolled back)
        // fails the report: left out, the letter would say no consent was
        // given beside a use the consent allowed.
        let consents = self.consents.try_of(subject)?;
        let consent_entries = consents
            .iter()
            .map(|c| ConsentEntry {
                purpose: c.purpose,
                granted: c.granted,
                since: c.since,
                granted_at: if c.granted {
                    Some(c.since)
                } else {
                    mine()
                        .filter(|e| {
                            e.action() == Action::ConsentGranted
                                && e.purpose() == Some(c.purpose)
                                && e.time() <= c.since
                        })
                        .map(AuditEvent::time)
                        .max()
                },
                withdrawn_at: c.withdrawn_at,
            })
            .collect();
        Ok(SubjectReport {
            subject,
            generated_at: now,
            erased_at,
            records: held,
            disclosures,
            transfers,
            consents,
            consent_entries,
            trail: coverage,
        })
    }
}
