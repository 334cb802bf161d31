//! The core of the `standard_ops` service: the log line format and the
//! files it appends to. The service itself is `main.rs`.

mod files;
mod line;

pub use files::DataLog;
pub use line::log_line;
