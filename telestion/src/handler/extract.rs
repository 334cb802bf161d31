//! Extractors: the types a handler takes as parameters, in any order. This
//! table is the list (the compiler's hints and the
//! [guide](crate::guide::handlers) point here):
//!
//! | extractor | what it gives | body |
//! | --- | --- | --- |
//! | [`Json<T>`] | the body decoded as JSON into `T` (a body that does not decode is rejected: 400) | yes |
//! | [`Bytes`](bytes::Bytes), `Vec<u8>` | the body as it is | yes |
//! | `String` | the body as UTF-8 text (other bytes are rejected: 400) | yes |
//! | [`Message`](async_nats::Message) | the whole NATS message (subject, reply, headers, body) | yes |
//! | [`Batch<T>`](crate::Batch) | a batch handler's messages, each extracted as `T` (a body extractor) | yes |
//! | [`Subject`] | the subject the message was published to | no |
//! | [`Headers`] | the message's headers (empty when it has none) | no |
//! | [`ReplyTo`] | the reply subject, when the sender expects a reply | no |
//! | [`Service`] | the service handle (publish, request, config, ...) | no |
//! | [`State<T>`] | shared state provided with [`Service::provide`](crate::Service::provide) | no |
//! | [`TypedConfig<T>`] | the configuration decoded into `T`, checked at start | no |
//! | [`DataDir`] | the service's own data directory, created and checked at start ([`DataDir::files`] opens the files in it without following links) | no |
//!
//! At most one parameter consumes the body; the others combine freely. A
//! type of your own becomes an extractor by implementing [`FromMessage`];
//! it can reject a message with its own code and message
//! ([`ExtractError::reject`](crate::ExtractError::reject)), which is
//! counted, logged and answered like a rejection by the built-in ones.
//!
//! What an extractor needs from the service (state, typed config, the data
//! directory) is resolved once, when the route is subscribed
//! ([`FromMessage::prepare`]); a failure there fails the start, and the
//! work per message is a clone of what was prepared.
//!
//! Deviation from axum's two-trait design (body vs. parts): one trait over a
//! mutable borrow of the message keeps the API small; a body extractor takes
//! the body out (no copy), the others read.

use std::any::type_name;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, ExtractError};
use crate::service::Service;

/// A message being handled, with the service that received it.
#[derive(Debug)]
pub struct Incoming {
    /// The NATS message.
    pub message: async_nats::Message,
    /// The receiving service.
    pub service: Service,
    /// For a batch handler's call: the messages of the batch, which a
    /// [`Batch<T>`](crate::Batch) parameter takes.
    pub(crate) batch: Option<Box<BatchParts>>,
}

/// The messages of one batch call, for the [`Batch`](crate::Batch)
/// parameter, and the ones it rejected.
#[derive(Debug, Default)]
pub(crate) struct BatchParts {
    pub(crate) messages: Vec<async_nats::Message>,
    pub(crate) rejected: Vec<(usize, ExtractError)>,
}

impl Incoming {
    /// A message received by `service` (to test an extractor, say).
    ///
    /// ```no_run
    /// # fn example(service: telestion::Service, message: telestion::Message) {
    /// let incoming = telestion::Incoming::new(message, service);
    /// assert!(incoming.message.reply.is_none());
    /// # }
    /// ```
    pub fn new(message: async_nats::Message, service: Service) -> Incoming {
        Incoming {
            message,
            service,
            batch: None,
        }
    }
}

