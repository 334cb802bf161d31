//! The images of the Dockerfile, built and run for real with podman (no
//! Docker engine or registry needed): `scripts/ensure-container-tools.sh`
//! installs podman, runc, debootstrap and podman-compose when missing and
//! makes (once, cached under /var/tmp/telestion-ct) a Debian bookworm base
//! image with debootstrap. Every app image is the Dockerfile's `prebuilt`
//! target (the runtime stage every deployment uses) around the debug binary
//! this `cargo test` built. Containers run with `--network host` against a
//! nats-server on a free loopback port; everything made here is named with a
//! per-run prefix and removed when the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use telestion_test::{
    NatsServer, Pki, ServerOptions, free_port, run_with_timeout, start_service, try_health,
    try_request, workspace_binary, workspace_example,
};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The non-root user of the runtime stage.
const UID: u32 = 10001;
const STOP_GRACE: &str = "25";
/// The Dockerfile's `runtime-base` stage, kept across runs as a layer cache.
const RUNTIME_BASE_CACHE: &str = "localhost/telestion-ct-cache/runtime-base:latest";

struct Env {
    conf: String,
    base: String,
    prefix: String,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let started = Instant::now();
        let mut cmd = Command::new(Path::new(REPO).join("scripts/ensure-container-tools.sh"));
        cmd.stdin(std::process::Stdio::null());
        let out = run_with_timeout(cmd, Duration::from_secs(900));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ensure-container-tools.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in {stdout}"))
                .to_owned()
        };
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let env = Env {
            conf: value("CONTAINERS_CONF"),
            base: value("BASE_IMAGE"),
            prefix: format!(
                "telestion-ct-{}-{}",
                std::process::id(),
                since_epoch.as_secs()
            ),
        };
        eprintln!(
            "container tools and base image ready in {:.1?}",
            started.elapsed()
        );
        extern "C" fn cleanup_at_exit() {
            if let Some(env) = ENV.get() {
                cleanup(env);
            }
        }
        unsafe { libc::atexit(cleanup_at_exit) };
        env
    })
}

/// Removes the containers, volumes and images of this run (by prefix).
fn cleanup(env: &Env) {
    let list = |args: &[&str]| -> Vec<String> {
        let out = podman_output(env, args, 60);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.contains(&env.prefix))
            .map(str::to_owned)
            .collect()
    };
    let containers = list(&["ps", "-a", "--format", "{{.Names}}"]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-t", "0"];
        args.extend(containers.iter().map(String::as_str));
        podman_output(env, &args, 120);
    }
    let volumes = list(&["volume", "ls", "--format", "{{.Name}}"]);
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        podman_output(env, &args, 60);
    }
    let networks = list(&["network", "ls", "--format", "{{.Name}}"]);
    if !networks.is_empty() {
        let mut args = vec!["network", "rm", "-f"];
        args.extend(networks.iter().map(String::as_str));
        podman_output(env, &args, 60);
    }
    let images = list(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    if !images.is_empty() {
        let mut args = vec!["rmi", "-f"];
        args.extend(images.iter().map(String::as_str));
        podman_output(env, &args, 120);
    }
}

fn podman_command(env: &Env) -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", &env.conf)
        .stdin(std::process::Stdio::null());
    cmd
}

/// Runs podman with a time limit; any exit status.
fn podman_output(env: &Env, args: &[&str], timeout_secs: u64) -> Output {
    let mut cmd = podman_command(env);
    cmd.args(args);
    run_with_timeout(cmd, Duration::from_secs(timeout_secs))
}

