use telestion::subscribe;

#[subscribe("a.b")]
async fn handler() -> u32 {
    42
}

#[telestion::service]
async fn main() {}
