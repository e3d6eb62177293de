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

use std::cell::Cell;

use crate::Error;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
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
