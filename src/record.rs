//! Whole records: a host struct of [`PersonalInfo`] fields of one subject,
//! sealed and opened in one call, with its lookup-token columns and its
//! entries for the subject's report.
//!
//! `#[derive(PersonalRecord)]` (feature `derive`, on by default) generates
//! the sealed counterpart of the struct and implements [`PersonalRecord`]
//! and [`SealedRecord`]; [`Custodian::seal_record`] and
//! [`Custodian::open_record`] do the rest.
//!
//! ```
//! use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SealedRecord, SubjectId};
//! use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber};
//! use privacy_pledge::purpose::Transaction;
//! use privacy_pledge::report::StoredRecord;
//!
//! #[derive(PersonalRecord)]
//! struct Customer {
//!     name: PersonalInfo<FullName, Transaction>,
//!     #[pledge(lookup)]
//!     email: PersonalInfo<EmailAddress, Transaction>,
//!     phone: PersonalInfo<PhoneNumber, Transaction>,
//!     #[pledge(not_personal)]
//!     newsletter: bool,
//! }
//!
//! let custodian = Custodian::in_memory();
//! let ada = SubjectId::random();
//! let customer = Customer {
//!     name: custodian.collect(ada, FullName::parse("Ada Lovelace")?)?,
//!     email: custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?,
//!     phone: custodian.collect(ada, PhoneNumber::parse("+44 20 7946 0958")?)?,
//!     newsletter: false,
//! };
//!
//! // One call seals every field (one audited seal each) and makes the
//! // lookup token of `email`.
//! let row: SealedCustomer = custodian.seal_record(&customer)?;
//! assert_eq!(row.subject, ada);
//!
//! // Login: find the row by the address as typed.
//! let typed = EmailAddress::parse("Ada@Example.com")?;
//! assert_eq!(custodian.lookup_token_of(&typed), row.email_lookup);
//!
//! // One call opens every field (one audited open each).
//! let back: Customer = custodian.open_record(&row)?;
//! assert_eq!(custodian.access(&back.email, |e| e.domain().to_owned())?, "example.com");
//!
//! // The record's envelopes are the subject's stored records.
//! let log = custodian.builtin_audit_log().unwrap();
//! let trail = custodian.verify_trail(log.inner().events())?;
//! let records: Vec<&dyn StoredRecord> = row.records();
//! let report = custodian.subject_report(ada, &records, &trail)?;
//! assert_eq!(report.records().len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # One audit event per field, not one for the record
//!
//! [`seal_record`](Custodian::seal_record) records one `seal` event per
//! personal field, and [`open_record`](Custodian::open_record) one `open`
//! event per personal field, each naming its data kind and purpose, exactly
//! as [`Custodian::seal`] and [`Custodian::open`] of that field would. A
//! record of three personal fields leaves three events, not one that names
//! the three fields. Why:
//!
//! - **The trail keeps one vocabulary.** An [`AuditEvent`] is about one kind
//!   held for one purpose; the subject's report, retention, consent
//!   restoration and every verifier and sink read it so. A record mixes
//!   kinds and may mix purposes (a `Transaction` email beside a `Newsletter`
//!   one): one event naming every field would be a new event shape that
//!   every reader of the trail would have to learn, and a trail where "was
//!   this person's phone number ever sealed?" depends on whether it was
//!   sealed alone or in a record.
//! - **Nothing new can bypass the audit.** Per-field events let the
//!   generated code do its work with the public, audited
//!   [`seal`](Custodian::seal), [`open`](Custodian::open) and
//!   [`lookup_token`](Custodian::lookup_token), and nothing else. One event
//!   for the record would need an unaudited per-field seal and open for the
//!   generated code (which lives in the host's crate) to call: a public door
//!   around the audit hook (R10) for any host code (A1).
//! - **Refusals stay precise.** Consent, retention and erasure are decided
//!   per purpose; each refusal is recorded about the field it concerns.
//!
//! The cost is one event per field instead of one per record: a few hundred
//! nanoseconds each on the chained in-memory log, and one batch on a durable
//! sink with group commit.
//!
//! So that a record is sealed or opened whole or not at all, the custodian
//! checks first what would refuse a field — the subjects (below), an erased
//! subject, a consent-based purpose without live consent (R7) when sealing,
//! a purpose past its retention period (R11) when opening — and records the
//! refusal, about that field, before anything is sealed or opened. (A consent
//! withdrawn by another thread between that check and the last field's seal
//! still stops that seal; the envelopes already made are dropped with the
//! error, and the trail shows their `seal` events beside the refusal.)
//!
//! # Fields of one subject
//!
//! A record is one person's. [`seal_record`](Custodian::seal_record) refuses
//! a record whose personal fields are not all about the subject of its first
//! one, and [`open_record`](Custodian::open_record) a sealed record with an
//! envelope of another subject than the one it names (a field swapped in by
//! host code or in the database): [`Error::MixedSubjects`], naming the field,
//! before anything is sealed or opened, with nothing audited.
//!
//! ```
//! # use privacy_pledge::{Custodian, Error, PersonalInfo, PersonalRecord, SubjectId};
//! # use privacy_pledge::data::{EmailAddress, FullName};
//! # use privacy_pledge::purpose::Transaction;
//! #[derive(PersonalRecord)]
//! struct Customer {
//!     name: PersonalInfo<FullName, Transaction>,
//!     email: PersonalInfo<EmailAddress, Transaction>,
//! }
//!
//! let custodian = Custodian::in_memory();
//! let (ada, bob) = (SubjectId::random(), SubjectId::random());
//! let mixed = Customer {
//!     name: PersonalInfo::collect(ada, FullName::parse("Ada Lovelace")?),
//!     email: PersonalInfo::collect(bob, EmailAddress::parse("bob@example.com")?),
//! };
//! assert!(matches!(
//!     custodian.seal_record(&mixed),
//!     Err(Error::MixedSubjects { field: "email", .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An envelope is bound to its subject, data kind and purpose, not to the
//! field (or the row) it was sealed for. Two fields of one record with the
//! same kind and purpose — a login and a recovery email, both
//! `EmailAddress` for `Transaction` — can be swapped by whoever edits the
//! database (A2), and the record opens with them swapped. Where it matters
//! which is which, give such fields different purposes or kinds.
//!
//! # What the derive refuses
//!
//! At compile time, with the error on the offending field and the rule in
//! the message: a field that is not `PersonalInfo<Kind, Purpose>` unless it
//! is marked `#[pledge(not_personal)]` (R1); a field so marked whose type
//! does not implement [`NotPersonal`] — a data kind, under any name, or a
//! type holding one, such as `Option<EmailAddress>` (R1/R9, decided on the
//! type by the compiler); `#[pledge(lookup)]` on a field that is
//! not personal, or on one held for `Improvement` (R6, through
//! [`LookupPurpose`]); enums, unions, tuple, unit and generic structs; a
//! struct without a personal field; a field named `subject`; an unknown
//! `pledge` key.
//!
//! ```compile_fail
//! use privacy_pledge::{PersonalInfo, PersonalRecord};
//! use privacy_pledge::data::FullName;
//! use privacy_pledge::purpose::Transaction;
//!
//! #[derive(PersonalRecord)]
//! struct Customer {
//!     name: PersonalInfo<FullName, Transaction>,
//!     // error: R1: field `age` is not personal information of the policy
//!     //        (`PersonalInfo<_, _>`); mark it `#[pledge(not_personal)]` if it holds none
//!     age: u8,
//! }
//! ```
//!
//! # Attributes
//!
//! | where | attribute | meaning |
//! |---|---|---|
//! | struct | `#[pledge(sealed = "Name")]` | the name of the sealed struct (default `Sealed` + the struct's name) |
//! | field | `#[pledge(lookup)]` | a [`LookupToken`] column `<field>_lookup` beside the field's envelope |
//! | field | `#[pledge(not_personal)]` | no personal information: copied as it is (must be [`NotPersonal`], `Clone` and `Debug`) |
//!
//! The sealed struct has the struct's visibility, each column its field's
//! (the `subject` column the struct's); it is `Clone` and `Debug` (envelopes
//! print redacted). Its columns are the envelopes, tokens and values a host
//! stores: [`Sealed`] and [`LookupToken`] are serde types and column types
//! for rusqlite, postgres and sqlx. The generated code names the crate
//! `::privacy_pledge`, and uses no `unsafe`.
//!
//! A lookup column is an index key, like any [`LookupToken`] read back from
//! storage: [`open_record`](Custodian::open_record) checks the envelopes'
//! subjects, not the tokens beside them.
//!
//! # Rows
//!
//! The sealed struct reads itself from a row of each database client the
//! crate's features enable, every column by its name
//! ([`SealedRecord::COLUMNS`]), so a query selects the columns by name in
//! any order and a row maps with no hand-written code:
//!
//! | feature of `privacy-pledge` | generated |
//! |---|---|
//! | `sqlite` | `SealedX::from_row(&rusqlite::Row) -> rusqlite::Result<SealedX>` |
//! | `postgres` | `SealedX::from_pg_row(&postgres::Row) -> Result<SealedX, postgres::Error>` |
//! | `sqlx-sqlite`, `sqlx-postgres` | `impl sqlx::FromRow<'_, R> for SealedX` (`query_as`), for any sqlx row that reads every column's type |
//! | `sqlite` or `postgres` | `SealedX::from_store_row(&store::sql::Row) -> Result<SealedX, StoreError>`, for [`Store::query`](crate::store::Store::query) on either database |
//!
//! Each is generated only where its feature of *this* crate is on (the
//! derive's code calls a macro of this crate, which is empty where the
//! feature is off), so a host that enables none pulls in no driver. The
//! envelopes, tokens and subject id are column types of every client (see
//! [`store::columns`](crate::store::columns)); a `#[pledge(not_personal)]`
//! field's type must be one of the client's too, or that client's
//! constructor cannot be called (the record still compiles). Reading checks
//! each column as its type says: an envelope of another kind or purpose, or
//! garbage, is an error that names the problem, never the contents.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use privacy_pledge::store::sqlite::rusqlite::{params, Connection};
//! use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SealedRecord, SubjectId};
//! use privacy_pledge::data::{EmailAddress, FullName};
//! use privacy_pledge::purpose::Transaction;
//!
//! #[derive(PersonalRecord)]
//! struct Customer {
//!     name: PersonalInfo<FullName, Transaction>,
//!     #[pledge(lookup)]
//!     email: PersonalInfo<EmailAddress, Transaction>,
//! }
//! assert_eq!(SealedCustomer::COLUMNS, ["subject", "name", "email", "email_lookup"]);
//!
//! let custodian = Custodian::in_memory();
//! let db = Connection::open_in_memory()?;
//! db.execute_batch(
//!     "CREATE TABLE customers (subject BLOB PRIMARY KEY, name BLOB, email BLOB, email_lookup BLOB UNIQUE)",
//! )?;
//! let ada = SubjectId::random();
//! let row = custodian.seal_record(&Customer {
//!     name: custodian.collect(ada, FullName::parse("Ada Lovelace")?)?,
//!     email: custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?,
//! })?;
//! db.execute(
//!     "INSERT INTO customers VALUES (?1, ?2, ?3, ?4)",
//!     params![row.subject, row.name, row.email, row.email_lookup],
//! )?;
//!
//! // Login: the row found by the address as typed, mapped by column name.
//! let typed = custodian.lookup_token_of(&EmailAddress::parse("Ada@Example.com")?);
//! let sql = format!(
//!     "SELECT {} FROM customers WHERE email_lookup = ?1",
//!     SealedCustomer::COLUMNS.join(", ")
//! );
//! let found = db.query_row(&sql, [typed], SealedCustomer::from_row)?;
//! let customer: Customer = custodian.open_record(&found)?;
//! assert_eq!(customer.email.subject(), ada);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The expansion
//!
//! For the `Customer` of the first example, `#[derive(PersonalRecord)]`
//! writes the following (doc comments shortened). It is shown here compiled
//! and run, written out by hand; write the derive, not this.
//!
//! ```
//! # use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! # use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber};
//! # use privacy_pledge::purpose::Transaction;
//! # struct Customer {
//! #     name: PersonalInfo<FullName, Transaction>,
//! #     email: PersonalInfo<EmailAddress, Transaction>,
//! #     phone: PersonalInfo<PhoneNumber, Transaction>,
//! #     newsletter: bool,
//! # }
//! // For each `#[pledge(not_personal)]` field, spanned like its type: the
//! // type must implement `NotPersonal` (R1, R9).
//! const _: fn() = || {
//!     fn not_personal<T: ?::core::marker::Sized + ::privacy_pledge::record::NotPersonal>() {}
//!     not_personal::<bool>();
//! };
//!
//! /// The sealed form of `Customer`: each personal field is an envelope […]
//! #[derive(::core::clone::Clone, ::core::fmt::Debug)]
//! struct SealedCustomer {
//!     /// The subject every sealed field is about.
//!     subject: ::privacy_pledge::SubjectId,
//!     /// The sealed `name`.
//!     name: ::privacy_pledge::Sealed<FullName, Transaction>,
//!     /// The sealed `email`.
//!     email: ::privacy_pledge::Sealed<EmailAddress, Transaction>,
//!     /// The lookup token of `email` (`#[pledge(lookup)]`): its equality index.
//!     email_lookup: ::privacy_pledge::LookupToken<EmailAddress>,
//!     /// The sealed `phone`.
//!     phone: ::privacy_pledge::Sealed<PhoneNumber, Transaction>,
//!     /// `newsletter`, not personal: kept as it is.
//!     newsletter: bool,
//! }
//!
//! #[automatically_derived]
//! impl ::privacy_pledge::record::PersonalRecord for Customer {
//!     type Sealed = SealedCustomer;
//!
//!     fn subject(&self) -> ::privacy_pledge::SubjectId {
//!         ::privacy_pledge::PersonalInfo::subject(&self.name)
//!     }
//!
//!     fn fields(&self) -> ::std::vec::Vec<::privacy_pledge::record::Field> {
//!         ::std::vec![
//!             ::privacy_pledge::record::Field::of("name", &self.name),
//!             ::privacy_pledge::record::Field::of("email", &self.email),
//!             ::privacy_pledge::record::Field::of("phone", &self.phone),
//!         ]
//!     }
//!
//!     fn __seal(
//!         &self,
//!         custodian: &::privacy_pledge::Custodian,
//!         _: &::privacy_pledge::record::Only,
//!     ) -> ::core::result::Result<SealedCustomer, ::privacy_pledge::Error> {
//!         ::core::result::Result::Ok(SealedCustomer {
//!             subject: ::privacy_pledge::record::PersonalRecord::subject(self),
//!             name: ::privacy_pledge::Custodian::seal(custodian, &self.name)?,
//!             email: ::privacy_pledge::Custodian::seal(custodian, &self.email)?,
//!             email_lookup: ::privacy_pledge::record::lookup_token(custodian, &self.email)?,
//!             phone: ::privacy_pledge::Custodian::seal(custodian, &self.phone)?,
//!             newsletter: ::core::clone::Clone::clone(&self.newsletter),
//!         })
//!     }
//!
//!     // The lookup tokens, known before sealing: a new subject's key and
//!     // their notes for the erasure receipt are one write.
//!     fn __lookups(
//!         &self,
//!         custodian: &::privacy_pledge::Custodian,
//!         only: &::privacy_pledge::record::Only,
//!     ) -> ::std::vec::Vec<::privacy_pledge::record::RecordLookup> {
//!         ::std::vec![::privacy_pledge::record::lookup_ref(custodian, &self.email, only)]
//!             .into_iter()
//!             .flatten()
//!             .collect()
//!     }
//! }
//!
//! #[automatically_derived]
//! impl ::privacy_pledge::record::SealedRecord for SealedCustomer {
//!     type Record = Customer;
//!
//!     const COLUMNS: &'static [&'static str] =
//!         &["subject", "name", "email", "email_lookup", "phone", "newsletter"];
//!
//!     fn subject(&self) -> ::privacy_pledge::SubjectId {
//!         self.subject
//!     }
//!
//!     fn fields(&self) -> ::std::vec::Vec<::privacy_pledge::record::Field> {
//!         ::std::vec![
//!             ::privacy_pledge::record::Field::of_sealed("name", &self.name),
//!             ::privacy_pledge::record::Field::of_sealed("email", &self.email),
//!             ::privacy_pledge::record::Field::of_sealed("phone", &self.phone),
//!         ]
//!     }
//!
//!     fn records(&self) -> ::std::vec::Vec<&dyn ::privacy_pledge::report::StoredRecord> {
//!         ::std::vec![
//!             &self.name as &dyn ::privacy_pledge::report::StoredRecord,
//!             &self.email as &dyn ::privacy_pledge::report::StoredRecord,
//!             &self.phone as &dyn ::privacy_pledge::report::StoredRecord,
//!         ]
//!     }
//!
//!     fn __open(
//!         &self,
//!         custodian: &::privacy_pledge::Custodian,
//!         _: &::privacy_pledge::record::Only,
//!     ) -> ::core::result::Result<Customer, ::privacy_pledge::Error> {
//!         ::core::result::Result::Ok(Customer {
//!             name: ::privacy_pledge::Custodian::open(custodian, &self.name)?,
//!             email: ::privacy_pledge::Custodian::open(custodian, &self.email)?,
//!             phone: ::privacy_pledge::Custodian::open(custodian, &self.phone)?,
//!             newsletter: ::core::clone::Clone::clone(&self.newsletter),
//!         })
//!     }
//! }
//!
//! // The row constructors (see Rows), each only where its feature of this
//! // crate is on; the macro is this crate's, so that the features tested
//! // are this crate's, not the host's.
//! ::privacy_pledge::__sealed_rows! {
//!     SealedCustomer {
//!         subject: ::privacy_pledge::SubjectId = "subject",
//!         name: ::privacy_pledge::Sealed<FullName, Transaction> = "name",
//!         email: ::privacy_pledge::Sealed<EmailAddress, Transaction> = "email",
//!         email_lookup: ::privacy_pledge::LookupToken<EmailAddress> = "email_lookup",
//!         phone: ::privacy_pledge::Sealed<PhoneNumber, Transaction> = "phone",
//!         newsletter: bool = "newsletter"
//!     }
//! }
//! # let custodian = Custodian::in_memory();
//! # let ada = SubjectId::random();
//! # let customer = Customer {
//! #     name: custodian.collect(ada, FullName::parse("Ada Lovelace")?)?,
//! #     email: custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?,
//! #     phone: custodian.collect(ada, PhoneNumber::parse("+44 20 7946 0958")?)?,
//! #     newsletter: true,
//! # };
//! # let row = custodian.seal_record(&customer)?;
//! # let back = custodian.open_record(&row)?;
//! # assert!(back.newsletter);
//! # assert_eq!(row.email_lookup, custodian.lookup_token_of(&EmailAddress::parse("ada@example.com")?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The generated methods use only the crate's public, audited API. The two
//! that act, `__seal` and `__open`, are hidden and borrow an [`Only`], which
//! only the custodian can make, so host code calls them only through
//! [`Custodian::seal_record`] and [`Custodian::open_record`]. The borrow
//! ends with the call, so a hand-written implementation cannot keep one to
//! call other records' methods later; and during the call it could do no
//! more than the public, audited `seal`, `open` and `lookup_token` it may
//! call anyway:
//!
//! ```compile_fail,E0423
//! # use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};
//! # use privacy_pledge::data::FullName;
//! # use privacy_pledge::purpose::Transaction;
//! #[derive(PersonalRecord)]
//! struct Customer {
//!     name: PersonalInfo<FullName, Transaction>,
//! }
//! let custodian = Custodian::in_memory();
//! let customer = Customer {
//!     name: PersonalInfo::collect(SubjectId::random(), FullName::parse("Ada Lovelace").unwrap()),
//! };
//! // error[E0423]: cannot initialize a tuple struct which contains private fields
//! let _ = customer.__seal(&custodian, &privacy_pledge::record::Only(()));
//! ```

