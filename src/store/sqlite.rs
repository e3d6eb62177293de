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
//! | `pp_audit_log (id, stream, seq, time, subject, action, event)` | chained events as JSON (`event`); the other columns copy fields of it for queries, and [`SqliteStore::trail`] refuses a row whose copies disagree with the authenticated event. `UNIQUE (stream, seq)`. |
//! | `pp_subject_keys (subject, generation, kek_version, wrapped, uses)` | wrapped data keys: useless without the key-encryption key |
//! | `pp_erased_subjects (subject, erased_at)` | erasure tombstones |
//! | `pp_subject_pseudonyms (subject, pseudonym)` | pseudonyms noted for erasure receipts |
//! | `pp_consents (subject, purpose, version, record)` | consent rows (JSON of a [`ConsentRecord`], authenticated by the custodian) |
//! | `pp_checkpoints (stream, seq, checkpoint)` | each stream's newest signed checkpoint (JSON); the copy that counts is the one in the [`CheckpointStore`] outside the database |
//!
//! Connections use WAL, `synchronous = FULL` (a commit is on disk before
//! `record` returns) and `secure_delete` (destroyed keys do not linger in
//! free pages).

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub use rusqlite;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;
use crate::audit::chain::link;
use crate::audit::{
    Action, AuditError, AuditEvent, AuditKey, AuditSink, Checkpoint, CheckpointSigner,
    CheckpointStore, SignedCheckpoint, StreamId,
};
use crate::consent::{ConsentRecord, ConsentStore, ConsentStoreError};
use crate::crypto::{
    Destroyed, KeyStore, KeyStoreError, PseudonymRef, StoredKey, SubjectKeys, Wrapped,
};
use crate::purpose::PurposeId;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// The migrations, in order; `pp_schema` records how many were applied.
const MIGRATIONS: [&str; 3] = [
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
];

/// The schema version this crate writes (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// One SQLite database shared by the audit sinks, the key store and the
/// host's own tables. Cheap to clone (one connection behind a mutex).
///
/// Several processes may open the same file: SQLite serialises their writes,
/// each audit sink writes its own stream, and the key store takes SQLite's
/// write lock for every read-then-write step.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file and brings its tables up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db_err)?;
        Self::from_connection(conn)
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
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
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
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// A private in-memory database (tests, examples).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    /// Takes over a connection the host opened (to share it with its own
    /// tables): sets WAL, `synchronous = FULL`, `secure_delete` and a busy
    /// timeout, then runs the migrations.
    pub fn from_connection(conn: Connection) -> Result<Self, StoreError> {
        // First the busy timeout: processes opening one file together wait
        // for each other's locks (switching to WAL takes one) instead of
        // failing at once.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        // An in-memory database has no WAL; the pragma then answers "memory".
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db_err)?;
        let mut conn = conn;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an unfinished transaction when it is dropped,
        // so a connection whose user panicked is still consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the connection, for the host's own tables. Do not call
    /// the custodian inside `f`: it uses this connection too.
    pub fn with_connection<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(&mut self.lock())
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema_version(&self.lock())
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
        let stream = StreamId::random().map_err(|_| StoreError::Random)?;
        Ok(SqliteAuditSink {
            store: self.clone(),
            key,
            chain: Mutex::new(Chain {
                stream,
                head: Checkpoint::GENESIS,
                poisoned: false,
            }),
            queue: Mutex::new(Queue::default()),
            commits: AtomicU64::new(0),
            events: AtomicU64::new(0),
            checkpoints: None,
        })
    }

    /// Every entry of `pp_audit_log`, in append order, for
    /// [`verify_streams`](crate::audit::verify_streams).
    ///
    /// A row whose JSON is not an event, or whose query columns disagree with
    /// the authenticated event, is an error naming its row id: an operator who
    /// edits only a column must not go unnoticed by queries that read it.
    pub fn trail(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let conn = self.lock();
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
            let bad = || StoreError::Database(format!("pp_audit_log row {id} was altered"));
            let event: AuditEvent = serde_json::from_str(&json).map_err(|_| bad())?;
            let columns = Columns::of(&event).map_err(|_| bad())?;
            if (
                columns.stream,
                columns.seq,
                columns.time,
                columns.subject,
                columns.action,
            ) != (stream, seq, time, subject, action)
            {
                return Err(bad());
            }
            out.push(event);
        }
        Ok(out)
    }
}

