//! Tool: republishes the messages of Standard Operations data-log files to
//! their subjects, byte for byte, at the recorded pace or faster.
//!
//! `standard_ops` appends one JSON line per message to
//! `$DATA_DIR/logs/<category>.log`:
//!
//! ```json
//! {"time":"2025-01-01T12:00:00.000000Z","subject":"__telestion__/log/temp","json":{"value":1}}
//! ```
//!
//! `replay` reads such files and publishes every line's body to its
//! subject again: a `json` body exactly as it is embedded in the line (its
//! raw text, never re-encoded), a `text` body as its UTF-8 bytes, a
//! `base64` body decoded.
//!
//! ```sh
//! cargo install --path apps/replay
//! NATS_URL=localhost:4222 replay --speed 10 data/logs/temp.log
//! ```
//!
//! ## Usage
//!
//! ```text
//! replay [--speed N | --fast] [--KEY=VALUE]... [--] FILE...
//! ```
//!
//! - By default the messages go out at the recorded pace: the gap between
//!   two messages is the gap between their `time` values (a line whose time
//!   is earlier than one before it goes out at once). `--speed N` divides
//!   every gap by `N` (`10` = ten times faster, `0.5` = half as fast);
//!   `--fast` does not wait at all.
//! - The files are replayed one after the other, in the order given; each
//!   file's first message goes out right after the previous file's last.
//!   Of a regular file, the lines it held when replay opened it are read
//!   (not what is appended meanwhile, e.g. by a `standard_ops` that logs
//!   the replayed messages again); pipes such as `<(zcat old.log.gz)` are
//!   read to their end. Every FILE is opened before the connection is made,
//!   so a missing one fails the run before anything is published.
//! - Configuration keys come, as for every Telestion program, from the
//!   environment, the JSON file named by `CONFIG_FILE` or the command line;
//!   on replay's command line only in the form `--KEY=VALUE` (with `=`,
//!   e.g. `--nats-url=localhost:4222`), because any argument without `--`
//!   is a FILE. (Telestion's own parser also takes `--KEY VALUE` and
//!   rejects positional arguments, so replay parses its command line
//!   itself and hands these keys on.) `NATS_URL` is required, with the
//!   usual `NATS_USER`/`NATS_PASSWORD`, `NATS_CREDS`, `NATS_NKEY` and TLS
//!   keys; `SERVICE_NAME` defaults to `replay` and `DATA_DIR` to `.`
//!   (replay keeps no data). `replay --help` lists them.
//!
//! ## Robustness
//!
//! The files are streamed line by line; a line may be at most 96 MiB (more
//! than the base64 form of the largest body a NATS server accepts, 64 MiB).
//! A line that cannot be replayed (not JSON, no valid `time` or `subject`,
//! not exactly one body, too long, or refused by the client, e.g. larger
//! than the server's `max_payload`) is reported on stderr as
//! `replay: FILE:LINE: why; line skipped`, counted, and the rest goes on
//! (the first 100 are listed, all are counted). Blank lines are ignored.
//!
//! At the end replay waits until the NATS server has processed every
//! message it published (a round trip through the server after them), at
//! most `SHUTDOWN_TIMEOUT` seconds (default 10). SIGINT or SIGTERM stops
//! the replay at once; what was published until then is confirmed the same
//! way (a second signal exits at once). A summary goes to stderr:
//!
//! ```text
//! replay: 1204 messages published, 1 line skipped, 2 files, 12.031 s
//! ```
//!
//! ## Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | every line was published and the server confirmed it |
//! | 1 | fatal: bad arguments or configuration, an unreadable FILE, no connection, the connection lost for good, or no confirmation in time |
//! | 2 | done, but at least one line was skipped; every other line was published and confirmed |
//! | 130 | stopped by SIGINT or SIGTERM; what was published was confirmed |

mod args;
mod lines;
mod record;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use telestion::{Config, ConfigError, Options, Service, ServiceError, StartError, error_chain};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::time::Instant;

use args::Pace;
use lines::{Lines, Next};

/// The longest line read, without its line break.
const MAX_LINE: usize = 96 << 20;

/// How many skipped lines are listed on stderr (all are counted).
const MAX_REPORTS: u64 = 100;

