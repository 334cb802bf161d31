//! The README's Rust code blocks, compiled as doc tests of this package
//! (`rust,no_run` blocks are compiled, not run; the quick start is also
//! checked against the file it shows, by `readme.rs`, and run there). The
//! guide's examples are doc tests of the `telestion` crate.

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
