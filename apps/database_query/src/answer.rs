//! Answering one request: check it, run it within its time budget on a
//! pooled connection, reply with a page or with the upstream error shape.

use std::time::{Duration, Instant};

use database_store::query::{Budget, SeriesCache, error_reply, run};
use database_store::request::parse_query;
use database_store::run::LogLimiter;
use database_store::{ReadPool, StoreError};
use telestion::tracing;
use telestion::{Bytes, HeaderMap, Reply, Service, State, TypedConfig};

use crate::settings::QuerySettings;

/// What requests are answered with.
pub struct Engine {
    /// Reading connections (`None` once closed).
    pub readers: Option<ReadPool>,
    /// The threads that use them.
    pub threads: database_store::rayon::ThreadPool,
    /// Tag sets by series.
    pub cache: SeriesCache,
    /// Rows per reply at most.
    pub max_rows: usize,
    /// Time budget per request.
    pub timeout: Duration,
    /// Bytes of rows per reply at most.
    pub max_bytes: usize,
    /// Limits the log lines of failures.
    pub log: LogLimiter,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closed on the database threads: PostgreSQL clients must not be
        // dropped on a thread of the runtime.
        let readers = self.readers.take();
        self.threads.install(move || drop(readers));
    }
}

/// How long a request may take at most, statements included: twice the
/// budget, at least a second (the budget itself is checked between points,
/// and every page makes progress before it counts).
pub fn hard_limit(budget: Duration) -> Duration {
    (budget * 2).max(Duration::from_secs(1))
}

/// A failure reply: upstream's body `{"success": false, "error": ...}` and
/// the NATS micro-services error headers.
fn failure(engine: &Engine, service: &Service, code: u16, message: &str) -> Reply {
    service.record_error();
    if let Some(left_out) = engine.log.allow() {
        if code < 500 {
            tracing::warn!(code, error = message, left_out, "a query was refused");
        } else {
            tracing::error!(code, error = message, left_out, "a query failed");
        }
    }
    let mut headers = HeaderMap::new();
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert("Nats-Service-Error", one_line.as_str());
    headers.insert("Nats-Service-Error-Code", code.to_string().as_str());
    Reply::Body {
        payload: Bytes::from(error_reply(message)),
        headers: Some(headers),
    }
}

/// Answers one query request (a plain `fn`: it runs on the blocking pool).
pub fn answer(
    body: Bytes,
    engine: telestion::State<Engine>,
    service: Service,
    _settings: TypedConfig<QuerySettings>,
) -> Reply {
    let engine: &State<Engine> = &engine;
    let started = Instant::now();
    let query = match parse_query(&body, engine.max_rows) {
        Ok(query) => query,
        Err(bad) => return failure(engine, &service, 400, &bad.0),
    };
    let hard_deadline = started + hard_limit(engine.timeout);
    let budget = Budget {
        deadline: started + engine.timeout,
        hard_deadline,
        max_bytes: engine.max_bytes,
    };
    let result = engine.threads.install(|| match &engine.readers {
        Some(readers) => readers.with(hard_deadline, |read| {
            run(read, &query, budget, &engine.cache)
        }),
        None => Err(StoreError::Config("the service is stopping".into())),
    });
    match result {
        Ok(page) => Reply::Body {
            payload: Bytes::from(page.to_reply()),
            headers: None,
        },
        Err(error @ (StoreError::Missing(_) | StoreError::NoSchema(_))) => {
            // The reply never names the server's files; the log does.
            tracing::debug!(error = %error, "no data to answer from");
            failure(
                engine,
                &service,
                503,
                "the database has no data yet (has the database writer run?)",
            )
        }
        Err(StoreError::Config(message)) => failure(engine, &service, 400, &message),
        Err(error) => failure(
            engine,
            &service,
            500,
            &format!("the query failed: {}", telestion::error_chain(&error)),
        ),
    }
}
