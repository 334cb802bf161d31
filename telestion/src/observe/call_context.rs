//! The context of a handler call: the service, the handler, the message's
//! subject (and, for a durable message, its stream sequence and delivery
//! count). While a call runs, every log line written on its thread carries
//! them (text: ` service=… handler=… subject=…` at the end of the line; JSON:
//! a `"span"` object, as `tracing`'s JSON format shows a span), and the
//! panic hook names the handler.
//!
//! Why not a `tracing` span per call: with the usual `fmt` subscriber a span
//! costs about 600 ns per message (its fields are formatted into a string
//! when it is created), more than the whole framework may add to a message.
//! The context is a pointer in a thread-local, set and reset around each
//! poll of the call: a few instructions, and nothing is formatted unless a
//! line is logged.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What a call is about. One per route loop (reused for each message it
/// handles in place) or per call task: it is never used by two tasks at
/// once.
#[derive(Debug)]
pub(crate) struct CallContext {
    service: Arc<str>,
    handler: Arc<str>,
    /// The subject of the message being handled ("" between calls).
    subject: RefCell<String>,
    /// Whether a call runs.
    calling: Cell<bool>,
    /// Stream sequence and delivery count of a durable message.
    durable: Cell<Option<(u64, u64)>>,
}

// SAFETY: a context is used by one task at a time (see the type's doc), so
// its cells are never touched from two threads at once; the thread-local
// pointer to it is set only while that task polls.
unsafe impl Sync for CallContext {}

thread_local! {
    static CURRENT: Cell<*const CallContext> = const { Cell::new(std::ptr::null()) };
}

impl CallContext {
    /// The context of calls of `handler` in `service`.
    pub(crate) fn new(service: Arc<str>, handler: Arc<str>) -> CallContext {
        CallContext {
            service,
            handler,
            subject: RefCell::new(String::new()),
            calling: Cell::new(false),
            durable: Cell::new(None),
        }
    }

    /// A call on a message on `subject` begins (with its stream sequence
    /// and delivery count when durable).
    pub(crate) fn begin(&self, subject: &str, durable: Option<(u64, u64)>) {
        if let Ok(mut current) = self.subject.try_borrow_mut() {
            current.clear();
            current.push_str(subject);
        }
        self.durable.set(durable);
        self.calling.set(true);
    }

    /// The call ended.
    pub(crate) fn end(&self) {
        self.calling.set(false);
        self.durable.set(None);
    }

    /// Runs `future` with this context current on its thread while it is
    /// polled.
    pub(crate) fn scope<F: Future>(&self, future: F) -> InContext<'_, F> {
        InContext {
            future,
            context: self,
        }
    }

    /// Runs `work` (code on this thread) with this context current.
    pub(crate) fn enter<R>(&self, work: impl FnOnce() -> R) -> R {
        let _current = Current::set(self);
        work()
    }
}

/// A copy of the running call's context for another thread (a blocking
/// handler runs on the blocking pool).
#[derive(Debug)]
pub(crate) struct Detached(CallContext);

impl Detached {
    /// Runs `work` with the copied context current on this thread.
    pub(crate) fn run<R>(&self, work: impl FnOnce() -> R) -> R {
        self.0.enter(work)
    }
}

/// A copy of the running call's context, if a call runs on this thread.
pub(crate) fn detach_current() -> Option<Detached> {
    with_current(|context| {
        let copy = CallContext::new(context.service.clone(), context.handler.clone());
        if context.calling.get() {
            copy.begin(&context.subject.borrow(), context.durable.get());
        }
        Detached(copy)
    })
}

/// Makes a context current on this thread until dropped (then the one
/// before is current again).
struct Current(*const CallContext);

impl Current {
    fn set(context: &CallContext) -> Current {
        Current(CURRENT.with(|current| current.replace(context as *const CallContext)))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

pin_project_lite::pin_project! {
    /// A future polled with a call context current.
    pub(crate) struct InContext<'a, F> {
        #[pin]
        future: F,
        context: &'a CallContext,
    }
}

impl<F: Future> Future for InContext<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = Current::set(this.context);
        this.future.poll(cx)
    }
}

/// Calls `with` with the current call's context, if a call runs on this
/// thread.
fn with_current<R>(with: impl FnOnce(&CallContext) -> R) -> Option<R> {
    let current = CURRENT.try_with(Cell::get).ok()?;
    // SAFETY: the pointer is set only while the context it points to is
    // borrowed by a live `Current` guard on this thread.
    (!current.is_null()).then(|| with(unsafe { &*current }))
}

/// The running handler's name (for the panic hook).
pub(crate) fn current_handler() -> Option<String> {
    with_current(|context| context.handler.to_string())
}

/// The call's fields as `key=value` pairs for a text log line, or as a JSON
/// object, if a call runs on this thread.
pub(crate) fn current_fields(json: bool) -> Option<String> {
    with_current(|context| {
        let mut fields: Vec<(&str, serde_json::Value)> = vec![
            ("service", context.service.as_ref().into()),
            ("handler", context.handler.as_ref().into()),
        ];
        if context.calling.get()
            && let Ok(subject) = context.subject.try_borrow()
        {
            fields.push(("subject", subject.as_str().into()));
        }
        if let Some((sequence, delivery)) = context.durable.get() {
            fields.push(("stream_sequence", sequence.into()));
            fields.push(("delivery", delivery.into()));
        }
        if json {
            let mut object = serde_json::Map::new();
            object.insert("name".into(), "handler".into());
            object.extend(
                fields
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value)),
            );
            return serde_json::Value::Object(object).to_string();
        }
        let mut text = String::new();
        for (key, value) in fields {
            match value {
                serde_json::Value::String(value) => {
                    let _ = write!(text, " {key}={value}");
                }
                value => {
                    let _ = write!(text, " {key}={value}");
                }
            }
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(handler: &str) -> CallContext {
        CallContext::new("svc".into(), handler.into())
    }

    #[test]
    fn fields_only_inside_a_call() {
        assert_eq!(current_fields(false), None);
        let context = context("store");
        context.enter(|| {
            assert_eq!(
                current_fields(false).as_deref(),
                Some(" service=svc handler=store")
            );
            context.begin("telemetry.parsed", Some((42, 2)));
            assert_eq!(
                current_fields(false).as_deref(),
                Some(
                    " service=svc handler=store subject=telemetry.parsed stream_sequence=42 \
                     delivery=2"
                )
            );
            let json: serde_json::Value =
                serde_json::from_str(&current_fields(true).unwrap()).unwrap();
            assert_eq!(json["handler"], "store");
            assert_eq!(json["subject"], "telemetry.parsed");
            assert_eq!(json["stream_sequence"], 42);
            context.end();
            assert_eq!(
                current_fields(false).as_deref(),
                Some(" service=svc handler=store")
            );
        });
        assert_eq!(current_handler(), None);
    }

    #[test]
    fn a_detached_copy_carries_the_call_to_another_thread() {
        let context = context("blocking");
        let detached = context.enter(|| {
            context.begin("files.compress", None);
            detach_current().unwrap()
        });
        let fields = std::thread::spawn(move || detached.run(|| current_fields(false)))
            .join()
            .unwrap();
        assert_eq!(
            fields.as_deref(),
            Some(" service=svc handler=blocking subject=files.compress")
        );
    }

    #[test]
    fn a_future_sees_its_context_only_while_polled() {
        let context = context("poll");
        let mut future = std::pin::pin!(context.scope(async { current_handler() }));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(
            future.as_mut().poll(&mut cx),
            Poll::Ready(Some("poll".into()))
        );
        assert_eq!(current_handler(), None);
    }
}
