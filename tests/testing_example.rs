use telestion::{Json, Route};
use telestion_test::{NatsServer, TestService, request_json};

async fn double(Json(x): Json<i64>) -> Json<i64> {
    Json(2 * x)
}

#[tokio::test]
async fn doubles() {
    // A real nats-server on a free loopback port, killed when dropped.
    let server = NatsServer::start();
    // The handler served in this process (`telestion::collected_routes()`
    // gives every `#[subscribe]` handler of the crate instead).
    let routes = vec![Route::new("math.double", double)];
    let service = TestService::start(&server, "math", routes).await;
    let client = server.client().await;
    let doubled: i64 = request_json(&client, "math.double", &21).await;
    assert_eq!(doubled, 42);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn doubles_without_a_server() {
    // The handler alone is a plain async fn.
    assert_eq!(double(Json(21)).await.0, 42);
}
