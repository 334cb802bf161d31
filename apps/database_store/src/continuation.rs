//! Continuations: where a truncated page ended, as an opaque token the
//! client sends back to get the next page.
//!
//! A token is base64url of a small JSON object: the range of the first
//! page (so relative times do not move between pages), a fingerprint of the
//! request (a token only continues the request that made it), and the
//! position. Tokens are untrusted input like the rest of a request: they
//! are decoded into typed values and used as parameters, never as text.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The longest token accepted.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Where the next page starts: in `measurement`, at the key `(time,
/// series)` (a point; for aggregates, a window's start and a series),
/// leaving out what the previous page already had there (the rows of that
/// key whose `(series, field)` is at most `(series, field)`; nothing when
/// `field` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Token format.
    pub v: u8,
    /// The request's fingerprint.
    pub q: u64,
    /// The first page's start (ns).
    pub start: i64,
    /// The first page's stop (ns).
    pub stop: i64,
    /// The measurement.
    pub measurement: String,
    /// Time (or window start), ns.
    pub time: i64,
    /// Series id.
    pub series: i64,
    /// The last field sent at this key, if any.
    pub field: Option<String>,
}

impl Position {
    /// The token.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a token of the request with `fingerprint`.
    ///
    /// ```
    /// use database_store::continuation::Position;
    /// let position = Position { v: 1, q: 7, start: 0, stop: 10, measurement: "m".into(),
    ///                           time: 5, series: 1, field: Some("value".into()) };
    /// assert_eq!(Position::decode(&position.encode(), 7), Ok(position.clone()));
    /// assert!(Position::decode(&position.encode(), 8).is_err());
    /// assert!(Position::decode("'; DROP TABLE points; --", 7).is_err());
    /// ```
    pub fn decode(token: &str, fingerprint: u64) -> Result<Position, String> {
        let invalid = || {
            "continuation is not a token of this service: send back the continuation of the \
             previous reply unchanged"
                .to_owned()
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let position: Position = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if position.v != 1 || position.start >= position.stop {
            return Err(invalid());
        }
        if position.q != fingerprint {
            return Err(
                "continuation belongs to another request: send it with the same members as \
                 the request that returned it"
                    .into(),
            );
        }
        Ok(position)
    }
}
