//! The command line and the sizes of a run (`Plan`).

use std::path::{Path, PathBuf};

/// The usage line.
pub const USAGE: &str =
    "usage: bench [--smoke] [--rounds N] [--only CASE] [--out PATH] [--no-build]";

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub smoke: bool,
    pub rounds: usize,
    /// Messages per throughput round, 128 B bodies.
    pub small: u64,
    /// Messages per throughput round, 16 KiB bodies.
    pub large: u64,
    /// Requests per latency round.
    pub requests: usize,
    /// Backlog of the health case.
    pub backlog: u64,
    /// Rounds of the health case.
    pub health_rounds: usize,
    /// Cold starts per side.
    pub cold_runs: usize,
    /// Lines per standard_ops round.
    pub log_lines: u64,
    /// Messages per durable throughput round (128 B).
    pub durable: u64,
    /// Durable publishes per latency round.
    pub durable_requests: usize,
    /// Run only this case (`cold`, `throughput`, `latency`, `health`,
    /// `standard_ops`, `durable`, or `instructions`, `backend` and `database`, which run only when named), for
    /// profiling.
    pub only: Option<String>,
}

impl Plan {
    /// Whether case `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == name)
    }

    /// Whether case `name` runs, for a case that runs only when named.
    pub fn runs_only(&self, name: &str) -> bool {
        self.only.as_deref() == Some(name)
    }

    fn full(rounds: usize) -> Plan {
        Plan {
            smoke: false,
            rounds,
            small: 300_000,
            large: 30_000,
            requests: 2_000,
            backlog: 100_000,
            health_rounds: 3,
            cold_runs: 5,
            log_lines: 200_000,
            durable: 10_000,
            durable_requests: 1_000,
            only: None,
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            rounds: 1,
            small: 500,
            large: 50,
            requests: 20,
            backlog: 500,
            health_rounds: 1,
            cold_runs: 1,
            log_lines: 1_000,
            durable: 100,
            durable_requests: 10,
            only: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub struct Args {
    pub plan: Plan,
    /// Build the sibling binaries first (not with `--no-build`).
    pub build: bool,
    /// Where the JSON goes, if anywhere.
    pub out: Option<PathBuf>,
}

/// What to do instead of a run.
#[derive(Debug)]
pub enum Exit {
    /// `--help` was printed.
    Help,
    /// A usage error, with its message.
    Usage(String),
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, Exit> {
    let mut args = args.into_iter();
    let mut smoke = false;
    let mut build = true;
    let mut rounds = 5;
    let mut out = None;
    let mut only = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--no-build" => build = false,
            "--rounds" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => rounds = n,
                _ => return Err(Exit::Usage("--rounds takes a positive number".into())),
            },
            "--only" => match args.next() {
                Some(case) => only = Some(case),
                None => return Err(Exit::Usage("--only takes a case name".into())),
            },
            "--out" => match args.next() {
                Some(path) => out = Some(PathBuf::from(path)),
                None => return Err(Exit::Usage("--out takes a path".into())),
            },
            "-h" | "--help" => return Err(Exit::Help),
            other => return Err(Exit::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let mut plan = if smoke {
        Plan::smoke()
    } else {
        Plan::full(rounds)
    };
    // A partial or smoke run does not replace the full run's figures unless
    // `--out` says where to write.
    let out = out.or_else(|| {
        (!smoke && only.is_none())
            .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results.json"))
    });
    plan.only = only;
    Ok(Args { plan, build, out })
}
