//! Real PostgreSQL servers: a private cluster (`initdb`) per server on a
//! free loopback port, started as a non-root user, killed on drop.
//!
//! PostgreSQL refuses to run as root. When the test runs as root, the
//! cluster belongs to the `postgres` user (created by Debian's `postgresql`
//! package) and `initdb` and `postgres` run as that user; otherwise as the
//! current user. The server is the test's own child process (no `pg_ctl`
//! daemon), started like every child of the kit: the leader of a process
//! group of its own (its backends stay in it), killed with the whole group
//! when the [`PostgresServer`] is dropped (after `SIGQUIT`, PostgreSQL's
//! immediate shutdown, had 5 s), also while a panic unwinds, and killed by
//! the kernel and the kit's watchdog when the test process dies.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process_group;
use crate::server::free_port;

/// The install hint of a missing PostgreSQL.
const INSTALL_HINT: &str = "PostgreSQL is not installed; these tests need a real server. \
     Install it with `apt-get update && apt-get install -y postgresql` (or run \
     `bash scripts/test.sh`, which does that), or set PG_BIN_DIR to the directory \
     holding initdb and postgres";

/// The directory holding PostgreSQL's `initdb` and `postgres`: `PG_BIN_DIR`
/// when set, else the newest `/usr/lib/postgresql/<version>/bin` (Debian's
/// layout), else the directory of an `initdb` on `PATH`.
///
/// # Panics
///
/// When there is none, with the install hint: tests that need PostgreSQL
/// fail without it, they never skip.
pub fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("postgres").is_file(),
            "PG_BIN_DIR={dir:?} holds no initdb and postgres; {INSTALL_HINT}"
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let dir = Path::new(dir);
        if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            return dir.to_owned();
        }
    }
    panic!("{INSTALL_HINT}");
}

/// The user ids the cluster runs as: `None` to stay the current user,
/// `Some((uid, gid))` of `postgres` when running as root.
fn cluster_owner() -> Option<(u32, u32)> {
    // SAFETY: getuid(2) cannot fail.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let owner = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    });
    Some(owner.unwrap_or_else(|| {
        panic!(
            "running as root, but there is no `postgres` user to run PostgreSQL as \
             (PostgreSQL refuses to run as root); {INSTALL_HINT}"
        )
    }))
}

/// A command that runs as `owner` (when given).
fn owned_command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if let Some((uid, gid)) = owner {
        // std also drops root's supplementary groups (setgroups) here.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    let Some((uid, gid)) = owner else { return };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("cannot give {} to the postgres user: {e}", path.display()));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            chown_tree(&entry.path(), Some((uid, gid)));
        }
    }
}

/// A running PostgreSQL server with a private cluster in a temporary
/// directory, listening on `127.0.0.1` only (no Unix socket), user
/// `postgres` trusted without a password. Killed when dropped; the cluster
/// is removed with it.
///
/// ```no_run
/// let server = telestion_test::PostgresServer::start();
/// println!("DATABASE_URL={}", server.url());
/// ```
pub struct PostgresServer {
    child: Option<Child>,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    settings: Vec<(String, String)>,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl PostgresServer {
    /// A server tuned for tests: `fsync`, `synchronous_commit` and
    /// `full_page_writes` off (a crash of the machine may lose the
    /// cluster, which the test throws away anyway).
    ///
    /// # Panics
    ///
    /// When PostgreSQL is missing (with the install hint) or does not start.
    pub fn start() -> PostgresServer {
        PostgresServer::start_with(&[
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
        ])
    }

    /// A server with PostgreSQL's default (durable) settings, for
    /// measurements that should reflect a deployment.
    pub fn start_durable() -> PostgresServer {
        PostgresServer::start_with(&[])
    }

    /// A server with these `postgres -c NAME=VALUE` settings.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is missing or does not start.
    pub fn start_with(settings: &[(&str, &str)]) -> PostgresServer {
        let bin = postgres_bin_dir();
        let owner = cluster_owner();
        let dir = tempfile::Builder::new()
            .prefix("telestion-pg-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let data = dir.path().join("data");
        chown_tree(dir.path(), owner);
        let log = std::fs::File::create(dir.path().join("initdb.log"))
            .expect("cannot create the initdb log");
        let mut initdb = owned_command(&bin.join("initdb"), owner);
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdout(log.try_clone().expect("cannot share the initdb log"))
            .stderr(log);
        let (_, initdb) = process_group::spawn(initdb);
        let mut initdb = initdb.expect("cannot run initdb");
        let status = initdb.wait().expect("cannot wait for initdb");
        process_group::kill(&mut initdb);
        assert!(
            status.success(),
            "initdb failed ({status}); its log:\n{}",
            std::fs::read_to_string(dir.path().join("initdb.log")).unwrap_or_default()
        );
        let mut server = PostgresServer {
            child: None,
            port: 0,
            dir,
            bin,
            owner,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.try_spawn() {
                return server;
            }
        }
        panic!(
            "PostgreSQL could not start on any of 5 free ports; its log:\n{}",
            server.log()
        );
    }

    /// Starts the server on `self.port`; `false` when it exited (port taken).
    fn try_spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("cannot open the server log");
        chown_tree(&self.dir.path().join("server.log"), self.owner);
        let mut cmd = owned_command(&self.bin.join("postgres"), self.owner);
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=100"]);
        for (key, value) in &self.settings {
            cmd.arg("-c").arg(format!("{key}={value}"));
        }
        cmd.stdout(Stdio::null()).stderr(log);
        let (_, child) = process_group::spawn(cmd);
        let mut child = child.expect("cannot start postgres");
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port)
            .parse()
            .expect("loopback address");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                process_group::kill(&mut child);
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
                && self.log().contains("ready to accept connections")
            {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        process_group::kill(&mut child);
        panic!(
            "postgres did not get ready on port {} within 30 s; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's process id (the postmaster), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server at once (`SIGQUIT`, then `SIGKILL` to its whole
    /// process group after 5 s); the cluster stays and
    /// [`PostgresServer::restart`] starts it again on the same port.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of its group (backends) goes with it.
        process_group::kill(&mut child);
    }

    /// Starts it again on the same port with the same cluster.
    ///
    /// # Panics
    ///
    /// When it does not start (the port was taken meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.try_spawn(),
            "postgres did not start again on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
