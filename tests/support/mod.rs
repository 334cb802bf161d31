//! Test support: real `nats-server` processes on free loopback ports, killed
//! on drop, and helpers to run the example binaries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous limit for a process to start, answer or exit.
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of `nats-server`, or a panic with the install hint.
pub fn nats_server_bin() -> PathBuf {
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
         (or run `bash scripts/test.sh`, which does that)"
    );
}

/// A free TCP port on 127.0.0.1, taken from below the kernel's ephemeral
/// range: ports in that range are also handed out to outgoing connections
/// (a cluster node dialling its routes, a client connecting), which could
/// take a port between choosing it and a server binding it.
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
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `nats-server`; killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub cluster_port: Option<u16>,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    config: Option<String>,
}

/// How to configure a server.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// `user`/`password` required.
    pub auth: Option<(String, String)>,
    /// Extra config-file text (e.g. a `tls { ... }` or `authorization` block).
    pub config: Option<String>,
    /// Cluster: own route port and the route URLs of the others.
    pub cluster: Option<(u16, Vec<u16>)>,
    /// Fixed client port (for restarts); free one when `None`.
    pub port: Option<u16>,
    /// Server name (clusters need distinct names).
    pub name: Option<String>,
}

impl NatsServer {
    /// A plain server on a free loopback port.
    pub fn start() -> NatsServer {
        NatsServer::start_with(ServerOptions::default())
    }

    /// A server requiring user/password.
    pub fn with_auth(user: &str, password: &str) -> NatsServer {
        NatsServer::start_with(ServerOptions {
            auth: Some((user.into(), password.into())),
            ..Default::default()
        })
    }

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

    /// The server with its config file content, not started yet.
    fn configure(options: ServerOptions) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = options.port.unwrap_or_else(free_port);
        let mut conf = String::new();
        if let Some(name) = &options.name {
            conf.push_str(&format!("server_name: {name}\n"));
        }
        if let Some((user, password)) = &options.auth {
            conf.push_str(&format!(
                "authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}\n"
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
        if let Some(extra) = &options.config {
            conf.push_str(extra);
            conf.push('\n');
        }
        NatsServer {
            child: None,
            port,
            cluster_port: options.cluster.as_ref().map(|(p, _)| *p),
            dir,
            extra_args: Vec::new(),
            config: Some(conf),
        }
    }

    /// Like [`NatsServer::start_with`] with a fixed port, but `None` instead
    /// of a panic when the server exits at start (a port was taken).
    pub fn try_start_with(options: ServerOptions) -> Option<NatsServer> {
        assert!(options.port.is_some(), "try_start_with needs a fixed port");
        let mut server = NatsServer::configure(options);
        server.try_spawn().then_some(server)
    }

    fn spawn(&mut self) {
        if !self.try_spawn() {
            panic!(
                "nats-server exited at start on port {} (port taken?)",
                self.port
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
        panic!("nats-server could not start on any of 5 free ports");
    }

    /// Spawns the server and waits until it listens; `false` when it exited
    /// (for example because the port was taken).
    fn try_spawn(&mut self) -> bool {
        let conf_path = self.dir.path().join("server.conf");
        std::fs::write(&conf_path, self.config.as_deref().unwrap_or("")).unwrap();
        let mut child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-c")
            .arg(&conf_path)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                // Listening, and it is ours: it has not exited.
                if child.try_wait().unwrap().is_none() {
                    self.child = Some(child);
                    return true;
                }
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nats-server did not listen on port {} within 10 s",
            self.port
        );
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>` (no scheme).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (it can be restarted on the same port).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connected async-nats client.
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

/// Waits until something accepts connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nats-server did not listen on port {port} within {timeout:?}");
}

/// The directory holding the example binaries of this build
/// (`target/<profile>/examples`).
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>
    exe.parent().unwrap().parent().unwrap().join("examples")
}

/// Path of an example binary; builds it (same profile) when missing.
pub fn example_bin(name: &str) -> PathBuf {
    let path = examples_dir().join(name);
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !path.is_file() {
        let release = examples_dir()
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cannot run cargo");
        assert!(status.success(), "building example {name} failed");
    }
    path
}

/// A command for an example binary with a clean environment (only PATH
/// and HOME kept) so the host's variables do not leak in.
pub fn example_cmd(name: &str) -> Command {
    let mut cmd = Command::new(example_bin(name));
    cmd.env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

/// A child process killed on drop, with its stderr collected in the
/// background.
pub struct Proc {
    pub child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    /// Spawns `cmd` with piped stdout/stderr.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot spawn");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        Proc {
            child,
            stderr,
            stdout,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` (panics after `timeout`).
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "stderr did not contain {needle:?} within {timeout:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for exit (panics after `timeout`); returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the collectors finish reading.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "process did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let buffer = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = buffer.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    buffer
}

/// Runs a command to completion with a timeout; kills it when it hangs.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut proc = Proc::spawn(cmd);
    let code = proc.wait_exit(timeout);
    let status = proc.child.try_wait().unwrap().unwrap();
    let _ = code;
    Output {
        status,
        stdout: proc.stdout().into_bytes(),
        stderr: proc.stderr().into_bytes(),
    }
}

/// Sends a request to the health subject and decodes the reply.
pub async fn health(client: &async_nats::Client, subject: &str) -> serde_json::Value {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.to_string(), "".into()),
    )
    .await
    .expect("health request timed out")
    .expect("health request failed");
    serde_json::from_slice(&reply.payload).expect("health reply is not JSON")
}

/// Polls `check` until it returns true (panics after `timeout`).
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut check: F) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// A request that must be answered within `timeout` (panics on timeout or
/// error).
pub async fn request_within(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
    timeout: Duration,
) -> async_nats::Message {
    tokio::time::timeout(timeout, client.request(subject.to_string(), body.into()))
        .await
        .unwrap_or_else(|_| panic!("request to {subject} timed out"))
        .unwrap_or_else(|e| panic!("request to {subject} failed: {e}"))
}

/// A request that must be answered within [`WAIT`].
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<bytes::Bytes>,
) -> async_nats::Message {
    request_within(client, subject, body, WAIT).await
}

/// The `Nats-Service-Error` header of a reply, if any.
pub fn error_header(message: &async_nats::Message) -> Option<String> {
    message
        .headers
        .as_ref()?
        .get("Nats-Service-Error")
        .map(|v| v.as_str().to_owned())
}

/// Spawns `cmd` and waits (at most [`WAIT`]) until the service logs that it
/// is ready.
pub fn spawn_ready(cmd: Command) -> Proc {
    let proc = Proc::spawn(cmd);
    proc.wait_for_stderr(" ready", WAIT);
    proc
}
