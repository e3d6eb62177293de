//! Request scopes: the audit events of one request committed together, in
//! one durable transaction, still before anything they describe takes
//! effect outside the process.
//!
//! A sign-up collects and seals four fields: eight audit events. Offered to
//! a durable sink one by one, each is its own commit (an `fsync` on SQLite,
//! a round trip and a WAL flush on PostgreSQL), and the request waits for
//! all eight. Inside [`Custodian::request`], a custodian over a sink whose
//! batches are one commit ([`AuditSink::atomic_batches`](crate::audit::AuditSink::atomic_batches),
//! the stores' durable sinks) **stages** the events of this thread's uses
//! instead, and commits them once, when the closure returns.
//!
//! # Why that is still "recorded before it happens" (R10)
//!
//! What a use does is either visible only to the code inside the scope, or
//! it leaves the process. The scope commits each kind before it can matter:
//!
//! - **What stays inside the custodian's types** — a collected value, an
//!   opened one, a sealed envelope, a pseudonym, a refusal — is staged.
//!   None of it shows plaintext: reading a value takes `access` or a
//!   disclosure, each a commit of its own (below). The closure's result is
//!   handed over only after the staged events are committed; if the commit
//!   fails, the result is dropped and the host gets [`Error::Audit`]: as if
//!   the first use had been refused. Only the result: a value the closure
//!   stored elsewhere (a variable captured from outside) is not taken back,
//!   and the event of its making (collect, open, seal) is lost with the
//!   commit. Keep what a scope makes inside its result, and use it once
//!   the scope has returned `Ok` (every later read of it is audited on its
//!   own).
//! - **What reaches host code or leaves the process, or cannot be taken
//!   back** — plaintext handed to `access`'s closure (which may copy it
//!   anywhere, a variable outside the scope included), a repurposing (the
//!   value under its new purpose can be kept the same way, and used for
//!   that purpose with no record of the move), a disclosure to a
//!   recipient (plaintext or pseudonym), an approved transfer, an erasure,
//!   a consent change (written to the consent store and the freshness
//!   anchor, seen by every process), a key rotation — commits everything
//!   staged so far together with its own event *before* it takes effect,
//!   exactly as outside a scope: a failure refuses it.
//!
//! So a use that had an effect outside the process is durable in the trail
//! before that effect; a use without one is durable before its result leaves
//! the closure.
//!
//! # One durable commit
//!
//! On the crate's stores the scope's commit can carry more of the request.
//! A new subject's key and the lookup tokens noted for it inside a scope are
//! written without a flush of their own when the key store and the sink are
//! one database ([`DatabaseId`]): the scope's commit, later on the same
//! write-ahead log, flushes them. And `commit_request` of
//! [`SqliteStore`](crate::store::sqlite::SqliteStore::commit_request) and
//! [`PgStore`](crate::store::postgres::PgStore::commit_request) writes the
//! host's own rows in one more transaction after the scope's commit, which
//! is then made without a flush too: the host's transaction is the request's
//! only durable commit. (It always writes something of its own — on
//! SQLite a counter in `pp_commit_marks`, on PostgreSQL a message in the
//! write-ahead log: both databases skip the flush at the commit of a
//! transaction that changed nothing in the log, and the host's write may
//! have written nothing, or only a temporary table.) The order is what
//! keeps R10: events committed (visible to every process) before the
//! host's rows are written; the log made durable in order, so a power cut
//! never keeps a row whose events it lost; nothing handed back before the
//! durable commit. (A log made durable in order covers what came before
//! only on the same server's run: a PostgreSQL server that crashes in
//! between, and comes back, loses the writes that were not flushed, and
//! the durable commit then flushes a log without them. The PostgreSQL
//! store counts the connections it opens again, and a request during
//! which that happened fails; see its module docs.) Such a key, or such a
//! noted token, is cached at once, and a use on another thread outside
//! any request scope of the custodian may rely on it before the scope's
//! durable commit comes (or if it never does): that use's result leaves at
//! once. So such a use has the store make what it holds durable first
//! ([`KeyStore::make_durable`](crate::crypto::KeyStore::make_durable): one
//! durable commit, once for all such writes so far), and one after a
//! connection was opened again since the write drops what was cached of
//! it and reads (or writes) it anew. A use inside a scope relies on its
//! scope's own end instead. (Another custodian's such key, read from the
//! store, is never sealed under before a durable write made after the
//! read: a custodian seals only under a generation it reserved uses of
//! itself, and a reservation waits for the disk.) A signed checkpoint
//! due at the scope's batch leaves the database (into the checkpoint
//! store, where a power cut cannot take it back) only after that durable
//! commit, and never if the host's write fails: the next batch then signs
//! one. Host code that sends something
//! out of the process by its own means from inside the scope (writes a
//! sealed row to its database, calls a service) commits first with
//! [`Custodian::flush_request`], or does it after [`Custodian::request`]
//! returns — with what the closure returned.
//!
//! # The stream stays whole
//!
//! Staged events are chained when they are committed, not when they are
//! staged: the sink gives them the stream's next sequence numbers as one
//! contiguous run and writes them in one transaction, all or none. Scopes on
//! several threads, and plain calls beside them, therefore never interleave
//! into a gap; a failed commit stores none of the run, assigns no number
//! twice, and (on the stores' sinks) moves the sink to a new stream, as any
//! failed commit does. An event keeps the time of its use, so within a
//! stream the times of one request's events may be earlier than those of an
//! event another thread committed just before them.
//!
//! # Scopes, threads and panics
//!
//! - A scope is per thread and per custodian: uses on other threads (or of
//!   another custodian) inside the closure are recorded as outside a scope.
//! - A scope inside a scope of the same custodian joins the outer one, and
//!   commits what is staged so far before its own result leaves: whoever
//!   called it may be code that merely runs on this thread while the outer
//!   closure waits, such as another task of a single-threaded executor the
//!   closure blocks on, and may send that result on at once.
//! - Such code is inside the scope all the same: its uses *outside* a
//!   `request` of its own are staged with the closure's, and committed
//!   when the scope ends (or at the next commit point) — not before that
//!   code goes on. So a closure does not block on an executor whose other
//!   tasks use the custodian, nor lend its thread to a pool's stolen work
//!   (`rayon`'s `join` and parallel iterators), unless those tasks make
//!   their uses inside a `request` of their own (or call
//!   [`Custodian::flush_request`] before anything leaves).
//! - If the closure panics, the staged events are committed (the uses
//!   happened, and the host may catch the panic, whose payload may carry
//!   what they made) and the panic goes on. If that commit fails, none of
//!   them is stored, the stream stays whole, and the payload is dropped
//!   unseen, as a result is: a panic saying the events could not be
//!   recorded goes on in its place.
//! - If a commit inside the scope (a disclosure's, say) fails, the use is
//!   refused, and the scope ends in `Err` even if the closure swallowed the
//!   error: its result was made next to uses the trail may lack.
//! - From inside host code called by the crate (an audit sink, a key store,
//!   a store's `with_connection`) a scope is refused with
//!   [`Error::Reentrant`], like every operation.
//! - Over a sink whose batches are not one commit (the in-memory logs,
//!   `JsonLinesSink`, a host's own sink by default) nothing is staged: every
//!   event is recorded before its use, one by one, as without a scope.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use std::sync::Arc;
//! use privacy_pledge::data::{EmailAddress, FullName};
//! use privacy_pledge::purpose::Transaction;
//! use privacy_pledge::store::sqlite::SqliteStore;
//! use privacy_pledge::{Custodian, Error};
//!
//! let store = SqliteStore::open_in_memory()?;
//! let sink = Arc::new(store.audit_sink(privacy_pledge::audit::AuditKey::generate()?)?);
//! let custodian = Custodian::builder().audit(sink.clone()).build()?;
//!
//! let ada = custodian.new_subject()?; // a sign-up: a new id
//! let (name, email) = custodian.request(|| {
//!     let name = custodian.collect::<FullName, Transaction>(ada, FullName::parse("Ada Lovelace")?)?;
//!     let email = custodian.collect::<EmailAddress, Transaction>(ada, EmailAddress::parse("ada@example.com")?)?;
//!     Ok::<_, Box<dyn std::error::Error>>((custodian.seal(&name)?, custodian.seal(&email)?))
//! })?;
//! assert_eq!((sink.events(), sink.commits()), (4, 1)); // four events, one commit
//! # drop((name, email));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::audit::{Action, AuditError, AuditEvent};
use crate::{Custodian, Error};

