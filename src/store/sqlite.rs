//! The SQLite store (feature `sqlite`): audit streams with group commit, and
//! the wrapped subject keys, in the host's own database file.
//!
//! ```
//! use privacy_pledge::store::sqlite::SqliteStore;
//! use privacy_pledge::audit::{verify_streams, AuditKey};
//! use privacy_pledge::{Custodian, SubjectId};
//! use privacy_pledge::purpose::Promotion;
//!
//! let store = SqliteStore::open_in_memory()?;
//! let key = AuditKey::generate()?;
//! let sink = store.audit_sink(key.clone())?;
//! let stream = sink.stream();
//! let custodian = Custodian::builder()
//!     .audit(sink)
//!     .key_store(store.key_store())
//!     .build()?;
//! custodian.consents().grant::<Promotion>(SubjectId::random())?;
//!
//! let trail = store.trail()?;
//! let reports = verify_streams(&trail, &key, &[]);
//! assert_eq!(reports[0].stream, Some(stream));
//! assert!(reports[0].result.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Schema
//!
//! Created and upgraded by numbered migrations recorded in `pp_schema`
//! (each applied once, in one immediate transaction, so processes starting
//! together do not race):
//!
//! | table | holds |
//! |---|---|
//! | `pp_audit_log (id, stream, seq, time, subject, action, event)` | chained events as JSON (`event`); the other columns copy fields of it for queries, and [`SqliteStore::trail`] refuses a row whose copies disagree with the authenticated event. No index but the row id (see below). |
//! | `pp_subject_keys (subject, generation, kek_version, wrapped, uses)` | wrapped data keys: useless without the key-encryption key |
//! | `pp_erased_subjects (subject, erased_at)` | erasure tombstones |
//! | `pp_subject_pseudonyms (subject, pseudonym)` | pseudonyms noted for erasure receipts |
//! | `pp_consents (subject, purpose, version, record)` | consent rows (JSON of a [`ConsentRecord`], authenticated by the custodian) |
//! | `pp_checkpoints (stream, seq, checkpoint)` | each stream's newest signed checkpoint (JSON); the copy that counts is the one in the [`CheckpointStore`](crate::audit::CheckpointStore) outside the database |
//! | `pp_kek_state (id, floor, claimed, claimed_at, renewed_at)` | one row: the key-encryption-key [`KekState`] rotations share; a key wrapped under a version below `floor` is refused |
//! | `pp_commit_marks (slot, n)` | a counter [`SqliteStore::commit_request`] bumps in its last transaction, and the sink's checkpoint in the transaction that keeps it in `pp_checkpoints`, so their commits always sync the log |
//!
//! The trail has no index but its row ids. Not by `(stream, seq)` (since
//! schema version 8, before which it was `UNIQUE`): the writer never gives
//! a sequence number twice (a batch that fails ends its stream), the
//! verifier reports a repeated one, and the index took each audit batch's
//! entries at the end of its stream's range — about 2.3 of the 13.3 pages
//! a sign-up wrote to the log, a split every few batches. An
//! [archive](SqliteStore::archive) scans the trail once, beside the
//! writers, for the row ids its segment lies between, and locks only that
//! range. Not by `subject` (since schema version 6): nothing of
//! the crate reads it by subject — a [report](crate::Custodian::subject_report)
//! verifies whole streams — and such an index costs every audit batch a
//! page read and written at a random place, which measured as about a
//! tenth of a sign-up together with the key tables' change to `WITHOUT
//! ROWID` (`benches/signup.rs`). A host that queries the trail by subject
//! can create one of its own (`CREATE INDEX … ON pp_audit_log (subject)`);
//! the migrations keep it (version 8, which makes the table anew, makes
//! the host's indexes and triggers on it again). Nor do the keys have an index by
//! `kek_version` (since schema version 7): only a key-encryption-key
//! rotation looks keys up by version, a few times per version it retires,
//! and it rewraps every key anyway, while the index cost every new key a
//! page written at a random place — about 1.2 of the 14.5 pages a sign-up
//! writes to the log (8%), and 4% of its CPU time.
//!
//! Connections use WAL, `synchronous = FULL` (a commit is on disk before
//! `record` returns), `secure_delete` (destroyed keys do not linger in
//! free pages) and a write-ahead log copied into the file every 10 000
//! pages rather than SQLite's 1 000 ([`PoolOptions::sqlite_wal_pages`]
//! says why and what it costs). Inside a request whose events commit with the host's row
//! ([`SqliteStore::commit_request`]), the store's own writes commit at
//! `synchronous = NORMAL` and the request's last commit, on the same log,
//! syncs them all; the writer's connection keeps the level its last write
//! needed, and a write that must reach the disk on its own sets `FULL`
//! first.
//!
//! # Connections
//!
//! A store opened on a file ([`SqliteStore::open`], [`SqliteStore::open_with`])
//! holds one connection for its audit sinks' writer and two pools of
//! [`PoolOptions::pool_size`] connections each (4 by default): one for the
//! store's own reads and writes (the key store's reads, the consent store,
//! trail reads), one for host code ([`with_connection`](SqliteStore::with_connection),
//! [`commit_request`](SqliteStore::commit_request)'s transaction). All are
//! opened up front with the same pragmas (WAL, `synchronous = FULL`,
//! `secure_delete`, `wal_autocheckpoint`) and busy handler (another connection's lock is polled
//! for every 100 µs, for 10 s in all: SQLite's default handler sleeps up to
//! 100 ms between tries, which connections of one process writing in turn
//! would spend idle). Under WAL, readers run beside the writer: a report
//! reading the trail, or the host holding a read transaction open, does not
//! delay an audit commit. Writers still take turns (SQLite has one write
//! lock per database): a host transaction that has *written* holds audit
//! commits back until it ends, for at most the busy timeout.
//!
//! The store's own writing transactions — audit batches and key-store
//! writes — run on the writer's connection, one after another (they take
//! turns anyway). A connection drops its page cache whenever another has
//! written the file since its last transaction, so writes spread over
//! connections read the same pages back again.
//!
//! Host code is never given a connection the store's own statements use,
//! and the store's statements never run on one host code had: whatever host
//! code leaves on its connection — a `TEMP` table named like a store table
//! (which SQLite reads before the real one), a `TEMP` trigger, a pragma, a
//! function or hook registered through rusqlite — stays where only host code
//! meets it. (A pool's reset could not undo all of that: what is registered
//! through the client's API is not even visible.) What would break the
//! host's *next* call on the same connection is put back when a connection
//! returns to its pool: an open transaction is rolled back, and the
//! store's busy handler and `synchronous = FULL` are set again, so a
//! `busy_timeout(0)` one caller set never makes another caller's write
//! (or `commit_request`) fail at once on a lock held for a moment.
//!
//! [`SqliteStore::from_connection`] (the host's own connection),
//! [`SqliteStore::open_in_memory`] (a private database that other
//! connections could reach only through SQLite's shared cache, whose table
//! locks do not wait like the busy timeout does) and
//! [`SqliteStore::open_read_only`] keep one connection for everything:
//! there host code and the store's own statements share whatever the
//! connection holds, so a service whose host code is not trusted as much
//! as the store opens a file with [`SqliteStore::open`] instead.
//!
//! The pool is the crate's own (a mutex and a condition variable over the
//! opened connections), not `r2d2`: see the `store` module's
//! [`PoolOptions`] for why.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use rusqlite;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::pool::{Conn, Conns, Pool};
use super::stream_sink::read_row;
use super::{AuditStreamSink, BatchWriter, PoolOptions, Row, StoreError, Unavailable};
use crate::audit::{AuditError, AuditEvent, AuditKey, SignedCheckpoint};
use crate::consent::{ConsentRecord, ConsentStore, ConsentStoreError};
use crate::crypto::{
    Destroyed, KekState, KeyStore, KeyStoreError, LookupRef, PseudonymRef, StoredKey, SubjectKeys,
    Wrapped,
};
use crate::purpose::PurposeId;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// The migrations, in order; `pp_schema` records how many were applied.
const MIGRATIONS: [&str; 8] = [
    "
CREATE TABLE pp_audit_log (
    id      INTEGER PRIMARY KEY,
    stream  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    subject TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    event   TEXT    NOT NULL,
    UNIQUE (stream, seq)
);
CREATE INDEX pp_audit_log_subject ON pp_audit_log (subject);
CREATE TABLE pp_subject_keys (
    subject     TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB    NOT NULL,
    uses        INTEGER NOT NULL,
    PRIMARY KEY (subject, generation)
);
CREATE TABLE pp_erased_subjects (
    subject   TEXT    PRIMARY KEY,
    erased_at INTEGER NOT NULL
);
CREATE TABLE pp_subject_pseudonyms (
    subject   TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    PRIMARY KEY (subject, pseudonym)
);
",
    "
CREATE TABLE pp_checkpoints (
    stream     TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    checkpoint TEXT    NOT NULL
);
",
    "
CREATE TABLE pp_consents (
    subject TEXT    NOT NULL,
    purpose TEXT    NOT NULL,
    version INTEGER NOT NULL,
    record  TEXT    NOT NULL,
    PRIMARY KEY (subject, purpose)
);
",
    "
CREATE TABLE pp_kek_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    floor      INTEGER NOT NULL,
    claimed    INTEGER NOT NULL,
    claimed_at INTEGER,
    renewed_at INTEGER
);
INSERT INTO pp_kek_state (id, floor, claimed) VALUES (1, 0, 0);
CREATE INDEX pp_subject_keys_kek_version ON pp_subject_keys (kek_version);
",
    "
