//! One store opened by URL: the whole set-up of a custodian on a database
//! in one value.
//!
//! [`Store::open`] takes a [`StoreConfig`]: the database's URL
//! (`sqlite:PATH`, `sqlite::memory:`, `postgres://…`, `postgresql://…`, or
//! PostgreSQL's keyword form `host=… dbname=…`)
//! and the directory of the signed checkpoints and the freshness anchor.
//! That directory has no default: it must be out of the database
//! operator's reach (threat model A2), so it cannot be derived from the
//! URL, and a store cannot be opened without naming it. The store then
//! supplies everything a custodian keeps in the database — key store,
//! consent store, audit sink — and [`Store::custodian`] wires them, with
//! the checkpoints and the anchor, into the host's builder (the example is on [`Store`]).
//!
//! Migrations — the crate's and, through [`Store::migrate`], the host's
//! own — run under a lock (SQLite's write lock; a PostgreSQL advisory
//! lock), so any number of processes may open one database at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AuditStreamSink, BatchWriter, CheckpointGuard, StoreError};
use crate::audit::{AuditEvent, AuditSink, DirCheckpointStore};
use crate::consent::{ConsentRecord, ConsentStore};
use crate::crypto::KeyStore;
use crate::freshness::DirAnchorStore;
use crate::{Custodian, CustodianBuilder, Error};

#[cfg(feature = "postgres")]
use super::postgres::PgStore;
#[cfg(feature = "sqlite")]
use super::sqlite::SqliteStore;

/// Where a [`Store`] keeps its data: the database's URL and the directory
/// for what must live outside the database.
///
/// ```
/// use privacy_pledge::store::StoreConfig;
///
/// let config = StoreConfig::new("sqlite:/var/lib/shop/shop.db", "/var/lib/shop-audit/checkpoints")
///     .checkpoint_every(500);
/// assert_eq!(config.checkpoints().to_str(), Some("/var/lib/shop-audit/checkpoints"));
/// // A URL's password is never shown.
/// let pg = StoreConfig::new("postgres://shop:secret@db/shop", "/srv/audit");
/// assert!(!format!("{pg:?}").contains("secret"));
/// ```
#[derive(Clone)]
pub struct StoreConfig {
    url: String,
    host_url: Option<String>,
    checkpoints: PathBuf,
    every: u64,
    pool: super::PoolOptions,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("database", &Url::parse(&self.url).map(|u| u.describe()))
            .field(
                "host_database",
                &self
                    .host_url
                    .as_deref()
                    .map(|u| Url::parse(u).map(|u| u.describe())),
            )
            .field("checkpoints", &self.checkpoints)
            .field("checkpoint_every", &self.every)
            .field("pool", &self.pool)
            .finish()
    }
}

impl StoreConfig {
    /// The database at `url` (`sqlite:PATH`, `sqlite::memory:`,
    /// `postgres://…`, `postgresql://…`, or PostgreSQL's keyword form
    /// `host=… user=… dbname=…`), with its signed checkpoints and
    /// freshness anchor in the directory `checkpoints` (created if
    /// missing). Put that directory on another volume, account or host than
    /// the database: whoever can rewrite both can roll back what the
    /// checkpoints vouch for. [`Store::open`] refuses the slips it can see
    /// ([`StoreError::Checkpoints`]): an empty path, the SQLite file's own
    /// directory, a directory holding the file.
    ///
    /// `sqlite:PATH` names a file and nothing else: a `file:` URI, a query
    /// or a fragment (`?mode=memory`, `?nolock=1`, sqlx's `?mode=rwc`) is
    /// refused ([`StoreError::Url`]), as SQLite would open another database
    /// than the file, or the file without its locks.
    pub fn new(url: impl Into<String>, checkpoints: impl Into<PathBuf>) -> Self {
        StoreConfig {
            url: url.into(),
            host_url: None,
            checkpoints: checkpoints.into(),
            every: 100,
            pool: super::PoolOptions::default(),
        }
    }

