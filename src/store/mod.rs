//! Stores on real databases, behind cargo features: the audit sink, the key
//! store and their tables, so a host keeps no storage glue of its own.
//!
//! | feature | module | database |
//! |---|---|---|
//! | `sqlite` | `store::sqlite` | SQLite through `rusqlite`, built from source (`bundled`) |
//! | `postgres` | `store::postgres` | PostgreSQL through the synchronous `postgres` client |
//! | `sqlx-sqlite`, `sqlx-postgres` (both: `sqlx`) | [`store::columns`](columns) | column types only: `Sealed`, `LookupToken` and `SubjectId` in the host's own sqlx queries |
//!
//! A dependent that enables no feature pulls in no database. The core never
//! imports this module; a store only implements the core's traits
//! ([`AuditSink`](crate::audit::AuditSink), [`KeyStore`](crate::crypto::KeyStore)).
//!
//! Every store writes its tables (prefixed `pp_`) through versioned
//! migrations, so it can share a database — and a connection — with the
//! host's own tables, and several processes of one service can open the same
//! database at once: each audit sink writes its own
//! [stream](crate::audit::StreamId), so no lock spans processes and no chain
//! forks, and concurrent `record` calls of one process share one commit
//! (group commit).
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use privacy_pledge::store::sqlite::SqliteStore;
//! use privacy_pledge::{Custodian, SubjectId};
//! use privacy_pledge::crypto::Keyring;
//! use privacy_pledge::purpose::Newsletter;
//! use std::sync::Arc;
//!
//! let keyring = Arc::new(Keyring::generate()?);
//! let store = SqliteStore::open_in_memory()?;
//! let custodian = Custodian::builder()
//!     .keyring(keyring.clone())
//!     .key_store(store.key_store())
//!     .audit(store.audit_sink(keyring.audit_key())?)
//!     .build()?;
//! custodian.consents().grant::<Newsletter>(SubjectId::random())?;
//! assert_eq!(store.trail()?.len(), 1);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod any;
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "sqlx-sqlite",
    feature = "sqlx-postgres"
))]
pub mod columns;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod pool;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use any::{Database, Dialect, Store, StoreConfig};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod stream_sink;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use stream_sink::{AuditStreamSink, BatchWriter, CheckpointGuard, Row};

/// Loads the custodian's newest checkpoints, *then* reads the trail, and
/// verifies it under the custodian's keys: in this order a checkpoint signed meanwhile
/// by another process cannot name entries the trail read lacks (which
/// would look like entries cut from the end).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn verified_trail(
    custodian: &crate::Custodian,
    trail: impl FnOnce() -> Result<Vec<crate::audit::AuditEvent>, StoreError>,
) -> Result<crate::audit::VerifiedTrail, crate::Error> {
    custodian.verify_trail_with(|| {
        trail().map_err(|e| crate::Error::from(crate::audit::AuditError::new(e.to_string())))
    })
}

/// A token noted for a subject in `pp_subject_pseudonyms`, as the JSON of a
/// [`PseudonymRef`](crate::crypto::PseudonymRef) (`{"kind":…,"token":…}`)
/// or of a [`LookupRef`](crate::crypto::LookupRef) (`{"lookup":…,"token":…}`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum NotedToken {
    Lookup(crate::crypto::LookupRef),
    Pseudonym(crate::crypto::PseudonymRef),
}

/// What an erasure destroyed: the generations, and the noted tokens (JSON
/// rows of `pp_subject_pseudonyms`) sorted into pseudonyms and lookup tokens.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn destroyed<'a>(
    generations: Vec<u32>,
    noted: impl IntoIterator<Item = &'a str>,
) -> Result<crate::crypto::Destroyed, crate::crypto::KeyStoreError> {
    let mut out = crate::crypto::Destroyed {
        generations,
        ..Default::default()
    };
    for json in noted {
        match serde_json::from_str(json) {
            Ok(NotedToken::Lookup(t)) => out.lookup_tokens.push(t),
            Ok(NotedToken::Pseudonym(p)) => out.pseudonyms.push(p),
            Err(_) => {
                return Err(crate::crypto::KeyStoreError::Backend(
                    "pp_subject_pseudonyms holds a malformed row".into(),
                ))
            }
        }
    }
    Ok(out)
}

