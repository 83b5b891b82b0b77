//! Helpers the library's unit tests share.

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary one, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// `zguide-<name>-<pid>-<nanoseconds>`: unique across tests and runs.
    pub(crate) fn new(name: &str) -> TempDir {
        let unique = format!(
            "zguide-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