    /// The connections to open ([`PoolOptions`](super::PoolOptions): the
    /// pool's size and how long the store's own calls wait for a free
    /// connection; the defaults otherwise). An in-memory SQLite database
    /// has one connection whatever is asked.
    ///
    /// ```
    /// use std::time::Duration;
    /// use privacy_pledge::store::{PoolOptions, StoreConfig};
    ///
    /// let config = StoreConfig::new("sqlite:shop.db", "/var/lib/shop/checkpoints")
    ///     .pool(PoolOptions::new().pool_size(8).acquire_timeout(Duration::from_secs(5)));
    /// # drop(config);
    /// ```
    pub fn pool(mut self, options: super::PoolOptions) -> Self {
        self.pool = options;
        self
    }

    /// PostgreSQL: the connections the host's statements run on
    /// ([`Store::batch`], [`Store::execute`], [`Store::query`],
    /// [`Store::migrate`], [`Store::commit_request`]'s write) connect with
    /// `url` — as another role, of the same database on the
    /// same server — instead of the store's own URL
    /// ([`PgStore::connect_with_host`](super::postgres::PgStore::connect_with_host)).
    /// The store's role owns the `pp_*` tables; a host role granted nothing
    /// on them cannot change them or attach code to them. An SQLite store
    /// has no roles: [`Store::open`] refuses the setting there.
    ///
    /// ```
    /// use privacy_pledge::store::StoreConfig;
    ///
    /// let config = StoreConfig::new("postgres://shop_audit@db/shop", "/srv/audit")
    ///     .host_url("postgres://shop:secret@db/shop");
    /// assert!(!format!("{config:?}").contains("secret"));
    /// ```
    pub fn host_url(mut self, url: impl Into<String>) -> Self {
        self.host_url = Some(url.into());
        self
    }

    /// Signs a checkpoint of the audit stream after every `events` events
    /// (default 100, at least 1), besides the one the
    /// [`CheckpointGuard`] signs at shutdown.
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.every = events.max(1);
        self
    }

    /// The checkpoint directory.
    pub fn checkpoints(&self) -> &Path {
        &self.checkpoints
    }
}

/// PostgreSQL's keyword/value form (`host=… user=… dbname=…`): it starts
/// with a lowercase keyword and `=`, spaces allowed around it as libpq
/// allows them (`password = …`).
fn is_keyword_form(url: &str) -> bool {
    let url = url.trim_start();
    let key_len = url
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
        .count();
    key_len > 0 && url[key_len..].trim_start().starts_with('=')
}

/// Whether `s` is a URL scheme as RFC 3986 spells one (a letter, then
/// letters, digits, `+`, `-` or `.`): only such a word is repeated in a
/// message, never what came before the first `:` of a string that merely
/// holds one (`Password=hunter2:…`).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Refuses a checkpoint directory that is obviously within the database's
/// reach: none named (an empty path, the working directory), the SQLite
/// file's own directory (which SQLite needs writable for its `-wal` and
/// `-shm` files: whoever writes the database there can rewrite the
/// checkpoints and the anchor), or a directory holding the SQLite file.
/// Keeping it truly apart (another volume, account or host) is the host's
/// part; this catches the slips.
fn out_of_reach(checkpoints: &Path, sqlite: Option<&Path>) -> Result<(), StoreError> {
    let refuse = |why: &str| {
        Err(StoreError::Checkpoints(format!(
            "{}: {why}: put the checkpoint directory out of the database's reach",
            checkpoints.display()
        )))
    };
    if checkpoints.as_os_str().is_empty() {
        return refuse("no checkpoint directory named");
    }
    let Some(db) = sqlite else {
        return Ok(());
    };
    // Compared as the file system resolves them where they exist already
    // (a relative path, `..`, a symbolic link), else as written.
    let resolved = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let db_dir = match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => resolved(dir),
        _ => resolved(Path::new(".")),
    };
    let checkpoints = resolved(checkpoints);
    if checkpoints == db_dir {
        return refuse("the SQLite file's own directory");
    }
    if db_dir.starts_with(&checkpoints) {
        return refuse("a directory that holds the SQLite file");
    }
    Ok(())
}

