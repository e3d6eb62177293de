//! Sealed records read from rows: the `from_row` (rusqlite), `from_pg_row`
//! (`postgres`) and `sqlx::FromRow` (sqlx) that `#[derive(PersonalRecord)]`
//! generates, and `from_store_row` for the crate's own `Store::query` on
//! either database, each round-tripping a record through a real table, columns
//! selected by `SealedRecord::COLUMNS` in any order; a column holding an
//! envelope of another kind is refused without a byte of plaintext in the
//! error (A2 moving an envelope between columns). PostgreSQL when
//! `PP_TEST_PG` is set (`scripts/test`), SKIPPED otherwise.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[path = "common/pg.rs"]
mod pg;
#[path = "common/tempdir.rs"]
mod tempdir;

use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber};
use privacy_pledge::purpose::{Support, Transaction};
use privacy_pledge::store::sqlite::rusqlite::{self, params, Connection};
use privacy_pledge::{
    Custodian, ExposeSecret, PersonalInfo, PersonalRecord, SealedRecord, SubjectId,
};

/// A customer: three personal fields, the email indexed, two that are not.
#[derive(PersonalRecord)]
pub struct Customer {
    /// For invoices.
    pub name: PersonalInfo<FullName, Transaction>,
    /// The login.
    #[pledge(lookup)]
    pub email: PersonalInfo<EmailAddress, Transaction>,
    /// For support calls.
    pub phone: PersonalInfo<PhoneNumber, Support>,
    /// Whether the customer asked for paper invoices.
    #[pledge(not_personal)]
    pub paper_invoices: bool,
    /// The shop's own note code, if any.
    #[pledge(not_personal)]
    pub r#type: Option<String>,
}

/// A field no database client reads (`Vec<String>`): the record still
/// compiles, only its row constructors cannot be called.
#[derive(PersonalRecord)]
pub struct Tagged {
    /// The name.
    pub name: PersonalInfo<FullName, Transaction>,
    /// Labels the shop gives.
    #[pledge(not_personal)]
    pub tags: Vec<String>,
}

const SQLITE_TABLE: &str = "CREATE TABLE customers (
    subject BLOB PRIMARY KEY, name BLOB NOT NULL, email BLOB NOT NULL,
    email_lookup BLOB UNIQUE, phone BLOB NOT NULL, paper_invoices INTEGER NOT NULL, type TEXT)";

const PG_TABLE: &str = "CREATE TABLE customers (
    subject BYTEA PRIMARY KEY, name BYTEA NOT NULL, email BYTEA NOT NULL,
    email_lookup BYTEA UNIQUE, phone BYTEA NOT NULL, paper_invoices BOOLEAN NOT NULL, type TEXT)";

const INSERT_SQLITE: &str =
    "INSERT INTO customers (subject, name, email, email_lookup, phone, paper_invoices, type)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const INSERT_PG: &str =
    "INSERT INTO customers (subject, name, email, email_lookup, phone, paper_invoices, type)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn customer(custodian: &Custodian, subject: SubjectId, i: usize) -> Customer {
    Customer {
        name: custodian
            .collect(
                subject,
                FullName::parse(&format!("Ada Lovelace {i}")).unwrap(),
            )
            .unwrap(),
        email: custodian
            .collect(
                subject,
                EmailAddress::parse(&format!("ada.{i}@example.com")).unwrap(),
            )
            .unwrap(),
        phone: custodian
            .collect(subject, PhoneNumber::parse("+44 20 7946 0958").unwrap())
            .unwrap(),
        paper_invoices: i.is_multiple_of(2),
        r#type: (i % 2 == 1).then(|| format!("vip-{i}")),
    }
}

/// `SELECT` of the columns by name, in reverse order: mapping is by name.
fn select(filter: &str) -> String {
    let mut columns = SealedCustomer::COLUMNS.to_vec();
    columns.reverse();
    format!("SELECT {} FROM customers {filter}", columns.join(", "))
}

/// The record opened back is the one sealed.
fn assert_same(custodian: &Custodian, back: &SealedCustomer, original: &Customer) {
    let opened: Customer = custodian.open_record(back).unwrap();
    let text = |c: &Customer| {
        (
            custodian
                .access(&c.name, |n| n.expose_secret().to_owned())
                .unwrap(),
            custodian
                .access(&c.email, |e| e.expose_secret().to_owned())
                .unwrap(),
            custodian
                .access(&c.phone, |p| p.expose_secret().to_owned())
                .unwrap(),
            c.paper_invoices,
            c.r#type.clone(),
        )
    };
    assert_eq!(text(&opened), text(original));
    assert_eq!(opened.email.subject(), original.email.subject());
}

