//! The host's own SQL on a [`Store`](super::Store), whichever database its
//! URL named: one statement text with `$1`, `$2`… parameters (bound by
//! number on SQLite too, wherever they appear), values bound and read through a closed
//! set of types both clients know — so a service written once runs on
//! SQLite and on PostgreSQL with no `match` over the clients.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use privacy_pledge::store::{Store, StoreConfig};
//! use privacy_pledge::SubjectId;
//!
//! # let dir = std::env::temp_dir().join(format!("pp-sql-doc-{}", std::process::id()));
//! let store = Store::open(&StoreConfig::new("sqlite::memory:", dir.join("checkpoints")))?;
//! store.batch("CREATE TABLE visits (subject BLOB NOT NULL, n INTEGER NOT NULL)")?;
//! let ada = SubjectId::random();
//! store.execute("INSERT INTO visits VALUES ($1, $2)", &[&ada, &3_i64])?;
//! let seen: Vec<(SubjectId, i64)> = store.query(
//!     "SELECT subject, n FROM visits WHERE n > $1",
//!     &[&1_i64],
//!     |row| Ok((row.get(0)?, row.get(1)?)),
//! )?;
//! assert_eq!(seen, [(ada, 3)]);
//! # std::fs::remove_dir_all(&dir)?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why a closed set of types
//!
//! [`Param`] and [`Column`] are sealed and implemented for the same types
//! whatever features are on: integers, booleans, text, bytes, their
//! `Option`s, and the crate's column types (`Sealed`, `LookupToken`,
//! `SubjectId`, `LookupRef`; see [`columns`](super::columns)). A blanket
//! implementation over "whatever both enabled clients bind" would make a
//! type that binds under `sqlite` alone stop compiling once another crate in
//! the build enables `postgres` too — features must only ever add. Plaintext
//! types have no implementation, by design: nothing but an envelope, a token
//! or an id reaches a table.

#[cfg(feature = "postgres")]
use postgres::types::ToSql as PgToSql;

use super::StoreError;
use crate::crypto::{LookupRef, LookupToken, Sealed};
use crate::data::DataKind;
use crate::purpose::Purpose;
use crate::subject::SubjectId;

mod sealed {
    pub trait Sealed {}
}

/// A value bound as a statement parameter on either database.
///
/// Implemented for `i64`, `i32`, `bool`, `String`, `&str`, `Vec<u8>`,
/// `&[u8]`, their `Option`s (`i64`, `String`, `Vec<u8>`), and
/// [`Sealed`], [`LookupToken`], [`LookupRef`], [`SubjectId`] (and
/// `Option`s of the first two). Sealed: the set is the crate's.
///
/// On PostgreSQL each value is sent with its type — `i64` as `bigint`,
/// `i32` as `integer`, `bool` as `boolean`, text as `text`, bytes and the
/// crate's column types as `bytea` — so a statement is parsed, bound and run
/// in one round trip, and the server converts to the column's type where an
/// assignment cast exists (an `i64` into an `integer` column, `text` into
/// `varchar`).
pub trait Param: sealed::Sealed + Sync {
    /// As an SQLite parameter.
    #[cfg(feature = "sqlite")]
    fn as_sqlite(&self) -> &dyn rusqlite::ToSql;
    /// As a PostgreSQL parameter.
    #[cfg(feature = "postgres")]
    fn as_postgres(&self) -> &(dyn PgToSql + Sync);
    /// The PostgreSQL type it is sent as.
    #[cfg(feature = "postgres")]
    fn postgres_type(&self) -> postgres::types::Type;
}

/// A value read from a column on either database (see [`Row::get`]): the
/// same closed set of types as [`Param`], owned.
pub trait Column: sealed::Sealed + Sized {
    /// Column `i` of an SQLite row.
    #[cfg(feature = "sqlite")]
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    /// Column `i` of a PostgreSQL row.
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error>;
}

macro_rules! both {
    ($([$($g:tt)*] $t:ty => $pg:ident),* $(,)?) => {$(
        impl<$($g)*> sealed::Sealed for $t {}
        impl<$($g)*> Param for $t {
            #[cfg(feature = "sqlite")]
            fn as_sqlite(&self) -> &dyn rusqlite::ToSql {
                self
            }
            #[cfg(feature = "postgres")]
            fn as_postgres(&self) -> &(dyn PgToSql + Sync) {
                self
            }
            #[cfg(feature = "postgres")]
            fn postgres_type(&self) -> postgres::types::Type {
                postgres::types::Type::$pg
            }
        }
    )*};
}

macro_rules! read {
    ($([$($g:tt)*] $t:ty),* $(,)?) => {$(
        impl<$($g)*> Column for $t {
            #[cfg(feature = "sqlite")]
            fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            #[cfg(feature = "postgres")]
            fn from_postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
                row.try_get(i)
            }
        }
    )*};
}