CREATE TABLE pp_commit_marks (
    slot INTEGER PRIMARY KEY,
    n    INTEGER NOT NULL
);
",
    // Fewer pages per sign-up: the key tables keep their rows in their
    // primary key's b-tree (no second b-tree of row ids to write), and the
    // trail has no index by subject (nothing of the crate reads it by
    // subject, and each audit batch wrote a page of it; see the module
    // docs).
    "
DROP INDEX IF EXISTS pp_audit_log_subject;
CREATE TABLE pp_subject_keys_6 (
    subject     TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB    NOT NULL,
    uses        INTEGER NOT NULL,
    PRIMARY KEY (subject, generation)
) WITHOUT ROWID;
INSERT INTO pp_subject_keys_6 (subject, generation, kek_version, wrapped, uses)
    SELECT subject, generation, kek_version, wrapped, uses FROM pp_subject_keys;
DROP TABLE pp_subject_keys;
ALTER TABLE pp_subject_keys_6 RENAME TO pp_subject_keys;
CREATE INDEX pp_subject_keys_kek_version ON pp_subject_keys (kek_version);
CREATE TABLE pp_subject_pseudonyms_6 (
    subject   TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    PRIMARY KEY (subject, pseudonym)
) WITHOUT ROWID;
INSERT INTO pp_subject_pseudonyms_6 (subject, pseudonym)
    SELECT subject, pseudonym FROM pp_subject_pseudonyms;
DROP TABLE pp_subject_pseudonyms;
ALTER TABLE pp_subject_pseudonyms_6 RENAME TO pp_subject_pseudonyms;
",
    // One page fewer per sign-up: the keys lose their index by key-
    // encryption-key version. Only a rotation looks keys up by version,
    // a few times per retired version, and it rewraps every key anyway,
    // so scanning them costs it no more than the rewrap's own order; each
    // new key wrote a page of the index at a random place (see the module
    // docs).
    "
DROP INDEX IF EXISTS pp_subject_keys_kek_version;
",
    // Two pages fewer per sign-up: the trail loses `UNIQUE (stream, seq)`,
    // whose index took every audit batch's entries at the end of their
    // stream's range — a page or two, and often a split, per batch. The
    // writer never gives a sequence number twice (a failed batch ends its
    // stream), the verifier reports a repeated one, and an operator can
    // drop the constraint anyway; an archive finds its segment by row id
    // instead (see the module docs). The rows keep their ids, and what
    // host code put on the table (indexes, triggers) is made again
    // (`migrate`).
    "
CREATE TABLE pp_audit_log_8 (
    id      INTEGER PRIMARY KEY,
    stream  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    subject TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    event   TEXT    NOT NULL
);
INSERT INTO pp_audit_log_8 (id, stream, seq, time, subject, action, event)
    SELECT id, stream, seq, time, subject, action, event FROM pp_audit_log;
DROP TABLE pp_audit_log;
ALTER TABLE pp_audit_log_8 RENAME TO pp_audit_log;
",
];

/// The migration that makes `pp_audit_log` anew (its index in
/// [`MIGRATIONS`]): the indexes and triggers host code made on the table
/// are read before it and made again after it.
const REBUILDS_TRAIL: usize = 7;

/// Written by the last transaction of `commit_request`, so that its commit
/// appends to the log and therefore syncs it: a transaction that changes
/// no page of the database file (one that wrote nothing, only a temporary
/// table, or a row back as it was — SQLite leaves a page alone when the
/// bytes are the same) commits without a sync.
const COMMIT_MARK: &str = "INSERT INTO main.pp_commit_marks (slot, n) VALUES (0, 1)
     ON CONFLICT (slot) DO UPDATE SET n = n + 1";

/// Bumps the commit mark in `tx` (see [`COMMIT_MARK`]), so its commit syncs
/// the log; `what` names the caller in the error if the mark was not
/// written (a trigger host SQL left on `pp_commit_marks`).
fn mark_commit(tx: &rusqlite::Transaction<'_>, what: &str) -> Result<(), StoreError> {
    let marked = tx
        .prepare_cached(COMMIT_MARK)
        .and_then(|mut st| st.execute([]))
        .map_err(db_err)?;
    if marked == 1 {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "{what}: the commit mark was not written (a trigger on pp_commit_marks?)"
        )))
    }
}

/// The schema version this crate writes (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// One SQLite database shared by the audit sinks, the key store and the
/// host's own tables. Cheap to clone (the clones share the connections: the
/// writer's own and the pool, see [Connections](self#connections)).
///
/// Several processes may open the same file: SQLite serialises their writes,
/// each audit sink writes its own stream, and the key store takes SQLite's
/// write lock for every read-then-write step.
#[derive(Clone)]
pub struct SqliteStore {
    conns: Arc<Conns<Connection>>,
    /// Taken by the store's own writing transactions (audit commits, key
    /// and consent writes): SQLite lets one connection write at a time, and
    /// a connection that finds the write lock taken polls for it with
    /// sleeps (the busy handler), so the store's writers queue here instead.
    writing: Arc<Mutex<()>>,
    /// The `synchronous` level last set on the writer's own connection
    /// (`UNKNOWN`, `NORMAL` or `FULL`), read and written only while that
    /// connection is held: it is never lent to host code, so nothing else
    /// changes it, and a write sets its level only when it differs.
    writer_level: Arc<AtomicU8>,
}

