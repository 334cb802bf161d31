//! Real `nats-server` processes on free loopback ports, killed on drop and
//! with the test process (like a [`Process`](crate::Process)).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process_group;

/// The `nats-server` binary: `NATS_SERVER_BIN` when set, else the first on
/// `PATH` (or in `/usr/sbin`, `/usr/local/bin`, `/usr/bin`).
///
/// # Panics
///
/// When there is none, with the install hint: tests that need a server fail
/// without one, they never skip.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NATS_SERVER_BIN={path:?} is not a file; point it at a nats-server binary"
        );
        return path;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/bin",
    ]) {
        let candidate = Path::new(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server is not installed; these tests need a real NATS server. \
         Install it with `apt-get update && apt-get install -y nats-server` \
         (or run `bash scripts/test.sh`, which does that), or set NATS_SERVER_BIN"
    );
}

/// The current nats-server release, at `NATS_SERVER_CURRENT_BIN` (installed
/// by `scripts/ensure-nats-server-current.sh`), for JetStream tests that
/// run against Debian's server and the current one.
///
/// # Panics
///
/// When the variable is not set or names no file, with the install hint.
pub fn nats_server_current_bin() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER_CURRENT_BIN").unwrap_or_else(|| {
        panic!(
            "NATS_SERVER_CURRENT_BIN is not set: run `. scripts/ensure-nats-server-current.sh` \
             (or `bash scripts/test.sh`), or point it at a nats-server binary of the current release"
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "NATS_SERVER_CURRENT_BIN={path:?} is not a file; run `. scripts/ensure-nats-server-current.sh`"
    );
    path
}

/// The servers every JetStream test runs against, as `(version, binary)`:
/// Debian's `nats-server` ([`nats_server_bin`]) and the current release at
/// `NATS_SERVER_CURRENT_BIN` (installed by
/// `scripts/ensure-nats-server-current.sh`).
///
/// # Panics
///
/// When either is missing, saying how to install it.
pub fn server_binaries() -> Vec<(String, PathBuf)> {
    let current = nats_server_current_bin();
    [nats_server_bin(), current]
        .into_iter()
        .map(|bin| (server_version(&bin), bin))
        .collect()
}

