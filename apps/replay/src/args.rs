//! The command line: replay's own options and files, and the
//! `--KEY=VALUE` configuration handed on to the Telestion runtime.
//!
//! Telestion's own parser takes `--KEY VALUE` (value as the next argument)
//! and rejects positional arguments, so it cannot read a file list. Replay
//! therefore parses the command line itself (with `lexopt`): its options,
//! the files, and configuration keys in the one unambiguous form
//! `--KEY=VALUE`, which it passes on unchanged. `--dev` is passed on too.

use std::ffi::OsString;
use std::path::PathBuf;

/// How fast the messages go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pace {
    /// The recorded gaps divided by this factor (1 = as recorded).
    Speed(f64),
    /// No waiting at all.
    Fast,
}

/// The parsed command line.
#[derive(Debug, PartialEq)]
pub(crate) struct Args {
    pub(crate) pace: Pace,
    pub(crate) files: Vec<PathBuf>,
    /// `--KEY=VALUE` and `--dev`, for the runtime's configuration.
    pub(crate) config: Vec<String>,
    pub(crate) help: bool,
}

/// Parses the arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut speed = None;
    let mut fast = false;
    let mut files = Vec::new();
    let mut config = Vec::new();
    let mut help = false;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => help = true,
            Long("fast") => fast = true,
            Long("speed") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_string_lossy();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() && n > 0.0 => speed = Some(n),
                    _ => {
                        return Err(format!(
                            "--speed takes a number above 0 (10 = ten times faster, 0.5 = half \
                             as fast), not {text:?}"
                        ));
                    }
                }
            }
            Long(key) => {
                let key = key.to_owned();
                match parser.optional_value() {
                    Some(value) => {
                        let value = value.into_string().map_err(|raw| {
                            format!(
                                "the value of --{key} is not valid UTF-8: {}",
                                raw.to_string_lossy()
                            )
                        })?;
                        config.push(format!("--{key}={value}"));
                    }
                    None if key == "dev" => config.push("--dev".to_owned()),
                    None => {
                        return Err(format!(
                            "unknown option --{key}; configuration keys are given as \
                             --KEY=VALUE (with `=`, e.g. --nats-url=localhost:4222)"
                        ));
                    }
                }
            }
            Value(file) => files.push(PathBuf::from(file)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let pace = match (speed, fast) {
        (Some(_), true) => return Err("give either --speed N or --fast, not both".into()),
        (Some(n), false) => Pace::Speed(n),
        (None, true) => Pace::Fast,
        (None, false) => Pace::Speed(1.0),
    };
    if files.is_empty() && !help {
        return Err("no FILE given; name at least one data-log file".into());
    }
    Ok(Args {
        pace,
        files,
        config,
        help,
    })
}

/// The text `--help` prints: usage, options, exit codes and the
/// connection keys (their descriptions taken from the runtime's own help).
pub(crate) fn help() -> String {
    let mut text = String::from(
        "replay: republishes the messages of Standard Operations data-log files.

Usage: replay [--speed N | --fast] [--KEY=VALUE]... [--] FILE...

Every line of each FILE (a $DATA_DIR/logs/<category>.log written by
standard_ops) is published to its recorded subject with its recorded body,
byte for byte, in the order of the file; the files one after the other.

Options:
  --speed N      N times the recorded pace (N > 0: 10 = ten times faster,
                 0.5 = half as fast); default: the recorded pace (1)
  --fast         as fast as possible, without waiting
  --KEY=VALUE    a configuration key, e.g. --nats-url=localhost:4222
                 (only this form: an argument without `--` is a FILE)
  --dev          NATS_URL=localhost:4222 unless set
  --             every argument after it is a FILE
  -h, --help     this text

Exit codes:
  0    every line was published and the NATS server confirmed it
  1    fatal: bad arguments or configuration, unreadable FILE, no
       connection, or the server did not confirm the messages in time
  2    done, but at least one line was skipped (reported on stderr as
       FILE:LINE: why); the others were published and confirmed
  130  stopped by SIGINT or SIGTERM (what was published is confirmed)

Configuration, as for every Telestion program, from the environment,
--KEY=VALUE or the JSON file named by CONFIG_FILE (CLI > env > file).
NATS_URL is required. SERVICE_NAME defaults to `replay`, DATA_DIR to `.`
(replay keeps no data). SHUTDOWN_TIMEOUT (seconds, default 10) bounds the
wait for the server's confirmation at the end.
",
    );
    // The meanings of the connection keys, as the runtime states them.
    let runtime = telestion::help_text(&[]);
    text.push_str("\nConnection keys:\n");
    for line in runtime.lines() {
        let key = line.split_whitespace().next().unwrap_or_default();
        if line.starts_with("  ") && (key.starts_with("NATS_") || key.starts_with("CONFIG_")) {
            text.push_str(line);
            text.push('\n');
        }
        if line.starts_with("Environment only") {
            text.push('\n');
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn options_files_and_config() {
        let args = parse_strs(&[
            "--speed",
            "2.5",
            "a.log",
            "--nats-url=localhost:4333",
            "--dev",
            "b.log",
            "--",
            "--odd.log",
        ])
        .unwrap();
        assert_eq!(args.pace, Pace::Speed(2.5));
        assert_eq!(
            args.files,
            ["a.log", "b.log", "--odd.log"].map(PathBuf::from)
        );
        assert_eq!(args.config, ["--nats-url=localhost:4333", "--dev"]);
        assert_eq!(parse_strs(&["--fast", "x"]).unwrap().pace, Pace::Fast);
        assert_eq!(parse_strs(&["x"]).unwrap().pace, Pace::Speed(1.0));
        assert_eq!(
            parse_strs(&["--speed=4", "x"]).unwrap().pace,
            Pace::Speed(4.0)
        );
        assert!(parse_strs(&["--help"]).unwrap().help);
        assert!(parse_strs(&["-h"]).unwrap().help);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |args: &[&str]| parse_strs(args).unwrap_err();
        assert!(err(&[]).contains("no FILE"));
        assert!(err(&["--fast", "--speed", "2", "x"]).contains("not both"));
        for bad in ["0", "-1", "NaN", "inf", "fast"] {
            assert!(err(&["--speed", bad, "x"]).contains("--speed"), "{bad}");
        }
        assert!(err(&["--speed"]).contains("--speed"));
        assert!(err(&["--nats-url", "localhost", "x"]).contains("--KEY=VALUE"));
        assert!(err(&["-x", "f"]).contains("-x"));
    }

    #[test]
    fn help_lists_the_connection_keys() {
        let text = help();
        for key in [
            "NATS_URL",
            "NATS_CREDS",
            "NATS_USER",
            "CONFIG_FILE",
            "Exit codes",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
        assert!(!text.contains("SERVICE_NAME                "), "{text}");
    }
}