/// Writes to stderr; a closed stderr is no reason to stop.
fn say(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            say(&format!("replay: error: {e}\nTry `replay --help`.\n"));
            return ExitCode::from(1);
        }
    };
    if args.help {
        let _ = std::io::stdout().write_all(args::help().as_bytes());
        return ExitCode::SUCCESS;
    }
    let files = match open_all(&args.files) {
        Ok(files) => files,
        Err(e) => {
            say(&format!("replay: error: {e}\n"));
            return ExitCode::from(1);
        }
    };
    let config = match config(&args.config) {
        Ok(config) => config,
        Err(e) => {
            say(&format!("replay: error: {}\n", error_chain(&e)));
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            say(&format!(
                "replay: error: cannot start the tokio runtime: {e}\n"
            ));
            return ExitCode::from(1);
        }
    };
    telestion::init_logging();
    let code = runtime.block_on(run(config, args.pace, files));
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// A FILE, opened.
struct Input {
    path: PathBuf,
    file: File,
    /// Of a regular file: its length when opened (what is read of it).
    length: Option<u64>,
}

/// Opens every file, so that a missing one fails before anything is sent.
fn open_all(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    paths
        .iter()
        .map(|path| {
            let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
            let file = File::open(path).map_err(cannot)?;
            let meta = file.metadata().map_err(cannot)?;
            if meta.is_dir() {
                return Err(format!("cannot read {}: it is a directory", path.display()));
            }
            Ok(Input {
                path: path.clone(),
                length: meta.is_file().then_some(meta.len()),
                file,
            })
        })
        .collect()
}

/// The runtime's configuration from the environment, `CONFIG_FILE` and the
/// `--KEY=VALUE` arguments, with replay's defaults.
fn config(args: &[String]) -> Result<Config, ConfigError> {
    let env = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)));
    let mut config = Config::merge(args.iter().cloned(), env)?;
    for (key, default) in [("SERVICE_NAME", "replay"), ("DATA_DIR", ".")] {
        if config.get_str(key).is_none_or(|v| v.is_empty()) {
            config.set(key, default);
        }
    }
    config.check_required()?;
    Ok(config)
}

/// What happened, counted.
#[derive(Default)]
struct Stats {
    published: u64,
    skipped: u64,
    /// Files opened for replay (the last one perhaps not to its end).
    files: u64,
}

impl Stats {
    fn skip(&mut self, path: &Path, line: u64, why: &str) {
        self.skipped += 1;
        if self.skipped <= MAX_REPORTS {
            say(&format!(
                "replay: {}:{line}: {why}; line skipped\n",
                path.display()
            ));
        }
        if self.skipped == MAX_REPORTS + 1 {
            say("replay: more lines skipped; they are counted, not listed\n");
        }
    }
}

/// Connects, replays, confirms; returns the exit code.
async fn run(config: Config, pace: Pace, files: Vec<Input>) -> u8 {
    let service = match Service::start(Options::new().config(config)).await {
        Ok(service) => service,
        Err(StartError::Interrupted { signal }) => {
            say(&format!("replay: stopped by {signal} before connecting\n"));
            return 130;
        }
        Err(e) => {
            say(&format!("replay: error: {}\n", error_chain(&e)));
            return 1;
        }
    };
    let started = std::time::Instant::now();
    let mut stats = Stats::default();
    let outcome = tokio::select! {
        outcome = replay(&service, pace, files, &mut stats) => outcome.map(|()| false),
        () = service.stopped() => Ok(true),
    };
    let confirmed = confirm(&service).await;
    service.drain().await;

    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let summary = format!(
        "{}, {}, {}, {:.3} s",
        plural(stats.published, "message published", "messages published"),
        plural(stats.skipped, "line skipped", "lines skipped"),
        plural(stats.files, "file", "files"),
        started.elapsed().as_secs_f64()
    );
    let code = match (outcome, confirmed) {
        (Err(fatal), _) => {
            say(&format!("replay: error: {fatal}\n"));
            1
        }
        (Ok(_), Err(unconfirmed)) => {
            say(&format!("replay: error: {unconfirmed}\n"));
            1
        }
        (Ok(true), Ok(())) => {
            say("replay: stopped by a signal before the end\n");
            130
        }
        (Ok(false), Ok(())) if stats.skipped > 0 => 2,
        (Ok(false), Ok(())) => 0,
    };
    say(&format!("replay: {summary}\n"));
    code
}

