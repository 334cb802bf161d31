use telestion::subscribe;

#[subscribe("a.b")]
async fn text(body: &str) {
    let _ = body;
}

#[subscribe("a.c")]
async fn opaque(body: impl telestion::FromMessage) {
    let _ = body;
}

#[telestion::service]
async fn main() {}
