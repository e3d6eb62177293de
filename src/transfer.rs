//! Transfers: where personal information may be stored and processed (rule R8).
//!
//! The policy says data "may be stored and processed in the United States or any
//! other country in which iBeesoft or its affiliates, subsidiaries or agents
//! maintain facilities". A host declares those countries when it builds the
//! custodian; a transfer anywhere else is refused.
//!
//! For data moved from the European Economic Area to a country outside it, the
//! transfer must name the legal [`Mechanism`] it relies on. The 2018 text says:
//!
//! > "iBeesoft abides by the safe harbor framework as set forth by the U.S.
//! > Department of Commerce regarding the collection, use, and retention of
//! > data from the European Union."
//!
//! That framework is no longer a lawful basis: the Court of Justice of the
//! European Union invalidated the Safe Harbor decision on 6 October 2015
//! (*Schrems I*, C-362/14), and its successor, the Privacy Shield, on 16 July
//! 2020 (*Schrems II*, C-311/18). Neither is accepted here: [`Mechanism`] has no
//! such variant, and parsing either name is an
//! [`InvalidMechanism::Invalidated`] error that says why. A host names the
//! mechanism it relies on now, e.g. the EU–US Data Privacy Framework (adequacy
//! decision of 10 July 2023) or standard contractual clauses.
//!
//! ```
//! use privacy_pledge::country::Country;
//! use privacy_pledge::transfer::{Mechanism, Transfer, TransferError};
//! use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Transaction;
//!
//! let (us, de, br): (Country, Country, Country) = ("US".parse()?, "DE".parse()?, "BR".parse()?);
//! let custodian = Custodian::builder().facilities([de, us]).build()?;
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
//!
//! // Out of the EEA: needs a mechanism, and Safe Harbor is not one.
//! assert!(matches!(
//!     custodian.transfer(&email, &Transfer::new(de, us)),
//!     Err(Error::Transfer(TransferError::MechanismRequired { .. }))
//! ));
//! assert!("safe-harbor".parse::<Mechanism>().is_err());
//! let ok = custodian.transfer(&email, &Transfer::new(de, us).under(Mechanism::StandardContractualClauses))?;
//! assert_eq!(ok.to(), us);
//!
//! // Not a facility: refused whatever the mechanism.
//! assert!(custodian.transfer(&email, &Transfer::new(de, br).under(Mechanism::StandardContractualClauses)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::country::Country;
use crate::data::Kind;
use crate::purpose::PurposeId;
use crate::subject::SubjectId;
use crate::time::Timestamp;

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

    /// Whether the mechanism can cover a transfer to `to`. An adequacy
    /// decision covers only the countries that have one; the Data Privacy
    /// Framework covers only the United States (certified recipients); contract
    /// clauses and binding corporate rules cover any destination.
    pub fn covers(self, to: Country) -> bool {
        match self {
            Mechanism::AdequacyDecision => ADEQUATE.split(' ').any(|c| c == to.code()),
            Mechanism::DataPrivacyFramework => to.code() == "US",
            Mechanism::StandardContractualClauses | Mechanism::BindingCorporateRules => true,
        }
    }
}

/// Countries with an adequacy decision of the European Commission (besides the
/// EEA itself): Andorra, Argentina, Canada, the Faroe Islands, Guernsey,
/// Israel, the Isle of Man, Japan, Jersey, New Zealand, the Republic of Korea,
/// Switzerland, the United Kingdom and Uruguay. (The United States is covered
/// only through the Data Privacy Framework.)
const ADEQUATE: &str = "AD AR CA FO GG IL IM JP JE NZ KR CH GB UY";

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
    /// The origin is not a declared facility country: data is held only at
    /// facilities, so a transfer cannot start anywhere else.
    #[error("R8: the data cannot be held in {country}, which is not a country where the vendor, its affiliates, subsidiaries or agents maintain facilities")]
    OriginNotAFacility {
        /// The refused origin.
        country: Country,
    },
    /// The destination is not a declared facility country.
    #[error("R8: {country} is not a country where the vendor, its affiliates, subsidiaries or agents maintain facilities")]
    NotAFacility {
        /// The refused destination.
        country: Country,
    },
    /// Data leaving the EEA needs a legal mechanism.
    #[error("R8: moving data from the EEA to {country} needs a legal transfer mechanism")]
    MechanismRequired {
        /// The destination outside the EEA.
        country: Country,
    },
    /// The mechanism named does not cover the destination.
    #[error("R8: {mechanism} does not cover transfers to {country}")]
    MechanismDoesNotCover {
        /// The mechanism named.
        mechanism: Mechanism,
        /// The destination.
        country: Country,
    },
}

/// A planned move of personal information from one country to another.
///
/// ```
/// use privacy_pledge::transfer::{Mechanism, Transfer};
/// let t = Transfer::new("DE".parse()?, "US".parse()?).under(Mechanism::DataPrivacyFramework);
/// assert_eq!(t.mechanism(), Some(Mechanism::DataPrivacyFramework));
/// # Ok::<(), privacy_pledge::country::InvalidCountry>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    from: Country,
    to: Country,
    mechanism: Option<Mechanism>,
}

