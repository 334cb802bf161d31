//! Routes and the dispatch engine: one task per subscription, messages in
//! arrival order (or up to N at once), panics caught, every failure counted,
//! logged and answered.

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use async_nats::{HeaderMap, Subscriber};
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::ExtractError;
use crate::extract::Incoming;
use crate::handler::{Handler, IntoReply, Reply};
use crate::service::Service;

/// Where a route's subject comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectSource {
    /// A fixed subject.
    Literal(String),
    /// The value of this config key, resolved at start.
    ConfigKey(String),
}

/// Which queue group a route subscribes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueGroup {
    /// `SERVICE_NAME`: instances of the service share the messages (default).
    ServiceName,
    /// No queue group: every instance receives every message.
    Broadcast,
    /// A queue group of this name.
    Named(String),
}

/// A handler and how to subscribe it. Built by `#[subscribe]`, or by hand:
///
/// ```no_run
/// use telestion::{Json, Route};
///
/// async fn double(Json(x): Json<i64>) -> Json<i64> {
///     Json(2 * x)
/// }
///
/// let route = Route::new("math.double", double).concurrency(4);
/// let from_config = Route::from_config("INPUT_SUBJECT", double).broadcast();
/// # let _ = (route, from_config);
/// ```
#[derive(Clone)]
pub struct Route {
    pub(crate) subject: SubjectSource,
    pub(crate) queue: QueueGroup,
    pub(crate) concurrency: usize,
    pub(crate) name: String,
    pub(crate) handler: Arc<dyn ErasedHandler>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Route {
    /// A route for `handler` on a fixed subject (wildcards `*` and `>`
    /// allowed), in the `SERVICE_NAME` queue group, one message at a time.
    /// The subject is validated when the route is subscribed.
    pub fn new<H, Args>(subject: impl Into<String>, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route::with_source(SubjectSource::Literal(subject.into()), handler)
    }

    /// A route whose subject is the value of config key `key`, resolved at
    /// start (a missing key fails the start, naming it).
    pub fn from_config<H, Args>(key: impl Into<String>, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route::with_source(SubjectSource::ConfigKey(key.into()), handler)
    }

    fn with_source<H, Args>(subject: SubjectSource, handler: H) -> Route
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route {
            subject,
            queue: QueueGroup::ServiceName,
            concurrency: 1,
            name: short_type_name::<H>(),
            handler: Arc::new(TypedHandler {
                handler,
                _args: PhantomData::<fn() -> Args>,
            }),
        }
    }

    /// Subscribe outside any queue group: every instance gets every message.
    pub fn broadcast(mut self) -> Route {
        self.queue = QueueGroup::Broadcast;
        self
    }

    /// Subscribe in the queue group `name` instead of `SERVICE_NAME`.
    pub fn queue_group(mut self, name: impl Into<String>) -> Route {
        self.queue = QueueGroup::Named(name.into());
        self
    }

    /// Sets the queue group choice.
    pub fn queue(mut self, queue: QueueGroup) -> Route {
        self.queue = queue;
        self
    }

    /// Handle up to `n` messages at once (default 1: one at a time, in
    /// arrival order). With `n > 1` order is not kept.
    pub fn concurrency(mut self, n: usize) -> Route {
        self.concurrency = n.max(1);
        self
    }

    /// The handler's name in logs and errors (default: the function's path).
    pub fn name(mut self, name: impl Into<String>) -> Route {
        self.name = name.into();
        self
    }

    /// The handler's name.
    pub fn handler_name(&self) -> &str {
        &self.name
    }

    /// Where the subject comes from.
    pub fn subject_source(&self) -> &SubjectSource {
        &self.subject
    }

    /// The queue group choice.
    pub fn queue_choice(&self) -> &QueueGroup {
        &self.queue
    }

    /// The concurrency limit.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency
    }
}

fn short_type_name<H>() -> String {
    let full = type_name::<H>();
    full.split_once("::")
        .map(|(_, rest)| rest)
        .unwrap_or(full)
        .to_owned()
}

/// Checks a subject for subscribing: not empty, no whitespace, no empty
/// token, `>` only as the last token.
pub fn validate_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.chars().any(char::is_whitespace) {
        return Err(format!("the subject `{subject}` contains whitespace"));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Err(format!(
            "the subject `{subject}` has an empty token (leading, trailing or double `.`)"
        ));
    }
    if let Some(pos) = tokens.iter().position(|t| *t == ">")
        && pos + 1 != tokens.len()
    {
        return Err(format!(
            "in the subject `{subject}`, `>` must be the last token"
        ));
    }
    Ok(())
}

/// What the dispatch engine knows about a running route.
#[derive(Debug)]
pub(crate) struct RouteInfo {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) concurrency: usize,
}

pub(crate) trait ErasedHandler: Send + Sync {
    fn check(&self, service: &Service) -> Result<(), String>;
    fn spawn(&self, service: Service, subscriber: Subscriber, info: RouteInfo) -> JoinHandle<()>;
}

struct TypedHandler<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> ErasedHandler for TypedHandler<H, Args>
where
    H: Handler<Args>,
    Args: 'static,
{
    fn check(&self, service: &Service) -> Result<(), String> {
        H::check(service)
    }

    fn spawn(&self, service: Service, subscriber: Subscriber, info: RouteInfo) -> JoinHandle<()> {
        tokio::spawn(run_route::<H, Args>(
            self.handler.clone(),
            service,
            subscriber,
            Arc::new(info),
        ))
    }
}

