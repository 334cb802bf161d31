//! Files a service under test writes: what is below a directory, permission
//! bits, and the process umask.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Every path below `dir`, recursively: files, directories and symbolic
/// links (listed, not followed). An unreadable directory is skipped.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("logs")).unwrap();
/// std::fs::write(dir.path().join("logs/a.log"), "x\n").unwrap();
/// assert_eq!(telestion_test::paths_below(dir.path()).len(), 2);
/// assert_eq!(telestion_test::files_below(dir.path()).len(), 1);
/// ```
pub fn paths_below(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                stack.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths
}

/// Every file (not directory) below `dir`, recursively; symbolic links are
/// listed, not followed.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    paths_below(dir)
        .into_iter()
        .filter(|path| !path.symlink_metadata().is_ok_and(|m| m.is_dir()))
        .collect()
}

/// The permission bits (`0o777` part) of `path`.
///
/// # Panics
///
/// When `path` cannot be read.
pub fn mode(path: &Path) -> u32 {
    match std::fs::metadata(path) {
        Ok(metadata) => metadata.permissions().mode() & 0o777,
        Err(e) => panic!("cannot read the mode of {}: {e}", path.display()),
    }
}

/// Sets the process umask while alive, and restores the previous one on
/// drop. The umask is process-wide: hold it only around code that creates
/// files, in a test binary whose other tests do not care.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let file = dir.path().join("f");
/// {
///     let _umask = telestion_test::Umask::set(0o077);
///     std::fs::write(&file, "x").unwrap();
/// }
/// assert_eq!(telestion_test::mode(&file), 0o600);
/// ```
#[derive(Debug)]
pub struct Umask(libc::mode_t);

impl Umask {
    /// Sets the umask to `mask`.
    pub fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: umask(2) cannot fail and touches no memory.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}