/// Waits until the server has processed everything published so far: a
/// message to a fresh inbox of our own comes back only after it. At most
/// `SHUTDOWN_TIMEOUT`.
async fn confirm(service: &Service) -> Result<(), String> {
    let limit = service.shutdown_timeout();
    let client = service.nats().map_err(|e| e.to_string())?;
    let round_trip = async {
        let inbox = client.new_inbox();
        let mut echo = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        client
            .publish(inbox, telestion::Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())?;
        echo.next()
            .await
            .map(|_| ())
            .ok_or_else(|| "the connection closed".to_owned())
    };
    match tokio::time::timeout(limit, round_trip).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot confirm the published messages with the NATS server ({e}); some may be lost"
        )),
        Err(_) => Err(format!(
            "the NATS server did not confirm the published messages within {} s \
             (SHUTDOWN_TIMEOUT); some may be lost",
            limit.as_secs_f64()
        )),
    }
}

/// Replays every file; `Err` is fatal (a read error, the connection gone).
async fn replay(
    service: &Service,
    pace: Pace,
    files: Vec<Input>,
    stats: &mut Stats,
) -> Result<(), String> {
    for input in files {
        stats.files += 1;
        let file = tokio::fs::File::from_std(input.file);
        let reader: Box<dyn AsyncRead + Unpin + Send> = match input.length {
            Some(length) => Box::new(file.take(length)),
            None => Box::new(file),
        };
        let mut lines = Lines::new(BufReader::with_capacity(256 << 10, reader), MAX_LINE);
        let mut pacer = Pacer::new(pace);
        let mut number = 0;
        let path = input.path.as_path();
        loop {
            let next = lines
                .next()
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            number += 1;
            let record = match next {
                None => break,
                Some(Next::TooLong(length)) => Err(format!(
                    "the line is {length} bytes long; at most {MAX_LINE} are read"
                )),
                Some(Next::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Some(Next::Line(line)) => record::parse(line),
            };
            let record = match record {
                Ok(record) => record,
                Err(why) => {
                    stats.skip(path, number, &why);
                    continue;
                }
            };
            pacer.wait(record.time).await;
            match service.publish(record.subject, record.body).await {
                Ok(()) => stats.published += 1,
                Err(ServiceError::BufferFull { .. }) => {
                    return Err(format!(
                        "{}:{number}: not published: the connection to NATS is gone (its \
                         outgoing buffer is full); stopped",
                        path.display()
                    ));
                }
                Err(e) => stats.skip(path, number, &format!("not published: {}", error_chain(&e))),
            }
        }
    }
    Ok(())
}

/// When each message is due: the previous one's due time plus the recorded
/// gap divided by the speed (so waits do not add up drift).
struct Pacer {
    speed: Option<f64>,
    /// The latest recorded time so far and when its message was due.
    last: Option<(SystemTime, Instant)>,
}

impl Pacer {
    fn new(pace: Pace) -> Pacer {
        Pacer {
            speed: match pace {
                Pace::Speed(n) => Some(n),
                Pace::Fast => None,
            },
            last: None,
        }
    }

    /// Waits until the message recorded at `time` is due.
    async fn wait(&mut self, time: SystemTime) {
        let Some(speed) = self.speed else { return };
        let (time, due) = match self.last {
            None => (time, Some(Instant::now())),
            Some((last_time, last_due)) => {
                let gap = time.duration_since(last_time).unwrap_or_default();
                let scaled = Duration::try_from_secs_f64(gap.as_secs_f64() / speed).ok();
                (
                    time.max(last_time),
                    scaled.and_then(|scaled| last_due.checked_add(scaled)),
                )
            }
        };
        match due {
            Some(due) => {
                tokio::time::sleep_until(due).await;
                self.last = Some((time, due));
            }
            // Beyond any clock: it never comes (a signal ends the wait).
            None => std::future::pending().await,
        }
    }
}
