//! Warnings that a database outage would repeat for every request, written at most once per
//! [`INTERVAL`] per call site, each with the count of those left out since the last
//! (`warn_at_most_every_interval!`). An outage still shows at once, and its end by the lines
//! stopping; a log shipper is not flooded with thousands of copies a second.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The least time between two lines of one call site.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One call site's gate.
pub struct LogGate {
    /// Milliseconds since the process's first gated line before which nothing is written.
    next_ms: AtomicU64,
    skipped: AtomicU64,
}

impl LogGate {
    pub const fn new() -> Self {
        Self {
            next_ms: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one written)` when a line may be written now, else
    /// `None`, and this one is counted as left out.
    pub fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let elapsed = START.get_or_init(Instant::now).elapsed().as_millis();
        self.admit_at(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX);
        // Of callers racing past `next`, one writes; the others are counted.
        if now_ms < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogGate {
    fn default() -> Self {
        Self::new()
    }
}

/// `tracing::warn!` behind a gate of its own call site, with a `skipped` field.
#[macro_export]
macro_rules! warn_at_most_every_interval {
    ($($arg:tt)+) => {{
        static GATE: $crate::log_gate::LogGate = $crate::log_gate::LogGate::new();
        if let Some(skipped) = GATE.admit() {
            tracing::warn!(skipped, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let gate = LogGate::new();
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap();
        assert_eq!(gate.admit_at(5), Some(0));
        assert_eq!(gate.admit_at(6), None);
        assert_eq!(gate.admit_at(5 + interval - 1), None);
        assert_eq!(gate.admit_at(5 + interval), Some(2));
        assert_eq!(gate.admit_at(5 + interval), None);
        // Quiet for long: the next line comes at once, with the one left out before it.
        assert_eq!(gate.admit_at(100 * interval), Some(1));
        assert_eq!(gate.admit_at(200 * interval), Some(0));
    }

    #[test]
    fn each_call_site_has_its_own_gate() {
        let (a, b) = (LogGate::new(), LogGate::new());
        assert_eq!(a.admit_at(1), Some(0));
        assert_eq!(b.admit_at(1), Some(0));
        assert_eq!(a.admit_at(2), None);
    }
}