/// The events of one open scope.
struct Scope {
    custodian: u64,
    staged: Vec<AuditEvent>,
    /// A commit inside the scope failed: the scope ends in `Err`.
    failed: Option<AuditError>,
}

thread_local! {
    /// How many scopes are open on this thread: the fast path of every
    /// audited use outside one reads only this.
    static OPEN: Cell<usize> = const { Cell::new(0) };
    static SCOPES: RefCell<Vec<Scope>> = const { RefCell::new(Vec::new()) };
}

/// Whether an event of `action` describes an effect that reaches host code
/// (plaintext handed to `access`'s closure, which may copy it out of the
/// scope), leaves the process, or cannot be taken back: then it and
/// everything staged before it are committed before the effect. A
/// repurposing is one: the value it retags can be kept past a failed
/// scope, and used for its new purpose with no record of the move.
fn leaves_process(action: Action) -> bool {
    match action {
        Action::Access
        | Action::Disclose
        | Action::Repurpose
        | Action::Transfer
        | Action::Erase
        | Action::ConsentGranted
        | Action::ConsentWithdrawn
        | Action::ConsentRestored
        | Action::KeysRotated
        | Action::AnchorCompacted => true,
        Action::Collect | Action::Seal | Action::Open | Action::Report => false,
    }
}

