//! Services in the test's own process: configured for a test server,
//! serving the handlers of the crate under test or an explicit route list.

use std::path::Path;

use telestion::{Config, Options, Route, Service, StartError};

use crate::NatsServer;

/// The required keys for a service on `url`, plus `extra`.
///
/// ```
/// let config = telestion_test::service_config(
///     "nats://127.0.0.1:1",
///     "example",
///     std::path::Path::new("/tmp"),
///     &[("FREQUENCY", "10")],
/// );
/// assert_eq!(config.get_str("FREQUENCY").as_deref(), Some("10"));
/// ```
pub fn service_config(url: &str, name: &str, data_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![
        ("NATS_URL".into(), url.into()),
        ("SERVICE_NAME".into(), name.into()),
        ("DATA_DIR".into(), data_dir.to_string_lossy().into_owned()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_pairs(pairs)
}

/// Starts a service (no routes yet; it does not handle signals) on `url`.
///
/// # Panics
///
/// When it does not start, showing why.
pub async fn start_service(
    url: &str,
    name: &str,
    data_dir: &Path,
    extra: &[(&str, &str)],
) -> Service {
    match Service::start(
        Options::new()
            .config(service_config(url, name, data_dir, extra))
            .signals(false),
    )
    .await
    {
        Ok(service) => service,
        Err(e) => panic!("service did not start: {}", telestion::error_chain(&e)),
    }
}

/// A service serving routes in this process until [`TestService::stop`]
/// (or drop, which stops it without waiting).
///
/// ```no_run
/// # async fn example() {
/// use telestion_test::{NatsServer, TestService, request};
///
/// async fn echo(body: telestion::Bytes) -> telestion::Bytes {
///     body
/// }
///
/// let server = NatsServer::start();
/// let service = TestService::start(&server, "echo", vec![telestion::Route::new("echo", echo)]).await;
/// let reply = request(&server.client().await, "echo", "hi").await;
/// assert_eq!(&reply.payload[..], b"hi");
/// service.stop().await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct TestService {
    service: Service,
    task: Option<tokio::task::JoinHandle<()>>,
    _data: Option<tempfile::TempDir>,
}

impl TestService {
    /// Starts `routes` as service `name` on `server`, with a temporary data
    /// directory; every route is subscribed when this returns.
    ///
    /// # Panics
    ///
    /// When the service does not start, showing why.
    pub async fn start(server: &NatsServer, name: &str, routes: Vec<Route>) -> TestService {
        let data = tempfile::tempdir().expect("cannot create a data directory");
        let config = service_config(&server.url(), name, data.path(), &[]);
        match TestService::start_with(config, routes).await {
            Ok(mut service) => {
                service._data = Some(data);
                service
            }
            Err(e) => panic!(
                "service {name} did not start: {}",
                telestion::error_chain(&e)
            ),
        }
    }

    /// Starts `routes` with `config` (see [`service_config`]); every route is
    /// subscribed and confirmed by the server when this returns.
    pub async fn start_with(config: Config, routes: Vec<Route>) -> Result<TestService, StartError> {
        let service = Service::start(Options::new().config(config).signals(false)).await?;
        for route in routes {
            service.subscribe(route).await?;
        }
        if service.client().is_some() {
            // Every SUB processed by the server before the test goes on.
            let confirmed = tokio::time::timeout(crate::WAIT, service.confirm_with_server()).await;
            assert!(
                matches!(confirmed, Ok(Ok(()))),
                "the server did not confirm the subscriptions: {confirmed:?}"
            );
        }
        let serving = service.clone();
        let task = tokio::spawn(async move {
            serving.stopped().await;
            serving.drain().await;
        });
        Ok(TestService {
            service,
            task: Some(task),
            _data: None,
        })
    }

    /// The service handle.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Asks the service to stop and waits until it has drained.
    pub async fn stop(mut self) -> Result<(), tokio::task::JoinError> {
        self.service.shutdown();
        match self.task.take() {
            Some(task) => task.await,
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for TestService {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.service.shutdown();
    }
}