/// A type a handler can take as a parameter.
///
/// ```
/// use telestion::{BoxError, ExtractError, FromMessage, Incoming, Service};
///
/// /// The number of bytes of the body, without taking it.
/// struct BodyLen(usize);
///
/// impl FromMessage for BodyLen {
///     type Context = ();
///     fn prepare(_: &Service) -> Result<(), BoxError> {
///         Ok(())
///     }
///     fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
///         Ok(BodyLen(incoming.message.payload.len()))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    note = "handler parameters must be extractors: see the list in the docs of `telestion::extract` \
            (a type of your own becomes one by implementing `FromMessage`)"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// Whether this extractor consumes the message body (at most one may).
    const BODY: bool = false;

    /// Whether this extractor takes a whole batch of messages
    /// ([`Batch<T>`](crate::Batch)); a handler that takes one must be
    /// subscribed with a batch size, and only such a handler may be.
    const BATCH: bool = false;

    /// What the extractor resolves once per route (use `()` for nothing).
    type Context: Send + Sync + 'static;

    /// Called once when the handler is subscribed: resolves what the
    /// extractor needs from the service, or fails the start with an error
    /// that says what to do (missing state, invalid typed config); a
    /// `String` or `&str` converts into it with `.into()`.
    fn prepare(service: &Service) -> Result<Self::Context, BoxError>;

    /// Extracts the value from a message. A body extractor
    /// ([`FromMessage::BODY`]) may take the body out of the message (a
    /// handler has at most one); every other extractor leaves it alone.
    fn from_message(incoming: &mut Incoming, context: &Self::Context)
    -> Result<Self, ExtractError>;

    /// The configuration keys this extractor reads, for `--help`.
    fn config_keys() -> Vec<String> {
        Vec::new()
    }
}

/// A JSON body decoded into `T` (or, as a return value, `T` encoded as the
/// JSON reply). A body that is not valid JSON for `T` is a handler error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: DeserializeOwned + Send + 'static> FromMessage for Json<T> {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        serde_json::from_slice(&incoming.message.payload)
            .map(Json)
            .map_err(ExtractError::Json)
    }
}

impl FromMessage for Bytes {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        // The only body extractor of the handler: take the body, no copy
        // and no reference-count traffic.
        Ok(std::mem::take(&mut incoming.message.payload))
    }
}

impl FromMessage for Vec<u8> {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        // Reuses the allocation when the body is not shared.
        Ok(Vec::from(std::mem::take(&mut incoming.message.payload)))
    }
}

/// The body as UTF-8 text; a body that is not UTF-8 is a handler error.
impl FromMessage for String {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        let body = Vec::from(std::mem::take(&mut incoming.message.payload));
        String::from_utf8(body).map_err(|e| ExtractError::Utf8(e.utf8_error()))
    }
}

/// The whole NATS message (subject, reply, headers, body).
impl FromMessage for async_nats::Message {
    const BODY: bool = true;
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(incoming.message.clone())
    }
}

/// The subject the message was published to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(pub String);

impl Deref for Subject {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl FromMessage for Subject {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(Subject(incoming.message.subject.to_string()))
    }
}

/// The message headers (empty when it has none).
#[derive(Debug, Clone, Default)]
pub struct Headers(pub async_nats::HeaderMap);

impl Deref for Headers {
    type Target = async_nats::HeaderMap;
    fn deref(&self) -> &async_nats::HeaderMap {
        &self.0
    }
}

impl FromMessage for Headers {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(Headers(
            incoming.message.headers.clone().unwrap_or_default(),
        ))
    }
}

/// The reply subject, when the sender expects a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo(pub Option<String>);

impl FromMessage for ReplyTo {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(ReplyTo(
            incoming.message.reply.as_ref().map(|s| s.to_string()),
        ))
    }
}

impl FromMessage for Service {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(incoming: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Ok(incoming.service.clone())
    }
}

