//! Purposes: why personal information is held (rule R2).
//!
//! The policy lists what the vendor uses personal information for, and nothing
//! else. Each use is a zero-sized marker type, and [`Purpose`] is sealed, so no
//! host can add a purpose of its own: a `PersonalInfo<T, P>` can only ever be
//! bound to one of the eight purposes below.
//!
//! ```
//! use privacy_pledge::purpose::{Purpose, PurposeId, Transaction, Newsletter};
//!
//! assert_eq!(Transaction::ID, PurposeId::Transaction);
//! assert_eq!(Transaction::ID.fides_key(), "essential.service.payment_processing");
//! assert!(Newsletter::ID.needs_consent());
//! ```
//!
//! Moving data from one purpose to another is *repurposing* (R6). A move the
//! policy allows implements [`CompatibleFrom`]; a move into a consent-based
//! purpose ([`ConsentBased`]) needs a live consent proof; nothing but keyed
//! pseudonyms ever reaches [`Improvement`]. A host cannot invent a purpose:
//!
//! ```compile_fail
//! use privacy_pledge::purpose::{Purpose, PurposeId};
//! enum Resale {}
//! impl Purpose for Resale { const ID: PurposeId = PurposeId::Transaction; }
//! ```

use serde::{Deserialize, Serialize};

pub(crate) mod sealed {
    /// Private supertrait that closes the set of purposes.
    #[diagnostic::on_unimplemented(
        message = "R2: `{Self}` is not one of the privacy policy's purposes; the set of purposes is closed",
        label = "not a purpose of the policy",
        note = "the purposes are Transaction, Support, Correspondence, ServiceNotice, Newsletter, Promotion, Personalization and Improvement"
    )]
    pub trait Sealed {}
}

/// A purpose of the policy: a sealed, zero-sized marker.
///
/// Implemented only by the eight markers of this module.
pub trait Purpose: sealed::Sealed + Send + Sync + 'static {
    /// The purpose as a value, for audit events, storage and reports.
    const ID: PurposeId;
}

/// A purpose whose use needs the subject's live consent (R6, R7): a newsletter
/// subscription, promotional mail, or personalization.
///
/// Consent calls (`grant`, `withdraw`, `consent_proof`) accept only these.
#[diagnostic::on_unimplemented(
    message = "R7: `{Self}` needs no consent record; consent is granted and withdrawn only for Newsletter, Promotion and Personalization",
    label = "not a consent-based purpose",
    note = "service notices are mandatory (R7) and compatible moves need no consent (R6)"
)]
pub trait ConsentBased: Purpose {}

/// A purpose whose holder may see plaintext: every purpose but [`Improvement`].
///
/// `access` and `disclose` require it, so analysis and research never touch a
/// plaintext value (R6).
#[diagnostic::on_unimplemented(
    message = "R6: `{Self}` never sees plaintext personal information; analysis works on keyed pseudonyms",
    label = "plaintext is not available for this purpose",
    note = "use `custodian.pseudonym(&info)` and analyse the `Pseudonym<T>` tokens"
)]
pub trait SeesPlaintext: Purpose {}

/// `Self` is a purpose that data held for `P` may move to without consent (R6).
///
/// Compatible moves: `Transaction` → `Support`, `ServiceNotice`,
/// `Correspondence`; `Support` → `Correspondence`, `ServiceNotice`;
/// `Correspondence` → `Support`. A move into a consent-based purpose fails with
/// a message that points to `repurpose_with_consent`; a move into `Improvement`
/// fails with a message that points to pseudonyms.
#[diagnostic::on_unimplemented(
    message = "R6: personal information held for `{P}` may not be repurposed for `{Self}`",
    label = "not a compatible purpose",
    note = "compatible moves: Transaction -> Support | ServiceNotice | Correspondence; Support -> Correspondence | ServiceNotice; Correspondence -> Support"
)]
pub trait CompatibleFrom<P: Purpose>: Purpose {}

/// Leaf of the rule for moves into a consent-based purpose; it has no
/// implementations, so such a move without a proof never compiles.
#[diagnostic::on_unimplemented(
    message = "R6: moving `{Self}` data into a consent-based purpose (Newsletter, Promotion, Personalization) needs the subject's live consent",
    label = "needs consent",
    note = "use `custodian.repurpose_with_consent(info, &proof)` with a `ConsentProof` from `custodian.consent_proof::<P>(subject)`"
)]
pub trait MovesWithoutConsent: Purpose {}

