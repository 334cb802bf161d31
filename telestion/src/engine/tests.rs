//! The engine without a server: the call step, delivery through a
//! recording sink, recording, and batch settlement, for each kind of
//! outcome (replies, errors with their codes, panics, rejections by
//! built-in and user extractors, replies too large to send).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

use super::RouteInfo;
use super::batch::{BatchCall, settle_core_batch};
use super::call::call_handler;
use super::deliver::{Sink, deliver};
use super::outcome::{Cause, Failure, Outcome, record};
use crate::config::Config;
use crate::error::{BoxError, ExtractError, ServiceError};
use crate::handler::Handler;
use crate::handler::error::HandlerError;
use crate::handler::extract::{FromMessage, Incoming, Json};
use crate::handler::reply::Reply;
use crate::observe::error_counter::ErrorCounter;
use crate::observe::error_log::ErrorLog;
use crate::observe::stats::Stopwatch;
use crate::observe::stats::{HandlerStats, RouteKind};
use crate::service::{Options, Service};

/// What the engine sent.
#[derive(Default)]
struct Recorded {
    sent: Mutex<Vec<(String, Option<HeaderMap>, Bytes)>>,
    max_payload: usize,
}

impl Sink for Recorded {
    async fn send(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
    ) -> Result<(), ServiceError> {
        if payload.len() > self.max_payload {
            return Err(ServiceError::Publish {
                subject,
                source: async_nats::client::PublishError::new(
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded,
                ),
            });
        }
        self.sent.lock().unwrap().push((subject, headers, payload));
        Ok(())
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }
}

impl Recorded {
    fn new() -> Recorded {
        Recorded {
            sent: Mutex::default(),
            max_payload: 1 << 20,
        }
    }

    fn sent(&self) -> Vec<(String, Option<HeaderMap>, Bytes)> {
        self.sent.lock().unwrap().clone()
    }
}

fn info(publish: &[&str]) -> RouteInfo {
    let name: Arc<str> = "handler".into();
    RouteInfo {
        name: name.clone(),
        service: "svc".into(),
        subject: "a.b".into(),
        concurrency: 1,
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        stats: Arc::new(HandlerStats::new(
            name,
            "a.b".into(),
            None,
            RouteKind::Subscription,
            Vec::new(),
            None,
        )),
        log: ErrorLog::default(),
        errors: Arc::new(ErrorCounter::new(Duration::from_secs(60))),
    }
}

/// A service without NATS: what extractors need.
async fn service() -> Service {
    let config = Config::from_pairs([
        ("NATS_URL", "localhost:1"),
        ("SERVICE_NAME", "engine-test"),
        ("DATA_DIR", "/tmp"),
    ]);
    Service::start(Options::new().nats(false).signals(false).config(config))
        .await
        .unwrap()
}

fn message(subject: &str, body: &str, reply: Option<&str>) -> async_nats::Message {
    async_nats::Message {
        subject: subject.into(),
        reply: reply.map(Subject::from),
        payload: Bytes::from(body.to_owned()),
        headers: None,
        status: None,
        description: None,
        length: 0,
    }
}

async fn outcome_of<H: Handler<Args>, Args: 'static>(handler: H, body: &str) -> Outcome {
    let service = service().await;
    let context = H::prepare(&service).unwrap();
    let mut incoming = Incoming::new(message("a.b", body, None), service);
    call_handler(&handler, &context, &mut incoming).await
}

async fn double(Json(x): Json<i64>) -> Json<i64> {
    Json(2 * x)
}

async fn not_found(Json(_): Json<i64>) -> Result<(), HandlerError> {
    Err(HandlerError::client("no such item").with_code(404))
}

async fn broken() -> Result<(), String> {
    Err("disk full".into())
}

async fn panics() {
    panic!("boom")
}

/// An extractor that rejects every message with code 401.
struct Token;

impl FromMessage for Token {
    type Context = ();
    fn prepare(_: &Service) -> Result<(), BoxError> {
        Ok(())
    }
    fn from_message(_: &mut Incoming, _: &()) -> Result<Self, ExtractError> {
        Err(ExtractError::reject(401, "no token"))
    }
}

async fn guarded(_: Token) {}

#[tokio::test]
async fn the_call_step_gives_one_outcome_per_kind_of_result() {
    match outcome_of(double, "21").await {
        Outcome::Done(Reply::Body { payload, .. }) => assert_eq!(&payload[..], b"42"),
        other => panic!("{other:?}"),
    }
    let failed = |outcome: Outcome| outcome.failure().cloned().unwrap();
    let not_found = failed(outcome_of(not_found, "1").await);
    assert_eq!((not_found.code, not_found.cause), (404, Cause::Error));
    assert_eq!(not_found.message, "no such item");
    let broken = failed(outcome_of(broken, "").await);
    assert_eq!((broken.code, broken.cause), (500, Cause::Error));
    let panicked = failed(outcome_of(panics, "").await);
    assert_eq!((panicked.code, panicked.cause), (500, Cause::Panic));
    assert!(panicked.message.contains("boom"), "{}", panicked.message);
    let rejected = failed(outcome_of(double, "not json").await);
    assert_eq!((rejected.code, rejected.cause), (400, Cause::Rejected));
    assert!(
        rejected
            .message
            .starts_with("cannot handle the message: invalid JSON body")
    );
    let unauthorized = failed(outcome_of(guarded, "").await);
    assert_eq!(
        (unauthorized.code, unauthorized.cause),
        (401, Cause::Rejected)
    );
    assert!(
        unauthorized.message.ends_with("no token"),
        "{}",
        unauthorized.message
    );
}

