//! The PostgreSQL store (feature `postgres`): audit streams with group
//! commit and signed checkpoints, wrapped subject keys, and consent rows, in
//! tables of the host's own PostgreSQL database.
//!
//! The same schema as the SQLite store (tables prefixed `pp_`, numbered
//! migrations in `pp_schema`, applied under an advisory lock so processes
//! starting together do not race), with PostgreSQL's own guarantees:
//! `synchronous_commit = on`, set on each of the store's own connections
//! whatever default the connection string, role or database gives, makes a
//! commit durable before `record` returns; every read-then-write of the key
//! store holds a per-subject advisory lock, so an erasure and a new key for the same
//! subject never interleave across processes; a consent row is
//! replaced only by one of a later version. `pp_commit_marks (slot, n)`
//! stays empty here: [`PgStore::commit_request`]'s last transaction, and
//! the one that keeps a sink's checkpoint in `pp_checkpoints`, write a
//! transactional message to the write-ahead log instead
//! (`pg_logical_emit_message`, under the prefix `privacy-pledge`), so that
//! their commits write to the log and therefore flush it (PostgreSQL
//! flushes at a commit only a transaction that wrote to the log). The
//! store's role needs `EXECUTE` on that function (granted to everyone by
//! default): [`PgStore::connect`] fails, saying so, without it.
//!
//! The client is the synchronous [`postgres`] crate: the crate's traits are
//! synchronous, and an async host calls the custodian on a blocking thread.
//!
//! # Connections
//!
//! [`PgStore::connect`] and [`PgStore::connect_with`] open one connection
//! for the audit sinks' writer and two pools of [`PoolOptions::pool_size`]
//! connections each (4 by default), all up front: one for the store's own
//! statements (the key store, the consent store, trail reads), one for host
//! code ([`with_client`](PgStore::with_client), [`commit_request`](PgStore::commit_request)'s
//! transaction). A report reading the trail or a long host transaction does
//! not delay an audit commit (unless it holds row locks the commit needs,
//! which the store's tables never share with the host's).
//!
//! Host code is never given a connection the store's own statements use:
//! what a session keeps — a temporary table named like a store table (the
//! session's `pg_temp` is searched first), `SET synchronous_commit = off`,
//! a `search_path` — stays on connections only host code uses.
//! `commit_request`'s durable commit is a transaction of the store's own,
//! after the host's: nothing host code set for its session or its
//! transaction, or deferred to its commit, can turn it into one that does
//! not wait for the disk. [`PgStore::connect_read_only`] keeps one
//! connection for everything. The pool is the crate's own, not `r2d2_postgres` (see
//! [`PoolOptions`] for why). A connection the server closed (a restart, a
//! failover, an idle timeout) is opened again, set up as before, when it
//! is next taken: the use that met it fails, the next ones go on. Every
//! connection, opened at the start or again, must reach the server and
//! database the writer reached when the store connected (the cluster's
//! system identifier, which a standby promoted in a failover keeps, and
//! the database's OID): a connection string naming several hosts may
//! reach another server, and a database renamed to the name it gives is
//! another; such a connection is refused, and the uses that need it fail.
//! (It cannot tell two servers of one cluster's history apart — a standby
//! promoted while its old primary still runs, a copy restored from a
//! physical backup — which share both: keeping one primary is the
//! cluster manager's part.) Host code is handed the client itself (in
//! `with_client`) and `commit_request`'s transaction, and may put one of
//! its own in their place: `commit_request` ends the host's transaction
//! with a statement that fails it, before its commit, unless it runs on
//! the writer's server (whose log its flush must reach) and database, and
//! a pooled client found elsewhere then is replaced by a new connection of
//! the host's connection string. Until then such a client is lent as it
//! is: `with_client` does not ask where its client is when the closure
//! returns (a round trip per call), so host SQL after a swap runs wherever
//! the swapped-in client reaches, and the first `commit_request` on it
//! fails, writing nothing there. A
//! transaction host code leaves open in [`with_client`](PgStore::with_client)
//! is rolled back when the closure returns (one more round trip per call).
//!
//! A server that restarts inside a request scope fails the request. The
//! keys a scope makes (and the lookup tokens it notes), and in
//! `commit_request` its events, are committed without waiting for the
//! disk, and the scope's one durable commit flushes them; a server that
//! crashes (or a standby promoted) in between loses them, and the
//! connections are then opened again on the server that came back — same
//! system identifier, same database — whose flush would succeed without
//! them. So the store counts the connections it opens again, and each
//! custodian's scope notes the count as it begins (a seal with a key
//! another thread's scope made, not yet flushed, relies on that write
//! too): if it moved by the scope's durable commit (`commit_request`:
//! checked before the host's write commits; a scope: once its commit
//! returned), the request fails and nothing of it leaves, and the
//! custodian forgets the keys and noted tokens it cached, which may be
//! among the lost. An audit sink whose writer's connection was opened
//! again after a batch that did not wait for the disk fails its next batch
//! and begins a new stream, so the verifier never meets a gap in one; it
//! signs the old stream only as far as it was written durably, and refuses
//! to sign a checkpoint over such a batch. What this costs: a connection
//! opened again for another cause (an idle timeout, `pg_terminate_backend`)
//! fails the requests in flight, and a sink's next batch once. Still open:
//! a use outside any scope that seals, after the crash, with a key another
//! thread's scope made and the crash lost (cached) is audited by a durable
//! commit on the server that came back, and returns its envelope.
//!
//! # Host SQL and the store's tables
//!
//! Host code given a client runs as the role the store connected as, which
//! owns the `pp_*` tables: it has the database operator's power over them
//! (actor A2 — edit, delete, put back rows; the verifier and the freshness
//! anchor are what catch that), and code it attaches to them (a trigger, a
//! rule) runs inside the store's own statements, in the store's sessions,
//! where it can do the same: delete a batch's rows at its commit, or make
//! that commit one that does not wait for the disk, which a crash then
//! loses — entries after the last checkpoint, as the operator can delete.
//! The store keeps what its statements mean from depending on what such
//! code leaves on a session where that is cheap: the key store's
//! transactions name their isolation, the statements call the catalog's
//! functions by name, and each connection's `search_path` is pinned when it
//! opens. A host that wants none of this connects the store as a role of
//! its own and gives host code another ([`PgStore::connect_with_host`]),
//! granted nothing on the `pp_*` tables: then host SQL can neither change
//! them nor attach code to them.
//!
//! ```no_run
//! use privacy_pledge::store::postgres::PgStore;
//! use privacy_pledge::crypto::Keyring;
//! use privacy_pledge::Custodian;
//! use std::sync::Arc;
//!
//! let keyring = Arc::new(Keyring::generate()?);
//! let store = PgStore::connect("host=127.0.0.1 user=shop dbname=shop")?;
//! let custodian = Custodian::builder()
//!     .keyring(keyring.clone())
//!     .key_store(store.key_store())
//!     .consent_store(store.consent_store())
//!     .audit(store.audit_sink(keyring.audit_key())?)
//!     .build()?;
//! # drop(custodian);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};

pub use postgres;
use postgres::types::Type;
use postgres::{Client, NoTls};

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
const MIGRATIONS: [&str; 5] = [
    "
CREATE TABLE pp_audit_log (
    id      BIGSERIAL PRIMARY KEY,
    stream  TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    time    BIGINT NOT NULL,
    subject TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    event   TEXT   NOT NULL,
    UNIQUE (stream, seq)
);
CREATE INDEX pp_audit_log_subject ON pp_audit_log (subject);
CREATE TABLE pp_subject_keys (
    subject     TEXT   NOT NULL,
    generation  BIGINT NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped     BYTEA  NOT NULL,
    uses        BIGINT NOT NULL,
    PRIMARY KEY (subject, generation)
);
CREATE TABLE pp_erased_subjects (
    subject   TEXT   PRIMARY KEY,
    erased_at BIGINT NOT NULL
);
CREATE TABLE pp_subject_pseudonyms (
    subject   TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    PRIMARY KEY (subject, pseudonym)
);
",
    "
CREATE TABLE pp_checkpoints (
    stream     TEXT   PRIMARY KEY,
    seq        BIGINT NOT NULL,
    checkpoint TEXT   NOT NULL
);
",
    "
CREATE TABLE pp_consents (
    subject TEXT   NOT NULL,
    purpose TEXT   NOT NULL,
    version BIGINT NOT NULL,
    record  TEXT   NOT NULL,
    PRIMARY KEY (subject, purpose)
);
",
    "
CREATE TABLE pp_kek_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    floor      BIGINT  NOT NULL,
    claimed    BIGINT  NOT NULL,
    claimed_at BIGINT,
    renewed_at BIGINT
);
INSERT INTO pp_kek_state (id, floor, claimed) VALUES (1, 0, 0);
CREATE INDEX pp_subject_keys_kek_version ON pp_subject_keys (kek_version);
",
    "
CREATE TABLE pp_commit_marks (
    slot INTEGER PRIMARY KEY,
    n    BIGINT  NOT NULL
);
",
];

/// The commit mark as a statement of its own, and so a transaction of its
/// own (an implicit one): it writes the mark ([`COMMIT_MARK`]) and commits
/// waiting for the disk, whatever `synchronous_commit` the session was
/// left with (`set_config(…, true)` is `SET LOCAL`, read at the commit
/// that ends the statement). It writes no table, so no trigger (deferred
/// or not) runs in it. The write-ahead log is flushed in order, so this
/// flush makes every commit earlier on the log, made without a flush,
/// durable too.
macro_rules! mark_and_commit {
    () => {
        "SELECT pg_catalog.set_config('synchronous_commit', 'on', true), \
         pg_catalog.pg_logical_emit_message(true, 'privacy-pledge', 'commit')"
    };
}

/// See [`mark_and_commit!`].
const MARK_AND_COMMIT: &str = mark_and_commit!();

/// The end of `commit_request`'s host transaction, in one round trip: the
/// host's transaction commits without waiting for the disk, then
/// [`MARK_AND_COMMIT`], a transaction of its own after it, flushes the log
/// past both it and the scope's commit. The durable commit is not the
/// host's: whatever host code set for it, or deferred to run at its COMMIT
/// (a trigger may `SET LOCAL synchronous_commit = off` there), ends with
/// it (see [`commit_durably`]).
const COMMIT_THEN_MARK: &str = concat!(
    "SET LOCAL synchronous_commit = off; COMMIT; ",
    mark_and_commit!()
);

