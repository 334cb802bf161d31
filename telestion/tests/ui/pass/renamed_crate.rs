//! `crate = "..."`: the telestion crate under another name. Cargo cannot
//! depend on the same package twice under two names, so the rename is an
//! `extern crate ... as ...` (the name is then in the extern prelude, like
//! a renamed dependency). That generated code names no `::telestion` path
//! when `crate` is given is checked by the macro crate's unit tests.
extern crate telestion as renamed_telestion;

use renamed_telestion::{Json, subscribe};

#[subscribe("renamed.double", crate = "renamed_telestion", concurrency = 2)]
async fn double(Json(x): Json<i64>) -> Json<i64> {
    Json(2 * x)
}

mod nested {
    #[renamed_telestion::subscribe(config = "KEY", crate = "::renamed_telestion")]
    async fn from_config(_: renamed_telestion::Subject) {}
}

#[renamed_telestion::service(crate = "renamed_telestion")]
async fn main(service: renamed_telestion::Service) {
    let _ = service.name();
    service.shutdown();
}