/// Leaf of the rule for moves into [`Improvement`]; it has no implementations.
#[diagnostic::on_unimplemented(
    message = "R6: `{Self}` data cannot become Improvement data; improvement and research receive only keyed pseudonyms",
    label = "plaintext may not move to Improvement",
    note = "use `custodian.pseudonym(&info)`"
)]
pub trait PlaintextForImprovement: Purpose {}

/// A purpose as a value: the closed set of purposes of the policy.
///
/// Stable across versions: the serialized names and [`fides_key`](Self::fides_key)
/// values never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum PurposeId {
    /// See [`Transaction`].
    Transaction = 1,
    /// See [`Support`].
    Support = 2,
    /// See [`Correspondence`].
    Correspondence = 3,
    /// See [`ServiceNotice`].
    ServiceNotice = 4,
    /// See [`Newsletter`].
    Newsletter = 5,
    /// See [`Promotion`].
    Promotion = 6,
    /// See [`Personalization`].
    Personalization = 7,
    /// See [`Improvement`].
    Improvement = 8,
}

impl PurposeId {
    /// Every purpose, in order.
    pub const ALL: [PurposeId; 8] = [
        PurposeId::Transaction,
        PurposeId::Support,
        PurposeId::Correspondence,
        PurposeId::ServiceNotice,
        PurposeId::Newsletter,
        PurposeId::Promotion,
        PurposeId::Personalization,
        PurposeId::Improvement,
    ];

    /// The purpose's name, as in the type name.
    pub const fn name(self) -> &'static str {
        match self {
            PurposeId::Transaction => "Transaction",
            PurposeId::Support => "Support",
            PurposeId::Correspondence => "Correspondence",
            PurposeId::ServiceNotice => "ServiceNotice",
            PurposeId::Newsletter => "Newsletter",
            PurposeId::Promotion => "Promotion",
            PurposeId::Personalization => "Personalization",
            PurposeId::Improvement => "Improvement",
        }
    }

    /// The closest data use of the Fideslang taxonomy, for exporting records
    /// of processing to tools that speak it.
    ///
    /// ```
    /// use privacy_pledge::purpose::PurposeId;
    /// assert_eq!(PurposeId::Promotion.fides_key(), "marketing.communications");
    /// assert_eq!(PurposeId::Improvement.fides_key(), "analytics");
    /// ```
    pub const fn fides_key(self) -> &'static str {
        match self {
            PurposeId::Transaction => "essential.service.payment_processing",
            PurposeId::Support => "essential.service.operations.support",
            PurposeId::Correspondence => "essential.service.operations",
            PurposeId::ServiceNotice => "essential.service.notifications.email",
            PurposeId::Newsletter => "marketing.communications.email",
            PurposeId::Promotion => "marketing.communications",
            PurposeId::Personalization => "personalize",
            PurposeId::Improvement => "analytics",
        }
    }

    /// The sentence of the policy the purpose comes from.
    pub const fn policy_text(self) -> &'static str {
        match self {
            PurposeId::Transaction => "We just collect some neccessary information to complete purchase transactions and deliver our software.",
            PurposeId::Support => "These uses may include providing you with more effective customer service; making the sites or services easier to use by eliminating the need for you to repeatedly enter the same information.",
            PurposeId::Correspondence => "When you email to us, your email or name will be used for the communication between us.",
            PurposeId::ServiceNotice => "We may send certain mandatory service communications such as welcome letters, billing reminders, information on technical service issues, and security announcements.",
            PurposeId::Newsletter => "Some iBeesoft services, such as iBeesoft Newsletter, may send periodic member letters that are considered part of the service.",
            PurposeId::Promotion => "We may also occasionally send you product surveys or promotional mailings to inform you of other products or services available from iBeesoft and its affiliates.",
            PurposeId::Personalization => "displaying content and advertising that are customized to your interests and preferences.",
            PurposeId::Improvement => "iBeesoft collects and uses your personal information to operate and improve its sites; performing research and analysis aimed at improving our products, services and technologies.",
        }
    }

    /// Whether using data for this purpose needs the subject's consent (R7).
    pub const fn needs_consent(self) -> bool {
        matches!(
            self,
            PurposeId::Newsletter | PurposeId::Promotion | PurposeId::Personalization
        )
    }

    /// Whether holders of this purpose may see plaintext (all but `Improvement`).
    pub const fn sees_plaintext(self) -> bool {
        !matches!(self, PurposeId::Improvement)
    }

    /// The byte used for this purpose in envelopes and audit MACs.
    pub(crate) const fn code(self) -> u8 {
        self as u8
    }

    /// The purpose with code `code`, if there is one.
    pub(crate) fn from_code(code: u8) -> Option<PurposeId> {
        PurposeId::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }
}