/// Shared state provided in start-up code with
/// [`Service::provide`](crate::Service::provide), resolved once when the
/// route is subscribed (a missing state fails the start).
///
/// `State<T>` dereferences to `T`, so a parameter `db: State<Db>` is used
/// like a `&Db`: with `struct Db(Mutex<...>)`, `db.0.lock()` locks the
/// mutex (the `Arc` inside is private, so `.0` is `Db`'s field). It is a
/// cheap clone of an `Arc`; [`State::arc`] and [`State::into_arc`] give
/// that `Arc` (for a task that outlives the handler call, say).
///
/// ```no_run
/// use std::sync::Mutex;
/// use telestion::{Json, Service, State, subscribe};
///
/// /// The notes, behind a lock: handlers may run at once.
/// struct Db(Mutex<Vec<String>>);
///
/// /// Stores a note; answers with how many there are.
/// #[subscribe("notes.add", concurrency = 4)]
/// async fn add(Json(note): Json<String>, db: State<Db>) -> Json<usize> {
///     let mut notes = db.0.lock().unwrap();
///     notes.push(note);
///     Json(notes.len())
/// }
///
/// #[telestion::service]
/// async fn main(service: Service) {
///     service.provide(Db(Mutex::new(Vec::new())));
/// }
/// ```
#[derive(Debug)]
pub struct State<T>(Arc<T>);

impl<T> State<T> {
    /// State around a shared value (what a route's handler receives when
    /// the value was given to [`Service::provide_arc`](crate::Service::provide_arc)).
    pub fn new(value: Arc<T>) -> Self {
        State(value)
    }

    /// The shared `Arc` (an associated function, `State::arc(&state)`, so
    /// it never hides a method of `T`).
    pub fn arc(this: &Self) -> &Arc<T> {
        &this.0
    }

    /// The shared `Arc`, taken out (`State::into_arc(state)`).
    pub fn into_arc(this: Self) -> Arc<T> {
        this.0
    }
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + Sync + 'static> FromMessage for State<T> {
    type Context = Arc<T>;

    fn prepare(service: &Service) -> Result<Arc<T>, BoxError> {
        service.state::<T>().ok_or_else(|| {
            format!(
                "it takes `State<{0}>` but no `{0}` was provided; call \
                 `service.provide(value)` in the start-up code (the body of main)",
                type_name::<T>()
            )
            .into()
        })
    }

    fn from_message(_: &mut Incoming, state: &Arc<T>) -> Result<Self, ExtractError> {
        Ok(State(state.clone()))
    }
}

/// The merged configuration decoded into `T` (see
/// [`Config::typed`](crate::Config::typed)), decoded and validated once when
/// the handler is subscribed: invalid config fails the start.
#[derive(Debug)]
pub struct TypedConfig<T>(pub Arc<T>);

impl<T> Clone for TypedConfig<T> {
    fn clone(&self) -> Self {
        TypedConfig(self.0.clone())
    }
}

impl<T> Deref for TypedConfig<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> FromMessage for TypedConfig<T> {
    type Context = Arc<T>;

    fn prepare(service: &Service) -> Result<Arc<T>, BoxError> {
        Ok(service.typed_config::<T>()?)
    }

    fn from_message(_: &mut Incoming, config: &Arc<T>) -> Result<Self, ExtractError> {
        Ok(TypedConfig(config.clone()))
    }

    fn config_keys() -> Vec<String> {
        crate::config::field_names::<T>()
            .into_iter()
            .map(|field| field.to_ascii_uppercase())
            .collect()
    }
}

/// The service's own data directory (`$DATA_DIR/$SERVICE_NAME`), created
/// and checked to be writable when the route is subscribed: an unusable
/// `DATA_DIR` fails the start instead of every message.
///
/// It is also the way to reach files under `DATA_DIR` without following
/// symbolic links (Unix): [`DataDir::files`] opens the directory (refusing
/// a link there) and [`DataFiles`] opens the files in it (refusing links,
/// FIFOs, devices, ...). [`DataDir::create`] makes another directory under
/// `DATA_DIR` (say the shared `$DATA_DIR/logs`) usable the same way.
///
/// ```no_run
/// use std::io::Write;
/// use telestion::extract::{DataDir, FileAccess};
///
/// # fn example(service: telestion::Service) -> Result<(), Box<dyn std::error::Error>> {
/// let dir = DataDir(service.data_dir()?);
/// let mut file = dir.files()?.open("state.json", FileAccess::ReadWrite)?;
/// file.write_all(b"{}")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(pub PathBuf);

