//! Every extractor kind as a parameter, in any order and with patterns.
use telestion::async_nats::Message;
use telestion::{Bytes, Headers, Json, ReplyTo, Service, State, Subject, TypedConfig, subscribe};

#[derive(serde::Deserialize)]
struct Point {
    x: i64,
}

#[derive(serde::Deserialize)]
struct Settings {
    greeting: String,
}

struct Counter(std::sync::atomic::AtomicU64);

#[subscribe("p.json")]
async fn json(Json(point): Json<Point>) {
    let _ = point.x;
}

#[subscribe("p.bytes")]
async fn bytes(body: Bytes, subject: Subject) {
    let _ = (body, subject);
}

#[subscribe("p.vec")]
async fn vec(headers: Headers, body: Vec<u8>) {
    let _ = (body, headers);
}

#[subscribe("p.string")]
async fn string(reply: ReplyTo, text: String, service: Service) {
    let _ = (reply, text, service);
}

#[subscribe("p.message")]
async fn message(message: Message) {
    let _ = message;
}

#[subscribe("p.parts")]
async fn parts(
    counter: State<Counter>,
    settings: TypedConfig<Settings>,
    Subject(subject): Subject,
    mut headers: Headers,
    ReplyTo(reply): ReplyTo,
    service: telestion::Service,
) {
    counter.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = (&settings.greeting, subject, &mut headers, reply, service);
}

#[subscribe("p.none")]
async fn none() {}

#[subscribe("p.twelve")]
async fn twelve(
    _a: Subject,
    _b: Headers,
    _c: ReplyTo,
    _d: Service,
    _e: Subject,
    _f: Headers,
    _g: ReplyTo,
    _h: Service,
    _i: Subject,
    _j: Headers,
    _k: ReplyTo,
    _l: Json<Point>,
) {
}

#[telestion::service]
async fn main(service: Service) {
    service.provide(Counter(Default::default()));
    service.shutdown();
}
