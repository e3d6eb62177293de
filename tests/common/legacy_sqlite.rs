//! The single-chain SQLite host code that earlier versions of the examples
//! carried (an `audit_log` table behind a `ChainedAuditLog`, a checkpoint
//! file); keys live in the crate's own store on the same file. The examples now use the crate's own store
//! (`store::sqlite`); this stays for the tests of the version-1 chain format
//! on a real database and of restoring consent from a verified trail.

#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use privacy_pledge::audit::{
    verify, Action, AuditError, AuditEvent, AuditKey, AuditSink, ChainedAuditLog, Checkpoint,
    Tamper, VerifiedTrail, VerifyError,
};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::store::sqlite::{SqliteKeyStore, SqliteStore};
use rusqlite::{params, Connection};

/// Errors of the tests' own plumbing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tables this module owns. `IF NOT EXISTS`, so opening an existing
/// database continues where it left off.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    id      INTEGER PRIMARY KEY,   -- append order
    seq     INTEGER NOT NULL,      -- the columns below copy fields of `event`
    time    INTEGER NOT NULL,      -- for queries; the verifier checks that
    subject TEXT    NOT NULL,      -- they agree with the authenticated event
    action  TEXT    NOT NULL,
    event   TEXT    NOT NULL       -- the chained event as JSON
);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject);
";

/// One SQLite connection shared by the audit log, the key store and the
/// host's own tables.
///
/// The lock is held only for one statement or transaction; never call the
/// custodian inside [`Db::with`], since the custodian uses this database too.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// Opens (or creates) the database file and its tables.
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let conn = Connection::open(path)?;
        // WAL: one fsync per commit. `secure_delete` overwrites deleted rows,
        // so a destroyed subject key does not linger in free pages.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Opens an existing database read-only: creates no file, no table and
    /// no row (a verifier must never change what it checks).
    pub fn open_read_only(path: &Path) -> rusqlite::Result<Db> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an unfinished transaction when it is dropped,
        // so a connection whose user panicked is still consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the connection.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> rusqlite::Result<R> {
        f(&mut self.lock())
    }
}

/// The crate's own SQLite key store on the same database file (its
/// `pp_subject_keys` tables beside the legacy `audit_log`).
pub fn key_store(db: &Db) -> SqliteKeyStore {
    SqliteStore::open(&db.path)
        .expect("the crate's store opens on the same file")
        .key_store()
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Db")
    }
}

// ---------------------------------------------------------------------------
// The audit trail

/// The audit trail in the `audit_log` table.
///
/// Each event is inserted in its own transaction before the operation it
/// describes goes ahead; if the insert fails, `record` returns `Err` and the
/// custodian does not perform the operation. Wrap it in a
/// [`ChainedAuditLog`] (see [`open_chain`]) to make the table tamper-evident.
#[derive(Clone, Debug)]
pub struct SqliteAuditLog {
    db: Db,
}

impl SqliteAuditLog {
    /// The audit log in `db`.
    pub fn new(db: Db) -> Self {
        SqliteAuditLog { db }
    }
}

/// The name of an action as stored in the `action` column (`"access"`, …).
pub fn action_name(action: Action) -> String {
    // The serde form is the stable, documented name.
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An event as the columns of one `audit_log` row.
struct EventRow {
    seq: i64,
    time: i64,
    subject: String,
    action: String,
    json: String,
}

impl EventRow {
    fn new(event: &AuditEvent) -> Result<EventRow, AuditError> {
        let int = |v: u64| {
            i64::try_from(v).map_err(|_| AuditError::new("audit event field out of SQLite range"))
        };
        Ok(EventRow {
            seq: int(event.seq())?,
            time: int(event.time().unix_nanos())?,
            subject: event.subject().to_string(),
            action: action_name(event.action()),
            json: serde_json::to_string(event)
                .map_err(|_| AuditError::new("audit event could not be encoded"))?,
        })
    }

    fn insert(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO audit_log (seq, time, subject, action, event) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![self.seq, self.time, self.subject, self.action, self.json],
        )?;
        Ok(())
    }
}

fn insert_failed(e: rusqlite::Error) -> AuditError {
    // SQLite's messages name tables and constraints, never values of an
    // event (and events hold no personal values anyway).
    AuditError::new(format!("audit_log insert failed: {e}"))
}

