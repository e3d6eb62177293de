//! [`PersonalInfo<T, P>`]: a value of a data kind bound to a subject and to the
//! purpose it was collected for.
//!
//! The purpose is part of the type, so the compiler knows at every line what a
//! value may be used for. There is no method that returns the value: it can be
//! read only inside [`Custodian::access`](crate::Custodian::access) or
//! [`Custodian::disclose`](crate::Custodian::disclose), which record the use in
//! the audit trail first. It prints redacted, is wiped on drop, and has no
//! `Serialize`: the only way to store it is [`Custodian::seal`](crate::Custodian::seal).
//!
//! Values come in through [`Custodian::collect`](crate::Custodian::collect),
//! which records the collection and dates the value;
//! [`PersonalInfo::collect`] is the unaudited form, for the few places that
//! need none (see its docs).
//!
//! ```
//! use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Transaction;
//!
//! let custodian = Custodian::in_memory();
//! let subject = SubjectId::from(0x7f3a_0000_0000_0000_0000_0000_0000_0000_u128);
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     custodian.collect(subject, EmailAddress::parse("ada@example.com")?)?;
//! assert_eq!(
//!     format!("{email:?}"),
//!     "PersonalInfo<EmailAddress, Transaction>(subject 7f3a…, [redacted])"
//! );
//! assert_eq!(email.subject(), subject);
//! # Ok::<(), privacy_pledge::Error>(())
//! ```
//!
//! Reading the value directly does not compile:
//!
//! ```compile_fail
//! # use privacy_pledge::{PersonalInfo, SubjectId};
//! # use privacy_pledge::data::EmailAddress;
//! # use privacy_pledge::purpose::Transaction;
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
//! let leaked = &email.value; // private field
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::num::NonZeroU64;

use crate::data::{DataKind, Kind};
use crate::purpose::{Purpose, PurposeId};
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// A value of data kind `T` about one subject, held for purpose `P`.
///
/// Its size is `T`'s plus the 16-byte subject id and the 8-byte collection
/// time; the purpose is a zero-sized type parameter and costs nothing at run
/// time.
///
/// The collection time travels with the value: a value opened from an
/// envelope carries the envelope's collection time, and sealing it again
/// keeps that time, so an open → seal round trip never restarts the
/// retention period (R11). A value made with [`collect`](Self::collect) has
/// no collection time yet; the first seal stamps it.
pub struct PersonalInfo<T: DataKind, P: Purpose> {
    subject: SubjectId,
    value: T,
    /// Unix nanoseconds; `None` until the value is sealed or collected
    /// through the custodian. A niche keeps it at 8 bytes.
    collected: Option<NonZeroU64>,
    purpose: PhantomData<fn() -> P>,
}