/// [`COMMIT_THEN_MARK`] after a statement that fails — and so aborts the
/// host's transaction and skips the rest — unless the transaction runs on
/// the server (by its system identifier) and in the database (by its OID)
/// the store's writer reached ([`Reached`]). Host code is handed the
/// transaction itself (`&mut Transaction`), and the client in
/// `with_client`: it can put one of a client of its own in their place.
/// The commit and its flush must still be on the server whose log the
/// scope's commits went to (one log for all its databases), and a client
/// found in another database is replaced like one on another server (see
/// [`PgStore::commit_request`]), or none of it happens. The check costs the
/// round trip about 30 µs of the server's time on the machine the benches
/// ran on (`pgbench` against `SELECT 1`).
///
/// The expected values go in as quoted literals cast by name: a negative
/// identifier written as a number (`-15…`) would be read as the unary `-`
/// operator applied to it, which the host session's `search_path` resolves,
/// and host code may have put a `-` of its own first there.
fn commit_then_mark_on(writer: Reached) -> String {
    format!("{}; {COMMIT_THEN_MARK}", on_the_writers(writer))
}

/// The statement of [`commit_then_mark_on`] that fails unless it runs on
/// the server and in the database `writer` names.
fn on_the_writers((server, database): Reached) -> String {
    format!(
        "SELECT CAST(CASE WHEN (pg_catalog.pg_control_system()).system_identifier \
         OPERATOR(pg_catalog.=) CAST('{server}' AS pg_catalog.int8) \
         AND (SELECT oid FROM pg_catalog.pg_database \
              WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
             OPERATOR(pg_catalog.=) CAST('{database}' AS pg_catalog.oid) THEN '1' \
         ELSE 'commit_request: the transaction is on another server or database than the store''s' \
         END AS pg_catalog.int4)"
    )
}

/// How the store's own transactions begin: read committed by name, not by
/// the session's default, which code the host runs in the store's session
/// (a trigger on a `pp_*` table, `set_config(…, false)`) may have changed.
/// The key store's per-subject lock serialises its read-then-writes only
/// if each statement after the lock sees what committed before it.
const BEGIN_READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// Commits `tx` durably with `commit_then_mark` ([`COMMIT_THEN_MARK`],
/// [`commit_then_mark_on`]). On `Err`, `tx` is dropped, which rolls back
/// what is still open on the server (the write, or the mark's
/// transaction).
fn commit_durably(
    mut tx: postgres::Transaction<'_>,
    commit_then_mark: &str,
) -> Result<(), postgres::Error> {
    tx.batch_execute(commit_then_mark)?;
    // Ended on the server: dropping the client's handle would send a
    // ROLLBACK and wait for its warning.
    std::mem::forget(tx);
    Ok(())
}

/// [`MARK_AND_COMMIT`] on `client`; on `Err` the mark's transaction is
/// rolled back, so the connection is left outside any.
fn mark(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(MARK_AND_COMMIT).inspect_err(|_| {
        let _ = client.batch_execute("ROLLBACK");
    })
}

/// The commit mark: a transactional message in the write-ahead log (which
/// nothing of the crate's reads; a logical decoding client sees it under
/// the prefix `privacy-pledge`). PostgreSQL flushes the log at a commit
/// only if the transaction wrote to it — an id alone (`txid_current()`)
/// commits without a flush — and the message is such a write, whatever
/// else the transaction wrote or did not.
///
/// It names no table, so neither a trigger (of the operator's) nor a
/// temporary table or `search_path` can turn it into a write that commits
/// without a flush: `pg_catalog` is named, and only a superuser can create a function
/// there. The role needs `EXECUTE` on the function, which PostgreSQL grants
/// to everyone by default; [`PgStore::connect`] checks it.
const COMMIT_MARK: &str =
    "SELECT pg_catalog.pg_logical_emit_message(true, 'privacy-pledge', 'commit');";

/// Fails unless the role may write the commit mark (see [`COMMIT_MARK`]),
/// tried in a transaction that is rolled back.
fn check_commit_mark(client: &mut Client) -> Result<(), StoreError> {
    let tried = client
        .transaction()
        .and_then(|mut tx| tx.batch_execute(COMMIT_MARK).and_then(|()| tx.rollback()));
    tried.map_err(|e| {
        let cause = db_message(&e);
        StoreError::Database(format!(
            "the role cannot write the commit mark that makes commit_request durable \
             (GRANT EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) \
             TO the role): {cause}"
        ))
    })
}

