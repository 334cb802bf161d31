//! Helpers shared by the IO service's tests.

use std::time::Duration;

use serde_json::Value;
use telestion_test::next_message;

/// The health reply of the instance of service `name`.
pub async fn health_of(client: &async_nats::Client, name: &str) -> Value {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(telestion::health::SUBJECT, inbox, "".into())
        .await
        .unwrap();
    loop {
        let reply = next_message(&mut replies, Duration::from_secs(5)).await;
        let value: Value = serde_json::from_slice(&reply.payload).unwrap();
        if value["name"] == name {
            return value;
        }
    }
}

/// `errors_total` of service `name`.
pub async fn errors_total(client: &async_nats::Client, name: &str) -> u64 {
    health_of(client, name).await["errors_total"]
        .as_u64()
        .expect("no errors_total")
}
