//! The tool's options, read from its configuration (so `--watch` on the
//! command line and `WATCH=true` in the environment mean the same).

use std::ops::RangeInclusive;
use std::time::Duration;

use telestion::Config;
use telestion::period::{BareNumber, parse_setting};

/// Default refresh period of `--watch`.
const DEFAULT_WATCH: Duration = Duration::from_secs(2);
/// The bounds of `HEALTH_WAIT_MS`: 1 ms to a minute.
const WAIT_BOUNDS: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(60);
/// The bounds of `--watch=SECONDS`: 100 ms to an hour.
const WATCH_BOUNDS: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// What the tool was asked to do.
#[derive(Debug)]
pub struct Args {
    /// How long replies are collected (`HEALTH_WAIT_MS`).
    pub wait: Duration,
    /// `--watch[=SECONDS]`: the refresh period.
    pub watch: Option<Duration>,
    /// `--json`.
    pub json: bool,
    /// `--service a,b`: only these services.
    pub services: Vec<String>,
    /// `--expect a,b`: these services must answer.
    pub expect: Vec<String>,
    /// `--check` (or `--expect`): recent errors fail the run.
    pub check: bool,
}

fn flag(config: &Config, key: &str) -> Result<bool, String> {
    match config.get_str(key).as_deref().map(str::to_ascii_lowercase) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "" | "true" | "1" | "yes") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
        Some(v) => Err(format!(
            "key {key}: {v:?} is not a flag; write `--{}` (or {key}=true)",
            key.to_ascii_lowercase()
        )),
    }
}

fn names(config: &Config, key: &str) -> Vec<String> {
    config
        .get_str(key)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Args {
    /// Reads the options; an unusable value is an error naming its key.
    pub fn read(config: &Config) -> Result<Args, String> {
        let wait = parse_setting(
            "HEALTH_WAIT_MS",
            &config
                .get_str("HEALTH_WAIT_MS")
                .unwrap_or_else(|| "500".into()),
            BareNumber::Milliseconds,
            WAIT_BOUNDS,
        )
        .map_err(|e| e.to_string())?;
        let watch = match config.get_str("WATCH") {
            None => None,
            Some(text) => match text.to_ascii_lowercase().as_str() {
                "" | "true" | "yes" => Some(DEFAULT_WATCH),
                "false" | "no" => None,
                _ => Some(
                    parse_setting("WATCH", &text, BareNumber::Seconds, WATCH_BOUNDS).map_err(
                        |e| {
                            format!(
                                "{e}; write `--watch` (every 2 s) or `--watch=SECONDS` (or a \
                                 period such as `500ms`)"
                            )
                        },
                    )?,
                ),
            },
        };
        let expect = names(config, "EXPECT");
        Ok(Args {
            wait,
            watch,
            json: flag(config, "JSON")?,
            services: names(config, "SERVICE"),
            check: flag(config, "CHECK")? || !expect.is_empty(),
            expect,
        })
    }
}