/// A parsed store URL.
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]
enum Url<'a> {
    Sqlite(&'a str),
    SqliteMemory,
    Postgres(&'a str),
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Self, StoreError> {
        if url == "sqlite::memory:" {
            return Ok(Url::SqliteMemory);
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::Url("sqlite: URL names no file".into()));
            }
            if path == ":memory:" {
                return Ok(Url::SqliteMemory);
            }
            // A file's path, nothing else: SQLite's URI options would open
            // another database than the file named (`mode=memory`), or
            // turn its locks off (`nolock=1`, `vfs=unix-none`), on which
            // processes opening one file together rely; and a query in an
            // sqlx-style URL (`?mode=rwc`) would be part of a file's name.
            if path.starts_with("file:")
                || path.contains(['?', '#'])
                || path.starts_with(":memory:")
            {
                return Err(StoreError::Url(
                    "sqlite: URL with a `file:` URI, a query or a fragment: name the file alone \
                     (sqlite:PATH) or sqlite::memory:"
                        .into(),
                ));
            }
            return Ok(Url::Sqlite(path));
        }
        if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || is_keyword_form(url)
        {
            return Ok(Url::Postgres(url));
        }
        // Only the scheme is repeated: the rest may hold a password.
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        Err(StoreError::Url(
            if !is_scheme(scheme) || scheme.len() > 20 {
                "expected sqlite:PATH, sqlite::memory:, postgres://… or postgresql://…".into()
            } else {
                format!("unknown scheme `{scheme}:` (expected sqlite:, postgres: or postgresql:)")
            },
        ))
    }

    /// For messages: a PostgreSQL URL is not repeated (it may hold a password).
    fn describe(&self) -> String {
        match self {
            Url::Sqlite(path) => format!("sqlite:{path}"),
            Url::SqliteMemory => "sqlite::memory:".into(),
            Url::Postgres(_) => "postgres://…".into(),
        }
    }
}

/// The database behind a [`Store`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Database {
    /// An SQLite database (`store::sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// A PostgreSQL database (`store::postgres`).
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

impl Database {
    /// Its SQL dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Every entry of the audit log, every stream, in no verified order:
    /// give it to [`Custodian::verify_trail`] (or, with the public key only,
    /// to [`verify_public`](crate::audit::verify_public)).
    pub fn trail(&self) -> Result<Vec<AuditEvent>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s.trail(),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.trail(),
        }
    }

    /// Every consent row as stored: the raw table, for audits
    /// ([`cross_check`](crate::consent::cross_check)); the custodian itself
    /// trusts a row only once it is authenticated and fresh.
    pub fn consents(&self) -> Result<Vec<ConsentRecord>, StoreError> {
        let rows = match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s.consent_store().all(),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.consent_store().all(),
        };
        rows.map_err(|e| StoreError::Database(e.to_string()))
    }
}

/// The SQL dialect of a [`Store`]'s database, for the host's statements
/// that cannot be the same on both (column types, functions): most can,
/// since [`Store::execute`] and [`Store::query`] take `$1`, `$2`… on
/// either, and the crate's column types bind and read on both.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use privacy_pledge::store::{Dialect, Store, StoreConfig};
///
/// # let dir = std::env::temp_dir().join(format!("pp-doc-dialect-{}", std::process::id()));
/// let store = Store::open(&StoreConfig::new("sqlite::memory:", &dir))?;
/// assert_eq!(store.dialect(), Dialect::Sqlite);
/// let d = store.dialect();
/// let tables = format!("CREATE TABLE orders (id {}, record {} NOT NULL)", d.serial_key(), d.bytes());
/// store.migrate("shop", &[&tables])?;
/// # std::fs::remove_dir_all(&dir)?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite's.
    Sqlite,
    /// PostgreSQL's.
    Postgres,
}

