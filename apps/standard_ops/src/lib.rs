//! The core of the `standard_ops` service: the log line format and the
//! files it appends to. The service itself is `main.rs`.

mod files;
mod line;
mod queue;

pub use files::{DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_OPEN_FILES, DataLog, Limits, LogError};
pub use line::log_line;
pub use queue::{CATEGORY_BUDGET, TOTAL_BUDGET};
