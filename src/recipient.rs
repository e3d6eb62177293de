//! Recipients: who personal information may be disclosed to (rules R3–R5).
//!
//! A host describes each outside party it works with as a type implementing
//! [`Recipient`], and gives it one of three sealed roles. Which roles a purpose
//! permits is decided by the compiler:
//!
//! | purpose | [`Processor`] | [`Affiliate`] | [`ThirdParty`] |
//! |---|---|---|---|
//! | `Transaction` | ✔ payment processor, delivery | ✔ processing at its facilities | ✘ R3 |
//! | `Support`, `Correspondence`, `ServiceNotice` | ✔ help desk, mail delivery | ✔ | ✘ R3 |
//! | `Newsletter`, `Promotion` | ✔ mail delivery on the vendor's behalf | ✘ R4 | ✘ R3, R4 |
//! | `Personalization` | ✔ content serving on the vendor's behalf | ✘ R5 | ✘ R3 |
//! | `Improvement` | pseudonyms only (R6) | pseudonyms only (R6) | ✘ R3 |
//!
//! ```
//! use privacy_pledge::recipient::{Processor, Recipient};
//!
//! struct Stripe;
//! impl Recipient for Stripe {
//!     type Role = Processor;
//!     fn name(&self) -> &str { "Stripe" }
//! }
//! ```
//!
//! A disclosure to a third party does not compile, whatever the purpose, and
//! the compiler's message names the rule:
//!
//! ```compile_fail
//! # use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! # use privacy_pledge::data::EmailAddress;
//! # use privacy_pledge::purpose::Transaction;
//! use privacy_pledge::recipient::{Recipient, ThirdParty};
//! struct DataBroker;
//! impl Recipient for DataBroker {
//!     type Role = ThirdParty;
//!     fn name(&self) -> &str { "broker" }
//! }
//! let custodian = Custodian::in_memory();
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
//! // error: R3: the privacy policy forbids selling, renting, leasing or distributing ...
//! custodian.disclose(&email, &DataBroker, |_| ()).unwrap();
//! ```

use core::any::TypeId;

use serde::{Deserialize, Serialize};

use crate::country::Country;
use crate::purpose::{
    Correspondence, Newsletter, Personalization, Promotion, Purpose, ServiceNotice, Support,
    Transaction,
};

pub(crate) mod sealed {
    /// Private supertrait that closes the set of roles.
    #[diagnostic::on_unimplemented(
        message = "R5: `{Self}` is not a recipient role of the policy; the roles are Processor, Affiliate and ThirdParty",
        label = "not a recipient role"
    )]
    pub trait Sealed {}
}

/// The role a recipient plays towards the vendor: sealed, closed set.
pub trait Role: sealed::Sealed + Send + Sync + 'static {
    /// The role as a value.
    const ID: RoleId;
}

/// A processor (agent) acting on the vendor's behalf and instructions: a
/// payment processor, a mail-delivery service, a hosting agent.
#[derive(Debug)]
pub enum Processor {}

/// An affiliate or subsidiary of the vendor, processing at its facilities.
#[derive(Debug)]
pub enum Affiliate {}

/// Anyone else. The policy permits no disclosure to a third party (R3, R4); the
/// role exists so that such a disclosure is a compile error that says so.
#[derive(Debug)]
pub enum ThirdParty {}

impl sealed::Sealed for Processor {}
impl sealed::Sealed for Affiliate {}
impl sealed::Sealed for ThirdParty {}
impl Role for Processor {
    const ID: RoleId = RoleId::Processor;
}
impl Role for Affiliate {
    const ID: RoleId = RoleId::Affiliate;
}
impl Role for ThirdParty {
    const ID: RoleId = RoleId::ThirdParty;
}

/// A role as a value, for audit events and records of processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum RoleId {
    /// [`Processor`].
    Processor = 1,
    /// [`Affiliate`].
    Affiliate = 2,
    /// [`ThirdParty`].
    ThirdParty = 3,
    /// The person the data is about, receiving their own data (a subject
    /// report, R11). Not a role a host can give a [`Recipient`]: there is no
    /// role type for it, and it is not in [`RoleId::ALL`].
    DataSubject = 4,
}

impl RoleId {
    /// Every role.
    pub const ALL: [RoleId; 3] = [RoleId::Processor, RoleId::Affiliate, RoleId::ThirdParty];

