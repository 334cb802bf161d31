//! The work both benchmark subscribers do per message, shared so that the
//! framework service (`bench_service.rs`) and the hand-written async-nats
//! program (`bench_raw.rs`) do exactly the same thing.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

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

/// Holds the durable handlers while the driver fills their stream: closed,
/// a handler waits in [`Gate::pass`] with the message it got (the consumer
/// allows one unacknowledged message, so no other is delivered meanwhile);
/// open (the default), [`Gate::pass`] is one atomic load.
#[derive(Debug, Default)]
pub struct Gate {
    closed: AtomicBool,
    notify: Notify,
}

impl Gate {
    /// Holds the next message.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Lets the held message and all later ones through.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Returns when the gate is open.
    pub async fn pass(&self) {
        if !self.closed.load(Ordering::Acquire) {
            return;
        }
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// The counters of a benchmark subscriber: `hot` for the throughput cases,
/// `plain` for the diagnostic body-only handler, `slow` and `slow8` for the
/// backlog cases, `durable` (with its gate) for the durable handlers.
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
    /// The durable handler (JetStream).
    pub durable: Counter,
    /// Announce every durable message (latency), not only the last of a
    /// round.
    pub durable_each: AtomicBool,
    /// Holds the durable handler while the driver fills the stream.
    pub gate: Gate,
}

impl Counters {
    /// Handles a control request `"<counter> <target>"`; for the durable
    /// handler also `"hold 0"` (close the gate), `"durable <n>"` (a round
    /// of `n`, gate opened) and `"durable_each 0"` (announce every message,
    /// gate opened).
    pub fn reset(&self, command: &str) -> Result<(), String> {
        let (name, target) = command
            .split_once(' ')
            .ok_or_else(|| format!("expected `<counter> <target>`, got {command:?}"))?;
        let target: u64 = target.trim().parse().map_err(|e| format!("target: {e}"))?;
        match name {
            "hold" => {
                self.gate.close();
                return Ok(());
            }
            "durable" | "durable_each" => {
                self.durable.reset(target);
                self.durable_each
                    .store(name == "durable_each", Ordering::SeqCst);
                self.gate.open();
                return Ok(());
            }
            _ => {}
        }
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
            "durable" => Some(&self.durable),
            _ => None,
        }
    }

    /// Counts a durable message; `Some(n)` when the driver wants to hear
    /// of it (the last of a round, or every one).
    pub fn durable_hit(&self, bytes: u64) -> Option<u64> {
        let last = self.durable.hit(bytes);
        if self.durable_each.load(Ordering::Relaxed) {
            Some(self.durable.count())
        } else {
            last
        }
    }

    /// `{"hot": n, "plain": n, "slow": n, "slow8": n, "durable": n}`.
    pub fn stats(&self) -> String {
        format!(
            "{{\"hot\":{},\"plain\":{},\"slow\":{},\"slow8\":{},\"durable\":{}}}",
            self.hot.count(),
            self.plain.count(),
            self.slow.count(),
            self.slow8.count(),
            self.durable.count()
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
