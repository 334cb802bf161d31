use telestion::subscribe;

// Parameters and return type are fine, but the future is not `Send`: still
// reported (by `Route::new`).
#[subscribe("a.b")]
async fn handler() {
    let counter = std::rc::Rc::new(1);
    std::future::ready(()).await;
    let _ = counter;
}

#[telestion::service]
async fn main() {}