/// The statements that keep a signed checkpoint in `pp_checkpoints`, in one
/// round trip and one (implicit) transaction: the upsert, then the commit
/// mark ([`COMMIT_MARK`]), committed with a flush.
///
/// The upsert leaves the row alone when the table already holds a later
/// checkpoint (one the operator planted). It still locks that row, which
/// PostgreSQL logs, so the commit would flush anyway; the mark makes the
/// flush not hang on that detail (a transaction that writes nothing
/// commits without one): the events up to the checkpoint are on disk
/// before it leaves the database. The values go in as [`Literal`]s (hex
/// digits only) and the sequence number as digits.
fn keep_checkpoint(schema: &str, stream: &str, seq: i64, json: &str) -> String {
    let mut sql = format!(
        "SELECT pg_catalog.set_config('synchronous_commit', 'on', true);
         INSERT INTO {schema}.pp_checkpoints AS kept (stream, seq, checkpoint) VALUES ("
    );
    Literal::text(&mut sql, stream);
    sql.push_str(&format!(", {seq}, "));
    Literal::text(&mut sql, json);
    sql.push_str(
        ") ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint
             WHERE excluded.seq > kept.seq;
         ",
    );
    sql.push_str(COMMIT_MARK);
    sql
}

/// Which server and database a connection reaches: the cluster's system
/// identifier (a standby promoted in a failover keeps its primary's) and
/// the database's OID (a database renamed to the name the connection
/// string gives has another).
type Reached = (i64, u32);

/// The query of [`Reached`]: every name in it is the catalog's.
const REACHED: &str = "SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()),
    (SELECT oid FROM pg_catalog.pg_database
     WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())";

/// The server and database `client` is connected to.
fn server_and_database(client: &mut Client) -> Result<Reached, StoreError> {
    let row = client.query_one(REACHED, &[]).map_err(|e| {
        StoreError::Database(format!(
            "which server and database a connection reaches: {} (the role needs EXECUTE \
             on pg_catalog.pg_control_system(), which PostgreSQL grants to every role by default)",
            db_message(&e)
        ))
    })?;
    Ok((
        row.try_get(0).map_err(db_err)?,
        row.try_get(1).map_err(db_err)?,
    ))
}

/// `client`, if it reaches the server and database `expected` (the
/// store's writer's when it connected); otherwise an error.
fn reaching(mut client: Client, expected: Reached) -> Result<Client, StoreError> {
    if server_and_database(&mut client)? == expected {
        Ok(client)
    } else {
        Err(StoreError::Database(
            "a connection reaches another server or database than the store's writer".into(),
        ))
    }
}

/// The schema that holds the store's tables, quoted for SQL (asked on a
/// connection of the store's own, right after the migrations).
fn tables_schema(client: &mut Client) -> Result<String, StoreError> {
    client
        .query_one(
            "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = 'pp_schema'::regclass",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(db_err)
}

/// The schema version this crate writes (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock key migrations run under.
const MIGRATION_LOCK: i64 = 0x7070_5f73_6368_656d;

/// The server's message and SQLSTATE (never its `DETAIL`, which may quote
/// row contents), or the client's own description.
pub(crate) fn db_err(e: postgres::Error) -> StoreError {
    StoreError::Database(db_message(&e))
}

/// What [`db_err`] says of `e`.
fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// PostgreSQL connections shared by the audit sinks, the key store, the
/// consent store and the host's own statements: the writer's own and a pool
/// (see [Connections](self#connections)). Cheap to clone (the clones share
/// the connections).
#[derive(Clone)]
pub struct PgStore {
    conns: Arc<Conns<Client>>,
    /// The schema that holds the store's tables, quoted for SQL.
    schema: Arc<str>,
    /// How to open a connection again (see [`Reconnect`]).
    reconnect: Arc<Reconnect>,
    /// How `commit_request` ends the host's transaction
    /// ([`commit_then_mark_on`] the writer's server and database).
    host_commit: Arc<str>,
}

/// What the store needs to replace a connection the server closed (a
/// restart, a failover, `pg_terminate_backend`, an idle timeout): without
/// it, every audited use would fail until the process restarted. A closed
/// client is replaced when it is next taken, set up as the original was.
struct Reconnect {
    /// The connection string (it may hold a password).
    params: secrecy::SecretString,
    /// The host's connections' string (see [`PgStore::connect_with_host`]).
    host_params: secrecy::SecretString,
    /// The read-only store's connection is read-only again.
    read_only: bool,
    /// The server and database the store connected to: a connection
    /// opened again must reach them (a connection string naming several
    /// hosts may reach another after a failover; a database renamed to the
    /// name it gives is another). `None` for a read-only store, which has
    /// one connection and nothing to compare it with.
    reached: Option<Reached>,
    /// Bumped each time the writer's connection is replaced: statements a
    /// sink prepared on the one before are prepared anew.
    writer_epoch: std::sync::atomic::AtomicU64,
    /// Bumped each time any of the store's connections is opened again: a
    /// request that wrote without waiting for the disk fails if it moved
    /// before the request's durable commit (see
    /// `request::deferred_writes_kept`).
    reopened: crate::request::Reopened,
}

impl Reconnect {
    fn new(
        params: &str,
        host_params: &str,
        read_only: bool,
        reached: Option<Reached>,
    ) -> Arc<Self> {
        Arc::new(Reconnect {
            params: params.to_owned().into(),
            host_params: host_params.to_owned().into(),
            read_only,
            reached,
            writer_epoch: std::sync::atomic::AtomicU64::new(0),
            reopened: crate::request::Reopened::default(),
        })
    }

    /// Replaces `client` if the server closed it: a connection of the
    /// store's own (`own`: set up and prepared as at the start) or the
    /// host's. If the server is still away, the closed client stays and its
    /// user gets the error; the next taker tries again.
    fn revive(&self, client: &mut Client, own: bool) -> bool {
        client.is_closed() && self.reopen(client, own)
    }

    /// Replaces `client` with a new connection of the store's own (`own`)
    /// or the host's, set up as at the start, if one can be opened that
    /// reaches the store's server and database; otherwise leaves it.
    fn reopen(&self, client: &mut Client, own: bool) -> bool {
        use secrecy::ExposeSecret;
        let params = self.params.expose_secret();
        let fresh = if self.read_only {
            read_only_connection(params)
        } else if own {
            own_connection(params)
                .and_then(|mut c| Named::prepare_all(&mut c).map(|()| c).map_err(db_err))
        } else {
            Client::connect(self.host_params.expose_secret(), NoTls).map_err(db_err)
        };
        let fresh = match self.reached {
            Some(reached) => fresh.and_then(|c| reaching(c, reached)),
            None => fresh,
        };
        match fresh {
            Ok(c) => {
                *client = c;
                self.reopened
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                true
            }
            Err(_) => false,
        }
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgStore")
    }
}

impl PgStore {
    /// Connects (`host=… user=… dbname=…` or a `postgresql://` URL, no TLS:
    /// loopback or a private network; put TLS in front otherwise) and brings
    /// the tables up to date, with the default [`PoolOptions`]: the writer's
    /// connection and a pool of 4.
    ///
    /// Fails, naming the `GRANT`, if the role may not execute
    /// `pg_catalog.pg_logical_emit_message` (granted to everyone by
    /// default): the commits that must reach the disk write their mark with
    /// it (see the [module docs](self)).
    pub fn connect(params: &str) -> Result<Self, StoreError> {
        Self::connect_with(params, PoolOptions::default())
    }

    /// Connects as [`connect`](Self::connect) does, with the audit writer's
    /// connection and a pool of `options.pool_size` connections for
    /// everything else.
    ///
    /// ```no_run
    /// use privacy_pledge::store::postgres::PgStore;
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// let store = PgStore::connect_with(
    ///     "host=127.0.0.1 user=shop dbname=shop",
    ///     PoolOptions::new().pool_size(8),
    /// )?;
    /// assert_eq!(store.pool_size(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_with(params: &str, options: PoolOptions) -> Result<Self, StoreError> {
        Self::connect_pools(params, params, options)
    }

    /// Connects as [`connect_with`](Self::connect_with) does, but the
    /// connections host code is given — [`with_client`](Self::with_client)'s
    /// and [`commit_request`](Self::commit_request)'s — connect with
    /// `host_params`: as another role, of the same database on the same
    /// server (checked; the one durable commit of `commit_request` flushes
    /// one server's log).
    ///
    /// Why: the role the store connects as owns the `pp_*` tables, and host
    /// SQL running as that role has the database operator's power over them
    /// (see [Host SQL and the store's tables](self#host-sql-and-the-stores-tables)).
    /// A host role that is granted nothing on them cannot read, change or
    /// attach code to them. Give it only what the host's own tables need.
    ///
    /// ```no_run
    /// use privacy_pledge::store::postgres::PgStore;
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// let store = PgStore::connect_with_host(
    ///     "host=127.0.0.1 user=shop_audit dbname=shop",
    ///     "host=127.0.0.1 user=shop dbname=shop",
    ///     PoolOptions::new(),
    /// )?;
    /// // Host SQL runs as `shop`, which owns none of the store's tables.
    /// store.with_client(|c| c.batch_execute("SELECT 1"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Fails if the two connect to different servers or databases, if the
    /// host's role may not write the commit mark (see
    /// [`connect`](Self::connect)), or if a store table in the store's
    /// schema is not the store role's own (one the host made first, in a
    /// schema of its own that the search path finds before the store's:
    /// its triggers would run with the store's rights).
    pub fn connect_with_host(
        params: &str,
        host_params: &str,
        options: PoolOptions,
    ) -> Result<Self, StoreError> {
        Self::connect_pools(params, host_params, options)
    }

    /// The writer's connection and the two pools: the store's own with
    /// `params`, the host's with `host_params`.
    fn connect_pools(
        params: &str,
        host_params: &str,
        options: PoolOptions,
    ) -> Result<Self, StoreError> {
        let mut writer = own_connection(params)?;
        // With host code on a role of its own, the store's tables must be
        // the store's role's: checked before the migrations touch a table,
        // and after they made them.
        let split = host_params != params;
        if split {
            check_owned(&mut writer)?;
        }
        migrate(&mut writer)?;
        if split {
            check_owned(&mut writer)?;
        }
        check_commit_mark(&mut writer)?;
        // Every connection reaches the writer's server and database: with
        // several hosts in a connection string, each may reach another;
        // and `commit_request`'s durable commit on a host connection must
        // flush the log the store's own commits went to.
        let reached = server_and_database(&mut writer)?;
        let host_commit = commit_then_mark_on(reached);
        // The store's own connections prepare the key store's statements
        // at once (see `Named`); the host's prepare nothing of the store's.
        let pool = |own: bool| {
            (0..options.size())
                .map(|_| {
                    let connected = if own {
                        own_connection(params)?
                    } else {
                        Client::connect(host_params, NoTls).map_err(db_err)?
                    };
                    let mut client = reaching(connected, reached)?;
                    if own {
                        Named::prepare_all(&mut client).map_err(db_err)?;
                    }
                    Ok::<_, StoreError>(client)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|conns| Pool::new(conns, reset, options.timeout()))
        };
        let schema = tables_schema(&mut writer)?;
        let host = pool(false)?;
        if host_params != params {
            let mut client = host.get(false).map_err(StoreError::from)?;
            check_commit_mark(&mut client)?;
        }
        let store = PgStore {
            schema: schema.into(),
            conns: Arc::new(Conns::pooled(writer, pool(true)?, host)),
            reconnect: Reconnect::new(params, host_params, false, Some(reached)),
            host_commit: host_commit.into(),
        };
        crate::request::register_reopened(store.database_id(), &store.reconnect.reopened);
        Ok(store)
    }

    /// How many connections each of the store's two pools holds — the
    /// store's own and the host's ([Connections](self#connections)) —
    /// besides the audit writer's own: 1 for a read-only store (which has
    /// one connection for everything).
    ///
    /// ```no_run
    /// use privacy_pledge::store::postgres::PgStore;
    ///
    /// let store = PgStore::connect("host=127.0.0.1 user=shop dbname=shop")?;
    /// assert_eq!(store.pool_size(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_size(&self) -> usize {
        self.conns.pool_size()
    }

    /// Whether the audit writer has a connection of its own (false for a
    /// read-only store).
    ///
    /// ```no_run
    /// use privacy_pledge::store::postgres::PgStore;
    ///
    /// let store = PgStore::connect("host=127.0.0.1 user=shop dbname=shop")?;
    /// assert!(store.has_writer_connection());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_writer_connection(&self) -> bool {
        self.conns.has_writer()
    }

    /// Connects **read-only**, for verifiers: every transaction of the
    /// session is read-only, no migration runs, and a database without the
    /// store's tables is an error.
    pub fn connect_read_only(params: &str) -> Result<Self, StoreError> {
        let mut client = read_only_connection(params)?;
        let found = schema_version(&mut client)?;
        if found == 0 {
            return Err(StoreError::Database(
                "the database holds no privacy-pledge tables".into(),
            ));
        }
        let schema = tables_schema(&mut client)?;
        Ok(PgStore {
            schema: schema.into(),
            conns: Arc::new(Conns::single(
                client,
                reset,
                PoolOptions::default().timeout(),
            )),
            reconnect: Reconnect::new(params, params, true, None),
            host_commit: COMMIT_THEN_MARK.into(),
        })
    }

    /// Which database this store is (see [`crate::request::DatabaseId`]).
    fn database_id(&self) -> crate::request::DatabaseId {
        crate::request::DatabaseId::of(&self.conns)
    }

    /// The connections' address: which store's connection a thread holds
    /// inside [`with_client`](Self::with_client).
    fn id(&self) -> usize {
        Arc::as_ptr(&self.conns) as *const () as usize
    }

    /// A pooled client, or `Err` on a thread that holds one of this store's
    /// already inside [`with_client`](Self::with_client): waiting there could
    /// never end (the pool may be down to the one the thread holds).
    fn lock(&self) -> Result<Conn<'_, Client>, Unavailable> {
        super::not_held(self.id())?;
        let mut conn = self.conns.get()?;
        self.reconnect.revive(&mut conn, true);
        Ok(conn)
    }

    /// A connection of the host's pool, for `commit_request`'s transaction
    /// (refused inside [`with_client`](Self::with_client) like [`lock`](Self::lock)).
    fn host(&self) -> Result<Conn<'_, Client>, Unavailable> {
        super::not_held(self.id())?;
        let mut conn = self.conns.host(false)?;
        self.reconnect.revive(&mut conn, false);
        Ok(conn)
    }

    /// The audit writer's client (refused inside `with_client` like
    /// [`lock`](Self::lock)).
    fn writer(&self) -> Result<Conn<'_, Client>, Unavailable> {
        super::not_held(self.id())?;
        let mut conn = self.conns.writer()?;
        if self.reconnect.revive(&mut conn, true) {
            self.reconnect
                .writer_epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(conn)
    }

    /// Runs `f` with a client from the store's pool (see
    /// [Connections](self#connections)), for the host's own statements;
    /// while `f` runs, other threads' audit commits go on, on the writer's
    /// own connection.
    ///
    /// `f` must not use the custodian's audit sink, key store and consent
    /// store on this store, nor this store (the pool may be down to the
    /// client `f` holds): a custodian operation inside `f` is refused with
    /// [`Error::Reentrant`](crate::Error::Reentrant), and a method of this
    /// store with an error saying so, instead of waiting for the connection
    /// forever (as [`SqliteStore::with_connection`](crate::store::sqlite::SqliteStore::with_connection)
    /// with the `sqlite` feature). A transaction `f` opens should end in
    /// `f` (use [`Client::transaction`], which rolls back when dropped): the
    /// client goes back to the pool as `f` leaves it, and the next call may
    /// get another one.
    ///
    /// ```no_run
    /// use privacy_pledge::store::postgres::PgStore;
    /// use privacy_pledge::SubjectId;
    ///
    /// let store = PgStore::connect("host=127.0.0.1 user=shop dbname=shop")?;
    /// let ada = SubjectId::random();
    /// store.with_client(|c| c.execute("INSERT INTO subscribers VALUES ($1)", &[&ada]))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If called inside `with_client` of the same store on the same thread,
    /// which would otherwise wait for itself forever; or in a child process
    /// forked after the store was opened, whose connections are its
    /// parent's ([`StoreError::Forked`] from every other call).
    pub fn with_client<R>(&self, f: impl FnOnce(&mut Client) -> R) -> R {
        self.try_with_client(f)
            .unwrap_or_else(|e| panic!("with_client: {e}"))
    }

    /// [`with_client`](Self::with_client), with a forked child's refusal as
    /// [`StoreError::Forked`] instead of a panic: for the methods of
    /// [`Store`](super::Store), which return a `StoreError`.
    pub(crate) fn try_with_client<R>(
        &self,
        f: impl FnOnce(&mut Client) -> R,
    ) -> Result<R, StoreError> {
        // The host's own call waits for as long as it takes.
        super::not_held(self.id())
            .expect("with_client called inside with_client of the same store");
        // Waited for without a timeout: only a forked child is refused.
        let mut client = self.conns.host(true)?;
        self.reconnect.revive(&mut client, false);
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::hold(self.id(), || f(&mut client))
        }));
        // `f` forked, and this is the child: nothing more on the parent's
        // session (see `pool`'s "Fork").
        if let Err(forked) = self.conns.same_process() {
            return match out {
                Ok(_) => Err(forked.into()),
                Err(payload) => std::panic::resume_unwind(payload),
            };
        }
        // A transaction `f` began and did not end (a `BEGIN` in a batch)
        // is rolled back — also when `f` panicked, which a host may catch
        // and go on — as the SQLite store's pool does: left open, the
        // connection's next user would write into it (a `commit_request`
        // would commit it), seen by no other session, or meet its aborted
        // state. (With none open the server answers with a warning.)
        let _ = client.batch_execute("ROLLBACK");
        Ok(out.unwrap_or_else(|payload| std::panic::resume_unwind(payload)))
    }

    /// One request in one durable commit: runs `f` as a [request
    /// scope](crate::Custodian::request) of `custodian`, then `write` — the
    /// host's own rows, made from `f`'s result — in one transaction on this
    /// store, and returns the result once that transaction is durable.
    ///
    /// If `custodian`'s audit sink is this store's, the scope's events are
    /// committed first with `synchronous_commit = off`, and so are the new
    /// keys and lookup tokens its key store notes meanwhile
    /// ([`DatabaseId`](crate::request::DatabaseId)), and so is `write`'s
    /// transaction; then, in the same round trip, one small transaction of
    /// the store's own (the commit mark) commits waiting for the disk: the
    /// write-ahead log is flushed in order, up to that record, past all of
    /// theirs, so one flush makes them all durable — whatever `write` set
    /// on its connection or left to run at its commit. Still
    /// "recorded before it happens" (R10): every event is committed before
    /// the host's rows are written, and nothing `f` made leaves the call
    /// before the durable commit; a signed checkpoint due at the scope's
    /// events is saved only after it. The argument is
    /// [`SqliteStore::commit_request`](crate::store::sqlite::SqliteStore::commit_request)'s.
    ///
    /// If `write` fails, the result is dropped and the host gets `write`'s
    /// own error, after the same durable commit, made on a connection of
    /// the store's own (the error may carry what `f` made); the scope's
    /// events stay recorded. If `f` fails, the scope
    /// commits durably on its own before its error is returned. A custodian
    /// call from `write` is refused ([`Error::Reentrant`](crate::Error::Reentrant)).
    ///
    /// ```no_run
    /// use privacy_pledge::store::postgres::PgStore;
    /// # fn sign_up(custodian: &privacy_pledge::Custodian, store: &PgStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let ada = custodian.new_subject()?; // a sign-up: a new id
    /// let sealed = store.commit_request(
    ///     custodian,
    ///     || -> Result<_, Box<dyn std::error::Error>> {
    ///         let email = custodian.collect::<_, privacy_pledge::purpose::Transaction>(
    ///             ada,
    ///             privacy_pledge::data::EmailAddress::parse("ada@example.com")?,
    ///         )?;
    ///         Ok(custodian.seal(&email)?)
    ///     },
    ///     |tx, sealed| {
    ///         tx.execute("INSERT INTO customers VALUES ($1, $2)", &[&ada, sealed])?;
    ///         Ok(())
    ///     },
    /// )?;
    /// # drop(sealed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn commit_request<T, E>(
        &self,
        custodian: &crate::Custodian,
        f: impl FnOnce() -> Result<T, E>,
        write: impl FnOnce(&mut postgres::Transaction<'_>, &T) -> Result<(), E>,
    ) -> Result<T, E>
    where
        E: From<crate::Error> + From<StoreError>,
    {
        let reopened = self.reopened();
        custodian.request_then(self.database_id(), f, |value| {
            let kept =
                crate::request::deferred_writes_kept(custodian.id) && self.reopened() == reopened;
            // On a connection of the store's own: the host's may be what
            // failed.
            super::durable_before_error(
                || self.host_write((kept, reopened), value, write),
                || self.durable_mark(),
            )
        })
    }

    /// `commit_request`'s host transaction: `write`, then
    /// [`COMMIT_THEN_MARK`], which ends it and makes it durable.
    ///
    /// `kept`: whether the scope's commits that did not wait for the disk
    /// were made on connections the store still had when it closed, and
    /// how many times its connections had been opened again before the
    /// request began (see `request::deferred_writes_kept`).
    fn host_write<T, E>(
        &self,
        (kept, reopened): (bool, u64),
        value: &T,
        write: impl FnOnce(&mut postgres::Transaction<'_>, &T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<crate::Error> + From<StoreError>,
    {
        let mut client = self.host().map_err(StoreError::from)?;
        let committed = {
            let tx = client.transaction().map_err(db_err)?;
            // `write` may fork: the child commits nothing (see `pool`'s "Fork").
            let (tx, written) = super::host_code(
                tx,
                || self.conns.same_process(),
                |tx| super::hold(self.id(), || write(tx, value)),
            )
            .map_err(StoreError::from)?;
            written?;
            // The scope's events, and any key it made, were committed
            // without waiting for the disk, for this commit's flush to make
            // durable. A server that crashed (or a standby promoted) since
            // lost them, and a connection that reaches the server that came
            // back — the same system identifier and database — would flush
            // its log without them: a connection opened again since the
            // request began (this one, when taken above, included) fails
            // the request instead, before the host's write commits. A
            // restart after this point closes this connection, and the
            // commit fails.
            if !kept || self.reopened() != reopened {
                drop(tx);
                return Err(StoreError::Database(
                    "commit_request: the store's connections were opened again during the \
                     request (a server restart or failover?): what it wrote without waiting \
                     for the disk may be lost, so the host's write is not committed"
                        .into(),
                )
                .into());
            }
            commit_durably(tx, &self.host_commit)
        };
        committed.map_err(|e| {
            // A client host code put in the pool's place (in `with_client`)
            // that reaches another server or database fails every commit
            // here: it is replaced, and the next request gets a connection
            // of the host's connection string.
            let elsewhere = self.reconnect.reached.is_some_and(|expected| {
                server_and_database(&mut client).map_or(true, |found| found != expected)
            });
            if elsewhere {
                self.reconnect.reopen(&mut client, false);
            }
            db_err(e)
        })?;
        Ok(())
    }

    /// How many times the store's connections were opened again.
    fn reopened(&self) -> u64 {
        self.reconnect
            .reopened
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`MARK_AND_COMMIT`] on a connection of the store's own.
    fn durable_mark(&self) -> Result<(), StoreError> {
        mark(&mut *self.lock()?).map_err(db_err)
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema_version(&mut *self.lock()?)
    }

    /// The key store over `pp_subject_keys`.
    pub fn key_store(&self) -> PgKeyStore {
        PgKeyStore {
            store: self.clone(),
        }
    }

    /// The consent store over `pp_consents`.
    pub fn consent_store(&self) -> PgConsentStore {
        PgConsentStore {
            store: self.clone(),
        }
    }

    /// An audit sink that chains events in a fresh stream of its own under
    /// `key` and commits concurrent events together (see [`AuditStreamSink`]).
    pub fn audit_sink(&self, key: AuditKey) -> Result<PgAuditSink, StoreError> {
        AuditStreamSink::new(
            PgBatchWriter {
                store: self.clone(),
                prepared: Arc::default(),
                unflushed: Arc::new(std::sync::atomic::AtomicU64::new(NOTHING_UNFLUSHED)),
                lost: Arc::default(),
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

    /// Every entry of `pp_audit_log`, in append order; a row whose query
    /// columns disagree with its authenticated event is an error naming it.
    pub fn trail(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self
            .lock()?
            .query(
                "SELECT id, stream, seq, time, subject, action, event FROM pp_audit_log ORDER BY id",
                &[],
            )
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let stored = (|| {
                Ok((
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                    row.try_get(5)?,
                ))
            })()
            .map_err(db_err)?;
            let (id, event) = (row.try_get(0), row.try_get(6));
            let event = read_row(id.map_err(db_err)?, event.map_err(db_err)?, stored)?;
            out.push(event);
        }
        Ok(out)
    }

    /// Archives the oldest segment of a stream: writes its entries up to
    /// `up_to` (a signed checkpoint, verified under `key`) to `out` as JSON
    /// lines, in order, then deletes them from `pp_audit_log`, in one
    /// transaction (nothing is deleted unless every line was written).
    /// Returns how many entries moved.
    ///
    /// The segment must be whole: every entry from the stream's first
    /// (seq 1) up to `up_to`'s head, linked and unaltered; one that is not is
    /// refused and nothing moves. For a stream archived before:
    /// [`archive_after`](Self::archive_after).
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
    /// against it. The same as
    /// [`SqliteStore::archive`](crate::store::sqlite::SqliteStore::archive)
    /// where both features are on.
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
        let mut client = self.lock()?;
        let mut tx = client.transaction().map_err(db_err)?;
        let rows: Vec<(i64, String)> = tx
            .query(
                "SELECT seq, event FROM pp_audit_log WHERE stream = $1 AND seq <= $2 \
                 ORDER BY seq FOR UPDATE",
                &[stream, &seq],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()
            .map_err(db_err)?;
        let moved = segment.write(&rows, out)?;
        tx.execute(
            "DELETE FROM pp_audit_log WHERE stream = $1 AND seq <= $2",
            &[stream, &seq],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(moved)
    }

    /// The newest signed checkpoint of every stream, as kept in
    /// `pp_checkpoints` (compare with the copies kept outside the database).
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let rows = self
            .lock()?
            .query(
                "SELECT stream, checkpoint FROM pp_checkpoints ORDER BY stream",
                &[],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let json: &str = r.try_get(1).map_err(db_err)?;
                serde_json::from_str(json).map_err(|_| {
                    StoreError::Database(format!(
                        "pp_checkpoints row for stream {} is malformed",
                        r.try_get::<_, &str>(0).unwrap_or("(unreadable)")
                    ))
                })
            })
            .collect()
    }
}

/// Readies a client returned to the pool: nothing to do (the client's
/// `Transaction` rolls back when dropped, also on panic).
fn reset(_: &mut Client) -> bool {
    true
}

/// A connection for the store's own statements, set up as they assume
/// whatever default the connection string (`options`), the role or the
/// database (`ALTER ROLE/DATABASE … SET`, which host SQL may run) gave it:
/// commits wait for the disk unless they say otherwise
/// (`synchronous_commit = on`), and transactions are read committed — the
/// key store's per-subject lock serialises its read-then-writes only if
/// each statement after the lock sees what committed before it (under
/// repeatable read, an erasure waiting for a new key's insert would not
/// see the key, and leave it).
///
/// And its `search_path` is pinned ([`pin_search_path`]).
fn own_connection(params: &str) -> Result<Client, StoreError> {
    let mut client = Client::connect(params, NoTls).map_err(db_err)?;
    client
        .batch_execute(
            "SET synchronous_commit = on; \
             SET default_transaction_isolation = 'read committed'; \
             SET default_transaction_read_only = off",
        )
        .map_err(db_err)?;
    pin_search_path(&mut client, false)?;
    Ok(client)
}

/// A read-only store's connection: every transaction read-only, and the
/// `search_path` pinned ([`pin_search_path`]).
fn read_only_connection(params: &str) -> Result<Client, StoreError> {
    let mut client = Client::connect(params, NoTls).map_err(db_err)?;
    client
        .batch_execute("SET default_transaction_read_only = on")
        .map_err(db_err)?;
    pin_search_path(&mut client, true)?;
    Ok(client)
}

/// Sets `client`'s `search_path` to the schema of the store's tables, then
/// `pg_temp`, leaving `pg_catalog` out, which PostgreSQL then searches
/// first: an operator or function the host defines with the same argument
/// types as the catalog's (a `public.<(bigint, bigint)`) never stands in
/// for it in the store's statements, whatever path the connection string,
/// role or database set (host SQL may run `ALTER DATABASE … SET
/// search_path = public, pg_catalog`), and a temporary table never for a
/// store table. (A function the host defines for *other* argument types
/// than a polymorphic one of the catalog's can still be the better match:
/// the statements name `pg_catalog` for those.)
///
/// The schema is found in the catalog, not through the path: the one
/// holding a `pp_schema` table the connection's role owns. A schema the
/// host creates named like the store's role (which `"$user"`, first in the
/// default path, would find first) is not taken for it, so the store's
/// statements never reach tables of the host's whose triggers would run
/// with the store's rights. In a database without the store's tables the
/// path's creation schema is used (the migrations create them there); a
/// read-only store's role, which owns none, takes the only `pp_schema`
/// there is. A role owning the tables in two schemas is refused.
fn pin_search_path(client: &mut Client, read_only: bool) -> Result<(), StoreError> {
    let found = client
        .query(
            "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text),
                    c.relowner OPERATOR(pg_catalog.=) r.oid
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace,
                  (SELECT oid FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER) r
             WHERE c.relname OPERATOR(pg_catalog.=) 'pp_schema'::pg_catalog.name
               AND c.relkind OPERATOR(pg_catalog.=) 'r'::pg_catalog.char",
            &[],
        )
        .map_err(db_err)?;
    let schemas = |owned: bool| -> Result<Vec<String>, StoreError> {
        found
            .iter()
            .filter(|row| !owned || row.get::<_, bool>(1))
            .map(|row| row.try_get(0).map_err(db_err))
            .collect()
    };
    let owned = schemas(true)?;
    let all = schemas(false)?;
    let schema = match (owned.as_slice(), all.as_slice()) {
        ([schema], _) => Some(schema.clone()),
        ([], [schema]) if read_only => Some(schema.clone()),
        ([], _) => client
            .query_one(
                "SELECT pg_catalog.quote_ident(pg_catalog.current_schema()::pg_catalog.text)",
                &[],
            )
            .and_then(|row| row.try_get::<_, Option<String>>(0))
            .map_err(db_err)?,
        (owned, _) => {
            return Err(StoreError::Database(format!(
                "the role owns privacy-pledge tables in {} schemas ({}): name one in the \
                 connection's search_path and drop the others",
                owned.len(),
                owned.join(", ")
            )))
        }
    };
    if let Some(schema) = schema {
        // Quoted by `quote_ident`.
        client
            .batch_execute(&format!("SET search_path = {schema}, pg_temp"))
            .map_err(db_err)?;
    }
    Ok(())
}

/// The store's tables, by name.
const TABLES: [&str; 9] = [
    "pp_schema",
    "pp_audit_log",
    "pp_subject_keys",
    "pp_erased_subjects",
    "pp_subject_pseudonyms",
    "pp_checkpoints",
    "pp_consents",
    "pp_kek_state",
    "pp_commit_marks",
];

/// Fails unless every store table in the connection's schema (after
/// [`pin_search_path`] and the migrations) is owned by the connection's
/// role: tables someone else made there first (a schema of the host's that
/// the path found, holding its own `pp_schema`) are never taken for the
/// store's, whose triggers would run with the store's rights. Checked when
/// host code has a role of its own ([`PgStore::connect_with_host`]); on
/// one role, host SQL has the owner's power anyway, and the tables may be
/// another role's that granted the store's role its rights.
fn check_owned(client: &mut Client) -> Result<(), StoreError> {
    let names: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    let others: Vec<String> = client
        .query(
            "SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE n.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema()
               AND c.relname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
               AND c.relowner OPERATOR(pg_catalog.<>) (SELECT oid FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER)",
            &[&names],
        )
        .map_err(db_err)?
        .iter()
        .map(|row| row.try_get(0).map_err(db_err))
        .collect::<Result<_, _>>()?;
    if others.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "the store's tables {} are another role's: refusing to use them",
            others.join(", ")
        )))
    }
}

