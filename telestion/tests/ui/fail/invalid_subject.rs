use telestion::subscribe;

#[subscribe("")]
async fn empty() {}

#[subscribe("sensors temperature")]
async fn whitespace() {}

#[subscribe("sensors..temperature")]
async fn empty_token() {}

#[subscribe("sensors.>.temperature")]
async fn wildcard_not_last() {}

#[telestion::service]
async fn main() {}
