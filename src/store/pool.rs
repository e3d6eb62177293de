//! The stores' connections: one for the audit sink's writer, a small pool
//! for the store's own reads and writes (key store, consent store, trail
//! reads), and a pool of the same size for the host's own statements.
//!
//! The host's connections are never lent to the store's own statements, nor
//! the store's to host code: whatever host code leaves on a connection — a
//! `TEMP` table that shadows a store table, a `TEMP` trigger, a session
//! setting such as `synchronous` or `synchronous_commit` — stays on
//! connections that only host code uses, and the store's reads and writes
//! never run through it. A pool's reset cannot undo all of that (functions,
//! hooks and authorizers registered through the client's API are not even
//! visible), so the connections are kept apart instead.
//!
//! A small internal pool rather than `r2d2` (with `r2d2_sqlite` /
//! `r2d2_postgres`): the stores need only a fixed set of connections opened
//! up front, handed out and returned on one thread at a time, which is a
//! mutex, a condition variable and a vector. `r2d2` would add three crates
//! (and `scheduled-thread-pool`'s background thread) to every dependent for
//! features the stores do not use (lazy growth, idle reaping, health
//! checks on a timer), and its adapters pin their own `rusqlite` and
//! `postgres` versions, which would then have to move in step with the
//! crate's. The conventions kept from it: connections are opened with the
//! same settings by one function, a connection is returned to the pool when
//! its guard drops (also on panic), and it is readied for its next user
//! first (an open SQLite transaction is rolled back, and the store's busy
//! handler and `synchronous` level are set again).
//!
//! # Fork
//!
//! A child made by `fork` after the store opened holds copies of the
//! parent's connections: the same PostgreSQL sockets, the same SQLite file
//! descriptors, whose POSIX locks are the parent's alone. Used from both
//! processes, one session's replies reach the other (a `COMMIT`'s
//! acknowledgement read by the wrong process), and SQLite's locks no longer
//! keep the two apart; closed by the child, a PostgreSQL connection says
//! goodbye to the server on the parent's socket, ending the parent's
//! session. So the connections remember the process that opened them: in
//! any other, every call for a connection is refused ([`Unavailable::Forked`]),
//! a connection lent across the fork is not readied for reuse, and the
//! connections are never closed there — they are leaked, so that the
//! parent's sessions go on. Host code that forks while it holds a lent
//! connection (inside `with_connection`, `commit_request`'s `write`) returns
//! into the crate in the child too: there the crate sends nothing more on
//! that connection — no commit, no rollback — and the call fails with
//! [`Unavailable::Forked`]. A child opens a store of its own. (A process is
//! told by its id: a grandchild given its dead grandparent's id, possible
//! in a PID namespace, is not told apart.)

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Unavailable;

/// A fixed set of connections, each lent to one caller at a time.
pub(crate) struct Pool<C> {
    idle: Mutex<Vec<C>>,
    returned: Condvar,
    size: usize,
    /// How long [`get`](Self::get) waits when every connection is lent.
    timeout: Duration,
    /// Readies a returned connection for its next user (`false`: it could
    /// not; the connection is lent again all the same, and its next user
    /// gets the database's error, as with one shared connection).
    reset: fn(&mut C) -> bool,
    /// The process that opened the connections (see the module's "Fork").
    pid: u32,
}

impl<C> Pool<C> {
    /// A pool of the connections `conns` (all of them, opened already, in
    /// this process).
    pub(crate) fn new(conns: Vec<C>, reset: fn(&mut C) -> bool, timeout: Duration) -> Self {
        Pool {
            size: conns.len(),
            timeout,
            idle: Mutex::new(conns),
            returned: Condvar::new(),
            reset,
            pid: std::process::id(),
        }
    }

    /// `Err` in a process other than the one that opened the connections.
    fn same_process(&self) -> Result<(), Unavailable> {
        let now = std::process::id();
        if now == self.pid {
            Ok(())
        } else {
            Err(Unavailable::Forked {
                opened_by: self.pid,
                now,
            })
        }
    }

    /// How many connections the pool holds (lent or idle).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn idle(&self) -> MutexGuard<'_, Vec<C>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection, waiting until one is returned if all are lent: for at
    /// most the pool's timeout (`Err` with how long it waited), or for as
    /// long as it takes with `forever`. Refused in a forked child.
    pub(crate) fn get(&self, forever: bool) -> Result<Lease<'_, C>, Unavailable> {
        self.same_process()?;
        let start = Instant::now();
        let mut idle = self.idle();
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(Lease {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if forever {
                idle = self.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let waited = start.elapsed();
            let Some(left) = self.timeout.checked_sub(waited).filter(|l| !l.is_zero()) else {
                return Err(Unavailable::TimedOut(waited));
            };
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A connection lent by a [`Pool`]; returned when dropped.
pub(crate) struct Lease<'a, C> {
    pool: &'a Pool<C>,
    conn: Option<C>,
}

impl<C> Deref for Lease<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        // Taken only in `drop`.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl<C> DerefMut for Lease<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if self.pool.same_process().is_err() {
            // Lent across a fork: readying it would talk on the parent's
            // session (see the module's "Fork").
            std::mem::forget(self.conn.take());
            return;
        }
        if let Some(mut conn) = self.conn.take() {
            // A connection that cannot be repaired is still returned (the
            // pool keeps its size; its next user gets the database's error),
            // as the single shared connection was before.
            let _ = (self.pool.reset)(&mut conn);
            self.pool.idle().push(conn);
            self.pool.returned.notify_one();
        }
    }
}