async fn run_route<H, Args>(
    handler: H,
    mut service: Service,
    mut subscriber: Subscriber,
    info: Arc<RouteInfo>,
) where
    H: Handler<Args>,
    Args: 'static,
{
    let mut stop = service.stop_receiver();
    if *stop.borrow() {
        // Shutdown began before this route started: let the hot path see it.
        stop.mark_changed();
    }
    // One stop future for the route's life (not one per message); polled
    // only when no message is waiting.
    let stop_signal = service.stopped();
    tokio::pin!(stop_signal);
    let permits = (info.concurrency > 1).then(|| Arc::new(Semaphore::new(info.concurrency)));
    let mut draining = false;
    loop {
        let message = if draining {
            subscriber.next().await
        } else {
            // Hot path: a message already waiting is taken at once; under a
            // constant backlog the stop signal costs one atomic load.
            let stopping = stop.has_changed().unwrap_or(true) && *stop.borrow_and_update();
            let next = if stopping {
                None
            } else {
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(message) = subscriber.poll_next_unpin(cx) {
                        return Poll::Ready(Some(message));
                    }
                    stop_signal.as_mut().poll(cx).map(|()| None)
                })
                .await
            };
            match next {
                Some(message) => message,
                None => {
                    draining = true;
                    // UNSUB + PING: the server stops sending; what it already
                    // sent is still delivered to the stream, which then ends.
                    if let Err(e) = subscriber.drain().await {
                        tracing::warn!(handler = %info.name, error = %e, "cannot drain subscription");
                        break;
                    }
                    continue;
                }
            }
        };
        let Some(message) = message else { break };
        match &permits {
            // The service handle moves into the message and back: no
            // reference count traffic per message.
            None => service = handle_message(&handler, Incoming { message, service }, &info).await,
            Some(permits) => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let handler = handler.clone();
                let service = service.clone();
                let info = info.clone();
                tokio::spawn(async move {
                    handle_message(&handler, Incoming { message, service }, &info).await;
                    drop(permit);
                });
            }
        }
    }
    if let Some(permits) = permits {
        // Wait for every in-flight message of this route.
        let _ = permits.acquire_many(info.concurrency as u32).await;
    }
    tracing::debug!(handler = %info.name, subject = %info.subject, "route stopped");
}

/// Handles one message: extract, call, catch panics, reply, count errors.
/// Gives the service handle back.
async fn handle_message<H, Args>(handler: &H, incoming: Incoming, info: &RouteInfo) -> Service
where
    H: Handler<Args>,
    Args: 'static,
{
    let mut incoming = incoming;
    let outcome = AssertUnwindSafe(async {
        match handler.call(&mut incoming) {
            Ok(future) => Ok(future.await.into_reply()),
            Err(e) => Err(e),
        }
    })
    .catch_unwind()
    .await;
    let Incoming { message, service } = incoming;
    if !matches!(outcome, Ok(Ok(Reply::None))) {
        let async_nats::Message {
            subject,
            reply: reply_to,
            ..
        } = message;
        respond(&service, outcome, subject, reply_to, info).await;
    }
    service
}

/// What a handler's outcome means: send the reply, or count, log and answer
/// the error.
async fn respond(
    service: &Service,
    outcome: std::thread::Result<Result<Reply, ExtractError>>,
    subject: async_nats::Subject,
    reply_to: Option<async_nats::Subject>,
    info: &RouteInfo,
) {
    let (error, code) = match outcome {
        Ok(Ok(Reply::None)) => return,
        Ok(Ok(Reply::Body { payload, headers })) => {
            if let Some(reply_to) = reply_to {
                let sent = match headers {
                    Some(headers) => {
                        service
                            .publish_with_headers(reply_to.to_string(), headers, payload)
                            .await
                    }
                    None => service.publish(reply_to.to_string(), payload).await,
                };
                if let Err(e) = sent {
                    tracing::error!(handler = %info.name, %subject, error = %e, "cannot send reply");
                }
            }
            return;
        }
        Ok(Ok(Reply::Error(error))) => (error, 500),
        Ok(Err(error)) => (format!("cannot handle the message: {error}"), 400),
        Err(panic) => (format!("handler panicked: {}", panic_message(&*panic)), 500),
    };
    service.record_error();
    tracing::error!(handler = %info.name, %subject, %error, "handler failed");
    if let Some(reply_to) = reply_to {
        send_error_reply(service, reply_to.to_string(), &error, code).await;
    }
}

/// Sends an error reply in the NATS micro-service convention.
pub(crate) async fn send_error_reply(service: &Service, reply_to: String, error: &str, code: u16) {
    let mut headers = HeaderMap::new();
    // Header values cannot hold line breaks.
    let one_line: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert("Nats-Service-Error", one_line.as_str());
    headers.insert("Nats-Service-Error-Code", code.to_string().as_str());
    let body = serde_json::json!({ "error": error }).to_string();
    if let Err(e) = service.publish_with_headers(reply_to, headers, body).await {
        tracing::error!(error = %e, "cannot send error reply");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for ok in ["a", "a.b", "a.*", "a.>", ">", "__telestion__/health", "*.x"] {
            assert!(validate_subject(ok).is_ok(), "{ok}");
        }
        for bad in ["", " a", "a b", "a..b", ".a", "a.", "a.>.b", ">.a"] {
            assert!(validate_subject(bad).is_err(), "{bad}");
        }
    }
}
