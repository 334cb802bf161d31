//! A route's handler with its argument types erased, and the one place
//! where a route's kind becomes the engine loop that runs it: the typed
//! handler knows its types, the [`Plan`] knows the kind.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use tokio::task::JoinHandle;

use crate::engine::RouteInfo;
use crate::engine::batch::BatchSpec;
use crate::error::BoxError;
use crate::handler::Handler;
use crate::jetstream::consumer::DurableRoute;
use crate::service::Service;

/// How a prepared handler runs: the kind of its route, with what it needs
/// from the server (a subscription, a durable consumer).
pub(crate) enum Plan {
    /// A core subscription, one message per call.
    Core(Subscriber, Arc<RouteInfo>),
    /// A core subscription, one batch per call.
    Batch(Subscriber, Arc<RouteInfo>, BatchSpec),
    /// A durable consumer (one message or one batch per call).
    Durable(Arc<DurableRoute>),
    /// A timer with this period.
    Timer(Duration, Arc<RouteInfo>),
    /// A task.
    Task(Arc<RouteInfo>),
}

/// A handler whose extractors are resolved for one service.
pub(crate) trait PreparedHandler: Send {
    /// Starts the engine loop of `plan` for this handler.
    fn spawn(self: Box<Self>, service: Service, plan: Plan) -> JoinHandle<()>;
}

/// A handler with its argument types erased.
pub(crate) trait ErasedHandler: Send + Sync {
    /// Resolves the extractors' context for `service`.
    fn prepare(&self, service: &Service) -> Result<Box<dyn PreparedHandler>, BoxError>;
    /// The config keys its extractors read.
    fn config_keys(&self) -> Vec<String>;
    /// Whether it takes a `Batch<T>`.
    fn takes_batch(&self) -> bool;
}

/// A handler with its argument types.
pub(crate) struct TypedHandler<H, Args> {
    pub(crate) handler: H,
    pub(crate) _args: PhantomData<fn() -> Args>,
}

struct Prepared<H: Handler<Args>, Args> {
    handler: H,
    context: Arc<H::Context>,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> ErasedHandler for TypedHandler<H, Args>
where
    H: Handler<Args>,
    Args: 'static,
{
    fn prepare(&self, service: &Service) -> Result<Box<dyn PreparedHandler>, BoxError> {
        Ok(Box::new(Prepared::<H, Args> {
            handler: self.handler.clone(),
            context: Arc::new(H::prepare(service)?),
            _args: PhantomData,
        }))
    }

    fn config_keys(&self) -> Vec<String> {
        H::config_keys()
    }

    fn takes_batch(&self) -> bool {
        H::takes_batch()
    }
}

impl<H, Args> PreparedHandler for Prepared<H, Args>
where
    H: Handler<Args>,
    Args: 'static,
{
    fn spawn(self: Box<Self>, service: Service, plan: Plan) -> JoinHandle<()> {
        use crate::engine::{batch, core, task, timer};
        use crate::jetstream::durable;
        let Prepared {
            handler, context, ..
        } = *self;
        match plan {
            Plan::Core(subscriber, info) => tokio::spawn(core::run::<H, Args>(
                handler, context, service, subscriber, info,
            )),
            Plan::Batch(subscriber, info, spec) => tokio::spawn(batch::run::<H, Args>(
                handler, context, service, subscriber, info, spec,
            )),
            Plan::Durable(route) => {
                tokio::spawn(durable::run::<H, Args>(handler, context, service, route))
            }
            Plan::Timer(period, info) => tokio::spawn(timer::run::<H, Args>(
                handler, context, service, period, info,
            )),
            Plan::Task(info) => tokio::spawn(task::run::<H, Args>(handler, context, service, info)),
        }
    }
}
