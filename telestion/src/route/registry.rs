//! Where `#[subscribe]` handlers are collected.
//!
//! The registry is a [`linkme`] distributed slice: each `#[subscribe]`
//! expands to a `static` function pointer placed in a dedicated linker
//! section, and the linker gathers all of them into one slice. Nothing runs
//! before `main` and no hand-written list is needed.
//!
//! Why linkme and not `inventory`: linkme needs no life-before-main
//! constructors, and it fails at link time rather than silently on an
//! unsupported platform. Its limits, shared with `inventory`: handlers
//! must be linked into the binary. Handlers in the binary crate (any module)
//! always are; handlers in a library crate are only if the binary uses
//! something from that crate (otherwise the linker never looks at it).
//! When in doubt, register them by hand with [`Route`] and
//! [`Service::serve`](crate::Service::serve).

use crate::route::Route;

/// Every `#[subscribe]` handler linked into the binary, as constructors.
/// Only generated code adds to it (through `__private`).
#[linkme::distributed_slice]
pub static ROUTES: [fn() -> Route];

/// The routes of every `#[subscribe]` handler linked into this binary,
/// sorted by handler name (so start-up is deterministic): what
/// `#[telestion::service]` serves, and what a test serves in-process.
///
/// ```no_run
/// # async fn example() -> Result<(), telestion::StartError> {
/// let service = telestion::Service::start(telestion::Options::new()).await?;
/// service.serve(telestion::collected_routes()).await
/// # }
/// ```
pub fn collected_routes() -> Vec<Route> {
    let mut routes: Vec<Route> = ROUTES.iter().map(|make| make()).collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    routes
}