impl Dialect {
    /// `sqlite` on SQLite, `postgres` on PostgreSQL.
    ///
    /// ```
    /// use privacy_pledge::store::Dialect;
    ///
    /// assert_eq!(Dialect::Sqlite.pick("last_insert_rowid()", "lastval()"), "last_insert_rowid()");
    /// ```
    pub fn pick<'a, T: ?Sized>(self, sqlite: &'a T, postgres: &'a T) -> &'a T {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    /// The column type of byte strings — sealed envelopes, [`SubjectId`](crate::SubjectId)s,
    /// lookup tokens: `BLOB` on SQLite, `BYTEA` on PostgreSQL. With
    /// [`serial_key`](Self::serial_key), one schema serves both databases:
    ///
    /// ```
    /// use privacy_pledge::store::Dialect;
    ///
    /// fn tables(d: Dialect) -> String {
    ///     let (bytes, key) = (d.bytes(), d.serial_key());
    ///     format!("CREATE TABLE orders (id {key}, subject {bytes} NOT NULL, record {bytes} NOT NULL)")
    /// }
    /// assert_eq!(
    ///     tables(Dialect::Postgres),
    ///     "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, subject BYTEA NOT NULL, record BYTEA NOT NULL)"
    /// );
    /// ```
    pub fn bytes(self) -> &'static str {
        self.pick("BLOB", "BYTEA")
    }

    /// A 64-bit integer primary key the database numbers itself when an
    /// insert leaves it out: `INTEGER PRIMARY KEY` on SQLite (the row id),
    /// `BIGSERIAL PRIMARY KEY` on PostgreSQL.
    ///
    /// ```
    /// use privacy_pledge::store::Dialect;
    ///
    /// assert_eq!(Dialect::Sqlite.serial_key(), "INTEGER PRIMARY KEY");
    /// ```
    pub fn serial_key(self) -> &'static str {
        self.pick("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
    }
}

/// The crate's store on whichever database a URL names: key store, consent
/// store and audit sink with checkpoints, from one value. Cheap to clone.
///
///
/// [`Store::open`] takes a [`StoreConfig`]: the database's URL
/// (`sqlite:PATH`, `sqlite::memory:`, `postgres://…`, `postgresql://…`, or
/// PostgreSQL's keyword form `host=… dbname=…`)
/// and the directory of the signed checkpoints and the freshness anchor.
/// That directory has no default: it must be out of the database
/// operator's reach (threat model A2), so it cannot be derived from the
/// URL, and a store cannot be opened without naming it. The store then
/// supplies everything a custodian keeps in the database — key store,
/// consent store, audit sink — and [`Store::custodian`] wires them, with
/// the checkpoints and the anchor, into the host's builder:
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use privacy_pledge::crypto::Keyring;
/// use privacy_pledge::purpose::Newsletter;
/// use privacy_pledge::store::{Store, StoreConfig};
/// use privacy_pledge::{Custodian, SubjectId};
///
/// # let dir = std::env::temp_dir().join(format!("pp-doc-any-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// // The checkpoints go where the database's operator cannot write.
/// let store = Store::open(&StoreConfig::new("sqlite::memory:", dir.join("checkpoints")))?;
/// let keyring = Keyring::generate()?; // a real host loads it from its secret store
/// let (custodian, _guard) = store.custodian(Custodian::builder().keyring(keyring))?;
///
/// custodian.consents().grant::<Newsletter>(SubjectId::random())?;
/// let (custodian, guard) = (custodian, _guard);
/// assert!(!store.verified_trail(&custodian)?.is_fully_vouched(), "no checkpoint yet");
/// guard.finish()?; // what dropping it at shutdown does: sign the stream's head
/// assert!(store.verified_trail(&custodian)?.is_fully_vouched());
/// # std::fs::remove_dir_all(&dir)?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Migrations — the crate's and, through [`Store::migrate`], the host's
/// own — run under a lock (SQLite's write lock; a PostgreSQL advisory
/// lock), so any number of processes may open one database at once.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
    checkpoints: DirCheckpointStore,
    anchor: DirAnchorStore,
    every: u64,
    describe: Arc<str>,
}

