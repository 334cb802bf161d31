//! Runtime integration tests.
