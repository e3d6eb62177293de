//! The stores' connections: one for the audit sink's writer, and a small
//! pool for everything else (key store, consent store, trail reads, the
//! host's own statements).
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
//! first (an open SQLite transaction is rolled back).

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
}

impl<C> Pool<C> {
    /// A pool of the connections `conns` (all of them, opened already).
    pub(crate) fn new(conns: Vec<C>, reset: fn(&mut C) -> bool, timeout: Duration) -> Self {
        Pool {
            size: conns.len(),
            timeout,
            idle: Mutex::new(conns),
            returned: Condvar::new(),
            reset,
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
    /// long as it takes with `forever`.
    pub(crate) fn get(&self, forever: bool) -> Result<Lease<'_, C>, Duration> {
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
                return Err(waited);
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

/// A store's connections: the writer's own (if it has one) and the pool.
pub(crate) struct Conns<C> {
    writer: Option<Mutex<C>>,
    pool: Pool<C>,
}

impl<C> Conns<C> {
    /// A writer's connection of its own beside `pool`.
    pub(crate) fn pooled(writer: C, pool: Pool<C>) -> Self {
        Conns {
            writer: Some(Mutex::new(writer)),
            pool,
        }
    }

    /// One connection for everything (the writer takes it from the pool).
    pub(crate) fn single(conn: C, reset: fn(&mut C) -> bool, timeout: Duration) -> Self {
        Conns {
            writer: None,
            pool: Pool::new(vec![conn], reset, timeout),
        }
    }

    /// The audit writer's connection (`Err`: the pool's timeout passed).
    pub(crate) fn writer(&self) -> Result<Conn<'_, C>, Duration> {
        Ok(match &self.writer {
            // Transactions are finished or rolled back (rusqlite's
            // `Transaction` drops with a rollback) before the guard drops,
            // so a poisoned lock still guards a consistent connection.
            Some(w) => Conn::Writer(w.lock().unwrap_or_else(|p| p.into_inner())),
            None => Conn::Pooled(self.pool.get(false)?),
        })
    }

    /// A pooled connection (`Err`: the pool's timeout passed; never with
    /// `forever`).
    pub(crate) fn get(&self, forever: bool) -> Result<Conn<'_, C>, Duration> {
        Ok(Conn::Pooled(self.pool.get(forever)?))
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