fn schema_version(client: &mut Client) -> Result<u32, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('pp_schema') IS NOT NULL", &[])
        .and_then(|r| r.try_get(0))
        .map_err(db_err)?;
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = client
        .query_opt("SELECT version FROM pp_schema", &[])
        .map_err(db_err)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db_err)?;
    Ok(v.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX)))
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(db_err)?;
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock($1)",
        &[&MIGRATION_LOCK],
    )
    .map_err(db_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS pp_schema (version BIGINT NOT NULL)")
        .map_err(db_err)?;
    let found: u32 = tx
        .query_opt("SELECT version FROM pp_schema", &[])
        .map_err(db_err)?
        .map(|r| r.try_get::<_, i64>(0))
        .transpose()
        .map_err(db_err)?
        .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX));
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.batch_execute(sql).map_err(db_err)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM pp_schema", &[]).map_err(db_err)?;
        tx.execute(
            "INSERT INTO pp_schema (version) VALUES ($1)",
            &[&i64::from(SCHEMA_VERSION)],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

// ---------------------------------------------------------------------------
// The audit sink

/// The PostgreSQL audit sink: an [`AuditStreamSink`] over `pp_audit_log`.
pub type PgAuditSink = AuditStreamSink<PgBatchWriter>;

/// Writes audit batches into `pp_audit_log` (see [`PgAuditSink`]).
///
/// A batch is one statement (its rows passed as arrays and inserted with
/// `UNNEST`; with a checkpoint, the checkpoint's upsert in the same
/// statement), prepared once per connection: one round trip and one
/// commit, atomic without an explicit transaction.
#[derive(Clone, Debug)]
pub struct PgBatchWriter {
    store: PgStore,
    prepared: Arc<Mutex<Option<Prepared>>>,
    /// The writer's epoch of this sink's last batch committed without
    /// waiting for the disk (`u64::MAX`: none since its last durable one).
    unflushed: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the last batch failed for `unflushed` (see
    /// [`BatchWriter::lost_unflushed`]).
    lost: Arc<std::sync::atomic::AtomicBool>,
}

/// [`PgBatchWriter::unflushed`]'s "none".
const NOTHING_UNFLUSHED: u64 = u64::MAX;

/// The batch statements (rows, or rows and a checkpoint; each durable or
/// deferred), prepared on the store's connection.
#[derive(Debug)]
struct Prepared {
    /// The writer connection's epoch it was prepared on.
    epoch: u64,
    rows: postgres::Statement,
    rows_deferred: postgres::Statement,
    rows_and_checkpoint: postgres::Statement,
    rows_and_checkpoint_deferred: postgres::Statement,
}

impl super::stream_sink::sealed::Sealed for PgBatchWriter {}

const INSERT_ROWS: &str = "INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])";

/// `INSERT_ROWS` committed without waiting for the log to reach the disk:
/// `set_config(…, true)` is `SET LOCAL` for the statement's own (implicit)
/// transaction, evaluated before its commit, so one round trip (see
/// `request::DatabaseId` for why a durable commit follows).
const INSERT_ROWS_DEFERRED: &str = "INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
     SELECT u.* FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]) u,
     (SELECT pg_catalog.set_config('synchronous_commit', 'off', true)) cfg";

