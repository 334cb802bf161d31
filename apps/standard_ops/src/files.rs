//! Appending lines to `<dir>/<category>.log` files: confined to the
//! directory, whole lines or nothing, rotation-aware, a bounded number of
//! open files, and the file work on blocking threads.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use lru::LruCache;
use rustix::fs::{self as rfs, AtFlags, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;
use telestion::ServiceError;
use telestion::data_log::check_category;
use telestion::extract::{DataDir, DataFileError, DataFiles, FileAccess};
use telestion::tokio;

use crate::queue::Queues;

/// Default of `LOCK_TIMEOUT`: how long a line may wait for its file.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `MAX_OPEN_FILES`: how many log files stay open at most.
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;
/// Descriptors left for everything but log files (stdio, the NATS
/// connection and a reconnect, the runtime's epoll and signal pipes, the log
/// directory, ...) when the open-file limit (`ulimit -n`) is low.
const RESERVED_FDS: u64 = 32;
/// At most this many lines are written at once (by blocking threads, one
/// per category at a time).
const MAX_WORKERS: usize = 16;
/// A file replaced between opening and locking it is opened again, at most
/// this many times for one line.
const MAX_REOPENS: usize = 3;

/// How a [`DataLog`] waits and how many files it keeps open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// How long a line may wait for its file (the lock another process
    /// holds, or earlier lines of the same category) before it is refused
    /// (`LOCK_TIMEOUT`).
    pub lock_timeout: Duration,
    /// How many log files stay open at most (`MAX_OPEN_FILES`); the least
    /// recently used are closed. Lowered at start when the process's
    /// open-file limit leaves less room.
    pub max_open_files: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

/// Why a line was not written. Every variant means: nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The category breaks the category rule.
    #[error(transparent)]
    Category(#[from] ServiceError),
    /// The path is not a regular file in the log directory (a symbolic
    /// link, a FIFO, a directory, ...).
    #[error("refusing to write to {path:?}: {reason}; the line was not written")]
    Refused {
        /// The path concerned.
        path: PathBuf,
        /// What it is.
        reason: String,
    },
    /// A filesystem call failed.
    #[error("cannot {action} {path:?}: {source}; the line was not written")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What was tried.
        action: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The file stayed locked by another process, or earlier lines of the
    /// category were slow, for longer than `LOCK_TIMEOUT`.
    #[error(
        "no write to {path:?} within LOCK_TIMEOUT ({seconds} s): the file is locked by another \
         process or earlier writes to it are slow; the line was not written"
    )]
    Timeout {
        /// The file.
        path: PathBuf,
        /// `LOCK_TIMEOUT` in seconds.
        seconds: f64,
    },
    /// The write failed part way (disk full, file size limit, quota); the
    /// partial line was cut off again.
    #[error(
        "cannot write to {path:?}: {source}; the line was not written (the file still ends with \
         its last complete line)"
    )]
    RolledBack {
        /// The file.
        path: PathBuf,
        /// Why the write failed.
        source: io::Error,
    },
    /// The write failed part way and the partial line could not be cut off;
    /// the next line written to this file starts on a new line.
    #[error(
        "cannot write to {path:?}: {source}; and the partial line could not be removed: \
         {truncate}"
    )]
    Torn {
        /// The file.
        path: PathBuf,
        /// Why the write failed.
        source: io::Error,
        /// Why cutting it off failed.
        truncate: io::Error,
    },
    /// The blocking task that writes the line did not finish (the service
    /// is stopping).
    #[error("the write to {path:?} was interrupted: {reason}")]
    Interrupted {
        /// The file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
}

