//! What a handler returns on failure, and how a failure is retried.

use std::fmt;
use std::time::Duration;

use crate::backoff::exponential_ceiling;
use crate::delivery::Retry;
use crate::error::{Error, Result};

/// How a delivery whose handler failed with a retryable error comes back.
///
/// Every delay is 0 to [`Retry::MAX_DELAY`] (24 h), checked when the
/// handler is started. Delays are exact (no jitter), so they can be
/// predicted and tested; the redelivery itself is scheduled by the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// `nack(Retry::Now)`: redeliver at once.
    Immediate,
    /// `nack(Retry::After(delay))` with the same delay on every attempt.
    Fixed(Duration),
    /// `nack(Retry::After(delay))` where the delay after attempt `n` is
    /// `first * factor^(n-1)`, capped at `max`: with `first` 50 ms,
    /// `factor` 2 and `max` 1 s, attempts 1, 2, 3, ... wait 50 ms, 100 ms,
    /// 200 ms, ..., 1 s.
    Exponential {
        /// The delay after the first attempt (0 to `max`).
        first: Duration,
        /// The longest delay (`first` to [`Retry::MAX_DELAY`]).
        max: Duration,
        /// The growth per attempt, 1 to [`RetryPolicy::MAX_FACTOR`] (16).
        factor: u32,
    },
}

impl Default for RetryPolicy {
    /// Exponential: 100 ms, doubling, capped at 30 s.
    fn default() -> Self {
        RetryPolicy::Exponential {
            first: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2,
        }
    }
}

impl RetryPolicy {
    /// The largest accepted `factor` of [`RetryPolicy::Exponential`].
    pub const MAX_FACTOR: u32 = 16;

    /// An exponential policy doubling from `first`, capped at `max`.
    pub fn exponential(first: Duration, max: Duration) -> Self {
        RetryPolicy::Exponential {
            first,
            max,
            factor: 2,
        }
    }

    /// Checks every delay against its documented range.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::RetryPolicy;
    /// assert!(RetryPolicy::Fixed(Duration::from_secs(1)).validate().is_ok());
    /// assert!(RetryPolicy::Fixed(Duration::MAX).validate().is_err());
    /// let backwards = RetryPolicy::Exponential {
    ///     first: Duration::from_secs(2),
    ///     max: Duration::from_secs(1),
    ///     factor: 2,
    /// };
    /// assert!(backwards.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match *self {
            RetryPolicy::Immediate => Ok(()),
            RetryPolicy::Fixed(delay) if delay > Retry::MAX_DELAY => {
                Err(Error::InvalidConfig(format!(
                    "the delay of RetryPolicy::Fixed must be 0 to 24h (Retry::MAX_DELAY), got {delay:?}"
                )))
            }
            RetryPolicy::Fixed(_) => Ok(()),
            RetryPolicy::Exponential { first, max, factor } => {
                if max > Retry::MAX_DELAY {
                    return Err(Error::InvalidConfig(format!(
                        "max of RetryPolicy::Exponential must be at most 24h (Retry::MAX_DELAY), got {max:?}"
                    )));
                }
                if first > max {
                    return Err(Error::InvalidConfig(format!(
                        "first of RetryPolicy::Exponential must be 0 to max ({max:?}), got {first:?}"
                    )));
                }
                if !(1..=Self::MAX_FACTOR).contains(&factor) {
                    return Err(Error::InvalidConfig(format!(
                        "factor of RetryPolicy::Exponential must be 1 to {}, got {factor}",
                        Self::MAX_FACTOR
                    )));
                }
                Ok(())
            }
        }
    }

    /// How to nack delivery `attempt` (1 on the first delivery) after a
    /// retryable failure.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::{Retry, RetryPolicy};
    /// let p = RetryPolicy::exponential(Duration::from_millis(50), Duration::from_millis(150));
    /// assert_eq!(p.retry(1), Retry::After(Duration::from_millis(50)));
    /// assert_eq!(p.retry(2), Retry::After(Duration::from_millis(100)));
    /// assert_eq!(p.retry(3), Retry::After(Duration::from_millis(150)));
    /// assert_eq!(RetryPolicy::Immediate.retry(7), Retry::Now);
    /// ```
    pub fn retry(&self, attempt: u32) -> Retry {
        match *self {
            RetryPolicy::Immediate => Retry::Now,
            RetryPolicy::Fixed(delay) => Retry::After(delay.min(Retry::MAX_DELAY)),
            RetryPolicy::Exponential { first, max, factor } => {
                let n = attempt.saturating_sub(1);
                Retry::After(exponential_ceiling(first, factor, n, max).min(Retry::MAX_DELAY))
            }
        }
    }
}