    /// The role's name.
    pub const fn name(self) -> &'static str {
        match self {
            RoleId::Processor => "Processor",
            RoleId::Affiliate => "Affiliate",
            RoleId::ThirdParty => "ThirdParty",
            RoleId::DataSubject => "DataSubject",
        }
    }

    pub(crate) const fn code(self) -> u8 {
        self as u8
    }
}

impl core::fmt::Display for RoleId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// An outside party that may receive personal information: implemented by host types.
///
/// ```
/// use privacy_pledge::recipient::{Affiliate, Recipient};
///
/// struct EuropeanSubsidiary;
/// impl Recipient for EuropeanSubsidiary {
///     type Role = Affiliate;
///     fn name(&self) -> &str { "iBeesoft Europe" }
/// }
/// assert_eq!(EuropeanSubsidiary.name(), "iBeesoft Europe");
/// assert!(EuropeanSubsidiary.processes_in().is_empty());
/// ```
pub trait Recipient {
    /// The recipient's role; decides at compile time which purposes permit it.
    type Role: Role;

    /// The name recorded in the audit trail (R5). Not personal information.
    fn name(&self) -> &str;

    /// The countries where the recipient stores or processes what it receives.
    /// Empty (the default) means "only at the vendor's own declared
    /// facilities". A disclosure to a recipient that names a country checks
    /// it like a transfer (R8).
    fn processes_in(&self) -> &[Country] {
        &[]
    }

    /// The legal mechanism the recipient's processing abroad relies on, for
    /// data leaving the EEA (R8). None by default. With the recipient
    /// registry on ([`CustodianBuilder::recipients`](crate::CustodianBuilder::recipients))
    /// this is not asked: the registered entry's mechanism
    /// ([`RegisteredRecipient::under`]) is the only one.
    fn transfer_mechanism(&self) -> Option<crate::transfer::Mechanism> {
        None
    }
}

impl<R: Recipient + ?Sized> Recipient for &R {
    type Role = R::Role;
    fn name(&self) -> &str {
        (**self).name()
    }
    fn processes_in(&self) -> &[Country] {
        (**self).processes_in()
    }
    fn transfer_mechanism(&self) -> Option<crate::transfer::Mechanism> {
        (**self).transfer_mechanism()
    }
}

/// `Self` (a role) may receive personal information held for purpose `P`.
///
/// The bound is on the role, so rustc always reports the rule that is broken
/// (the leaf traits below) rather than a type mismatch.
#[diagnostic::on_unimplemented(
    message = "R3–R5: a `{Self}` recipient may not receive personal information held for `{P}`",
    label = "disclosure not permitted by the privacy policy"
)]
pub trait PermittedFor<P: Purpose>: Role {}

impl<P: ToProcessor> PermittedFor<P> for Processor {}
impl<P: ToAffiliate> PermittedFor<P> for Affiliate {}
impl<P: ToThirdParty> PermittedFor<P> for ThirdParty {}

/// Purposes whose data a processor may receive (R5). Every purpose but
/// `Improvement`, which gets pseudonyms only.
#[diagnostic::on_unimplemented(
    message = "R6: `{Self}` data reaches processors only as keyed pseudonyms, never as plaintext",
    label = "plaintext disclosure not permitted",
    note = "use `custodian.pseudonym(&info)` and share the token"
)]
pub trait ToProcessor: Purpose {}

/// Purposes whose data an affiliate or subsidiary may receive (R4, R5).
#[diagnostic::on_unimplemented(
    message = "R4/R5: `{Self}` data never leaves the vendor's control: subscriber and marketing lists reach only a processor delivering on the vendor's behalf, not affiliates",
    label = "affiliates may not receive this",
    note = "affiliates receive Transaction, Support, Correspondence and ServiceNotice data"
)]
pub trait ToAffiliate: Purpose {}

/// Purposes whose data a third party may receive: none (R3, R4). This trait has
/// no implementations, so every disclosure to a third party fails to compile.
#[diagnostic::on_unimplemented(
    message = "R3: the privacy policy forbids selling, renting, leasing or distributing personal information (`{Self}` data) to third parties",
    label = "third-party disclosure forbidden",
    note = "\"iBeesoft will not sell, distribute, or rent information about you and your purchase information to any third parties\"; subscriber lists: R4"
)]
pub trait ToThirdParty: Purpose {}

impl ToProcessor for Transaction {}
impl ToProcessor for Support {}
impl ToProcessor for Correspondence {}
impl ToProcessor for ServiceNotice {}
impl ToProcessor for Newsletter {}
impl ToProcessor for Promotion {}
impl ToProcessor for Personalization {}

