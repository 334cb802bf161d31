//! Timers: a handler called periodically instead of per message. Its
//! return value follows the rules of a message handler: published to the
//! route's publish targets (there is no one to reply to), errors and
//! panics counted and logged. Stopped at shutdown, awaited by the drain.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::engine::core::{RouteInfo, handle};
use crate::handler::Handler;
use crate::handler::extract::Incoming;
use crate::service::Service;

/// How often a timer route runs: a fixed period or one from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Period {
    Fixed(Duration),
    Config {
        key: String,
        default: Option<Duration>,
    },
}

impl Period {
    /// The period for this configuration; the error says why not.
    pub(crate) fn resolve(&self, config: &Config) -> Result<Duration, String> {
        let period = match self {
            Period::Fixed(period) => *period,
            Period::Config { key, default } => {
                match config.get_str(key).filter(|s| !s.is_empty()) {
                    Some(text) => telestion_rules::period::parse_within(
                        &text,
                        telestion_rules::period::TIMER_BOUNDS,
                    )
                    .map_err(|reason| {
                        format!("config key {key} = `{text}` is not a period: {reason}")
                    })?,
                    None => default.ok_or_else(|| {
                        format!(
                            "its period comes from config key {key}, which is not set; set \
                         `{key}=100ms` (units ms, s, m, h) in the environment or pass \
                         `--{key}=...`"
                        )
                    })?,
                }
            }
        };
        if period.is_zero() {
            return Err("a timer period must be more than 0".into());
        }
        Ok(period)
    }

    /// The config key, if the period comes from config.
    pub(crate) fn config_key(&self) -> Option<&str> {
        match self {
            Period::Config { key, .. } => Some(key),
            Period::Fixed(_) => None,
        }
    }
}

/// Parses a period such as `100ms`, `2s`, `1.5s`, `5m` or `1h` (a number
/// and a unit: `ms`, `s`, `m` or `h`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(telestion::parse_period("100ms"), Ok(Duration::from_millis(100)));
/// assert_eq!(telestion::parse_period("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(telestion::parse_period("fast").is_err());
/// ```
pub fn parse_period(text: &str) -> Result<Duration, String> {
    telestion_rules::period::parse(text).map_err(|error| error.to_string())
}

/// Runs a timer route until shutdown: calls the handler every `period`
/// (the first call one period after start; a call that takes longer than
/// the period delays the next, calls never overlap).
pub(crate) async fn run_timer<H, Args>(
    handler: H,
    context: Arc<H::Context>,
    service: Service,
    period: Duration,
    info: Arc<RouteInfo>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = service.stopped();
    tokio::pin!(stopped);
    let mut incoming = Incoming::new(tick_message(&info.subject), service);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = ticks.tick() => {}
        }
        incoming.message = tick_message(&info.subject);
        handle(&handler, &context, &mut incoming, &info).await;
    }
    tracing::debug!(handler = %info.name, "timer stopped");
}

/// The message a timer's extractors see: subject `timer.<name>`-like
/// (the route's label), empty body, no reply subject.
pub(crate) fn tick_message(subject: &str) -> async_nats::Message {
    async_nats::Message {
        subject: subject.into(),
        reply: None,
        payload: bytes::Bytes::new(),
        headers: None,
        status: None,
        description: None,
        length: 0,
    }
}