/// What [`stage`] did with an event.
pub(crate) enum Staging {
    /// No scope of this custodian is open here: record it as usual.
    Record(AuditEvent),
    /// Staged; the use may go ahead.
    Staged,
    /// Commit these (what was staged, then the event) before the use.
    Commit(Vec<AuditEvent>),
}

/// Stages `event` in this thread's open scope of custodian `id`, if there is
/// one. A refusal (`refusal`) is always staged: nothing leaves with it.
pub(crate) fn stage(id: u64, event: AuditEvent, refusal: bool) -> Staging {
    if OPEN.with(Cell::get) == 0 {
        return Staging::Record(event);
    }
    SCOPES.with(|s| {
        let mut scopes = s.borrow_mut();
        let Some(scope) = scopes.iter_mut().rev().find(|s| s.custodian == id) else {
            return Staging::Record(event);
        };
        let flush = !refusal && leaves_process(event.action());
        scope.staged.push(event);
        if flush {
            Staging::Commit(std::mem::take(&mut scope.staged))
        } else {
            Staging::Staged
        }
    })
}

/// Takes what this thread's scope of custodian `id` has staged (nothing
/// outside one).
pub(crate) fn take(id: u64) -> Vec<AuditEvent> {
    if OPEN.with(Cell::get) == 0 {
        return Vec::new();
    }
    SCOPES.with(|s| {
        s.borrow_mut()
            .iter_mut()
            .rev()
            .find(|s| s.custodian == id)
            .map(|s| std::mem::take(&mut s.staged))
            .unwrap_or_default()
    })
}

/// Notes a failed commit in this thread's scope of custodian `id`.
pub(crate) fn failed(id: u64, error: &AuditError) {
    SCOPES.with(|s| {
        if let Some(scope) = s.borrow_mut().iter_mut().rev().find(|s| s.custodian == id) {
            scope.failed.get_or_insert_with(|| error.clone());
        }
    });
}

/// Which database a key store or an audit sink writes to: equal for the
/// key store and the sink of one store (`SqliteStore`, `PgStore`,
/// `store::Store`), so that a custodian over both knows its request scope's
/// audit commit is a commit of the same database.
///
/// Why it matters: inside a [request scope](crate::Custodian::request)
/// nothing a use made leaves the closure before the scope's audit events
/// are committed, durably. So a key store on the *same* database may write
/// a new subject's key, and the lookup tokens and pseudonyms it notes,
/// without a durable commit of their own (SQLite: `synchronous = NORMAL`
/// for that transaction; PostgreSQL: `synchronous_commit = off`): the
/// scope's durable commit comes later on the same write-ahead log, which is
/// made durable in order, so it makes them durable too — and if power fails
/// first, they are lost together with everything that could have needed
/// them. One durable commit per request instead of three.
///
/// Only the crate's stores answer with one
/// ([`KeyStore::database`](crate::crypto::KeyStore::database),
/// [`AuditSink::database`](crate::audit::AuditSink::database)); a host's own
/// key store or sink answers `None`, and every write stays durable on its
/// own.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use privacy_pledge::audit::{AuditKey, AuditSink};
/// use privacy_pledge::crypto::{KeyStore, MemoryKeyStore};
/// use privacy_pledge::store::sqlite::SqliteStore;
///
/// let store = SqliteStore::open_in_memory()?;
/// let sink = store.audit_sink(AuditKey::generate()?)?;
/// assert!(sink.database().is_some());
/// assert_eq!(store.key_store().database(), sink.database());
/// let other = SqliteStore::open_in_memory()?;
/// assert_ne!(other.key_store().database(), sink.database());
/// assert_eq!(MemoryKeyStore::new().database(), None);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatabaseId(usize);

impl DatabaseId {
    /// The id of the database whose connections `conns` are (their
    /// address: one per opened store, shared by its clones).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn of<T>(conns: &std::sync::Arc<T>) -> Self {
        DatabaseId(std::sync::Arc::as_ptr(conns) as *const () as usize)
    }
}

thread_local! {
    /// The database whose writes may skip their own durable commit on this
    /// thread now (see [`DatabaseId`]).
    static DEFERRED: Cell<Option<DatabaseId>> = const { Cell::new(None) };
}

