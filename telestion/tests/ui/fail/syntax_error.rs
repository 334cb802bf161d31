use telestion::subscribe;

#[subscribe("a.b")]
async fn in_body(text: String) {
    let length = text.len() +;
    let _ = length;
}

#[subscribe("a.c")]
async fn in_signature(text: ) {}

#[telestion::service]
async fn main() {}
