//! The data directory: `$DATA_DIR/$SERVICE_NAME`, created owner-only and
//! checked to be writable on first use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Service;
use super::lifecycle::lock;
use crate::error::ServiceError;

/// Directories already created and checked.
#[derive(Default)]
pub(crate) struct Created(Mutex<HashSet<PathBuf>>);

impl Service {
    /// The service's own data directory, `$DATA_DIR/$SERVICE_NAME`, created
    /// (owner-only permissions on Unix) and checked to be a writable
    /// directory on first use. Call it in start-up code (or take a
    /// [`DataDir`](crate::DataDir) parameter) so that an unusable
    /// `DATA_DIR` fails the start.
    ///
    /// It touches the filesystem (once per directory), so it is a blocking
    /// call.
    pub fn data_dir(&self) -> Result<PathBuf, ServiceError> {
        let dir = self.inner.data_root.join(self.name());
        self.ensure_dir(&dir)?;
        Ok(dir)
    }

    /// `$DATA_DIR`, shared by all services of the application.
    pub fn shared_data_dir(&self) -> &Path {
        &self.inner.data_root
    }

    /// Creates `dir` and its parents (owner-only on Unix) and checks that it
    /// is a writable directory, once.
    pub(crate) fn ensure_dir(&self, dir: &Path) -> Result<(), ServiceError> {
        let mut created = lock(&self.inner.data_dirs.0);
        if created.contains(dir) {
            return Ok(());
        }
        let io = |source| ServiceError::Io {
            path: dir.to_owned(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        check_writable(dir).map_err(io)?;
        created.insert(dir.to_owned());
        Ok(())
    }
}

/// Creates `dir` and missing parents; new directories are owner-only
/// (`0700`) on Unix.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates and removes a probe file in `dir`.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    // A NUID, not the pid: two containers (both pid 1) sharing the
    // directory must not collide.
    let probe = dir.join(format!(".telestion-write-check-{}", nuid::next()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}