/// Runs `f` (a key store call of custodian `id`) with the durability of
/// writes to `db` deferred to the scope's commit — if the custodian's sink
/// commits to `db`, and this thread's scope of that custodian has staged
/// events: those are committed (durably) after `f`, at the latest when the
/// scope closes, and before anything leaves it. (A scope with nothing
/// staged may commit nothing: then `f` writes durably itself.)
pub(crate) fn deferring<R>(id: u64, db: Option<DatabaseId>, f: impl FnOnce() -> R) -> R {
    match db.filter(|_| has_staged(id)) {
        Some(db) => with_deferred(db, f),
        None => f(),
    }
}

/// Runs `f` with the durability of writes to `db` deferred.
pub(crate) fn with_deferred<R>(db: DatabaseId, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<DatabaseId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEFERRED.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DEFERRED.with(|d| d.replace(Some(db))));
    f()
}

/// Whether a write to `db` on this thread now may skip its own durable
/// commit (asked by the crate's key stores).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn durability_deferred(db: DatabaseId) -> bool {
    DEFERRED.with(Cell::get) == Some(db)
}

/// A count of how many times a store's connections were opened again (see
/// [`note_scope_start`]).
#[cfg(feature = "postgres")]
pub(crate) type Reopened = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// The count of each PostgreSQL store, by its database, for the custodians
/// whose key store it is ([`reopened_of`]).
#[cfg(feature = "postgres")]
static REOPENED: std::sync::Mutex<
    Vec<(DatabaseId, std::sync::Weak<std::sync::atomic::AtomicU64>)>,
> = std::sync::Mutex::new(Vec::new());

/// Registers the count of the store whose database is `db`.
#[cfg(feature = "postgres")]
pub(crate) fn register_reopened(db: DatabaseId, reopened: &Reopened) {
    let mut all = REOPENED.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(_, r)| r.strong_count() > 0);
    all.push((db, std::sync::Arc::downgrade(reopened)));
}

/// The count registered for the store whose database is `db`, if it lives.
#[cfg(feature = "postgres")]
pub(crate) fn reopened_of(db: DatabaseId) -> Option<Reopened> {
    let all = REOPENED.lock().unwrap_or_else(|p| p.into_inner());
    all.iter()
        .rev()
        .find(|(d, _)| *d == db)
        .and_then(|(_, r)| r.upgrade())
}

