//! `Sealed` and `LookupToken` as sqlx column types, on SQLite and on a real
//! PostgreSQL server (started by `scripts/test`, which sets `PP_TEST_PG`):
//! the same sign-up, login, wrong-type read, erasure and receipt scenario as
//! the rusqlite and postgres clients (A1 host code, A2 reading the table).

#[path = "common/lookup_shop.rs"]
mod lookup_shop;

use std::sync::Arc;

use lookup_shop::{CustomerTable, EmailColumn};
use privacy_pledge::crypto::{Keyring, LookupRef};
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, LookupToken, Sealed, SubjectId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use tokio::runtime::Runtime;

/// The host's table through sqlx, driven from synchronous test code.
struct Sqlx<Pool> {
    rt: Runtime,
    pool: Pool,
}

macro_rules! customer_table {
    ($pool:ty, $db:ty) => {
        impl CustomerTable for Sqlx<$pool> {
            fn insert(
                &self,
                subject: SubjectId,
                email: &EmailColumn,
                index: &LookupToken<EmailAddress>,
            ) {
                self.rt
                    .block_on(
                        sqlx::query(
                            "INSERT INTO customers (subject, email, email_index) VALUES ($1, $2, $3)",
                        )
                        .bind(subject.to_string())
                        .bind(email)
                        .bind(index)
                        .execute(&self.pool),
                    )
                    .unwrap();
            }
            fn find(&self, index: &LookupToken<EmailAddress>) -> Option<(SubjectId, EmailColumn)> {
                self.rt
                    .block_on(
                        sqlx::query_as::<$db, (String, EmailColumn)>(
                            "SELECT subject, email FROM customers WHERE email_index = $1",
                        )
                        .bind(index)
                        .fetch_optional(&self.pool),
                    )
                    .unwrap()
                    .map(|(s, e)| (s.parse().unwrap(), e))
            }
            fn email_as_name(
                &self,
                subject: SubjectId,
            ) -> Result<Sealed<FullName, Transaction>, String> {
                self.rt
                    .block_on(
                        sqlx::query_scalar::<$db, Sealed<FullName, Transaction>>(
                            "SELECT email FROM customers WHERE subject = $1",
                        )
                        .bind(subject.to_string())
                        .fetch_one(&self.pool),
                    )
                    .map_err(|e| e.to_string())
            }
            fn raw_rows(&self) -> Vec<Vec<u8>> {
                self.rt
                    .block_on(
                        sqlx::query_as::<$db, (Vec<u8>, Vec<u8>)>(
                            "SELECT email, email_index FROM customers",
                        )
                        .fetch_all(&self.pool),
                    )
                    .unwrap()
                    .into_iter()
                    .map(|(mut a, b)| {
                        a.extend(b);
                        a
                    })
                    .collect()
            }
            fn forget_index(&self, token: &LookupRef) {
                self.rt
                    .block_on(
                        sqlx::query(
                            "UPDATE customers SET email_index = NULL WHERE email_index = $1",
                        )
                        .bind(*token)
                        .execute(&self.pool),
                    )
                    .unwrap();
            }
        }
    };
}

customer_table!(SqlitePool, sqlx::Sqlite);
customer_table!(PgPool, sqlx::Postgres);

fn custodian() -> Custodian {
    Custodian::builder()
        .keyring(Arc::new(Keyring::generate().unwrap()))
        .build()
        .unwrap()
}

#[test]
fn a1_a2_sqlite_login_finds_the_customer_until_the_receipt_is_applied() {
    let rt = Runtime::new().unwrap();
    let pool = rt
        .block_on(
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect("sqlite::memory:"),
        )
        .unwrap();
    rt.block_on(
        sqlx::query(
            "CREATE TABLE customers (subject TEXT PRIMARY KEY, email BLOB NOT NULL, email_index BLOB)",
        )
        .execute(&pool),
    )
    .unwrap();
    let table = Sqlx { rt, pool };
    lookup_shop::login_finds_the_customer_until_the_receipt_is_applied(&custodian(), &table);
}

/// A2: a `Sealed` column stored in its text form (`TEXT`, as `to_text` or
/// serde write it) reads through sqlx-sqlite as through rusqlite; a text
/// that is not an envelope's canonical form is refused, naming no value.
#[test]
fn a2_sqlite_reads_a_sealed_column_in_its_text_form() {
    let c = custodian();
    let email: privacy_pledge::PersonalInfo<EmailAddress, Transaction> = c
        .collect(
            SubjectId::random(),
            EmailAddress::parse("ada@example.com").unwrap(),
        )
        .unwrap();
    let sealed = c.seal(&email).unwrap();
    let rt = Runtime::new().unwrap();
    let read = |text: String| {
        rt.block_on(async {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect("sqlite::memory:")
                .await
                .unwrap();
            sqlx::query("CREATE TABLE t (email TEXT)")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(text)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query_scalar::<sqlx::Sqlite, Sealed<EmailAddress, Transaction>>(
                "SELECT email FROM t",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())
        })
    };
    assert_eq!(read(sealed.to_text()), Ok(sealed.clone()));
    let padded = format!("{}=", sealed.to_text());
    let err = read(padded).unwrap_err();
    assert!(err.contains("base64"), "{err}");
    let err = read("ada@example.com".into()).unwrap_err();
    assert!(!err.contains("ada@"), "{err}");
}

/// `PP_TEST_PG` (`host=… port=… user=…`) as sqlx connect options for
/// database `dbname`.
fn pg_options(base: &str, dbname: &str) -> PgConnectOptions {
    let mut options = PgConnectOptions::new().database(dbname);
    for pair in base.split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) => options = options.host(v),
            Some(("port", v)) => options = options.port(v.parse().unwrap()),
            Some(("user", v)) => options = options.username(v),
            _ => {}
        }
    }
    options
}

#[test]
fn a1_a2_postgres_login_finds_the_customer_until_the_receipt_is_applied() {
    let Ok(base) = std::env::var("PP_TEST_PG") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PP_TEST_PG is not set under CI: the PostgreSQL tests would not run"
        );
        eprintln!("SKIPPED: PP_TEST_PG is not set (run scripts/test, which starts PostgreSQL)");
        return;
    };
    let rt = Runtime::new().unwrap();
    let name = format!("pp_sqlx_{}", SubjectId::random());
    rt.block_on(async {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(pg_options(&base, "postgres"))
            .await
            .unwrap();
        // The name is made of hex digits only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    });
    let pool = rt
        .block_on(
            PgPoolOptions::new()
                .max_connections(2)
                .connect_with(pg_options(&base, &name)),
        )
        .unwrap();
    rt.block_on(
        sqlx::query(
            "CREATE TABLE customers (subject TEXT PRIMARY KEY, email BYTEA NOT NULL, email_index BYTEA)",
        )
        .execute(&pool),
    )
    .unwrap();
    let table = Sqlx { rt, pool };
    lookup_shop::login_finds_the_customer_until_the_receipt_is_applied(&custodian(), &table);
}