/// `INSERT_ROWS` and the checkpoint's upsert as one statement: a
/// data-modifying `WITH` runs exactly once, in the statement's transaction.
const INSERT_ROWS_AND_CHECKPOINT: &str = "WITH rows AS (
     INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]))
     INSERT INTO pp_checkpoints (stream, seq, checkpoint) VALUES ($7, $8, $9)
     ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint
     WHERE excluded.seq > pp_checkpoints.seq";

/// `INSERT_ROWS_AND_CHECKPOINT` committed without waiting for the log to
/// reach the disk, as `INSERT_ROWS_DEFERRED`: in a request whose durable
/// commit follows, the checkpoint leaves the database only after it.
const INSERT_ROWS_AND_CHECKPOINT_DEFERRED: &str = "WITH rows AS (
     INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
     SELECT u.* FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]) u,
     (SELECT pg_catalog.set_config('synchronous_commit', 'off', true)) cfg)
     INSERT INTO pp_checkpoints (stream, seq, checkpoint) VALUES ($7, $8, $9)
     ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint
     WHERE excluded.seq > pp_checkpoints.seq";

fn insert_failed(e: postgres::Error) -> AuditError {
    // Messages name tables and constraints (and at most random ids), never
    // a personal value: events hold none.
    AuditError::new(match db_err(e) {
        StoreError::Database(message) => format!("pp_audit_log insert failed: {message}"),
        other => other.to_string(),
    })
}

fn seq_col(seq: u64) -> Result<i64, AuditError> {
    i64::try_from(seq).map_err(|_| AuditError::new("sequence number out of range"))
}

impl BatchWriter for PgBatchWriter {
    fn database(&self) -> crate::request::DatabaseId {
        self.store.database_id()
    }

