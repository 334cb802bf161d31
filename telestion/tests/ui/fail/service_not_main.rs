#[telestion::service]
async fn start() {}