use crate::audit::{Action, AuditEvent};
use crate::crypto::{LookupToken, Sealed};
use crate::data::{DataKind, Kind};
use crate::info::PersonalInfo;
use crate::policy::RuleId;
use crate::purpose::{
    Correspondence, Newsletter, Personalization, Promotion, Purpose, PurposeId, SeesPlaintext,
    ServiceNotice, Support, Transaction,
};
use crate::report::StoredRecord;
use crate::subject::SubjectId;
use crate::{Custodian, Error};

/// A struct of [`PersonalInfo`] fields of one subject, sealed and opened as a
/// whole by [`Custodian::seal_record`] and [`Custodian::open_record`].
///
/// Implement it with `#[derive(PersonalRecord)]` (see the [module
/// docs](self)); its acting method is hidden and callable only by the
/// custodian.
pub trait PersonalRecord: Sized {
    /// The sealed counterpart, generated beside the struct.
    type Sealed: SealedRecord<Record = Self>;

    /// The record's subject: the subject of its first personal field.
    fn subject(&self) -> SubjectId;

    /// The personal fields, in declaration order: name, subject, kind and
    /// purpose of each, never a value.
    fn fields(&self) -> Vec<Field>;

    /// Seals every personal field with [`Custodian::seal`] (and makes the
    /// lookup tokens with [`lookup_token`]). Called only by
    /// [`Custodian::seal_record`], after its checks.
    #[doc(hidden)]
    fn __seal(&self, custodian: &Custodian, only: &Only) -> Result<Self::Sealed, Error>;

