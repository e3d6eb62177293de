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
    fn parse_round_trip() {
        for id in RuleId::ALL {
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(id));
        }
        assert!("R12".parse::<RuleId>().is_err());
        assert!("r1".parse::<RuleId>().is_err());
    }
}
