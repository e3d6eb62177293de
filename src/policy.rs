//! The privacy policy as data: every rule the crate enforces, traced to the
//! sentence of the policy it comes from.
//!
//! The same table is shown on the crate's front page; a test keeps the two in
//! step. Audit events name the [`RuleId`] that allowed or refused each use, so a
//! reader can go from an event to the rule and from the rule to the policy.
//!
//! ```
//! use privacy_pledge::policy::{self, RuleId};
//!
//! let r3 = policy::rule(RuleId::R3);
//! assert!(r3.summary.contains("third part"));
//! assert_eq!(policy::RULES.len(), 11);
//! ```

use serde::{Deserialize, Serialize};

/// Identifier of one rule of the policy (`R1` … `R11`).
///
/// ```
/// use privacy_pledge::policy::RuleId;
/// assert_eq!(RuleId::R6.to_string(), "R6");
/// assert_eq!("R6".parse::<RuleId>(), Ok(RuleId::R6));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuleId {
    /// Only the listed kinds of personal information are collected.
    R1,
    /// Purposes form a closed set.
    R2,
    /// No disclosure to third parties.
    R3,
    /// Email subscriber lists never leave the vendor's control.
    R4,
    /// Processors and affiliates receive data only for the purpose they serve.
    R5,
    /// Repurposing: compatible moves, consent, pseudonyms for improvement.
    R6,
    /// Service notices need no consent; marketing needs live consent.
    R7,
    /// Storage and processing only where the vendor has facilities.
    R8,
    /// Protection: sealed at rest, no plaintext in logs or errors.
    R9,
    /// Accountability: every use is audited first, fail closed.
    R10,
    /// Subject rights: export, erasure, retention.
    R11,
}

impl RuleId {
    /// All rule ids in order.
    pub const ALL: [RuleId; 11] = [
        RuleId::R1,
        RuleId::R2,
        RuleId::R3,
        RuleId::R4,
        RuleId::R5,
        RuleId::R6,
        RuleId::R7,
        RuleId::R8,
        RuleId::R9,
        RuleId::R10,
        RuleId::R11,
    ];

    /// The rule's id as text, e.g. `"R3"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::R1 => "R1",
            RuleId::R2 => "R2",
            RuleId::R3 => "R3",
            RuleId::R4 => "R4",
            RuleId::R5 => "R5",
            RuleId::R6 => "R6",
            RuleId::R7 => "R7",
            RuleId::R8 => "R8",
            RuleId::R9 => "R9",
            RuleId::R10 => "R10",
            RuleId::R11 => "R11",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for RuleId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a rule id (`R1` … `R11`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a rule id: expected R1 to R11")]
pub struct UnknownRule;

impl core::str::FromStr for RuleId {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRule)
    }
}

/// How a rule is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Enforcement {
    /// By the type system: a violation does not compile.
    Types,
    /// By the custodian at run time: a violation is an `Err`.
    Runtime,
    /// By the audit trail: every use is recorded before it happens.
    Audit,
    /// By encryption: data at rest is sealed.
    Crypto,
}

/// One rule of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Rule {
    /// The rule's id.
    pub id: RuleId,
    /// One-line summary of what the rule requires.
    pub summary: &'static str,
    /// The part of the policy the rule comes from.
    pub source: &'static str,
    /// How the crate enforces it.
    pub enforced: &'static [Enforcement],
}

use Enforcement::{Audit, Crypto, Runtime, Types};

