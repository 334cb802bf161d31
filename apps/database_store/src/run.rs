//! What the two binaries' `main` does: `--help`, `--asyncapi`, logging,
//! the start, start-up code that chooses the routes from the
//! configuration (a writer is a queue-group or a durable consumer by
//! config, which `#[subscribe]` cannot express), serving and the exit code
//! (0 after a drain, 1 when the start fails), as `#[telestion::service]`
//! does.

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;

use telestion::permissions::Uses;
use telestion::{BoxError, Config, Options, Route, Service, StartError};

fn write_stderr(text: &str) {
    // Never `eprintln!`: it panics when stderr is gone.
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn exe_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "service".into())
}

/// Runs a service: `help_routes` are the routes `--help`, `--asyncapi` and
/// `--nats-permissions` describe (those of the default configuration),
/// `uses` what the service's own code does on the bus for its
/// configuration and name (for `--nats-permissions`), `keys` the
/// service's own configuration keys with their meaning (for `--help`), and
/// `setup` the start-up code, which returns the routes to serve.
pub fn run<F, Fut>(
    version: &str,
    help_routes: Vec<Route>,
    uses: fn(&Config, &str) -> Uses,
    keys: &[(&str, &str)],
    setup: F,
) -> ExitCode
where
    F: FnOnce(Service) -> Fut,
    Fut: Future<Output = Result<Vec<Route>, BoxError>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let mut text = telestion::help_text(&help_routes);
        text.push_str("\nWhat this service's keys mean:\n");
        for (key, meaning) in keys {
            text.push_str(&format!("  {key:28}{meaning}\n"));
        }
        let _ = std::io::stdout().write_all(text.as_bytes());
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--nats-permissions") {
        let config = telestion::Config::merge(
            args.iter().filter(|a| *a != "--nats-permissions").cloned(),
            std::env::vars(),
        )
        .unwrap_or_else(|_| Config::from_pairs(Vec::<(String, String)>::new()));
        let name = config
            .get_str("SERVICE_NAME")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(exe_name);
        let permissions = telestion::permissions::nats_permissions(
            &help_routes,
            &uses(&config, &name),
            &config,
            &name,
        );
        let text = serde_json::to_string_pretty(&permissions).unwrap_or_default() + "\n";
        return match std::io::stdout().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    if args.iter().any(|a| a == "--asyncapi") {
        let config = match Config::load() {
            Ok(config) => config,
            Err(e) => {
                write_stderr(&format!("error: {}\n", telestion::error_chain(&e)));
                return ExitCode::FAILURE;
            }
        };
        let name = config
            .get_str("SERVICE_NAME")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(exe_name);
        let document = telestion::asyncapi_document(&help_routes, &config, &name, version);
        let text = serde_json::to_string_pretty(&document).unwrap_or_default() + "\n";
        return match std::io::stdout().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let runtime = match telestion::tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            write_stderr(&format!("error: cannot start the tokio runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    telestion::init_logging();
    let result = runtime.block_on(async move {
        let service = Service::start(Options::new().version(version)).await?;
        let routes = setup(service.clone()).await.map_err(StartError::Setup)?;
        service.serve(routes).await
    });
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            write_stderr(&format!("error: {}\n", telestion::error_chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// A name usable as a file name and a subject token:
/// `[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}`.
///
/// ```
/// assert!(database_store::run::valid_name("telemetry"));
/// assert!(!database_store::run::valid_name("../etc"));
/// assert!(!database_store::run::valid_name(".hidden"));
/// ```
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Logs at most one line per second for a kind of failure, with how many
/// were left out since, so a flood of bad messages does not flood the log
/// (every one is still counted in health).
#[derive(Debug, Default)]
pub struct LogLimiter {
    last_second: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    /// `Some(n)` when a line may be logged now (`n` lines were left out
    /// before it), `None` when this one is left out.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_second.load(Ordering::Relaxed);
        if last != second
            && self
                .last_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Threads of their own for database work: `n` threads named `name`,
/// outside tokio's pools. The synchronous PostgreSQL client runs a small
/// runtime of its own and must not be used on a thread of the service's
/// runtime (its blocking pool included); SQLite work goes there too, so
/// both back-ends share one path. A caller waits for its work with
/// [`rayon::ThreadPool::install`].
///
/// # Panics
///
/// When the threads cannot be started.
pub fn database_threads(n: usize, name: &str) -> rayon::ThreadPool {
    let name = name.to_owned();
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .expect("cannot start the database threads")
}
