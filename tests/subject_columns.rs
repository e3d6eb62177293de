//! `SubjectId` as a column type: 16 bytes in a `BLOB` / `bytea` column,
//! round trips through real databases on every client the crate supports
//! (rusqlite, sqlx-sqlite; postgres and sqlx-postgres on the server
//! `scripts/test` starts, `PP_TEST_PG`), the text form of the store's own
//! `pp_` tables read back, and a column the database operator edited (A2)
//! refused with an error that does not repeat what it holds.

#[path = "common/pg.rs"]
mod pg;

use privacy_pledge::audit::AuditKey;
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::store::postgres::postgres;
use privacy_pledge::store::postgres::PgStore;
use privacy_pledge::store::sqlite::rusqlite::{params, Connection};
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::{Custodian, SubjectId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use tokio::runtime::Runtime;

/// Ids at both ends of the range and in between (the same on every call).
fn ids() -> [SubjectId; 4] {
    [
        SubjectId::from(0),
        SubjectId::from(u128::MAX),
        SubjectId::from(0x7f3a),
        SubjectId::from(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
    ]
}

/// What the operator writes over a subject column: too short, too long,
/// empty.
const EDITED: [&[u8]; 4] = [b"", &[0x7f; 1], &[0x7f; 15], &[0x7f; 17]];

/// An error for an edited column: says what a subject id is, never the bytes.
fn refused(message: &str) {
    assert!(message.contains("16 bytes"), "{message}");
    assert!(
        !message.contains("7f") && !message.contains("127"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// rusqlite

#[test]
fn rusqlite_subject_ids_round_trip_as_16_byte_blobs() {
    let dir = std::env::temp_dir().join(format!("pp-subject-columns-{}", SubjectId::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Connection::open(dir.join("shop.db")).unwrap();
    db.execute_batch("CREATE TABLE customers (subject BLOB PRIMARY KEY, n INTEGER)")
        .unwrap();
    for (n, id) in (0i64..).zip(ids()) {
        db.execute("INSERT INTO customers VALUES (?1, ?2)", params![id, n])
            .unwrap();
    }
    for (n, id) in (0i64..).zip(ids()) {
        // Found by binding the id, read back as an id, stored as 16 bytes.
        let (back, kind, len): (SubjectId, String, i64) = db
            .query_row(
                "SELECT subject, typeof(subject), length(subject) FROM customers WHERE subject = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((back, kind.as_str(), len), (id, "blob", 16), "row {n}");
        let raw: Vec<u8> = db
            .query_row("SELECT subject FROM customers WHERE n = ?1", [n], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(raw, id.to_bytes());
    }
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a2_rusqlite_an_edited_subject_column_is_refused() {
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE customers (subject BLOB)")
        .unwrap();
    for edited in EDITED {
        db.execute("DELETE FROM customers", []).unwrap();
        db.execute("INSERT INTO customers VALUES (?1)", [edited])
            .unwrap();
        let err = db
            .query_row("SELECT subject FROM customers", [], |r| {
                r.get::<_, SubjectId>(0)
            })
            .unwrap_err();
        refused(&err.to_string());
    }
    // Text that is not the canonical form, and a number, are refused too.
    for bad in ["7F3A", "not an id", ""] {
        let err = db
            .query_row("SELECT ?1", [bad], |r| r.get::<_, SubjectId>(0))
            .unwrap_err();
        assert!(err.to_string().contains("not a subject id"), "{err}");
    }
    assert!(db
        .query_row("SELECT 42", [], |r| r.get::<_, SubjectId>(0))
        .is_err());
}

#[test]
fn rusqlite_reads_the_text_subject_of_the_stores_own_tables() {
    let store = SqliteStore::open_in_memory().unwrap();
    let custodian = Custodian::builder()
        .audit(store.audit_sink(AuditKey::generate().unwrap()).unwrap())
        .key_store(store.key_store())
        .build()
        .unwrap();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let logged: SubjectId = store
        .with_connection(|c| c.query_row("SELECT subject FROM pp_audit_log", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(logged, ada);
}

// ---------------------------------------------------------------------------
// sqlx, SQLite

#[test]
fn a2_sqlx_sqlite_round_trips_and_refuses_an_edited_column() {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE customers (subject BLOB PRIMARY KEY, n INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        for (n, id) in ids().into_iter().enumerate() {
            sqlx::query("INSERT INTO customers VALUES ($1, $2)")
                .bind(id)
                .bind(n as i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        for (n, id) in ids().into_iter().enumerate() {
            let (back, raw): (SubjectId, Vec<u8>) =
                sqlx::query_as("SELECT subject, subject FROM customers WHERE subject = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!((back, raw), (id, id.to_bytes().to_vec()), "row {n}");
        }
        for edited in EDITED {
            sqlx::query("UPDATE customers SET subject = $1 WHERE n = 0")
                .bind(edited)
                .execute(&pool)
                .await
                .unwrap();
            let err =
                sqlx::query_scalar::<_, SubjectId>("SELECT subject FROM customers WHERE n = 0")
                    .fetch_one(&pool)
                    .await
                    .unwrap_err();
            refused(&err.to_string());
        }
    });
}

// ---------------------------------------------------------------------------
// PostgreSQL

#[test]
fn a2_postgres_round_trips_and_refuses_an_edited_column() {
    let Some(db) = pg::database("subject_columns") else {
        return;
    };
    let store = PgStore::connect(&db).unwrap();
    store
        .with_client(|c| {
            c.batch_execute("CREATE TABLE customers (subject BYTEA PRIMARY KEY, n INT)")
        })
        .unwrap();
    for (n, id) in ids().into_iter().enumerate() {
        let n = n as i32;
        store
            .with_client(|c| c.execute("INSERT INTO customers VALUES ($1, $2)", &[&id, &n]))
            .unwrap();
    }
    for id in ids() {
        let row = store
            .with_client(|c| {
                c.query_one(
                    "SELECT subject, octet_length(subject) FROM customers WHERE subject = $1",
                    &[&id],
                )
            })
            .unwrap();
        assert_eq!(row.get::<_, SubjectId>(0), id);
        assert_eq!(row.get::<_, i32>(1), 16);
    }
    // The store's own tables keep the text form; it reads as an id too.
    let custodian = Custodian::builder()
        .audit(store.audit_sink(AuditKey::generate().unwrap()).unwrap())
        .key_store(store.key_store())
        .build()
        .unwrap();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let logged: SubjectId = store
        .with_client(|c| c.query_one("SELECT subject FROM pp_audit_log", &[]))
        .unwrap()
        .get(0);
    assert_eq!(logged, ada);
    // A2 edits the column.
    for edited in EDITED {
        store
            .with_client(|c| c.execute("UPDATE customers SET subject = $1 WHERE n = 0", &[&edited]))
            .unwrap();
        let row = store
            .with_client(|c| c.query_one("SELECT subject FROM customers WHERE n = 0", &[]))
            .unwrap();
        let err: postgres::Error = row.try_get::<_, SubjectId>(0).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        refused(&format!("{err}: {}", cause.unwrap_or_default()));
    }
}

/// A `host=… port=… user=… dbname=…` string as sqlx connect options.
fn pg_options(conn: &str) -> PgConnectOptions {
    let mut options = PgConnectOptions::new();
    for pair in conn.split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) => options = options.host(v),
            Some(("port", v)) => options = options.port(v.parse().unwrap()),
            Some(("user", v)) => options = options.username(v),
            Some(("dbname", v)) => options = options.database(v),
            _ => {}
        }
    }
    options
}

#[test]
fn a2_sqlx_postgres_round_trips_and_refuses_an_edited_column() {
    let Some(db) = pg::database("sqlx_subject_columns") else {
        return;
    };
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(pg_options(&db))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE customers (subject BYTEA PRIMARY KEY, n INT)")
            .execute(&pool)
            .await
            .unwrap();
        for (n, id) in ids().into_iter().enumerate() {
            sqlx::query("INSERT INTO customers VALUES ($1, $2)")
                .bind(id)
                .bind(n as i32)
                .execute(&pool)
                .await
                .unwrap();
        }
        for id in ids() {
            let back: SubjectId =
                sqlx::query_scalar("SELECT subject FROM customers WHERE subject = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(back, id);
        }
        for edited in EDITED {
            sqlx::query("UPDATE customers SET subject = $1 WHERE n = 0")
                .bind(edited)
                .execute(&pool)
                .await
                .unwrap();
            let err =
                sqlx::query_scalar::<_, SubjectId>("SELECT subject FROM customers WHERE n = 0")
                    .fetch_one(&pool)
                    .await
                    .unwrap_err();
            refused(&err.to_string());
        }
    });
}
