//! [`BufferWatch`]: the back-pressure warning of a subscriber's local
//! buffer (see [`Subscription::buffer_warning`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Subscription;

/// Watches the fill of one subscriber's local buffer: adapters call
/// [`observe`](Self::observe) with the buffer's length after each push;
/// while it stays at or above the threshold for the configured duration a
/// `tracing` warning is logged, at most one per that duration.
#[derive(Debug)]
pub struct BufferWatch {
    threshold: usize,
    capacity: usize,
    after: Duration,
    what: String,
    origin: Instant,
    /// Milliseconds since `origin` + 1 when the fill reached the
    /// threshold (0: below it).
    since: AtomicU64,
    /// Milliseconds since `origin` + 1 of the last warning (0: none).
    warned: AtomicU64,
}

impl BufferWatch {
    /// A watch of a buffer of `capacity` items of `sub`; `what` names the
    /// subscriber in the warning (its filter, group).
    pub fn new(sub: &Subscription, capacity: usize, what: impl Into<String>) -> Self {
        let (percent, after) = sub.buffer_warning_values();
        let threshold = (capacity.saturating_mul(usize::from(percent)) / 100).max(1);
        BufferWatch {
            threshold,
            capacity,
            after,
            what: what.into(),
            origin: Instant::now(),
            since: AtomicU64::new(0),
            warned: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Records that the buffer holds `len` items now.
    pub fn observe(&self, len: usize) {
        if len < self.threshold {
            if self.since.load(Ordering::Relaxed) != 0 {
                self.since.store(0, Ordering::Relaxed);
            }
            return;
        }
        let now = self.now();
        let since = match self
            .since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => now,
            Err(s) => s,
        };
        let after = u64::try_from(self.after.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(since) < after {
            return;
        }
        let warned = self.warned.load(Ordering::Relaxed);
        if warned != 0 && now.saturating_sub(warned) < after.max(1) {
            return;
        }
        if self
            .warned
            .compare_exchange(warned, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                subscriber = %self.what,
                buffered = len,
                capacity = self.capacity,
                for_ms = now.saturating_sub(since),
                "switchyard: a subscriber's buffer stays full: the consumer does not keep up (see SubscriberStats::buffered)"
            );
        }
    }

    /// Whether a warning was logged (a snapshot, for tests).
    pub fn warned(&self) -> bool {
        self.warned.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Topic;

    #[test]
    fn warns_only_after_staying_full() {
        let sub = Subscription::new(Topic::new("t").unwrap()).buffer_warning(50, Duration::ZERO);
        let w = BufferWatch::new(&sub, 10, "t");
        w.observe(4);
        assert!(!w.warned());
        w.observe(5);
        assert!(w.warned());
        let sub = Subscription::new(Topic::new("t").unwrap())
            .buffer_warning(50, Duration::from_secs(3600));
        let w = BufferWatch::new(&sub, 10, "t");
        w.observe(10);
        w.observe(10);
        assert!(!w.warned());
    }
}
