//! The data directory: `$DATA_DIR/$SERVICE_NAME`, created owner-only and
//! checked, on first use, to be a writable directory and not a symbolic
//! link. (Opening files in it without following links is
//! `extract::DataFiles`, one layer up.)

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
    /// A symbolic link at `$DATA_DIR/$SERVICE_NAME` is refused (the files
    /// would land wherever it points); `DATA_DIR`'s own path may contain
    /// links, it is the operator's choice. Open the files in it with
    /// [`DataDir::files`](crate::DataDir::files), which follows no link.
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
        refuse_link(dir).map_err(io)?;
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

/// Fails when `dir` is a symbolic link (dangling or not): it is never
/// followed.
fn refuse_link(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::other(
            "it is a symbolic link, which is never followed; make it a directory, or point \
             DATA_DIR at the directory that holds the real one",
        )),
        _ => Ok(()),
    }
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

#[cfg(all(test, unix))]
mod tests {
    use crate::config::Config;
    use crate::service::{Options, Service};

    #[tokio::test]
    async fn a_linked_service_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("svc")).unwrap();
        let config = Config::from_pairs([
            ("NATS_URL", "unused:1"),
            ("SERVICE_NAME", "svc"),
            ("DATA_DIR", root.path().to_str().unwrap()),
        ]);
        let service = Service::start(Options::new().nats(false).config(config))
            .await
            .unwrap();
        let error = crate::error_chain(&service.data_dir().unwrap_err());
        assert!(error.contains("symbolic link"), "{error}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
