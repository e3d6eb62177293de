//! Column types: [`Sealed<T, P>`], [`LookupToken<T>`] and [`SubjectId`] go
//! into the host's own tables as they are, on every database client the
//! crate supports.
//!
//! | type | SQLite (`sqlite`, `sqlx-sqlite`) | PostgreSQL (`postgres`, `sqlx-postgres`) |
//! |---|---|---|
//! | [`Sealed<T, P>`] | `BLOB` (the envelope's bytes); reads `TEXT` in the canonical base64 form too | `bytea`; `postgres` also reads `text` in the base64 form |
//! | [`LookupToken<T>`] | `BLOB`, 32 bytes | `bytea`, 32 bytes |
//! | [`LookupRef`](crate::crypto::LookupRef) (an erasure receipt's entry; bind only) | `BLOB`, 32 bytes | `bytea`, 32 bytes |
//! | [`SubjectId`] | `BLOB`, 16 bytes; `rusqlite` also reads `TEXT` in the 32-hex-digit form | `bytea`, 16 bytes; `postgres` also reads `text` in the 32-hex-digit form |
//!
//! Reading a column checks the bytes like [`Sealed::from_bytes`] and
//! [`LookupToken::from_bytes`]: garbage is an error naming the column's
//! problem, never its contents. The *type* of the value read says which
//! kind and purpose the column holds, so a column read as the wrong type is
//! refused before any decryption.
//!
//! A subject id is its 16 bytes, big-endian like [`u128::from`], in the same
//! byte column on both databases. Not PostgreSQL's `uuid`: a `SubjectId` is
//! 128 random bits, not an RFC 9562 UUID (no version or variant bits), and
//! `uuid` would show it dashed, unlike the 32 hex digits of its
//! [`Display`](std::fmt::Display) form in audit events, logs and the
//! store's own `pp_` tables; SQLite has no such type anyway. Any length other
//! than 16 bytes is refused with
//! [`InvalidSubjectId`](crate::subject::InvalidSubjectId), never a panic. The
//! text form is read too (`rusqlite` and `postgres`), so the `subject`
//! columns of the `pp_` tables, and a host table that kept
//! `subject.to_string()`, read as `SubjectId`; binding a `SubjectId` always
//! writes bytes, so compare it with a byte column.
//!
//! Plaintext types (`EmailAddress`, `PersonalInfo`, …) have no such impls, by
//! design: nothing but an envelope, a token or an id reaches a table.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use privacy_pledge::store::sqlite::rusqlite::{params, Connection};
//! use privacy_pledge::{Custodian, LookupToken, Sealed, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Transaction;
//!
//! let custodian = Custodian::in_memory();
//! let db = Connection::open_in_memory()?;
//! db.execute_batch("CREATE TABLE customers (subject BLOB, email BLOB, email_index BLOB)")?;
//!
//! let subject = SubjectId::random();
//! let email = custodian.collect::<EmailAddress, Transaction>(
//!     subject,
//!     EmailAddress::parse("ada@example.com")?,
//! )?;
//! db.execute(
//!     "INSERT INTO customers VALUES (?1, ?2, ?3)",
//!     params![subject, custodian.seal(&email)?, custodian.lookup_token(&email)?],
//! )?;
//!
//! let typed = custodian.lookup_token_of(&EmailAddress::parse("Ada@example.com")?);
//! let (found, sealed): (SubjectId, Sealed<EmailAddress, Transaction>) = db.query_row(
//!     "SELECT subject, email FROM customers WHERE email_index = ?1",
//!     [typed],
//!     |r| Ok((r.get(0)?, r.get(1)?)),
//! )?;
//! assert_eq!(found, subject);
//! assert_eq!(custodian.open(&sealed)?.subject(), subject);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[allow(unused_imports)]
use crate::{
    crypto::{LookupToken, Sealed},
    SubjectId,
};

#[cfg(feature = "sqlite")]
mod sqlite {
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    use crate::crypto::{LookupRef, LookupToken, Sealed};
    use crate::data::DataKind;
    use crate::purpose::Purpose;
    use crate::SubjectId;

    fn other(e: impl std::error::Error + Send + Sync + 'static) -> FromSqlError {
        FromSqlError::Other(Box::new(e))
    }