impl Store {
    /// Opens (or creates) the database `config` names and brings its tables
    /// up to date, and creates the checkpoint directory. Any number of
    /// processes may open one database at once.
    ///
    /// `Err(StoreError::Url)` for a URL of no known scheme, or of a database
    /// this build has no feature for (the message never repeats a
    /// password).
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let url = Url::parse(&config.url)?;
        let sqlite = match &url {
            Url::Sqlite(path) => Some(Path::new(*path)),
            _ => None,
        };
        out_of_reach(&config.checkpoints, sqlite)?;
        if config.host_url.is_some() && !matches!(url, Url::Postgres(_)) {
            return Err(StoreError::Url(format!(
                "{}: a host URL is for a PostgreSQL store (SQLite has no roles)",
                url.describe()
            )));
        }
        let describe: Arc<str> = url.describe().into();
        let db = match url {
            #[cfg(feature = "sqlite")]
            Url::Sqlite(path) => Database::Sqlite(SqliteStore::open_with(path, config.pool)?),
            #[cfg(feature = "sqlite")]
            Url::SqliteMemory => Database::Sqlite(SqliteStore::open_in_memory()?),
            #[cfg(feature = "postgres")]
            Url::Postgres(url) => Database::Postgres(match config.host_url.as_deref() {
                None => PgStore::connect_with(url, config.pool)?,
                Some(host) => match Url::parse(host)? {
                    Url::Postgres(host) => PgStore::connect_with_host(url, host, config.pool)?,
                    other => {
                        return Err(StoreError::Url(format!(
                            "{}: the host's connections must reach the store's PostgreSQL database",
                            other.describe()
                        )))
                    }
                },
            }),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(StoreError::Url(format!(
                "{describe}: this build has no store for it (cargo features `sqlite`, `postgres`)"
            )))
            }
        };
        let checkpoints_err = |e: std::io::Error| {
            StoreError::Checkpoints(format!("{}: {e}", config.checkpoints.display()))
        };
        let checkpoints = DirCheckpointStore::new(&config.checkpoints).map_err(checkpoints_err)?;
        let anchor = checkpoints.anchor().map_err(checkpoints_err)?;
        Ok(Store {
            db,
            checkpoints,
            anchor,
            every: config.every,
            describe,
        })
    }

    /// The database, for what only its own client does (the host's queries
    /// through `with_connection` or `with_client`).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The database's SQL dialect, for the host's statements that differ
    /// (see [`Dialect`]).
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The signed checkpoints' store (outside the database).
    pub fn checkpoint_store(&self) -> &DirCheckpointStore {
        &self.checkpoints
    }

    /// The database's URL for messages: `sqlite:PATH`, or `postgres://…`
    /// without anything after the scheme (it may hold a password).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Fills `builder` with this store's key store, consent store, audit
    /// sink (a fresh stream, checkpointed into the checkpoint directory every
    /// [`checkpoint_every`](StoreConfig::checkpoint_every) events), checkpoint
    /// store and freshness anchor, and builds the custodian. The builder
    /// must hold the [`keyring`](CustodianBuilder::keyring): the stream's
    /// audit key and checkpoint signer come from it. Everything else on the
    /// builder (bounds, facilities, recipients, a keyring store) is the
    /// host's.
    ///
    /// The [`CheckpointGuard`] signs the stream's head when dropped: keep
    /// it for as long as the custodian serves (to the end of `main`), so
    /// every way out leaves the trail vouched to its end.
    ///
    /// `Err(Error::Key)` without a keyring; `Err(Error::Store)` if the
    /// random generator fails.
    pub fn custodian(
        &self,
        builder: CustodianBuilder,
    ) -> Result<(Custodian, CheckpointGuard), Error> {
        self.custodian_wrapping(builder, |sink| sink)
    }

    /// [`custodian`](Self::custodian) with the store's audit sink passed
    /// through `wrap` before the custodian gets it: a sink that also sends
    /// each event to the host's log or metrics, say. Whatever `wrap`
    /// returns decides: an event it refuses is a use that does not happen.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
    /// use privacy_pledge::crypto::Keyring;
    /// use privacy_pledge::purpose::Newsletter;
    /// use privacy_pledge::store::{Store, StoreConfig};
    /// use privacy_pledge::{Custodian, SubjectId};
    ///
    /// /// Counts the events the store's sink accepted.
    /// struct Counted(Box<dyn AuditSink>, Arc<AtomicU64>);
    /// impl AuditSink for Counted {
    ///     fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
    ///         self.0.record(event)?;
    ///         self.1.fetch_add(1, Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # let dir = std::env::temp_dir().join(format!("pp-doc-wrap-{}", std::process::id()));
    /// let store = Store::open(&StoreConfig::new("sqlite::memory:", &dir))?;
    /// let count = Arc::new(AtomicU64::new(0));
    /// let (custodian, _guard) = store.custodian_wrapping(
    ///     Custodian::builder().keyring(Keyring::generate()?),
    ///     |sink| Box::new(Counted(sink, count.clone())),
    /// )?;
    /// custodian.consents().grant::<Newsletter>(SubjectId::random())?;
    /// assert_eq!(count.load(Ordering::Relaxed), 1);
    /// # drop(_guard);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn custodian_wrapping(
        &self,
        builder: CustodianBuilder,
        wrap: impl FnOnce(Box<dyn AuditSink>) -> Box<dyn AuditSink>,
    ) -> Result<(Custodian, CheckpointGuard), Error> {
        let keyring = builder
            .keyring_ref()
            .ok_or(crate::crypto::KeyError::Provider(
                "Store::custodian needs the builder's keyring (CustodianBuilder::keyring)".into(),
            ))?
            .clone();
        let builder = builder
            .checkpoint_store(self.checkpoints.clone())
            .freshness_anchor(self.anchor.clone());
        let signer = keyring.checkpoint_signer()?;
        // The same parts of either store.
        macro_rules! wire {
            ($s:expr) => {
                self.wire(
                    builder,
                    $s.audit_sink(keyring.audit_key())?,
                    $s.key_store(),
                    $s.consent_store(),
                    signer,
                    wrap,
                )
            };
        }
        match &self.db {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => wire!(s),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => wire!(s),
        }
    }

    fn wire<W: BatchWriter + 'static>(
        &self,
        builder: CustodianBuilder,
        sink: AuditStreamSink<W>,
        keys: impl KeyStore + 'static,
        consents: impl ConsentStore + 'static,
        signer: crate::audit::CheckpointSigner,
        wrap: impl FnOnce(Box<dyn AuditSink>) -> Box<dyn AuditSink>,
    ) -> Result<(Custodian, CheckpointGuard), Error> {
        let sink = Arc::new(sink.with_checkpoints(signer, self.checkpoints.clone(), self.every));
        let custodian = builder
            .key_store(keys)
            .consent_store(consents)
            .audit(wrap(Box::new(sink.clone())))
            .build()?;
        Ok((custodian, sink.checkpoint_guard()))
    }

    /// Every entry of the audit log ([`Database::trail`]).
    pub fn trail(&self) -> Result<Vec<AuditEvent>, StoreError> {
        self.db.trail()
    }

    /// Every consent row ([`Database::consents`]).
    pub fn consents(&self) -> Result<Vec<ConsentRecord>, StoreError> {
        self.db.consents()
    }

    /// The whole trail verified by `custodian` against the signed
    /// checkpoints of its checkpoint store (loaded before the trail is read).
    pub fn verified_trail(
        &self,
        custodian: &Custodian,
    ) -> Result<crate::audit::VerifiedTrail, Error> {
        super::verified_trail(custodian, || self.trail())
    }

    /// Brings the host's own tables up to date: runs the statements of
    /// `steps` not yet applied to the schema called `name` (each step one
    /// or more `;`-separated statements, applied once, in order), in one
    /// transaction under the lock the crate's own migrations take, so
    /// several processes starting at once apply each step exactly once.
    /// The applied count is kept in `pp_host_schema`. Returns how many
    /// steps ran now. Append steps; never edit or remove one that shipped.
    ///
    /// The SQL is the host's, so it is the database's dialect: choose
    /// `steps` by [`database`](Self::database) where the two differ.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use privacy_pledge::store::{Store, StoreConfig};
    ///
    /// # let dir = std::env::temp_dir().join(format!("pp-doc-migrate-{}", std::process::id()));
    /// let store = Store::open(&StoreConfig::new("sqlite::memory:", &dir))?;
    /// let steps = ["CREATE TABLE orders (id TEXT PRIMARY KEY, customer BLOB NOT NULL)"];
    /// assert_eq!(store.migrate("shop", &steps)?, 1);
    /// assert_eq!(store.migrate("shop", &steps)?, 0, "applied once");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// `Err(StoreError::NewerHostSchema)` if the database has more steps applied
    /// than `steps` holds (a newer version of the host ran on it).
    pub fn migrate(&self, name: &str, steps: &[&str]) -> Result<usize, StoreError> {
        match &self.db {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s.try_with_connection(|c| migrate_sqlite(c, name, steps))?,
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.try_with_client(|c| migrate_pg(c, name, steps))?,
        }
    }

    /// Runs the host's own statements (`;`-separated, no parameters) on a
    /// pooled connection. See [`sql`](super::sql) for the host's SQL on
    /// either database.
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.db {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s
                .try_with_connection(|c| c.execute_batch(sql))?
                .map_err(|e| StoreError::Database(e.to_string())),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s
                .try_with_client(|c| c.batch_execute(sql))?
                .map_err(super::sql::pg_err),
        }
    }

    /// Runs one of the host's statements with parameters `$1`, `$2`…
    /// (values of [`sql::Param`](super::sql::Param) types) on a pooled
    /// connection; returns the rows changed.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use privacy_pledge::store::{Store, StoreConfig};
    ///
    /// # let dir = std::env::temp_dir().join(format!("pp-doc-execute-{}", std::process::id()));
    /// let store = Store::open(&StoreConfig::new("sqlite::memory:", &dir))?;
    /// store.batch("CREATE TABLE orders (id TEXT PRIMARY KEY, cents INTEGER)")?;
    /// assert_eq!(store.execute("INSERT INTO orders VALUES ($1, $2)", &[&"o-1", &1250_i64])?, 1);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute(&self, sql: &str, params: &[&dyn super::sql::Param]) -> Result<u64, StoreError> {
        match &self.db {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => {
                s.try_with_connection(|c| super::sql::sqlite_execute(c, sql, params))?
            }
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.try_with_client(|c| {
                c.execute_typed(sql, &super::sql::postgres_params(params))
                    .map_err(super::sql::pg_err)
            })?,
        }
    }

    /// Runs one of the host's queries with parameters `$1`, `$2`… on a
    /// pooled connection and maps each row with `f`
    /// ([`sql::Row::get`](super::sql::Row::get) reads a column, and the
    /// `from_store_row` of a sealed record reads the record). The closure's
    /// error is a [`StoreError`], so `?` in it needs no annotation. See the
    /// [`sql`](super::sql) module for an example.
    pub fn query<R>(
        &self,
        sql: &str,
        params: &[&dyn super::sql::Param],
        f: impl FnMut(&super::sql::Row<'_>) -> Result<R, StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        match &self.db {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => {
                s.try_with_connection(|c| super::sql::sqlite_query(c, sql, params, f))?
            }
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.try_with_client(|c| {
                let mut f = f;
                let rows = c
                    .query_typed(sql, &super::sql::postgres_params(params))
                    .map_err(super::sql::pg_err)?;
                rows.iter()
                    .map(|r| f(&super::sql::Row::Postgres(r)))
                    .collect()
            })?,
        }
    }

    /// One request in one durable commit, on either database: `f` as a
    /// request scope of `custodian`, then `write` — the host's own rows,
    /// made from `f`'s result — in one transaction whose commit is the only
    /// one that waits for the disk. The argument and the details are
    /// [`SqliteStore::commit_request`](crate::store::sqlite::SqliteStore::commit_request)'s
    /// and [`PgStore::commit_request`](crate::store::postgres::PgStore::commit_request)'s.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    /// use privacy_pledge::store::{Store, StoreConfig};
    /// use privacy_pledge::{Custodian, PersonalInfo};
    ///
    /// # let dir = std::env::temp_dir().join(format!("pp-doc-commit-{}", std::process::id()));
    /// let store = Store::open(&StoreConfig::new("sqlite::memory:", &dir))?;
    /// let builder = Custodian::builder().keyring(privacy_pledge::crypto::Keyring::generate()?);
    /// let (custodian, _guard) = store.custodian(builder)?;
    /// store.batch("CREATE TABLE customers (subject BLOB, email BLOB)")?;
    ///
    /// let ada = custodian.new_subject()?; // a sign-up: a new id
    /// store.commit_request(
    ///     &custodian,
    ///     || -> Result<_, Box<dyn std::error::Error>> {
    ///         let email: PersonalInfo<EmailAddress, Transaction> =
    ///             custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    ///         Ok(custodian.seal(&email)?)
    ///     },
    ///     |tx, sealed| {
    ///         tx.execute("INSERT INTO customers VALUES ($1, $2)", &[&ada, sealed])?;
    ///         Ok(())
    ///     },
    /// )?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_request<T, E>(
        &self,
        custodian: &Custodian,
        f: impl FnOnce() -> Result<T, E>,
        write: impl FnOnce(&mut super::sql::Tx<'_, '_>, &T) -> Result<(), E>,
    ) -> Result<T, E>
    where
        E: From<Error> + From<StoreError>,
    {
        match &self.db {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s.commit_request(custodian, f, |tx, value| {
                write(&mut super::sql::Tx::Sqlite(tx), value)
            }),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.commit_request(custodian, f, |tx, value| {
                write(&mut super::sql::Tx::Postgres(tx), value)
            }),
        }
    }
}

