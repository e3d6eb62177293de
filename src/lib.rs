//! # privacy-pledge
//!
//! Keep a privacy policy in code. This crate turns the promises of a vendor
//! privacy policy — collect only a few kinds of data, use them only for the
//! listed purposes, never sell or rent them, store them only where the vendor
//! has facilities, protect them with encryption — into:
//!
//! 1. **types** that make the forbidden uses compile errors whose message
//!    names the rule: [`PersonalInfo<T, P>`] binds a value of a data kind `T`
//!    to a purpose `P`;
//! 2. **a runtime [`Custodian`]** that checks what types cannot (consent,
//!    erased subjects, destinations) and offers every use to an
//!    [audit hook](audit::AuditSink) *before* it happens — if the hook fails,
//!    the use does not happen;
//! 3. **sealed envelopes** ([`Sealed<T, P>`]): AES-256-GCM under a per-subject
//!    data key, bound to subject, kind and purpose, with key rotation and
//!    erasure by destroying the subject's key.
//!
//! ```
//! use privacy_pledge::{Custodian, PersonalInfo, Sealed, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::{Promotion, ServiceNotice, Transaction};
//! use privacy_pledge::recipient::{Processor, Recipient};
//!
//! struct PaymentProcessor;
//! impl Recipient for PaymentProcessor {
//!     type Role = Processor;
//!     fn name(&self) -> &str { "Stripe" }
//! }
//!
//! let custodian = Custodian::in_memory();
//! let subject = SubjectId::random();
//! // Collecting is audited too, and dates the value for retention.
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     custodian.collect(subject, EmailAddress::parse("ada@example.com")?)?;
//!
//! // Every use is audited first; the closure is the only place plaintext is seen.
//! let domain = custodian.access(&email, |e| e.domain().to_owned())?;
//! custodian.disclose(&email, &PaymentProcessor, |e| e.domain().len())?;
//!
//! // Compatible repurposing compiles; marketing needs live consent.
//! let _notice: PersonalInfo<EmailAddress, ServiceNotice> = custodian.repurpose(email.clone())?;
//! custodian.consents().grant::<Promotion>(subject)?;
//! let proof = custodian.consent_proof::<Promotion>(subject)?;
//! let _promo: PersonalInfo<EmailAddress, Promotion> =
//!     custodian.repurpose_with_consent(email.clone(), &proof)?;
//!
//! // Stored only sealed; erased by destroying the subject's key.
//! let sealed: Sealed<EmailAddress, Transaction> = custodian.seal(&email)?;
//! assert!(custodian.open(&sealed).is_ok());
//! custodian.erase(subject)?;
//! assert!(custodian.open(&sealed).is_err());
//! # assert_eq!(domain, "example.com");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Selling to a third party does not compile:
//!
//! ```compile_fail
//! use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Newsletter;
//! use privacy_pledge::recipient::{Recipient, ThirdParty};
//!
//! struct ListBroker;
//! impl Recipient for ListBroker {
//!     type Role = ThirdParty;
//!     fn name(&self) -> &str { "list broker" }
//! }
//! let custodian = Custodian::in_memory();
//! let subscriber: PersonalInfo<EmailAddress, Newsletter> =
//!     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
//! // error[E0277]: R3: the privacy policy forbids selling, renting, leasing or
//! //               distributing personal information (`Newsletter` data) to third parties
//! custodian.disclose(&subscriber, &ListBroker, |e| e.domain().len());
//! ```
//!
//! ## The policy, rule by rule
//!
//! The same table is [`policy::RULES`]; audit events and errors name these ids.
//!
//! | id | rule | from the policy | enforced by |
//! |----|------|-----------------|-------------|
//! | R1 | Only full name, email address, mailing address, phone number and purchase record are collected; card numbers are never held, only the processor's opaque token. | What information we collect | the sealed [`data::DataKind`] set |
//! | R2 | Purposes form a closed set: transaction, support, correspondence, service notice, newsletter, promotion, personalization, improvement. | How We Use the Information We Collect | the sealed [`purpose::Purpose`] set |
//! | R3 | No purpose permits selling, renting, leasing or distributing personal or purchase information to third parties. | opening paragraph | [`recipient::ToThirdParty`] has no impls |
//! | R4 | Email subscriber lists reach only a processor delivering mail on the vendor's behalf; never sold, leased or rented. | "will not sell, lease or rent its email subscriber lists" | [`recipient::ToAffiliate`] |
//! | R5 | Processors and affiliates receive data only for the purpose they serve; every disclosure names its recipient in the audit trail. | "3rd party credit card processors"; "affiliates, subsidiaries or agents" | [`recipient::PermittedFor`], [`Custodian::disclose`] |
//! | R6 | Repurposing is allowed only between compatible purposes; marketing and personalization need live consent; improvement gets only keyed pseudonyms. | How We Use the Information We Collect | [`purpose::CompatibleFrom`], [`consent::ConsentProof`], [`Pseudonym`] |
//! | R7 | Service notices are mandatory and need no consent; newsletters need a subscription; promotional mail needs consent that has not been withdrawn. | "mandatory service communications"; "may also occasionally send" | [`consent`] |
//! | R8 | Data is stored and processed only in declared facility countries; a transfer out of the EEA records its current legal mechanism. | "stored and processed in the United States or any other country…" | [`transfer`] |
//! | R9 | Personal fields are sealed at rest; plaintext and keys are wiped on drop; no plaintext in Debug, Display, errors, panics, audit events or serialized forms. | How We Protect the Information We Collect | [`crypto`], redacted formatting |
//! | R10 | Every use is offered to the audit hook before it takes effect; if the hook fails the use does not happen; the built-in log is tamper-evident. | "security technologies and procedures…" | [`audit`] |
//! | R11 | Subjects can get everything held on them and be erased by destroying their data key; each purpose has a retention limit. | "If you have any questions about this Policy…" | [`Custodian::erase`] |
//!
//! ## What the crate cannot do
//!
//! A closure that is handed plaintext can copy it anywhere. The crate makes
//! each hand-over explicit (`access`, `disclose`), typed by purpose, and
//! recorded with subject, kind, purpose and recipient *before* it happens, so
//! review of the audit trail finds every place plaintext left the custodian.
//! Transport security (TLS) is the host's job.
//!
//! ## Modules
//!
//! - [`purpose`], [`data`], [`recipient`]: the policy's vocabulary as types.
//! - [`info`]: [`PersonalInfo`]; [`subject`]: [`SubjectId`], [`SubjectTag`].
//! - [`consent`]: grants, withdrawals and proofs.
//! - [`custodian`]: the runtime object.
//! - [`crypto`]: envelopes, keys, pseudonyms (key-encryption keys in an HSM
//!   through PKCS#11 with the feature `pkcs11`); [`audit`]: events, sinks,
//!   the chain.
//! - [`transfer`], [`country`]: where data may go; [`retention`]: how long
//!   it stays; [`report`]: a subject's own view; [`time`]: clocks.
//! - [`policy`]: the rule table as data.
//! - [`record`]: whole records, `#[derive(PersonalRecord)]` (feature `derive`,
//!   on by default): a struct of personal fields sealed and opened in one call.
//! - [`store`]: stores on real databases, behind cargo features (`sqlite`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