/// Whether a failure may go away on another attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Retry as the handler's [`RetryPolicy`] says (and, on the
    /// subscription's last attempt, let the adapter dead-letter it).
    Retry,
    /// Dead-letter at once: another attempt cannot succeed.
    Permanent,
}

/// The error a handler returns.
///
/// Any error converts into a retryable one, so `?` works in a handler on
/// every `std::error::Error + Send + Sync` (and on `anyhow::Error`, `String`
/// and `&str`). Mark what can never succeed (a malformed order, an unknown
/// customer) with [`HandlerError::permanent`]: it is dead-lettered at once
/// with the error's text as the `sy-dlq-reason` header.
///
/// ```
/// use switchyard_core::{Failure, HandlerError};
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse().map_err(HandlerError::permanent)?;
///     if n == 0 {
///         return Err("zero is not ready yet".into()); // retryable
///     }
///     Ok(n)
/// }
/// assert_eq!(parse("x").unwrap_err().failure(), Failure::Permanent);
/// assert_eq!(parse("0").unwrap_err().failure(), Failure::Retry);
/// ```
pub struct HandlerError {
    failure: Failure,
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl HandlerError {
    /// A failure that another attempt may not repeat.
    pub fn retry(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        HandlerError {
            failure: Failure::Retry,
            error: error.into(),
        }
    }

    /// A failure no attempt can fix: the delivery is dead-lettered at once.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        HandlerError {
            failure: Failure::Permanent,
            error: error.into(),
        }
    }

    /// Retry or permanent.
    pub fn failure(&self) -> Failure {
        self.failure
    }

    /// Whether it is [`Failure::Permanent`].
    pub fn is_permanent(&self) -> bool {
        self.failure == Failure::Permanent
    }

    /// The error underneath.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// Takes the error underneath out.
    pub fn into_error(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.error
    }
}

/// Any error is a retryable failure (`?` in a handler).
impl<E> From<E> for HandlerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        HandlerError::retry(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("failure", &self.failure)
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_grows_by_factor_and_caps() {
        let p = RetryPolicy::Exponential {
            first: Duration::from_millis(10),
            max: Duration::from_millis(500),
            factor: 3,
        };
        p.validate().unwrap();
        let delays: Vec<_> = (1..=6)
            .map(|a| match p.retry(a) {
                Retry::After(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [10, 30, 90, 270, 500, 500]);
        // Attempt 0 (never given by adapters) and huge attempts are safe.
        assert_eq!(p.retry(0), Retry::After(Duration::from_millis(10)));
        assert_eq!(p.retry(u32::MAX), Retry::After(Duration::from_millis(500)));
    }

    #[test]
    fn ranges_are_checked() {
        let exp = |first, max, factor| RetryPolicy::Exponential { first, max, factor };
        let s = Duration::from_secs;
        assert!(exp(s(1), s(2), 0).validate().is_err());
        assert!(exp(s(1), s(2), 17).validate().is_err());
        assert!(exp(s(1), s(2), 16).validate().is_ok());
        assert!(exp(s(0), Retry::MAX_DELAY, 1).validate().is_ok());
        assert!(exp(s(0), Retry::MAX_DELAY + s(1), 1).validate().is_err());
        assert!(RetryPolicy::Fixed(Retry::MAX_DELAY).validate().is_ok());
        assert!(RetryPolicy::Immediate.validate().is_ok());
        let e = exp(s(3), s(2), 2).validate().unwrap_err().to_string();
        assert!(e.contains("first of RetryPolicy::Exponential"), "{e}");
    }

    #[test]
    fn errors_convert_and_keep_their_text() {
        let e: HandlerError = std::io::Error::other("disk full").into();
        assert!(!e.is_permanent());
        assert_eq!(e.to_string(), "disk full");
        let e = HandlerError::permanent("unknown SKU");
        assert!(e.is_permanent());
        assert_eq!(e.to_string(), "unknown SKU");
        assert_eq!(e.into_error().to_string(), "unknown SKU");
    }
}
