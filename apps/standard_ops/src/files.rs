//! Appending lines to `<dir>/<category>.log` files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use telestion::ServiceError;
use telestion::data_log::check_category;

/// Appends lines to `<dir>/<category>.log` files.
///
/// Each line is written with one `write` call to a file opened in append
/// mode while holding an exclusive `flock`, so several processes sharing
/// the directory never tear or interleave lines. Files are created
/// owner-only (`0600`), directories `0700`.
#[derive(Debug, Clone)]
pub struct DataLog {
    dir: PathBuf,
    files: Arc<Mutex<HashMap<String, Arc<Mutex<File>>>>>,
}

impl DataLog {
    /// A writer for files in `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> DataLog {
        DataLog {
            dir: dir.into(),
            files: Arc::default(),
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (owner-only) and checks that files can be
    /// created in it, so that an unusable `DATA_DIR` fails the start
    /// instead of every message. It touches the filesystem: a blocking call.
    pub fn check(&self) -> Result<(), ServiceError> {
        let io_error = |source| ServiceError::Io {
            path: self.dir.clone(),
            source,
        };
        create_private_dir(&self.dir).map_err(io_error)?;
        // Not a log file: a category cannot start with a dot.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let probe = self
            .dir
            .join(format!(".write-check-{}-{nanos}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(io_error)?;
        std::fs::remove_file(&probe).map_err(io_error)
    }

    /// Appends `line` to the file of `category`; an invalid category is
    /// an error (see [`check_category`]) and writes nothing.
    pub fn append(&self, category: &str, line: &str) -> Result<(), ServiceError> {
        check_category(category)?;
        let path = self.dir.join(format!("{category}.log"));
        let io_error = |source| ServiceError::Io {
            path: path.clone(),
            source,
        };
        let file = {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            match files.get(category) {
                Some(file) => file.clone(),
                None => {
                    create_private_dir(&self.dir).map_err(io_error)?;
                    let mut options = OpenOptions::new();
                    options.create(true).append(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::OpenOptionsExt;
                        options.mode(0o600);
                    }
                    let file = Arc::new(Mutex::new(options.open(&path).map_err(io_error)?));
                    files.insert(category.to_owned(), file.clone());
                    file
                }
            }
        };
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        file.lock().map_err(io_error)?;
        let written = file.write_all(line.as_bytes());
        let unlocked = file.unlock();
        written.map_err(io_error)?;
        unlocked.map_err(io_error)?;
        Ok(())
    }
}

/// Creates `dir` and missing parents; new directories are owner-only
/// (`0700`) on Unix.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
