use telestion::subscribe;

#[subscribe("cmd.>", durable, queue = false)]
async fn with_queue(_body: String) {}

#[subscribe("cmd.>", stream = "COMMANDS")]
async fn stream_without_durable(_body: String) {}

#[subscribe("cmd.>", durable = "a.b")]
async fn dotted_consumer(_body: String) {}

#[subscribe("cmd.>", durable = 3)]
async fn numeric(_body: String) {}

#[subscribe("cmd.>", durable, durable)]
async fn twice(_body: String) {}

#[subscribe("cmd.>", stream = "A B", durable)]
async fn spaced_stream(_body: String) {}

fn main() {}
