//! A macro-built service for the end-to-end tests of the macros: handlers
//! in several modules, typed JSON, a config-driven subject, broadcast and
//! queue-group handlers, concurrency, state and typed config from `main`.
//! Handlers report what they observe by publishing to `e2e.observed.*`.
//!
//! Environment (besides NATS_URL, SERVICE_NAME, DATA_DIR):
//! `ECHO_SUBJECT` (subject of the config-driven handler), `FACTOR` (typed
//! config, an integer), `FAIL_SETUP` (when set, `main` fails with it).

use std::sync::atomic::{AtomicUsize, Ordering};

use telestion::{Service, subscribe};

/// Shared state provided in `main`.
pub struct Shared {
    /// A greeting made in `main` from the service name.
    pub greeting: String,
    /// Three handlers of `concurrency::parallel` meet here.
    pub barrier: tokio::sync::Barrier,
    /// Messages in flight and the most seen at once, per handler.
    pub parallel: InFlight,
    pub sequential: InFlight,
}

/// Counts messages in flight and remembers the maximum.
#[derive(Default)]
pub struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    pub fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

mod math {
    use serde::{Deserialize, Serialize};
    use telestion::{Json, TypedConfig, subscribe};

    #[derive(Deserialize)]
    pub struct Division {
        pub dividend: i64,
        pub divisor: i64,
    }

    #[derive(Serialize)]
    pub struct Quotient {
        pub quotient: i64,
        pub remainder: i64,
    }

    /// Typed config: `FACTOR`.
    #[derive(Deserialize)]
    pub struct Settings {
        pub factor: i64,
    }

    #[subscribe("e2e.math.divide")]
    async fn divide(Json(division): Json<Division>) -> Result<Json<Quotient>, String> {
        if division.divisor == 0 {
            return Err(format!("cannot divide {} by zero", division.dividend));
        }
        Ok(Json(Quotient {
            quotient: division.dividend / division.divisor,
            remainder: division.dividend % division.divisor,
        }))
    }

    #[subscribe("e2e.math.scale")]
    pub(crate) async fn scale(Json(x): Json<i64>, settings: TypedConfig<Settings>) -> Json<i64> {
        Json(x * settings.factor)
    }
}

mod text {
    pub mod loud {
        use telestion::{State, Subject, subscribe};

        use crate::Shared;

        /// Two levels deep, with state from `main` and the subject.
        #[subscribe("e2e.text.*.greet")]
        pub async fn greet(name: String, shared: State<Shared>, subject: Subject) -> String {
            format!("{}, {name}! ({})", shared.greeting, &*subject)
        }
    }
}

mod routing {
    use telestion::{Bytes, Service, Subject, subscribe};

    /// Subject from config: `ECHO_SUBJECT`.
    #[subscribe(config = "ECHO_SUBJECT")]
    async fn echo(body: Bytes, subject: Subject) -> String {
        format!("{}:{}", &*subject, String::from_utf8_lossy(&body))
    }

    /// Default queue group (SERVICE_NAME): one instance gets each message.
    #[subscribe("e2e.work")]
    async fn queued(body: Bytes, service: Service) -> Result<(), telestion::ServiceError> {
        report(&service, "e2e.observed.queue", body).await
    }

    /// `queue = false`: every instance gets every message.
    #[subscribe("e2e.announce", queue = false)]
    async fn broadcast(body: Bytes, service: Service) -> Result<(), telestion::ServiceError> {
        report(&service, "e2e.observed.broadcast", body).await
    }

    async fn report(
        service: &Service,
        subject: &str,
        body: Bytes,
    ) -> Result<(), telestion::ServiceError> {
        let line = format!("{} {}", service.id(), String::from_utf8_lossy(&body));
        service.publish(subject.to_owned(), line).await
    }
}

mod concurrency {
    use std::time::Duration;

    use telestion::{Json, Service, State, subscribe};

    use crate::Shared;

    /// Up to 3 at once: three messages meet at a barrier of 3 (which never
    /// opens if they ran one at a time).
    #[subscribe("e2e.parallel", concurrency = 3)]
    async fn parallel(Json(n): Json<u32>, shared: State<Shared>) -> Json<u32> {
        shared.parallel.enter();
        shared.barrier.wait().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        shared.parallel.leave();
        Json(n)
    }

    /// Default concurrency 1: one at a time, in order; reports the order.
    #[subscribe("e2e.sequential")]
    async fn sequential(
        Json(n): Json<u32>,
        shared: State<Shared>,
        service: Service,
    ) -> Result<(), telestion::ServiceError> {
        shared.sequential.enter();
        tokio::time::sleep(Duration::from_millis(10)).await;
        shared.sequential.leave();
        service
            .publish("e2e.observed.sequential", n.to_string())
            .await
    }

    /// The most messages each handler saw in flight at once.
    #[subscribe("e2e.stats")]
    async fn stats(shared: State<Shared>) -> Json<[usize; 2]> {
        Json([shared.parallel.max(), shared.sequential.max()])
    }
}

/// A handler at the crate root.
#[subscribe("e2e.ping")]
async fn ping() -> &'static str {
    "pong"
}

#[telestion::service]
async fn main(service: Service) -> Result<(), String> {
    if let Some(reason) = service.config().get_str("FAIL_SETUP") {
        return Err(format!("start-up refused: {reason}"));
    }
    service.provide(Shared {
        greeting: format!("Hello from {}", service.name()),
        barrier: tokio::sync::Barrier::new(3),
        parallel: InFlight::default(),
        sequential: InFlight::default(),
    });
    Ok(())
}
