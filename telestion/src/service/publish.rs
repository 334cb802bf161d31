//! Publishing and requesting through the service's client, with buffer
//! handling that fails instead of blocking forever, and replies whose
//! `Nats-Service-Error` headers become [`ServiceError::Remote`].

use std::time::Duration;

use async_nats::connection::State as ConnectionState;
use async_nats::{RequestErrorKind, StatusCode};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Service;
use crate::data_log;
use crate::error::ServiceError;

/// The error a reply carries in its headers, as every Telestion handler
/// sends it when it fails: `(code, message)`.
pub(crate) fn remote_error(message: &async_nats::Message) -> Option<(u16, String)> {
    let headers = message.headers.as_ref()?;
    let text = headers.get("Nats-Service-Error")?.as_str().to_owned();
    let code = headers
        .get("Nats-Service-Error-Code")
        .and_then(|v| v.as_str().trim().parse::<u16>().ok())
        .unwrap_or(500);
    Some((code, text))
}

impl Service {
    /// Publishes `payload` to `subject`.
    ///
    /// While disconnected, messages are buffered by the client (up to
    /// `NATS_PUBLISH_BUFFER`, default 2048) and sent after reconnecting; when
    /// that buffer is full the publish fails with
    /// [`ServiceError::BufferFull`], which is also counted and logged.
    pub async fn publish(
        &self,
        subject: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<(), ServiceError> {
        self.publish_inner(subject.into(), None, payload.into())
            .await
    }

    /// Publishes `payload` with headers.
    pub async fn publish_with_headers(
        &self,
        subject: impl Into<String>,
        headers: async_nats::HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<(), ServiceError> {
        self.publish_inner(subject.into(), Some(headers), payload.into())
            .await
    }

    /// Publishes `value` encoded as JSON.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        subject: impl Into<String>,
        value: &T,
    ) -> Result<(), ServiceError> {
        let body = serde_json::to_vec(value).map_err(ServiceError::Encode)?;
        self.publish(subject, body).await
    }

    pub(crate) async fn publish_inner(
        &self,
        subject: String,
        headers: Option<async_nats::HeaderMap>,
        payload: Bytes,
    ) -> Result<(), ServiceError> {
        let client = self
            .inner
            .client
            .as_ref()
            .ok_or(ServiceError::NoNats("publish"))?;
        // Connected: the buffer drains quickly, so wait for room. Disconnected:
        // a full buffer stays full, so fail fast and say so.
        let wait = if client.connection_state() == ConnectionState::Connected {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(20)
        };
        let target = subject.clone();
        let send = async move {
            match headers {
                Some(headers) => client.publish_with_headers(target, headers, payload).await,
                None => client.publish(target, payload).await,
            }
        };
        tokio::pin!(send);
        // Fast path: there is room in the buffer (no timer needed).
        let outcome = match futures::FutureExt::now_or_never(&mut send) {
            Some(result) => Ok(result),
            None => tokio::time::timeout(wait, send).await,
        };
        if !matches!(outcome, Ok(Ok(()))) && self.is_stopping() {
            // Not sent while stopping: the exit code says so.
            self.note_unconfirmed();
        }
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                self.record_error();
                Err(ServiceError::Publish { subject, source })
            }
            Err(_) => {
                self.record_error();
                let error = ServiceError::BufferFull { subject };
                tracing::error!(%error, "message not published");
                Err(error)
            }
        }
    }

    /// Waits until the NATS server has processed everything this service
    /// sent before (its subscriptions, say): a request to a subject nobody
    /// listens on, which the server answers only after it has read what
    /// came before it on the connection. (`Client::flush` only writes the
    /// buffer to the socket.) `serve` does this before it logs `ready`.
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) -> Result<(), telestion::ServiceError> {
    /// service.subscribe(telestion::Route::new("a.b", || async {})).await.ok();
    /// service.confirm_with_server().await?;
    /// // Every client of the server now reaches the route.
    /// # Ok(()) }
    /// ```
    pub async fn confirm_with_server(&self) -> Result<(), ServiceError> {
        let client = self.nats()?;
        let subject = client.new_inbox();
        match self.request(subject, Bytes::new()).await {
            Ok(_) | Err(ServiceError::NoResponders { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Sends a request and waits for the reply (the client's request
    /// timeout, 10 s by default). A reply that carries an error
    /// (`Nats-Service-Error` headers) is [`ServiceError::Remote`]; nobody
    /// listening is [`ServiceError::NoResponders`].
    pub async fn request(
        &self,
        subject: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<async_nats::Message, ServiceError> {
        let subject = subject.into();
        let client = self
            .inner
            .client
            .as_ref()
            .ok_or(ServiceError::NoNats("request"))?;
        let reply = client
            .request(subject.clone(), payload.into())
            .await
            .map_err(|source| match source.kind() {
                RequestErrorKind::NoResponders => ServiceError::NoResponders {
                    subject: subject.clone(),
                },
                RequestErrorKind::TimedOut => ServiceError::Timeout {
                    subject: subject.clone(),
                },
                _ => ServiceError::Request {
                    subject: subject.clone(),
                    source,
                },
            })?;
        if reply.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(ServiceError::NoResponders { subject });
        }
        if let Some((code, message)) = remote_error(&reply) {
            return Err(ServiceError::Remote {
                subject,
                code,
                message,
            });
        }
        Ok(reply)
    }

    /// Sends `value` as a JSON request and decodes the JSON reply.
    ///
    /// ```no_run
    /// # async fn example(service: telestion::Service) -> Result<(), telestion::ServiceError> {
    /// let doubled: i64 = service.request_json("math.double", &21).await?;
    /// # Ok(()) }
    /// ```
    pub async fn request_json<Req, Resp>(
        &self,
        subject: impl Into<String>,
        value: &Req,
    ) -> Result<Resp, ServiceError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let subject = subject.into();
        let body = serde_json::to_vec(value).map_err(ServiceError::Encode)?;
        let reply = self.request(subject.clone(), body).await?;
        serde_json::from_slice(&reply.payload)
            .map_err(|source| ServiceError::Decode { subject, source })
    }

    /// Logs `body` under `category` through the Standard Operations
    /// service: publishes it to `__telestion__/log/<category>` (or
    /// `__telestion__.log.<category>` when the category contains a dot; see
    /// [`data_log::subject_for`](crate::data_log::subject_for)).
    /// Fails (without publishing) when the category is invalid.
    pub async fn log_data(
        &self,
        category: &str,
        body: impl Into<Bytes>,
    ) -> Result<(), ServiceError> {
        let subject = data_log::subject_for(category)?;
        self.publish(subject, body).await
    }
}