impl AuditSink for SqliteAuditLog {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let row = EventRow::new(event)?;
        self.db.with(|conn| row.insert(conn)).map_err(insert_failed)
    }

    /// All events in one transaction: all are stored, or none.
    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let rows = events
            .iter()
            .map(EventRow::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.db
            .with(|conn| {
                let tx = conn.transaction()?;
                for row in &rows {
                    row.insert(&tx)?; // on error, dropping `tx` rolls back
                }
                tx.commit()
            })
            .map_err(insert_failed)
    }
}

/// One row of `audit_log` as read back.
#[derive(Debug)]
pub struct StoredEvent {
    /// The row's position in append order.
    pub id: i64,
    /// The event, or why its JSON did not parse.
    pub event: Result<AuditEvent, String>,
    /// Whether the query columns agree with the event.
    pub columns_match: bool,
}

/// Every row of `audit_log`, in append order.
pub fn load_audit_log(db: &Db) -> rusqlite::Result<Vec<StoredEvent>> {
    db.with(|conn| {
        let mut stmt = conn
            .prepare("SELECT id, seq, time, subject, action, event FROM audit_log ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let (id, seq, time, subject, action, json): (i64, i64, i64, String, String, String) = (
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            );
            let event = serde_json::from_str::<AuditEvent>(&json).map_err(|e| e.to_string());
            let columns_match = event.as_ref().is_ok_and(|e| {
                i64::try_from(e.seq()) == Ok(seq)
                    && i64::try_from(e.time().unix_nanos()) == Ok(time)
                    && e.subject().to_string() == subject
                    && action_name(e.action()) == action
            });
            Ok(StoredEvent {
                id,
                event,
                columns_match,
            })
        })?;
        rows.collect()
    })
}