    fn write(
        &self,
        rows: &[Row<'_>],
        checkpoint: Option<(&SignedCheckpoint, &str)>,
        durable: bool,
    ) -> Result<(), AuditError> {
        let streams: Vec<&str> = rows.iter().map(Row::stream).collect();
        let seqs: Vec<i64> = rows.iter().map(Row::seq).collect();
        let times: Vec<i64> = rows.iter().map(Row::time).collect();
        let subjects: Vec<&str> = rows.iter().map(Row::subject).collect();
        let actions: Vec<&str> = rows.iter().map(Row::action).collect();
        let events: Vec<&str> = rows.iter().map(Row::json).collect();
        let mut client = self.store.writer()?;
        let epoch = self
            .store
            .reconnect
            .writer_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        // A batch committed without waiting for the disk, then the
        // writer's connection opened again (a server restart, a failover):
        // that batch may be lost, and rows after it would leave a gap in
        // the stream, which the verifier reports as tampering. This batch
        // fails instead, and the sink begins a new stream, which the
        // verifier reads beside the old one. (Opened again for another
        // cause, one batch fails when it need not.)
        let unflushed = self
            .unflushed
            .swap(NOTHING_UNFLUSHED, std::sync::atomic::Ordering::Relaxed);
        let lost = unflushed != NOTHING_UNFLUSHED && unflushed != epoch;
        self.lost.store(lost, std::sync::atomic::Ordering::Relaxed);
        if lost {
            return Err(AuditError::new(
                "pp_audit_log insert failed: the writer's connection was opened again after \
                 a batch that did not wait for the disk, which may be lost",
            ));
        }
        if prepared.as_ref().is_none_or(|p| p.epoch != epoch) {
            *prepared = Some(Prepared {
                epoch,
                rows: client.prepare(INSERT_ROWS).map_err(insert_failed)?,
                rows_deferred: client
                    .prepare(INSERT_ROWS_DEFERRED)
                    .map_err(insert_failed)?,
                rows_and_checkpoint: client
                    .prepare(INSERT_ROWS_AND_CHECKPOINT)
                    .map_err(insert_failed)?,
                rows_and_checkpoint_deferred: client
                    .prepare(INSERT_ROWS_AND_CHECKPOINT_DEFERRED)
                    .map_err(insert_failed)?,
            });
        }
        let Some(statements) = prepared.as_ref() else {
            return Err(AuditError::new("pp_audit_log insert failed: not prepared"));
        };
        let result = match checkpoint {
            None => client.execute(
                if durable {
                    &statements.rows
                } else {
                    &statements.rows_deferred
                },
                &[&streams, &seqs, &times, &subjects, &actions, &events],
            ),
            Some((signed, json)) => client.execute(
                if durable {
                    &statements.rows_and_checkpoint
                } else {
                    &statements.rows_and_checkpoint_deferred
                },
                &[
                    &streams,
                    &seqs,
                    &times,
                    &subjects,
                    &actions,
                    &events,
                    &signed.stream().to_string(),
                    &seq_col(signed.checkpoint().seq())?,
                    &json,
                ],
            ),
        };
        match &result {
            // Prepare again next time, in case the host's own statements
            // deallocated them (`DISCARD ALL`).
            Err(_) => *prepared = None,
            Ok(_) if !durable => self
                .unflushed
                .store(epoch, std::sync::atomic::Ordering::Relaxed),
            Ok(_) => {}
        }
        // A batch the table did not take in whole (a rule the host put on
        // it that drops rows) is an error, and its uses do not happen. (A
        // batch with a checkpoint writes its rows in a `WITH`, where
        // PostgreSQL refuses such a rule; the count is the upsert's.)
        match result.map_err(insert_failed)? {
            _ if checkpoint.is_some() => Ok(()),
            n if usize::try_from(n).is_ok_and(|n| n == rows.len()) => Ok(()),
            n => Err(AuditError::new(format!(
                "pp_audit_log insert failed: {n} of the batch's {} rows written \
                 (a rule on the table?)",
                rows.len()
            ))),
        }
    }

    fn upsert_checkpoint(
        &self,
        checkpoint: &SignedCheckpoint,
        json: &str,
    ) -> Result<(), AuditError> {
        let sql = keep_checkpoint(
            &self.store.schema,
            &checkpoint.stream().to_string(),
            seq_col(checkpoint.checkpoint().seq())?,
            json,
        );
        let mut writer = self.store.writer()?;
        // A checkpoint vouches for the rows up to it: not if a batch among
        // them, written without a sync, may have been lost since (the
        // writer's connection was opened again). The next batch then
        // begins a new stream (see `write`).
        let unflushed = self.unflushed.load(std::sync::atomic::Ordering::Relaxed);
        let epoch = self
            .store
            .reconnect
            .writer_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        if unflushed != NOTHING_UNFLUSHED && unflushed != epoch {
            return Err(AuditError::new(
                "pp_checkpoints upsert refused: the writer's connection was opened again \
                 after a batch that did not wait for the disk, which may be lost",
            ));
        }
        writer.simple_query(&sql).map(drop).map_err(insert_failed)
    }

    fn lost_unflushed(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------
// The key store

/// Wrapped subject data keys in `pp_subject_keys`, tombstones in
/// `pp_erased_subjects`. Every change holds a per-subject advisory lock for
/// its transaction.
#[derive(Clone, Debug)]
pub struct PgKeyStore {
    store: PgStore,
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

fn u32_col(v: i64, what: &'static str) -> Result<u32, KeyStoreError> {
    u32::try_from(v).map_err(|_| backend(format!("{what} out of range in pp_subject_keys")))
}

/// Runs `f` in a transaction holding the subject's advisory lock.
fn locked<R>(
    store: &PgStore,
    subject: &str,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<R, KeyStoreError>,
) -> Result<R, KeyStoreError> {
    let mut client = store.lock()?;
    // Read committed by name, not by the session's default, which code the
    // host runs in the store's session (a trigger on a `pp_*` table) may
    // have changed.
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::ReadCommitted)
        .start()
        .map_err(backend)?;
    // Inside a request scope whose audit commit goes to this database (see
    // `request::DatabaseId`), this commit need not wait for the log to
    // reach the disk: the scope's own synchronous commit, later on the same
    // log, does. (`set_config(…, true)` is `SET LOCAL`, here in the same
    // round trip as the lock.)
    let sql = if crate::request::durability_deferred(store.database_id()) {
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0)),
                pg_catalog.set_config('synchronous_commit', 'off', true)"
    } else {
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))"
    };
    tx.query_typed(sql, &[(&subject, Type::TEXT)])
        .map_err(backend)?;
    let out = f(&mut tx)?;
    tx.commit().map_err(backend)?;
    Ok(out)
}

/// A value written into a statement's text for
/// [`locked_statement`]: only hex digits come from the value, so nothing in
/// it can end the literal (no quoting to get right).
struct Literal;

impl Literal {
    /// `bytes` as a `bytea` expression.
    fn bytes(out: &mut String, bytes: &[u8]) {
        out.push_str("pg_catalog.decode('");
        crate::subject::push_hex(out, bytes);
        out.push_str("', 'hex')");
    }

    /// `text` as a `text` expression.
    fn text(out: &mut String, text: &str) {
        out.push_str("pg_catalog.convert_from(");
        Self::bytes(out, text.as_bytes());
        out.push_str(", 'UTF8')");
    }
}

/// A statement the store prepares by name (SQL `PREPARE`: the key store's,
/// and the audit batch's) on the store's own connections, which host code is never lent: each is
/// prepared when its connection opens (or, failing that, at its first
/// use), and every use only `EXECUTE`s it, in one simple-protocol round
/// trip, with no parsing or planning. Its values go in as the `EXECUTE`'s
/// arguments: [`Literal`]s, digits, and subject ids (hex digits by
/// construction).
struct Named {
    /// The statement's name (in `definition`, and in each `EXECUTE`).
    name: &'static str,
    /// `PREPARE name (…) AS …`.
    definition: &'static str,
}

impl Named {
    /// Prepares every statement of the key store's on `client`.
    fn prepare_all(client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute(
            &[KEYS_OF, INSERT_KEY, NOTE]
                .map(|n| n.definition)
                .join(";\n"),
        )
    }

    /// Runs `sql`, which executes this statement, on `client`. If the
    /// connection has not prepared it yet (`26000`), it is prepared and
    /// `sql` run again; if its plan no longer fits the tables (`0A000`,
    /// after a migration changed a column), it is prepared anew and run
    /// again. Nothing of a failed run is committed, and the connection is
    /// left outside any transaction (`sql` may begin one).
    fn run(
        &self,
        client: &mut Client,
        sql: &str,
    ) -> Result<Vec<postgres::SimpleQueryMessage>, postgres::Error> {
        use postgres::error::SqlState;
        let err = match client.simple_query(sql) {
            Err(e) => e,
            ok => return ok,
        };
        // (With none open the server answers with a warning.)
        let _ = client.batch_execute("ROLLBACK");
        if err.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
            client.batch_execute(self.definition)?;
        } else if err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
            client.batch_execute(&format!("DEALLOCATE {}; {}", self.name, self.definition))?;
        } else {
            return Err(err);
        }
        client.simple_query(sql).inspect_err(|_| {
            let _ = client.batch_execute("ROLLBACK");
        })
    }
}

/// The subject's tombstone if there is one, else every key (no row: no
/// key), in one statement and so one snapshot; the wrapped key as hex.
const KEYS_OF: Named = Named {
    name: "pp_keys_of",
    definition: "PREPARE pp_keys_of (text) AS
         SELECT e.erased_at, k.generation, k.kek_version, encode(k.wrapped, 'hex'), k.uses
         FROM (SELECT $1 AS subject) q
         LEFT JOIN pp_erased_subjects e ON e.subject = q.subject
         LEFT JOIN pp_subject_keys k ON k.subject = q.subject AND e.subject IS NULL
         ORDER BY k.generation",
};

/// A new key (subject, generation, KEK version, wrapped, uses) and the
/// tokens noted with it, unless the subject is erased or the KEK version
/// is below the floor (share-locked against a swap until the transaction
/// ends); answers whether the subject is erased, the floor, and how many
/// keys were inserted (0: the generation exists).
const INSERT_KEY: Named = Named {
    name: "pp_insert_key",
    definition: "PREPARE pp_insert_key (text, bigint, bigint, bytea, bigint, text[]) AS
         WITH state AS (
             SELECT (SELECT erased_at FROM pp_erased_subjects WHERE subject = $1) AS erased,
                    (SELECT floor FROM pp_kek_state WHERE id = 1 FOR SHARE) AS floor),
         inserted AS (
             INSERT INTO pp_subject_keys (subject, generation, kek_version, wrapped, uses)
             SELECT $1, $2, $3, $4, $5 FROM state
             WHERE erased IS NULL AND floor IS NOT NULL AND floor <= $3
             ON CONFLICT DO NOTHING RETURNING 1),
         noted AS (
             INSERT INTO pp_subject_pseudonyms (subject, pseudonym)
             SELECT $1, v.p FROM pg_catalog.unnest($6) v(p)
             WHERE EXISTS (SELECT 1 FROM inserted)
             ON CONFLICT DO NOTHING)
         SELECT erased IS NOT NULL, floor, (SELECT count(*) FROM inserted) FROM state",
};

/// A token (subject, note) noted for an erasure receipt unless the subject
/// is erased; answers whether it is.
const NOTE: Named = Named {
    name: "pp_note",
    definition: "PREPARE pp_note (text, text) AS
         WITH erased AS (SELECT 1 FROM pp_erased_subjects WHERE subject = $1),
         noted AS (
             INSERT INTO pp_subject_pseudonyms (subject, pseudonym)
             SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM erased)
             ON CONFLICT DO NOTHING)
         SELECT EXISTS (SELECT 1 FROM erased)",
};