    /// The lookup tokens `__seal` will make, known before it runs, so a new
    /// subject's key and their notes are one write. Called only by
    /// [`Custodian::seal_record`]; none by default.
    #[doc(hidden)]
    fn __lookups(&self, custodian: &Custodian, only: &Only) -> Vec<RecordLookup> {
        let _ = (custodian, only);
        Vec::new()
    }
}

/// The sealed counterpart of a [`PersonalRecord`]: envelopes, lookup tokens
/// and the values that are not personal, as the host stores them.
pub trait SealedRecord: Sized {
    /// The record it opens to.
    type Record: PersonalRecord<Sealed = Self>;

    /// The record's columns, in order: `subject`, then each field under
    /// its own name, a `#[pledge(lookup)]` field followed by its
    /// `<field>_lookup` column. The names a table for the record gives its
    /// columns, and a query selects (`COLUMNS.join(", ")`); the generated
    /// row constructors read each column by this name (see
    /// [Rows](self#rows)).
    const COLUMNS: &'static [&'static str];

    /// The subject the record names (its `subject` column).
    fn subject(&self) -> SubjectId;

    /// The sealed personal fields, in declaration order, as their envelope
    /// headers say: name, subject, kind and purpose of each.
    fn fields(&self) -> Vec<Field>;

    /// The envelopes, as the stored records of
    /// [`Custodian::subject_report`] and [`Custodian::sweep`].
    fn records(&self) -> Vec<&dyn StoredRecord>;

    /// Opens every envelope with [`Custodian::open`]. Called only by
    /// [`Custodian::open_record`], after its checks.
    #[doc(hidden)]
    fn __open(&self, custodian: &Custodian, only: &Only) -> Result<Self::Record, Error>;
}

