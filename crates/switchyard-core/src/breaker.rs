//! A circuit breaker for calls to a failing backend.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One trial call is going through; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// A snapshot of a [`CircuitBreaker`]: what the events library's breaker
/// showed, in [`TransportStats::breaker`](crate::TransportStats::breaker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Closed, open or half-open.
    pub state: BreakerState,
    /// Failures in a row since the last success.
    pub consecutive_failures: u32,
    /// Calls that asked the breaker (let through or refused).
    pub total_requests: u64,
    /// Calls refused while it was open (or half-open with a trial running).
    pub rejected_requests: u64,
    /// How many times it opened.
    pub times_opened: u64,
    /// When the state last changed; `None` while it never did.
    pub last_state_change: Option<SystemTime>,
}

impl Default for BreakerStats {
    fn default() -> Self {
        BreakerStats {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            total_requests: 0,
            rejected_requests: 0,
            times_opened: 0,
            last_state_change: None,
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Counts consecutive failures; after `threshold` of them it opens and
/// refuses calls for `cool_down`, then lets one trial call through. Cheap on
/// the hot path: a closed breaker costs one atomic load per call.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::{BreakerState, CircuitBreaker};
/// let b = CircuitBreaker::new("redis", 2, Duration::from_secs(1));
/// b.record_failure();
/// b.record_failure();
/// assert_eq!(b.state(), BreakerState::Open);
/// assert!(b.check().is_err());
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    backend: &'static str,
    threshold: u32,
    cool_down: Duration,
    epoch: Instant,
    state: AtomicU8,
    failures: AtomicU32,
    opened_at_nanos: AtomicU64,
    rejections: AtomicU64,
    opened: AtomicU64,
    requests: AtomicU64,
    /// Unix milliseconds of the last state change; 0 while there was none.
    changed_at_ms: AtomicU64,
}

impl CircuitBreaker {
    /// A breaker for `backend` that opens after `threshold` consecutive
    /// failures (at least 1) and stays open for `cool_down`.
    pub fn new(backend: &'static str, threshold: u32, cool_down: Duration) -> Self {
        CircuitBreaker {
            backend,
            threshold: threshold.max(1),
            cool_down,
            epoch: Instant::now(),
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at_nanos: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            changed_at_ms: AtomicU64::new(0),
        }
    }

    fn changed(&self) {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.changed_at_ms.store(ms, Ordering::Relaxed);
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cool_down_nanos(&self) -> u64 {
        u64::try_from(self.cool_down.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go through now; `Err(Error::CircuitOpen)` if not.
    pub fn check(&self) -> Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(()),
            OPEN => {
                let since = self
                    .now_nanos()
                    .saturating_sub(self.opened_at_nanos.load(Ordering::Acquire));
                let cool = self.cool_down_nanos();
                if since >= cool
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.changed();
                    return Ok(());
                }
                self.reject(Duration::from_nanos(cool.saturating_sub(since)))
            }
            _ => self.reject(Duration::ZERO),
        }
    }

    fn reject(&self, retry_in: Duration) -> Result<()> {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        Err(Error::CircuitOpen {
            backend: self.backend,
            retry_in,
        })
    }

    /// Reports a successful call.
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.state.load(Ordering::Acquire) != CLOSED
            && self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED
        {
            self.changed();
        }
    }

    /// Reports a failed call (only failures a retry could fix should count).
    pub fn record_failure(&self) {
        let state = self.state.load(Ordering::Acquire);
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if state == HALF_OPEN || (state == CLOSED && failures >= self.threshold) {
            self.opened_at_nanos
                .store(self.now_nanos(), Ordering::Release);
            if self.state.swap(OPEN, Ordering::AcqRel) != OPEN {
                self.changed();
                self.opened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    backend = self.backend,
                    failures,
                    cool_down_ms = self.cool_down.as_millis() as u64,
                    "circuit breaker opened"
                );
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Calls refused so far.
    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    /// How many times the breaker opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// A snapshot of its state and counters.
    pub fn stats(&self) -> BreakerStats {
        let changed = self.changed_at_ms.load(Ordering::Relaxed);
        BreakerStats {
            state: self.state(),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            total_requests: self.requests.load(Ordering::Relaxed),
            rejected_requests: self.rejections(),
            times_opened: self.times_opened(),
            last_state_change: (changed != 0).then(|| UNIX_EPOCH + Duration::from_millis(changed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers() {
        let b = CircuitBreaker::new("t", 3, Duration::from_millis(20));
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed, "success resets the count");
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 1);
        let err = b.check().unwrap_err();
        assert!(err.is_transient());
        assert_eq!(b.rejections(), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.check().is_err() {
            assert!(Instant::now() < deadline, "breaker never half-opened");
            std::thread::yield_now();
        }
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.check().is_err(), "only one trial at a time");
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open, "failed trial reopens");
        assert_eq!(b.times_opened(), 2);
        while b.check().is_err() {
            assert!(Instant::now() < deadline + Duration::from_secs(5));
            std::thread::yield_now();
        }
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.check().is_ok());
    }

    /// The events library's breaker showed state, consecutive failures,
    /// total and rejected requests and the time of the last state change;
    /// before, only rejections and "open or not" were visible.
    #[test]
    fn stats_follow_every_change() {
        let b = CircuitBreaker::new("t", 2, Duration::from_secs(60));
        assert_eq!(b.stats(), BreakerStats::default());
        assert!(b.check().is_ok());
        b.record_failure();
        let s = b.stats();
        assert_eq!(
            (s.state, s.consecutive_failures, s.total_requests),
            (BreakerState::Closed, 1, 1)
        );
        assert_eq!(s.last_state_change, None);
        let before = SystemTime::now() - Duration::from_secs(1);
        b.record_failure();
        assert!(b.check().is_err());
        assert!(b.check().is_err());
        let s = b.stats();
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.consecutive_failures, 2);
        assert_eq!(
            (s.total_requests, s.rejected_requests, s.times_opened),
            (3, 2, 1)
        );
        assert!(s.last_state_change.is_some_and(|t| t >= before));
        b.record_success();
        let s = b.stats();
        assert_eq!((s.state, s.consecutive_failures), (BreakerState::Closed, 0));
    }
}
