//! User code shadows names that generated code could trip over.
#![allow(dead_code, non_camel_case_types, unused_macros)]

use telestion::{Json, subscribe};

struct Result;
struct Option;
struct Vec;
struct String;
struct Box;
struct Route;
struct Service;
struct ExitCode;
struct Ok;
struct Err;
struct Some;
struct None;
mod core {}
mod std {}
mod telestion_ {}
mod linkme {}
mod tokio {}
macro_rules! concat {
    () => {};
}
macro_rules! module_path {
    () => {};
}
macro_rules! panic {
    () => {};
}
fn __telestion_main() {}
static __TELESTION_ROUTE: u8 = 0;

#[subscribe("s.shadowed")]
async fn handler(Json(x): Json<u8>, _text: telestion::Subject) -> Json<u8> {
    Json(x)
}

#[subscribe("s.route")]
async fn route() {}

#[subscribe("s.main")]
async fn main_like(_a: telestion::Headers, _b: telestion::Bytes) {}

#[telestion::service]
async fn main(service: telestion::Service) -> ::core::result::Result<(), ::std::string::String> {
    service.shutdown();
    ::core::result::Result::Ok(())
}