/// A personal field of a record as the custodian checks it: its name, its
/// subject, its data kind and its purpose. Never its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name in the struct.
    pub name: &'static str,
    /// The subject the value is about.
    pub subject: SubjectId,
    /// The data kind.
    pub kind: Kind,
    /// The purpose it is held for.
    pub purpose: PurposeId,
}

impl Field {
    /// The field `name` holding `info`.
    pub fn of<T: DataKind, P: Purpose>(name: &'static str, info: &PersonalInfo<T, P>) -> Self {
        Field {
            name,
            subject: info.subject(),
            kind: T::KIND,
            purpose: P::ID,
        }
    }

    /// The field `name` holding the envelope `sealed` (its subject as the
    /// envelope's header names it).
    pub fn of_sealed<T: DataKind, P: Purpose>(name: &'static str, sealed: &Sealed<T, P>) -> Self {
        Field {
            name,
            subject: sealed.subject(),
            kind: T::KIND,
            purpose: P::ID,
        }
    }
}

/// A value only the custodian can make: the hidden methods of
/// [`PersonalRecord`] and [`SealedRecord`] take one, so host code cannot
/// call them around [`Custodian::seal_record`] and
/// [`Custodian::open_record`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Only(());

/// A type that holds no personal information, so a record may keep a field
/// of it as it is: the types `#[pledge(not_personal)]` accepts (R1, R9).
///
/// The derive checks each field marked `#[pledge(not_personal)]` against
/// this trait, by the field's *type* as the compiler resolves it, not by
/// how it is written: a data kind renamed on import
/// (`use privacy_pledge::data::EmailAddress as Contact;`) or wrapped
/// (`Option<EmailAddress>`, `Vec<PhoneNumber>`) is still the data kind, and
/// does not compile.
///
/// Implemented for
/// - `bool`, `char`, the integers, the floats, `()`, `str`, `String`,
///   [`Duration`](core::time::Duration), [`SystemTime`](std::time::SystemTime);
/// - [`SubjectId`], [`Timestamp`](crate::time::Timestamp) and
///   [`Date`](crate::data::Date);
/// - `Option`, `Result`, `Box`, `Rc`, `Arc`, `Cow`, `Vec`, `VecDeque`,
///   `BTreeMap`, `BTreeSet`, `HashMap`, `HashSet`, arrays, slices, tuples (to
///   twelve) and references, each when what it holds is `NotPersonal`.
///
/// Never for the policy's data kinds ([`FullName`](crate::data::FullName),
/// [`EmailAddress`](crate::data::EmailAddress),
/// [`PostalAddress`](crate::data::PostalAddress),
/// [`PhoneNumber`](crate::data::PhoneNumber),
/// [`PurchaseRecord`](crate::data::PurchaseRecord),
/// [`PaymentToken`](crate::data::PaymentToken)) nor for [`PersonalInfo`],
/// [`Sealed`], [`LookupToken`] or [`Pseudonym`](crate::Pseudonym). They are
/// this crate's types and this is this crate's trait, so no other crate can
/// implement it for them either (the orphan rule), nor for `Option` or `Vec`
/// of them.
///
/// A host type opts in with a plain `impl`:
///
/// ```
/// use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};
/// use privacy_pledge::data::FullName;
/// use privacy_pledge::purpose::Transaction;
/// use privacy_pledge::record::NotPersonal;
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// enum Plan { Free, Pro }
/// // Reviewed: a plan is one of two constants, about no one in particular.
/// impl NotPersonal for Plan {}
///
/// #[derive(PersonalRecord)]
/// struct Customer {
///     name: PersonalInfo<FullName, Transaction>,
///     #[pledge(not_personal)]
///     plan: Plan,
///     #[pledge(not_personal)]
///     tags: Vec<String>,
/// }
///
/// let custodian = Custodian::in_memory();
/// let customer = Customer {
///     name: custodian.collect(SubjectId::random(), FullName::parse("Ada Lovelace")?)?,
///     plan: Plan::Pro,
///     tags: vec!["early adopter".into()],
/// };
/// let row = custodian.seal_record(&customer)?;
/// assert_eq!(row.plan, Plan::Pro);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Such an `impl` is the host's explicit assertion that no value of the type
/// is personal information: review it like any other `impl` of a trust
/// boundary. A struct that wraps a data kind, or any value about a person
/// (an IP address, a free-text note, a date of birth), must not implement
/// it: make each personal value a `PersonalInfo<_, _>` field of its own,
/// sealed. `String`, the integers and the dates implement it because the
/// crate cannot know what a host puts in them: `#[pledge(not_personal)]` on
/// such a field is the host's assertion about that field, reviewed like the
/// field itself.
///
/// A data kind under another name does not compile:
///
/// ```compile_fail,E0277
/// use privacy_pledge::{PersonalInfo, PersonalRecord};
/// use privacy_pledge::data::{EmailAddress as Contact, FullName};
/// use privacy_pledge::purpose::Transaction;
///
/// #[derive(PersonalRecord)]
/// struct Customer {
///     name: PersonalInfo<FullName, Transaction>,
///     // error: R1/R9: `EmailAddress` may hold personal information: ...
///     #[pledge(not_personal)]
///     contact: Contact,
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "R1/R9: `{Self}` may hold personal information: `#[pledge(not_personal)]` takes only types that implement `NotPersonal`",
    label = "may hold personal information, which the sealed record would keep unsealed",
    note = "make each personal value a `PersonalInfo<_, _>` field of its own; a host type that holds none can say so with an empty `impl privacy_pledge::record::NotPersonal for MyType`"
)]
pub trait NotPersonal {}

