//! State shared by the transport, its writer and its subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{CircuitBreaker, Topic, TransportStats};
use switchyard_redis::RedisClient;
use switchyard_redis::SharedConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::StreamsConfig;
use crate::keys;
use crate::publish::Writer;

/// Publishing-side counters (see [`TransportStats`]).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// Everything a transport's tasks share. The shared connection `conn` is
/// for ordinary commands (XADD, XACK, XCLAIM, scripts) — never for blocking
/// reads, which use dedicated connections from `client`.
pub(crate) struct Inner {
    pub(crate) config: StreamsConfig,
    pub(crate) client: RedisClient,
    pub(crate) conn: SharedConnection,
    pub(crate) breaker: Arc<CircuitBreaker>,
    pub(crate) closed: AtomicBool,
    /// Becomes `true` on close; readers and background tasks watch it.
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) writer: Writer,
    /// Ack flushers of group subscribers; `close` waits for them to drain.
    pub(crate) group_flushers: Mutex<Vec<JoinHandle<()>>>,
    /// One per group subscriber: `true` once its closer handed back what it
    /// fetched; `close` waits for them.
    pub(crate) group_closers: Mutex<Vec<watch::Receiver<bool>>>,
    /// The latest `NOPERM` (for `health()`).
    pub(crate) denied: switchyard_redis::denied::Denials,
    /// This transport's open subscribers (`Transport::subscribers`).
    pub(crate) subscribers: Arc<crate::presence::Subscribers>,
    /// Subscriber readers that cannot read now (for `health()`).
    pub(crate) readers: ReaderHealth,
    /// `true` once `CLIENT ID` or `CLIENT UNBLOCK` was refused: closing a
    /// group member then waits for its blocked read to end instead of
    /// ending it (see `group::reader::settle`).
    pub(crate) no_unblock: AtomicBool,
}

/// How many subscriber readers (group or fan-out, one per stream on a
/// cluster) failed their last read or connect, and the last error.
#[derive(Default)]
pub(crate) struct ReaderHealth {
    down: std::sync::atomic::AtomicUsize,
    last: parking_lot::Mutex<Option<String>>,
}

impl ReaderHealth {
    /// A reader that was reading failed (`error`).
    pub(crate) fn went_down(&self, error: &str) {
        self.down.fetch_add(1, Ordering::AcqRel);
        *self.last.lock() = Some(error.to_owned());
    }

    /// A reader that had failed reads again (or ended).
    pub(crate) fn came_back(&self) {
        let _ = self
            .down
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// `Some(reason)` while any reader cannot read.
    pub(crate) fn reason(&self) -> Option<String> {
        let n = self.down.load(Ordering::Acquire);
        (n > 0).then(|| {
            let last = self.last.lock().clone().unwrap_or_default();
            format!("{n} subscriber reader(s) cannot read from redis (last error: {last})")
        })
    }
}

impl Inner {
    /// The stream key of `topic` in this transport's namespace.
    pub(crate) fn key(&self, topic: &Topic) -> String {
        keys::stream_key(&self.config.redis.namespace, topic)
    }

    /// The namespace (key prefix).
    pub(crate) fn namespace(&self) -> &str {
        &self.config.redis.namespace
    }

    /// Whether `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A receiver that sees `true` once the transport closes.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Remembers a group subscriber's ack flusher so `close` can wait for it.
    pub(crate) fn register_group_flusher(&self, task: JoinHandle<()>) {
        let mut tasks = self.group_flushers.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Remembers a group subscriber's closer so `close` can wait until it
    /// gave back what the subscriber fetched.
    pub(crate) fn register_group_closer(&self, done: watch::Receiver<bool>) {
        let mut closers = self.group_closers.lock();
        // A closed sender means the subscriber is gone (dropped).
        closers.retain(|d| !*d.borrow() && d.has_changed().is_ok());
        closers.push(done);
    }

    /// Waits (up to `timeout`) until every group closer ran (or was
    /// aborted by a drop); call after the shutdown signal.
    pub(crate) async fn drain_group_closers(&self, timeout: Duration) {
        let closers = std::mem::take(&mut *self.group_closers.lock());
        let all = futures::future::join_all(closers.into_iter().map(|mut d| async move {
            let _ = d.wait_for(|done| *done).await;
        }));
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// Waits (up to `timeout`) until the group flushers sent their queued
    /// acks; call after the shutdown signal.
    pub(crate) async fn drain_group_flushers(&self, timeout: Duration) {
        let tasks = std::mem::take(&mut *self.group_flushers.lock());
        let _ = tokio::time::timeout(timeout, futures::future::join_all(tasks)).await;
    }

    /// A snapshot of the publishing counters.
    pub(crate) fn transport_stats(&self) -> TransportStats {
        let mut s = TransportStats::default();
        s.published = self.stats.published.load(Ordering::Relaxed);
        s.publish_errors = self.stats.publish_errors.load(Ordering::Relaxed);
        s.dropped = self.stats.dropped.load(Ordering::Relaxed);
        s.reconnects = self.stats.reconnects.load(Ordering::Relaxed);
        s.breaker_rejections = self.breaker.rejections();
        s.breaker_open = self.breaker.state() != switchyard_core::BreakerState::Closed;
        s.breaker = Some(self.breaker.stats());
        s
    }
}

/// Resolves when `shutdown` turns `true` (or its sender is gone).
pub(crate) async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // An error means the transport is gone: treat as shut down.
    let _ = shutdown.wait_for(|closed| *closed).await;
}

/// Lets one warning through per interval and counts the ones held back, so
/// a persistent failure cannot flood the log.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimiter {
    /// A limiter allowing one warning per `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        WarnLimiter {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a warning may be logged now (with the number
    /// held back since the last one); `None` when it should be skipped.
    pub(crate) fn check(&self) -> Option<u64> {
        let mut st = self.state.lock();
        let now = Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                st.1 = st.1.saturating_add(1);
                None
            }
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

impl Default for WarnLimiter {
    /// One warning per 5 s.
    fn default() -> Self {
        WarnLimiter::new(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter() {
        let l = WarnLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check(), None);
        let l = WarnLimiter::new(Duration::ZERO);
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), Some(0));
    }
}
