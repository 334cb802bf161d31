//! Attribute macros for [`telestion`](https://docs.rs/telestion):
//! `#[telestion::service]` on `async fn main` and `#[subscribe(...)]` on
//! message handlers. Use them through the `telestion` crate, which
//! re-exports both; generated code names only `::telestion::...` paths.
//!
//! # How handlers are found: a link-time registry
//!
//! Each `#[subscribe]` adds a `static` route constructor (`fn() -> Route`)
//! to a [linkme](https://docs.rs/linkme) distributed slice,
//! `telestion::__private::ROUTES`. The linker gathers all of them into one
//! array, so handlers in any module of the binary are found without a
//! hand-written list, and nothing runs before `main`. linkme rather than
//! `inventory`: it needs no life-before-main constructors, and on an
//! unsupported platform it fails at link time instead of silently finding
//! no handlers.
//!
//! The limit (shared by every link-time registry): only code that is linked
//! into the binary is found. Handlers in the binary crate always are;
//! handlers in a library crate only when the binary uses something from
//! that crate. When in doubt, register handlers by hand.
//!
//! # What the macros expand to
//!
//! This service
//!
//! ```no_run
//! use telestion::{Json, State, subscribe};
//!
//! struct Factor {
//!     by: i64,
//! }
//!
//! #[subscribe("math.scale", concurrency = 4)]
//! async fn scale(Json(x): Json<i64>, factor: State<Factor>) -> Json<i64> {
//!     Json(x * factor.by)
//! }
//!
//! #[telestion::service]
//! async fn main(service: telestion::Service) {
//!     service.provide(Factor { by: 3 });
//! }
//! ```
//!
//! is, without the macros (apart from the compile-time checks on
//! parameter and return types, and the handler name in logs):
//!
//! ```no_run
//! use telestion::{Json, Options, Route, Service, State};
//!
//! struct Factor {
//!     by: i64,
//! }
//!
//! async fn scale(Json(x): Json<i64>, factor: State<Factor>) -> Json<i64> {
//!     Json(x * factor.by)
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     telestion::__private::run(
//!         Options::new(),
//!         vec![Route::new("math.scale", scale).concurrency(4)],
//!         |service: Service| async move {
//!             service.provide(Factor { by: 3 });
//!             Ok(())
//!         },
//!     )
//! }
//! ```
//!
//! `run` builds the tokio runtime, installs logging, loads the config,
//! connects, starts health, runs the body of `main`, subscribes the routes,
//! serves until SIGINT/SIGTERM and drains. The same by hand with public API
//! only: `Service::start(options)`, your start-up code, then
//! `service.serve(routes)`.

mod args;
mod func;
mod service;
mod subscribe;

use proc_macro::TokenStream;

/// Turns `async fn main` into a Telestion service.
///
/// The body of `main` is start-up code: it runs after the service has
/// loaded its config and connected, and before any handler runs. It may
/// take the service handle (`async fn main(service: telestion::Service)`)
/// to provide shared state, read typed config or publish, and return `()`
/// or `Result<(), E>` where `E` is an error type, `String` or `&str` (an
/// `Err` fails the start, printed with its causes).
///
/// Then every `#[subscribe]` handler of the binary is subscribed, and the
/// service serves until SIGINT/SIGTERM, then drains. A failed start prints
/// one line `error: ...` to stderr and exits with code 1.
///
/// Arguments:
/// - `nats = false`: run without a NATS connection (no handlers);
/// - `publishes`, `requests`, `subscribes`, `streams`, `key_value` (lists
///   of strings): what the service's own code does on the bus, for its
///   NATS permissions;
/// - `subscription_capacity = 262_144`: the service's own default for
///   `NATS_SUBSCRIPTION_CAPACITY` (messages buffered per subscription;
///   the configuration key overrides it; see `Options::subscription_capacity`);
/// - `crate = "path"`: the `telestion` crate under another name.
///
/// ```no_run
/// use telestion::{Json, State, subscribe};
///
/// struct Greeting {
///     text: String,
/// }
///
/// #[subscribe("greet")]
/// async fn greet(Json(name): Json<String>, greeting: State<Greeting>) -> String {
///     format!("{}, {name}!", greeting.text)
/// }
///
/// #[telestion::service]
/// async fn main(service: telestion::Service) -> Result<(), telestion::ConfigError> {
///     let text = service.config().get::<String>("GREETING")?;
///     service.provide(Greeting {
///         text: text.unwrap_or_else(|| "Hello".into()),
///     });
///     Ok(())
/// }
/// ```
///
/// Without NATS:
///
/// ```no_run
/// #[telestion::service(nats = false)]
/// async fn main(service: telestion::Service) {
///     println!("{} has no NATS connection", service.name());
///     service.shutdown();
/// }
/// ```
///
/// See the [crate docs](crate) for the code this expands to.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    service::expand(args.into(), item.into()).into()
}