impl Transfer {
    /// A transfer from the country where the data is now (or where its subject
    /// lives) to a destination.
    pub fn new(from: Country, to: Country) -> Self {
        Transfer {
            from,
            to,
            mechanism: None,
        }
    }

    /// The legal mechanism relied on.
    pub fn under(mut self, mechanism: Mechanism) -> Self {
        self.mechanism = Some(mechanism);
        self
    }

    /// Where from.
    pub fn from(&self) -> Country {
        self.from
    }

    /// Where to.
    pub fn to(&self) -> Country {
        self.to
    }

    /// The mechanism, if one was named.
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    /// Checks the transfer against the declared facilities (R8).
    /// Checks the transfer against the declared facilities. `facilities[0]`,
    /// if any, is the home facility where the custodian holds the data: a
    /// transfer starting from anywhere else must still start at a facility,
    /// and data held at an EEA home stays EEA data whichever facility the
    /// caller says it leaves from (so `US → CN` of data held in `DE` needs
    /// a mechanism just as `DE → CN` does).
    pub(crate) fn check(&self, facilities: &[Country]) -> Result<(), TransferError> {
        if !facilities.contains(&self.to) {
            return Err(TransferError::NotAFacility { country: self.to });
        }
        if !facilities.contains(&self.from) {
            return Err(TransferError::OriginNotAFacility { country: self.from });
        }
        let home_in_eea = facilities.first().is_some_and(|h| h.in_eea());
        if (self.from.in_eea() || home_in_eea) && !self.to.in_eea() {
            let m = self
                .mechanism
                .ok_or(TransferError::MechanismRequired { country: self.to })?;
            if !m.covers(self.to) {
                return Err(TransferError::MechanismDoesNotCover {
                    mechanism: m,
                    country: self.to,
                });
            }
        }
        Ok(())
    }
}

/// An approved transfer, as recorded in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRecord {
    subject: SubjectId,
    kind: Kind,
    purpose: PurposeId,
    transfer: Transfer,
    at: Timestamp,
}

impl TransferRecord {
    pub(crate) fn new(
        subject: SubjectId,
        kind: Kind,
        purpose: PurposeId,
        transfer: Transfer,
        at: Timestamp,
    ) -> Self {
        TransferRecord {
            subject,
            kind,
            purpose,
            transfer,
            at,
        }
    }

    /// The subject.
    pub fn subject(&self) -> SubjectId {
        self.subject
    }
    /// The data kind moved.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The purpose it is held for.
    pub fn purpose(&self) -> PurposeId {
        self.purpose
    }
    /// The destination.
    pub fn to(&self) -> Country {
        self.transfer.to
    }
    /// The transfer as approved.
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }
    /// When it was approved.
    pub fn at(&self) -> Timestamp {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Country {
        s.parse().unwrap()
    }

    #[test]
    fn rules() {
        let facilities = [c("DE"), c("US"), c("GB"), c("IE")];
        assert!(Transfer::new(c("DE"), c("IE")).check(&facilities).is_ok());
        // Held in DE (the home facility): EEA data wherever the hop starts.
        assert_eq!(
            Transfer::new(c("US"), c("GB")).check(&facilities),
            Err(TransferError::MechanismRequired { country: c("GB") })
        );
        assert!(Transfer::new(c("US"), c("GB"))
            .check(&[c("US"), c("GB")])
            .is_ok());
        assert_eq!(
            Transfer::new(c("CN"), c("US")).check(&facilities),
            Err(TransferError::OriginNotAFacility { country: c("CN") })
        );
        assert_eq!(
            Transfer::new(c("DE"), c("US")).check(&facilities),
            Err(TransferError::MechanismRequired { country: c("US") })
        );
        assert!(Transfer::new(c("DE"), c("US"))
            .under(Mechanism::DataPrivacyFramework)
            .check(&facilities)
            .is_ok());
        assert!(Transfer::new(c("DE"), c("GB"))
            .under(Mechanism::AdequacyDecision)
            .check(&facilities)
            .is_ok());
        assert_eq!(
            Transfer::new(c("DE"), c("US"))
                .under(Mechanism::AdequacyDecision)
                .check(&facilities),
            Err(TransferError::MechanismDoesNotCover {
                mechanism: Mechanism::AdequacyDecision,
                country: c("US")
            })
        );
        assert_eq!(
            Transfer::new(c("DE"), c("FR")).check(&facilities),
            Err(TransferError::NotAFacility { country: c("FR") })
        );
    }

    #[test]
    fn mechanism_text() {
        for m in Mechanism::ALL {
            assert_eq!(m.as_str().parse::<Mechanism>(), Ok(m));
        }
        for bad in [
            "Safe Harbor",
            "safe-harbour",
            "SAFE_HARBOR",
            "privacy shield",
        ] {
            assert!(
                matches!(
                    bad.parse::<Mechanism>(),
                    Err(InvalidMechanism::Invalidated(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            "consent".parse::<Mechanism>(),
            Err(InvalidMechanism::Unknown)
        );
    }
}
