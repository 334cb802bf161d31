//! [`HandlerError`]: a handler error that chooses its reply code, and so
//! its log level (4xx: the message was at fault, WARN; 5xx: the handler
//! was, ERROR).

use std::fmt;

use crate::handler::reply::{IntoReply, Reply};

/// An error a handler returns (as `Result<T, HandlerError>`) to choose the
/// error reply's `Nats-Service-Error-Code`: [`HandlerError::client`] (400,
/// or another 4xx with [`HandlerError::with_code`]) is the sender's
/// mistake and logged at WARN; [`HandlerError::server`] (500) is the
/// handler's and logged at ERROR. Both are counted in health and answered.
///
/// Any error that implements `Display` converts into a server error, so
/// `?` works on them:
///
/// ```
/// use telestion::{HandlerError, IntoReply, Json, Reply};
///
/// async fn lookup(Json(id): Json<u32>) -> Result<String, HandlerError> {
///     if id == 0 {
///         return Err(HandlerError::client("id 0 does not exist").with_code(404));
///     }
///     let parsed: u32 = "12".parse()?; // a ParseIntError becomes a 500
///     Ok(format!("item {}", id + parsed))
/// }
///
/// let rejected: Result<String, HandlerError> = Err(HandlerError::client("no such id"));
/// assert!(matches!(rejected.into_reply(), Reply::Error { code: 400, .. }));
/// # let _ = lookup;
/// ```
///
/// `HandlerError` deliberately does not implement `Display` itself (that
/// would clash with the blanket conversion); read it with
/// [`HandlerError::message`] and [`HandlerError::code`].
pub struct HandlerError {
    code: u16,
    message: String,
}

impl HandlerError {
    /// The message was at fault: code 400, logged at WARN.
    ///
    /// ```
    /// assert_eq!(telestion::HandlerError::client("bad id").code(), 400);
    /// ```
    pub fn client(message: impl Into<String>) -> HandlerError {
        HandlerError {
            code: 400,
            message: message.into(),
        }
    }

    /// The handler failed: code 500, logged at ERROR.
    ///
    /// ```
    /// assert_eq!(telestion::HandlerError::server("disk full").code(), 500);
    /// ```
    pub fn server(message: impl Into<String>) -> HandlerError {
        HandlerError {
            code: 500,
            message: message.into(),
        }
    }

    /// Another code, e.g. 404 or 503. Codes 400–499 are logged at WARN,
    /// all others at ERROR.
    ///
    /// ```
    /// let error = telestion::HandlerError::client("no such id").with_code(404);
    /// assert_eq!(error.code(), 404);
    /// ```
    pub fn with_code(mut self, code: u16) -> HandlerError {
        self.code = code;
        self
    }

    /// The reply code.
    ///
    /// ```
    /// assert_eq!(telestion::HandlerError::server("x").code(), 500);
    /// ```
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The message (`Nats-Service-Error`).
    ///
    /// ```
    /// assert_eq!(telestion::HandlerError::server("x").message(), "x");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerError({}: {})", self.code, self.message)
    }
}

impl<E: fmt::Display> From<E> for HandlerError {
    fn from(error: E) -> HandlerError {
        HandlerError::server(error.to_string())
    }
}

impl<T: IntoReply> IntoReply for Result<T, HandlerError> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(value) => value.into_reply(),
            Err(error) => Reply::Error {
                code: error.code,
                message: error.message,
            },
        }
    }
}