macro_rules! not_personal {
    ($($t:ty),* $(,)?) => { $(impl NotPersonal for $t {})* };
}

not_personal!(
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    (),
    str,
    String,
    core::time::Duration,
    std::time::SystemTime,
    SubjectId,
    crate::time::Timestamp,
    crate::data::Date,
);

impl<T: NotPersonal + ?Sized> NotPersonal for &T {}
impl<T: NotPersonal + ?Sized> NotPersonal for &mut T {}
impl<T: NotPersonal + ?Sized> NotPersonal for Box<T> {}
impl<T: NotPersonal + ?Sized> NotPersonal for std::rc::Rc<T> {}
impl<T: NotPersonal + ?Sized> NotPersonal for std::sync::Arc<T> {}
impl<T: NotPersonal + ?Sized + ToOwned> NotPersonal for std::borrow::Cow<'_, T> where
    T::Owned: NotPersonal
{
}
impl<T: NotPersonal> NotPersonal for Option<T> {}
impl<T: NotPersonal, E: NotPersonal> NotPersonal for Result<T, E> {}
impl<T: NotPersonal> NotPersonal for [T] {}
impl<T: NotPersonal, const N: usize> NotPersonal for [T; N] {}
impl<T: NotPersonal> NotPersonal for Vec<T> {}
impl<T: NotPersonal> NotPersonal for std::collections::VecDeque<T> {}
impl<T: NotPersonal> NotPersonal for std::collections::BTreeSet<T> {}
impl<K: NotPersonal, V: NotPersonal> NotPersonal for std::collections::BTreeMap<K, V> {}
// The hasher is a field of the set or map too: any type fits there
// (`with_hasher` asks nothing of it), so it must be one that holds no
// personal information either.
impl<T: NotPersonal, S: NotPersonal> NotPersonal for std::collections::HashSet<T, S> {}
impl<K: NotPersonal, V: NotPersonal, S: NotPersonal> NotPersonal
    for std::collections::HashMap<K, V, S>
{
}
impl NotPersonal for std::collections::hash_map::RandomState {}
impl<H> NotPersonal for std::hash::BuildHasherDefault<H> {}

