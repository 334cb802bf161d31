//! The work both benchmark subscribers do per message, shared so that the
//! framework service (`bench_service.rs`) and the hand-written async-nats
//! program (`bench_raw.rs`) do exactly the same thing.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The JSON body of the `Json<T>` throughput cases.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Sequence number.
    pub seq: u64,
    /// Where the sample comes from.
    pub sensor: String,
    /// Padding that brings the body to its size.
    pub data: String,
}

/// Counts the messages of one benchmark case and says when the expected
/// number has arrived.
#[derive(Debug, Default)]
pub struct Counter {
    count: AtomicU64,
    bytes: AtomicU64,
    target: AtomicU64,
}

impl Counter {
    /// Starts a new round that ends after `target` messages.
    pub fn reset(&self, target: u64) {
        self.count.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    /// Counts one message of `bytes` bytes; `Some(n)` when it was the last
    /// one of the round.
    pub fn hit(&self, bytes: u64) -> Option<u64> {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        (n == self.target.load(Ordering::Acquire)).then_some(n)
    }

    /// Messages counted in this round.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

/// The counters of a benchmark subscriber: `hot` for the throughput cases,
/// `plain` for the diagnostic body-only handler, `slow` and `slow8` for the
/// backlog cases.
#[derive(Debug, Default)]
pub struct Counters {
    /// Throughput cases (bytes and JSON).
    pub hot: Counter,
    /// The handler that takes only the body.
    pub plain: Counter,
    /// The one-at-a-time slow handler.
    pub slow: Counter,
    /// The slow handler with `concurrency = 8`.
    pub slow8: Counter,
}

impl Counters {
    /// Handles a control request `"<counter> <target>"`.
    pub fn reset(&self, command: &str) -> Result<(), String> {
        let (name, target) = command
            .split_once(' ')
            .ok_or_else(|| format!("expected `<counter> <target>`, got {command:?}"))?;
        let target: u64 = target.trim().parse().map_err(|e| format!("target: {e}"))?;
        self.by_name(name)
            .ok_or_else(|| format!("no counter {name:?}"))?
            .reset(target);
        Ok(())
    }

    fn by_name(&self, name: &str) -> Option<&Counter> {
        match name {
            "hot" => Some(&self.hot),
            "plain" => Some(&self.plain),
            "slow" => Some(&self.slow),
            "slow8" => Some(&self.slow8),
            _ => None,
        }
    }

    /// `{"hot": n, "plain": n, "slow": n, "slow8": n}`.
    pub fn stats(&self) -> String {
        format!(
            "{{\"hot\":{},\"plain\":{},\"slow\":{},\"slow8\":{}}}",
            self.hot.count(),
            self.plain.count(),
            self.slow.count(),
            self.slow8.count()
        )
    }
}

/// The work of the slow handlers: a deterministic CPU-bound checksum over
/// the body, repeated `SLOW_ROUNDS` times (about 20 µs on a current core).
pub fn slow_work(body: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..SLOW_ROUNDS {
        hash ^= round;
        for &byte in body {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    std::hint::black_box(hash)
}

/// Repetitions of [`slow_work`].
pub const SLOW_ROUNDS: u64 = 120;