both!(
    [] i64 => INT8,
    [] i32 => INT4,
    [] bool => BOOL,
    [] String => TEXT,
    ['a] &'a str => TEXT,
    [] Vec<u8> => BYTEA,
    ['a] &'a [u8] => BYTEA,
    [] Option<i64> => INT8,
    [] Option<String> => TEXT,
    [] Option<Vec<u8>> => BYTEA,
    [] SubjectId => BYTEA,
    [] LookupRef => BYTEA,
    [T: DataKind, P: Purpose] Sealed<T, P> => BYTEA,
    [T: DataKind, P: Purpose] Option<Sealed<T, P>> => BYTEA,
    [T: DataKind] LookupToken<T> => BYTEA,
    [T: DataKind] Option<LookupToken<T>> => BYTEA,
);

read!(
    [] i64,
    [] i32,
    [] bool,
    [] String,
    [] Vec<u8>,
    [] Option<i64>,
    [] Option<String>,
    [] Option<Vec<u8>>,
    [] SubjectId,
    [T: DataKind, P: Purpose] Sealed<T, P>,
    [T: DataKind, P: Purpose] Option<Sealed<T, P>>,
    [T: DataKind] LookupToken<T>,
    [T: DataKind] Option<LookupToken<T>>,
);

/// One row of a [`Store::query`](super::Store::query), on either database
/// (a variant per database feature: more may come with more features).
#[non_exhaustive]
pub enum Row<'a> {
    /// An SQLite row.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a rusqlite::Row<'a>),
    /// A PostgreSQL row.
    #[cfg(feature = "postgres")]
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as a `T`. A column that does not read as `T`
    /// (another type, a NULL into a non-`Option`, bytes that are no
    /// envelope or id) is an error naming the problem, never the value.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Row::Sqlite(r) => T::from_sqlite(r, i).map_err(sqlite_err),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => T::from_postgres(r, i).map_err(pg_read_err),
        }
    }

    /// The row read by the constructor of its database: what the
    /// `from_store_row` that `#[derive(PersonalRecord)]` generates calls.
    /// It only picks one of the caller's functions and converts its error;
    /// it reads nothing itself.
    #[doc(hidden)]
    pub fn __record<T>(
        &self,
        #[cfg(feature = "sqlite")] sqlite: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        #[cfg(feature = "postgres")] postgres: impl FnOnce(&postgres::Row) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Row::Sqlite(r) => sqlite(r).map_err(sqlite_err),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => postgres(r).map_err(pg_read_err),
        }
    }
}

/// A transaction of either database: what
/// [`Store::commit_request`](super::Store::commit_request) hands the host's
/// write (a variant per database feature).
#[non_exhaustive]
pub enum Tx<'a, 'c> {
    /// SQLite's.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a rusqlite::Transaction<'c>),
    /// PostgreSQL's.
    #[cfg(feature = "postgres")]
    Postgres(&'a mut postgres::Transaction<'c>),
}

impl Tx<'_, '_> {
    /// Runs one statement with parameters `$1`, `$2`… in the transaction;
    /// returns the rows changed.
    pub fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => sqlite_execute(tx, sql, params),
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => tx
                .execute_typed(sql, &postgres_params(params))
                .map_err(pg_err),
        }
    }
}

/// An SQLite error of one of the host's statements.
#[cfg(feature = "sqlite")]
fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Constraint(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

/// Binds `params` to `stmt` by number: `$n` (and `?n`) is `params[n - 1]`
/// wherever it appears. SQLite itself reads `$n` as a *named* parameter
/// and numbers names in order of first appearance, so `… $2 … $1` would
/// bind the first value to `$2`; binding each name to the value its number
/// says gives PostgreSQL's meaning on both. A `$n` past the values given
/// is an error; a value no `$n` reads is left unread, as on PostgreSQL
/// (whose statements here are sent with every value's type).
#[cfg(feature = "sqlite")]
fn sqlite_bind(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[&dyn Param],
) -> Result<(), StoreError> {
    for index in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(index) {
            // A bare `?` (numbered by SQLite), or a gap below a `?n`.
            None => index,
            Some(name) => name
                .strip_prefix('$')
                .or_else(|| name.strip_prefix('?'))
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    StoreError::Database(format!(
                        "parameter {name}: the store's statements take $1, $2, …"
                    ))
                })?,
        };
        let param = params.get(n - 1).ok_or_else(|| {
            StoreError::Database(format!(
                "the statement reads ${n}, but {} value(s) were given",
                params.len()
            ))
        })?;
        stmt.raw_bind_parameter(index, param.as_sqlite())
            .map_err(sqlite_err)?;
    }
    Ok(())
}

#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_err)?;
    sqlite_bind(&mut stmt, params)?;
    stmt.raw_execute().map(|n| n as u64).map_err(sqlite_err)
}

#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_query<R, E: From<StoreError>>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
    mut f: impl FnMut(&Row<'_>) -> Result<R, E>,
) -> Result<Vec<R>, E> {
    let db = |e: rusqlite::Error| E::from(sqlite_err(e));
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    sqlite_bind(&mut stmt, params)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(f(&Row::Sqlite(r))?);
    }
    Ok(out)
}

/// `params` with their types: a statement so bound is parsed, bound and
/// run in one round trip (no prepare first).
#[cfg(feature = "postgres")]
pub(crate) fn postgres_params<'p>(
    params: &[&'p dyn Param],
) -> Vec<(&'p (dyn PgToSql + Sync), postgres::types::Type)> {
    params
        .iter()
        .map(|p| (p.as_postgres(), p.postgres_type()))
        .collect()
}

/// A column of a PostgreSQL row that did not read: the client's message
/// ("error deserializing column 4") and its cause, the column type's own
/// message ("… read as EmailAddress"), which names the problem, never the
/// value (a row's bytes reach no error of the crate's column types).
#[cfg(feature = "postgres")]
fn pg_read_err(e: postgres::Error) -> StoreError {
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Database(format!("{e}: {cause}")),
        None => pg_err(e),
    }
}

/// A PostgreSQL error of one of the host's statements: its message and
/// SQLSTATE, never its DETAIL (which may quote a row).
#[cfg(feature = "postgres")]
pub(crate) fn pg_err(e: postgres::Error) -> StoreError {
    let constraint = e
        .as_db_error()
        .is_some_and(|db| db.code().code().starts_with("23"));
    match super::postgres::db_err(e) {
        StoreError::Database(m) if constraint => StoreError::Constraint(m),
        other => other,
    }
}
