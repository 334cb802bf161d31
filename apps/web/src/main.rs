//! placeholder
#[telestion::service]
async fn main() {}