/// Why a stored audit trail could not be confirmed.
#[derive(Debug)]
pub enum CheckError {
    /// The storage could not be read.
    Storage(String),
    /// The trail was tampered with: the first bad entry and why.
    Broken(VerifyError),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Storage(e) => write!(f, "cannot read the audit trail: {e}"),
            CheckError::Broken(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CheckError {}

impl From<rusqlite::Error> for CheckError {
    fn from(e: rusqlite::Error) -> Self {
        CheckError::Storage(e.to_string())
    }
}

/// Verifies the rows read by [`load_audit_log`] and returns the head.
///
/// A row whose JSON does not parse, or whose query columns disagree with its
/// authenticated event, counts as modified: an attacker who edits only a
/// column must not go unnoticed by queries that read it.
pub fn verify_rows(
    rows: &[StoredEvent],
    key: &AuditKey,
    trusted: Option<&Checkpoint>,
) -> Result<Checkpoint, VerifyError> {
    let first_bad_row = rows.iter().position(|r| !r.columns_match);
    let events: Vec<AuditEvent> = rows
        .iter()
        .take(first_bad_row.unwrap_or(rows.len()))
        .filter_map(|r| r.event.as_ref().ok().cloned())
        .collect();
    match first_bad_row {
        None => verify(&events, key, trusted),
        Some(index) => {
            // Anything wrong before the bad row is reported first.
            let head = verify(&events, key, None)?;
            Err(VerifyError {
                index,
                expected_seq: head.seq() + 1,
                reason: Tamper::Modified,
            })
        }
    }
}

/// Reads and verifies the whole `audit_log` table; returns its head.
pub fn verify_audit_log(
    db: &Db,
    key: &AuditKey,
    trusted: Option<&Checkpoint>,
) -> Result<Checkpoint, CheckError> {
    verified_trail(db, key, trusted).map(|(_, head)| head)
}

/// Reads and verifies the whole `audit_log` table; returns its events and head.
pub fn verified_trail(
    db: &Db,
    key: &AuditKey,
    trusted: Option<&Checkpoint>,
) -> Result<(Vec<AuditEvent>, Checkpoint), CheckError> {
    let rows = load_audit_log(db)?;
    let head = verify_rows(&rows, key, trusted).map_err(CheckError::Broken)?;
    let events = rows.into_iter().filter_map(|r| r.event.ok()).collect();
    Ok((events, head))
}

/// The chained audit log over `audit_log`, continuing the chain already
/// stored there from `head` (as returned by [`verified_trail`]).
///
/// Verify the stored chain first, so a process never extends a trail that
/// was tampered with. (A host also compares the head with the last
/// checkpoint it keeps outside the database, which catches a cut-off tail.)
pub fn resume_chain(db: &Db, key: AuditKey, head: Checkpoint) -> ChainedAuditLog<SqliteAuditLog> {
    ChainedAuditLog::resume(key, SqliteAuditLog::new(db.clone()), head)
}

/// A host's custodian opened on this database, with its audit chain and the
/// verified trail it continues.
pub struct Opened {
    pub custodian: privacy_pledge::Custodian,
    pub audit: Arc<ChainedAuditLog<SqliteAuditLog>>,
    pub trail: VerifiedTrail,
    /// Where the trusted checkpoint is kept (outside the database).
    pub checkpoint_file: PathBuf,
}

impl Opened {
    /// Writes the chain's head to the checkpoint file: at clean shutdown,
    /// so the next start can prove the trail was not cut short.
    pub fn save_checkpoint(&self) -> Result<Checkpoint, BoxError> {
        self.audit.flush()?;
        let head = self.audit.checkpoint();
        save_checkpoint(&self.checkpoint_file, &head)?;
        Ok(head)
    }
}

/// A host's custodian on this database: keys from `keyring`, wrapped subject
/// keys in `subject_keys`, and the audit chain continued in `audit_log` only
/// once it verifies **against the trusted checkpoint in `checkpoint_file`**
/// (kept outside the database). A trail cut short, rolled back or edited
/// while the process was down is refused, so it can neither be extended nor
/// bring a withdrawn consent back; the consent register is rebuilt from that
/// verified trail. A database with no trail and no checkpoint starts fresh;
/// a trail without its checkpoint is refused.
pub fn open_custodian(
    db: &Db,
    keyring: Arc<Keyring>,
    checkpoint_file: &Path,
) -> Result<Opened, BoxError> {
    let key = keyring.audit_key();
    let rows = load_audit_log(db)?;
    let trusted = match load_checkpoint(checkpoint_file)? {
        Some(c) => c,
        None if rows.is_empty() => Checkpoint::GENESIS,
        None => {
            return Err(format!(
                "the audit trail has {} entries but there is no trusted checkpoint at {}: refusing to start on a trail that cannot be checked",
                rows.len(),
                checkpoint_file.display()
            )
            .into())
        }
    };
    let head = verify_rows(&rows, &key, Some(&trusted)).map_err(CheckError::Broken)?;
    let events: Vec<AuditEvent> = rows.into_iter().filter_map(|r| r.event.ok()).collect();
    let audit = Arc::new(resume_chain(db, key, head));
    // The single chain's head from the file outside the database, signed
    // for the custodian (which takes trusted heads only from its checkpoint
    // store, never from its caller).
    let outside = privacy_pledge::audit::MemoryCheckpointStore::new();
    if trusted.seq() > 0 {
        use privacy_pledge::audit::CheckpointStore;
        outside.save(&keyring.checkpoint_signer()?.sign(
            privacy_pledge::audit::StreamId::UNSTREAMED,
            trusted,
            privacy_pledge::time::Timestamp::now(),
        ))?;
    }
    let custodian = privacy_pledge::Custodian::builder()
        .keyring(keyring.clone())
        .key_store(key_store(db))
        .audit(audit.clone())
        .checkpoint_store(outside)
        .build()?;
    let trail = custodian.verify_trail(events)?;
    custodian.consents().restore(&trail)?;
    // The restore is an audit event: vouch for it at once, so a crash
    // before the next clean shutdown leaves no unvouched tail behind.
    audit.flush()?;
    save_checkpoint(checkpoint_file, &audit.checkpoint())?;
    Ok(Opened {
        custodian,
        audit,
        trail,
        checkpoint_file: checkpoint_file.to_owned(),
    })
}

/// The checkpoint file for a database: `<db>.checkpoint`. The demo keeps it
/// beside the database for simplicity; a real host keeps it where the
/// database's operator cannot write (another host, an object store with
/// retention, a transparency log).
pub fn checkpoint_file_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// Reads a checkpoint (`SEQ:HEX`) from `path`; `None` if there is no file.
pub fn load_checkpoint(path: &Path) -> Result<Option<Checkpoint>, BoxError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            Ok(Some(text.trim_end().parse().map_err(|e| {
                format!("checkpoint file {}: {e}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read checkpoint {}: {e}", path.display()).into()),
    }
}

/// Writes a checkpoint to `path` atomically (a new file, synced, renamed).
pub fn save_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), BoxError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp)?;
    writeln!(file, "{checkpoint}")?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// [`verified_trail`], then [`resume_chain`].
pub fn open_chain(
    db: &Db,
    key: AuditKey,
    trusted: Option<&Checkpoint>,
) -> Result<ChainedAuditLog<SqliteAuditLog>, CheckError> {
    let (_, head) = verified_trail(db, &key, trusted)?;
    Ok(resume_chain(db, key, head))
}