/// A store's connection: its writer's own, or one lent by its pool.
pub(crate) enum Conn<'a, C> {
    /// The audit writer's connection.
    Writer(MutexGuard<'a, C>),
    /// A pooled connection.
    Pooled(Lease<'a, C>),
}

impl<C> Deref for Conn<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        match self {
            Conn::Writer(c) => c,
            Conn::Pooled(c) => c,
        }
    }
}

impl<C> DerefMut for Conn<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        match self {
            Conn::Writer(c) => c,
            Conn::Pooled(c) => c,
        }
    }
}

/// A store's connections: the writer's own (if it has one), the pool for
/// the store's own statements, and the host's (if it has one of its own).
pub(crate) struct Conns<C> {
    writer: Option<Mutex<C>>,
    pool: Pool<C>,
    /// Lent only to host code; `None`: host code shares `pool` (a store of
    /// one connection).
    host: Option<Pool<C>>,
}

impl<C> Drop for Conns<C> {
    /// In a forked child, leaks the connections instead of closing them
    /// (see the module's "Fork").
    fn drop(&mut self) {
        if self.pool.same_process().is_ok() {
            return;
        }
        std::mem::forget(self.writer.take());
        for pool in std::iter::once(&mut self.pool).chain(self.host.as_mut()) {
            let idle = pool.idle.get_mut().unwrap_or_else(|p| p.into_inner());
            std::mem::forget(std::mem::take(idle));
        }
    }
}

impl<C> Conns<C> {
    /// A writer's connection of its own beside `pool` (the store's) and
    /// `host` (the host code's).
    pub(crate) fn pooled(writer: C, pool: Pool<C>, host: Pool<C>) -> Self {
        Conns {
            writer: Some(Mutex::new(writer)),
            pool,
            host: Some(host),
        }
    }

    /// One connection for everything (the writer and host code take it
    /// from the pool).
    pub(crate) fn single(conn: C, reset: fn(&mut C) -> bool, timeout: Duration) -> Self {
        Conns {
            writer: None,
            pool: Pool::new(vec![conn], reset, timeout),
            host: None,
        }
    }

    /// The audit writer's connection (`Err`: the pool's timeout passed, or
    /// a forked child).
    pub(crate) fn writer(&self) -> Result<Conn<'_, C>, Unavailable> {
        self.pool.same_process()?;
        Ok(match &self.writer {
            // Transactions are finished or rolled back (rusqlite's
            // `Transaction` drops with a rollback) before the guard drops,
            // so a poisoned lock still guards a consistent connection.
            Some(w) => Conn::Writer(w.lock().unwrap_or_else(|p| p.into_inner())),
            None => Conn::Pooled(self.pool.get(false)?),
        })
    }

    /// A connection of the store's own pool, for the store's own statements
    /// (`Err`: the pool's timeout passed, or a forked child).
    pub(crate) fn get(&self) -> Result<Conn<'_, C>, Unavailable> {
        Ok(Conn::Pooled(self.pool.get(false)?))
    }

    /// A connection for host code, which the store's own statements never
    /// use afterwards (unless the store has one connection for everything),
    /// waited for as long as it takes with `forever` (`Err`: the pool's
    /// timeout passed, never with `forever`; or a forked child).
    pub(crate) fn host(&self, forever: bool) -> Result<Conn<'_, C>, Unavailable> {
        let pool = self.host.as_ref().unwrap_or(&self.pool);
        Ok(Conn::Pooled(pool.get(forever)?))
    }

    /// `Err` in a process other than the one that opened the connections:
    /// asked again after host code ran on a lent connection, which it may
    /// have forked inside (the child then returns into the crate holding a
    /// copy of the parent's connection, and must send nothing on it).
    pub(crate) fn same_process(&self) -> Result<(), Unavailable> {
        self.pool.same_process()
    }

    /// The pool's size (the writer's connection not counted).
    pub(crate) fn pool_size(&self) -> usize {
        self.pool.size()
    }

    /// Whether the writer has a connection of its own.
    pub(crate) fn has_writer(&self) -> bool {
        self.writer.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(size: usize, timeout: Duration) -> Conns<u32> {
        let pool =
            |first: u32| Pool::new((first..first + size as u32).collect(), |_| true, timeout);
        Conns::pooled(0, pool(100), pool(200))
    }

    /// A lent-out pool makes the store's own call give up after the
    /// timeout (not at once, not never), and a returned connection is lent
    /// again.
    #[test]
    fn an_exhausted_pool_gives_up_after_its_timeout() {
        let conns = conns(1, Duration::from_millis(100));
        let held = conns.get().ok().unwrap();
        let started = Instant::now();
        let Err(Unavailable::TimedOut(waited)) = conns.get() else {
            panic!("a connection was lent beyond the pool's size");
        };
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(held);
        assert_eq!(*conns.get().ok().unwrap(), 100);
    }

    /// A1: the host's connections and the store's are never the same:
    /// each pool lends only its own, whichever is exhausted.
    #[test]
    fn host_and_store_connections_never_mix() {
        let conns = conns(2, Duration::from_millis(10));
        let host: Vec<u32> = {
            let a = conns.host(false).ok().unwrap();
            let b = conns.host(false).ok().unwrap();
            assert!(conns.host(false).is_err());
            let store = conns.get().ok().unwrap();
            assert_eq!(*store / 100, 1);
            vec![*a, *b]
        };
        assert!(host.iter().all(|c| c / 100 == 2), "{host:?}");
        let store: Vec<u32> = {
            let a = conns.get().ok().unwrap();
            let b = conns.get().ok().unwrap();
            assert!(conns.get().is_err());
            assert_eq!(*conns.host(false).ok().unwrap() / 100, 2);
            vec![*a, *b]
        };
        assert!(store.iter().all(|c| c / 100 == 1), "{store:?}");
        assert_eq!(*conns.writer().ok().unwrap(), 0);
    }
}