/// `writer_level`: not known (a fresh connection, or a failed setting).
const UNKNOWN: u8 = 0;
/// `writer_level`: `synchronous = NORMAL` (commits reach the log, not the disk).
const NORMAL: u8 = 1;
/// `writer_level`: `synchronous = FULL` (every commit syncs the log).
const FULL: u8 = 2;

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file and brings its tables up to
    /// date, with the default [`PoolOptions`]: the writer's connection and a
    /// pool of 4.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, PoolOptions::default())
    }

    /// Opens (or creates) the database file and brings its tables up to
    /// date, with the audit writer's connection and a pool of
    /// `options.pool_size` connections for everything else.
    ///
    /// ```
    /// use privacy_pledge::store::sqlite::SqliteStore;
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// # let dir = std::env::temp_dir().join(format!("pp-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = SqliteStore::open_with(dir.join("shop.db"), PoolOptions::new().pool_size(8))?;
    /// assert_eq!(store.pool_size(), 8);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with(path: impl AsRef<Path>, options: PoolOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let configure = |conn| configure(conn, options.wal_pages());
        let mut writer = configure(open_file(path)?)?;
        migrate(&mut writer)?;
        let pool = || {
            (0..options.size())
                .map(|_| configure(open_file(path)?))
                .collect::<Result<Vec<_>, _>>()
                .map(|conns| Pool::new(conns, reset, options.timeout()))
        };
        Ok(SqliteStore {
            conns: Arc::new(Conns::pooled(writer, pool()?, pool()?)),
            writing: Arc::default(),
            writer_level: Arc::default(),
        })
    }

    /// How many connections each of the store's two pools holds — the
    /// store's own and the host's ([Connections](self#connections)) —
    /// besides the audit writer's own: 1 for a store on a single connection
    /// (which is all three).
    ///
    /// ```
    /// use privacy_pledge::store::sqlite::SqliteStore;
    ///
    /// assert_eq!(SqliteStore::open_in_memory()?.pool_size(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_size(&self) -> usize {
        self.conns.pool_size()
    }

    /// Whether the audit writer has a connection of its own (a store
    /// opened on a file), or shares the store's single connection.
    ///
    /// ```
    /// use privacy_pledge::store::sqlite::SqliteStore;
    ///
    /// assert!(!SqliteStore::open_in_memory()?.has_writer_connection());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_writer_connection(&self) -> bool {
        self.conns.has_writer()
    }

    /// Opens an existing database **read-only**, for verifiers: no file,
    /// table or row is created, no migration runs, and every write fails.
    /// [`trail`](Self::trail) and [`checkpoints`](Self::checkpoints) work;
    /// a database without the store's tables is an error, not an empty trail.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err)?;
        // The busy handler every connection of a store has (the pool's
        // reset puts it back after each use).
        conn.busy_handler(Some(busy)).map_err(db_err)?;
        let found = schema_version(&conn)?;
        if found == 0 {
            return Err(StoreError::Database(
                "the database holds no privacy-pledge tables".into(),
            ));
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(SqliteStore {
            conns: Arc::new(Conns::single(conn, reset, PoolOptions::default().timeout())),
            writing: Arc::default(),
            writer_level: Arc::default(),
        })
    }

    /// A private in-memory database (tests, examples), on one connection
    /// (see [Connections](self#connections)).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    /// Takes over a connection the host opened (to share it with its own
    /// tables): sets WAL, `synchronous = FULL`, `secure_delete`, the
    /// default [`wal_autocheckpoint`](PoolOptions::sqlite_wal_pages), the
    /// store's busy handler (10 s) and a statement cache of 64, then runs
    /// the migrations. The store then has this one
    /// connection for everything, audit commits included (see
    /// [Connections](self#connections)); [`open_with`](Self::open_with)
    /// gives the writer a connection of its own.
    pub fn from_connection(conn: Connection) -> Result<Self, StoreError> {
        let mut conn = configure(conn, PoolOptions::default().wal_pages())?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conns: Arc::new(Conns::single(conn, reset, PoolOptions::default().timeout())),
            writing: Arc::default(),
            writer_level: Arc::default(),
        })
    }

    /// Which database this store is (see [`crate::request::DatabaseId`]).
    fn database_id(&self) -> crate::request::DatabaseId {
        crate::request::DatabaseId::of(&self.conns)
    }

    /// The connections' address: which store's connection a thread holds
    /// inside [`with_connection`](Self::with_connection).
    fn id(&self) -> usize {
        Arc::as_ptr(&self.conns) as *const () as usize
    }

    /// A pooled connection, or `Err` on a thread that holds one of this
    /// store's already inside [`with_connection`](Self::with_connection):
    /// waiting there could never end (the pool may be down to the one the
    /// thread holds), and a write would wait for its own transaction.
    fn lock(&self) -> Result<Conn<'_, Connection>, Unavailable> {
        super::not_held(self.id())?;
        self.conns.get()
    }

    /// A connection of the host's pool, for `commit_request`'s transaction
    /// (refused inside [`with_connection`](Self::with_connection) like [`lock`](Self::lock)).
    fn host(&self) -> Result<Conn<'_, Connection>, Unavailable> {
        super::not_held(self.id())?;
        self.conns.host(false)
    }

    /// The audit writer's connection (refused inside `with_connection`
    /// like [`lock`](Self::lock)).
    fn writer(&self) -> Result<Conn<'_, Connection>, Unavailable> {
        super::not_held(self.id())?;
        self.conns.writer()
    }

    /// The turn of one of the store's own writing transactions, taken
    /// after its connection (see `writing`).
    fn writing(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Readies `conn`, got from [`writer`](Self::writer), for a commit that
    /// syncs the log (`full`) or leaves that to a later durable commit on
    /// the same log. The writer's own connection keeps its level between
    /// writes (each write sets what it needs, only when it differs: a
    /// request's deferred writes then cost no setting at all); a store of
    /// one connection, which host code shares, sets it every time.
    fn writer_synchronous(&self, conn: &Connection, full: bool) -> rusqlite::Result<()> {
        if !self.conns.has_writer() {
            return set_synchronous(conn, full);
        }
        let want = if full { FULL } else { NORMAL };
        if self.writer_level.load(Ordering::Relaxed) == want {
            return Ok(());
        }
        self.writer_level.store(UNKNOWN, Ordering::Relaxed);
        set_synchronous(conn, full)?;
        self.writer_level.store(want, Ordering::Relaxed);
        Ok(())
    }

    /// After a write on `conn` (from [`writer`](Self::writer)) that
    /// deferred its sync: a store of one connection is handed back at
    /// `synchronous = FULL` for the host's statements; the writer's own
    /// connection stays as it is (see `writer_synchronous`).
    fn writer_done(&self, conn: &Connection) -> rusqlite::Result<()> {
        if self.conns.has_writer() {
            Ok(())
        } else {
            set_synchronous(conn, true)
        }
    }
}

/// Opens the database file at `path` (created if missing) — the file, by
/// its name: without SQLite's URI parsing (on by default in rusqlite), a
/// path `file:…?mode=memory` or `…?nolock=1` is a file's name, never an
/// in-memory database or a file opened without its locks.
fn open_file(path: &Path) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err)
}

/// Sets the pragmas every connection of a store gets, the write-ahead log
/// copied into the database file once it holds `wal_pages` pages.
fn configure(conn: Connection, wal_pages: u32) -> Result<Connection, StoreError> {
    {
        // Room for the store's own cached statements (about ten on the
        // request path) beside the host's, so neither evicts the other.
        conn.set_prepared_statement_cache_capacity(64);
        // First the busy timeout: processes opening one file together wait
        // for each other's locks (switching to WAL takes one) instead of
        // failing at once.
        conn.busy_handler(Some(busy)).map_err(db_err)?;
        // An in-memory database has no WAL; the pragma then answers "memory".
        // Switching a new file to WAL needs its exclusive lock, and SQLite
        // answers "database is locked" at once, without the busy handler,
        // while another process opening the same new file holds a lock: so
        // the switch is tried again for as long as the busy timeout.
        let started = std::time::Instant::now();
        loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
                Ok(_) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < std::time::Duration::from_secs(10) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", wal_pages)
            .map_err(db_err)?;
    }
    Ok(conn)
}

/// How long a connection waits for another's lock: 10 s.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The busy handler of every connection: tries again every 100 µs, for
/// at least [`BUSY_TIMEOUT`] in all.
fn busy(tries: i32) -> bool {
    const EVERY: std::time::Duration = std::time::Duration::from_micros(100);
    if u128::try_from(tries).unwrap_or(u128::MAX) >= BUSY_TIMEOUT.as_micros() / EVERY.as_micros() {
        return false;
    }
    std::thread::sleep(EVERY);
    true
}

/// Sets `synchronous` to FULL (`full`) or NORMAL, with a statement from
/// the connection's cache (this runs several times per request).
fn set_synchronous(conn: &Connection, full: bool) -> rusqlite::Result<()> {
    conn.prepare_cached(if full {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    })?
    .execute([])
    .map(drop)
}

/// Readies a connection returned to the pool for its next user: a
/// transaction the host left open (`BEGIN` without `COMMIT`) is rolled back
/// (rusqlite's `Transaction` rolls back when dropped, also on panic), and
/// the store's busy handler and `synchronous = FULL` are set again.
fn reset(conn: &mut Connection) -> bool {
    let closed = conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok();
    // Host code may have replaced the busy handler (`busy_timeout(0)` to
    // fail fast, say); the next user of the connection — `commit_request`'s
    // transaction among them — would then fail at once on a lock another
    // connection holds for a moment. One call into SQLite, no statement.
    let waits = conn.busy_handler(Some(busy)).is_ok();
    // Every connection commits durably once returned, whatever its last
    // user set (a deferred key-store write restores it itself; this is
    // the net under it).
    closed && waits && set_synchronous(conn, true).is_ok()
}