#[cfg(feature = "postgres")]
thread_local! {
    /// For each custodian with a scope open on this thread whose writes to
    /// its store may skip their own durable commit: the store's count, and
    /// its value when the scope began (see [`note_scope_start`]).
    static UNFLUSHED: RefCell<Vec<(u64, Reopened, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Notes, as a scope of custodian `id` begins, how many times the store
/// its writes may skip their own durable commit on (a new key, a noted
/// token; in `commit_request` the scope's events) had its connections
/// opened again. The scope's durable commit is to flush those writes. A
/// server that crashes (or a standby promoted) in between loses them, and
/// the store's connections are then opened again on the server that came
/// back, whose flush reports success without them: the count moves, and
/// [`deferred_writes_kept`] says so. The note is taken at the start, not
/// at the scope's own writes: a seal with a key another thread's scope
/// made, not yet flushed, relies on a write the crash may lose too. (A
/// connection opened again for another cause — an idle timeout — moves it
/// as well: the request then fails when it need not.)
#[cfg(feature = "postgres")]
pub(crate) fn note_scope_start(id: u64, reopened: &Reopened) {
    use std::sync::atomic::Ordering;
    UNFLUSHED.with(|u| {
        let mut u = u.borrow_mut();
        if !u.iter().any(|(c, _, _)| *c == id) {
            u.push((id, reopened.clone(), reopened.load(Ordering::SeqCst)));
        }
    });
}

/// Whether the store custodian `id`'s scope on this thread noted has not
/// had its connections opened again since ([`note_scope_start`]): asked
/// just before the scope's durable commit, or once it returned; then that
/// commit, later on the same server's log, flushes the scope's writes.
pub(crate) fn deferred_writes_kept(id: u64) -> bool {
    #[cfg(feature = "postgres")]
    {
        use std::sync::atomic::Ordering;
        UNFLUSHED.with(|u| {
            u.borrow()
                .iter()
                .filter(|(c, _, _)| *c == id)
                .all(|(_, r, at)| r.load(Ordering::SeqCst) == *at)
        })
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = id;
        true
    }
}

/// Whether `custodian`'s scope writes are kept ([`deferred_writes_kept`])
/// after the durable commit that was to flush them, `Ok` or not
/// (`committed`); if not, or if that commit failed, the custodian forgets
/// the keys and noted tokens it cached, which may be among the lost.
/// `end`: the scope ends, and its note with it.
fn check_deferred(custodian: &Custodian, committed: bool, end: bool) -> bool {
    let kept = deferred_writes_kept(custodian.id);
    #[cfg(feature = "postgres")]
    {
        let had = UNFLUSHED.with(|u| {
            let mut u = u.borrow_mut();
            let had = u.iter().any(|(c, _, _)| *c == custodian.id);
            if end {
                u.retain(|(c, _, _)| *c != custodian.id);
            }
            had
        });
        if had && !(committed && kept) {
            custodian.forget_cached_keys();
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = (committed, end);
    kept
}

/// Fails the scope (or the flush of it, `end` false) that `committed`
/// ends unless its writes that did not wait for the disk are still there
/// (see [`check_deferred`]).
fn kept_or_failed(
    custodian: &Custodian,
    committed: Result<(), AuditError>,
    end: bool,
) -> Result<(), AuditError> {
    if check_deferred(custodian, committed.is_ok(), end) {
        return committed;
    }
    committed?;
    Err(AuditError::new(
        "the database's connections were opened again during the request (a server restart \
         or failover?): what it wrote without waiting for the disk, such as a new key, may \
         be lost, so nothing of it leaves",
    ))
}

/// Work left for after a durable commit to one database.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
type Waiting = Option<(DatabaseId, Vec<Box<dyn FnOnce()>>)>;

thread_local! {
    /// Work this thread's deferred writes left for after the durable
    /// commit its request makes next to a database (see [`AfterDurable`]).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    static AFTER_DURABLE: RefCell<Waiting> = const { RefCell::new(None) };
}

/// What a request's deferred writes leave for after its durable commit to
/// one database: a signed checkpoint of a batch written without a sync,
/// which must not leave the database (into the checkpoint store) before
/// that batch is durable. Held by [`Custodian::request_then`] across the
/// scope's deferred commit and `then`: [`run`](Self::run) once `then` has
/// committed durably; dropped unrun otherwise (the work is then never done:
/// a checkpoint not kept is signed again by a later batch).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct AfterDurable {
    previous: Waiting,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl AfterDurable {
    pub(crate) fn begin(db: DatabaseId) -> Self {
        AfterDurable {
            previous: AFTER_DURABLE.with(|a| a.replace(Some((db, Vec::new())))),
        }
    }

    /// The durable commit is made: does the work left for it, in order.
    pub(crate) fn run(self) {
        let work = AFTER_DURABLE.with(|a| {
            a.borrow_mut()
                .as_mut()
                .map(|(_, work)| std::mem::take(work))
                .unwrap_or_default()
        });
        for w in work {
            w();
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Drop for AfterDurable {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Ours, unrun if `run` was not called, dropped outside the borrow.
        let _ours = AFTER_DURABLE.with(|a| a.replace(previous));
    }
}

/// Whether work may wait, on this thread now, for a durable commit to `db`
/// still to come: writes to `db` are deferred (see [`with_deferred`]) and a
/// request collects work for its durable commit (see [`AfterDurable`]).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn waits_for_durable(db: DatabaseId) -> bool {
    durability_deferred(db)
        && AFTER_DURABLE.with(|a| matches!(*a.borrow(), Some((d, _)) if d == db))
}

/// Leaves `work` for after this thread's next durable commit to `db`, if
/// [`waits_for_durable`]; otherwise hands it back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn after_durable(
    db: DatabaseId,
    work: Box<dyn FnOnce()>,
) -> Result<(), Box<dyn FnOnce()>> {
    if !durability_deferred(db) {
        return Err(work);
    }
    AFTER_DURABLE.with(|a| match a.borrow_mut().as_mut() {
        Some((d, pending)) if *d == db => {
            pending.push(work);
            Ok(())
        }
        _ => Err(work),
    })
}

/// Whether this thread's scope of custodian `id` holds staged events.
fn has_staged(id: u64) -> bool {
    OPEN.with(Cell::get) > 0
        && SCOPES.with(|s| {
            s.borrow()
                .iter()
                .rev()
                .find(|s| s.custodian == id)
                .is_some_and(|s| !s.staged.is_empty())
        })
}

/// Whether this thread has a scope of custodian `id` open.
pub(crate) fn is_open(id: u64) -> bool {
    OPEN.with(Cell::get) > 0 && SCOPES.with(|s| s.borrow().iter().any(|s| s.custodian == id))
}

/// An open scope of one custodian on this thread. Closing it commits what
/// it staged; dropping it unclosed (a panic in the closure) commits too.
pub(crate) struct Open<'a> {
    custodian: &'a Custodian,
    closed: bool,
}

impl<'a> Open<'a> {
    pub(crate) fn new(custodian: &'a Custodian) -> Self {
        SCOPES.with(|s| {
            s.borrow_mut().push(Scope {
                custodian: custodian.id,
                staged: Vec::new(),
                failed: None,
            })
        });
        OPEN.with(|o| o.set(o.get() + 1));
        #[cfg(feature = "postgres")]
        if let Some(reopened) = custodian.deferral_reopened() {
            note_scope_start(custodian.id, reopened);
        }
        Open {
            custodian,
            closed: false,
        }
    }

    /// Ends the scope: commits what it staged. `Err` if that commit, or one
    /// inside the scope, failed.
    pub(crate) fn close(self) -> Result<(), AuditError> {
        self.close_deferring(None)
    }

    /// [`close`](Self::close), its commit's durability deferred to a
    /// durable write to `db` that the caller makes next (see
    /// [`Custodian::request_then`]).
    pub(crate) fn close_deferring(mut self, db: Option<DatabaseId>) -> Result<(), AuditError> {
        self.closed = true;
        let scope = self.pop();
        let committed = match db {
            // The durable commit that follows checks (`PgStore::commit_request`).
            Some(db) => with_deferred(db, || self.custodian.commit_staged(&scope.staged)),
            None => {
                let point = self.custodian.key_flush_point();
                let committed = kept_or_failed(
                    self.custodian,
                    self.custodian.commit_staged(&scope.staged),
                    true,
                );
                // A durable commit (the scope's events, to the database
                // its keys were written to without one, if any were).
                if committed.is_ok() && !scope.staged.is_empty() {
                    self.custodian.keys_flushed_to(point);
                }
                committed
            }
        };
        match scope.failed {
            Some(e) => Err(e),
            None => committed,
        }
    }

    fn pop(&self) -> Scope {
        OPEN.with(|o| o.set(o.get().saturating_sub(1)));
        SCOPES.with(|s| {
            let mut scopes = s.borrow_mut();
            let i = scopes
                .iter()
                .rposition(|s| s.custodian == self.custodian.id)
                .expect("an open scope is on its thread's list");
            scopes.remove(i)
        })
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // The closure panicked: its uses happened, so their events are
        // committed on the way out. A panicking sink must not turn the
        // unwinding into an abort; a failed commit stores none of them.
        let scope = self.pop();
        let custodian = self.custodian;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            custodian.commit_staged(&scope.staged)
        }));
    }
}