impl Deref for DataDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl FromMessage for DataDir {
    type Context = PathBuf;

    fn prepare(service: &Service) -> Result<PathBuf, BoxError> {
        Ok(service.data_dir()?)
    }

    fn from_message(_: &mut Incoming, dir: &PathBuf) -> Result<Self, ExtractError> {
        Ok(DataDir(dir.clone()))
    }
}

/// Why a file or directory under `DATA_DIR` was not opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataFileError {
    /// Something other than what was asked for is at the path: a symbolic
    /// link (never followed), a FIFO, a device, a socket, a directory where
    /// a file is expected, ... It was not opened, and nothing was written.
    #[error("refusing {path:?}: it is {found}, not {expected}; nothing was opened")]
    Refused {
        /// The path.
        path: PathBuf,
        /// What is there (`"a symbolic link"`, `"a FIFO"`, ...).
        found: &'static str,
        /// What was expected (`"a regular file"` or `"a directory"`).
        expected: &'static str,
    },
    /// The name is not the plain name of a file in the directory (empty,
    /// `.`, `..`, with a `/` or a NUL byte).
    #[error("{name:?} is not a file name (a name in {dir:?} without `/`)")]
    InvalidName {
        /// The directory.
        dir: PathBuf,
        /// The name.
        name: String,
    },
    /// A filesystem call failed.
    #[error("cannot {action} {path:?}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was tried (`"open"`, `"create"`, `"inspect"`, ...).
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl DataFileError {
    /// The path concerned.
    ///
    /// ```
    /// let error = telestion::extract::DataDir("/nonexistent/dir".into()).files().unwrap_err();
    /// assert_eq!(error.path(), std::path::Path::new("/nonexistent/dir"));
    /// ```
    pub fn path(&self) -> &std::path::Path {
        match self {
            DataFileError::Refused { path, .. } | DataFileError::Io { path, .. } => path,
            DataFileError::InvalidName { dir, .. } => dir,
        }
    }
}

impl DataDir {
    /// Creates directory `path` and its missing parents (new ones
    /// owner-only, `0700`, on Unix) and returns it; a symbolic link at
    /// `path` is refused, also a dangling one (the directories above it,
    /// `DATA_DIR`'s own path, are the operator's choice and may be links).
    /// For directories under `DATA_DIR` other than the service's own
    /// ([`Service::data_dir`](crate::Service::data_dir)), such as the
    /// shared `$DATA_DIR/logs`. A blocking call.
    ///
    /// ```
    /// let root = tempfile::tempdir()?;
    /// let logs = telestion::extract::DataDir::create(root.path().join("logs"))?;
    /// assert!(logs.is_dir());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(path: impl Into<PathBuf>) -> Result<DataDir, DataFileError> {
        let path = path.into();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(DataFileError::Refused {
                path,
                found: SYMLINK,
                expected: "a directory",
            });
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path).map_err(|source| DataFileError::Io {
            path: path.clone(),
            action: "create",
            source,
        })?;
        Ok(DataDir(path))
    }

    /// Opens the directory for reaching its files without following links:
    /// a symbolic link at the directory's path is refused (it is opened
    /// with `O_NOFOLLOW | O_DIRECTORY`), and the files are then opened
    /// relative to this handle, so a directory replaced by a link later
    /// does not redirect them. A blocking call.
    ///
    /// ```
    /// let root = tempfile::tempdir()?;
    /// std::os::unix::fs::symlink("/tmp", root.path().join("link"))?;
    /// let error = telestion::extract::DataDir(root.path().join("link")).files().unwrap_err();
    /// assert!(error.to_string().contains("a symbolic link"), "{error}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(unix)]
    pub fn files(&self) -> Result<DataFiles, DataFileError> {
        use rustix::fs::{Mode, OFlags, openat};
        let path = self.0.clone();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match openat(rustix::fs::CWD, &path, flags, Mode::empty()) {
            Ok(fd) => Ok(DataFiles { fd, path }),
            Err(errno)
                if errno == rustix::io::Errno::LOOP || errno == rustix::io::Errno::NOTDIR =>
            {
                let found = std::fs::symlink_metadata(&path)
                    .map(|m| kind_of(&m.file_type()).unwrap_or("a directory"))
                    .unwrap_or("a file that changed while being opened");
                Err(DataFileError::Refused {
                    path,
                    found,
                    expected: "a directory",
                })
            }
            Err(errno) => Err(DataFileError::Io {
                path,
                action: "open",
                source: errno.into(),
            }),
        }
    }
}

