//! Retention (rule R11): how long data may be kept for each purpose.
//!
//! Every sealed envelope records when its value was collected. Opening it
//! after its purpose's retention period is [`Error::Expired`](crate::Error::Expired),
//! and [`Custodian::sweep`](crate::Custodian::sweep) lists what is due for
//! erasure so the host can delete or erase it.
//!
//! ```
//! use privacy_pledge::purpose::PurposeId;
//! use privacy_pledge::retention::{Retention, RetentionPolicy};
//!
//! let policy = RetentionPolicy::default()
//!     .with(PurposeId::Support, Retention::Days(365));
//! assert_eq!(policy.get(PurposeId::Support), Retention::Days(365));
//! assert_eq!(policy.get(PurposeId::Promotion), Retention::UntilWithdrawn);
//! ```

use serde::{Deserialize, Serialize};

use crate::purpose::PurposeId;
use crate::time::Timestamp;

/// How long data held for one purpose may be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// This many days after collection.
    Days(u32),
    /// While the subject's consent for the purpose is live; from its
    /// withdrawal on, the data is expired (consent-based purposes).
    UntilWithdrawn,
    /// No period of its own: kept until the subject is erased.
    UntilErased,
}

/// Retention periods per purpose, set by the host.
///
/// The defaults:
///
/// | purpose | default | why |
/// |---|---|---|
/// | `Transaction` | 3,653 days (10 years) | statutory bookkeeping period for accounting records (e.g. § 257 HGB, § 147 AO) |
/// | `Support` | 1,096 days (3 years) | the regular limitation period for claims |
/// | `Correspondence` | 730 days (2 years) | answering mail needs no long memory |
/// | `ServiceNotice` | 1,096 days (3 years) | follows the customer relationship's claims period |
/// | `Newsletter`, `Promotion`, `Personalization` | until consent is withdrawn | the consent is the only ground |
/// | `Improvement` | 730 days (2 years) | analysis works on recent data |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    periods: [Retention; 8],
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            periods: [
                Retention::Days(3_653),
                Retention::Days(1_096),
                Retention::Days(730),
                Retention::Days(1_096),
                Retention::UntilWithdrawn,
                Retention::UntilWithdrawn,
                Retention::UntilWithdrawn,
                Retention::Days(730),
            ],
        }
    }
}

fn index(p: PurposeId) -> usize {
    PurposeId::ALL.iter().position(|q| *q == p).unwrap_or(0)
}

impl RetentionPolicy {
    /// The policy with `purpose` kept for `retention`.
    ///
    /// Data held for a consent-based purpose (`Newsletter`, `Promotion`,
    /// `Personalization`) is held while the consent lasts whatever is set
    /// here (R7): a period of days ends it sooner, never later, and
    /// `UntilErased` counts as `UntilWithdrawn`. What was collected before
    /// a withdrawal stays expired after a new grant.
    pub fn with(mut self, purpose: PurposeId, retention: Retention) -> Self {
        self.periods[index(purpose)] = retention;
        self
    }

    /// The retention of a purpose.
    pub fn get(&self, purpose: PurposeId) -> Retention {
        self.periods[index(purpose)]
    }

    /// When data collected at `collected` for `purpose` expires by time alone
    /// (`None` for consent-bound and erase-only purposes).
    pub fn expires_at(&self, purpose: PurposeId, collected: Timestamp) -> Option<Timestamp> {
        match self.get(purpose) {
            Retention::Days(d) => Some(collected.plus_seconds(u64::from(d) * 86_400)),
            Retention::UntilWithdrawn | Retention::UntilErased => None,
        }
    }
}

/// A record past its retention period, as listed by
/// [`Custodian::sweep`](crate::Custodian::sweep).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Due {
    /// Position of the record in the list given to `sweep`.
    pub index: usize,
    /// Its subject.
    pub subject: crate::SubjectId,
    /// Its data kind.
    pub kind: crate::data::Kind,
    /// Its purpose.
    pub purpose: PurposeId,
    /// When it expired.
    pub expired_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates() {
        let p = RetentionPolicy::default();
        let t0 = Timestamp::from_unix_seconds(1_000);
        assert_eq!(
            p.expires_at(PurposeId::Transaction, t0),
            Some(t0.plus_seconds(3_653 * 86_400))
        );
        assert_eq!(p.expires_at(PurposeId::Newsletter, t0), None);
        let p = p.with(PurposeId::Transaction, Retention::UntilErased);
        assert_eq!(p.expires_at(PurposeId::Transaction, t0), None);
    }
}
