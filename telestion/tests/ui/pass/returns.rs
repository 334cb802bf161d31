//! Every return kind of a handler, and of `main`.
use telestion::{Bytes, Json, subscribe};

#[derive(serde::Serialize)]
struct Point {
    x: i64,
}

#[derive(Debug)]
struct MyError;

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

type Reply = Result<Json<Point>, MyError>;

#[subscribe("r.unit")]
async fn unit() {}

#[subscribe("r.unit_explicit")]
async fn unit_explicit() -> () {}

#[subscribe("r.json")]
async fn json() -> Json<Point> {
    Json(Point { x: 1 })
}

#[subscribe("r.bytes")]
async fn bytes() -> Bytes {
    Bytes::from_static(b"x")
}

#[subscribe("r.vec")]
async fn vec() -> Vec<u8> {
    vec![1]
}

#[subscribe("r.string")]
async fn string() -> String {
    "x".into()
}

#[subscribe("r.str")]
async fn str() -> &'static str {
    "x"
}

#[subscribe("r.option")]
async fn option() -> Option<Json<Point>> {
    None
}

#[subscribe("r.result_unit")]
async fn result_unit() -> Result<(), String> {
    Ok(())
}

#[subscribe("r.result")]
async fn result() -> Result<String, MyError> {
    Err(MyError)
}

#[subscribe("r.result_option")]
async fn result_option() -> Result<Option<Bytes>, std::io::Error> {
    Ok(None)
}

#[subscribe("r.alias")]
async fn alias() -> Reply {
    Ok(Json(Point { x: 2 }))
}

#[subscribe("r.reply")]
async fn reply() -> telestion::Reply {
    telestion::Reply::None
}

#[subscribe("r.opaque")]
async fn opaque() -> impl telestion::IntoReply {
    "x"
}

#[telestion::service]
async fn main(service: telestion::Service) -> Result<(), Box<dyn std::error::Error>> {
    let _: u32 = "1".parse()?;
    service.shutdown();
    Ok(())
}