/// How [`DataFiles::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileAccess {
    /// For reading; the file must exist.
    Read,
    /// For appending (every write goes to the end); created owner-only
    /// (`0600`) when missing.
    Append,
    /// For reading and writing from the start, not truncated; created
    /// owner-only (`0600`) when missing.
    ReadWrite,
}

/// What a symbolic link is called in errors.
const SYMLINK: &str = "a symbolic link (never followed)";

/// What a file that is not a regular file is (`None`: a regular file).
fn kind_of(file_type: &std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        return None;
    }
    Some(if file_type.is_symlink() {
        SYMLINK
    } else if file_type.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            if file_type.is_fifo() {
                return Some("a FIFO");
            } else if file_type.is_socket() {
                return Some("a socket");
            } else if file_type.is_char_device() {
                return Some("a character device");
            } else if file_type.is_block_device() {
                return Some("a block device");
            }
        }
        "an unknown kind of file"
    })
}

/// A directory under `DATA_DIR`, open, whose files are opened relative to
/// it without following symbolic links (from [`DataDir::files`]). Every
/// method is a blocking call: use it in start-up code, a blocking handler
/// or `spawn_blocking`.
///
/// - [`DataFiles::open`] opens a regular file (`O_NOFOLLOW`, after
///   checking what is there, so a FIFO or a device is never even opened);
///   new files are owner-only (`0600`).
/// - [`DataFiles::check`] tells whether a regular file is there.
/// - [`DataFiles::library_path`] is for a library that opens files by
///   path itself (SQLite): it checks the file and its companions (`-wal`,
///   `-shm`, ...) and returns a path without links.
///
/// The handle is an open directory ([`AsFd`](std::os::fd::AsFd)), for
/// `*at` calls of a program's own.
#[cfg(unix)]
#[derive(Debug)]
pub struct DataFiles {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

#[cfg(unix)]
impl std::os::fd::AsFd for DataFiles {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(unix)]
impl DataFiles {
    /// The directory's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn name_ok(&self, name: &str) -> Result<(), DataFileError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(DataFileError::InvalidName {
                dir: self.path.clone(),
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn io(&self, name: &str, action: &'static str, errno: rustix::io::Errno) -> DataFileError {
        DataFileError::Io {
            path: self.path.join(name),
            action,
            source: errno.into(),
        }
    }