impl core::fmt::Display for PurposeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! purposes {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {}
        impl sealed::Sealed for $name {}
        impl Purpose for $name {
            const ID: PurposeId = PurposeId::$name;
        }
    )*};
}

purposes! {
    /// Completing a purchase and delivering the software (Fideslang
    /// `essential.service.payment_processing`).
    ///
    /// > "We just collect some neccessary information to complete purchase
    /// > transactions and deliver our software."
    Transaction,
    /// Customer service and support, including pre-filling forms so people need
    /// not enter the same information again (`essential.service.operations.support`).
    ///
    /// > "providing you with more effective customer service; making the sites or
    /// > services easier to use by eliminating the need for you to repeatedly
    /// > enter the same information"
    Support,
    /// Answering mail a person sent (`essential.service.operations`).
    ///
    /// > "When you email to us, your email or name will be used for the
    /// > communication between us."
    Correspondence,
    /// Mandatory service communications: welcome letters, billing reminders,
    /// technical-issue notices, security announcements
    /// (`essential.service.notifications.email`). Needs no consent (R7).
    ///
    /// > "We may send certain mandatory service communications such as welcome
    /// > letters, billing reminders, information on technical service issues, and
    /// > security announcements."
    ServiceNotice,
    /// Periodic letters to newsletter subscribers
    /// (`marketing.communications.email`). Needs a subscription:
    /// `grant::<Newsletter>` (R7).
    ///
    /// > "Some iBeesoft services, such as iBeesoft Newsletter, may send periodic
    /// > member letters that are considered part of the service."
    Newsletter,
    /// Occasional product surveys and promotional mail about the vendor's and its
    /// affiliates' products (`marketing.communications`). Needs consent that
    /// has not been withdrawn (R7).
    ///
    /// > "We may also occasionally send you product surveys or promotional
    /// > mailings to inform you of other products or services available from
    /// > iBeesoft and its affiliates."
    Promotion,
    /// Content and advertising fitted to a person's interests (`personalize`).
    /// Needs consent (R6).
    ///
    /// > "displaying content and advertising that are customized to your
    /// > interests and preferences"
    Personalization,
    /// Operating and improving the sites, research and analysis (`analytics`).
    /// Receives only keyed pseudonyms, never plaintext (R6).
    ///
    /// > "performing research and analysis aimed at improving our products,
    /// > services and technologies"
    Improvement,
}

impl ConsentBased for Newsletter {}
impl ConsentBased for Promotion {}
impl ConsentBased for Personalization {}

impl SeesPlaintext for Transaction {}
impl SeesPlaintext for Support {}
impl SeesPlaintext for Correspondence {}
impl SeesPlaintext for ServiceNotice {}
impl SeesPlaintext for Newsletter {}
impl SeesPlaintext for Promotion {}
impl SeesPlaintext for Personalization {}

impl CompatibleFrom<Transaction> for Support {}
impl CompatibleFrom<Correspondence> for Support {}
impl CompatibleFrom<Transaction> for ServiceNotice {}
impl CompatibleFrom<Support> for ServiceNotice {}
impl CompatibleFrom<Transaction> for Correspondence {}
impl CompatibleFrom<Support> for Correspondence {}

impl<P: MovesWithoutConsent> CompatibleFrom<P> for Newsletter {}
impl<P: MovesWithoutConsent> CompatibleFrom<P> for Promotion {}
impl<P: MovesWithoutConsent> CompatibleFrom<P> for Personalization {}
impl<P: PlaintextForImprovement> CompatibleFrom<P> for Improvement {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keys_are_distinct() {
        let mut keys = std::collections::BTreeSet::new();
        for p in PurposeId::ALL {
            assert_eq!(PurposeId::ALL[usize::from(p.code()) - 1], p);
            assert!(keys.insert(p.fides_key()));
        }
    }

    #[test]
    fn consent_and_plaintext_sets() {
        let consent: Vec<_> = PurposeId::ALL
            .into_iter()
            .filter(|p| p.needs_consent())
            .collect();
        assert_eq!(
            consent,
            [
                PurposeId::Newsletter,
                PurposeId::Promotion,
                PurposeId::Personalization
            ]
        );
        assert!(!PurposeId::Improvement.sees_plaintext());
    }
}