impl LogError {
    /// The same error for another line of a batch that failed together
    /// (an I/O error is copied by its kind and text).
    pub(crate) fn duplicate(&self) -> LogError {
        let copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            LogError::Category(e) => LogError::Refused {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            LogError::Refused { path, reason } => LogError::Refused {
                path: path.clone(),
                reason: reason.clone(),
            },
            LogError::Io {
                path,
                action,
                source,
            } => LogError::Io {
                path: path.clone(),
                action,
                source: copy(source),
            },
            LogError::Timeout { path, seconds } => LogError::Timeout {
                path: path.clone(),
                seconds: *seconds,
            },
            LogError::RolledBack { path, source } => LogError::RolledBack {
                path: path.clone(),
                source: copy(source),
            },
            LogError::Torn {
                path,
                source,
                truncate,
            } => LogError::Torn {
                path: path.clone(),
                source: copy(source),
                truncate: copy(truncate),
            },
            LogError::Interrupted { path, reason } => LogError::Interrupted {
                path: path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// Appends lines to `<dir>/<category>.log` files.
///
/// - **Confined**: every file is opened relative to a handle of `dir`
///   (itself opened with `O_NOFOLLOW`), with `O_NOFOLLOW`, and must be a
///   regular file: a symbolic link (for a file or for `dir`), a FIFO, a
///   directory or a device is refused and nothing is written anywhere. A
///   FIFO cannot block: files are checked before they are opened, opened
///   with `O_NONBLOCK` and checked (`fstat`) again before the first write.
///   The directory and its files are opened with the runtime's shared
///   helper, [`DataDir::files`] and [`DataFiles::open`].
/// - **Whole lines**: each line is written while holding an exclusive
///   `flock` on the file, so processes sharing the directory never tear or
///   interleave lines. A write that fails part way (disk full, `ulimit -f`,
///   quota) is cut off again (`ftruncate` to the size before it), so the
///   file always ends with a complete line.
/// - **Rotation**: under the lock, before each write, the open file is
///   compared (device and inode) with what `dir/<category>.log` names now;
///   after a rename or delete the line goes to a new file at that path.
///   [`DataLog::reopen`] closes every file at once (for SIGHUP). When `dir`
///   itself was removed or replaced, it is created and opened again.
/// - **Bounded**: at most [`DataLog::max_open_files`] files stay open (the
///   least recently used are closed), a number clamped at creation to
///   leave room under the process's open-file limit.
/// - **Owner-only**: files are created `0600`, directories `0700`.
///
/// [`DataLog::write`] is the asynchronous front: lines of one category are
/// written one at a time, in the order their calls began, on blocking
/// threads; other categories go on meanwhile. [`DataLog::append`] is the
/// same write as a blocking call.
#[derive(Clone)]
pub struct DataLog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    path: PathBuf,
    lock_timeout: Duration,
    max_open_files: usize,
    workers: usize,
    /// The open log directory (`None` until first used, and after
    /// [`DataLog::reopen`]).
    dir: Mutex<Option<Arc<Dir>>>,
    files: Mutex<LruCache<String, Arc<LogFile>>>,
    /// The lines waiting for their category's writer.
    pub(crate) queues: Queues,
    /// Bounds the writers at work at once (and so the files open outside
    /// the cache).
    pub(crate) worker_slots: Arc<tokio::sync::Semaphore>,
    /// Told about lines that failed with nobody waiting for them.
    pub(crate) on_failure: OnceLock<FailureHook>,
}

/// What [`DataLog::on_failure`] calls: the error and how many lines it
/// refused.
pub(crate) type FailureHook = Box<dyn Fn(&LogError, usize) + Send + Sync>;

impl fmt::Debug for DataLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataLog")
            .field("dir", &self.inner.path)
            .field("lock_timeout", &self.inner.lock_timeout)
            .field("max_open_files", &self.inner.max_open_files)
            .field("workers", &self.inner.workers)
            .finish()
    }
}

/// The open log directory and its identity.
struct Dir {
    files: DataFiles,
    id: (u64, u64),
}

/// An open log file and its identity.
struct LogFile {
    file: File,
    id: (u64, u64),
    /// Held while writing through this handle: `flock` does not exclude
    /// two threads sharing one open file.
    busy: Mutex<()>,
    /// A partial line could not be cut off: start the next on a new line.
    torn: AtomicBool,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn identity(stat: &Stat) -> (u64, u64) {
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    (stat.st_dev as u64, stat.st_ino as u64)
}

impl DataLog {
    /// A writer for files in `dir` (created when first needed) with the
    /// default [`Limits`].
    pub fn new(dir: impl Into<PathBuf>) -> DataLog {
        DataLog::with_limits(dir, Limits::default())
    }