/// Which of `steps` remain after `found` were applied.
fn remaining<'s>(found: i64, steps: &'s [&'s str]) -> Result<&'s [&'s str], StoreError> {
    let found = usize::try_from(found).unwrap_or(usize::MAX);
    steps.get(found..).ok_or(StoreError::NewerHostSchema {
        found,
        known: steps.len(),
    })
}

#[cfg(feature = "sqlite")]
fn migrate_sqlite(
    conn: &mut rusqlite::Connection,
    name: &str,
    steps: &[&str],
) -> Result<usize, StoreError> {
    use rusqlite::OptionalExtension;
    let db = |e: rusqlite::Error| StoreError::Database(e.to_string());
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS pp_host_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )
    .map_err(db)?;
    let found: i64 = tx
        .query_row(
            "SELECT version FROM pp_host_schema WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?
        .unwrap_or(0);
    let todo = remaining(found, steps)?;
    for sql in todo {
        tx.execute_batch(sql).map_err(db)?;
    }
    tx.execute(
        "INSERT INTO pp_host_schema (name, version) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version",
        rusqlite::params![name, steps.len() as i64],
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(todo.len())
}

/// The advisory lock the host's migrations run under (not the crate's own:
/// the host's steps may take their time without holding up a new process's
/// crate migration).
#[cfg(feature = "postgres")]
const HOST_MIGRATION_LOCK: i64 = 0x7070_5f68_6f73_7473;

#[cfg(feature = "postgres")]
fn migrate_pg(
    client: &mut postgres::Client,
    name: &str,
    steps: &[&str],
) -> Result<usize, StoreError> {
    let db = |e: postgres::Error| super::postgres::db_err(e);
    let mut tx = client.transaction().map_err(db)?;
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock($1)",
        &[&HOST_MIGRATION_LOCK],
    )
    .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pp_host_schema (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    )
    .map_err(db)?;
    let found: i64 = tx
        .query_opt(
            "SELECT version FROM pp_host_schema WHERE name = $1",
            &[&name],
        )
        .map_err(db)?
        .map_or(0, |r| r.get(0));
    let todo = remaining(found, steps)?;
    for sql in todo {
        tx.batch_execute(sql).map_err(db)?;
    }
    tx.execute(
        "INSERT INTO pp_host_schema (name, version) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version",
        &[&name, &(steps.len() as i64)],
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(todo.len())
}