#[tokio::test]
async fn a_reply_goes_to_the_requester_and_the_publish_targets() {
    let sink = Recorded::new();
    let info = info(&["out.a", "out.b"]);
    let reply = Reply::Body {
        payload: Bytes::from_static(b"42"),
        headers: None,
    };
    let inbox = Subject::from("_INBOX.1");
    let outcome = deliver(&sink, &info, Outcome::Done(reply), Some(&inbox), "a.b").await;
    assert!(outcome.failure().is_none());
    let subjects: Vec<String> = sink.sent().into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(subjects, ["out.a", "out.b", "_INBOX.1"]);

    // `None` of an `Option`: an empty reply, nothing published.
    let sink = Recorded::new();
    deliver(
        &sink,
        &info,
        Outcome::Done(Reply::Empty),
        Some(&inbox),
        "a.b",
    )
    .await;
    let sent = sink.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.as_str(), sent[0].2.len()), ("_INBOX.1", 0));
}

#[tokio::test]
async fn a_failure_is_answered_in_the_micro_convention() {
    let sink = Recorded::new();
    let info = info(&["out.a"]);
    let failure = Failure::new(404, "no such item", Cause::Error);
    let inbox = Subject::from("_INBOX.2");
    let outcome = deliver(&sink, &info, Outcome::Failed(failure), Some(&inbox), "a.b").await;
    assert_eq!(outcome.failure().map(|f| f.code), Some(404));
    let sent = sink.sent();
    assert_eq!(sent.len(), 1, "a failure is not published");
    let (subject, headers, body) = &sent[0];
    assert_eq!(subject, "_INBOX.2");
    let headers = headers.as_ref().unwrap();
    assert_eq!(
        headers.get("Nats-Service-Error").unwrap().as_str(),
        "no such item"
    );
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "404"
    );
    assert_eq!(&body[..], br#"{"error":"no such item"}"#);
}

#[tokio::test]
async fn a_reply_too_large_becomes_an_error_reply() {
    let sink = Recorded {
        max_payload: 1000,
        ..Recorded::new()
    };
    let info = info(&[]);
    let reply = Reply::Body {
        payload: Bytes::from(vec![b'x'; 2000]),
        headers: None,
    };
    let inbox = Subject::from("_INBOX.3");
    let outcome = deliver(&sink, &info, Outcome::Done(reply), Some(&inbox), "a.b").await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.code, 500);
    assert!(
        failure.message.contains("2000 bytes"),
        "{}",
        failure.message
    );
    let sent = sink.sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .1
            .as_ref()
            .unwrap()
            .get("Nats-Service-Error-Code")
            .is_some()
    );
}

#[tokio::test]
async fn recording_counts_calls_and_failures() {
    let info = info(&[]);
    record(
        &info,
        &Outcome::Done(Reply::None),
        1,
        Stopwatch::started(),
        "a.b",
    );
    let failure = Failure::new(503, "database gone", Cause::Error);
    record(
        &info,
        &Outcome::Failed(failure),
        3,
        Stopwatch::started(),
        "a.b",
    );
    let snapshot = info.stats.snapshot();
    assert_eq!((snapshot.messages, snapshot.errors), (4, 3));
    assert_eq!(snapshot.last_error, "database gone");
    assert_eq!(info.errors.total(), 3);
}

#[tokio::test]
async fn a_batch_settles_rejected_messages_alone() {
    let sink = Recorded::new();
    let info = info(&["out.batch"]);
    let messages = [
        message("b.1", "1", Some("_INBOX.a")),
        message("b.2", "x", Some("_INBOX.b")),
        message("b.3", "3", None),
    ];
    let call = BatchCall {
        outcome: Outcome::Done(Reply::Body {
            payload: Bytes::from_static(b"stored"),
            headers: None,
        }),
        rejected: vec![(1, Failure::new(400, "invalid JSON body", Cause::Rejected))],
        elapsed: Duration::from_micros(10),
    };
    settle_core_batch(&sink, &info, &messages, call).await;
    let sent = sink.sent();
    let to = |subject: &str| sent.iter().filter(|(s, _, _)| s == subject).count();
    assert_eq!(to("out.batch"), 1, "published once");
    assert_eq!(to("_INBOX.a"), 1);
    let rejected: Vec<_> = sent.iter().filter(|(s, _, _)| s == "_INBOX.b").collect();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]
            .1
            .as_ref()
            .unwrap()
            .get("Nats-Service-Error-Code")
            .is_some()
    );
    let snapshot = info.stats.snapshot();
    assert_eq!((snapshot.messages, snapshot.errors), (3, 1));

    // A failing call: every message the handler took is answered with the
    // error and counted.
    let sink = Recorded::new();
    let info = self::info(&["out.batch"]);
    let call = BatchCall {
        outcome: Outcome::Failed(Failure::new(500, "store failed", Cause::Error)),
        rejected: Vec::new(),
        elapsed: Duration::from_micros(10),
    };
    settle_core_batch(&sink, &info, &messages, call).await;
    let sent = sink.sent();
    assert_eq!(sent.len(), 2, "two of the three are requests");
    assert!(sent.iter().all(|(_, headers, _)| headers.is_some()));
    assert_eq!(info.stats.snapshot().errors, 3);
    assert_eq!(info.errors.total(), 3);
}