/// Registers an `async fn` (or a plain `fn`: a blocking handler, run on
/// the blocking thread pool) as a message handler of the service, or as a
/// timer or task.
///
/// The subject is a string literal (NATS wildcards `*` and `>` allowed,
/// checked at compile time) or `config = "KEY"` for a subject read from
/// config at start (`default = "subject"`: the subject when the key is not
/// set). Instead of a subject, `every = "100ms"` (or `every_config = "KEY"`
/// with an optional `every_default = "1s"`) makes a timer, called
/// periodically, and `task` a task, started once after the handlers and
/// restarted with back-off when it fails. Further arguments:
/// - `publish = "subject"` or `publish = ["a", "b"]`, `publish_config =
///   "KEY"` (with an optional `publish_default = "subject"`): also publish
///   the return value there (a request is still answered);
/// - `queue = false`: every instance of the service receives every message
///   (default: instances share the messages in the queue group
///   `SERVICE_NAME`); `queue = "name"`: the queue group `name`;
/// - `concurrency = N`: handle up to `N` messages at once (default 1: one
///   at a time, in arrival order);
/// - `durable`: consume a JetStream stream through a durable pull
///   consumer shared by every instance (acknowledged after success,
///   retried with back-off, dead-lettered after the maximum deliveries);
///   `durable = "consumer"` names the consumer (default
///   `<SERVICE_NAME>_<handler>`), `stream = "NAME"` the stream (default:
///   the one that captures the subject). `queue` does not apply;
///   `concurrency = N` allows `N` unacknowledged messages at once;
/// - `batch = N` (1 to 10,000), with an optional `batch_window = "50ms"`
///   (default 100 ms): one call for up to `N` messages, taken as a
///   `Batch<T>` parameter; `concurrency` does not apply;
/// - `crate = "path"`: the `telestion` crate under another name.
///
/// The guide's chapter `telestion::guide::handlers` has the table of every
/// argument, and a chapter for each kind of handler.
///
/// ```no_run
/// use telestion::{Json, subscribe};
///
/// #[derive(serde::Deserialize)]
/// struct Command {
///     action: String,
/// }
///
/// #[subscribe("cmd.>", durable, stream = "COMMANDS")]
/// async fn execute(Json(command): Json<Command>) -> Result<(), String> {
///     println!("executing {}", command.action);
///     Ok(())
/// }
///
/// #[telestion::service]
/// async fn main(service: telestion::Service) -> Result<(), telestion::StartError> {
///     service
///         .declare_stream(telestion::StreamSpec::new("COMMANDS").subjects(["cmd.>"]))
///         .await
/// }
/// ```
///
/// Parameters, in any order, are extractors: at most one body (`Json<T>`,
/// `Bytes`, `Vec<u8>`, `String`, `Message`) plus any of `Subject`,
/// `Headers`, `ReplyTo`, `Service`, `State<T>`, `TypedConfig<T>`. The
/// return value is the reply: `()`, `Json<T>`, `Bytes`, `Vec<u8>`,
/// `String`, `&'static str`, or `Option`/`Result<_, E: Display>` of those.
/// An `Err`, a body that does not decode, or a panic is counted in health,
/// logged and answered with an error reply.
///
/// ```no_run
/// use telestion::{Json, Service, Subject, subscribe};
///
/// #[derive(serde::Deserialize)]
/// struct Reading {
///     celsius: f64,
/// }
///
/// #[subscribe("sensors.*.temperature", concurrency = 4)]
/// async fn convert(Json(reading): Json<Reading>, subject: Subject) -> Result<Json<f64>, String> {
///     if reading.celsius < -273.15 {
///         return Err(format!("{} sent an impossible reading", &*subject));
///     }
///     Ok(Json(reading.celsius * 9.0 / 5.0 + 32.0))
/// }
///
/// #[subscribe(config = "ALERT_SUBJECT", queue = false)]
/// async fn alert(text: String, service: Service) {
///     println!("{}: {text}", service.id());
/// }
///
/// #[subscribe(every = "1s", publish = "status.alive")]
/// async fn alive(service: Service) -> String {
///     service.name().to_owned()
/// }
///
/// #[subscribe("files.checksum", concurrency = 4)]
/// fn checksum(body: Vec<u8>) -> Json<u32> {
///     Json(body.iter().map(|b| u32::from(*b)).sum())
/// }
///
/// #[telestion::service]
/// async fn main() {}
/// ```
///
/// Without the macro, the same handler is
/// `Route::new("sensors.*.temperature", convert).concurrency(4)`, given to
/// `Service::serve` or `Service::subscribe`.
#[proc_macro_attribute]
pub fn subscribe(args: TokenStream, item: TokenStream) -> TokenStream {
    subscribe::expand(args.into(), item.into()).into()
}