    /// What is at `name`: `Ok(None)` for nothing, `Ok(Some(kind))` for
    /// something that is not a regular file.
    fn inspect(&self, name: &str) -> Result<Option<Option<&'static str>>, DataFileError> {
        use rustix::fs::{AtFlags, FileType, statat};
        match statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => None,
                FileType::Symlink => Some(SYMLINK),
                FileType::Directory => Some("a directory"),
                FileType::Fifo => Some("a FIFO"),
                FileType::Socket => Some("a socket"),
                FileType::CharacterDevice => Some("a character device"),
                FileType::BlockDevice => Some("a block device"),
                _ => Some("an unknown kind of file"),
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(errno) => Err(self.io(name, "inspect", errno)),
        }
    }

    fn refused(&self, name: &str, found: &'static str) -> DataFileError {
        DataFileError::Refused {
            path: self.path.join(name),
            found,
            expected: "a regular file",
        }
    }

    /// Whether a regular file `name` is in the directory (`false`: nothing
    /// is there); a symbolic link or anything else that is not a regular
    /// file is refused.
    ///
    /// ```
    /// use telestion::extract::DataDir;
    /// let root = tempfile::tempdir()?;
    /// let files = DataDir(root.path().to_owned()).files()?;
    /// assert!(!files.check("data.bin")?);
    /// std::fs::write(root.path().join("data.bin"), "x")?;
    /// assert!(files.check("data.bin")?);
    /// std::os::unix::fs::symlink("/etc/passwd", root.path().join("link"))?;
    /// assert!(files.check("link").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self, name: &str) -> Result<bool, DataFileError> {
        self.name_ok(name)?;
        match self.inspect(name)? {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(found)) => Err(self.refused(name, found)),
        }
    }

    /// Opens the regular file `name` in the directory, never following a
    /// symbolic link (not even a dangling one: nothing is created at its
    /// target) and never opening anything else (a FIFO, a device, a
    /// directory): those are refused. Files it creates are owner-only
    /// (`0600`). The file is opened with `O_NONBLOCK` (no effect on a
    /// regular file), `O_NOCTTY` and `O_CLOEXEC`.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use telestion::extract::{DataDir, FileAccess};
    /// let root = tempfile::tempdir()?;
    /// let files = DataDir(root.path().to_owned()).files()?;
    /// files.open("log.txt", FileAccess::Append)?.write_all(b"one\n")?;
    /// let mut text = String::new();
    /// files.open("log.txt", FileAccess::Read)?.read_to_string(&mut text)?;
    /// assert_eq!(text, "one\n");
    /// std::os::unix::fs::symlink(root.path().join("elsewhere"), root.path().join("dangling"))?;
    /// assert!(files.open("dangling", FileAccess::Append).is_err());
    /// assert!(!root.path().join("elsewhere").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self, name: &str, access: FileAccess) -> Result<std::fs::File, DataFileError> {
        use rustix::fs::{FileType, Mode, OFlags, fstat, openat};
        self.name_ok(name)?;
        // Not even opened when it is something else: opening a device or a
        // FIFO can have effects of its own.
        if let Some(Some(found)) = self.inspect(name)? {
            return Err(self.refused(name, found));
        }
        let access_flags = match access {
            FileAccess::Read => OFlags::RDONLY,
            FileAccess::Append => OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE,
            FileAccess::ReadWrite => OFlags::RDWR | OFlags::CREATE,
        };
        let flags =
            access_flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::RUSR | Mode::WUSR).map_err(|errno| {
            use rustix::io::Errno;
            match errno {
                // Replaced in between: say what is there now.
                Errno::LOOP | Errno::NXIO | Errno::ISDIR => match self.inspect(name) {
                    Ok(Some(Some(found))) => self.refused(name, found),
                    _ => self.refused(name, "not a regular file"),
                },
                errno => self.io(name, "open", errno),
            }
        })?;
        let stat = fstat(&fd).map_err(|errno| self.io(name, "inspect", errno))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(self.refused(name, "not a regular file"));
        }
        Ok(std::fs::File::from(fd))
    }

    /// The path of `name` for a library that opens the file by path itself
    /// (SQLite): checks that `name` and each companion `name + suffix`
    /// (SQLite: `-wal`, `-shm`, `-journal`) is a regular file or absent,
    /// never a link, and returns the directory's canonical path (without
    /// links, checked to be this very directory) joined with `name`.
    ///
    /// The library opens the file after this check, by path: open it with
    /// the library's own no-follow option as well (SQLite:
    /// `SQLITE_OPEN_NOFOLLOW`, which refuses a link anywhere in the path;
    /// the returned path has none), and create the file first with
    /// [`DataFiles::open`] so that it is owner-only (SQLite gives its
    /// companions the database's permissions).
    ///
    /// ```
    /// use telestion::extract::DataDir;
    /// let root = tempfile::tempdir()?;
    /// let files = DataDir(root.path().to_owned()).files()?;
    /// let path = files.library_path("db.sqlite3", &["-wal", "-shm"])?;
    /// assert_eq!(path, root.path().canonicalize()?.join("db.sqlite3"));
    /// std::os::unix::fs::symlink("/tmp/x", root.path().join("db.sqlite3-wal"))?;
    /// assert!(files.library_path("db.sqlite3", &["-wal", "-shm"]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn library_path(&self, name: &str, companions: &[&str]) -> Result<PathBuf, DataFileError> {
        self.check(name)?;
        for suffix in companions {
            self.check(&format!("{name}{suffix}"))?;
        }
        let real = std::fs::canonicalize(&self.path).map_err(|source| DataFileError::Io {
            path: self.path.clone(),
            action: "resolve",
            source,
        })?;
        let same = |a: &rustix::fs::Stat, b: &rustix::fs::Stat| {
            (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        };
        let open = rustix::fs::fstat(&self.fd).map_err(|errno| DataFileError::Io {
            path: self.path.clone(),
            action: "inspect",
            source: errno.into(),
        })?;
        match rustix::fs::stat(&real) {
            Ok(now) if same(&open, &now) => Ok(real.join(name)),
            _ => Err(DataFileError::Io {
                path: self.path.clone(),
                action: "use",
                source: std::io::Error::other("the directory was replaced while being opened"),
            }),
        }
    }
}

