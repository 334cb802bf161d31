//! A raw NATS protocol publisher: sends exactly the bytes a test gives it,
//! header blocks no client library would build (line breaks in values,
//! missing version line, invalid UTF-8, header lengths that lie), as an
//! attacker on the bus can. Plus the catalogue of such header blocks.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use crate::NatsServer;

/// A raw connection to a NATS server that publishes with `HPUB`/`PUB`
/// exactly what it is given.
///
/// ```no_run
/// use telestion_test::{NatsServer, RawPublisher};
///
/// let server = NatsServer::start();
/// let mut raw = RawPublisher::connect(&server);
/// raw.hpub("sensors.raw", None, b"NATS/1.0\r\nX-Note: a\rb\r\n\r\n", b"body", None);
/// raw.confirm();
/// ```
#[derive(Debug)]
pub struct RawPublisher {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RawPublisher {
    /// Connects (headers enabled, not verbose) and waits for the server's
    /// `PONG`.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses the connection.
    pub fn connect(server: &NatsServer) -> RawPublisher {
        let stream = TcpStream::connect(server.addr())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", server.addr()));
        stream
            .set_read_timeout(Some(crate::WAIT))
            .expect("cannot set a read timeout");
        let reader = BufReader::new(stream.try_clone().expect("cannot clone the socket"));
        let mut raw = RawPublisher {
            writer: stream,
            reader,
        };
        let info = raw.line();
        assert!(info.starts_with("INFO "), "not a NATS server: {info}");
        raw.send(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1,\
              \"name\":\"telestion-test raw publisher\"}\r\n",
        );
        raw.confirm();
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot write to the server: {e}"));
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("no answer from the server: {e}"));
        line.trim_end().to_owned()
    }

    /// Publishes with headers: `HPUB <subject> [reply] <header length>
    /// <total length>`, then `header_block` and `body` as given. The header
    /// length is `header_block`'s unless `header_len` overrides it (a
    /// length that lies moves the boundary between headers and body).
    pub fn hpub(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        header_block: &[u8],
        body: &[u8],
        header_len: Option<usize>,
    ) {
        let total = header_block.len() + body.len();
        let header_len = header_len.unwrap_or(header_block.len()).min(total);
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let mut frame = format!("HPUB {subject}{reply} {header_len} {total}\r\n").into_bytes();
        frame.extend_from_slice(header_block);
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame);
    }

    /// Publishes without headers (`PUB`).
    pub fn publish(&mut self, subject: &str, body: &[u8]) {
        let mut frame = format!("PUB {subject} {}\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame);
    }

    /// Sends `PING` and waits for the `PONG`: the server has processed
    /// everything sent before.
    ///
    /// # Panics
    ///
    /// When the server answers with an error (`-ERR`) instead, or not at
    /// all within [`WAIT`](crate::WAIT).
    pub fn confirm(&mut self) {
        self.send(b"PING\r\n");
        loop {
            let line = self.line();
            match line.as_str() {
                "PONG" => return,
                "PING" => self.send(b"PONG\r\n"),
                line if line.starts_with("-ERR") => panic!("the server refused: {line}"),
                _ => {}
            }
        }
    }
}

/// A hostile header block: its name, the bytes, and the header length to
/// claim in `HPUB` when it lies (`None`: the true length).
#[derive(Debug, Clone)]
pub struct HostileHeaders {
    /// What is wrong with it.
    pub name: &'static str,
    /// The header block.
    pub block: Vec<u8>,
    /// The header length `HPUB` claims, when it is not the block's.
    pub header_len: Option<usize>,
}

/// The header blocks an attacker can publish and a NATS server accepts:
/// a carriage return, a line feed and a NUL in a value, a 64 KiB value,
/// 1,000 headers, no `NATS/1.0` version line, non-UTF-8 bytes in a name
/// and in a value, and a header length that lies (too short, cutting the
/// block; too long, taking body bytes into it).
///
/// ```
/// let cases = telestion_test::hostile_header_blocks();
/// assert!(cases.iter().any(|case| case.name == "cr-in-value"));
/// ```
pub fn hostile_header_blocks() -> Vec<HostileHeaders> {
    let plain = b"NATS/1.0\r\nX-Note: value\r\n\r\n".to_vec();
    let mut many = b"NATS/1.0\r\n".to_vec();
    for i in 0..1000 {
        many.extend_from_slice(format!("X-Header-{i}: v{i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut big = b"NATS/1.0\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'v', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let case = |name, block: &[u8], header_len| HostileHeaders {
        name,
        block: block.to_vec(),
        header_len,
    };
    vec![
        case("cr-in-value", b"NATS/1.0\r\nX-Note: a\rb\r\n\r\n", None),
        case("lf-in-value", b"NATS/1.0\r\nX-Note: a\nb\r\n\r\n", None),
        case("nul-in-value", b"NATS/1.0\r\nX-Note: a\0b\r\n\r\n", None),
        case("64-kib-value", &big, None),
        case("1000-headers", &many, None),
        case("no-version-line", b"X-Note: value\r\n\r\n", None),
        case("non-utf8-name", b"NATS/1.0\r\nX-\xff\xfe: v\r\n\r\n", None),
        case(
            "non-utf8-value",
            b"NATS/1.0\r\nX-Note: \xff\xfe\r\n\r\n",
            None,
        ),
        case("length-too-short", &plain, Some(plain.len() - 12)),
        case("length-too-long", &plain, Some(plain.len() + 3)),
    ]
}