/// Goes on with the panic `payload` of a scope's closure once `committed`
/// says the events of its uses are recorded (durably: the host may catch
/// the panic, and the payload may carry what the uses made). If they are
/// not, the payload is dropped unseen — as a result is when the commit
/// fails — and a panic saying so takes its place.
pub(crate) fn resume_if_recorded(
    payload: Box<dyn std::any::Any + Send>,
    committed: Result<&(), &impl std::fmt::Display>,
) -> ! {
    match committed {
        Ok(()) => std::panic::resume_unwind(payload),
        Err(e) => {
            // A payload whose drop panics must not abort the process.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            panic!(
                "a request scope's closure panicked, and the audit events of its uses could not be recorded: {e}"
            )
        }
    }
}

impl Custodian {
    /// Runs `f` — the custodian calls of one request — as one **request
    /// scope**: the audit events of its uses on this thread are committed
    /// together, once, when `f` returns, and `f`'s result is returned only
    /// after that commit succeeded. Disclosures, transfers, erasures,
    /// consent changes and key rotations inside `f` still commit (what was
    /// staged, and their own event) before they take effect. The argument
    /// for why this keeps every use recorded before it happens is in the
    /// [module docs](crate::request).
    ///
    /// If the commit fails (or one inside the scope did), `f`'s result is
    /// dropped unseen and the host gets [`Error::Audit`] (converted into
    /// `E`); if `f` returns `Err`, its events are committed and its error
    /// returned. Over a sink whose batches are not one commit
    /// ([`AuditSink::atomic_batches`](crate::audit::AuditSink::atomic_batches)
    /// is `false`), every event is recorded before its use as without a
    /// scope, and `request` just runs `f`. A scope inside a scope of the
    /// same custodian joins it, and commits what is staged so far before
    /// returning (see "Scopes, threads and panics" in the
    /// [module docs](crate::request)). Refused with [`Error::Reentrant`]
    /// from inside host code the crate calls.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use std::sync::Arc;
    /// use privacy_pledge::audit::AuditKey;
    /// use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress};
    /// use privacy_pledge::purpose::Transaction;
    /// use privacy_pledge::store::sqlite::SqliteStore;
    /// use privacy_pledge::{Custodian, Error};
    ///
    /// let store = SqliteStore::open_in_memory()?;
    /// let sink = Arc::new(store.audit_sink(AuditKey::generate()?)?);
    /// let custodian = Custodian::builder().audit(sink.clone()).key_store(store.key_store()).build()?;
    ///
    /// // A sign-up: four fields collected and sealed, eight events, one commit.
    /// let ada = custodian.new_subject()?;
    /// let sealed = custodian.request(|| -> Result<_, Error> {
    ///     let name = custodian.collect::<FullName, Transaction>(ada, FullName::parse("Ada Lovelace").unwrap())?;
    ///     let email = custodian.collect::<EmailAddress, Transaction>(ada, EmailAddress::parse("ada@example.com").unwrap())?;
    ///     let address = custodian.collect::<PostalAddress, Transaction>(ada, PostalAddress::parse("1 Road\nYork YO1 7HH\nGB").unwrap())?;
    ///     let phone = custodian.collect::<PhoneNumber, Transaction>(ada, PhoneNumber::parse("+44 20 7946 0958").unwrap())?;
    ///     Ok((
    ///         custodian.seal(&name)?,
    ///         custodian.seal(&email)?,
    ///         custodian.seal(&address)?,
    ///         custodian.seal(&phone)?,
    ///     ))
    /// })?;
    /// assert_eq!((sink.events(), sink.commits()), (8, 1));
    /// assert_eq!(store.trail()?.len(), 8);
    /// # drop(sealed);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request<T, E: From<Error>>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        crate::reentry::check()?;
        if !self.batches {
            return f();
        }
        if is_open(self.id) {
            // Joining a scope: what it staged so far, and `f`'s events,
            // are committed before `f`'s result leaves, as at the end of a
            // scope of its own. (Code that merely runs on this thread while
            // the outer closure waits — another task of an executor it
            // blocks on — may take its result out of that closure.) A
            // panic of `f` is a result too: its payload goes on only once
            // the events are committed.
            let out = catch_unwind(AssertUnwindSafe(f));
            let flushed = self.flush_request();
            let out = out.unwrap_or_else(|payload| resume_if_recorded(payload, flushed.as_ref()));
            return match flushed {
                Ok(()) => out,
                Err(e) => {
                    drop(out);
                    Err(e.into())
                }
            };
        }
        let scope = Open::new(self);
        let out = catch_unwind(AssertUnwindSafe(f));
        let committed = scope.close();
        let out = out.unwrap_or_else(|payload| resume_if_recorded(payload, committed.as_ref()));
        match committed {
            Ok(()) => out,
            Err(e) => {
                drop(out);
                Err(Error::Audit(e).into())
            }
        }
    }

    /// [`request`](Self::request), then `then` with its result: a durable
    /// write of the host's to the database `db`, which the stores make in
    /// one transaction ([`SqliteStore::commit_request`](crate::store::sqlite::SqliteStore::commit_request)).
    /// If this custodian's sink commits to `db` too, the scope's commit is
    /// made without waiting for the disk: `then`'s durable commit, later on
    /// the same log, makes both durable at once — and nothing left the
    /// scope before it. If power fails first, both are lost, and with them
    /// only uses whose results never left the process.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn request_then<T, E: From<Error>>(
        &self,
        db: DatabaseId,
        f: impl FnOnce() -> Result<T, E>,
        then: impl FnOnce(&T) -> Result<(), E>,
    ) -> Result<T, E> {
        crate::reentry::check()?;
        if !self.batches || is_open(self.id) {
            // Inside an outer scope: its events so far, and `f`'s, are
            // committed, durably, before the host's write (or `f`'s error)
            // leaves.
            let out = self.request(f);
            let value = out?;
            then(&value)?;
            return Ok(value);
        }
        let deferred = (self.sink.database() == Some(db)).then_some(db);
        let after = AfterDurable::begin(db);
        let scope = Open::new(self);
        let out = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(out) => out,
            // A panic goes back to the host now: committed durably first.
            Err(payload) => resume_if_recorded(payload, scope.close().as_ref()),
        };
        // Only a result that goes on to `then` may wait for its durable
        // commit: an `Err` of `f` (which may carry what `f` made) goes back
        // to the host now, so the scope's commit must reach the disk itself.
        let deferred = deferred.filter(|_| out.is_ok());
        let point = self.key_flush_point();
        let done = match scope.close_deferring(deferred) {
            // `then` makes a durable commit on the same log whether the
            // host's write succeeds or fails: the scope's deferred commit,
            // earlier on that log, is durable before either result (the
            // host's error may carry what `f` made) leaves. Before its
            // commit it checks that the scope's writes that did not wait
            // for the disk are still there (`PgStore::commit_request`).
            Ok(()) => out.and_then(|value| then(&value).map(|()| value)),
            Err(e) => {
                drop(out);
                Err(Error::Audit(e).into())
            }
        };
        let kept = check_deferred(self, done.is_ok(), true);
        if done.is_ok() {
            if kept {
                // `then`'s durable commit to `db`, after the scope's
                // writes (see `Vault::settle`).
                self.keys_flushed_to(point);
            }
            after.run();
        }
        done
    }

    /// Commits the events staged so far in this thread's
    /// [request scope](Self::request), now: before host code inside the
    /// scope sends something out of the process by its own means (writes a
    /// sealed row, calls a service). Nothing to do, and `Ok`, outside a
    /// scope. On `Err` nothing staged was stored, and the scope will end in
    /// `Err` too.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use std::sync::Arc;
    /// use privacy_pledge::audit::AuditKey;
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    /// use privacy_pledge::store::sqlite::SqliteStore;
    /// use privacy_pledge::{Custodian, Error, SubjectId};
    ///
    /// let store = SqliteStore::open_in_memory()?;
    /// let sink = Arc::new(store.audit_sink(AuditKey::generate()?)?);
    /// let custodian = Custodian::builder().audit(sink.clone()).build()?;
    /// custodian.request(|| -> Result<(), Error> {
    ///     let email = custodian.collect::<EmailAddress, Transaction>(
    ///         SubjectId::random(),
    ///         EmailAddress::parse("ada@example.com").unwrap(),
    ///     )?;
    ///     let row = custodian.seal(&email)?;
    ///     custodian.flush_request()?; // both events committed: the row may leave now
    ///     assert_eq!(sink.commits(), 1);
    ///     # drop(row);
    ///     Ok(())
    /// })?;
    /// assert_eq!(sink.commits(), 1); // nothing was left to commit
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_request(&self) -> Result<(), Error> {
        crate::reentry::check()?;
        let staged = take(self.id);
        kept_or_failed(self, self.commit_staged(&staged), false).map_err(|e| {
            failed(self.id, &e);
            Error::Audit(e)
        })
    }

    /// Commits `staged` in one call of the sink (nothing for none).
    pub(crate) fn commit_staged(&self, staged: &[AuditEvent]) -> Result<(), AuditError> {
        if staged.is_empty() {
            return Ok(());
        }
        crate::reentry::host(|| self.sink.record_batch(staged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditSink, MemoryAuditLog};
    use crate::data::EmailAddress;
    use crate::purpose::Transaction;
    use crate::{PersonalInfo, SubjectId};

    /// A sink whose batches count as one commit, so scopes stage.
    struct Atomic(MemoryAuditLog);
    impl AuditSink for Atomic {
        fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
            self.0.record(event)
        }
        fn atomic_batches(&self) -> bool {
            true
        }
    }

    /// Deferred durability is granted only to the custodian whose scope
    /// holds staged events (which its close commits after the write), only
    /// for the database named, and only for the call it wraps.
    #[test]
    fn a1_durability_is_deferred_only_to_a_scope_with_events_to_commit() {
        let db = DatabaseId(1);
        let other = DatabaseId(2);
        let custodian = || {
            Custodian::builder()
                .audit(Atomic(MemoryAuditLog::new()))
                .build()
                .unwrap()
        };
        let (a, b) = (custodian(), custodian());
        let inside = |c: &Custodian| deferring(c.id, Some(db), || durability_deferred(db));
        // Outside a scope: durable.
        assert!(!inside(&a));
        let seen = a
            .request(|| -> Result<_, Error> {
                // A scope with nothing staged may commit nothing: durable.
                let empty = inside(&a);
                let info: PersonalInfo<EmailAddress, Transaction> =
                    a.collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?)?;
                drop(info);
                let staged = inside(&a);
                // Another custodian's call on this thread: durable.
                let other_custodian = inside(&b);
                // Another database: durable.
                let other_db = deferring(a.id, Some(db), || durability_deferred(other));
                // No database named (a host's own key store or sink): durable.
                let none = deferring(a.id, None, || durability_deferred(db));
                // After the call: durable again.
                let after = durability_deferred(db);
                // Once committed (`flush_request`), nothing is staged: durable.
                a.flush_request()?;
                let flushed = inside(&a);
                Ok([
                    empty,
                    staged,
                    other_custodian,
                    other_db,
                    none,
                    after,
                    flushed,
                ])
            })
            .unwrap();
        assert_eq!(seen, [false, true, false, false, false, false, false]);
        assert!(!inside(&a));
    }
}
