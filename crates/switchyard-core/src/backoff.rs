//! Exponential backoff with full jitter.

use std::time::Duration;

/// Exponential backoff with full jitter: the `n`th delay is drawn uniformly
/// from `[0, min(max, base * 2^n)]`. Used for connect and reconnect.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
/// for _ in 0..100 {
///     assert!(b.next_delay() <= Duration::from_secs(5));
/// }
/// b.reset();
/// assert_eq!(b.attempts(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Backoff starting at `base`, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        exponential_ceiling(self.base, 2, self.attempt, self.max)
    }

    /// The next delay, and counts an attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::random_range(0..=nanos))
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `base * factor^n`, capped at `max`, without overflow (shared with the
/// handlers' [`RetryPolicy::Exponential`](crate::RetryPolicy::Exponential)).
pub(crate) fn exponential_ceiling(base: Duration, factor: u32, n: u32, max: Duration) -> Duration {
    let mut delay = base;
    for _ in 0..n {
        if delay >= max || delay.is_zero() || factor <= 1 {
            break;
        }
        delay = delay.saturating_mul(factor);
    }
    delay.min(max)
}

impl Default for Backoff {
    /// 100 ms base, 10 s cap.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_and_cap() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(100));
        }
        assert_eq!(ceilings, [10, 20, 40, 80, 100, 100]);
        for _ in 0..1000 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
    }

    #[test]
    fn jitter_spreads() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150, "full jitter should rarely repeat");
        assert!(delays.iter().any(|d| *d < Duration::from_millis(500)));
    }

    #[test]
    fn zero_and_max_are_safe() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::ZERO);
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        let _ = b.next_delay();
    }
}
