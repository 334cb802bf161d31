//! Headless Chromium driven through the Chrome DevTools protocol (one
//! websocket, `Target.createTarget`, `Runtime.evaluate`): enough to load a
//! page, read its DOM and click.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telestion_test::{Process, WAIT};
use tungstenite::{Message, WebSocket};

/// The install hint shown when Chromium is missing.
pub const INSTALL_HINT: &str = "chromium is not installed: apt-get install -y chromium \
     (or set CHROMIUM_BIN to a Chromium or Chrome binary)";

/// The Chromium binary: `CHROMIUM_BIN`, or `chromium`/`chromium-browser`
/// on `PATH`.
///
/// # Panics
///
/// With [`INSTALL_HINT`] when there is none.
pub fn chromium_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM_BIN") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("{INSTALL_HINT}");
}

/// A headless browser with one page open; killed on drop.
pub struct Browser {
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    process: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens `url`.
    ///
    /// # Panics
    ///
    /// When Chromium is missing or does not start within [`WAIT`].
    pub fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("cannot create a profile directory");
        let mut cmd = std::process::Command::new(chromium_bin());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank");
        let mut process = Process::spawn(cmd);
        process.wait_for_stderr("DevTools listening on ws://", WAIT);
        let stderr = process.stderr();
        let url_start = stderr.find("ws://").expect("found above");
        let ws_url = stderr[url_start..]
            .split_whitespace()
            .next()
            .expect("a websocket address")
            .to_owned();
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("a host")
            .to_owned();
        let stream = TcpStream::connect(&host).expect("cannot connect to DevTools");
        stream
            .set_read_timeout(Some(WAIT))
            .expect("cannot set a read timeout");
        let (socket, _) =
            tungstenite::client(ws_url.as_str(), stream).expect("DevTools handshake failed");
        let mut browser = Browser {
            socket,
            session: String::new(),
            next_id: 0,
            process,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }), None);
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            None,
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// Sends one DevTools command and returns its result.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .unwrap_or_else(|e| panic!("cannot send {method}: {e}"));
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let message = self
                .socket
                .read()
                .unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(answer) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if answer["id"] != json!(id) {
                continue; // an event, or another command's answer
            }
            if let Some(error) = answer.get("error") {
                panic!("{method} failed: {error}");
            }
            return answer["result"].clone();
        }
    }

    /// Loads `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let session = self.session.clone();
        self.call("Page.navigate", json!({ "url": url }), Some(&session));
    }

    /// Evaluates `expression` in the page (promises are awaited) and
    /// returns its value.
    ///
    /// # Panics
    ///
    /// When it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            Some(&session),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (not `false`, `null`, `0`
    /// or `""`) and returns that value.
    ///
    /// # Panics
    ///
    /// After `timeout`, naming `what` and the last value.
    pub fn wait_for(&mut self, expression: &str, what: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        // While a page is still loading the expression may throw (an
        // element not there yet): that counts as not yet.
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        );
        loop {
            let value = self.eval(&guarded);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?} (last value {value}); browser stderr:\n{}",
                self.process.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
