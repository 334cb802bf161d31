//! The process signals a service reacts to: SIGINT, SIGTERM and SIGHUP
//! (Ctrl-C elsewhere). Installed by [`Service::start`](crate::Service::start)
//! before it reads the configuration, and handed to the service explicitly.

use crate::error::StartError;

/// A signal the service received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
    Hangup,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }
}

/// The registered signal streams.
pub(crate) struct Signals {
    #[cfg(unix)]
    streams: [(Signal, tokio::signal::unix::Signal); 3],
}

impl Signals {
    /// Registers the handlers (from now on these signals no longer have
    /// their default action of ending the process).
    pub(crate) fn install() -> Result<Signals, StartError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind: SignalKind, what: &'static str| {
                signal(kind).map_err(|source| StartError::Runtime { what, source })
            };
            Ok(Signals {
                streams: [
                    (
                        Signal::Interrupt,
                        register(SignalKind::interrupt(), "handle SIGINT")?,
                    ),
                    (
                        Signal::Terminate,
                        register(SignalKind::terminate(), "handle SIGTERM")?,
                    ),
                    (
                        Signal::Hangup,
                        register(SignalKind::hangup(), "handle SIGHUP")?,
                    ),
                ],
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next signal.
    pub(crate) async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let [(a, sa), (b, sb), (c, sc)] = &mut self.streams;
            tokio::select! {
                _ = sa.recv() => *a,
                _ = sb.recv() => *b,
                _ = sc.recv() => *c,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}