/// Every rule of the policy, in order `R1` … `R11`.
pub const RULES: [Rule; 11] = [
    Rule {
        id: RuleId::R1,
        summary: "Only full name, email address, mailing address, phone number and purchase record are collected; card numbers are never held, only the processor's opaque token.",
        source: "What information we collect; \"3rd party credit card processors that encrypt all the customer's personal information\"",
        enforced: &[Types],
    },
    Rule {
        id: RuleId::R2,
        summary: "Purposes form a closed set: transaction, support, correspondence, service notice, newsletter, promotion, personalization, improvement.",
        source: "How We Use the Information We Collect",
        enforced: &[Types],
    },
    Rule {
        id: RuleId::R3,
        summary: "No purpose permits selling, renting, leasing or distributing personal or purchase information to third parties.",
        source: "Opening paragraph: \"will not sell, distribute, or rent information about you\"",
        enforced: &[Types],
    },
    Rule {
        id: RuleId::R4,
        summary: "Email subscriber lists reach only a processor delivering mail on the vendor's behalf; never sold, leased or rented.",
        source: "\"will not sell, lease or rent its email subscriber lists to third parties\"",
        enforced: &[Types],
    },
    Rule {
        id: RuleId::R5,
        summary: "Processors and affiliates receive data only for the purpose they serve; every disclosure names its recipient in the audit trail.",
        source: "\"3rd party credit card processors\"; \"affiliates, subsidiaries or agents\"",
        enforced: &[Types, Audit],
    },
    Rule {
        id: RuleId::R6,
        summary: "Repurposing is allowed only between compatible purposes; marketing and personalization need live consent; improvement gets only keyed pseudonyms.",
        source: "How We Use the Information We Collect: \"customized to your interests and preferences\"",
        enforced: &[Types, Runtime],
    },
    Rule {
        id: RuleId::R7,
        summary: "Service notices are mandatory and need no consent; newsletters need a subscription; promotional mail needs consent that has not been withdrawn.",
        source: "\"mandatory service communications\"; \"may also occasionally send you product surveys or promotional mailings\"",
        enforced: &[Runtime],
    },
    Rule {
        id: RuleId::R8,
        summary: "Data is stored and processed only in declared facility countries; a transfer out of the EEA records its current legal mechanism.",
        source: "\"stored and processed in the United States or any other country in which iBeesoft or its affiliates, subsidiaries or agents maintain facilities\"",
        enforced: &[Runtime, Audit],
    },
    Rule {
        id: RuleId::R9,
        summary: "Personal fields are sealed at rest; plaintext and keys are wiped on drop; no plaintext in Debug, Display, errors, panics, audit events or serialized forms.",
        source: "How We Protect the Information We Collect",
        enforced: &[Types, Crypto],
    },
    Rule {
        id: RuleId::R10,
        summary: "Every use is offered to the audit hook before it takes effect; if the hook fails the use does not happen; the built-in log is tamper-evident.",
        source: "\"security technologies and procedures to help protect your personal information from unauthorized access, use, or disclosure\"",
        enforced: &[Audit],
    },
    Rule {
        id: RuleId::R11,
        summary: "Subjects can get everything held on them and be erased by destroying their data key; each purpose has a retention limit.",
        source: "\"If you have any questions about this Policy, please feel free to contact us\"",
        enforced: &[Runtime, Crypto],
    },
];

/// The rule with the given id.
///
/// ```
/// use privacy_pledge::policy::{rule, RuleId};
/// assert_eq!(rule(RuleId::R10).id, RuleId::R10);
/// ```
pub fn rule(id: RuleId) -> &'static Rule {
    &RULES[id.index()]
}

/// Whether the compiler accepts a (purpose, role) or (from, to) pair: the
/// record of processing below is *read off the trait impls* the compiler
/// enforces, with autoref-based dispatch on concrete types, so it cannot
/// drift from the code.
mod probe {
    use core::marker::PhantomData;

    use crate::purpose::{CompatibleFrom, Purpose};
    use crate::recipient::{PermittedFor, PseudonymsFor};

    pub(super) struct Disclose<P, R>(pub(super) PhantomData<(P, R)>);
    pub(super) trait Allowed {
        fn allowed(&self) -> bool {
            true
        }
    }
    pub(super) trait Refused {
        fn allowed(&self) -> bool {
            false
        }
    }
    impl<P: Purpose, R: PermittedFor<P>> Allowed for Disclose<P, R> {}
    impl<T> Refused for &T {}