/// What `bin --version` prints (`nats-server: v2.9.10`).
///
/// # Panics
///
/// When it cannot be run.
pub fn server_version(bin: &Path) -> String {
    let output = Command::new(bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin:?}: {e}"));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A free TCP port on 127.0.0.1, never 4222, taken from below the kernel's
/// ephemeral range: ports in that range are also handed out to outgoing
/// connections (a cluster node dialling its routes, a client connecting),
/// which could take a port between choosing it and a server binding it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.min(65_536));
    if high > low + 1_000 {
        for _ in 0..1_000 {
            // Every `RandomState` has new random keys: a random number.
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            let port = (low + (random % u64::from(high - low)) as u32) as u16;
            if port != 4222 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("no free loopback port")
            .local_addr()
            .expect("no local address")
            .port();
        if port != 4222 {
            return port;
        }
    }
}

/// How to configure a server.
#[derive(Debug, Default, Clone)]
pub struct ServerOptions {
    /// `user`/`password` required.
    pub auth: Option<(String, String)>,
    /// Extra config-file text (e.g. a `tls { ... }` or `authorization` block).
    pub config: Option<String>,
    /// Cluster: own route port and the route ports of the others.
    pub cluster: Option<(u16, Vec<u16>)>,
    /// Fixed client port (for restarts); a free one when `None`.
    pub port: Option<u16>,
    /// Server name (clusters need distinct names).
    pub name: Option<String>,
    /// Enable JetStream, with its store in the server's own temporary
    /// directory (kept across [`NatsServer::restart`]).
    pub jetstream: bool,
    /// The `nats-server` binary to run (default: [`nats_server_bin`]), to
    /// test against several server versions.
    pub binary: Option<PathBuf>,
    /// Serve the HTTP monitoring endpoints (`/varz`, `/connz`, `/subsz`,
    /// ...) on a free loopback port, for [`NatsServer::monitor`].
    pub monitoring: bool,
}

impl ServerOptions {
    /// The defaults: a plain server on a free port.
    pub fn new() -> ServerOptions {
        ServerOptions::default()
    }

    /// Requires user/password.
    pub fn auth(mut self, user: &str, password: &str) -> ServerOptions {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Adds config-file text.
    pub fn config(mut self, text: impl Into<String>) -> ServerOptions {
        self.config = Some(text.into());
        self
    }

    /// Enables JetStream.
    pub fn jetstream(mut self) -> ServerOptions {
        self.jetstream = true;
        self
    }

    /// Serves the HTTP monitoring endpoints (see [`NatsServer::monitor`]).
    pub fn monitoring(mut self) -> ServerOptions {
        self.monitoring = true;
        self
    }

    /// Runs this `nats-server` binary instead of [`nats_server_bin`].
    pub fn binary(mut self, path: impl Into<PathBuf>) -> ServerOptions {
        self.binary = Some(path.into());
        self
    }

    /// A fixed client port.
    pub fn port(mut self, port: u16) -> ServerOptions {
        self.port = Some(port);
        self
    }

    /// A server name.
    pub fn name(mut self, name: impl Into<String>) -> ServerOptions {
        self.name = Some(name.into());
        self
    }

    /// Joins a cluster: own route port and the route ports of the others.
    pub fn cluster(mut self, own: u16, others: Vec<u16>) -> ServerOptions {
        self.cluster = Some((own, others));
        self
    }
}

/// A running `nats-server`; killed when dropped (also while a panic
/// unwinds) and when the test process dies, even by `SIGKILL`, as a
/// [`Process`](crate::Process) is.
///
/// ```no_run
/// let server = telestion_test::NatsServer::start();
/// println!("NATS_URL={}", server.url());
/// ```
pub struct NatsServer {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The cluster (route) port, when clustered.
    pub cluster_port: Option<u16>,
    /// The HTTP monitoring port, when enabled
    /// ([`ServerOptions::monitoring`]); the same across restarts.
    pub monitor_port: Option<u16>,
    dir: tempfile::TempDir,
    config: String,
    binary: Option<PathBuf>,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl NatsServer {
    /// A plain server on a free loopback port.
    pub fn start() -> NatsServer {
        NatsServer::start_with(ServerOptions::default())
    }

    /// A server with JetStream enabled.
    pub fn start_jetstream() -> NatsServer {
        NatsServer::start_with(ServerOptions::new().jetstream())
    }

    /// A server requiring user/password.
    pub fn with_auth(user: &str, password: &str) -> NatsServer {
        NatsServer::start_with(ServerOptions::new().auth(user, password))
    }

    /// A server configured by `options`.
    ///
    /// # Panics
    ///
    /// When the server cannot start (with a fixed port: when it is taken).
    pub fn start_with(options: ServerOptions) -> NatsServer {
        let fixed_port = options.port.is_some();
        let mut server = NatsServer::configure(options);
        if fixed_port {
            server.spawn();
        } else {
            server.spawn_on_free_port();
        }
        server
    }

    /// Starts a cluster of `size` nodes on free loopback ports, each from
    /// `options` (JetStream, binary, ...) plus its own name (`node<i>`),
    /// client port and route port; tries again on fresh ports (up to 5
    /// times) when a port was taken. Returns the client ports and the nodes.
    ///
    /// ```no_run
    /// use telestion_test::{NatsServer, ServerOptions};
    /// let (ports, nodes) = NatsServer::start_cluster(3, ServerOptions::new().jetstream());
    /// assert_eq!((ports.len(), nodes.len()), (3, 3));
    /// ```
    ///
    /// # Panics
    ///
    /// When no cluster started in 5 tries.
    pub fn start_cluster(size: usize, options: ServerOptions) -> (Vec<u16>, Vec<NatsServer>) {
        for _ in 0..5 {
            let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
            let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
            let nodes: Option<Vec<NatsServer>> = (0..size)
                .map(|i| {
                    let others = (0..size)
                        .filter(|&j| j != i)
                        .map(|j| route_ports[j])
                        .collect();
                    NatsServer::try_start_with(
                        options
                            .clone()
                            .name(format!("node{i}"))
                            .cluster(route_ports[i], others)
                            .port(ports[i]),
                    )
                })
                .collect();
            if let Some(nodes) = nodes {
                return (ports, nodes);
            }
        }
        panic!("could not start a {size}-node cluster on free ports in 5 tries");
    }

    /// Like [`NatsServer::start_with`] with a fixed port, but `None` instead
    /// of a panic when the server exits at start (the port was taken).
    pub fn try_start_with(options: ServerOptions) -> Option<NatsServer> {
        assert!(options.port.is_some(), "try_start_with needs a fixed port");
        let mut server = NatsServer::configure(options);
        server.try_spawn().then_some(server)
    }

    /// The server with its config file content, not started yet.
    fn configure(options: ServerOptions) -> NatsServer {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let port = options.port.unwrap_or_else(free_port);
        let monitor_port = options.monitoring.then(free_port);
        let config = config_text(&options, dir.path(), monitor_port);
        NatsServer {
            child: None,
            port,
            cluster_port: options.cluster.as_ref().map(|(p, _)| *p),
            monitor_port,
            dir,
            config,
            binary: options.binary.clone(),
        }
    }

    /// Changes the configuration of the running server: rewrites its config
    /// file from `options` (the port, the JetStream store and the
    /// monitoring port stay) and sends SIGHUP, which makes nats-server
    /// reload it; returns once it logged the reload. Clients whose
    /// credentials the new configuration refuses are disconnected and
    /// cannot connect again.
    ///
    /// ```no_run
    /// use telestion_test::{NatsServer, ServerOptions};
    ///
    /// let mut server = NatsServer::start_with(ServerOptions::new().auth("svc", "old"));
    /// server.reload_with(ServerOptions::new().auth("svc", "new"));
    /// ```
    ///
    /// # Panics
    ///
    /// When the server does not run, or does not log the reload within
    /// [`WAIT`](crate::WAIT).
    pub fn reload_with(&mut self, options: ServerOptions) {
        const RELOADED: &str = "Reloaded server configuration";
        let pid = self.pid().expect("the server does not run");
        let before = self.log().matches(RELOADED).count();
        self.config = config_text(&options, self.dir.path(), self.monitor_port);
        std::fs::write(self.dir.path().join("server.conf"), &self.config)
            .expect("cannot write the server config");
        // SAFETY: kill(2) with our own child's pid.
        unsafe {
            libc::kill(pid as i32, libc::SIGHUP);
        }
        let deadline = Instant::now() + crate::WAIT;
        while self.log().matches(RELOADED).count() == before {
            assert!(
                Instant::now() < deadline,
                "nats-server did not reload its configuration; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        if !self.try_spawn() {
            panic!(
                "nats-server exited at start on port {} (port taken?); its log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Starts a server on a free port, taking another port when the chosen
    /// one was grabbed by someone else in between.
    fn spawn_on_free_port(&mut self) {
        for _ in 0..5 {
            if self.try_spawn() {
                return;
            }
            self.port = free_port();
        }
        panic!(
            "nats-server could not start on any of 5 free ports; its log:\n{}",
            self.log()
        );
    }

    /// Spawns the server and waits until it listens; `false` when it exited
    /// (for example because the port was taken).
    fn try_spawn(&mut self) -> bool {
        let conf_path = self.dir.path().join("server.conf");
        std::fs::write(&conf_path, &self.config).expect("cannot write the server config");
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .expect("cannot create the server log");
        let binary = self.binary.clone().unwrap_or_else(nats_server_bin);
        let mut cmd = Command::new(binary);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = process_group::spawn(cmd)
            .1
            .expect("cannot start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port)
            .parse()
            .expect("loopback address");
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                process_group::kill(&mut child);
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                // Listening, and it is ours: it has not exited.
                if child.try_wait().ok().flatten().is_none() {
                    self.child = Some(child);
                    return true;
                }
                process_group::kill(&mut child);
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        process_group::kill(&mut child);
        panic!(
            "nats-server did not listen on port {} within 10 s",
            self.port
        );
    }

    /// The server's log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>` (no scheme).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (it can be restarted on the same port).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process_group::kill(&mut child);
        }
    }

    /// Starts it again on the same port with the same config (and the same
    /// JetStream store).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// A directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The JSON of a monitoring endpoint, e.g. `"/connz?subs=detail"` (every
    /// client connection, by name, with its subscriptions and message
    /// counters) or `"/subsz?subs=1"`. A blocking call; needs
    /// [`ServerOptions::monitoring`].
    ///
    /// ```no_run
    /// use telestion_test::{NatsServer, ServerOptions};
    ///
    /// let server = NatsServer::start_with(ServerOptions::new().monitoring());
    /// let connz = server.monitor("/connz?subs=detail");
    /// for connection in connz["connections"].as_array().unwrap() {
    ///     println!("{} received {}", connection["name"], connection["out_msgs"]);
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// When monitoring is off, or the endpoint does not answer with JSON
    /// within 10 s.
    pub fn monitor(&self, path: &str) -> serde_json::Value {
        let port = self
            .monitor_port
            .expect("monitoring is off; start the server with ServerOptions::monitoring()");
        let url = format!("http://127.0.0.1:{port}{path}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let text = agent
            .get(&url)
            .call()
            .and_then(|mut response| response.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url} did not return JSON ({e}): {text}"))
    }

    /// A connected async-nats client.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("test client cannot connect")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The text of a server's config file for `options`, with its JetStream
/// store in `dir`.
fn config_text(options: &ServerOptions, dir: &Path, monitor_port: Option<u16>) -> String {
    let mut conf = String::new();
    if let Some(name) = &options.name {
        conf.push_str(&format!("server_name: {name}\n"));
    }
    if let Some((user, password)) = &options.auth {
        conf.push_str(&format!(
            "authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}\n"
        ));
    }
    if options.jetstream {
        let store = dir.join("jetstream");
        conf.push_str(&format!(
            "jetstream {{\n  store_dir: \"{}\"\n}}\n",
            store.display()
        ));
    }
    if let Some((cluster_port, routes)) = &options.cluster {
        let routes: Vec<String> = routes
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        conf.push_str(&format!(
            "cluster {{\n  name: testcluster\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
            routes.join(", ")
        ));
    }
    if let Some(monitor_port) = monitor_port {
        conf.push_str(&format!("http: \"127.0.0.1:{monitor_port}\"\n"));
    }
    if let Some(extra) = &options.config {
        conf.push_str(extra);
        conf.push('\n');
    }
    conf
}

/// Waits until something accepts connections on the port.
///
/// # Panics
///
/// After `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .expect("loopback address");
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on port {port} within {timeout:?}");
}