impl ToAffiliate for Transaction {}
impl ToAffiliate for Support {}
impl ToAffiliate for Correspondence {}
impl ToAffiliate for ServiceNotice {}

/// `Self` (a role) may receive keyed pseudonyms of data held for `P` (R4–R6).
///
/// A pseudonym is still personal information about one subscriber, so a
/// pseudonymised subscriber or marketing list is a list all the same: it
/// reaches processors only, exactly like the plaintext (R4). Affiliates may
/// receive pseudonyms of the purposes whose plaintext they may receive, and of
/// [`Improvement`](crate::purpose::Improvement) data.
#[diagnostic::on_unimplemented(
    message = "R4/R5: pseudonyms of `{P}` data may not go to a `{Self}` recipient: a pseudonymised subscriber or marketing list is still the list",
    label = "pseudonym disclosure not permitted by the privacy policy",
    note = "affiliates receive pseudonyms of Transaction, Support, Correspondence, ServiceNotice and Improvement data; processors of every purpose"
)]
pub trait PseudonymsFor<P: Purpose>: Role {}

impl<P: Purpose> PseudonymsFor<P> for Processor {}
impl<P: PseudonymsToAffiliate> PseudonymsFor<P> for Affiliate {}
impl<P: PseudonymsToThirdParty> PseudonymsFor<P> for ThirdParty {}

/// Purposes whose pseudonyms a third party may receive: none (R3). No
/// implementations, so the compiler names R3 for every such disclosure.
#[diagnostic::on_unimplemented(
    message = "R3: pseudonyms are personal information too and never go to third parties",
    label = "third-party disclosure forbidden"
)]
pub trait PseudonymsToThirdParty: Purpose {}

/// Purposes whose pseudonyms an affiliate may receive (R4, R5, R6).
#[diagnostic::on_unimplemented(
    message = "R4/R5: pseudonyms of `{Self}` data never leave the vendor's control: a pseudonymised subscriber or marketing list reaches only a processor, not affiliates",
    label = "affiliates may not receive these pseudonyms",
    note = "affiliates receive pseudonyms of Transaction, Support, Correspondence, ServiceNotice and Improvement data"
)]
pub trait PseudonymsToAffiliate: Purpose {}
impl<P: ToAffiliate> PseudonymsToAffiliate for P {}
impl PseudonymsToAffiliate for crate::purpose::Improvement {}

/// A recipient the host registered with the custodian: its type, its name,
/// its role, and where it processes what it receives (R5, R8; GDPR Art. 30
/// names recipients).
///
/// A [`Recipient`]'s role and name are the host's own word: any struct can
/// declare `type Role = Processor` and return any name. Hosts that want a
/// reviewed list turn the registry on with
/// [`CustodianBuilder::recipients`](crate::CustodianBuilder::recipients):
/// from then on a disclosure is refused unless the recipient's *type*, name
/// and role are registered together, its transfers are checked against the
/// countries registered for it, and the registered recipients appear in the
/// [record of processing](crate::Custodian::processing_record).
///
/// The entry is bound to the Rust type it was registered with
/// ([`core::any::TypeId`]), so another type that merely returns the same
/// name under the same role — a list broker calling itself `"Stripe"` — is
/// not the registered recipient. The type is the one passed to
/// [`Custodian::disclose`](crate::Custodian::disclose): a `&&Stripe` or a
/// `dyn Recipient` is a different type and is refused (pass `&stripe`).
///
/// ```
/// use privacy_pledge::recipient::{Processor, Recipient, RegisteredRecipient, RoleId};
///
/// struct Stripe;
/// impl Recipient for Stripe {
///     type Role = Processor;
///     fn name(&self) -> &str { "Stripe" }
/// }
///
/// let stripe = RegisteredRecipient::of(&Stripe).processing_in(["US".parse()?]);
/// assert_eq!(stripe.role(), RoleId::Processor);
/// assert_eq!(stripe.name(), "Stripe");
/// assert!(stripe.is::<Stripe>());
/// # Ok::<(), privacy_pledge::country::InvalidCountry>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegisteredRecipient {
    /// The recipient's type. Not serialised: a `TypeId` means nothing
    /// outside this build of the program.
    #[serde(skip)]
    type_id: TypeId,
    /// The type's name, for `Debug` only.
    #[serde(skip)]
    type_name: &'static str,
    name: Box<str>,
    role: RoleId,
    processes_in: Vec<Country>,
    mechanism: Option<crate::transfer::Mechanism>,
}