    pub(super) struct Pseudonyms<P, R>(pub(super) PhantomData<(P, R)>);
    impl<P: Purpose, R: PseudonymsFor<P>> Allowed for Pseudonyms<P, R> {}

    pub(super) struct Move<P, Q>(pub(super) PhantomData<(P, Q)>);
    impl<P: Purpose, Q: CompatibleFrom<P>> Allowed for Move<P, Q> {}
}

macro_rules! roles_for {
    ($p:ty) => {{
        #[allow(unused_imports)]
        use probe::{Allowed as _, Refused as _};
        let mut roles = Vec::new();
        if (&probe::Disclose::<$p, Processor>(PhantomData)).allowed() {
            roles.push(RoleId::Processor);
        }
        if (&probe::Disclose::<$p, Affiliate>(PhantomData)).allowed() {
            roles.push(RoleId::Affiliate);
        }
        if (&probe::Disclose::<$p, ThirdParty>(PhantomData)).allowed() {
            roles.push(RoleId::ThirdParty);
        }
        let mut pseudonyms = Vec::new();
        if (&probe::Pseudonyms::<$p, Processor>(PhantomData)).allowed() {
            pseudonyms.push(RoleId::Processor);
        }
        if (&probe::Pseudonyms::<$p, Affiliate>(PhantomData)).allowed() {
            pseudonyms.push(RoleId::Affiliate);
        }
        if (&probe::Pseudonyms::<$p, ThirdParty>(PhantomData)).allowed() {
            pseudonyms.push(RoleId::ThirdParty);
        }
        (roles, pseudonyms)
    }};
}

macro_rules! moves_from {
    ($p:ty) => {{
        #[allow(unused_imports)]
        use probe::{Allowed as _, Refused as _};
        let mut to = Vec::new();
        if (&probe::Move::<$p, Transaction>(PhantomData)).allowed() {
            to.push(PurposeId::Transaction);
        }
        if (&probe::Move::<$p, Support>(PhantomData)).allowed() {
            to.push(PurposeId::Support);
        }
        if (&probe::Move::<$p, Correspondence>(PhantomData)).allowed() {
            to.push(PurposeId::Correspondence);
        }
        if (&probe::Move::<$p, ServiceNotice>(PhantomData)).allowed() {
            to.push(PurposeId::ServiceNotice);
        }
        if (&probe::Move::<$p, Newsletter>(PhantomData)).allowed() {
            to.push(PurposeId::Newsletter);
        }
        if (&probe::Move::<$p, Promotion>(PhantomData)).allowed() {
            to.push(PurposeId::Promotion);
        }
        if (&probe::Move::<$p, Personalization>(PhantomData)).allowed() {
            to.push(PurposeId::Personalization);
        }
        if (&probe::Move::<$p, Improvement>(PhantomData)).allowed() {
            to.push(PurposeId::Improvement);
        }
        to
    }};
}

use core::marker::PhantomData;

use crate::country::Country;
use crate::data::Kind;
use crate::purpose::{
    Correspondence, Improvement, Newsletter, Personalization, Promotion, PurposeId, ServiceNotice,
    Support, Transaction,
};
use crate::recipient::{Affiliate, Processor, RegisteredRecipient, RoleId, ThirdParty};
use crate::retention::{Retention, RetentionPolicy};

/// A data category processed, with its Fideslang key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Category {
    /// The data kind.
    pub kind: Kind,
    /// Its Fideslang data category.
    pub fides_category: &'static str,
}

/// One processing activity of the record: a purpose and everything about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// The purpose.
    pub purpose: PurposeId,
    /// Its Fideslang data-use key.
    pub fides_key: &'static str,
    /// The policy sentence it comes from.
    pub policy_text: &'static str,
    /// The legal ground: `contract`, `legal_obligation`, `legitimate_interest` or `consent`.
    pub legal_basis: &'static str,
    /// Whether the holder sees plaintext (false: pseudonyms only).
    pub plaintext: bool,
    /// The data categories processed.
    pub categories: Vec<Category>,
    /// Recipient roles that may receive the data (read off the compiler's rules).
    pub recipient_roles: Vec<RoleId>,
    /// Recipient roles that may receive keyed pseudonyms of it (read off the
    /// compiler's rules, like `recipient_roles`).
    pub pseudonym_recipient_roles: Vec<RoleId>,
    /// Purposes the data may move to without consent.
    pub compatible_moves: Vec<PurposeId>,
    /// How long it is kept.
    pub retention: Retention,
}

