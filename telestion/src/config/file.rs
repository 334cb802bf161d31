//! The JSON config file named by `CONFIG_FILE`, optionally narrowed to the
//! object under `CONFIG_KEY`.
//!
//! Only a regular file is read (a FIFO, a device such as `/dev/zero`, a
//! directory or a socket is refused before anything is read, so the start
//! can neither block nor fill memory), and at most [`MAX_FILE_BYTES`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cli::shorten;
use crate::error::ConfigError;

/// The largest config file read: 16 MiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why parsed file contents are not usable.
#[derive(Debug)]
pub(crate) enum FileError {
    /// Not JSON.
    Json(serde_json::Error),
    /// JSON of the wrong shape.
    Shape(String),
}

/// Reads the JSON config file and narrows it to `config_key` when given.
pub(crate) fn read_file(
    path: &Path,
    config_key: Option<&str>,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let text = read_bounded(path)?;
    parse_file(&text, config_key).map_err(|error| match error {
        FileError::Json(source) => ConfigError::FileJson {
            path: path.to_owned(),
            source,
        },
        FileError::Shape(reason) => ConfigError::FileShape {
            path: path.to_owned(),
            reason,
        },
    })
}

fn read_error(
    path: &Path,
    reason: impl Into<String>,
    source: Option<std::io::Error>,
) -> ConfigError {
    ConfigError::FileRead {
        path: PathBuf::from(path),
        reason: reason.into(),
        source,
    }
}

/// The bytes of a regular file of at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading blocks until a writer appears; with
        // O_NONBLOCK it returns at once and the type check below refuses it.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| read_error(path, "cannot open it", Some(e)))?;
    let metadata = file
        .metadata()
        .map_err(|e| read_error(path, "cannot inspect it", Some(e)))?;
    if !metadata.is_file() {
        let kind = file_kind(&metadata);
        return Err(read_error(
            path,
            format!("it is {kind}, not a regular file; CONFIG_FILE must name a JSON file"),
            None,
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, "cannot read it", Some(e)))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(bytes)
}

fn too_large(path: &Path) -> ConfigError {
    read_error(
        path,
        format!(
            "it is larger than the limit of {} MiB for CONFIG_FILE",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
        None,
    )
}

fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Parses config file contents.
pub(crate) fn parse_file(
    contents: &[u8],
    config_key: Option<&str>,
) -> Result<BTreeMap<String, Value>, FileError> {
    let root: Value = serde_json::from_slice(contents).map_err(FileError::Json)?;
    let root = match root {
        Value::Object(map) => map,
        other => {
            return Err(FileError::Shape(format!(
                "the top level must be a JSON object, found {}",
                kind(&other)
            )));
        }
    };
    let object = match config_key {
        None => root,
        Some(key) => match root.get(key) {
            Some(Value::Object(inner)) => inner.clone(),
            Some(other) => {
                return Err(FileError::Shape(format!(
                    "CONFIG_KEY `{}` names a {}, but it must name a JSON object",
                    shorten(key),
                    kind(other)
                )));
            }
            None => {
                return Err(FileError::Shape(format!(
                    "CONFIG_KEY `{}` is not a key of the file's top-level object",
                    shorten(key)
                )));
            }
        },
    };
    Ok(object.into_iter().collect())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