thread_local! {
    /// The connections this thread holds while it runs a host closure
    /// (`with_connection`, `with_client`), by their mutex's address.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    static HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The end of `commit_request` on either store: `write`, the host's write,
/// as it went; if it failed or panicked, `durable` (a durable commit of the
/// store's own) first. The scope's commit was made without a sync, counting
/// on the host's; `write`'s error, or its panic's payload, may carry what
/// the request made, so it goes back to the host only once the scope's
/// events are on disk (a payload whose events could not be made durable is
/// dropped unseen: see [`resume_if_recorded`](crate::request::resume_if_recorded)).
/// Runs host code `f` on `tx`, a transaction of a connection lent to it,
/// and gives the transaction back with `f`'s result. Host code may fork
/// inside `f`: in the child, which returns here holding a copy of the
/// parent's connection, `tx` is forgotten — neither committed nor rolled
/// back (dropped, it would roll back) on the parent's session — and the
/// child gets [`Unavailable::Forked`], or `f`'s panic goes on.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn host_code<Tx, R>(
    mut tx: Tx,
    same_process: impl FnOnce() -> Result<(), Unavailable>,
    f: impl FnOnce(&mut Tx) -> R,
) -> Result<(Tx, R), Unavailable> {
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut tx)));
    if let Err(forked) = same_process() {
        std::mem::forget(tx);
        return match out {
            Ok(_) => Err(forked),
            Err(payload) => std::panic::resume_unwind(payload),
        };
    }
    match out {
        Ok(out) => Ok((tx, out)),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn durable_before_error<E: From<StoreError>>(
    write: impl FnOnce() -> Result<(), E>,
    durable: impl FnOnce() -> Result<(), StoreError>,
) -> Result<(), E> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(write)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            durable()?;
            Err(e)
        }
        Err(payload) => crate::request::resume_if_recorded(payload, durable().as_ref()),
    }
}

/// Runs the host's closure `f` while this thread holds connection `id`:
/// custodian operations inside it are refused with
/// [`Error::Reentrant`](crate::Error::Reentrant) (see `crate::reentry`), and
/// this store's own methods with [`Unavailable::Reentered`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn hold<R>(id: usize, f: impl FnOnce() -> R) -> R {
    struct Release(usize);
    impl Drop for Release {
        fn drop(&mut self) {
            HELD.with(|h| {
                let mut h = h.borrow_mut();
                if let Some(i) = h.iter().rposition(|&c| c == self.0) {
                    h.remove(i);
                }
            });
        }
    }
    HELD.with(|h| h.borrow_mut().push(id));
    let _release = Release(id);
    crate::reentry::holding_connection(f)
}

/// `Err(Reentered)` if this thread holds connection `id` (inside its
/// store's `with_connection`): taking its lock would wait forever.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn not_held(id: usize) -> Result<(), Unavailable> {
    if HELD.with(|h| h.borrow().contains(&id)) {
        Err(Unavailable::Reentered)
    } else {
        Ok(())
    }
}