/// The controller's record of processing (GDPR Art. 30), generated from the
/// same types and tables the compiler and the custodian enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessingRecord {
    /// The policy the record describes.
    pub policy: &'static str,
    /// Every processing activity, one per purpose.
    pub activities: Vec<Activity>,
    /// Countries where data may be stored and processed (the host's declared facilities).
    pub transfer_destinations: Vec<Country>,
    /// The recipients the host registered (name, role, where they process),
    /// when the custodian's registry is on; empty otherwise.
    pub recipients: Vec<RegisteredRecipient>,
    /// The rules, as in [`RULES`].
    pub rules: Vec<Rule>,
}

impl ProcessingRecord {
    /// The record as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Every field is plain data with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn legal_basis(p: PurposeId) -> &'static str {
    match p {
        PurposeId::Transaction | PurposeId::Support | PurposeId::ServiceNotice => "contract",
        PurposeId::Correspondence | PurposeId::Improvement => "legitimate_interest",
        PurposeId::Newsletter | PurposeId::Promotion | PurposeId::Personalization => "consent",
    }
}

/// The record of processing with the default retention and no declared
/// facilities; [`Custodian::processing_record`](crate::Custodian::processing_record)
/// fills in a host's own.
///
/// ```
/// use privacy_pledge::policy::processing_record;
/// use privacy_pledge::purpose::PurposeId;
/// use privacy_pledge::recipient::RoleId;
///
/// let record = processing_record();
/// let newsletter = record.activities.iter().find(|a| a.purpose == PurposeId::Newsletter).unwrap();
/// assert_eq!(newsletter.recipient_roles, [RoleId::Processor]);
/// assert!(record.to_json().contains("marketing.communications.email"));
/// ```
pub fn processing_record() -> ProcessingRecord {
    processing_record_with(&RetentionPolicy::default(), &[], &[])
}

