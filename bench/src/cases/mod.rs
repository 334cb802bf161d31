//! The cases of the benchmark, one file each.

pub mod backend;
pub mod cold_start;
pub mod database;
pub mod durable;
pub mod health_backlog;
pub mod instructions;
pub mod latency;
pub mod memory;
pub mod scale;
pub mod standard_ops;
pub mod throughput;
