//! Host code called by the crate must not call back into it.
//!
//! The custodian calls host code — audit sinks, key stores, key providers,
//! clocks — at moments when it may hold one of its own locks (the chain head,
//! the key cache, the order of consent changes). A callback into a custodian
//! operation from there would wait on that lock forever. Instead, every such
//! call runs inside [`host`], and every operation that takes a crate lock
//! first asks [`check`], which refuses with [`Error::Reentrant`] while the
//! thread is inside host code. Reading consent (`is_granted`) takes no lock
//! that is held across host code, so it stays allowed.
//!
//! A store's `with_connection` (SQLite) and `with_client` (PostgreSQL) run
//! the host's closure as host code too, while holding a connection of the
//! store, which the custodian's audit sink, key store and consent store
//! may need (a single connection, or the last free one of its pool). So inside [`holding_connection`] even the calls that are allowed
//! from other host code — reading consent from a consent store, asking the
//! key store whether a subject is erased, noting a lookup token, rewrapping
//! — are refused ([`check_connection`]), instead of waiting for the
//! connection forever.

use std::cell::Cell;

use crate::Error;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// How many store connections the thread holds while running host code.
    static HOLDING: Cell<u32> = const { Cell::new(0) };
}

struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs host code `f`, marking the thread as inside it (also if `f` panics).
#[inline]
pub(crate) fn host<R>(f: impl FnOnce() -> R) -> R {
    DEPTH.with(|d| d.set(d.get() + 1));
    let _leave = Leave;
    f()
}

/// `Err(Error::Reentrant)` while the thread is inside host code.
#[inline]
pub(crate) fn check() -> Result<(), Error> {
    if DEPTH.with(Cell::get) == 0 {
        Ok(())
    } else {
        Err(Error::Reentrant)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct Release;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Drop for Release {
    fn drop(&mut self) {
        HOLDING.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs host code `f` while the thread holds a store's connection (a
/// store's `with_connection`): inside it, [`check`] and [`check_connection`]
/// both refuse (also if `f` panics, the mark is cleared).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn holding_connection<R>(f: impl FnOnce() -> R) -> R {
    HOLDING.with(|d| d.set(d.get() + 1));
    let _release = Release;
    host(f)
}

/// `Err(Error::Reentrant)` while the thread holds a store's connection
/// inside host code: for the calls into stores that other host code may make.
#[inline]
pub(crate) fn check_connection() -> Result<(), Error> {
    if HOLDING.with(Cell::get) == 0 {
        Ok(())
    } else {
        Err(Error::Reentrant)
    }
}