/// The rows of a simple-protocol answer.
fn simple_rows(messages: Vec<postgres::SimpleQueryMessage>) -> Vec<postgres::SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

/// Bytes from lowercase hex digits (`encode(…, 'hex')`), or `None`.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            Some((crate::subject::hex_nibble(pair[0])? << 4) | crate::subject::hex_nibble(pair[1])?)
        })
        .collect()
}

/// Runs `statement` (an `EXECUTE` of `named`) holding the subject's
/// advisory lock, in one round trip, and returns its rows (as text).
///
/// The lock and the statement go as one simple-protocol query, in one
/// transaction (implicit, or begun by the query): the lock is held until it
/// ends; in read committed each statement takes its own snapshot, so
/// `statement` sees every change committed before the lock was granted; an
/// error in either rolls back both. The `EXECUTE`'s arguments are
/// [`Literal`]s, digits and the subject's id, which is hex digits by
/// construction (`SubjectId`'s `Display`).
///
/// The transaction is read committed by name ([`BEGIN_READ_COMMITTED`]).
/// Inside a request scope whose audit commit goes to this database (see
/// `request::DatabaseId`), the commit need not wait for the log to reach
/// the disk: the scope's own synchronous commit, later on the same log,
/// does (`set_config(…, true)` is `SET LOCAL`, for the transaction).
fn locked_statement(
    store: &PgStore,
    subject: SubjectId,
    named: &Named,
    statement: &str,
) -> Result<Vec<postgres::SimpleQueryRow>, KeyStoreError> {
    let deferred = if crate::request::durability_deferred(store.database_id()) {
        ", pg_catalog.set_config('synchronous_commit', 'off', true)"
    } else {
        ""
    };
    let sql = format!(
        "{BEGIN_READ_COMMITTED};\n\
         SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('{subject}', 0)){deferred};\n\
         {statement};\nCOMMIT"
    );
    let mut client = store.lock()?;
    let messages = named.run(&mut client, &sql).map_err(backend)?;
    // The rows between the lock's completion and the statement's (after
    // BEGIN's and the lock's).
    let lock = 2;
    let mut completed = 0;
    let mut rows = Vec::new();
    for message in messages {
        match message {
            postgres::SimpleQueryMessage::CommandComplete(_) => completed += 1,
            postgres::SimpleQueryMessage::Row(row) if completed == lock => rows.push(row),
            _ => {}
        }
    }
    Ok(rows)
}

/// The one row a [`locked_statement`] answers.
fn one_row(rows: &[postgres::SimpleQueryRow]) -> Result<&postgres::SimpleQueryRow, KeyStoreError> {
    match rows {
        [row] => Ok(row),
        _ => Err(backend(format!("expected one row, got {}", rows.len()))),
    }
}

/// Column `i` of a simple-protocol row, as text (`None`: NULL).
fn text_col(row: &postgres::SimpleQueryRow, i: usize) -> Result<Option<&str>, KeyStoreError> {
    row.try_get(i).map_err(backend)
}

/// A `boolean` column of a simple-protocol row.
fn text_bool(v: Option<&str>) -> Result<bool, KeyStoreError> {
    match v {
        Some("t") => Ok(true),
        Some("f") => Ok(false),
        _ => Err(backend("expected a boolean")),
    }
}

/// An integer column of a simple-protocol row (`None`: NULL).
fn text_int(v: Option<&str>) -> Result<Option<i64>, KeyStoreError> {
    v.map(|v| v.parse().map_err(|_| backend("expected an integer")))
        .transpose()
}

/// The row of `pp_kek_state`; with `share`, locked against a concurrent
/// swap until the transaction ends (a missing row is an error).
fn kek_state(tx: &mut postgres::Transaction<'_>, share: bool) -> Result<KekState, KeyStoreError> {
    let sql = if share {
        "SELECT floor, claimed, claimed_at, renewed_at FROM pp_kek_state WHERE id = 1 FOR SHARE"
    } else {
        "SELECT floor, claimed, claimed_at, renewed_at FROM pp_kek_state WHERE id = 1"
    };
    let row = tx
        .query_typed_opt(sql, &[])
        .map_err(backend)?
        .ok_or_else(|| backend("pp_kek_state has no row"))?;
    let time = |t: Option<i64>| {
        t.map(|t| u64_col(t, "pp_kek_state time").map(Timestamp::from_unix_nanos))
            .transpose()
    };
    Ok(KekState {
        floor: u32_col(row.try_get(0).map_err(backend)?, "floor")?,
        claimed: u32_col(row.try_get(1).map_err(backend)?, "claimed")?,
        claimed_at: time(row.try_get(2).map_err(backend)?)?,
        renewed_at: time(row.try_get(3).map_err(backend)?)?,
    })
}

/// A time as `pp_kek_state` keeps it (nanoseconds).
fn time_col(t: Option<Timestamp>) -> Result<Option<i64>, KeyStoreError> {
    t.map(|t| i64::try_from(t.unix_nanos()).map_err(|_| backend("time out of range")))
        .transpose()
}

/// Refuses a key wrapped under a version below the floor. The floor row is
/// share-locked until the writer commits, so a swap that raises the floor
/// waits for this write, and the rotation's next read of the keys sees it;
/// or the swap came first, and this reads the raised floor.
fn check_floor(tx: &mut postgres::Transaction<'_>, wrapped: &Wrapped) -> Result<(), KeyStoreError> {
    let floor = kek_state(tx, true)?.floor;
    if wrapped.kek_version < floor {
        return Err(KeyStoreError::BelowFloor {
            kek_version: wrapped.kek_version,
            floor,
        });
    }
    Ok(())
}

/// The subject's generations and noted tokens: what `destroy` removes.
fn listed(tx: &mut postgres::Transaction<'_>, subject: &str) -> Result<Destroyed, KeyStoreError> {
    let generations = tx
        .query(
            "SELECT generation FROM pp_subject_keys WHERE subject = $1 ORDER BY generation",
            &[&subject],
        )
        .map_err(backend)?
        .iter()
        .map(|r| u32_col(r.try_get(0).map_err(backend)?, "generation"))
        .collect::<Result<_, _>>()?;
    let noted = tx
        .query(
            "SELECT pseudonym FROM pp_subject_pseudonyms WHERE subject = $1",
            &[&subject],
        )
        .map_err(backend)?;
    let noted = noted
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<&str>, _>>()
        .map_err(backend)?;
    super::destroyed(generations, noted)
}

impl KeyStore for PgKeyStore {
    fn database(&self) -> Option<crate::request::DatabaseId> {
        Some(self.store.database_id())
    }

    /// A durable commit of the store's own (the commit mark, flushed):
    /// everything the server logged before it is on disk after it.
    fn make_durable(&self) -> Result<(), KeyStoreError> {
        self.store.durable_mark().map_err(backend)
    }

