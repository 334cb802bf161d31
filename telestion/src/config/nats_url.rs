//! `NATS_URL`: one server or a comma-separated list, each optionally with
//! user info (`user:password@`, `token@`), parsed structurally so that a
//! secret is never split, shown, or searched for in other text.
//!
//! Commas separate servers, and a comma may also stand unencoded in a
//! password (`nats://alice:Top,Secret9@host` is one server): after a
//! `scheme://`, when the text before the next comma is not a plausible
//! `host[:port]` and a later part of the list holds the `@`, that comma
//! belongs to the user info. Where the list stays ambiguous, the display
//! form redacts the doubtful part too. Percent-encoding (`%2C`, `%40`)
//! always works.

use crate::config::secret::REDACTED;

/// One server of `NATS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    /// `nats://`, `tls://`, ... or empty.
    pub(crate) scheme: String,
    /// The user info before the `@`, still percent-encoded.
    pub(crate) userinfo: Option<String>,
    /// Host and port (everything after the user info).
    pub(crate) host: String,
    /// Whether the parser had to guess where this server begins or ends;
    /// its display form hides all of it.
    pub(crate) doubtful: bool,
}

impl Server {
    /// The server without its user info, for the client.
    pub(crate) fn address(&self) -> String {
        format!("{}{}", self.scheme, self.host)
    }

    /// The server as it may be printed.
    pub(crate) fn display(&self) -> String {
        match (&self.userinfo, self.doubtful) {
            (_, true) => format!("{}{REDACTED}", self.scheme),
            (Some(_), false) => format!("{}{REDACTED}@{}", self.scheme, self.host),
            (None, false) => format!("{}{}", self.scheme, self.host),
        }
    }

    /// The decoded user info as (user, password); a token has no password.
    pub(crate) fn credentials(&self) -> Option<(String, Option<String>)> {
        let info = self.userinfo.as_deref()?;
        Some(match info.split_once(':') {
            Some((user, password)) => (decode(user), Some(decode(password))),
            None => (decode(info), None),
        })
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn split_scheme(piece: &str) -> (&str, &str) {
    match piece.find("://") {
        Some(i) => piece.split_at(i + 3),
        None => ("", piece),
    }
}

/// Whether `text` can be a `host[:port]` (so a comma after it separates
/// servers rather than continuing a password).
fn plausible_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (text, None),
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[') && host.ends_with(']')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// The servers of `NATS_URL`, in order; empty parts are skipped.
pub(crate) fn parse(url: &str) -> Vec<Server> {
    let pieces: Vec<&str> = url.split(',').collect();
    let mut servers = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let piece = pieces[i].trim();
        i += 1;
        if piece.is_empty() {
            continue;
        }
        let (scheme, rest) = split_scheme(piece);
        if let Some(at) = rest.rfind('@') {
            servers.push(Server {
                scheme: scheme.to_owned(),
                userinfo: Some(rest[..at].to_owned()),
                host: rest[at + 1..].to_owned(),
                doubtful: false,
            });
            continue;
        }
        // No `@` here: does a later piece (without a scheme of its own)
        // hold the end of this server's user info?
        let later_at = pieces[i..]
            .iter()
            .take_while(|p| !p.contains("://"))
            .position(|p| p.contains('@'));
        match later_at {
            Some(offset) if !scheme.is_empty() && !plausible_host(rest) => {
                let joined = pieces[i - 1..=i + offset].join(",");
                let (scheme, rest) = split_scheme(joined.trim());
                let at = rest.rfind('@').unwrap_or(0);
                servers.push(Server {
                    scheme: scheme.to_owned(),
                    userinfo: Some(rest[..at].to_owned()),
                    host: rest[at + 1..].to_owned(),
                    doubtful: false,
                });
                i += offset + 1;
            }
            Some(0) => servers.push(Server {
                scheme: scheme.to_owned(),
                userinfo: None,
                host: rest.to_owned(),
                // It could be the first part of the next server's user info.
                doubtful: true,
            }),
            _ => servers.push(Server {
                scheme: scheme.to_owned(),
                userinfo: None,
                host: rest.to_owned(),
                doubtful: false,
            }),
        }
    }
    servers
}

/// `url` with every server's user info replaced by `[redacted]`, safe to
/// print.
pub(crate) fn display(url: &str) -> String {
    parse(url)
        .iter()
        .map(Server::display)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(url: &str) -> Vec<String> {
        parse(url).iter().map(Server::address).collect()
    }

    #[test]
    fn lists_and_credentials() {
        assert_eq!(addresses(" nats://a:1, b:2 ,,"), ["nats://a:1", "b:2"]);
        let servers = parse("nats://u:p%40ss@h:1,tls://u:p%40ss@h2:2,h3:3");
        assert_eq!(
            servers.iter().map(Server::address).collect::<Vec<_>>(),
            ["nats://h:1", "tls://h2:2", "h3:3"]
        );
        assert_eq!(
            servers[0].credentials(),
            Some(("u".into(), Some("p@ss".into())))
        );
        assert_eq!(
            parse("tok@h:1")[0].credentials(),
            Some(("tok".into(), None))
        );
        assert_eq!(
            display("nats://u:secret@h:1,x:y@h2"),
            format!("nats://{REDACTED}@h:1,{REDACTED}@h2")
        );
    }

    #[test]
    fn a_comma_in_a_password_stays_in_it() {
        let servers = parse("nats://alice:Top,Secret9@host:4222");
        assert_eq!(servers.len(), 1, "{servers:?}");
        assert_eq!(
            servers[0].credentials(),
            Some(("alice".into(), Some("Top,Secret9".into())))
        );
        assert_eq!(servers[0].address(), "nats://host:4222");
        let shown = display("nats://alice:Top,Secret9@host:4222");
        assert!(
            !shown.contains("Top") && !shown.contains("Secret9"),
            "{shown}"
        );
        let two = parse("nats://alice:Top,Secret9@h1:1,nats://bob:x,y@h2:2");
        assert_eq!(two.len(), 2, "{two:?}");
        assert_eq!(
            two[1].credentials(),
            Some(("bob".into(), Some("x,y".into())))
        );
    }

    #[test]
    fn ambiguous_parts_are_hidden() {
        // `u:1234` is a plausible host:port, so the comma separates; the
        // doubtful part is not shown.
        let shown = display("nats://u:1234,5@h");
        assert!(!shown.contains("1234"), "{shown}");
        assert_eq!(addresses("nats://h1:4222,tok@h2"), ["nats://h1:4222", "h2"]);
    }
}
