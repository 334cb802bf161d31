//! What the NATS server sends to `standard_ops`: data-log subjects, not the
//! whole bus.

mod support;

use serde_json::Value;
use support::{lines, ops};
use telestion_test::{NatsServer, ServerOptions, WAIT, eventually, health, spawn_ready};

/// The server's view of the service's connection (named `SERVICE_NAME`).
fn connection(server: &NatsServer) -> Value {
    let connz = server.monitor("/connz?subs=detail");
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ops")
        .cloned()
        .unwrap_or_else(|| panic!("no connection named ops: {connz}"))
}

fn messages_sent_to(server: &NatsServer) -> u64 {
    connection(server)["out_msgs"].as_u64().unwrap()
}

/// The service subscribes to `*` and `__telestion__.log.>` in its queue
/// group, and the server no longer sends it unrelated multi-token subjects
/// (`telemetry.a.b`); data-log subjects of both forms still arrive.
///
/// Old behaviour: one subscription on `>`: the server sent the service
/// every message on the bus.
#[tokio::test(flavor = "multi_thread")]
async fn only_data_log_subjects_are_sent_to_the_service() {
    let server = NatsServer::start_with(ServerOptions::new().monitoring());
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let client = server.client().await;

    let subscriptions = connection(&server)["subscriptions_list_detail"].clone();
    let mut queued: Vec<String> = subscriptions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["qgroup"] == "ops")
        .map(|s| s["subject"].as_str().unwrap().to_owned())
        .collect();
    queued.sort();
    assert_eq!(queued, ["*", "__telestion__.log.>"], "{subscriptions}");
    assert!(
        !subscriptions
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subject"] == ">"),
        "{subscriptions}"
    );

    let before = messages_sent_to(&server);
    for n in 0..200 {
        client
            .publish(format!("telemetry.a{}.b", n % 3), "1".into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // Asked after the publishes, on the same connection: the server has
    // routed them all when the health request reaches the service.
    health(&client, "__telestion__/health").await;
    let unrelated = messages_sent_to(&server) - before;
    assert!(
        unrelated < 10,
        "the server sent {unrelated} messages to standard_ops"
    );

    let before = messages_sent_to(&server);
    for n in 0..50 {
        let subject = if n % 2 == 0 {
            "__telestion__/log/wanted"
        } else {
            "__telestion__.log.wanted"
        };
        client.publish(subject, "1".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    eventually(WAIT, "50 lines", || {
        lines(data.path(), "wanted").len() == 50
    })
    .await;
    assert!(messages_sent_to(&server) - before >= 50);
}

/// `Service::log_data` reaches the service for every valid category, also
/// one with a dot: the spec's slash form of `team.readings` is two NATS
/// tokens, which neither `*` nor `__telestion__.log.>` matches, so the
/// runtime logs such a category through the dotted form. Both land in
/// `logs/<category>.log`.
///
/// Old behaviour: `log_data` always used the slash form, so a dotted
/// category was published to a subject nothing subscribes to and dropped.
#[tokio::test(flavor = "multi_thread")]
async fn log_data_reaches_the_service_for_dotted_categories() {
    let server = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let _ops = spawn_ready(ops(&server, data.path(), &[]));
    let logger = telestion_test::start_service(&server.url(), "logger", data.path(), &[]).await;
    for category in ["readings", "team.readings"] {
        logger.log_data(category, "{\"v\":1}").await.unwrap();
    }
    for category in ["readings", "team.readings"] {
        eventually(WAIT, category, || lines(data.path(), category).len() == 1).await;
        assert_eq!(lines(data.path(), category)[0]["json"]["v"], 1);
    }
}