/// Runs podman with a time limit; must succeed; returns stdout.
fn podman(args: &[&str], timeout_secs: u64) -> String {
    let out = podman_output(env(), args, timeout_secs);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn name(what: &str) -> String {
    format!("{}-{what}", env().prefix)
}

/// The image of an app (`apps/`) or sample (`examples/`): the Dockerfile's
/// `prebuilt` target around the debug binary, tagged
/// `localhost/<prefix>/<name>:latest`. Built once per run.
fn image(name: &str) -> String {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let env = env();
    let tag = format!("localhost/{}/{name}:latest", env.prefix);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&tag) {
        return tag;
    }
    let cargo = Instant::now();
    let binary: PathBuf = match name {
        "standard_ops" | "health" | "replay" | "device_sim" | "io_service" | "telemetry_parser"
        | "db_writer" | "db_query" | "telecommand" | "web" | "database" | "database_query" => {
            workspace_binary(name, name)
        }
        _ => workspace_example("telestion-examples", name),
    };
    eprintln!("{name}: binary current in {:.1?}", cargo.elapsed());
    let started = Instant::now();
    if built.is_empty() {
        // The runtime stage's own layers (apt-get, useradd) under a tag that
        // outlives the run: the layer cache of the next run.
        let base = format!("BASE={}", env.base);
        let empty = tempfile::tempdir().unwrap();
        podman(
            &[
                "build",
                "--pull=never",
                "--network",
                "host",
                "-q",
                "-f",
                &format!("{REPO}/Dockerfile"),
                "--target",
                "runtime-base",
                "--build-arg",
                &base,
                "-t",
                RUNTIME_BASE_CACHE,
                &empty.path().to_string_lossy(),
            ],
            600,
        );
        eprintln!("runtime-base stage ready in {:.1?}", started.elapsed());
    }
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(&binary, context.path().join(name)).unwrap();
    let dockerfile = format!("{REPO}/Dockerfile");
    let base = format!("BASE={}", env.base);
    let binary_arg = format!("BINARY={name}");
    podman(
        &[
            "build",
            "--pull=never",
            "--network",
            "host",
            "-q",
            "-f",
            &dockerfile,
            "--target",
            "prebuilt",
            "--build-arg",
            &base,
            "--build-arg",
            &binary_arg,
            "-t",
            &tag,
            &context.path().to_string_lossy(),
        ],
        600,
    );
    eprintln!("built {tag} in {:.1?}", started.elapsed());
    built.push(tag.clone());
    tag
}

/// A named container of this run, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        podman_output(env(), &["rm", "-f", "-t", "0", &self.0], 60);
    }
}

fn run_detached(what: &str, args: &[&str]) -> Container {
    let container = Container(name(what));
    let mut all = vec!["run", "-d", "--name", &container.0, "--network", "host"];
    all.extend_from_slice(args);
    podman(&all, 60);
    container
}