#[cfg(all(test, unix))]
mod data_file_tests {
    use std::io::Write;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn below(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            found.push(entry.unwrap().path());
        }
        found
    }

    #[test]
    fn links_are_never_followed_and_nothing_appears_outside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        symlink(&target, root.path().join("link")).unwrap();
        symlink(outside.path().join("new"), root.path().join("dangling")).unwrap();
        let files = DataDir(root.path().to_owned()).files().unwrap();
        for name in ["link", "dangling"] {
            for access in [FileAccess::Read, FileAccess::Append, FileAccess::ReadWrite] {
                let error = files.open(name, access).unwrap_err();
                assert!(
                    matches!(error, DataFileError::Refused { .. })
                        && error.to_string().contains("symbolic link"),
                    "{error}"
                );
            }
            assert!(files.check(name).is_err());
            assert!(files.library_path(name, &[]).is_err());
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(below(outside.path()), [target]);
    }

    #[test]
    fn a_linked_directory_is_refused_and_a_replaced_one_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let link = root.path().join("dir");
        symlink(outside.path(), &link).unwrap();
        assert!(matches!(
            DataDir(link.clone()).files().unwrap_err(),
            DataFileError::Refused { .. }
        ));
        assert!(matches!(
            DataDir::create(&link).unwrap_err(),
            DataFileError::Refused { .. }
        ));
        std::fs::remove_file(&link).unwrap();
        let files = DataDir::create(&link).unwrap().files().unwrap();
        // Swapped for a link after opening: the files still go to the
        // directory that was opened.
        std::fs::rename(&link, root.path().join("moved")).unwrap();
        symlink(outside.path(), &link).unwrap();
        files
            .open("a", FileAccess::Append)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(below(outside.path()).is_empty());
        assert!(root.path().join("moved/a").is_file());
        assert!(files.library_path("a", &[]).is_err());
    }

    #[test]
    fn new_files_are_owner_only_and_special_files_refused() {
        let root = tempfile::tempdir().unwrap();
        let files = DataDir(root.path().to_owned()).files().unwrap();
        files.open("new", FileAccess::ReadWrite).unwrap();
        let mode = std::fs::metadata(root.path().join("new"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::create_dir(root.path().join("sub")).unwrap();
        let fifo = std::ffi::CString::new(root.path().join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for (name, found) in [("sub", "a directory"), ("fifo", "a FIFO")] {
            let error = files
                .open(name, FileAccess::Append)
                .unwrap_err()
                .to_string();
            assert!(error.contains(found), "{error}");
        }
        assert!(files.open("missing", FileAccess::Read).is_err());
        for bad in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(matches!(
                files.open(bad, FileAccess::Append).unwrap_err(),
                DataFileError::InvalidName { .. }
            ));
        }
    }
}
