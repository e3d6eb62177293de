//! Transfers: where personal information may be stored and processed (rule R8).
//!
//! The policy says data "may be stored and processed in the United States or any
//! other country in which iBeesoft or its affiliates, subsidiaries or agents
//! maintain facilities". A host declares those countries when it builds the
//! custodian; a transfer anywhere else is refused.
//!
//! For data of a subject in the European Economic Area moved to a country
//! outside it, the transfer must name the legal [`Mechanism`] it relies on.
//! The 2018 text names the "safe harbor framework"; the Court of Justice of the
//! European Union invalidated Safe Harbor in 2015 (*Schrems I*, C-362/14), and
//! its successor Privacy Shield in 2020 (*Schrems II*, C-311/18), so neither is
//! accepted: [`Mechanism`] has no such variant and parsing the name is an error.
//!
//! ```
//! use privacy_pledge::transfer::Mechanism;
//!
//! assert_eq!("standard-contractual-clauses".parse::<Mechanism>(), Ok(Mechanism::StandardContractualClauses));
//! assert!("safe-harbor".parse::<Mechanism>().is_err());
//! ```

use serde::{Deserialize, Serialize};

/// A legal mechanism for moving personal data out of the EEA (GDPR chapter V).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Mechanism {
    /// The destination has an adequacy decision of the European Commission (Art. 45).
    AdequacyDecision = 1,
    /// The recipient is certified under the EU–US Data Privacy Framework (adequacy decision of 10 July 2023).
    DataPrivacyFramework = 2,
    /// Standard contractual clauses adopted by the Commission (Art. 46(2)(c)).
    StandardContractualClauses = 3,
    /// Binding corporate rules approved for the group (Art. 47).
    BindingCorporateRules = 4,
}

impl Mechanism {
    /// Every accepted mechanism.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::AdequacyDecision,
        Mechanism::DataPrivacyFramework,
        Mechanism::StandardContractualClauses,
        Mechanism::BindingCorporateRules,
    ];

    /// The mechanism's stable text form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mechanism::AdequacyDecision => "adequacy-decision",
            Mechanism::DataPrivacyFramework => "data-privacy-framework",
            Mechanism::StandardContractualClauses => "standard-contractual-clauses",
            Mechanism::BindingCorporateRules => "binding-corporate-rules",
        }
    }

    pub(crate) const fn code(self) -> u8 {
        self as u8
    }
}

impl core::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not an accepted transfer mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMechanism {
    /// Safe Harbor or Privacy Shield: invalidated by the Court of Justice of the EU.
    #[error(
        "R8: {0} was invalidated by the Court of Justice of the EU and is no transfer mechanism"
    )]
    Invalidated(&'static str),
    /// Anything else.
    #[error("not a transfer mechanism: expected adequacy-decision, data-privacy-framework, standard-contractual-clauses or binding-corporate-rules")]
    Unknown,
}

impl core::str::FromStr for Mechanism {
    type Err = InvalidMechanism;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(m) = Mechanism::ALL.into_iter().find(|m| m.as_str() == s) {
            return Ok(m);
        }
        let folded: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match folded.as_str() {
            "safeharbor" | "safeharbour" | "safeharborframework" => Err(
                InvalidMechanism::Invalidated("Safe Harbor (Schrems I, 2015)"),
            ),
            "privacyshield" | "euusprivacyshield" => Err(InvalidMechanism::Invalidated(
                "Privacy Shield (Schrems II, 2020)",
            )),
            _ => Err(InvalidMechanism::Unknown),
        }
    }
}

/// A transfer or disclosure to a place the policy does not allow (R8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The destination is not a declared facility country.
    #[error("R8: {country} is not a country where the vendor, its affiliates, subsidiaries or agents maintain facilities")]
    NotAFacility {
        /// The refused destination.
        country: crate::country::Country,
    },
    /// Data of an EEA subject leaving the EEA needs a legal mechanism.
    #[error(
        "R8: moving data of a subject in the EEA to {country} needs a legal transfer mechanism"
    )]
    MechanismRequired {
        /// The destination outside the EEA.
        country: crate::country::Country,
    },
}
