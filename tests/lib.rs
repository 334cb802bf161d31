//! The README's Rust code blocks, compiled as doc tests of this package
//! (`rust,no_run` blocks are compiled, not run; the quick start and the
//! testing example are also checked against the files they show, by
//! `readme.rs`, and run there).

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
