use telestion::subscribe;

#[subscribe("a.b")]
fn handler() {}

#[telestion::service]
async fn main() {}