fn logs(container: &Container) -> String {
    let out = podman_output(env(), &["logs", &container.0], 30);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn exit_code(container: &str) -> i64 {
    podman(
        &["inspect", "--format", "{{.State.ExitCode}}", container],
        30,
    )
    .trim()
    .parse()
    .unwrap()
}

/// Waits (bounded) for the container to exit; its exit code.
fn wait_exit(container: &Container) -> i64 {
    podman(&["wait", &container.0], 60).trim().parse().unwrap()
}

/// `podman stop` (SIGTERM, SIGKILL after the grace time); the exit code.
fn stop(container: &Container) -> (i64, Duration) {
    let started = Instant::now();
    podman(&["stop", "-t", STOP_GRACE, &container.0], 60);
    (exit_code(&container.0), started.elapsed())
}

fn volume_dir(volume: &str) -> PathBuf {
    PathBuf::from(
        podman(
            &["volume", "inspect", "--format", "{{.Mountpoint}}", volume],
            30,
        )
        .trim(),
    )
}

async fn wait_for_health(client: &async_nats::Client, container: &Container) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(health) = try_health(client).await {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "no health reply within 30 s; logs:\n{}",
            logs(container)
        );
    }
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_ops_image_config_health_volume_sigterm_and_missing_key() {
    let started = Instant::now();
    let server = NatsServer::start();
    let image = image("standard_ops");
    let url = format!("nats://127.0.0.1:{}", server.port);
    let volume = name("so-data");
    podman(&["volume", "create", &volume], 30);
    let mount = format!("{volume}:/data");
    let nats_url = format!("NATS_URL={url}");
    // NATS_URL from -e, SERVICE_NAME from a CLI argument, DATA_DIR from the
    // image's ENV.
    let service = run_detached(
        "so",
        &[
            "-v",
            &mount,
            "-e",
            &nats_url,
            "-e",
            "LOCK_TIMEOUT=7",
            &image,
            "--SERVICE_NAME=ct_standard_ops",
        ],
    );
    let client = server.client().await;
    let health = wait_for_health(&client, &service).await;
    assert!(
        health.to_string().contains("ct_standard_ops"),
        "health does not name the CLI-given SERVICE_NAME: {health}"
    );
    // Health answers before the data-log subscriptions exist: retry.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(reply) = try_request(&client, "__telestion__/log/ct", "{\"value\":1}").await {
            let text = String::from_utf8_lossy(&reply.payload).into_owned();
            assert!(text.contains("\"ok\":true"), "log request refused: {text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log request unanswered; logs:\n{}",
            logs(&service)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The files, in the named volume, belong to the non-root user.
    let data = volume_dir(&volume);
    let (uid, gid, mode) = owner_and_mode(&data);
    assert_eq!((uid, gid, mode), (UID, UID, 0o700), "the volume root");
    let (uid, gid, mode) = owner_and_mode(&data.join("logs"));
    assert_eq!((uid, gid, mode), (UID, UID, 0o700), "$DATA_DIR/logs");
    let file = data.join("logs/ct.log");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"json\":{\"value\":1}"), "{text}");
    let (uid, gid, mode) = owner_and_mode(&file);
    assert_eq!((uid, gid), (UID, UID), "ct.log owner");
    assert_eq!(mode, 0o600, "ct.log mode {mode:o}");
    // SIGTERM drains and exits 0, well before the SIGKILL.
    let (code, took) = stop(&service);
    let text = logs(&service);
    assert_eq!(code, 0, "exit code after podman stop; logs:\n{text}");
    assert!(took < Duration::from_secs(20), "stop took {took:?}");
    assert!(text.contains("ct_standard_ops"), "logs:\n{text}");

    // A required key missing (SERVICE_NAME): exit 1, the key named in the
    // container's logs.
    let failed = run_detached("so-missing", &["-e", &nats_url, &image]);
    let code = wait_exit(&failed);
    let text = logs(&failed);
    assert_eq!(code, 1, "logs:\n{text}");
    assert!(text.contains("SERVICE_NAME"), "logs:\n{text}");
    eprintln!("standard_ops image test: {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_replay_images_with_env_and_cli_config() {
    let started = Instant::now();
    let server = NatsServer::start();
    let health_image = image("health");
    let replay_image = image("replay");
    let url = format!("nats://127.0.0.1:{}", server.port);
    let nats_url = format!("NATS_URL={url}");
    let data = tempfile::tempdir().unwrap();
    let probe = start_service(&server.url(), "ct_probe", data.path(), &[]).await;

    // The health table, SERVICE_NAME from -e, HEALTH_WAIT_MS from the CLI.
    let tool = run_detached(
        "health",
        &[
            "-e",
            &nats_url,
            "-e",
            "SERVICE_NAME=health",
            &health_image,
            "--HEALTH_WAIT_MS=800",
        ],
    );
    let code = wait_exit(&tool);
    let table = logs(&tool);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("ct_probe") && table.contains("answered within 800 ms"),
        "{table}"
    );

    // replay reads a mounted file and republishes its message.
    let input = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        input.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        input.path().join("ct.log"),
        "{\"time\":\"2025-01-01T12:00:00.000000Z\",\"subject\":\"ct.replayed\",\"json\":{\"n\":1}}\n",
    )
    .unwrap();
    let client = server.client().await;
    let mut sub = client.subscribe("ct.replayed").await.unwrap();
    client.flush().await.unwrap();
    let mount = format!("{}:/in:ro", input.path().display());
    let replay = run_detached(
        "replay",
        &[
            "-v",
            &mount,
            "-e",
            &nats_url,
            "-e",
            "SERVICE_NAME=replay",
            &replay_image,
            "--fast",
            "/in/ct.log",
        ],
    );
    let message = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(&mut sub))
        .await
        .unwrap_or_else(|_| panic!("nothing replayed; logs:\n{}", logs(&replay)))
        .unwrap();
    assert_eq!(message.payload, "{\"n\":1}".as_bytes());
    let code = wait_exit(&replay);
    assert_eq!(code, 0, "{}", logs(&replay));
    probe.shutdown();
    probe.drain().await;
    eprintln!("health and replay images test: {:.1?}", started.elapsed());
}