    /// A writer for files in `dir` with `limits`; `max_open_files` is
    /// lowered to leave room under the open-file limit (`ulimit -n`).
    pub fn with_limits(dir: impl Into<PathBuf>, limits: Limits) -> DataLog {
        let (max_open_files, workers) = fd_budget(limits.max_open_files);
        let capacity = NonZeroUsize::new(max_open_files).unwrap_or(NonZeroUsize::MIN);
        DataLog {
            inner: Arc::new(Inner {
                path: dir.into(),
                lock_timeout: limits.lock_timeout,
                max_open_files: capacity.get(),
                workers,
                dir: Mutex::new(None),
                files: Mutex::new(LruCache::new(capacity)),
                queues: Queues::default(),
                worker_slots: Arc::new(tokio::sync::Semaphore::new(workers)),
                on_failure: OnceLock::new(),
            }),
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.inner.path
    }

    /// How many log files stay open at most (after clamping).
    pub fn max_open_files(&self) -> usize {
        self.inner.max_open_files
    }

    /// How many lines [`DataLog::write`] writes at once at most.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// How long a line may wait for its file.
    pub fn lock_timeout(&self) -> Duration {
        self.inner.lock_timeout
    }

    /// Creates the directory (owner-only), opens it and checks that files
    /// can be created in it, so that an unusable `DATA_DIR` (or a log
    /// directory that is a symbolic link) fails the start instead of every
    /// message. A blocking call.
    pub fn check(&self) -> Result<(), ServiceError> {
        let io_error = |source| ServiceError::Io {
            path: self.inner.path.clone(),
            source,
        };
        let dir = self.open_dir().map_err(|e| {
            io_error(match e {
                LogError::Io { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })
        })?;
        // Not a log file: a category cannot start with a dot.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let probe = format!(".write-check-{}-{nanos}", std::process::id());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let file = rfs::openat(
            &dir.files,
            &probe,
            flags | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| io_error(e.into()))?;
        drop(file);
        rfs::unlinkat(&dir.files, &probe, AtFlags::empty()).map_err(|e| io_error(e.into()))?;
        *lock(&self.inner.dir) = Some(Arc::new(dir));
        Ok(())
    }

    /// Appends `line` to the file of `category`, waiting at most
    /// `LOCK_TIMEOUT` for the file's lock: [`DataLog::write`] as a blocking
    /// call, without its per-category order. An invalid category (see
    /// [`check_category`]) is an error and writes nothing.
    pub fn append(&self, category: &str, line: &str) -> Result<(), LogError> {
        let deadline = Instant::now() + self.inner.lock_timeout;
        match self.append_lines(category, &[line.as_bytes()], deadline, &mut Vec::new()) {
            (_, Some(error)) => Err(error),
            (_, None) => Ok(()),
        }
    }

    /// Closes every open file and the directory handle; the next line of
    /// each category opens the file at its path again (for SIGHUP after
    /// log rotation). Files being written to close when that write ends. A
    /// blocking call (it closes files).
    pub fn reopen(&self) {
        let capacity = NonZeroUsize::new(self.inner.max_open_files).unwrap_or(NonZeroUsize::MIN);
        let files = std::mem::replace(&mut *lock(&self.inner.files), LruCache::new(capacity));
        let dir = lock(&self.inner.dir).take();
        drop((files, dir));
    }

    pub(crate) fn file_path(&self, category: &str) -> PathBuf {
        self.inner.path.join(format!("{category}.log"))
    }

    /// Appends `lines` (each a whole line) to the file of `category` with
    /// one write, waiting for the file's lock at most until `deadline`;
    /// `buffer` is scratch space kept between calls. Returns how many lines
    /// were written (always the first ones) and the error that stopped the
    /// rest. A blocking call.
    pub(crate) fn append_lines(
        &self,
        category: &str,
        lines: &[&[u8]],
        deadline: Instant,
        buffer: &mut Vec<u8>,
    ) -> (usize, Option<LogError>) {
        if let Err(e) = check_category(category) {
            return (0, Some(e.into()));
        }
        let name = format!("{category}.log");
        let path = self.inner.path.join(&name);
        let io_error = |action, source: io::Error| LogError::Io {
            path: path.clone(),
            action,
            source,
        };
        for _ in 0..MAX_REOPENS {
            let file = match self
                .current_dir()
                .and_then(|dir| Ok((self.cached_or_open(&dir, category, &name, &path)?, dir)))
            {
                Ok(found) => found,
                Err(e) => return (0, Some(e)),
            };
            let (file, dir) = file;
            let _busy = lock(&file.busy);
            let _locked = match FileLock::take(&file.file, deadline) {
                Ok(locked) => locked,
                Err(Some(source)) => return (0, Some(io_error("lock", source))),
                Err(None) => {
                    let seconds = self.inner.lock_timeout.as_secs_f64();
                    return (0, Some(LogError::Timeout { path, seconds }));
                }
            };
            // Under the lock: is this still the file at the path?
            match rfs::statat(&dir.files, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if identity(&stat) == file.id => {
                    return write_lines(&file, lines, &path, buffer);
                }
                // Renamed, deleted or replaced: open what is there now.
                Ok(_) | Err(Errno::NOENT) => self.forget(category, &file),
                Err(e) => return (0, Some(io_error("inspect", e.into()))),
            }
        }
        let replaced = io::Error::other(format!(
            "it was replaced while being opened, {MAX_REOPENS} times in a row"
        ));
        (0, Some(io_error("open", replaced)))
    }

    /// The open log directory, opened (and created) again when the path no
    /// longer names it.
    fn current_dir(&self) -> Result<Arc<Dir>, LogError> {
        let current = lock(&self.inner.dir).clone();
        if let Some(dir) = current
            && rfs::statat(rfs::CWD, &self.inner.path, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| identity(&stat) == dir.id)
        {
            return Ok(dir);
        }
        let dir = Arc::new(self.open_dir()?);
        *lock(&self.inner.dir) = Some(dir.clone());
        Ok(dir)
    }

    /// Creates (owner-only) and opens the log directory, refusing a
    /// symbolic link.
    fn open_dir(&self) -> Result<Dir, LogError> {
        let path = &self.inner.path;
        let io_error = |action, source: io::Error| LogError::Io {
            path: path.clone(),
            action,
            source,
        };
        let files = DataDir::create(path.clone())
            .and_then(|dir| dir.files())
            .map_err(|e| match e {
                DataFileError::Refused { found, .. } => io_error(
                    "use",
                    io::Error::other(format!(
                        "it is {found}, not a directory; point DATA_DIR at the directory that \
                         holds the real log directory"
                    )),
                ),
                DataFileError::Io { action, source, .. } => io_error(action, source),
                other => io_error("open", io::Error::other(other.to_string())),
            })?;
        let stat = rfs::fstat(&files).map_err(|e| io_error("inspect", e.into()))?;
        Ok(Dir {
            files,
            id: identity(&stat),
        })
    }

    fn cached_or_open(
        &self,
        dir: &Dir,
        category: &str,
        name: &str,
        path: &Path,
    ) -> Result<Arc<LogFile>, LogError> {
        if let Some(file) = lock(&self.inner.files).get(category) {
            return Ok(file.clone());
        }
        let file = Arc::new(open_file(dir, name, path)?);
        let evicted = lock(&self.inner.files).push(category.to_owned(), file.clone());
        // Closed here, outside the lock (unless a write still uses it).
        drop(evicted);
        Ok(file)
    }

    /// Drops `file` from the cache, unless another file took its place.
    fn forget(&self, category: &str, file: &Arc<LogFile>) {
        let removed = {
            let mut files = lock(&self.inner.files);
            match files.peek(category) {
                Some(cached) if Arc::ptr_eq(cached, file) => files.pop(category),
                _ => None,
            }
        };
        drop(removed);
    }
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Takes the lock, polling (`LOCK_NB`) with short sleeps until
    /// `deadline`; `Err(None)` when the deadline passed.
    fn take(file: &'a File, deadline: Instant) -> Result<FileLock<'a>, Option<io::Error>> {
        let mut pause = Duration::from_millis(1);
        loop {
            match rfs::flock(file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(FileLock(file)),
                Err(Errno::WOULDBLOCK) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Some(e.into())),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = rfs::flock(self.0, FlockOperation::Unlock) {
            tracing::warn!(error = %e, "cannot unlock a log file");
        }
    }
}

/// Opens `dir/name` for appending, creating it (`0600`), refusing what is
/// not a regular file (checked before opening it, so a FIFO or a device is
/// never opened; a symbolic link is never followed).
fn open_file(dir: &Dir, name: &str, path: &Path) -> Result<LogFile, LogError> {
    let file = dir
        .files
        .open(name, FileAccess::Append)
        .map_err(|e| match e {
            DataFileError::Refused { found, .. } => LogError::Refused {
                path: path.to_owned(),
                reason: format!("it is {found}, not a regular file"),
            },
            DataFileError::Io { action, source, .. } => LogError::Io {
                path: path.to_owned(),
                action,
                source,
            },
            other => LogError::Refused {
                path: path.to_owned(),
                reason: other.to_string(),
            },
        })?;
    let stat = rfs::fstat(&file).map_err(|e| LogError::Io {
        path: path.to_owned(),
        action: "inspect",
        source: e.into(),
    })?;
    Ok(LogFile {
        file,
        id: identity(&stat),
        busy: Mutex::new(()),
        torn: AtomicBool::new(false),
    })
}

/// Appends `lines` with the file locked, in one write (more only when the
/// kernel takes part of it); a write that fails part way is cut off again
/// after the last whole line. Returns how many lines were written and the
/// error that stopped the rest.
fn write_lines(
    file: &LogFile,
    lines: &[&[u8]],
    path: &Path,
    buffer: &mut Vec<u8>,
) -> (usize, Option<LogError>) {
    let size = match rfs::fstat(&file.file) {
        Ok(stat) => u64::try_from(stat.st_size).unwrap_or(0),
        Err(e) => {
            let source = e.into();
            let action = "inspect";
            let path = path.to_owned();
            return (
                0,
                Some(LogError::Io {
                    path,
                    action,
                    source,
                }),
            );
        }
    };
    buffer.clear();
    // A partial line could not be cut off: start on a new line.
    let torn = file.torn.load(Ordering::Relaxed);
    if torn {
        buffer.push(b'\n');
    }
    let prefix = buffer.len();
    for line in lines {
        buffer.extend_from_slice(line);
    }
    let mut written = 0;
    let failure = loop {
        if written == buffer.len() {
            file.torn.store(false, Ordering::Relaxed);
            return (lines.len(), None);
        }
        match (&file.file).write(&buffer[written..]) {
            Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    // The lines written whole stay; the rest is cut off.
    let (mut whole, mut end) = (0, prefix);
    for line in lines {
        if end + line.len() > written {
            break;
        }
        end += line.len();
        whole += 1;
    }
    let keep = if whole == 0 { 0 } else { end };
    match rfs::ftruncate(&file.file, size + keep as u64) {
        Ok(()) => {
            if whole > 0 {
                file.torn.store(false, Ordering::Relaxed);
            }
            let path = path.to_owned();
            (
                whole,
                Some(LogError::RolledBack {
                    path,
                    source: failure,
                }),
            )
        }
        Err(truncate) => {
            file.torn.store(true, Ordering::Relaxed);
            let (path, truncate) = (path.to_owned(), truncate.into());
            (
                whole,
                Some(LogError::Torn {
                    path,
                    source: failure,
                    truncate,
                }),
            )
        }
    }
}

/// (cache capacity, workers) for `max_open_files` under the process's
/// open-file limit: the cache and the files the workers hold outside it
/// (one each at most) leave [`RESERVED_FDS`] free.
fn fd_budget(max_open_files: usize) -> (usize, usize) {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let available = usize::try_from(soft.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .max(2);
    let workers = (available / 4).clamp(1, MAX_WORKERS);
    let files = max_open_files.min(available - workers).max(1);
    (files, workers)
}
