//! `nats_config`: a secured nats-server configuration for a Telestion
//! deployment, built from what the services declare.
//!
//! Every service prints the NATS permissions it needs
//! (`<service> --nats-permissions`); this tool runs each service listed in
//! `SERVICES`, makes one NATS user per service with exactly those
//! permissions, one user per person in `PEOPLE` with the permissions of
//! their role (`viewer`: live telemetry and queries; `operator`: also
//! telecommands), and writes `auth.conf` (the users; passwords as bcrypt
//! hashes) and `nats-server.conf` (listener, JetStream, optional WebSocket
//! listener for web frontends, `include ./auth.conf`) to `OUT_DIR`.
//! Anonymous connections are refused by that configuration.
//!
//! Passwords live in `CREDENTIALS_DIR/<user>.password` (owner-only, never
//! in the repository): created with 32 random bytes when missing, kept
//! otherwise. To rotate one, delete its file, run `nats_config` again,
//! reload the server (`nats-server --signal reload` or SIGHUP) and restart
//! that service (or sign that person in again).
//!
//! | Key | Default | Meaning |
//! | --- | --- | --- |
//! | `SERVICES` | required | `name` or `name=binary`, comma-separated (a bare name is the binary beside `nats_config`, else on `PATH`) |
//! | `PEOPLE` | none | `user:role`, comma-separated; roles `viewer`, `operator` |
//! | `CREDENTIALS_DIR` | required | the password files |
//! | `OUT_DIR` | required | where `auth.conf` and `nats-server.conf` go |
//! | `LISTEN` | `127.0.0.1:4222` | the server's client listener |
//! | `WEBSOCKET_LISTEN` | none | a WebSocket listener (`host:port`) for nats.ws frontends |
//! | `JETSTREAM_DIR` | `$OUT_DIR/jetstream` | JetStream's store |
//!
//! Keys come from `--KEY=VALUE` arguments or the environment (arguments
//! win); the environment is also what each service sees while it prints
//! its permissions (so a service's subject keys count). Exit code 0 on
//! success, 1 with one `error: ...` line otherwise.

mod credentials;
mod render;
mod roles;
mod services;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use render::{Server, User};

/// A NATS user name this tool accepts: letters, digits, `_` and `-` (it is
/// also a subject token: the user's inbox prefix `_INBOX.<user>`).
pub fn check_user_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a user name: use 1 to 64 letters, digits, `_` and `-`"
        ))
    }
}

fn settings() -> HashMap<String, String> {
    let mut keys: HashMap<String, String> = std::env::vars().collect();
    for arg in std::env::args().skip(1) {
        if let Some((key, value)) = arg.strip_prefix("--").and_then(|a| a.split_once('=')) {
            keys.insert(key.to_owned(), value.to_owned());
        }
    }
    keys
}

fn required<'a>(keys: &'a HashMap<String, String>, key: &str) -> Result<&'a str, String> {
    keys.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{key} is required (see --help)"))
}

fn people(list: &str) -> Result<Vec<(String, &'static roles::Role)>, String> {
    let mut people = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (user, role) = item
            .split_once(':')
            .ok_or_else(|| format!("PEOPLE entry {item:?} is not user:role"))?;
        check_user_name(user)?;
        let role = roles::role(role).ok_or_else(|| {
            format!("PEOPLE entry {item:?}: unknown role (roles: viewer, operator)")
        })?;
        people.push((user.to_owned(), role));
    }
    Ok(people)
}

fn generate() -> Result<String, String> {
    let keys = settings();
    let out_dir = PathBuf::from(required(&keys, "OUT_DIR")?);
    let credentials_dir = PathBuf::from(required(&keys, "CREDENTIALS_DIR")?);
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let services = services::parse(required(&keys, "SERVICES")?, &bin_dir)?;
    let people = people(keys.get("PEOPLE").map_or("", String::as_str))?;
    for (user, _) in &people {
        if services.iter().any(|s| &s.name == user) {
            return Err(format!("{user:?} is both a service and a person"));
        }
    }
    credentials::ensure_dir(&credentials_dir)?;
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let mut users = Vec::new();
    for service in &services {
        let permissions = services::permissions(service)?;
        let password = credentials::password(&credentials_dir, &service.name)?;
        users.push(User {
            name: service.name.clone(),
            password_hash: credentials::hash(&password)?,
            permissions,
            connection_types: &["STANDARD"],
        });
    }
    for (user, role) in &people {
        let password = credentials::password(&credentials_dir, user)?;
        users.push(User {
            name: user.clone(),
            password_hash: credentials::hash(&password)?,
            permissions: serde_json::to_value(roles::permissions(user, role))
                .map_err(|e| e.to_string())?,
            connection_types: &["STANDARD", "WEBSOCKET"],
        });
    }
    let server = Server {
        listen: keys
            .get("LISTEN")
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:4222".into()),
        websocket: keys
            .get("WEBSOCKET_LISTEN")
            .filter(|v| !v.is_empty())
            .cloned(),
        jetstream_dir: keys
            .get("JETSTREAM_DIR")
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| out_dir.join("jetstream").display().to_string()),
    };
    write(&out_dir.join("auth.conf"), &render::auth_conf(&users))?;
    write(
        &out_dir.join("nats-server.conf"),
        &render::server_conf(&server),
    )?;
    Ok(format!(
        "wrote {} and {} ({} services, {} people); passwords in {}\n",
        out_dir.join("nats-server.conf").display(),
        out_dir.join("auth.conf").display(),
        services.len(),
        people.len(),
        credentials_dir.display()
    ))
}

/// Writes `text` to `path` (owner-only) through a temporary file.
fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!(
            "nats_config: writes a secured nats-server configuration (a user per service, \
             people with roles).\n\nKeys (--KEY=VALUE or environment): SERVICES (required), \
             PEOPLE (user:role,...; roles viewer, operator), CREDENTIALS_DIR (required), OUT_DIR \
             (required), LISTEN (127.0.0.1:4222), WEBSOCKET_LISTEN, JETSTREAM_DIR.\n"
        );
        return ExitCode::SUCCESS;
    }
    match generate() {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Never `eprintln!`: it panics when stderr is gone.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("error: {e}\n").as_bytes(),
            );
            ExitCode::FAILURE
        }
    }
}
