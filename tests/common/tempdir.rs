//! A directory under the system temp dir, unique to one test, removed on drop.

use std::path::PathBuf;

use privacy_pledge::time::Timestamp;

/// A directory under the system temp dir, unique to one test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory named after the test `suite` and `test`.
    pub fn named(suite: &str, test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "privacy-pledge-{suite}-{test}-{}-{}",
            std::process::id(),
            Timestamp::now().unix_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The store URL of an SQLite file `name` inside the directory.
    #[allow(dead_code)]
    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite:{}", self.path(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
