//! The numbers both the macro and the runtime check.

/// The largest batch size: 10,000 messages.
///
/// ```
/// assert_eq!(telestion_rules::limits::MAX_BATCH, 10_000);
/// ```
pub const MAX_BATCH: usize = 10_000;

/// The window a batch waits for more messages after its first one, when no
/// other is given: 100 ms.
///
/// ```
/// assert_eq!(telestion_rules::limits::DEFAULT_BATCH_WINDOW_MS, 100);
/// ```
pub const DEFAULT_BATCH_WINDOW_MS: u64 = 100;

/// Whether `n` is a batch size (`1..=MAX_BATCH`).
///
/// ```
/// use telestion_rules::limits::is_batch_size;
/// assert!(is_batch_size(1) && is_batch_size(10_000));
/// assert!(!is_batch_size(0) && !is_batch_size(10_001));
/// ```
pub fn is_batch_size(n: usize) -> bool {
    (1..=MAX_BATCH).contains(&n)
}
