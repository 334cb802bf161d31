//! Every argument of both macros, and handlers in nested modules.
use telestion::subscribe;

#[subscribe("a.literal")]
async fn literal() {}

#[subscribe("a.*.wild.>", queue = false)]
async fn broadcast() {}

#[subscribe("a.queue", queue = "workers", concurrency = 8)]
async fn named_queue() {}

#[subscribe("a.default_queue", queue = true, concurrency = 1)]
async fn default_queue() {}

#[subscribe(config = "INPUT_SUBJECT")]
async fn from_config() {}

#[subscribe(concurrency = 2, config = "OTHER_SUBJECT", queue = false)]
async fn from_config_any_order() {}

#[subscribe(">", crate = "::telestion")]
async fn everything() {}

mod outer {
    pub(crate) mod inner {
        use telestion::{Json, subscribe};

        #[subscribe("n.inner")]
        pub(crate) async fn handler(Json(x): Json<u32>) -> Json<u32> {
            Json(x)
        }
    }

    #[telestion::subscribe("n.outer")]
    async fn private_handler() {}

    /// Same function name as in `inner`.
    #[telestion::subscribe("n.outer2")]
    pub async fn handler() {}
}

fn _use() {
    let _ = outer::inner::handler;
    let _ = outer::handler;
}

#[telestion::service(nats = true, crate = "::telestion")]
async fn main(this: telestion::Service) -> Result<(), std::convert::Infallible> {
    this.shutdown();
    Ok(())
}