/// TLS through the image's CA bundle: an image derived from the
/// standard_ops image adds the test CA to the system trust store with
/// `update-ca-certificates` (as a user would for a private CA) and connects
/// to `tls://` without `NATS_TLS_CA`; the plain image refuses the same
/// server (so the bundle is what is used), and accepts it with the CA
/// mounted and named by `NATS_TLS_CA`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_images_ca_bundle() {
    let started = Instant::now();
    let pki = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        pki.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let Pki {
        ca,
        server_cert: cert,
        server_key: key,
        ..
    } = Pki::generate(pki.path(), "container");
    let server = NatsServer::start_with(ServerOptions {
        config: Some(format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}",
            cert.display(),
            key.display()
        )),
        ..Default::default()
    });
    let url = format!("NATS_URL=tls://127.0.0.1:{}", server.port);
    let plain = image("standard_ops");

    let context = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, context.path().join("test-ca.crt")).unwrap();
    std::fs::write(
        context.path().join("Containerfile"),
        format!(
            "FROM {plain}\nUSER root\n\
             COPY test-ca.crt /usr/local/share/ca-certificates/telestion-test-ca.crt\n\
             RUN update-ca-certificates\nUSER telestion\n"
        ),
    )
    .unwrap();
    let derived = format!("localhost/{}/standard_ops-test-ca:latest", env().prefix);
    podman(
        &[
            "build",
            "--pull=never",
            "--network",
            "host",
            "-q",
            "-t",
            &derived,
            &context.path().to_string_lossy(),
        ],
        300,
    );

    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.clone())
        .require_tls(true)
        .connect(format!("tls://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let service = run_detached("tls", &["-e", &url, "-e", "SERVICE_NAME=ct_tls", &derived]);
    let health = wait_for_health(&client, &service).await;
    assert!(health.to_string().contains("ct_tls"), "{health}");
    let (code, _) = stop(&service);
    assert_eq!(code, 0, "{}", logs(&service));

    // The plain image does not know the test CA.
    let refused = run_detached(
        "tls-plain",
        &["-e", &url, "-e", "SERVICE_NAME=ct_tls_plain", &plain],
    );
    let code = wait_exit(&refused);
    let text = logs(&refused);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("TLS failed"), "{text}");

    // ... unless the CA is mounted and named by NATS_TLS_CA.
    let mount = format!("{}:/run/pki:ro", pki.path().display());
    let service = run_detached(
        "tls-mounted",
        &[
            "-v",
            &mount,
            "-e",
            &url,
            "-e",
            "NATS_TLS_CA=/run/pki/container-ca.crt",
            "-e",
            "SERVICE_NAME=ct_tls_mounted",
            &plain,
        ],
    );
    let health = wait_for_health(&client, &service).await;
    assert!(health.to_string().contains("ct_tls_mounted"), "{health}");
    let (code, _) = stop(&service);
    assert_eq!(code, 0, "{}", logs(&service));
    eprintln!("TLS image test: {:.1?}", started.elapsed());
}

/// NATS from Debian's nats-server package on the same base image, kept
/// across runs (like the runtime stage) as a layer cache.
fn nats_image() -> String {
    const TAG: &str = "localhost/telestion-ct-cache/nats:latest";
    let env = env();
    let started = Instant::now();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Containerfile"),
        format!(
            "FROM {}\n\
             RUN apt-get update \\\n\
             && apt-get install -y --no-install-recommends nats-server \\\n\
             && rm -rf /var/lib/apt/lists/*\n\
             USER nobody\n\
             ENTRYPOINT [\"/usr/sbin/nats-server\"]\n\
             CMD []\n",
            env.base
        ),
    )
    .unwrap();
    podman(
        &[
            "build",
            "--pull=never",
            "--network",
            "host",
            "-q",
            "-t",
            TAG,
            &context.path().to_string_lossy(),
        ],
        600,
    );
    eprintln!("nats image ready in {:.1?}", started.elapsed());
    TAG.to_owned()
}

/// A PostgreSQL image from Debian's `postgresql` package with the
/// interface of the official `postgres` image that compose.yaml's profile
/// `postgres` uses (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, data in
/// /var/lib/postgresql/data, port 5432, password authentication), built
/// once per test process.
fn postgres_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        const TAG: &str = "localhost/telestion-ct-cache/postgres:latest";
        let env = env();
        let started = Instant::now();
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("entrypoint.sh"),
            r#"#!/bin/sh
