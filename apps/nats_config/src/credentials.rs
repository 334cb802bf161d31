//! Passwords, one file per user (`<CREDENTIALS_DIR>/<user>.password`,
//! owner-only): created with 32 random bytes when missing, kept otherwise
//! (delete a file and run again to rotate it). Only their bcrypt hashes go
//! into the server's configuration.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;

/// The longest password file read.
const MAX_BYTES: u64 = 4096;

/// The password of `user`, read from its file or created.
pub fn password(dir: &Path, user: &str) -> Result<String, String> {
    let path = dir.join(format!("{user}.password"));
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(file) => read(file, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(format!(
            "cannot open {} (a symbolic link is refused): {e}",
            path.display()
        )),
    }
}

fn read(file: File, path: &Path) -> Result<String, String> {
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} can be read by others (mode {:o}); make it owner-only (chmod 600)",
            path.display(),
            metadata.permissions().mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(password)
}

fn create(path: &Path) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(format!("{password}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(password)
}

/// Creates the credentials directory (owner-only) when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let metadata =
        fs::symlink_metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !metadata.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} owner-only: {e}", dir.display()))
}

/// The bcrypt hash of `password` for the server's configuration.
pub fn hash(password: &str) -> Result<String, String> {
    bcrypt::hash(password, 10).map_err(|e| format!("cannot hash a password: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn created_once_owner_only_and_kept() {
        let dir = tempfile_dir();
        let first = password(&dir, "alice").unwrap();
        assert_eq!(password(&dir, "alice").unwrap(), first);
        let mode = fs::metadata(dir.join("alice.password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::os::unix::fs::symlink("/etc/hostname", dir.join("bob.password")).unwrap();
        assert!(password(&dir, "bob").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nats-config-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
