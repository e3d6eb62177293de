//! Files the crate keeps outside the database: a lock shared by processes
//! ([`FileLock`]) and a directory's sync ([`sync_dir`]).
//!
//! A lock (`flock` on Unix, `LockFileEx` on Windows) is released
//! explicitly, not only by closing the file: a lock belongs to the open
//! file, which a child forked while the lock was held shares. If closing
//! were all, the lock would stay taken for as long as that child lives, and
//! every later save in this process would wait for it. It is waited for
//! within a bound, so that a lock left so (the holder died, its child lives
//! on) makes the caller fail, not hang.

use std::fs::File;
use std::time::{Duration, Instant};

/// How long a lock is waited for: as long as a store's busy timeout
/// (shorter in the crate's unit tests, which wait it out).
const WAIT: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(10)
};

/// A file, locked until this is dropped.
#[derive(Debug)]
pub(crate) struct FileLock(File);

impl FileLock {
    /// `file`, locked for this process alone.
    pub(crate) fn exclusive(file: File) -> std::io::Result<Self> {
        Self::take(file, false)
    }

    /// `file`, locked against exclusive holders.
    pub(crate) fn shared(file: File) -> std::io::Result<Self> {
        Self::take(file, true)
    }

    fn take(file: File, shared: bool) -> std::io::Result<Self> {
        let start = Instant::now();
        loop {
            let tried = if shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match tried {
                Ok(()) => return Ok(FileLock(file)),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < WAIT => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the file stayed locked by another holder",
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

impl std::ops::Deref for FileLock {
    type Target = File;

    fn deref(&self) -> &File {
        &self.0
    }
}

impl std::ops::DerefMut for FileLock {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.0
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Syncs directory `dir`, so that a file made or renamed in it stays after
/// a power cut (Unix; elsewhere a directory cannot be opened to sync, and
/// the file system's own order is relied on).
/// An empty path (the parent of a bare file name) is the current directory.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (std::path::PathBuf, File) {
        let tag = u64::from_be_bytes(crate::crypto::random_array::<8>().unwrap());
        let path = std::env::temp_dir().join(format!("pp-lock-{tag:016x}"));
        let f = File::create(&path).unwrap();
        (path, f)
    }

    /// A fork while the lock is held: the child's copy of the open file
    /// (here a duplicate of it) does not keep the lock once the parent's
    /// guard is dropped.
    #[test]
    fn a_dropped_lock_is_free_even_while_a_copy_of_the_file_is_open() {
        let (path, f) = file();
        let lock = FileLock::exclusive(f).unwrap();
        let childs_copy = lock.try_clone().unwrap();
        drop(lock);
        let again = FileLock::exclusive(File::open(&path).unwrap());
        assert!(again.is_ok(), "the lock stayed with the copy");
        drop((again, childs_copy));
        std::fs::remove_file(path).unwrap();
    }

    /// A lock never released makes the caller fail within the bound.
    #[test]
    fn a_lock_held_on_fails_after_the_wait() {
        let (path, f) = file();
        let _held = FileLock::exclusive(f).unwrap();
        let start = Instant::now();
        let err = FileLock::shared(File::open(&path).unwrap()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= WAIT);
        std::fs::remove_file(path).unwrap();
    }
}
