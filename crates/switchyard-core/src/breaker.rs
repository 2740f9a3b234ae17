//! A circuit breaker for calls to a failing backend.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cool_down_nanos(&self) -> u64 {
        u64::try_from(self.cool_down.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go through now; `Err(Error::CircuitOpen)` if not.
    pub fn check(&self) -> Result<()> {
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
        if self.state.load(Ordering::Acquire) != CLOSED {
            self.state.store(CLOSED, Ordering::Release);
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
}