set -e
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s' "$POSTGRES_PASSWORD" > /tmp/password
    "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/password \
        --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C >/dev/null
    rm /tmp/password
    echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"$POSTGRES_DB\"" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
"#,
        )
        .unwrap();
        std::fs::write(
            context.path().join("Containerfile"),
            format!(
                r#"FROM {}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data \
 && chown postgres:postgres /var/lib/postgresql/data \
 && chmod 700 /var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
RUN chmod 755 /usr/local/bin/entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD []
"#,
                env.base
            ),
        )
        .unwrap();
        podman(
            &[
                "build",
                "--pull=never",
                "--network",
                "host",
                "-q",
                "-t",
                TAG,
                &context.path().to_string_lossy(),
            ],
            600,
        );
        eprintln!("postgres image ready in {:.1?}", started.elapsed());
        TAG.to_owned()
    })
}

fn compose(project: &str, files: &[&Path], args: &[&str], timeout_secs: u64) -> Output {
    let env = env();
    let mut cmd = Command::new("podman-compose");
    cmd.current_dir(REPO)
        .env("CONTAINERS_CONF", &env.conf)
        .env("TELESTION_IMAGES", format!("localhost/{}", env.prefix))
        .env("NATS_IMAGE", nats_image_tag())
        .env("POSTGRES_IMAGE", postgres_image())
        .env("WEB_PORT", web_port().to_string())
        .stdin(std::process::Stdio::null())
        .args(["-p", project]);
    for file in files {
        cmd.arg("-f").arg(file);
    }
    cmd.args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(timeout_secs));
    assert!(
        out.status.success(),
        "podman-compose {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The host port of the example backend's page in the compose test (the
/// file publishes it on 127.0.0.1 only).
fn web_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(free_port)
}

/// Sends one request to the page's service on the host (a POST with a JSON
/// `body` and this origin, or a GET without one); status, the response's
/// head (lowercase) and body.
fn http(port: u16, path: &str, body: Option<&str>) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = match body {
        Some(body) => format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => {
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
        }
    };
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

fn nats_image_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(nats_image)
}