// The borrows below are the dispatch: `(&probe).allowed()` picks the
// `Allowed` impl when the compiler's rule admits the pair, `Refused` otherwise.
#[allow(clippy::needless_borrow)]
pub(crate) fn processing_record_with(
    retention: &RetentionPolicy,
    facilities: &[Country],
    recipients: &[RegisteredRecipient],
) -> ProcessingRecord {
    type Roles = (Vec<RoleId>, Vec<RoleId>);
    let table: [(PurposeId, Roles, Vec<PurposeId>); 8] = [
        (
            PurposeId::Transaction,
            roles_for!(Transaction),
            moves_from!(Transaction),
        ),
        (
            PurposeId::Support,
            roles_for!(Support),
            moves_from!(Support),
        ),
        (
            PurposeId::Correspondence,
            roles_for!(Correspondence),
            moves_from!(Correspondence),
        ),
        (
            PurposeId::ServiceNotice,
            roles_for!(ServiceNotice),
            moves_from!(ServiceNotice),
        ),
        (
            PurposeId::Newsletter,
            roles_for!(Newsletter),
            moves_from!(Newsletter),
        ),
        (
            PurposeId::Promotion,
            roles_for!(Promotion),
            moves_from!(Promotion),
        ),
        (
            PurposeId::Personalization,
            roles_for!(Personalization),
            moves_from!(Personalization),
        ),
        (
            PurposeId::Improvement,
            roles_for!(Improvement),
            moves_from!(Improvement),
        ),
    ];
    let categories: Vec<Category> = Kind::ALL
        .into_iter()
        .map(|kind| Category {
            kind,
            fides_category: kind.fides_category(),
        })
        .collect();
    ProcessingRecord {
        policy: "iBeesoft Privacy Policy (archived 2018-06-30)",
        activities: table
            .into_iter()
            .map(
                |(purpose, (recipient_roles, pseudonym_recipient_roles), compatible_moves)| {
                    Activity {
                        purpose,
                        fides_key: purpose.fides_key(),
                        policy_text: purpose.policy_text(),
                        legal_basis: legal_basis(purpose),
                        plaintext: purpose.sees_plaintext(),
                        categories: categories.clone(),
                        recipient_roles,
                        pseudonym_recipient_roles,
                        compatible_moves,
                        retention: retention.get(purpose),
                    }
                },
            )
            .collect(),
        transfer_destinations: facilities.to_vec(),
        recipients: recipients.to_vec(),
        rules: RULES.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_order() {
        for (i, r) in RULES.iter().enumerate() {
            assert_eq!(r.id.index(), i);
            assert_eq!(RuleId::ALL[i], r.id);
        }
    }

    #[test]
    fn crate_docs_show_every_rule() {
        let lib = include_str!("lib.rs");
        for r in &RULES {
            let row = format!("| {} | {} |", r.id, r.summary);
            assert!(lib.contains(&row), "crate docs lack the row for {}", r.id);
        }
    }

    #[test]
    fn processing_record_matches_the_rule_table() {
        use RoleId::{Affiliate as A, Processor as Pr};
        let r = processing_record();
        let roles: Vec<(PurposeId, Vec<RoleId>)> = r
            .activities
            .iter()
            .map(|a| (a.purpose, a.recipient_roles.clone()))
            .collect();
        // The matrix of DESIGN.md: no purpose ever permits a third party (R3),
        // subscriber and marketing lists reach processors only (R4), and
        // Improvement gets no plaintext (R6).
        assert_eq!(
            roles,
            vec![
                (PurposeId::Transaction, vec![Pr, A]),
                (PurposeId::Support, vec![Pr, A]),
                (PurposeId::Correspondence, vec![Pr, A]),
                (PurposeId::ServiceNotice, vec![Pr, A]),
                (PurposeId::Newsletter, vec![Pr]),
                (PurposeId::Promotion, vec![Pr]),
                (PurposeId::Personalization, vec![Pr]),
                (PurposeId::Improvement, vec![]),
            ]
        );
        let improvement = &r.activities[7];
        assert_eq!(improvement.pseudonym_recipient_roles, vec![Pr, A]);
        assert!(!improvement.plaintext);
        // Pseudonyms follow the plaintext's roles (a pseudonymised list is
        // still the list, R4), and Improvement's go to processors and affiliates.
        let pseudonym_roles: Vec<_> = r
            .activities
            .iter()
            .map(|a| a.pseudonym_recipient_roles.clone())
            .collect();
        assert_eq!(pseudonym_roles[..4], vec![vec![Pr, A]; 4]);
        assert_eq!(pseudonym_roles[4..7], vec![vec![Pr]; 3]);
        let moves: Vec<_> = r
            .activities
            .iter()
            .map(|a| a.compatible_moves.clone())
            .collect();
        assert_eq!(
            moves[0],
            vec![
                PurposeId::Support,
                PurposeId::Correspondence,
                PurposeId::ServiceNotice
            ]
        );
        assert!(
            moves[4..].iter().all(Vec::is_empty),
            "nothing leaves a consent-based purpose or Improvement"
        );
        for a in &r.activities {
            assert_eq!(a.legal_basis == "consent", a.purpose.needs_consent());
            assert_eq!(a.categories.len(), Kind::ALL.len());
        }
        assert_eq!(r.rules.len(), RULES.len());
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            json["activities"][4]["fides_key"],
            "marketing.communications.email"
        );
    }

    #[test]
    fn parse_round_trip() {
        for id in RuleId::ALL {
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(id));
        }
        assert!("R12".parse::<RuleId>().is_err());
        assert!("r1".parse::<RuleId>().is_err());
    }
}