macro_rules! not_personal_tuples {
    ($(($($t:ident),+)),* $(,)?) => {
        $(impl<$($t: NotPersonal),+> NotPersonal for ($($t,)+) {})*
    };
}

not_personal_tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
    (A, B, C, D, E, F, G, H, I),
    (A, B, C, D, E, F, G, H, I, J),
    (A, B, C, D, E, F, G, H, I, J, K),
    (A, B, C, D, E, F, G, H, I, J, K, L),
);

/// A purpose whose fields may have a lookup-token column
/// (`#[pledge(lookup)]`): every purpose that sees plaintext, so not
/// [`Improvement`](crate::purpose::Improvement) (R6).
#[diagnostic::on_unimplemented(
    message = "R6: `#[pledge(lookup)]` needs a purpose that sees plaintext; `{Self}` data never does",
    label = "no lookup token for data held for this purpose",
    note = "a lookup token is made from the plaintext; data held for Improvement is analysed only as keyed pseudonyms (`custodian.pseudonym(&info)`)"
)]
pub trait LookupPurpose: SeesPlaintext {}

impl LookupPurpose for Transaction {}
impl LookupPurpose for Support {}
impl LookupPurpose for Correspondence {}
impl LookupPurpose for ServiceNotice {}
impl LookupPurpose for Newsletter {}
impl LookupPurpose for Promotion {}
impl LookupPurpose for Personalization {}

