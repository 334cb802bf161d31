use telestion::subscribe;

#[subscribe("a.b")]
fn text(body: &str) {
    let _ = body;
}

#[telestion::service]
async fn main() {}
