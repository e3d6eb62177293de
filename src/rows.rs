//! Row constructors of the sealed records `#[derive(PersonalRecord)]`
//! generates, behind the crate's database features.
//!
//! The derive cannot see which features of this crate are on, and a
//! `#[cfg(feature = "...")]` in the code it writes would test the *host's*
//! features. So it writes one call, `__sealed_rows!`, and this crate
//! defines the macros that call expands to: each database's constructor
//! where its feature is on, nothing where it is off. A host that enables
//! no database feature gets no constructor and pulls in no driver.
//!
//! Every bound on a column's type is lazy (higher-ranked, or on the row
//! type): a `#[pledge(not_personal)]` field whose type a driver cannot
//! read (`Vec<String>`) leaves the record compiling, and only the call of
//! that driver's constructor is refused.

/// Expands to the row constructors of one sealed record: `$name`'s columns,
/// in order, each `field: Type = "column"`.
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* $(,)? }) => {
        $crate::__sealed_rows_sqlite! { $name { $($field: $ty = $column),* } }
        $crate::__sealed_rows_postgres! { $name { $($field: $ty = $column),* } }
        $crate::__sealed_rows_sqlx! { $name { $($field: $ty = $column),* } }
        $crate::__sealed_rows_store! { $name { $($field: $ty = $column),* } }
    };
}

/// `from_row` for a rusqlite row (feature `sqlite`).
#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_sqlite {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* }) => {
        #[automatically_derived]
        impl $name {
            /// Reads the record from a rusqlite row (feature `sqlite` of
            /// `privacy-pledge`), each column by its name
            /// (`SealedRecord::COLUMNS`): select them by name, in any order.
            /// A column that does not hold what its type says (an envelope
            /// of another kind or purpose, a token of the wrong length) is
            /// an error that names the problem, never the contents.
            #[allow(private_bounds)]
            pub fn from_row(
                row: &$crate::store::sqlite::rusqlite::Row<'_>,
            ) -> $crate::store::sqlite::rusqlite::Result<Self>
            where
                $(for<'__pp> $ty: $crate::store::sqlite::rusqlite::types::FromSql,)*
            {
                ::core::result::Result::Ok($name {
                    $($field: row.get($column)?,)*
                })
            }
        }
    };
}

#[cfg(not(feature = "sqlite"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_sqlite {
    ($($tokens:tt)*) => {};
}

/// `from_pg_row` for a row of the synchronous `postgres` client (feature
/// `postgres`).
#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_postgres {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* }) => {
        #[automatically_derived]
        impl $name {
            /// Reads the record from a row of the `postgres` client (feature
            /// `postgres` of `privacy-pledge`), each column by its name
            /// (`SealedRecord::COLUMNS`): select them by name, in any order.
            /// A column that does not hold what its type says is an error
            /// that names the problem, never the contents.
            #[allow(private_bounds)]
            pub fn from_pg_row(
                row: &$crate::store::postgres::postgres::Row,
            ) -> ::core::result::Result<Self, $crate::store::postgres::postgres::Error>
            where
                $(for<'__pp> $ty: $crate::store::postgres::postgres::types::FromSql<'__pp>,)*
            {
                ::core::result::Result::Ok($name {
                    $($field: row.try_get($column)?,)*
                })
            }
        }
    };
}

#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_postgres {
    ($($tokens:tt)*) => {};
}

/// `sqlx::FromRow` for any sqlx row whose driver reads every column's type
/// (features `sqlx-sqlite`, `sqlx-postgres`).
#[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_sqlx {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* }) => {
        /// Reads the record from an sqlx row (`query_as`), each column by
        /// its name (`SealedRecord::COLUMNS`).
        #[automatically_derived]
        impl<'__r, __R> $crate::__private::sqlx::FromRow<'__r, __R> for $name
        where
            __R: $crate::__private::sqlx::Row,
            &'static str: $crate::__private::sqlx::ColumnIndex<__R>,
            $($ty: $crate::__private::sqlx::Decode<'__r, <__R as $crate::__private::sqlx::Row>::Database>
                + $crate::__private::sqlx::Type<<__R as $crate::__private::sqlx::Row>::Database>,)*
        {
            fn from_row(row: &'__r __R) -> ::core::result::Result<Self, $crate::__private::sqlx::Error> {
                ::core::result::Result::Ok($name {
                    $($field: $crate::__private::sqlx::Row::try_get(row, $column)?,)*
                })
            }
        }
    };
}

#[cfg(not(any(feature = "sqlx-sqlite", feature = "sqlx-postgres")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_sqlx {
    ($($tokens:tt)*) => {};
}

/// `from_store_row` for a row of the crate's own `Store::query`, on either
/// database (features `sqlite`, `postgres`): `$bounds` are the lazy bounds
/// of the constructors `$ctor` it dispatches to, one per database enabled
/// (the hidden `Row::__record` takes one per database enabled).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __store_row {
    ($name:ident [$($bounds:tt)*] $($ctor:path),+) => {
        #[automatically_derived]
        impl $name {
            /// Reads the record from a row of the crate's `Store::query`, on
            /// whichever database the store is (`from_row` or
            /// `from_pg_row`), each column by its name
            /// (`SealedRecord::COLUMNS`). A column that does not hold what
            /// its type says is an error that names the problem, never the
            /// contents.
            #[allow(private_bounds)]
            pub fn from_store_row(
                row: &$crate::store::sql::Row<'_>,
            ) -> ::core::result::Result<Self, $crate::store::StoreError>
            where
                $($bounds)*
            {
                row.__record($($ctor),+)
            }
        }
    };
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_store {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* }) => {
        $crate::__store_row! { $name [$(for<'__pp> $ty: $crate::store::sqlite::rusqlite::types::FromSql,)* $(for<'__pp> $ty: $crate::store::postgres::postgres::types::FromSql<'__pp>,)*] Self::from_row, Self::from_pg_row }
    };
}

#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_store {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* }) => {
        $crate::__store_row! { $name [$(for<'__pp> $ty: $crate::store::sqlite::rusqlite::types::FromSql,)*] Self::from_row }
    };
}

#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_store {
    ($name:ident { $($field:ident : $ty:ty = $column:literal),* }) => {
        $crate::__store_row! { $name [$(for<'__pp> $ty: $crate::store::postgres::postgres::types::FromSql<'__pp>,)*] Self::from_pg_row }
    };
}

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sealed_rows_store {
    ($($tokens:tt)*) => {};
}