/// The lookup token of a `#[pledge(lookup)]` field: [`Custodian::lookup_token`],
/// with the bound that names the attribute in its error.
pub fn lookup_token<T: DataKind, P: LookupPurpose>(
    custodian: &Custodian,
    info: &PersonalInfo<T, P>,
) -> Result<LookupToken<T>, Error> {
    custodian.lookup_token(info)
}

/// The lookup token of `info` as an erasure receipt lists it, for
/// [`PersonalRecord::__lookups`]: [`lookup_token`]'s checks (`None` where
/// it would refuse, and then the seal reports why), but nothing noted —
/// only code handed an [`Only`] by [`Custodian::seal_record`] can call it,
/// and the token it makes is noted with the subject's new key. Its bound
/// (R6: no token of data held for a purpose that never sees plaintext) is
/// checked when it runs, not by the compiler: the derive's `__seal` calls
/// [`lookup_token`] for the same field, whose bound already refuses such a
/// record, once.
#[doc(hidden)]
pub fn lookup_ref<T: DataKind, P: Purpose>(
    custodian: &Custodian,
    info: &PersonalInfo<T, P>,
    _: &Only,
) -> Option<RecordLookup> {
    custodian.lookup_ref_of(info).map(|token| RecordLookup {
        subject: info.subject(),
        token,
    })
}

/// A lookup token [`lookup_ref`] made from a record's field, with the
/// subject it is about. Only `lookup_ref` makes one (private fields), so
/// what a record's `__lookups` returns — even a hand-written one — is a
/// token `lookup_token` would have made, never bytes of the caller's
/// choosing; and [`Custodian::seal_record`] notes only those about the
/// record's own subject.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct RecordLookup {
    subject: SubjectId,
    token: crate::crypto::LookupRef,
}

/// The tokens of `lookups` about `subject`: the ones a record about
/// `subject` may note with its key.
fn own_lookups(subject: SubjectId, lookups: Vec<RecordLookup>) -> Vec<crate::crypto::LookupRef> {
    lookups
        .into_iter()
        .filter(|l| l.subject == subject)
        .map(|l| l.token)
        .collect()
}

/// `Err(MixedSubjects)` for the first field not about `expected`.
fn one_subject(expected: SubjectId, fields: &[Field]) -> Result<(), Error> {
    match fields.iter().find(|f| f.subject != expected) {
        Some(f) => Err(Error::MixedSubjects {
            expected,
            found: f.subject,
            field: f.name,
        }),
        None => Ok(()),
    }
}

impl Custodian {
    /// Records a refusal about `field`. A failing sink cannot make a refusal
    /// worse, so its error is dropped.
    fn deny_field(&self, action: Action, field: &Field, rule: RuleId) {
        let event = AuditEvent::new(self.now(), field.subject, action, RuleId::R9)
            .about(field.kind, field.purpose)
            .denied(rule);
        let _ = self.record(event);
    }

