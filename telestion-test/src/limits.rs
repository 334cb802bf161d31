//! Resource limits for a child process, and a small filesystem that fills
//! up: for tests of how a service behaves when the system says no.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// A resource whose limit [`limit`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Open file descriptors (`ulimit -n`, `RLIMIT_NOFILE`).
    OpenFiles,
    /// The size in bytes up to which a process may grow a file (`ulimit -f`,
    /// `RLIMIT_FSIZE`); a write past it fails with `EFBIG` when the process
    /// ignores or handles `SIGXFSZ`, and kills it otherwise.
    FileSize,
}

/// Makes `cmd` run its program with the soft and hard limit of `resource`
/// set to `value`, as `sh -c 'ulimit ...; exec program'` would.
///
/// ```no_run
/// use telestion_test::{Process, Resource, clean_command, limit};
///
/// let mut cmd = clean_command("target/debug/my-service");
/// limit(&mut cmd, Resource::OpenFiles, 64);
/// let service = Process::spawn(cmd);
/// # drop(service);
/// ```
pub fn limit(cmd: &mut Command, resource: Resource, value: u64) {
    let resource = match resource {
        Resource::OpenFiles => libc::RLIMIT_NOFILE,
        Resource::FileSize => libc::RLIMIT_FSIZE,
    };
    let limit = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: the closure runs in the child between fork and exec, where it
    // calls only setrlimit(2), which is async-signal-safe, on a value it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(resource, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A `tmpfs` of a few kilobytes mounted on a new temporary directory, for
/// disk-full (`ENOSPC`) tests; unmounted (lazily, so open files do not keep
/// it busy) and removed on drop. Needs root (or `CAP_SYS_ADMIN`).
///
/// ```no_run
/// let disk = telestion_test::Tmpfs::mount(64 * 1024);
/// let full = std::fs::write(disk.path().join("big"), vec![0u8; 128 * 1024]);
/// assert_eq!(full.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
/// ```
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a `tmpfs` of `bytes` bytes (rounded up to whole pages).
    ///
    /// # Panics
    ///
    /// When it cannot be mounted, saying why (`mount` needs root).
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs on {} (this test needs root or CAP_SYS_ADMIN): {}",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
