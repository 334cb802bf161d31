//! A minimal HTTP/1.1 client over a plain socket, for the web tests: every
//! header is the test's choice (Host, Origin, Content-Type, Cookie).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use telestion_test::WAIT;

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header lines, names lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request's headers: the web service's own origin, JSON, and the
/// session cookie when given.
pub fn headers(addr: &str, cookie: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_owned(), addr.to_owned()),
        ("Origin".to_owned(), format!("http://{addr}")),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ];
    if let Some(cookie) = cookie {
        headers.push(("Cookie".to_owned(), cookie.to_owned()));
    }
    headers
}

/// Sends one request (`Connection: close`) with exactly `headers` (plus
/// `Content-Length`) and reads the response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("cannot connect to the web service");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse(&String::from_utf8_lossy(&response))
}

fn parse(response: &str) -> Response {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Signs in; returns the `Cookie` header value of the session.
///
/// # Panics
///
/// When the login is not 200 with a session cookie.
pub fn login(addr: &str, user: &str, password: &str) -> String {
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    let response = request(addr, "POST", "/api/login", &headers(addr, None), &body);
    assert_eq!(response.status, 200, "login of {user}: {response:?}");
    let cookie = response
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no cookie: {response:?}"));
    cookie.split(';').next().expect("a cookie value").to_owned()
}

/// An open `/api/live` stream.
pub struct Live {
    /// The status of the response.
    pub status: u16,
    /// The stream after the response head.
    pub reader: BufReader<TcpStream>,
}

/// Opens `/api/live` with `cookie`.
pub fn live(addr: &str, cookie: Option<&str>) -> Live {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!("GET /api/live HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    Live { status, reader }
}

impl Live {
    /// Reads events until one named `event` and returns its data; every
    /// event read on the way is passed to `seen` (name, data).
    ///
    /// # Panics
    ///
    /// When the stream ends or nothing comes within [`WAIT`].
    pub fn next_event_seeing(&mut self, event: &str, mut seen: impl FnMut(&str, &str)) -> String {
        let deadline = Instant::now() + WAIT;
        let mut current = String::new();
        loop {
            assert!(Instant::now() < deadline, "no {event} event");
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap_or(0) > 0,
                "the stream ended"
            );
            let line = line.trim();
            if let Some(name) = line.strip_prefix("event:") {
                current = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                seen(&current, data.trim());
                if current == event {
                    return data.trim().to_owned();
                }
            }
        }
    }

    /// Reads events until one named `event` and returns its data.
    pub fn next_event(&mut self, event: &str) -> String {
        self.next_event_seeing(event, |_, _| {})
    }

    /// Reads until the server closes the stream; `true` when it did
    /// within `timeout`.
    pub fn closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buffer = vec![0u8; 1 << 16];
        while Instant::now() < deadline {
            match self.reader.get_mut().read(&mut buffer) {
                Ok(0) => return true,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
                Ok(_) => {}
            }
        }
        false
    }
}
