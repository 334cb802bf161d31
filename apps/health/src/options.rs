//! The tool's options, read from its configuration (so `--watch` on the
//! command line and `WATCH=true` in the environment mean the same).

use std::time::Duration;

use telestion::Config;

/// Default refresh period of `--watch`, seconds.
const DEFAULT_WATCH_SECS: f64 = 2.0;

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
        let wait = config
            .get::<u64>("HEALTH_WAIT_MS")
            .map_err(|e| e.to_string())?
            .unwrap_or(500);
        if wait > 60_000 {
            return Err("key HEALTH_WAIT_MS: at most 60000 (a minute)".into());
        }
        let watch = match config.get_str("WATCH") {
            None => None,
            Some(text) => match text.to_ascii_lowercase().as_str() {
                "" | "true" | "yes" => Some(Duration::from_secs_f64(DEFAULT_WATCH_SECS)),
                "false" | "no" => None,
                number => match number.parse::<f64>() {
                    Ok(secs) if secs.is_finite() && (0.1..=3600.0).contains(&secs) => {
                        Some(Duration::from_secs_f64(secs))
                    }
                    _ => {
                        return Err(format!(
                            "key WATCH: {text:?} is not a refresh period; write `--watch` \
                             (every {DEFAULT_WATCH_SECS} s) or `--watch=SECONDS` with 0.1 to 3600"
                        ));
                    }
                },
            },
        };
        let expect = names(config, "EXPECT");
        Ok(Args {
            wait: Duration::from_millis(wait),
            watch,
            json: flag(config, "JSON")?,
            services: names(config, "SERVICE"),
            check: flag(config, "CHECK")? || !expect.is_empty(),
            expect,
        })
    }
}