/// compose.yaml as it is, run with podman-compose: its images are the
/// `prebuilt` images of this run (TELESTION_IMAGES) and the Debian NATS
/// image (NATS_IMAGE), on the project's own bridge network (service names
/// resolve through the dnsname CNI plugin, so `nats://nats:4222` is NATS's
/// port inside that network, not the host's). Data flows publisher -> latest_value_cache <-
/// requester -> standard_ops -> temperature.log in the compose volume; the
/// example backend (profile `backend`, which podman-compose 1.0.3 starts
/// too) stores frames: the page's service, published on a loopback port,
/// answers a count query through db_query from the SQLite file in the
/// volume, and the count grows; the health table lists every service, and
/// `podman-compose stop -t 25` (SIGTERM) ends every service with exit code
/// 0 before `down -v`.
#[test]
fn compose_stack_up_data_flows_health_table_and_down() {
    let started = Instant::now();
    let backend = [
        "device_sim",
        "io_service",
        "telemetry_parser",
        "db_writer",
        "db_query",
        "telecommand",
        "web",
        "database",
        "database_query",
    ];
    let services = [
        "standard_ops",
        "publisher",
        "latest_value_cache",
        "requester",
        "health",
    ]
    .into_iter()
    .chain(backend);
    for service in services {
        image(service);
    }
    nats_image_tag();
    postgres_image();
    eprintln!("compose images ready at {:.1?}", started.elapsed());
    let project = name("compose");
    let compose_file = Path::new(REPO).join("compose.yaml");
    let files = [compose_file.as_path()];

    struct Down<'a>(&'a str, [&'a Path; 1]);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let env = env();
                let mut cmd = Command::new("podman-compose");
                cmd.current_dir(REPO)
                    .env("CONTAINERS_CONF", &env.conf)
                    .args(["-p", self.0, "-f"])
                    .arg(self.1[0])
                    .args(["down", "-v", "-t", "0"]);
                run_with_timeout(cmd, Duration::from_secs(120));
            }
        }
    }
    let _down = Down(&project, files);
    compose(&project, &files, &["up", "-d", "--no-build"], 180);
    eprintln!("compose up at {:.1?}", started.elapsed());

    let volume = format!("{project}_telestion-data");
    let log = volume_dir(&volume).join("logs/temperature.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data in {} within 60 s; containers:\n{}",
            log.display(),
            podman(&["ps", "-a"], 30)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\"subject\":\"__telestion__/log/temperature\""),
        "{text}"
    );
    let (uid, _, mode) = owner_and_mode(&log);
    assert_eq!((uid, mode), (UID, 0o600), "temperature.log");
    eprintln!("data logged at {:.1?}", started.elapsed());

    // The example backend: frames from the simulated device reach the
    // database (read straight from the SQLite file in the volume: the page
    // needs a sign-in, which a NATS server without users cannot give; see
    // README "Security"), and the count grows.
    let count = |file: &str, table: &str| -> u64 {
        let path = volume_dir(&volume).join(file);
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)))
            .unwrap_or(0)
    };
    let rows = |at_least: u64| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let rows = count("db_writer/telemetry.sqlite3", "telemetry");
            if rows >= at_least {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {at_least} rows within 90 s (last count {rows}); containers:\n{}",
                podman(&["ps", "-a"], 30)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let first = rows(5);
    let later = rows(first + 5);
    eprintln!(
        "backend stored {first} then {later} rows at {:.1?}",
        started.elapsed()
    );
    // Telestion's database services: the parser's upstream-format points
    // reach `database` (SQLite in the volume).
    let deadline = Instant::now() + Duration::from_secs(90);
    while count("database/telemetry.sqlite3", "points") == 0 {
        assert!(
            Instant::now() < deadline,
            "no point in `database`'s SQLite file within 90 s; containers:\n{}",
            podman(&["ps", "-a"], 30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The page is served on the published port (its Host allowed by
    // WEB_HOSTS), with its security headers; its API needs a sign-in.
    let (status, headers, _) = http(web_port(), "/", None).expect("the page does not answer");
    assert_eq!(status, 200, "{headers}");
    assert!(headers.contains("content-security-policy"), "{headers}");
    let reply = http(web_port(), "/api/query/count", Some("{}"));
    assert!(
        matches!(reply, Some((401 | 403, _, _))),
        "the API answered without a sign-in: {reply:?}"
    );

    // The health table through compose's own definition of the tool.
    let out = compose(
        &project,
        &files,
        &["run", "--rm", "--no-deps", "-T", "health"],
        60,
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for service in [
        "standard_ops",
        "publisher",
        "latest_value_cache",
        "requester",
    ]
    .into_iter()
    .chain(backend.into_iter().filter(|s| *s != "device_sim"))
    // The profile `postgres` (podman-compose 1.0.3 starts it too): its
    // writer and query service start only once PostgreSQL answers.
    .chain(["database_pg", "database_query_pg"])
    {
        assert!(
            table.contains(service),
            "{service} not in the table:\n{table}"
        );
    }

    compose(&project, &files, &["stop", "-t", STOP_GRACE], 180);
    let states = podman(
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.podman.compose.project={project}"),
            "--format",
            "{{.Names}} {{.ExitCode}} {{.Status}}",
        ],
        30,
    );
    eprintln!("after stop:\n{states}");
    let mut seen = 0;
    for line in states.lines() {
        let mut fields = line.split_whitespace();
        let (Some(container), Some(code)) = (fields.next(), fields.next()) else {
            continue;
        };
        seen += 1;
        let logs = String::from_utf8_lossy(&podman_output(env(), &["logs", container], 30).stderr)
            .into_owned();
        assert_eq!(code, "0", "{container} exited with {code}:\n{logs}");
    }
    assert!(
        seen >= 5 + backend.len() + 3,
        "only {seen} containers:\n{states}"
    );
    compose(&project, &files, &["down", "-v", "-t", STOP_GRACE], 180);
    // podman-compose 1.0.3 leaves the project network.
    podman_output(env(), &["network", "rm", &format!("{project}_default")], 30);
    eprintln!("compose test: {:.1?}", started.elapsed());
}
