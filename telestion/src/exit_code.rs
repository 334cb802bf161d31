//! The exit codes of a service's process (what the generated `main`
//! returns; a hand-written `main` returns [`Service::exit_code`]). A restart
//! policy or an operator tells from them how a service ended.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | stopped on request (signal or [`Service::shutdown`]); everything it published, replied and acknowledged was confirmed by the server |
//! | 1 | the start failed (configuration, first connection, a handler that cannot be subscribed, start-up code); the error is on stderr |
//! | 3 | stopped on request, but the server did not confirm everything (publishes, replies, acknowledgements, a drain): messages may be lost; the warnings name what |
//! | 4 | the NATS connection was gone for good while running (the client's connection task ended, or the server kept rejecting the credentials); the cause is logged |
//! | 130 | a second stop signal during the drain |
//!
//! [`Service::exit_code`]: crate::Service::exit_code
//! [`Service::shutdown`]: crate::Service::shutdown
//!
//! ```
//! assert_eq!(telestion::exit_code::UNCONFIRMED, 3);
//! ```

/// Stopped on request; everything was confirmed.
pub const SUCCESS: u8 = 0;
/// The start failed.
pub const START_FAILED: u8 = 1;
/// Stopped, but publishes, replies, acknowledgements or a drain were not
/// confirmed by the server: messages may be lost.
pub const UNCONFIRMED: u8 = 3;
/// The NATS connection was gone for good while the service ran.
pub const CONNECTION_LOST: u8 = 4;
/// A second stop signal arrived during the drain.
pub const SECOND_SIGNAL: u8 = 130;