impl SqliteStore {
    /// The newest signed checkpoint of every stream, as kept in
    /// `pp_checkpoints`. The operator can roll this table back with the
    /// trail; compare with the copies in the [`CheckpointStore`] outside.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let conn = self.lock();
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
    for sql in &MIGRATIONS[found as usize..] {
        tx.execute_batch(sql).map_err(db_err)?;
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

// ---------------------------------------------------------------------------
// The audit sink

/// The query columns of one `pp_audit_log` row, copied from its event.
struct Columns {
    stream: String,
    seq: i64,
    time: i64,
    subject: String,
    action: String,
}

impl Columns {
    fn of(event: &AuditEvent) -> Result<Columns, AuditError> {
        let int = |v: u64| {
            i64::try_from(v).map_err(|_| AuditError::new("audit event field out of SQLite range"))
        };
        Ok(Columns {
            stream: event.stream().map(|s| s.to_string()).unwrap_or_default(),
            seq: int(event.seq())?,
            time: int(event.time().unix_nanos())?,
            subject: event.subject().to_string(),
            action: action_name(event.action()),
        })
    }
}

/// The name of an action as stored in the `action` column (`"access"`, …):
/// its serde form, the stable, documented name.
fn action_name(action: Action) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One chained event waiting for its commit.
struct Pending {
    columns: Columns,
    json: String,
    stream: StreamId,
    head: Checkpoint,
    done: Arc<Done>,
}

/// Where a waiting `record` call learns how its commit went.
#[derive(Default)]
struct Done {
    result: Mutex<Option<Result<(), AuditError>>>,
    cv: Condvar,
}

impl Done {
    fn set(&self, r: Result<(), AuditError>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.cv.notify_all();
    }

    fn wait(&self) -> Result<(), AuditError> {
        let mut slot = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.cv.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

struct Chain {
    stream: StreamId,
    head: Checkpoint,
    /// A commit failed: events chained after it can never be stored in this
    /// stream without a gap, so the next event starts a new stream.
    poisoned: bool,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Some thread is committing; new events join its next batch.
    leader: bool,
}

/// The audit sink over `pp_audit_log`: chains events in its own stream and
/// commits concurrent `record` calls in one transaction (group commit).
///
/// Each call returns only once its event is committed (`synchronous =
/// FULL`: on disk); if the transaction fails, every call in it fails, so the
/// operations they stand for do not happen (R10). Events chained after a
/// failed one cannot be stored without a gap in the stream, so they fail too,
/// and the sink continues in a new stream: no event is lost silently, none is
/// stored twice, and a process killed mid-batch leaves a stream whose stored
/// entries verify (the transaction is all or nothing).
///
/// While one thread commits, others queue; the first to find no commit
/// running becomes the next committer and takes everything queued. So under
/// load one commit (one `fsync`) serves many events, and with a single caller
/// each event is its own commit.
pub struct SqliteAuditSink {
    store: SqliteStore,
    key: AuditKey,
    chain: Mutex<Chain>,
    queue: Mutex<Queue>,
    commits: AtomicU64,
    events: AtomicU64,
    checkpoints: Option<Checkpoints>,
}

/// Signing checkpoints: who signs, where they go, how often.
struct Checkpoints {
    signer: CheckpointSigner,
    store: Box<dyn CheckpointStore>,
    every: u64,
    /// The last sequence number signed (of the current stream).
    last: Mutex<(StreamId, u64)>,
    failures: AtomicU64,
}

impl fmt::Debug for SqliteAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAuditSink")
            .field("stream", &self.stream())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteAuditSink {
    /// The stream this sink writes now (a new one after a failed commit).
    pub fn stream(&self) -> StreamId {
        lock(&self.chain).stream
    }

    /// The stream and head of the last chained event: after every `record`
    /// call has returned `Ok`, the head of what is committed. Keep it (signed,
    /// or somewhere the database's operator cannot write) to detect entries
    /// cut from the end of the stream later.
    pub fn checkpoint(&self) -> (StreamId, Checkpoint) {
        let c = lock(&self.chain);
        (c.stream, c.head)
    }

    /// Signs checkpoints of this sink's stream with `signer` and keeps them
    /// in `store` (outside the database; [`DirCheckpointStore`](crate::audit::DirCheckpointStore)
    /// is the default choice) and in `pp_checkpoints`: one after every
    /// `every` events (at least 1; written in the same transaction as the
    /// event that reaches the count), and one on each
    /// [`sign_checkpoint`](Self::sign_checkpoint) call — at clean shutdown,
    /// say. A verifier then needs only the public key
    /// ([`verify_public`](crate::audit::verify_public)).
    pub fn with_checkpoints(
        mut self,
        signer: CheckpointSigner,
        store: impl CheckpointStore + 'static,
        every: u64,
    ) -> Self {
        let stream = self.stream();
        self.checkpoints = Some(Checkpoints {
            signer,
            store: Box::new(store),
            every: every.max(1),
            last: Mutex::new((stream, 0)),
            failures: AtomicU64::new(0),
        });
        self
    }

    /// Signs the stream's current head now, and keeps it in the checkpoint
    /// store and in `pp_checkpoints`. Call it after the last event at clean
    /// shutdown. `Err` if the sink has no signer or a copy could not be kept.
    pub fn sign_checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let cp = self
            .checkpoints
            .as_ref()
            .ok_or_else(|| AuditError::new("this sink signs no checkpoints"))?;
        let (stream, head) = self.checkpoint();
        let signed = cp.signer.sign(stream, head, Timestamp::now());
        let json = serde_json::to_string(&signed)
            .map_err(|_| AuditError::new("checkpoint could not be encoded"))?;
        self.store
            .lock()
            .execute(
                UPSERT_CHECKPOINT,
                params![stream.to_string(), seq_col(head.seq())?, json],
            )
            .map_err(insert_failed)?;
        cp.store.save(&signed)?;
        *lock(&cp.last) = (stream, head.seq());
        Ok(signed)
    }

    /// How many checkpoints signed after a commit could not be kept in the
    /// checkpoint store (the events themselves were committed).
    pub fn checkpoint_failures(&self) -> u64 {
        self.checkpoints
            .as_ref()
            .map_or(0, |c| c.failures.load(Ordering::Relaxed))
    }

    /// How many transactions this sink has committed (with
    /// [`events`](Self::events), how well group commit is batching).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How many events this sink has chained (committed or not).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Chains `event` and queues it; returns where its result will appear.
    fn enqueue(&self, event: &AuditEvent) -> Result<Arc<Done>, AuditError> {
        let mut chain = lock(&self.chain);
        if chain.poisoned {
            chain.stream =
                StreamId::random().map_err(|_| AuditError::new("random generator failed"))?;
            chain.head = Checkpoint::GENESIS;
            chain.poisoned = false;
        }
        let seq = chain
            .head
            .seq()
            .checked_add(1)
            .ok_or_else(|| AuditError::new("audit stream sequence exhausted"))?;
        let linked = link(&self.key, Some(chain.stream), &chain.head, event, seq);
        let columns = Columns::of(&linked)?;
        let json = serde_json::to_string(&linked)
            .map_err(|_| AuditError::new("audit event could not be encoded"))?;
        let value = crate::audit::chain::head_value(&linked);
        let done = Arc::new(Done::default());
        // Queued under the chain lock: queue order is chain order.
        lock(&self.queue).pending.push(Pending {
            columns,
            json,
            stream: chain.stream,
            head: Checkpoint::new(seq, value),
            done: done.clone(),
        });
        chain.head = Checkpoint::new(seq, value);
        self.events.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }

    /// Commits queued events until none is left, if no other thread is
    /// doing so; then waits for this call's own result.
    fn commit_or_wait(&self, done: &Done) -> Result<(), AuditError> {
        let mut queue = lock(&self.queue);
        if queue.leader {
            drop(queue);
            return done.wait();
        }
        queue.leader = true;
        loop {
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            let result = self.write(&batch);
            if result.is_err() {
                self.poison();
            }
            for p in &batch {
                p.done.set(result.clone());
            }
            queue = lock(&self.queue);
            if queue.pending.is_empty() {
                queue.leader = false;
                break;
            }
        }
        drop(queue);
        done.wait()
    }

    /// After a failed commit: fail everything chained after it and start a
    /// new stream with the next event.
    fn poison(&self) {
        let mut chain = lock(&self.chain);
        chain.poisoned = true;
        let stranded = std::mem::take(&mut lock(&self.queue).pending);
        drop(chain);
        for p in stranded {
            p.done.set(Err(AuditError::new(
                "an earlier audit commit of this stream failed",
            )));
        }
    }

    fn write(&self, batch: &[Pending]) -> Result<(), AuditError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.store.lock();
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
            for p in batch {
                let c = &p.columns;
                stmt.execute(params![
                    c.stream, c.seq, c.time, c.subject, c.action, p.json
                ])
                .map_err(insert_failed)?;
            }
        }
        let due = self.due_checkpoint(batch);
        if let Some((signed, json)) = &due {
            let head = signed.checkpoint();
            tx.execute(
                UPSERT_CHECKPOINT,
                params![signed.stream().to_string(), seq_col(head.seq())?, json],
            )
            .map_err(insert_failed)?;
        }
        tx.commit().map_err(insert_failed)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        if let (Some((signed, _)), Some(cp)) = (due, &self.checkpoints) {
            // The events are committed whatever happens here.
            match cp.store.save(&signed) {
                Ok(()) => {
                    *lock(&cp.last) = (signed.stream(), signed.checkpoint().seq());
                }
                Err(_) => {
                    cp.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// A signed checkpoint of the batch's last event, if one is due.
    fn due_checkpoint(&self, batch: &[Pending]) -> Option<(SignedCheckpoint, String)> {
        let cp = self.checkpoints.as_ref()?;
        let last = batch.last()?;
        let (stream, signed) = *lock(&cp.last);
        let since = if stream == last.stream { signed } else { 0 };
        if last.head.seq().saturating_sub(since) < cp.every {
            return None;
        }
        let signed = cp.signer.sign(last.stream, last.head, Timestamp::now());
        let json = serde_json::to_string(&signed).ok()?;
        Some((signed, json))
    }
}

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

impl AuditSink for SqliteAuditSink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let done = self.enqueue(event)?;
        self.commit_or_wait(&done)
    }
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
    conn.query_row(
        "SELECT erased_at FROM pp_erased_subjects WHERE subject = ?1",
        [subject],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
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
        let mut conn = self.store.lock();
        let tx = conn.transaction_with_behavior(behavior).map_err(backend)?;
        let out = f(&tx)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

impl KeyStore for SqliteKeyStore {
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
        let s = subject.to_string();
        let uses = i64::try_from(key.uses).map_err(|_| backend("use count too large"))?;
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if erased_at(tx, &s)?.is_some() {
                return Err(conflict("subject erased"));
            }
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO pp_subject_keys (subject, generation, kek_version, wrapped, uses)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![s, key.generation, key.wrapped.kek_version, key.wrapped.bytes, uses],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(conflict("generation exists"));
            }
            Ok(())
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
            if erased_at(tx, &s)?.is_some() {
                return Ok(Destroyed::default());
            }
            let generations = tx
                .prepare(
                    "SELECT generation FROM pp_subject_keys WHERE subject = ?1 ORDER BY generation",
                )
                .and_then(|mut st| st.query_map([&s], |r| r.get(0))?.collect())
                .map_err(backend)?;
            let noted: Vec<String> = tx
                .prepare("SELECT pseudonym FROM pp_subject_pseudonyms WHERE subject = ?1")
                .and_then(|mut st| st.query_map([&s], |r| r.get(0))?.collect())
                .map_err(backend)?;
            let pseudonyms = noted
                .iter()
                .map(|p| serde_json::from_str::<PseudonymRef>(p).map_err(backend))
                .collect::<Result<_, _>>()?;
            tx.execute("DELETE FROM pp_subject_keys WHERE subject = ?1", [&s])
                .map_err(backend)?;
            tx.execute("DELETE FROM pp_subject_pseudonyms WHERE subject = ?1", [&s])
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO pp_erased_subjects (subject, erased_at) VALUES (?1, ?2)",
                params![s, at],
            )
            .map_err(backend)?;
            Ok(Destroyed {
                generations,
                pseudonyms,
            })
        })?;
        // Copy the overwritten pages into the database file and empty the
        // write-ahead log, so no old copy of the keys stays in it. Best
        // effort: a busy reader only delays it.
        let _ = self
            .store
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(destroyed)
    }

    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        let rows: Vec<(String, u32)> = {
            let conn = self.store.lock();
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

    fn note_pseudonym(
        &self,
        subject: SubjectId,
        pseudonym: PseudonymRef,
    ) -> Result<(), KeyStoreError> {
        let s = subject.to_string();
        let p = serde_json::to_string(&pseudonym).map_err(backend)?;
        self.transaction(TransactionBehavior::Immediate, |tx| {
            // Like the in-memory store: nothing is noted for an erased subject.
            if erased_at(tx, &s)?.is_none() {
                tx.execute(
                    "INSERT OR IGNORE INTO pp_subject_pseudonyms (subject, pseudonym) VALUES (?1, ?2)",
                    params![s, p],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------
// The consent store

/// Consent rows in `pp_consents`, shared by every process on the database.
/// Each write is a compare-and-set on the row's version inside an immediate
/// transaction, so concurrent writers in several processes never lose a
/// change.
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
            .lock()
            .query_row(
                "SELECT record FROM pp_consents WHERE subject = ?1 AND purpose = ?2",
                params![subject.to_string(), purpose_col(purpose)],
                |r| r.get(0),
            )
            .optional()
            .map_err(consent_err)?;
        json.map(|j| serde_json::from_str(&j).map_err(|_| consent_err("malformed row")))
            .transpose()
    }

    fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError> {
        let json = serde_json::to_string(record).map_err(consent_err)?;
        let version = i64::try_from(record.version).map_err(consent_err)?;
        let (subject, purpose) = (record.subject.to_string(), purpose_col(record.purpose));
        let mut conn = self.store.lock();
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
        if current.unwrap_or(0) != version - 1 {
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
        self.store
            .lock()
            .execute(
                "DELETE FROM pp_consents WHERE subject = ?1",
                [subject.to_string()],
            )
            .map(|_| ())
            .map_err(consent_err)
    }

    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
        let conn = self.store.lock();
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