pub mod audit;
pub mod consent;
pub mod country;
pub mod crypto;
mod ct;
pub mod custodian;
pub mod data;
mod error;
mod files;
pub mod freshness;
pub mod info;
pub mod policy;
pub mod purpose;
pub mod recipient;
pub mod record;
mod reentry;
pub mod report;
pub mod request;
pub mod retention;
mod rows;
pub mod store;
pub mod subject;
pub mod time;
pub mod transfer;

pub use crate::audit::{AuditError, AuditEvent, AuditSink};
pub use crate::crypto::{LookupToken, Pseudonym, Sealed};
pub use crate::custodian::{Custodian, CustodianBuilder, ErasureReceipt, KeyRotation};
pub use crate::error::Error;
pub use crate::info::PersonalInfo;
pub use crate::record::{PersonalRecord, SealedRecord};
pub use crate::subject::{SubjectId, SubjectTag};
/// `#[derive(PersonalRecord)]`: see [`record`].
#[cfg(feature = "derive")]
pub use privacy_pledge_derive::PersonalRecord;
pub use secrecy::ExposeSecret;

/// What the code `#[derive(PersonalRecord)]` writes calls into: not API.
#[doc(hidden)]
pub mod __private {
    #[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
    pub use sqlx;
}

/// The README's Rust example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;
