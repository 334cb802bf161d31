//! Without the crate feature `metrics` there is no Prometheus endpoint: a
//! service that asks for one (`METRICS_ADDR`) fails to start, saying so.

use std::sync::Arc;

use super::instance::Instance;
use crate::config::Config;
use crate::error::{ConfigError, StartError};

/// The key naming the endpoint's address.
pub(crate) const KEY: &str = "METRICS_ADDR";

/// Fails the start when `METRICS_ADDR` is set.
pub(crate) async fn start(
    config: &Config,
    _instance: &Arc<Instance>,
) -> Result<Option<tokio::task::JoinHandle<()>>, StartError> {
    match config.get_str(KEY).filter(|a| !a.trim().is_empty()) {
        None => Ok(None),
        Some(_) => Err(ConfigError::Invalid {
            key: Some(KEY.into()),
            message: format!(
                "key {KEY}: this service was built without the Prometheus endpoint (the crate \
                 feature `metrics` of telestion is off); unset {KEY} or build with the feature"
            ),
        }
        .into()),
    }
}