impl RegisteredRecipient {
    /// The recipient type `R` under the name `name`, in `R`'s role,
    /// processing only at the vendor's declared facilities until
    /// [`processing_in`](Self::processing_in) says otherwise.
    ///
    /// For a type whose values carry different names (one entry per name),
    /// or to register a name before a value exists. See also
    /// [`of`](Self::of).
    ///
    /// ```
    /// use privacy_pledge::recipient::{Processor, Recipient, RegisteredRecipient, RoleId};
    ///
    /// struct Mailer(&'static str);
    /// impl Recipient for Mailer {
    ///     type Role = Processor;
    ///     fn name(&self) -> &str { self.0 }
    /// }
    ///
    /// let postmark = RegisteredRecipient::new::<Mailer>("Postmark");
    /// assert_eq!((postmark.name(), postmark.role()), ("Postmark", RoleId::Processor));
    /// assert!(postmark.is::<Mailer>());
    /// ```
    pub fn new<R: Recipient + 'static>(name: impl Into<Box<str>>) -> Self {
        RegisteredRecipient {
            type_id: TypeId::of::<R>(),
            type_name: core::any::type_name::<R>(),
            name: name.into(),
            role: <R::Role as Role>::ID,
            processes_in: Vec::new(),
            mechanism: None,
        }
    }

    /// `recipient`, under its type, its [`name`](Recipient::name) and its
    /// role. Where it processes and under which mechanism are *not* taken
    /// from the value: the registry's entry says that, through
    /// [`processing_in`](Self::processing_in) and [`under`](Self::under).
    ///
    /// ```
    /// use privacy_pledge::recipient::{Affiliate, Recipient, RegisteredRecipient, RoleId};
    ///
    /// struct Subsidiary;
    /// impl Recipient for Subsidiary {
    ///     type Role = Affiliate;
    ///     fn name(&self) -> &str { "iBeesoft Europe" }
    /// }
    ///
    /// let entry = RegisteredRecipient::of(&Subsidiary);
    /// assert_eq!(entry, RegisteredRecipient::new::<Subsidiary>("iBeesoft Europe"));
    /// assert_eq!(entry.role(), RoleId::Affiliate);
    /// ```
    pub fn of<R: Recipient + 'static>(recipient: &R) -> Self {
        Self::new::<R>(recipient.name())
    }

    /// Whether this entry was registered for the recipient type `R`.
    ///
    /// ```
    /// use privacy_pledge::recipient::{Processor, Recipient, RegisteredRecipient};
    ///
    /// struct Stripe;
    /// impl Recipient for Stripe {
    ///     type Role = Processor;
    ///     fn name(&self) -> &str { "Stripe" }
    /// }
    /// struct LookAlike;
    /// impl Recipient for LookAlike {
    ///     type Role = Processor;
    ///     fn name(&self) -> &str { "Stripe" }
    /// }
    ///
    /// let entry = RegisteredRecipient::of(&Stripe);
    /// assert!(entry.is::<Stripe>());
    /// assert!(!entry.is::<LookAlike>());
    /// ```
    pub fn is<R: ?Sized + 'static>(&self) -> bool {
        self.type_id == TypeId::of::<R>()
    }

    /// Whether a disclosure to a recipient of type `R` that gave its name
    /// as `name` is to this entry: same type, same name, same role.
    pub(crate) fn matches<R: Recipient + ?Sized + 'static>(&self, name: &str) -> bool {
        self.is::<R>() && self.role == <R::Role as Role>::ID && *self.name == *name
    }

    /// The countries where it stores or processes what it receives.
    pub fn processing_in(mut self, countries: impl IntoIterator<Item = Country>) -> Self {
        for c in countries {
            if !self.processes_in.contains(&c) {
                self.processes_in.push(c);
            }
        }
        self
    }

    /// The transfer mechanism its processing outside the EEA relies on.
    pub fn under(mut self, mechanism: crate::transfer::Mechanism) -> Self {
        self.mechanism = Some(mechanism);
        self
    }

    /// Its name, as recorded in the audit trail.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its role.
    pub fn role(&self) -> RoleId {
        self.role
    }

    /// Where it processes.
    pub fn processes_in(&self) -> &[Country] {
        &self.processes_in
    }

    /// The mechanism registered for its transfers, if any.
    pub fn mechanism(&self) -> Option<crate::transfer::Mechanism> {
        self.mechanism
    }
}