    /// `uses` is written as given: a new key and its first reservation
    /// are one transaction.
    fn keeps_uses_on_insert(&self) -> bool {
        true
    }

    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError> {
        // One statement, so one snapshot and one round trip: the tombstone
        // if there is one, else every key (no row: no key). Prepared once
        // per connection (see `Named`), so not parsed and planned anew.
        let messages = KEYS_OF
            .run(
                &mut *self.store.lock()?,
                &format!("EXECUTE {}('{subject}')", KEYS_OF.name),
            )
            .map_err(backend)?;
        let rows = simple_rows(messages);
        if let Some(at) = rows
            .first()
            .map(|r| text_int(text_col(r, 0)?))
            .transpose()?
            .flatten()
        {
            return Ok(SubjectKeys::Erased {
                at: Timestamp::from_unix_nanos(u64_col(at, "erased_at")?),
            });
        }
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(generation) = text_int(text_col(r, 1)?)? else {
                continue;
            };
            let int = |i| text_int(text_col(r, i)?)?.ok_or_else(|| backend("expected a number"));
            let wrapped = text_col(r, 3)?
                .and_then(hex_bytes)
                .ok_or_else(|| backend("expected hex digits"))?;
            keys.push(StoredKey {
                generation: u32_col(generation, "generation")?,
                wrapped: Wrapped {
                    kek_version: u32_col(int(2)?, "kek_version")?,
                    bytes: wrapped,
                },
                uses: u64_col(int(4)?, "uses")?,
            });
        }
        Ok(if keys.is_empty() {
            SubjectKeys::Absent
        } else {
            SubjectKeys::Live(keys)
        })
    }

    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError> {
        self.insert_noting(subject, key, &[]).map(drop)
    }

    /// The key and the notes in one statement (one round trip).
    fn insert_noting(
        &self,
        subject: SubjectId,
        key: StoredKey,
        tokens: &[LookupRef],
    ) -> Result<bool, KeyStoreError> {
        let uses = i64::try_from(key.uses).map_err(|_| backend("use count too large"))?;
        let (generation, kek) = (key.generation, key.wrapped.kek_version);
        let mut execute = format!(
            "EXECUTE {}('{subject}', {generation}, {kek}, ",
            INSERT_KEY.name
        );
        Literal::bytes(&mut execute, &key.wrapped.bytes);
        execute.push_str(&format!(", {uses}, ARRAY["));
        // The notes, written only with the key.
        for (i, token) in tokens.iter().enumerate() {
            let json =
                serde_json::to_string(&super::NotedToken::Lookup(*token)).map_err(backend)?;
            if i > 0 {
                execute.push_str(", ");
            }
            Literal::text(&mut execute, &json);
        }
        execute.push_str("]::text[])");
        // The tombstone check, the floor (share-locked against a swap until
        // the transaction ends) and the insert in one statement, after the
        // lock, so its snapshot sees every erasure committed before.
        let rows = locked_statement(&self.store, subject, &INSERT_KEY, &execute)?;
        let row = one_row(&rows)?;
        if text_bool(text_col(row, 0)?)? {
            return Err(conflict("subject erased"));
        }
        let floor =
            text_int(text_col(row, 1)?)?.ok_or_else(|| backend("pp_kek_state has no row"))?;
        let floor = u32_col(floor, "floor")?;
        if kek < floor {
            return Err(KeyStoreError::BelowFloor {
                kek_version: kek,
                floor,
            });
        }
        if text_int(text_col(row, 2)?)? == Some(0) {
            return Err(conflict("generation exists"));
        }
        Ok(true)
    }

    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError> {
        let s = subject.to_string();
        locked(&self.store, &s, |tx| {
            let before: i64 = tx
                .query_opt(
                    "SELECT uses FROM pp_subject_keys WHERE subject = $1 AND generation = $2",
                    &[&s, &i64::from(generation)],
                )
                .map_err(backend)?
                .ok_or_else(|| conflict("no such key"))?
                .try_get(0)
                .map_err(backend)?;
            let before = u64_col(before, "uses")?;
            let after = i64::try_from(before.saturating_add(n)).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE pp_subject_keys SET uses = $3 WHERE subject = $1 AND generation = $2",
                &[&s, &i64::from(generation), &after],
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
        locked(&self.store, &s, |tx| {
            check_floor(tx, &wrapped)?;
            let n = tx
                .execute(
                    "UPDATE pp_subject_keys SET kek_version = $3, wrapped = $4
                     WHERE subject = $1 AND generation = $2",
                    &[
                        &s,
                        &i64::from(generation),
                        &i64::from(wrapped.kek_version),
                        &wrapped.bytes,
                    ],
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
        locked(&self.store, &s, |tx| {
            // Whatever rows the subject has go, tombstone or not: a
            // tombstone planted before the erasure (A2) must not make it
            // destroy nothing. The first tombstone's date stays.
            let destroyed = listed(tx, &s)?;
            tx.execute("DELETE FROM pp_subject_keys WHERE subject = $1", &[&s])
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM pp_subject_pseudonyms WHERE subject = $1",
                &[&s],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO pp_erased_subjects (subject, erased_at) VALUES ($1, $2)
                 ON CONFLICT (subject) DO NOTHING",
                &[&s, &at],
            )
            .map_err(backend)?;
            Ok(destroyed)
        })
    }

    fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, KeyStoreError> {
        let s = subject.to_string();
        let mut client = self.store.lock()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(backend)?;
        // Listed whatever a tombstone says, as `destroy` deletes them.
        let listed = listed(&mut tx, &s)?;
        tx.commit().map_err(backend)?;
        Ok(Some(listed))
    }

    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        let rows = self
            .store
            .lock()?
            .query(
                "SELECT subject, generation FROM pp_subject_keys WHERE kek_version = $1",
                &[&i64::from(kek_version)],
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, &str>(0)
                        .map_err(backend)?
                        .parse()
                        .map_err(backend)?,
                    u32_col(r.try_get(1).map_err(backend)?, "generation")?,
                ))
            })
            .collect()
    }

    fn kek_state(&self) -> Result<KekState, KeyStoreError> {
        let mut client = self.store.lock()?;
        let mut tx = client.transaction().map_err(backend)?;
        let state = kek_state(&mut tx, false)?;
        tx.commit().map_err(backend)?;
        Ok(state)
    }

    fn swap_kek_state(&self, expected: KekState, new: KekState) -> Result<bool, KeyStoreError> {
        // One statement: the row lock makes the compare and the set atomic,
        // and it waits for every writer holding the row share-locked.
        let changed = self
            .store
            .lock()?
            .execute(
                "UPDATE pp_kek_state
                 SET floor = $5, claimed = $6, claimed_at = $7, renewed_at = $8
                 WHERE id = 1 AND floor = $1 AND claimed = $2
                   AND claimed_at IS NOT DISTINCT FROM $3
                   AND renewed_at IS NOT DISTINCT FROM $4",
                &[
                    &i64::from(expected.floor),
                    &i64::from(expected.claimed),
                    &time_col(expected.claimed_at)?,
                    &time_col(expected.renewed_at)?,
                    &i64::from(new.floor),
                    &i64::from(new.claimed),
                    &time_col(new.claimed_at)?,
                    &time_col(new.renewed_at)?,
                ],
            )
            .map_err(backend)?;
        Ok(changed == 1)
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

impl PgKeyStore {
    /// Notes a token for the subject's erasure receipt.
    fn note(&self, subject: SubjectId, token: &super::NotedToken) -> Result<(), KeyStoreError> {
        let mut execute = format!("EXECUTE {}('{subject}', ", NOTE.name);
        Literal::text(
            &mut execute,
            &serde_json::to_string(token).map_err(backend)?,
        );
        execute.push(')');
        // Nothing is noted for an erased subject, and the caller hears it;
        // one statement after the lock.
        let rows = locked_statement(&self.store, subject, &NOTE, &execute)?;
        if text_bool(text_col(one_row(&rows)?, 0)?)? {
            return Err(crate::crypto::erased_conflict());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The consent store

/// Consent rows in `pp_consents`; each write keeps the later version of
/// two, in one statement, so concurrent writers cannot interleave.
#[derive(Clone, Debug)]
pub struct PgConsentStore {
    store: PgStore,
}

fn consent_err(e: impl fmt::Display) -> ConsentStoreError {
    ConsentStoreError(Cow::Owned(format!("pp_consents: {e}")))
}

impl ConsentStore for PgConsentStore {
    fn load(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, ConsentStoreError> {
        let row = self
            .store
            .lock()?
            .query_opt(
                "SELECT record FROM pp_consents WHERE subject = $1 AND purpose = $2",
                &[&subject.to_string(), &purpose.to_string()],
            )
            .map_err(consent_err)?;
        row.map(|r| {
            serde_json::from_str(r.try_get::<_, &str>(0).map_err(consent_err)?)
                .map_err(|_| consent_err("malformed row"))
        })
        .transpose()
    }

    fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError> {
        let json = serde_json::to_string(record).map_err(consent_err)?;
        let version = i64::try_from(record.version).map_err(consent_err)?;
        let (subject, purpose) = (record.subject.to_string(), record.purpose.to_string());
        let mut client = self.store.lock()?;
        // One statement: insert, or replace a row of an earlier version.
        let changed = client.execute(
            "INSERT INTO pp_consents (subject, purpose, version, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subject, purpose) DO UPDATE
             SET version = excluded.version, record = excluded.record
             WHERE pp_consents.version < excluded.version",
            &[&subject, &purpose, &version, &json],
        )
        .map_err(consent_err)?;
        Ok(changed == 1)
    }

    fn forget(&self, subject: SubjectId) -> Result<(), ConsentStoreError> {
        self.store
            .lock()?
            .execute(
                "DELETE FROM pp_consents WHERE subject = $1",
                &[&subject.to_string()],
            )
            .map(|_| ())
            .map_err(consent_err)
    }

    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
        let rows = self
            .store
            .lock()?
            .query(
                "SELECT record FROM pp_consents ORDER BY subject, purpose",
                &[],
            )
            .map_err(consent_err)?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.try_get::<_, &str>(0).map_err(consent_err)?)
                    .map_err(|_| consent_err("malformed row"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{
        hex_bytes, on_the_writers, server_and_database, Literal, INSERT_KEY, KEYS_OF, NOTE,
    };

    /// A1/A2 (host code or a row supplying the text): whatever a value
    /// holds, its literal is hex digits inside one pair of quotes, so it
    /// cannot end the literal or the statement.
    #[test]
    fn literals_are_hex_digits_whatever_the_value() {
        for value in [
            "",
            "plain",
            "it's",
            "'); DROP TABLE pp_audit_log; --",
            "\\x00",
            "é\u{0}'",
        ] {
            let mut out = String::new();
            Literal::text(&mut out, value);
            let inner = out
                .strip_prefix("pg_catalog.convert_from(pg_catalog.decode('")
                .and_then(|s| s.strip_suffix("', 'hex'), 'UTF8')"))
                .unwrap_or_else(|| panic!("unexpected shape: {out}"));
            assert!(inner.bytes().all(|b| b.is_ascii_hexdigit()), "{out}");
            assert_eq!(inner.len(), value.len() * 2);
        }
    }

    /// Each prepared statement's definition prepares the name its
    /// `EXECUTE`s and its re-preparation use.
    #[test]
    fn each_named_statement_prepares_its_own_name() {
        for named in [KEYS_OF, INSERT_KEY, NOTE] {
            let prefix = format!("PREPARE {} (", named.name);
            assert!(named.definition.starts_with(&prefix), "{}", named.name);
        }
    }

    /// A2 (a row's column): a wrapped key read back as hex decodes only
    /// from lowercase hex digits of even length; anything else is `None`,
    /// never a panic.
    #[test]
    fn hex_columns_decode_strictly() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut hex = String::new();
        crate::subject::push_hex(&mut hex, &bytes);
        assert_eq!(hex_bytes(&hex), Some(bytes));
        assert_eq!(hex_bytes(""), Some(Vec::new()));
        for garbage in ["0", "0g", "AB", "\\x00", "é0", " 00", "00 "] {
            assert_eq!(hex_bytes(garbage), None, "{garbage:?}");
        }
    }

    /// A1 (host code with a transaction on a server of its own, where it
    /// may create a schema): the check that `commit_request`'s commit runs
    /// on the writer's server and database names no operator the session's
    /// `search_path` resolves. Each server's identifier is the seconds of
    /// its `initdb` in its top bits, so every cluster made from 2038 on has
    /// a negative one as `int8`; written as a number, `-N` would be the
    /// unary `-` applied to `N`, and a `-` of the host's, put first in the
    /// path, that answers the server's own identifier would pass the check
    /// for any writer's. Here the server plays both: the check for the
    /// writer `(-S, oid)` runs on server `S` with such a `-` in the path
    /// and must fail; `(S, oid)` passes, and `(S, another oid)` fails.
    #[test]
    fn the_writers_check_resolves_no_operator_of_the_host() {
        let Ok(base) = std::env::var("PP_TEST_PG") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PP_TEST_PG is not set under CI: the PostgreSQL tests would not run"
            );
            eprintln!("SKIPPED: PP_TEST_PG is not set (run scripts/test)");
            return;
        };
        let name = format!("pp_minus_{}", crate::SubjectId::random()).to_lowercase();
        let mut admin =
            postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let params = format!("{base} dbname={name}");
        let mut host = postgres::Client::connect(&params, postgres::NoTls).unwrap();
        host.batch_execute(
            "CREATE SCHEMA evil;
             CREATE FUNCTION evil.this_server(pg_catalog.int8) RETURNS pg_catalog.int8
                 LANGUAGE sql AS 'SELECT system_identifier FROM pg_catalog.pg_control_system()';
             CREATE OPERATOR evil.- (RIGHTARG = pg_catalog.int8, FUNCTION = evil.this_server);
             SET search_path = evil, pg_catalog, public;",
        )
        .unwrap();
        let (server, database) = server_and_database(&mut host).unwrap();
        // The host's `-` is the one the session finds.
        let minus: i64 = host
            .query_one(&format!("SELECT -{server}::int8"), &[])
            .unwrap()
            .get(0);
        assert_eq!(minus, server, "the host's operator is not in the path");
        let mut passes = |writer| {
            let mut tx = host.transaction().unwrap();
            let passed = tx.batch_execute(&on_the_writers(writer)).is_ok();
            drop(tx);
            passed
        };
        let outcomes = [
            passes((server.wrapping_neg(), database)),
            passes((server, database)),
            passes((server, database.wrapping_add(1))),
        ];
        drop(host);
        let _ = admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
        assert_eq!(
            outcomes,
            [false, true, false],
            "(another server with a negative identifier, the writer's, another database)"
        );
    }
}