    impl<T: DataKind, P: Purpose> ToSql for Sealed<T, P> {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.to_bytes()))
        }
    }

    impl<T: DataKind, P: Purpose> FromSql for Sealed<T, P> {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            match value {
                ValueRef::Blob(b) => Sealed::from_bytes(b).map_err(other),
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .map_err(other)
                    .and_then(|t| Sealed::from_text(t).map_err(other)),
                _ => Err(FromSqlError::InvalidType),
            }
        }
    }

    impl<T: DataKind> ToSql for LookupToken<T> {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_bytes().as_slice()))
        }
    }

    impl<T: DataKind> FromSql for LookupToken<T> {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            LookupToken::from_bytes(value.as_blob()?).map_err(other)
        }
    }

    impl ToSql for LookupRef {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.token.as_slice()))
        }
    }

    impl ToSql for SubjectId {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_bytes().as_slice()))
        }
    }

    impl FromSql for SubjectId {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            match value {
                ValueRef::Blob(b) => SubjectId::try_from(b).map_err(other),
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .map_err(other)
                    .and_then(|t| t.parse::<SubjectId>().map_err(other)),
                _ => Err(FromSqlError::InvalidType),
            }
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::error::Error;

    use postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

    use crate::crypto::{LookupRef, LookupToken, Sealed};
    use crate::data::DataKind;
    use crate::purpose::Purpose;
    use crate::SubjectId;

    type Boxed = Box<dyn Error + Sync + Send>;

    /// `ToSql` of a column written as `bytea`: `$bytes` of `$this`.
    macro_rules! to_bytea {
        ([$($g:tt)*] $ty:ty, $this:ident => $bytes:expr) => {
            impl<$($g)*> ToSql for $ty {
                fn to_sql(
                    &self,
                    ty: &Type,
                    out: &mut postgres::types::private::BytesMut,
                ) -> Result<IsNull, Boxed> {
                    let $this = self;
                    $bytes.to_sql(ty, out)
                }
                accepts!(BYTEA);
                to_sql_checked!();
            }
        };
    }

    to_bytea!([T: DataKind, P: Purpose] Sealed<T, P>, s => s.to_bytes().as_slice());
    to_bytea!([T: DataKind] LookupToken<T>, t => t.as_bytes().as_slice());
    to_bytea!([] LookupRef, r => r.token.as_slice());
    to_bytea!([] SubjectId, s => s.as_bytes().as_slice());

    impl<'a, T: DataKind, P: Purpose> FromSql<'a> for Sealed<T, P> {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Boxed> {
            if *ty == Type::BYTEA {
                Ok(Sealed::from_bytes(raw)?)
            } else {
                Ok(Sealed::from_text(<&str>::from_sql(ty, raw)?)?)
            }
        }
        accepts!(BYTEA, TEXT, VARCHAR);
    }

    impl<'a, T: DataKind> FromSql<'a> for LookupToken<T> {
        fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Boxed> {
            Ok(LookupToken::from_bytes(raw)?)
        }
        accepts!(BYTEA);
    }

    impl<'a> FromSql<'a> for SubjectId {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Boxed> {
            if *ty == Type::BYTEA {
                Ok(SubjectId::try_from(raw)?)
            } else {
                Ok(<&str>::from_sql(ty, raw)?.parse::<SubjectId>()?)
            }
        }
        accepts!(BYTEA, TEXT, VARCHAR);
    }
}

#[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
mod sqlx_impls {
    //! One set of impls for every sqlx database whose `Vec<u8>` is a column
    //! type (SQLite `BLOB`, PostgreSQL `bytea`).

    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::{Database, Decode, Encode, Type};

    use crate::crypto::{LookupRef, LookupToken, Sealed};
    use crate::data::DataKind;
    use crate::purpose::Purpose;
    use crate::SubjectId;

    /// `Type` and `Encode` of a column stored as bytes, the same as
    /// `Vec<u8>`'s (`$bytes` of `$this`).
    macro_rules! bytes_column {
        ([$($g:tt)*] $ty:ty, $this:ident => $bytes:expr) => {
            impl<$($g)* DB: Database> Type<DB> for $ty
            where
                Vec<u8>: Type<DB>,
            {
                fn type_info() -> DB::TypeInfo {
                    <Vec<u8> as Type<DB>>::type_info()
                }
                fn compatible(ty: &DB::TypeInfo) -> bool {
                    <Vec<u8> as Type<DB>>::compatible(ty)
                }
            }

            impl<$($g)* DB: Database> Encode<'_, DB> for $ty
            where
                for<'q> Vec<u8>: Encode<'q, DB>,
            {
                fn encode_by_ref(
                    &self,
                    buf: &mut <DB as Database>::ArgumentBuffer,
                ) -> Result<IsNull, BoxDynError> {
                    let $this = self;
                    $bytes.encode(buf)
                }
            }
        };
    }

    /// `Decode` of a column stored as bytes, through `$from`, which refuses
    /// bytes that are not the type's.
    macro_rules! bytes_decode {
        ([$($g:tt)*] $ty:ty, $from:path) => {
            impl<'r, $($g)* DB: Database> Decode<'r, DB> for $ty
            where
                &'r [u8]: Decode<'r, DB>,
            {
                fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                    Ok($from(<&[u8] as Decode<DB>>::decode(value)?)?)
                }
            }
        };
    }

    bytes_column!([] LookupRef, r => r.token.to_vec());
    bytes_column!([T: DataKind, P: Purpose,] Sealed<T, P>, s => s.to_bytes());
    bytes_column!([T: DataKind,] LookupToken<T>, t => t.as_bytes().to_vec());
    bytes_decode!([T: DataKind, P: Purpose,] Sealed<T, P>, Sealed::from_column);
    bytes_decode!([T: DataKind,] LookupToken<T>, LookupToken::from_bytes);
    bytes_column!([] SubjectId, s => s.as_bytes().to_vec());
    bytes_decode!([] SubjectId, SubjectId::try_from);
}