#[test]
fn columns_name_subject_fields_and_lookups_in_order() {
    assert_eq!(
        SealedCustomer::COLUMNS,
        [
            "subject",
            "name",
            "email",
            "email_lookup",
            "phone",
            "paper_invoices",
            "type"
        ]
    );
    assert_eq!(SealedTagged::COLUMNS, ["subject", "name", "tags"]);
}

#[test]
fn rusqlite_row_round_trip_by_column_name() {
    let custodian = Custodian::in_memory();
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch(SQLITE_TABLE).unwrap();
    let mut originals = Vec::new();
    for i in 0..4 {
        let c = customer(&custodian, SubjectId::random(), i);
        let row = custodian.seal_record(&c).unwrap();
        db.execute(
            INSERT_SQLITE,
            params![
                row.subject,
                row.name,
                row.email,
                row.email_lookup,
                row.phone,
                row.paper_invoices,
                row.r#type
            ],
        )
        .unwrap();
        originals.push(c);
    }
    // By the email as typed.
    let typed = custodian.lookup_token_of(&EmailAddress::parse("ADA.2@example.com").unwrap());
    let found = db
        .query_row(
            &select("WHERE email_lookup = ?1"),
            [typed],
            SealedCustomer::from_row,
        )
        .unwrap();
    assert_eq!(found.subject, originals[2].email.subject());
    assert_same(&custodian, &found, &originals[2]);
    // Every row.
    let mut stmt = db.prepare(&select("")).unwrap();
    let all: Vec<SealedCustomer> = stmt
        .query_map([], SealedCustomer::from_row)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 4);
    for back in &all {
        let original = originals
            .iter()
            .find(|c| c.email.subject() == back.subject)
            .unwrap();
        assert_same(&custodian, back, original);
    }
}

/// A2 copies the name's envelope into the email column: the row does not
/// map (the envelope's header says another kind), and the error names the
/// column's position and the kinds, not the value.
#[test]
fn rusqlite_row_with_an_envelope_of_another_kind_is_refused() {
    let custodian = Custodian::in_memory();
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch(SQLITE_TABLE).unwrap();
    let c = customer(&custodian, SubjectId::random(), 7);
    let row = custodian.seal_record(&c).unwrap();
    db.execute(
        INSERT_SQLITE,
        params![
            row.subject,
            row.name,
            row.name,
            row.email_lookup,
            row.phone,
            row.paper_invoices,
            row.r#type
        ],
    )
    .unwrap();
    let e = db
        .query_row(&select(""), [], SealedCustomer::from_row)
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(
        matches!(e, rusqlite::Error::FromSqlConversionFailure(..)),
        "{text}"
    );
    // `email` is the fifth column of the reversed `SELECT`.
    assert!(
        matches!(e, rusqlite::Error::FromSqlConversionFailure(4, ..)),
        "{text}"
    );
    assert!(text.contains("read as EmailAddress"), "{text}");
    for secret in ["Ada", "Lovelace", "ada.7", "example.com"] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn sqlx_sqlite_row_round_trip_by_column_name() {
    use sqlx::sqlite::SqlitePoolOptions;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query(SQLITE_TABLE).execute(&pool).await.unwrap();
        let custodian = Custodian::in_memory();
        let mut originals = Vec::new();
        for i in 0..3 {
            let c = customer(&custodian, SubjectId::random(), i);
            let row = custodian.seal_record(&c).unwrap();
            sqlx::query(INSERT_SQLITE)
                .bind(row.subject)
                .bind(row.name)
                .bind(row.email)
                .bind(row.email_lookup)
                .bind(row.phone)
                .bind(row.paper_invoices)
                .bind(row.r#type)
                .execute(&pool)
                .await
                .unwrap();
            originals.push(c);
        }
        let typed = custodian.lookup_token_of(&EmailAddress::parse("ada.1@EXAMPLE.com").unwrap());
        let found: SealedCustomer =
            sqlx::query_as(sqlx::AssertSqlSafe(select("WHERE email_lookup = ?1")))
                .bind(typed)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_same(&custodian, &found, &originals[1]);
        let all: Vec<SealedCustomer> = sqlx::query_as(sqlx::AssertSqlSafe(select("")))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
    });
}