impl SqliteStore {
    /// Runs `f` with a connection from the store's pool (see
    /// [Connections](self#connections)), for the host's own tables; while
    /// `f` runs, other threads' audit commits go on (on the writer's own
    /// connection) as long as `f` has not written.
    ///
    /// `f` must not use the custodian's audit sink, key store and consent
    /// store on this store, nor this store (on a single connection they need
    /// the one `f` holds; on a pool, the pool may be down to the one `f`
    /// holds, and a write would wait for `f`'s own transaction): a
    /// custodian operation inside `f` is refused with
    /// [`Error::Reentrant`](crate::Error::Reentrant), and a method of this
    /// store (its trail, key store, consent store, audit sink) with an error
    /// saying so, instead of waiting for the connection forever. Work that
    /// `f` hands to another thread and waits for is not covered: that
    /// thread would still wait for the connection. A transaction `f` leaves
    /// open (`BEGIN` without `COMMIT`) is rolled back when `f` returns, and
    /// a busy handler or timeout `f` set is replaced by the store's again:
    /// the next call may get another connection.
    ///
    /// ```
    /// use privacy_pledge::audit::AuditKey;
    /// use privacy_pledge::purpose::Newsletter;
    /// use privacy_pledge::store::sqlite::SqliteStore;
    /// use privacy_pledge::{Custodian, Error, SubjectId};
    ///
    /// let store = SqliteStore::open_in_memory()?;
    /// let custodian = Custodian::builder()
    ///     .audit(store.audit_sink(AuditKey::generate()?)?)
    ///     .key_store(store.key_store())
    ///     .build()?;
    /// store.with_connection(|c| c.execute_batch("CREATE TABLE subscribers (subject BLOB)"))?;
    ///
    /// // The custodian first, then the host's own table.
    /// let ada = SubjectId::random();
    /// custodian.consents().grant::<Newsletter>(ada)?;
    /// store.with_connection(|c| c.execute("INSERT INTO subscribers VALUES (?1)", [ada]))?;
    ///
    /// // Inside, the custodian refuses instead of waiting for the connection.
    /// let inside = store.with_connection(|_| custodian.consents().grant::<Newsletter>(ada));
    /// assert!(matches!(inside, Err(Error::Reentrant)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If called inside `with_connection` of the same store on the same
    /// thread, which would otherwise wait for itself forever; or in a child
    /// process forked after the store was opened, whose connections are its
    /// parent's ([`StoreError::Forked`] from every other call).
    pub fn with_connection<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        self.try_with_connection(f)
            .unwrap_or_else(|e| panic!("with_connection: {e}"))
    }

    /// [`with_connection`](Self::with_connection), with a forked child's
    /// refusal as [`StoreError::Forked`] instead of a panic: for the methods
    /// of [`Store`](super::Store), which return a `StoreError`.
    pub(crate) fn try_with_connection<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Result<R, StoreError> {
        // The host's own call waits for as long as it takes.
        super::not_held(self.id())
            .expect("with_connection called inside with_connection of the same store");
        // Waited for without a timeout: only a forked child is refused.
        let mut conn = self.conns.host(true)?;
        Ok(super::hold(self.id(), || f(&mut conn)))
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema_version(&*self.lock()?)
    }

    /// One request in one durable commit: runs `f` as a [request
    /// scope](crate::Custodian::request) of `custodian`, then `write` — the
    /// host's own rows, made from `f`'s result — in one transaction on this
    /// store, and returns the result once that transaction is on disk.
    ///
    /// If `custodian`'s audit sink is this store's
    /// ([`audit_sink`](Self::audit_sink)), the scope's events are committed
    /// first *without* waiting for the disk, and so are the new keys and
    /// lookup tokens its key store notes meanwhile
    /// ([`DatabaseId`](crate::request::DatabaseId)); `write`'s transaction,
    /// the one durable commit, comes after them on the same write-ahead log,
    /// which SQLite makes durable in order, so it makes them durable too.
    /// Still "recorded before it happens" (R10): every event is committed —
    /// visible to every process — before the host's rows are written, and
    /// nothing `f` made leaves the call before the durable commit; if power
    /// fails before it, the events are lost with everything that could
    /// have needed them. A signed checkpoint due at the scope's events is
    /// saved in the checkpoint store only after the durable commit (never
    /// if `write` fails: a later batch signs one). With another sink the
    /// scope commits durably on its own, as
    /// [`Custodian::request`](crate::Custodian::request) does.
    ///
    /// If `write` fails, the result is dropped and the host gets `write`'s
    /// error as it returned it (its own type, so a constraint violation can
    /// still be told apart); the scope's events stay recorded (the uses
    /// inside `f` did happen), and are on disk before the error is returned
    /// — it may carry what `f` made (a copy of the `&T` it was handed) —
    /// by a durable commit of the store's own. If `f` fails, the scope
    /// commits durably on its own before its error is returned. `write`
    /// runs inside this store's connection: a custodian call from it is
    /// refused ([`Error::Reentrant`](crate::Error::Reentrant)).
    ///
    /// ```
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    /// use privacy_pledge::store::sqlite::{rusqlite, SqliteStore};
    /// use privacy_pledge::{Custodian, PersonalInfo};
    ///
    /// let store = SqliteStore::open_in_memory()?;
    /// let keyring = std::sync::Arc::new(privacy_pledge::crypto::Keyring::generate()?);
    /// let sink = std::sync::Arc::new(store.audit_sink(keyring.audit_key())?);
    /// let custodian = Custodian::builder()
    ///     .keyring(keyring)
    ///     .key_store(store.key_store())
    ///     .audit(sink.clone())
    ///     .build()?;
    /// store.with_connection(|c| c.execute_batch("CREATE TABLE customers (subject TEXT, email BLOB)"))?;
    ///
    /// let ada = custodian.new_subject()?; // a sign-up: a new id
    /// let sealed = store.commit_request(
    ///     &custodian,
    ///     || -> Result<_, Box<dyn std::error::Error>> {
    ///         let email: PersonalInfo<EmailAddress, Transaction> =
    ///             custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    ///         Ok(custodian.seal(&email)?)
    ///     },
    ///     |tx, sealed| {
    ///         tx.execute("INSERT INTO customers VALUES (?1, ?2)", rusqlite::params![ada, sealed])?;
    ///         Ok(())
    ///     },
    /// )?;
    /// assert_eq!(sink.events(), 2); // collect and seal, committed with the row
    /// # drop(sealed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_request<T, E>(
        &self,
        custodian: &crate::Custodian,
        f: impl FnOnce() -> Result<T, E>,
        write: impl FnOnce(&rusqlite::Transaction<'_>, &T) -> Result<(), E>,
    ) -> Result<T, E>
    where
        E: From<crate::Error> + From<StoreError>,
    {
        custodian.request_then(self.database_id(), f, |value| {
            super::durable_before_error(|| self.host_write(value, write), || self.durable_mark())
        })
    }

    /// `commit_request`'s transaction: `write`, then the commit mark, in
    /// one immediate transaction on a host connection, committed with a
    /// sync of the log.
    fn host_write<T, E>(
        &self,
        value: &T,
        write: impl FnOnce(&rusqlite::Transaction<'_>, &T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<crate::Error> + From<StoreError>,
    {
        // A connection of the host's pool, never the audit writer's nor
        // one the store's own statements use: host code is given this
        // transaction, and what it leaves on its connection (a TEMP
        // trigger, a pragma) must never reach the store's own writes.
        let mut conn = self.host().map_err(StoreError::from)?;
        let _turn = self.writing();
        set_synchronous(&conn, true).map_err(db_err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        // `write` may fork: the child commits nothing (see `pool`'s "Fork").
        let (tx, written) = super::host_code(
            tx,
            || self.conns.same_process(),
            |tx| super::hold(self.id(), || write(tx, value)),
        )
        .map_err(StoreError::from)?;
        written?;
        // Whatever `write` wrote or set, this commit syncs the log: the
        // mark changes a page of the file (a TEMP table of the same
        // name cannot take it, nor a TEMP trigger skip it unseen), and
        // `synchronous` is still FULL (`write` may have committed, set
        // it, and begun again: SQLite refuses the setting only inside a
        // transaction).
        let level: i64 = tx
            .prepare_cached("PRAGMA main.synchronous")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(db_err)?;
        if level < 2 || tx.is_autocommit() {
            return Err(StoreError::Database(
                "commit_request: write ended the transaction or lowered `synchronous`".into(),
            )
            .into());
        }
        mark_commit(&tx, "commit_request")?;
        tx.commit().map_err(db_err)?;
        Ok(())
    }

    /// A durable commit of the store's own on the writer's connection (the
    /// commit mark, at `synchronous = FULL`): it syncs the log, and with it
    /// every commit made before on the same log without a sync.
    fn durable_mark(&self) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
        let _turn = self.writing();
        self.writer_synchronous(&conn, true).map_err(db_err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        mark_commit(&tx, "commit_request")?;
        tx.commit().map_err(db_err)
    }

    /// The consent store over `pp_consents`, for
    /// [`CustodianBuilder::consent_store`](crate::CustodianBuilder::consent_store).
    pub fn consent_store(&self) -> SqliteConsentStore {
        SqliteConsentStore {
            store: self.clone(),
        }
    }

    /// The key store over `pp_subject_keys`.
    pub fn key_store(&self) -> SqliteKeyStore {
        SqliteKeyStore {
            store: self.clone(),
        }
    }

    /// An audit sink that chains events in a fresh stream of its own (one
    /// per custodian and start) under `key`, and commits concurrent events
    /// together (see [`SqliteAuditSink`]).
    pub fn audit_sink(&self, key: AuditKey) -> Result<SqliteAuditSink, StoreError> {
        AuditStreamSink::new(
            SqliteBatchWriter {
                store: self.clone(),
            },
            key,
        )
        .map_err(|_| StoreError::Random)
    }

    /// The whole trail, every stream verified by `custodian` under its own
    /// keys against the newest signed checkpoints of the custodian's own
    /// checkpoint store ([`CustodianBuilder::checkpoint_store`](crate::CustodianBuilder::checkpoint_store):
    /// outside the database, where the sinks sign into; never one the caller
    /// passes): what
    /// [`Custodian::subject_report`](crate::Custodian::subject_report) and
    /// [`Consents::restore`](crate::consent::Consents::restore) take.
    ///
    /// The checkpoints are loaded before the trail is read, so a checkpoint
    /// another process signs meanwhile names no entry the trail lacks. A
    /// trail that does not verify is [`Error::Untrusted`](crate::Error::Untrusted);
    /// a store or checkpoint store that cannot be read is
    /// [`Error::Audit`](crate::Error::Audit).
    pub fn verified_trail(
        &self,
        custodian: &crate::Custodian,
    ) -> Result<crate::audit::VerifiedTrail, crate::Error> {
        super::verified_trail(custodian, || self.trail())
    }

    /// Every entry of `pp_audit_log`, in append order, for
    /// [`verify_streams`](crate::audit::verify_streams).
    ///
    /// A row whose JSON is not an event, or whose query columns disagree with
    /// the authenticated event, is an error naming its row id: an operator who
    /// edits only a column must not go unnoticed by queries that read it.
    pub fn trail(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(
                "SELECT id, stream, seq, time, subject, action, event FROM pp_audit_log ORDER BY id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, stream, seq, time, subject, action, json) = row.map_err(db_err)?;
            let event = read_row(id, &json, (&stream, seq, time, &subject, &action))?;
            out.push(event);
        }
        Ok(out)
    }
}

impl SqliteStore {
    /// Archives the oldest segment of a stream: writes its entries up to
    /// `up_to` (a signed checkpoint, verified under `key`) to `out` as JSON
    /// lines, in order, then deletes them from `pp_audit_log`, in one
    /// transaction (nothing is deleted unless every line was written).
    /// Returns how many entries moved.
    ///
    /// The segment must be whole: every entry from the stream's first
    /// (seq 1) up to `up_to`'s head, linked and unaltered. One that is not — an
    /// entry the operator deleted, edited or put in — is refused and nothing
    /// moves, so a base is never signed over a segment the verifier would
    /// have reported. For a stream archived before, the next segment starts
    /// after that archive's base: [`archive_after`](Self::archive_after).
    ///
    /// Then sign `up_to`'s head **as an archive base** naming the archive's
    /// digest ([`CheckpointSigner::sign_base`](crate::audit::CheckpointSigner::sign_base)
    /// over [`archive_digest`](crate::audit::archive_digest) of what `out`
    /// received) and keep it
    /// ([`DirCheckpointStore::save_base`](crate::audit::DirCheckpointStore::save_base)):
    /// [`verify_public`](crate::audit::verify_public) starts the stream's
    /// remaining entries only from such a base (until it is saved, the
    /// stream is reported as missing its start), and
    /// [`verify_archive`](crate::audit::verify_archive) checks the archive
    /// against it. This bounds the table, and so every full verification.
    pub fn archive(
        &self,
        up_to: &SignedCheckpoint,
        key: &crate::audit::CheckpointKey,
        out: &mut dyn std::io::Write,
    ) -> Result<usize, StoreError> {
        self.archive_segment(super::stream_sink::Segment::new(None, up_to, key)?, out)
    }

    /// [`archive`](Self::archive) for a stream archived before: the segment
    /// after `base` (the archive base signed over the last archive of the
    /// stream, verified under `key`) up to `up_to`, which must link from
    /// `base`'s head.
    pub fn archive_after(
        &self,
        base: &SignedCheckpoint,
        up_to: &SignedCheckpoint,
        key: &crate::audit::CheckpointKey,
        out: &mut dyn std::io::Write,
    ) -> Result<usize, StoreError> {
        self.archive_segment(
            super::stream_sink::Segment::new(Some(base), up_to, key)?,
            out,
        )
    }

    fn archive_segment(
        &self,
        segment: super::stream_sink::Segment,
        out: &mut dyn std::io::Write,
    ) -> Result<usize, StoreError> {
        let (stream, seq) = (&segment.stream, segment.last);
        let mut conn = self.lock()?;
        // The trail has no index by stream (see the module docs): one scan,
        // in a read transaction that audit commits go on beside, finds the
        // row ids the segment lies between, and the writing transaction
        // reads and deletes that range only. A row put in outside it
        // meanwhile (only the operator does that: the writer appends after
        // the head) stays, and the verifier reports it.
        let (low, high): (Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT min(id), max(id) FROM pp_audit_log WHERE stream = ?1 AND seq <= ?2",
                params![stream, seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db_err)?;
        let (low, high) = low.zip(high).unwrap_or((1, 0));
        let _turn = self.writing();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let rows: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT seq, event FROM pp_audit_log
                     WHERE id BETWEEN ?3 AND ?4 AND stream = ?1 AND seq <= ?2 ORDER BY seq",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![stream, seq, low, high], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)?
        };
        let moved = segment.write(&rows, out)?;
        tx.execute(
            "DELETE FROM pp_audit_log WHERE id BETWEEN ?3 AND ?4 AND stream = ?1 AND seq <= ?2",
            params![stream, seq, low, high],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(moved)
    }

    /// The newest signed checkpoint of every stream, as kept in
    /// `pp_checkpoints`. The operator can roll this table back with the
    /// trail; compare with the copies in the [`CheckpointStore`](crate::audit::CheckpointStore) outside.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare("SELECT stream, checkpoint FROM pp_checkpoints ORDER BY stream")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (stream, json) = row.map_err(db_err)?;
            let c: SignedCheckpoint = serde_json::from_str(&json).map_err(|_| {
                StoreError::Database(format!(
                    "pp_checkpoints row for stream {stream} is malformed"
                ))
            })?;
            out.push(c);
        }
        Ok(out)
    }
}

fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pp_schema')",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if !has_table {
        return Ok(0);
    }
    conn.query_row("SELECT version FROM pp_schema", [], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(db_err)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS pp_schema (version INTEGER NOT NULL)")
        .map_err(db_err)?;
    let found = schema_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        if i == REBUILDS_TRAIL {
            rebuild_keeping_host_objects(&tx, "pp_audit_log", sql)?;
        } else {
            tx.execute_batch(sql).map_err(db_err)?;
        }
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM pp_schema", []).map_err(db_err)?;
        tx.execute(
            "INSERT INTO pp_schema (version) VALUES (?1)",
            [SCHEMA_VERSION],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// Runs `sql`, which drops `table` and makes it anew, and then makes again
/// the indexes and triggers that host code had on it (a `DROP TABLE`
/// drops them too): SQLite's own procedure for changing a table's
/// constraints. The crate makes none of its own on the tables it rebuilds.
fn rebuild_keeping_host_objects(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    sql: &str,
) -> Result<(), StoreError> {
    let kept: Vec<String> = {
        let mut stmt = tx
            .prepare(
                "SELECT sql FROM main.sqlite_schema
                 WHERE tbl_name = ?1 AND type IN ('index', 'trigger') AND sql IS NOT NULL
                 ORDER BY type, name",
            )
            .map_err(db_err)?;
        let rows = stmt.query_map([table], |r| r.get(0)).map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    tx.execute_batch(sql).map_err(db_err)?;
    for object in &kept {
        tx.execute_batch(object).map_err(db_err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The audit sink

/// The SQLite audit sink: an [`AuditStreamSink`] over `pp_audit_log`.
pub type SqliteAuditSink = AuditStreamSink<SqliteBatchWriter>;

/// Writes audit batches into `pp_audit_log` (see [`SqliteAuditSink`]).
#[derive(Clone, Debug)]
pub struct SqliteBatchWriter {
    store: SqliteStore,
}

impl crate::store::stream_sink::sealed::Sealed for SqliteBatchWriter {}

const UPSERT_CHECKPOINT: &str =
    "INSERT INTO pp_checkpoints (stream, seq, checkpoint) VALUES (?1, ?2, ?3)
     ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint
     WHERE excluded.seq > pp_checkpoints.seq";

fn seq_col(seq: u64) -> Result<i64, AuditError> {
    i64::try_from(seq).map_err(|_| AuditError::new("sequence number out of SQLite range"))
}

fn insert_failed(e: rusqlite::Error) -> AuditError {
    // SQLite's messages name tables and constraints, never values of an
    // event (and events hold no personal values anyway).
    AuditError::new(format!("pp_audit_log insert failed: {e}"))
}

impl BatchWriter for SqliteBatchWriter {
    fn database(&self) -> crate::request::DatabaseId {
        self.store.database_id()
    }

    fn write(
        &self,
        rows: &[Row<'_>],
        checkpoint: Option<(&SignedCheckpoint, &str)>,
        durable: bool,
    ) -> Result<(), AuditError> {
        let mut conn = self.store.writer()?;
        let _turn = self.store.writing();
        // Set for every batch (where it differs), so a durable one never
        // depends on an earlier batch having restored the setting.
        self.store
            .writer_synchronous(&conn, durable)
            .map_err(insert_failed)?;
        let written = write_rows(&mut conn, rows, checkpoint);
        if !durable {
            self.store.writer_done(&conn).map_err(insert_failed)?;
        }
        written
    }

    fn upsert_checkpoint(
        &self,
        checkpoint: &SignedCheckpoint,
        json: &str,
    ) -> Result<(), AuditError> {
        let mut conn = self.store.writer()?;
        let _turn = self.store.writing();
        self.store
            .writer_synchronous(&conn, true)
            .map_err(insert_failed)?;
        let seq = seq_col(checkpoint.checkpoint().seq())?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(insert_failed)?;
        tx.prepare_cached(UPSERT_CHECKPOINT)
            .and_then(|mut st| st.execute(params![checkpoint.stream().to_string(), seq, json]))
            .map_err(insert_failed)?;
        // The upsert leaves the row alone when the table already holds a
        // checkpoint as late (one the operator planted), and a commit that
        // changes no page does not sync the log: the mark makes this commit
        // sync it, so the events up to `checkpoint` are on disk before it
        // leaves the database.
        mark_commit(&tx, "checkpoint").map_err(|e| AuditError::new(e.to_string()))?;
        tx.commit().map_err(insert_failed)
    }
}

/// The rows and checkpoint of one audit batch, in one immediate transaction.
fn write_rows(
    conn: &mut Connection,
    rows: &[Row<'_>],
    checkpoint: Option<(&SignedCheckpoint, &str)>,
) -> Result<(), AuditError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(insert_failed)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(insert_failed)?;
        for r in rows {
            stmt.execute(params![
                r.stream(),
                r.seq(),
                r.time(),
                r.subject(),
                r.action(),
                r.json()
            ])
            .map_err(insert_failed)?;
        }
    }
    if let Some((signed, json)) = checkpoint {
        tx.execute(
            UPSERT_CHECKPOINT,
            params![
                signed.stream().to_string(),
                seq_col(signed.checkpoint().seq())?,
                json
            ],
        )
        .map_err(insert_failed)?;
    }
    tx.commit().map_err(insert_failed)
}

// ---------------------------------------------------------------------------
// The key store

/// Wrapped subject data keys in `pp_subject_keys`, tombstones in
/// `pp_erased_subjects`.
///
/// The sealed customer data can be copied anywhere (replicas, backups,
/// exports); these rows are what opens it. Destroying a subject's rows
/// erases every copy at once (see
/// [`Custodian::erase`](crate::Custodian::erase) for copies of this table).
#[derive(Clone, Debug)]
pub struct SqliteKeyStore {
    store: SqliteStore,
}

fn backend(e: impl fmt::Display) -> KeyStoreError {
    KeyStoreError::Backend(Cow::Owned(e.to_string()))
}

fn conflict(what: &'static str) -> KeyStoreError {
    KeyStoreError::Conflict(Cow::Borrowed(what))
}

fn u64_col(v: i64, what: &'static str) -> Result<u64, KeyStoreError> {
    u64::try_from(v).map_err(|_| backend(format!("negative {what} in pp_subject_keys")))
}

fn erased_at(conn: &Connection, subject: &str) -> Result<Option<i64>, KeyStoreError> {
    conn.prepare_cached("SELECT erased_at FROM pp_erased_subjects WHERE subject = ?1")
        .and_then(|mut st| st.query_row([subject], |r| r.get(0)).optional())
        .map_err(backend)
}

/// Notes a token (its JSON) for the subject, once.
fn note_row(conn: &Connection, subject: &str, noted: &str) -> Result<(), KeyStoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO pp_subject_pseudonyms (subject, pseudonym) VALUES (?1, ?2)",
    )
    .and_then(|mut st| st.execute(params![subject, noted]))
    .map(drop)
    .map_err(backend)
}

/// The subject's generations and noted tokens: what `destroy` removes.
fn listed(conn: &Connection, subject: &str) -> Result<Destroyed, KeyStoreError> {
    let generations = conn
        .prepare_cached(
            "SELECT generation FROM pp_subject_keys WHERE subject = ?1 ORDER BY generation",
        )
        .and_then(|mut st| st.query_map([subject], |r| r.get(0))?.collect())
        .map_err(backend)?;
    let noted: Vec<String> = conn
        .prepare_cached("SELECT pseudonym FROM pp_subject_pseudonyms WHERE subject = ?1")
        .and_then(|mut st| st.query_map([subject], |r| r.get(0))?.collect())
        .map_err(backend)?;
    super::destroyed(generations, noted.iter().map(String::as_str))
}

/// The row of `pp_kek_state` (a missing row is an error, never "no floor").
fn kek_state(conn: &Connection) -> Result<KekState, KeyStoreError> {
    type Columns = (i64, i64, Option<i64>, Option<i64>);
    let (floor, claimed, claimed_at, renewed_at): Columns = conn
        .prepare_cached(
            "SELECT floor, claimed, claimed_at, renewed_at FROM pp_kek_state WHERE id = 1",
        )
        .and_then(|mut st| {
            st.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(backend)?
        .ok_or_else(|| backend("pp_kek_state has no row"))?;
    let version = |v: i64| u32::try_from(v).map_err(|_| backend("pp_kek_state out of range"));
    let time = |t: Option<i64>| {
        t.map(|t| u64_col(t, "pp_kek_state time").map(Timestamp::from_unix_nanos))
            .transpose()
    };
    Ok(KekState {
        floor: version(floor)?,
        claimed: version(claimed)?,
        claimed_at: time(claimed_at)?,
        renewed_at: time(renewed_at)?,
    })
}

/// A time as `pp_kek_state` keeps it (nanoseconds).
fn time_col(t: Option<Timestamp>) -> Result<Option<i64>, KeyStoreError> {
    t.map(|t| i64::try_from(t.unix_nanos()).map_err(|_| backend("time out of range")))
        .transpose()
}

/// Refuses a key wrapped under a version below the floor; read in the
/// writer's immediate transaction, so the check and the write are one step.
fn check_floor(conn: &Connection, wrapped: &Wrapped) -> Result<(), KeyStoreError> {
    let floor = kek_state(conn)?.floor;
    if wrapped.kek_version < floor {
        return Err(KeyStoreError::BelowFloor {
            kek_version: wrapped.kek_version,
            floor,
        });
    }
    Ok(())
}

impl SqliteKeyStore {
    /// Runs `f` in one transaction, so it sees and leaves a consistent state.
    /// Writers use an immediate transaction: it takes the write lock at once,
    /// so a read-then-write step cannot interleave with another process.
    fn transaction<R>(
        &self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, KeyStoreError>,
    ) -> Result<R, KeyStoreError> {
        let writes = !matches!(behavior, TransactionBehavior::Deferred);
        let mut conn = if writes {
            self.store.writer()?
        } else {
            self.store.lock()?
        };
        let _turn = writes.then(|| self.store.writing());
        // Inside a request scope whose audit commit goes to this database
        // (see `request::DatabaseId`), the commit need not reach the disk:
        // the scope's own (`synchronous = FULL`) does, on the same log.
        let deferred = writes && crate::request::durability_deferred(self.store.database_id());
        if writes {
            // Set for every write (where it differs): no write depends on
            // what another left.
            self.store
                .writer_synchronous(&conn, !deferred)
                .map_err(backend)?;
        }
        let out = (|| {
            let tx = conn.transaction_with_behavior(behavior).map_err(backend)?;
            let out = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })();
        if deferred {
            self.store.writer_done(&conn).map_err(backend)?;
        }
        out
    }
}

impl KeyStore for SqliteKeyStore {
    fn database(&self) -> Option<crate::request::DatabaseId> {
        Some(self.store.database_id())
    }

    /// A durable commit of the store's own (the commit mark, with a sync
    /// of the log): every commit before it on the same log is on disk
    /// after it.
    fn make_durable(&self) -> Result<(), KeyStoreError> {
        self.store.durable_mark().map_err(backend)
    }

    /// `uses` is written as given: a new key and its first reservation
    /// are one transaction.
    fn keeps_uses_on_insert(&self) -> bool {
        true
    }

    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError> {
        let s = subject.to_string();
        self.transaction(TransactionBehavior::Deferred, |tx| {
            if let Some(at) = erased_at(tx, &s)? {
                let at = Timestamp::from_unix_nanos(u64_col(at, "erased_at")?);
                return Ok(SubjectKeys::Erased { at });
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT generation, kek_version, wrapped, uses FROM pp_subject_keys
                     WHERE subject = ?1 ORDER BY generation",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([&s], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(backend)?;
            let mut keys = Vec::new();
            for row in rows {
                let (generation, kek_version, bytes, uses) = row.map_err(backend)?;
                keys.push(StoredKey {
                    generation,
                    wrapped: Wrapped { kek_version, bytes },
                    uses: u64_col(uses, "uses")?,
                });
            }
            Ok(if keys.is_empty() {
                SubjectKeys::Absent
            } else {
                SubjectKeys::Live(keys)
            })
        })
    }

    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError> {
        self.insert_noting(subject, key, &[]).map(drop)
    }

    /// The key and the notes in one immediate transaction.
    fn insert_noting(
        &self,
        subject: SubjectId,
        key: StoredKey,
        tokens: &[LookupRef],
    ) -> Result<bool, KeyStoreError> {
        let s = subject.to_string();
        let uses = i64::try_from(key.uses).map_err(|_| backend("use count too large"))?;
        let notes = tokens
            .iter()
            .map(|t| serde_json::to_string(&super::NotedToken::Lookup(*t)).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if erased_at(tx, &s)?.is_some() {
                return Err(conflict("subject erased"));
            }
            check_floor(tx, &key.wrapped)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pp_subject_keys (subject, generation, kek_version, wrapped, uses)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        s,
                        key.generation,
                        key.wrapped.kek_version,
                        key.wrapped.bytes,
                        uses
                    ])
                })
                .map_err(backend)?;
            if inserted == 0 {
                return Err(conflict("generation exists"));
            }
            for note in &notes {
                note_row(tx, &s, note)?;
            }
            Ok(true)
        })
    }

    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError> {
        let s = subject.to_string();
        self.transaction(TransactionBehavior::Immediate, |tx| {
            let before: i64 = tx
                .query_row(
                    "SELECT uses FROM pp_subject_keys WHERE subject = ?1 AND generation = ?2",
                    params![s, generation],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?
                .ok_or_else(|| conflict("no such key"))?;
            let before = u64_col(before, "uses")?;
            let after = i64::try_from(before.saturating_add(n)).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE pp_subject_keys SET uses = ?3 WHERE subject = ?1 AND generation = ?2",
                params![s, generation, after],
            )
            .map_err(backend)?;
            Ok(before)
        })
    }

    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: Wrapped,
    ) -> Result<(), KeyStoreError> {
        let s = subject.to_string();
        self.transaction(TransactionBehavior::Immediate, |tx| {
            check_floor(tx, &wrapped)?;
            let n = tx
                .execute(
                    "UPDATE pp_subject_keys SET kek_version = ?3, wrapped = ?4
                     WHERE subject = ?1 AND generation = ?2",
                    params![s, generation, wrapped.kek_version, wrapped.bytes],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(conflict("no such key"));
            }
            Ok(())
        })
    }

    fn destroy(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, KeyStoreError> {
        let s = subject.to_string();
        let at = i64::try_from(at.unix_nanos()).map_err(|_| backend("time out of range"))?;
        let destroyed = self.transaction(TransactionBehavior::Immediate, |tx| {
            // Whatever rows the subject has go, tombstone or not: a
            // tombstone planted before the erasure (A2) must not make it
            // destroy nothing. The first tombstone's date stays.
            let destroyed = listed(tx, &s)?;
            tx.execute("DELETE FROM pp_subject_keys WHERE subject = ?1", [&s])
                .map_err(backend)?;
            tx.execute("DELETE FROM pp_subject_pseudonyms WHERE subject = ?1", [&s])
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO pp_erased_subjects (subject, erased_at) VALUES (?1, ?2)
                 ON CONFLICT (subject) DO NOTHING",
                params![s, at],
            )
            .map_err(backend)?;
            Ok(destroyed)
        })?;
        // Copy the overwritten pages into the database file and empty the
        // write-ahead log, so no old copy of the keys stays in it. Best
        // effort: a busy reader only delays it.
        if let Ok(conn) = self.store.lock() {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(destroyed)
    }

    fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, KeyStoreError> {
        let s = subject.to_string();
        // Listed whatever a tombstone says, as `destroy` deletes them.
        self.transaction(TransactionBehavior::Deferred, |tx| listed(tx, &s).map(Some))
    }

    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        let rows: Vec<(String, u32)> = {
            let conn = self.store.lock()?;
            let mut stmt = conn
                .prepare("SELECT subject, generation FROM pp_subject_keys WHERE kek_version = ?1")
                .map_err(backend)?;
            let rows = stmt
                .query_map([kek_version], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)?
        };
        rows.into_iter()
            .map(|(s, g)| Ok((s.parse().map_err(backend)?, g)))
            .collect()
    }

    fn kek_state(&self) -> Result<KekState, KeyStoreError> {
        kek_state(&*self.store.lock()?)
    }

    fn swap_kek_state(&self, expected: KekState, new: KekState) -> Result<bool, KeyStoreError> {
        let (claimed_at, renewed_at) = (time_col(new.claimed_at)?, time_col(new.renewed_at)?);
        // The write lock at once: no insert or rewrap of another process
        // is between its floor check and its write while this runs.
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if kek_state(tx)? != expected {
                return Ok(false);
            }
            tx.execute(
                "UPDATE pp_kek_state SET floor = ?1, claimed = ?2, claimed_at = ?3, renewed_at = ?4
                 WHERE id = 1",
                params![new.floor, new.claimed, claimed_at, renewed_at],
            )
            .map_err(backend)?;
            Ok(true)
        })
    }

    fn note_pseudonym(
        &self,
        subject: SubjectId,
        pseudonym: PseudonymRef,
    ) -> Result<(), KeyStoreError> {
        self.note(subject, &super::NotedToken::Pseudonym(pseudonym))
    }

    fn note_lookup_token(&self, subject: SubjectId, token: LookupRef) -> Result<(), KeyStoreError> {
        self.note(subject, &super::NotedToken::Lookup(token))
    }
}