    /// Seals every personal field of `record` ([`Custodian::seal`], one
    /// audited `seal` event per field, in declaration order) and makes the
    /// lookup token of each `#[pledge(lookup)]` field
    /// ([`Custodian::lookup_token`]).
    ///
    /// Before anything is sealed, refused with
    /// - [`Error::MixedSubjects`] if a personal field is about another
    ///   subject than the record's first one (nothing audited);
    /// - [`Error::Erased`] for an erased subject, and [`Error::NoConsent`]
    ///   for a field held for a consent-based purpose without live consent
    ///   (R7): recorded as a refused `seal` of that field, as
    ///   [`Custodian::seal`] would.
    ///
    /// See the [`record`](crate::record) module for an example.
    pub fn seal_record<R: PersonalRecord>(&self, record: &R) -> Result<R::Sealed, Error> {
        let subject = record.subject();
        let fields = record.fields();
        one_subject(subject, &fields)?;
        if let Err(e) = self.check_not_erased(subject) {
            if let Some(first) = fields.first() {
                self.deny_field(Action::Seal, first, RuleId::R11);
            }
            return Err(e);
        }
        for field in fields.iter().filter(|f| f.purpose.needs_consent()) {
            let refusal = match self.consents.live_epoch(subject, field.purpose) {
                Ok(Some(_)) => None,
                Ok(None) => Some(Error::NoConsent {
                    subject,
                    purpose: field.purpose,
                }),
                Err(e) => Some(e),
            };
            if let Some(e) = refusal {
                self.deny_field(Action::Seal, field, RuleId::R7);
                return Err(e);
            }
        }
        let only = Only(());
        let sealed = self.with_record_notes(
            subject,
            || own_lookups(subject, record.__lookups(self, &only)),
            || record.__seal(self, &only),
        )?;
        // The sealed record must name the subject its envelopes were sealed for.
        one_subject(subject, &sealed.fields())?;
        if sealed.subject() != subject {
            return Err(Error::MixedSubjects {
                expected: subject,
                found: sealed.subject(),
                field: "subject",
            });
        }
        Ok(sealed)
    }

    /// Opens every envelope of `sealed` ([`Custodian::open`], one audited
    /// `open` event per field, in declaration order) into the record.
    ///
    /// Before anything is opened, refused with
    /// - [`Error::MixedSubjects`] if an envelope was sealed for another
    ///   subject than the one the sealed record names, e.g. a field swapped
    ///   for another record's (nothing audited);
    /// - [`Error::Expired`] if a field is past its purpose's retention period
    ///   (R11), recorded as a refused `open` of that field.
    ///
    /// An erased subject is refused with [`Error::Erased`] at the first
    /// field, as [`Custodian::open`] refuses it; an altered envelope with
    /// [`Error::Unauthentic`].
    pub fn open_record<S: SealedRecord>(&self, sealed: &S) -> Result<S::Record, Error> {
        let subject = sealed.subject();
        let fields = sealed.fields();
        one_subject(subject, &fields)?;
        if self.check_not_erased(subject).is_ok() {
            if let Some(due) = self.sweep(&sealed.records()).into_iter().next() {
                let field = fields
                    .iter()
                    .find(|f| f.kind == due.kind && f.purpose == due.purpose)
                    .copied()
                    .unwrap_or(Field {
                        name: "",
                        subject,
                        kind: due.kind,
                        purpose: due.purpose,
                    });
                self.deny_field(Action::Open, &field, RuleId::R11);
                return Err(Error::Expired {
                    subject,
                    kind: due.kind,
                    purpose: due.purpose,
                    expired_at: due.expired_at,
                });
            }
        }
        let record = sealed.__open(self, &Only(()))?;
        one_subject(subject, &record.fields())?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::{lookup_ref, Only};
    use crate::data::EmailAddress;
    use crate::purpose::{Improvement, Newsletter, Transaction};
    use crate::{Custodian, PersonalInfo, SubjectId};

    fn email<P: crate::purpose::Purpose>(subject: SubjectId) -> PersonalInfo<EmailAddress, P> {
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap())
    }

    /// A1 (a hand-written `PersonalRecord` whose `__lookups` asks for any
    /// value's token): `lookup_ref` answers only where `lookup_token`
    /// would — never for data held for a purpose that never sees plaintext
    /// (R6), without live consent (R7), or of an erased subject (R11).
    #[test]
    fn lookup_ref_refuses_what_lookup_token_refuses() {
        let custodian = Custodian::in_memory();
        let only = Only(());
        let ada = SubjectId::random();
        let made = lookup_ref(&custodian, &email::<Transaction>(ada), &only).unwrap();
        let token = custodian.lookup_token(&email::<Transaction>(ada)).unwrap();
        assert_eq!((made.subject, made.token), (ada, token.to_ref()));
        assert!(lookup_ref(&custodian, &email::<Improvement>(ada), &only).is_none());
        assert!(lookup_ref(&custodian, &email::<Newsletter>(ada), &only).is_none());
        custodian.consents().grant::<Newsletter>(ada).unwrap();
        assert!(lookup_ref(&custodian, &email::<Newsletter>(ada), &only).is_some());
        custodian.erase(ada).unwrap();
        assert!(lookup_ref(&custodian, &email::<Transaction>(ada), &only).is_none());
    }

    /// A1 (a hand-written `__lookups` returning another subject's token):
    /// a record notes only tokens about its own subject, so no erasure
    /// receipt lists someone else's.
    #[test]
    fn a_record_notes_only_its_own_subjects_tokens() {
        let custodian = Custodian::in_memory();
        let only = Only(());
        let (ada, bob) = (SubjectId::random(), SubjectId::random());
        let of = |s| lookup_ref(&custodian, &email::<Transaction>(s), &only).unwrap();
        let kept = super::own_lookups(ada, vec![of(bob), of(ada)]);
        let token = custodian.lookup_token(&email::<Transaction>(ada)).unwrap();
        assert_eq!(kept, vec![token.to_ref()]);
    }
}