/// The same record through PostgreSQL: the synchronous client's
/// `from_pg_row`, and sqlx's `query_as`.
#[test]
fn postgres_row_round_trip_by_column_name() {
    use privacy_pledge::store::postgres::postgres;
    let Some(url) = pg::database("record_rows") else {
        return;
    };
    let custodian = Custodian::in_memory();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.batch_execute(PG_TABLE).unwrap();
    let mut originals = Vec::new();
    for i in 0..3 {
        let c = customer(&custodian, SubjectId::random(), i);
        let row = custodian.seal_record(&c).unwrap();
        client
            .execute(
                INSERT_PG,
                &[
                    &row.subject,
                    &row.name,
                    &row.email,
                    &row.email_lookup,
                    &row.phone,
                    &row.paper_invoices,
                    &row.r#type,
                ],
            )
            .unwrap();
        originals.push(c);
    }
    let typed = custodian.lookup_token_of(&EmailAddress::parse("Ada.0@example.com").unwrap());
    let row = client
        .query_one(&select("WHERE email_lookup = $1"), &[&typed])
        .unwrap();
    let found = SealedCustomer::from_pg_row(&row).unwrap();
    assert_same(&custodian, &found, &originals[0]);
    drop(client);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg_url(&url))
            .await
            .unwrap();
        let typed = custodian.lookup_token_of(&EmailAddress::parse("ada.2@example.com").unwrap());
        let found: SealedCustomer =
            sqlx::query_as(sqlx::AssertSqlSafe(select("WHERE email_lookup = $1")))
                .bind(typed)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_same(&custodian, &found, &originals[2]);
        let all: Vec<SealedCustomer> = sqlx::query_as(sqlx::AssertSqlSafe(select("")))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
    });
}

/// `from_store_row` reads a row of the crate's `Store::query` on either
/// database by column name; an envelope an operator moved into another
/// column (A2) is a `StoreError` that names the kind, not the value.
#[test]
fn store_row_round_trip_on_sqlite_and_postgres() {
    use privacy_pledge::store::sql::Param;
    use privacy_pledge::store::{Store, StoreConfig, StoreError};
    let dir = tempdir::TempDir::named("record_rows", "store_row");
    let mut urls = vec![dir.sqlite_url("shop.db")];
    urls.extend(pg::database("record_rows_store"));
    for url in urls {
        let store = Store::open(&StoreConfig::new(url, dir.path("checkpoints"))).unwrap();
        store
            .batch(store.dialect().pick(SQLITE_TABLE, PG_TABLE))
            .unwrap();
        let custodian = Custodian::in_memory();
        let mut originals = Vec::new();
        for i in 0..3 {
            let c = customer(&custodian, SubjectId::random(), i);
            let row = custodian.seal_record(&c).unwrap();
            // The last row's email column holds its name's envelope.
            let email: &dyn Param = if i == 2 { &row.name } else { &row.email };
            store
                .execute(
                    INSERT_PG,
                    &[
                        &row.subject,
                        &row.name,
                        email,
                        &row.email_lookup,
                        &row.phone,
                        &row.paper_invoices,
                        &row.r#type,
                    ],
                )
                .unwrap();
            originals.push(c);
        }
        let typed = custodian.lookup_token_of(&EmailAddress::parse("Ada.1@example.com").unwrap());
        let found = store
            .query(
                &select("WHERE email_lookup = $1"),
                &[&typed],
                SealedCustomer::from_store_row,
            )
            .unwrap();
        assert_eq!(found.len(), 1, "{}", store.describe());
        assert_same(&custodian, &found[0], &originals[1]);

        let e = store
            .query(&select(""), &[], SealedCustomer::from_store_row)
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, StoreError::Database(_)), "{text}");
        assert!(text.contains("EmailAddress"), "{text}");
        for secret in ["Ada", "Lovelace", "ada.2", "example.com"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

/// `host=… port=… user=… dbname=…` as a `postgres://` URL for sqlx.
fn pg_url(keywords: &str) -> String {
    let mut host = "localhost";
    let (mut port, mut user, mut dbname) = ("5432", "postgres", "postgres");
    for pair in keywords.split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) => host = v,
            Some(("port", v)) => port = v,
            Some(("user", v)) => user = v,
            Some(("dbname", v)) => dbname = v,
            _ => {}
        }
    }
    let host = host.replace('/', "%2F");
    format!("postgres://{user}@{host}:{port}/{dbname}")
}