impl SqliteKeyStore {
    /// Notes a token for the subject's erasure receipt.
    fn note(&self, subject: SubjectId, token: &super::NotedToken) -> Result<(), KeyStoreError> {
        let s = subject.to_string();
        let p = serde_json::to_string(token).map_err(backend)?;
        self.transaction(TransactionBehavior::Immediate, |tx| {
            // Nothing is noted for an erased subject, and the caller hears it.
            if erased_at(tx, &s)?.is_some() {
                return Err(crate::crypto::erased_conflict());
            }
            note_row(tx, &s, &p)
        })
    }
}

// ---------------------------------------------------------------------------
// The consent store

/// Consent rows in `pp_consents`, shared by every process on the database.
/// Each write keeps the later version of two, checked and written in one
/// immediate transaction, so concurrent writers in several processes never
/// interleave.
#[derive(Clone, Debug)]
pub struct SqliteConsentStore {
    store: SqliteStore,
}

fn consent_err(e: impl fmt::Display) -> ConsentStoreError {
    ConsentStoreError(Cow::Owned(format!("pp_consents: {e}")))
}

fn purpose_col(p: PurposeId) -> String {
    p.to_string()
}

impl ConsentStore for SqliteConsentStore {
    fn load(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, ConsentStoreError> {
        let json: Option<String> = self
            .store
            .lock()?
            .prepare_cached("SELECT record FROM pp_consents WHERE subject = ?1 AND purpose = ?2")
            .and_then(|mut st| {
                st.query_row(params![subject.to_string(), purpose_col(purpose)], |r| {
                    r.get(0)
                })
                .optional()
            })
            .map_err(consent_err)?;
        json.map(|j| serde_json::from_str(&j).map_err(|_| consent_err("malformed row")))
            .transpose()
    }

    fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError> {
        let json = serde_json::to_string(record).map_err(consent_err)?;
        let version = i64::try_from(record.version).map_err(consent_err)?;
        let (subject, purpose) = (record.subject.to_string(), purpose_col(record.purpose));
        let mut conn = self.store.lock()?;
        let _turn = self.store.writing();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(consent_err)?;
        let current: Option<i64> = tx
            .query_row(
                "SELECT version FROM pp_consents WHERE subject = ?1 AND purpose = ?2",
                params![subject, purpose],
                |r| r.get(0),
            )
            .optional()
            .map_err(consent_err)?;
        if current.unwrap_or(0) >= version {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO pp_consents (subject, purpose, version, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subject, purpose) DO UPDATE SET version = excluded.version, record = excluded.record",
            params![subject, purpose, version, json],
        )
        .map_err(consent_err)?;
        tx.commit().map_err(consent_err)?;
        Ok(true)
    }

    fn forget(&self, subject: SubjectId) -> Result<(), ConsentStoreError> {
        let conn = self.store.lock()?;
        let _turn = self.store.writing();
        conn.execute(
            "DELETE FROM pp_consents WHERE subject = ?1",
            [subject.to_string()],
        )
        .map(|_| ())
        .map_err(consent_err)
    }

    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
        let conn = self.store.lock()?;
        let mut stmt = conn
            .prepare("SELECT record FROM pp_consents ORDER BY subject, purpose")
            .map_err(consent_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(consent_err)?;
        let mut out = Vec::new();
        for row in rows {
            let json = row.map_err(consent_err)?;
            out.push(serde_json::from_str(&json).map_err(|_| consent_err("malformed row"))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type KeyRow = (String, i64, i64, Vec<u8>, i64);

    fn keys(conn: &Connection) -> Vec<KeyRow> {
        conn.prepare("SELECT * FROM pp_subject_keys ORDER BY subject, generation")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn strings(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A database in memory as the first `version` migrations left it,
    /// then `rows` run.
    fn at_version(version: usize, rows: &str) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE pp_schema (version INTEGER NOT NULL)")
            .unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute(
            "INSERT INTO pp_schema (version) VALUES (?1)",
            [version as i64],
        )
        .unwrap();
        conn.execute_batch(rows).unwrap();
        conn
    }

    /// A5 (the fleet upgrading): a database of schema version 5 holding
    /// keys and notes, migrated to the newest version by a newer process,
    /// keeps every row as it was; the key tables then have no row ids (6),
    /// the trail's subject index (6) and the keys' kek-version index (7)
    /// are gone, and migrating again changes nothing.
    #[test]
    fn migrations_6_and_7_keep_every_key_row() {
        let mut conn = at_version(
            5,
            "INSERT INTO pp_subject_keys VALUES
                 ('s1', 0, 1, x'0102', 3), ('s1', 1, 2, x'0304', 0), ('s2', 0, 1, x'05', 7);
             INSERT INTO pp_subject_pseudonyms VALUES ('s1', 'p1'), ('s2', 'p2'), ('s1', 'p0');",
        );
        let notes = "SELECT subject || ':' || pseudonym FROM pp_subject_pseudonyms ORDER BY 1";
        let (keys_before, notes_before) = (keys(&conn), strings(&conn, notes));
        assert_eq!(keys_before.len(), 3);

        for _ in 0..2 {
            migrate(&mut conn).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
            assert_eq!(keys(&conn), keys_before);
            assert_eq!(strings(&conn, notes), notes_before);
            let tables = strings(
                &conn,
                "SELECT sql FROM sqlite_master WHERE type = 'table'
                 AND name IN ('pp_subject_keys', 'pp_subject_pseudonyms')",
            );
            assert_eq!(tables.len(), 2);
            assert!(tables.iter().all(|sql| sql.ends_with("WITHOUT ROWID")));
            let indexes = strings(
                &conn,
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY 1",
            );
            assert!(indexes.is_empty(), "{indexes:?}");
        }
    }

    /// A5 (the fleet upgrading): a trail of schema version 7, its ids with
    /// gaps, and an index and a trigger host code made on it, migrated to
    /// the newest version: every row keeps its id and columns, the host's
    /// index and trigger are there again (and the trigger still fires),
    /// the `UNIQUE (stream, seq)` index is gone, and migrating again
    /// changes nothing.
    #[test]
    fn migration_8_keeps_the_trail_and_what_the_host_made_on_it() {
        let mut conn = at_version(
            7,
            "INSERT INTO pp_audit_log VALUES
                 (3, 's1', 1, 10, 'a', 'collect', '{}'), (9, 's2', 1, 11, 'b', 'seal', '{}'),
                 (10, 's1', 2, 12, 'a', 'open', '{}');
             CREATE TABLE host_seen (n INTEGER);
             CREATE INDEX host_trail_subject ON pp_audit_log (subject);
             CREATE TRIGGER host_count AFTER INSERT ON pp_audit_log
                 BEGIN INSERT INTO host_seen VALUES (new.id); END;",
        );
        let trail = "SELECT id || ':' || stream || ':' || seq || ':' || time || ':' || subject
                     || ':' || action || ':' || event FROM pp_audit_log ORDER BY id";
        let before = strings(&conn, trail);
        let objects = "SELECT type || ':' || name || ':' || coalesce(sql, 'auto')
                       FROM sqlite_master WHERE tbl_name = 'pp_audit_log' AND type != 'table' ORDER BY 1";
        assert_eq!(
            strings(&conn, objects).len(),
            3,
            "the autoindex, the host's two"
        );

        for _ in 0..2 {
            migrate(&mut conn).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
            assert_eq!(strings(&conn, trail), before);
            let after = strings(&conn, objects);
            assert_eq!(after.len(), 2, "{after:?}");
            assert!(after[0].starts_with("index:host_trail_subject:CREATE INDEX"));
            assert!(after[1].starts_with("trigger:host_count:CREATE TRIGGER"));
        }
        // No constraint on (stream, seq) any more, and the host's trigger fires.
        conn.execute_batch("INSERT INTO pp_audit_log VALUES (11, 's1', 2, 13, 'a', 'open', '{}')")
            .unwrap();
        assert_eq!(
            strings(&conn, "SELECT CAST(n AS TEXT) FROM host_seen"),
            ["11"]
        );
    }

    /// The writer's `synchronous` level as the connection has it.
    fn writer_level(store: &SqliteStore) -> i64 {
        let conn = store.writer().ok().unwrap();
        conn.query_row("PRAGMA main.synchronous", [], |r| r.get(0))
            .unwrap()
    }

    /// A store with its own writer connection, a sink on it and a
    /// custodian keeping its keys there, in a directory of its own.
    fn writer_fixture() -> (
        std::path::PathBuf,
        SqliteStore,
        std::sync::Arc<SqliteAuditSink>,
        crate::Custodian,
    ) {
        let dir = std::env::temp_dir().join(format!("pp-writer-level-{}", SubjectId::random()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("db.sqlite")).unwrap();
        assert!(store.has_writer_connection());
        let keyring = crate::crypto::Keyring::generate().unwrap();
        let sink = std::sync::Arc::new(store.audit_sink(keyring.audit_key()).unwrap());
        let custodian = crate::Custodian::builder()
            .keyring(keyring)
            .audit(sink.clone())
            .key_store(store.key_store())
            .build()
            .unwrap();
        (dir, store, sink, custodian)
    }

    /// One request whose writes defer their sync to its last commit (a
    /// sealed email of a new subject: a key and two events).
    fn deferred_request(store: &SqliteStore, custodian: &crate::Custodian) {
        use crate::data::EmailAddress;
        use crate::purpose::Transaction;
        store
            .commit_request(
                custodian,
                || -> Result<_, crate::Error> {
                    let email = custodian.collect::<EmailAddress, Transaction>(
                        SubjectId::random(),
                        EmailAddress::parse("ada@example.com").unwrap(),
                    )?;
                    custodian.seal(&email)
                },
                |_, _| Ok(()),
            )
            .unwrap();
    }

    /// Keeps a checkpoint of the sink's head in `pp_checkpoints`, as
    /// `sign_checkpoint` does.
    fn keep_checkpoint(store: &SqliteStore, sink: &SqliteAuditSink) {
        let (stream, head) = sink.checkpoint();
        let signed = crate::crypto::Keyring::generate()
            .unwrap()
            .checkpoint_signer()
            .unwrap()
            .sign(stream, head, Timestamp::now());
        let json = serde_json::to_string(&signed).unwrap();
        SqliteBatchWriter {
            store: store.clone(),
        }
        .upsert_checkpoint(&signed, &json)
        .unwrap();
    }

    /// A2 (a power cut right after a commit the crate called durable): the
    /// writer's connection keeps the level its last write left (a
    /// request's deferred writes leave NORMAL), and every write that must
    /// reach the disk on its own sets FULL again first: an audit event
    /// outside a request, and a checkpoint kept in the database.
    #[test]
    fn a_durable_write_after_deferred_ones_syncs_the_log() {
        let (dir, store, sink, custodian) = writer_fixture();
        let subject = SubjectId::random();
        for _ in 0..2 {
            deferred_request(&store, &custodian);
            assert_eq!(writer_level(&store), 1, "deferred writes leave NORMAL");
            custodian
                .consents()
                .grant::<crate::purpose::Newsletter>(subject)
                .unwrap();
            assert_eq!(writer_level(&store), 2, "an event on its own is synced");
        }
        deferred_request(&store, &custodian);
        assert_eq!(writer_level(&store), 1, "deferred writes leave NORMAL");
        keep_checkpoint(&store, &sink);
        assert_eq!(writer_level(&store), 2, "a kept checkpoint is synced");
        drop((custodian, sink, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A2 plants a `pp_checkpoints` row of a later sequence number, so that
    /// the upsert of the real checkpoint changes nothing. Its commit must
    /// still append to the log at `synchronous = FULL` (and so sync the
    /// requests' deferred writes before the checkpoint leaves the
    /// database): a commit that changes no page syncs nothing.
    #[test]
    fn a2_a_checkpoint_under_a_planted_later_one_still_syncs_the_log() {
        let (dir, store, sink, custodian) = writer_fixture();
        let (stream, _) = sink.checkpoint();
        store.with_connection(|conn| {
            conn.execute(
                "INSERT INTO pp_checkpoints (stream, seq, checkpoint) VALUES (?1, ?2, 'planted')",
                params![stream.to_string(), i64::MAX],
            )
            .unwrap();
        });
        deferred_request(&store, &custodian);
        let wal = dir.join("db.sqlite-wal");
        let before = std::fs::metadata(&wal).unwrap().len();
        keep_checkpoint(&store, &sink);
        assert_eq!(writer_level(&store), 2, "a kept checkpoint is synced");
        assert!(
            std::fs::metadata(&wal).unwrap().len() > before,
            "the checkpoint's commit appended nothing to the log, so it synced nothing"
        );
        let planted: String = store.with_connection(|conn| {
            conn.query_row("SELECT checkpoint FROM pp_checkpoints", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(
            planted, "planted",
            "an older checkpoint never replaces a later one"
        );
        drop((custodian, sink, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