impl<T: DataKind, P: Purpose> PersonalInfo<T, P> {
    /// Binds a value to its subject and to the purpose it is collected for,
    /// without the custodian: the unaudited form.
    ///
    /// The normal way in is [`Custodian::collect`](crate::Custodian::collect):
    /// it refuses an erased subject and, for a consent-based purpose, a
    /// subject without live consent; it records a `Collect` event; and it
    /// dates the value, so retention counts from the collection (R11). This
    /// form does none of that: the value has no collection time
    /// ([`collected_at`](Self::collected_at) is `None`) until its first seal,
    /// which stamps the time of that seal.
    ///
    /// It reads nothing, and every later use (`access`, `disclose`, `seal`,
    /// `repurpose`, …) still goes through the custodian, which checks and
    /// records it first. So it is right where the collection itself needs no
    /// record or date of its own:
    ///
    /// - in tests and examples;
    /// - for a value sealed at once, e.g. straight from a form: the seal is
    ///   recorded and stamps the collection time;
    /// - for a value the host rebuilds from data it already held before it
    ///   used the crate, sealed with
    ///   [`Custodian::seal_at`](crate::Custodian::seal_at) at the time it was
    ///   really collected, so retention does not restart.
    ///
    /// Anywhere else, a value held for a while before its first seal would
    /// have its retention period counted from that seal, and the trail would
    /// not show when or whether it was collected.
    ///
    /// ```
    /// use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    ///
    /// let custodian = Custodian::in_memory();
    /// let subject = SubjectId::random();
    ///
    /// // The normal way: audited and dated.
    /// let email: PersonalInfo<EmailAddress, Transaction> =
    ///     custodian.collect(subject, EmailAddress::parse("ada@example.com")?)?;
    /// assert!(email.collected_at().is_some());
    ///
    /// // Unaudited and undated, sealed at once: the seal is recorded and
    /// // stamps the collection time.
    /// let form: PersonalInfo<EmailAddress, Transaction> =
    ///     PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com")?);
    /// assert_eq!(form.collected_at(), None);
    /// let sealed = custodian.seal(&form)?;
    /// assert_eq!(custodian.open(&sealed)?.collected_at(), Some(sealed.collected_at()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn collect(subject: SubjectId, value: T) -> Self {
        PersonalInfo {
            subject,
            value,
            collected: None,
            purpose: PhantomData,
        }
    }

    /// A value collected at `at` (crate-internal: the custodian's clock, or
    /// an authenticated envelope header, is the only source).
    pub(crate) fn collected_at_time(subject: SubjectId, value: T, at: Timestamp) -> Self {
        PersonalInfo {
            subject,
            value,
            collected: Some(NonZeroU64::new(at.unix_nanos()).unwrap_or(NonZeroU64::MIN)),
            purpose: PhantomData,
        }
    }

    /// When the value was collected for its purpose, if known: set by
    /// [`Custodian::collect`](crate::Custodian::collect), by
    /// [`Custodian::open`](crate::Custodian::open) (from the envelope) and by
    /// a consent-based repurposing; `None` for [`collect`](Self::collect)
    /// until the first seal.
    pub fn collected_at(&self) -> Option<Timestamp> {
        self.collected.map(|n| Timestamp::from_unix_nanos(n.get()))
    }

    /// The subject the value is about.
    pub fn subject(&self) -> SubjectId {
        self.subject
    }

    /// The data kind, as a value.
    pub fn kind(&self) -> Kind {
        T::KIND
    }

    /// The purpose, as a value.
    pub fn purpose(&self) -> PurposeId {
        P::ID
    }

    /// The value. Crate-internal: every caller is an audited custodian path.
    pub(crate) fn value(&self) -> &T {
        &self.value
    }

    /// The same value under another purpose. Crate-internal: callers have
    /// checked the move at compile time and, where needed, at run time.
    pub(crate) fn retag<Q: Purpose>(self) -> PersonalInfo<T, Q> {
        PersonalInfo {
            subject: self.subject,
            value: self.value,
            collected: self.collected,
            purpose: PhantomData,
        }
    }

    /// The same value under another purpose, collected for it at `at`.
    pub(crate) fn retag_at<Q: Purpose>(self, at: Timestamp) -> PersonalInfo<T, Q> {
        PersonalInfo::collected_at_time(self.subject, self.value, at)
    }
}

impl<T: DataKind, P: Purpose> Clone for PersonalInfo<T, P> {
    fn clone(&self) -> Self {
        PersonalInfo {
            subject: self.subject,
            value: self.value.clone(),
            collected: self.collected,
            purpose: PhantomData,
        }
    }
}

impl<T: DataKind, P: Purpose> fmt::Debug for PersonalInfo<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PersonalInfo<{}, {}>(subject {}, [redacted])",
            T::KIND,
            P::ID,
            self.subject.short()
        )
    }
}

impl<T: DataKind, P: Purpose> fmt::Display for PersonalInfo<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::EmailAddress;
    use crate::purpose::Transaction;

    #[test]
    fn size_is_value_plus_subject_and_collection_time() {
        assert_eq!(
            core::mem::size_of::<PersonalInfo<EmailAddress, Transaction>>(),
            core::mem::size_of::<EmailAddress>() + 16 + 8
        );
        assert_eq!(
            core::mem::size_of::<PersonalInfo<EmailAddress, Transaction>>(),
            48
        );
    }
}
