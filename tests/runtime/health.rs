//! Health: both subjects, every instance answers, answers within
//! 0.5 s while a handler is saturated, a configurable error window.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use telestion::Route;

use crate::support::{self, NatsServer};
use crate::{request, settle, start_by_hand, start_service};

#[tokio::test(flavor = "multi_thread")]
async fn answers_on_both_subjects() {
    let server = NatsServer::start();
    let _service = start_service(&server.url(), "healthy", &[("SERVICE_ID", "healthy-1")]).await;
    let client = server.client().await;
    for subject in ["__telestion__/health", "__telestion__.health"] {
        let health = support::health(&client, subject).await;
        assert_eq!(health["errors"], 0, "{subject}: {health}");
        assert_eq!(health["service"], "healthy-1", "{subject}: {health}");
        assert_eq!(health["name"], "healthy", "{subject}: {health}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_answers() {
    let server = NatsServer::start();
    let a = start_service(&server.url(), "crowd", &[]).await;
    let b = start_service(&server.url(), "crowd", &[]).await;
    settle(&a).await;
    settle(&b).await;
    let client = server.client().await;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("__telestion__/health", inbox, "".into())
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for _ in 0..2 {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .expect("both instances answer")
            .unwrap();
        let health: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(health["name"], "crowd");
        ids.insert(health["service"].as_str().unwrap().to_owned());
    }
    let expected: HashSet<String> = [a.id().to_owned(), b.id().to_owned()].into();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_within_half_a_second_while_a_handler_is_saturated() {
    let server = NatsServer::start();
    let client = server.client().await;
    let proc = start_by_hand(&server.url(), "busy", &[("SLOW_MS", "20")], &client).await;
    let mut done = client.subscribe("byhand.done").await.unwrap();
    // A backlog of about a minute of work.
    for i in 0..3000 {
        client
            .publish("byhand.slow", i.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // Make sure the handler is at work.
    tokio::time::timeout(Duration::from_secs(10), done.next())
        .await
        .expect("the slow handler never finished a message");
    for subject in ["__telestion__/health", "__telestion__.health"]
        .into_iter()
        .cycle()
        .take(6)
    {
        let sent = Instant::now();
        let health = support::health(&client, subject).await;
        let took = sent.elapsed();
        assert_eq!(health["name"], "busy");
        assert!(
            took < Duration::from_millis(500),
            "health on {subject} took {took:?} while busy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The backlog was real: most messages are still waiting.
    let mut handled = 1;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), done.next()).await {
        handled += 1;
    }
    assert!(
        handled < 2000,
        "the handler was not saturated ({handled} done)"
    );
    drop(proc);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_window_is_configurable() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "forgetful", &[("HEALTH_ERROR_WINDOW", "1")]).await;
    service
        .subscribe(Route::new("always.fails", || async { Err::<(), _>("no") }))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    for _ in 0..3 {
        request(&client, "always.fails", "").await;
    }
    let health = support::health(&client, "__telestion__/health").await;
    assert_eq!(health["errors"], 3, "{health}");
    assert_eq!(health["error_window_s"], 1, "{health}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = support::health(&client, "__telestion__.health").await;
        if health["errors"] == 0 {
            assert_eq!(health["errors_total"], 3, "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "errors never left the window: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn default_error_window_keeps_recent_errors() {
    let server = NatsServer::start();
    let service = start_service(&server.url(), "mindful", &[]).await;
    service
        .subscribe(Route::new("always.fails", || async { Err::<(), _>("no") }))
        .await
        .unwrap();
    settle(&service).await;
    let client = server.client().await;
    request(&client, "always.fails", "").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let health = support::health(&client, "__telestion__/health").await;
    assert_eq!(health["errors"], 1, "{health}");
    assert_eq!(health["error_window_s"], 60, "{health}");
}
