//! The permissions of each service, as it prints them itself
//! (`<binary> --nats-permissions`, with `SERVICE_NAME` set to the user's
//! name and the rest of this process's environment).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest a service may take to print its permissions.
const PATIENCE: Duration = Duration::from_secs(30);
/// The most output read from a service.
const MAX_OUTPUT: u64 = 1 << 20;

/// A service of the deployment: its user name and binary.
pub struct ServiceEntry {
    pub name: String,
    pub binary: PathBuf,
}

/// Parses `SERVICES`: `name` (the binary `name` in `bin_dir`, else on
/// `PATH`), `name=binary`, or `name=file.json` (what the service printed
/// for `--nats-permissions` before, with its own configuration),
/// comma-separated.
pub fn parse(list: &str, bin_dir: &Path) -> Result<Vec<ServiceEntry>, String> {
    let mut entries = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, binary) = match item.split_once('=') {
            Some((name, binary)) => (name.trim(), PathBuf::from(binary.trim())),
            None => (item, find(item, bin_dir)?),
        };
        crate::check_user_name(name)?;
        if entries.iter().any(|e: &ServiceEntry| e.name == name) {
            return Err(format!("service {name:?} is listed twice in SERVICES"));
        }
        entries.push(ServiceEntry {
            name: name.to_owned(),
            binary,
        });
    }
    if entries.is_empty() {
        return Err("SERVICES lists no service".into());
    }
    Ok(entries)
}

fn find(name: &str, bin_dir: &Path) -> Result<PathBuf, String> {
    let beside = bin_dir.join(name);
    if beside.is_file() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "no binary {name:?} in {} or on PATH; build it or write {name}=/path/to/binary",
                bin_dir.display()
            )
        })
}

/// What `service` prints for `--nats-permissions` (or printed, into its
/// `.json` file).
pub fn permissions(service: &ServiceEntry) -> Result<Value, String> {
    if service.binary.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(&service.binary)
            .map_err(|e| format!("cannot read {}: {e}", service.binary.display()))?;
        return check(&service.binary, &text);
    }
    let mut child = Command::new(&service.binary)
        .arg("--nats-permissions")
        .env("SERVICE_NAME", &service.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", service.binary.display()))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stdout).take(MAX_OUTPUT).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} --nats-permissions did not finish within {} s",
                    service.binary.display(),
                    PATIENCE.as_secs()
                ));
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = (&mut err).take(4096).read_to_string(&mut stderr);
        }
        return Err(format!(
            "{} --nats-permissions failed ({status}): {}",
            service.binary.display(),
            stderr.trim()
        ));
    }
    check(&service.binary, &text)
}

/// The permissions object in `text`, from `source`.
fn check(source: &Path, text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "{}: no permissions object from --nats-permissions ({e}); is it a Telestion \
             service of this version?",
            source.display()
        )
    })?;
    if !value["publish"]["allow"].is_array() || !value["subscribe"]["allow"].is_array() {
        return Err(format!(
            "{}: the permissions have no publish and subscribe lists",
            source.display()
        ));
    }
    Ok(value)
}
