//! What kind of route a route is: a message handler (on a subject, core or
//! durable, one message or a batch per call), a timer or a task. One enum,
//! so a combination that makes no sense cannot be represented; the
//! settings a builder call could not apply are kept as a `Shape` for the
//! shared validation (`telestion_rules::shape`).

use std::time::Duration;

use crate::config::Config;
use crate::engine::batch::BatchSpec;
use crate::jetstream::settings::Durable;

use super::{QueueGroup, SubjectSource};

/// What kind of route it is.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A handler of messages on a subject.
    Messages(Messages),
    /// A timer.
    Timer(Period),
    /// A task.
    Task,
}

/// A message handler's settings.
#[derive(Debug, Clone)]
pub(crate) struct Messages {
    /// Where the subject comes from.
    pub(crate) subject: SubjectSource,
    /// The subject when its config key is not set.
    pub(crate) default_subject: Option<String>,
    /// Core (in a queue group) or durable (through a consumer).
    pub(crate) delivery: Delivery,
    /// Messages handled at once.
    pub(crate) concurrency: usize,
    /// One call per batch, when set.
    pub(crate) batch: Option<BatchSpec>,
}

/// How a message handler gets its messages.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// A core subscription in this queue group choice.
    Core(QueueGroup),
    /// A JetStream durable consumer with these settings.
    Durable(Durable),
}

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