/// A store's connection could not be had: the thread holds it already
/// inside `with_connection` (or `with_client`), which would wait for itself
/// forever, no pooled connection was returned within the pool's
/// [acquire timeout](PoolOptions::acquire_timeout), or this process is a
/// child forked after the store opened (see `pool`'s "Fork"). Becomes each
/// trait's own error.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug)]
pub(crate) enum Unavailable {
    Reentered,
    TimedOut(std::time::Duration),
    Forked { opened_by: u32, now: u32 },
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
const REENTERED: &str =
    "called inside with_connection of the same store, which holds its connection";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Unavailable {
    fn message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Unavailable::Reentered => REENTERED.into(),
            Unavailable::TimedOut(waited) => format!(
                "no pooled connection was free within {} ms (all lent: raise PoolOptions::pool_size, or hold connections for less time)",
                waited.as_millis()
            )
            .into(),
            Unavailable::Forked { opened_by, now } => format!(
                "{} (opened by process {opened_by}, called from {now})",
                StoreError::Forked
            )
            .into(),
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<Unavailable> for StoreError {
    fn from(e: Unavailable) -> Self {
        match e {
            Unavailable::Reentered => StoreError::Reentrant,
            Unavailable::TimedOut(waited) => StoreError::PoolTimeout { waited },
            Unavailable::Forked { .. } => StoreError::Forked,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<Unavailable> for crate::crypto::KeyStoreError {
    fn from(e: Unavailable) -> Self {
        crate::crypto::KeyStoreError::Backend(e.message())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<Unavailable> for crate::audit::AuditError {
    fn from(e: Unavailable) -> Self {
        crate::audit::AuditError::new(e.message())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<Unavailable> for crate::consent::ConsentStoreError {
    fn from(e: Unavailable) -> Self {
        crate::consent::ConsentStoreError(e.message())
    }
}

/// How many connections a store opens: the audit writer's own, and two
/// pools of [`pool_size`](Self::pool_size) each — one for the key store,
/// the consent store and trail reads, one for the host's own statements
/// (`with_connection`, `with_client`, `commit_request`'s transaction, the
/// [`Store`]'s SQL). The two are kept apart so that nothing host code leaves
/// on a connection (a `TEMP` table or trigger, a session setting) reaches
/// the store's own statements.
///
/// The pool is the crate's own — the connections opened up front with the
/// same settings, lent one caller at a time and returned when the guard
/// drops — rather than `r2d2` with `r2d2_sqlite` or `r2d2_postgres`, the
/// synchronous clients' usual pools: those would add their crates (and a
/// background thread) to every dependent for what the stores do not use
/// (growing and reaping connections on timers), and tie the crate's
/// `rusqlite` and `postgres` versions to the adapters'.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use privacy_pledge::store::sqlite::SqliteStore;
/// use privacy_pledge::store::PoolOptions;
///
/// # let dir = std::env::temp_dir().join(format!("pp-pool-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let store = SqliteStore::open_with(dir.join("app.db"), PoolOptions::new().pool_size(2))?;
/// assert_eq!(store.pool_size(), 2);
/// assert!(store.has_writer_connection());
/// # std::fs::remove_dir_all(&dir)?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    pool_size: usize,
    acquire_timeout: std::time::Duration,
    wal_pages: u32,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            pool_size: 4,
            acquire_timeout: std::time::Duration::from_secs(30),
            wal_pages: 10_000,
        }
    }
}

impl PoolOptions {
    /// The defaults: two pools of 4 connections (besides the writer's).
    ///
    /// ```
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// assert_eq!(PoolOptions::new().size(), 4);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of connections in each of the two pools (at least
    /// 1; 0 counts as 1): the store's own and the host's. Each host closure
    /// holds one of the host's while it runs, each trail read and key or
    /// consent store call one of the store's; more wait for one to be
    /// returned (the store's own calls for at most the
    /// [acquire timeout](Self::acquire_timeout)).
    ///
    /// ```
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// assert_eq!(PoolOptions::new().pool_size(8).size(), 8);
    /// assert_eq!(PoolOptions::new().pool_size(0).size(), 1);
    /// ```
    #[must_use]
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// The number of connections in each pool.
    ///
    /// ```
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// assert_eq!(PoolOptions::default().size(), 4);
    /// ```
    pub fn size(&self) -> usize {
        self.pool_size
    }

    /// How long the store's own calls (key store, consent store, audit
    /// commits on a single connection, trail reads) wait for a pooled
    /// connection when every one is lent, before they give up with an
    /// error saying so (default 30 seconds, as `r2d2` and `sqlx` wait): a
    /// pool exhausted by slow host closures then refuses the uses that need
    /// it — fail closed — instead of hanging them. The host's own
    /// `with_connection` / `with_client` still waits for as long as it takes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// let options = PoolOptions::new().acquire_timeout(Duration::from_secs(5));
    /// assert_eq!(options.timeout(), Duration::from_secs(5));
    /// assert_eq!(PoolOptions::new().timeout(), Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn acquire_timeout(mut self, wait: std::time::Duration) -> Self {
        self.acquire_timeout = wait;
        self
    }

    /// The [acquire timeout](Self::acquire_timeout).
    ///
    /// ```
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// assert_eq!(PoolOptions::default().timeout().as_secs(), 30);
    /// ```
    pub fn timeout(&self) -> std::time::Duration {
        self.acquire_timeout
    }

    /// SQLite only: how many pages (4 KiB each) the write-ahead log gathers
    /// before the commit that passes the mark copies them into the database
    /// file — SQLite's `wal_autocheckpoint`, set on every connection of the
    /// store (at least 1; 0 counts as 1). Default 10 000, about 40 MiB of
    /// log; SQLite's own default is 1 000. PostgreSQL ignores it.
    ///
    /// *Why larger than SQLite's default:* a copy writes each page changed
    /// since the last one once, whatever the number of commits that changed
    /// it, and then syncs the database file. A sign-up changes about twelve
    /// pages, several of them at random places in the key and index
    /// b-trees, so a log ten times longer folds far more changes to the
    /// same pages into one copy: in `benches/signup.rs` a sign-up's mean
    /// time fell by 3 to 21% (see the README's performance section).
    /// The cost: the log file grows to about this size and stays so while
    /// the store is open. An [erasure](crate::Custodian::erase) still
    /// empties it, so no copy of a destroyed key stays in it — unless a
    /// reader holds the log at that moment: then the old copy stays until
    /// the log is written over, up to this many pages later. The one
    /// commit that makes the copy waits for it (about 12 ms at 10 000
    /// pages on the measuring machine, against about 3 ms at 1 000, ten
    /// times as often). A process opening the file after a crash reads
    /// the whole log back.
    ///
    /// ```
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// assert_eq!(PoolOptions::new().wal_pages(), 10_000);
    /// assert_eq!(PoolOptions::new().sqlite_wal_pages(1_000).wal_pages(), 1_000);
    /// assert_eq!(PoolOptions::new().sqlite_wal_pages(0).wal_pages(), 1);
    /// ```
    #[must_use]
    pub fn sqlite_wal_pages(mut self, pages: u32) -> Self {
        self.wal_pages = pages.max(1);
        self
    }

    /// The [write-ahead log's size](Self::sqlite_wal_pages) in pages.
    ///
    /// ```
    /// use privacy_pledge::store::PoolOptions;
    ///
    /// assert_eq!(PoolOptions::default().wal_pages(), 10_000);
    /// ```
    pub fn wal_pages(&self) -> u32 {
        self.wal_pages
    }
}

/// A store could not be opened, migrated or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (the message names tables and constraints,
    /// never values: no personal value reaches a store in plaintext).
    #[error("store: the database failed: {0}")]
    Database(String),
    /// The database holds a newer schema than this version of the crate knows.
    #[error(
        "store: the database schema is version {found}, newer than the {known} this crate knows"
    )]
    NewerSchema {
        /// The version found.
        found: u32,
        /// The newest version this crate knows.
        known: u32,
    },
    /// The random generator failed.
    #[error("store: the system random generator failed")]
    Random,
    /// The store was called inside its own `with_connection` (SQLite) or
    /// `with_client` (PostgreSQL) closure on the same thread, which holds
    /// the connection: refused instead of waiting for itself forever.
    #[error("store: called inside with_connection of the same store, which holds its connection")]
    Reentrant,
    /// Every pooled connection stayed lent for the pool's
    /// [acquire timeout](PoolOptions::acquire_timeout).
    #[error("store: no pooled connection was free within {} ms", waited.as_millis())]
    PoolTimeout {
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// A store URL that names no database this build can open (only its
    /// scheme is repeated: the rest may hold a password).
    #[error("store URL: {0}")]
    Url(String),
    /// The checkpoint directory could not be created or read.
    #[error("store: the checkpoint directory: {0}")]
    Checkpoints(String),
    /// [`Store::migrate`] found more of the host's steps applied than it
    /// was given: a newer version of the host ran on this database.
    #[error("store: the host's schema has {found} steps applied, more than the {known} given")]
    NewerHostSchema {
        /// Steps applied.
        found: usize,
        /// Steps given.
        known: usize,
    },
    /// One of the host's statements ([`Store::execute`], a
    /// [`commit_request`](Store::commit_request) write…) was refused by a
    /// constraint: a unique index, a foreign key, `NOT NULL`. The message
    /// is the database's, naming the constraint, never the values.
    #[error("store: a constraint refused the statement: {0}")]
    Constraint(String),
    /// This process is a child forked after the store was opened: the
    /// connections it holds are copies of its parent's (the same
    /// PostgreSQL sessions, SQLite locks that are the parent's alone), so
    /// every call is refused, and they are never closed here, which would
    /// end the parent's sessions. Open a store in the child instead.
    #[error(
        "store: opened by another process (this one was forked from it): open a store in this process"
    )]
    Forked,
}
