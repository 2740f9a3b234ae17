//! Runnable examples of switchyard. Each example's logic lives in a module
//! here, with a `run(url)` function returning a summary with exact counts;
//! the binaries in `examples/` are thin `main`s that call it, and the tests
//! in `tests/` call it against `memory://` and a real `redis-server`.
//!
//! ```sh
//! cargo run -p switchyard-examples --example quickstart
//! cargo run -p switchyard-examples --example robot_telemetry
//! cargo run -p switchyard-examples --example order_workers
//! cargo run -p switchyard-examples --example chat_backplane
//! cargo run -p switchyard-examples --example presence_rooms
//! cargo run -p switchyard-examples --example events_library
//! cargo run -p switchyard-examples --example event_bus
//! cargo run -p switchyard-examples --example traced
//! cargo run -p switchyard-examples --example metrics
//! ```
//!
//! Every example connects to the URL in `SWITCHYARD_URL` (default
//! `memory://`, which needs no server) and finishes within seconds. Every
//! wait is bounded: an example that cannot finish returns an error naming
//! what it was waiting for instead of hanging.

pub mod chat_backplane;
pub mod event_bus;
pub mod events_library;
pub mod metrics_endpoint;
pub mod order_workers;
pub mod presence_rooms;
pub mod robot_telemetry;
pub mod traced;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use switchyard::Transport;
use tokio::runtime::RuntimeFlavor;

/// How long an example waits for any one phase before giving up.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

/// A short id unique to this run: process id, clock and a counter, so that
/// reruns on a persistent backend and concurrent runs in one process (tests)
/// never share topics or hubs.
pub fn run_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:06x}{n}", std::process::id(), nanos & 0xff_ffff)
}

/// The scheme of `url`, lowercase (`memory`, `redis+streams`, ...).
pub fn scheme(url: &str) -> String {
    url.split("://").next().unwrap_or("").to_ascii_lowercase()
}

/// Whether `url` names a Redis adapter.
pub fn is_redis(url: &str) -> bool {
    let s = scheme(url);
    s.starts_with("redis+") || s.starts_with("rediss+")
}

/// Whether the query of `url` already sets `key`.
pub fn has_param(url: &str, key: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    })
}

/// The value of `key` in the query of `url`, if it is set.
pub fn param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    url.split_once('?').and_then(|(_, query)| {
        query.split('&').find_map(|pair| {
            pair.split_once('=')
                .and_then(|(k, v)| (k == key).then_some(v))
        })
    })
}

/// `url` with `key=value` appended to its query.
pub fn with_param(url: &str, key: &str, value: impl std::fmt::Display) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// `switchyard::connect(url)` for one role of an example (`"producer"`,
/// `"station"`…); the error names the role and the URL without its
/// password.
pub async fn connect_as(url: &str, role: &str) -> anyhow::Result<Arc<dyn Transport>> {
    switchyard::connect(url).await.with_context(|| {
        format!(
            "could not connect the {role} to {}",
            switchyard::redact_url(url)
        )
    })
}

/// A URL that the several transports of one example run share (as if they
/// were separate processes) and that no other run shares:
///
/// - `memory://` (a private hub per transport) becomes the named hub
///   `memory://{prefix}-{run id}`, keeping the query;
/// - a Redis URL without `namespace` gets `namespace={prefix}-{run id}`, so a
///   rerun never sees the keys or groups of an earlier one;
/// - anything else (`memory://NAME`, a URL with a namespace) is kept as is.
pub fn shared_url(url: &str, prefix: &str) -> String {
    if is_redis(url) && !has_param(url, "namespace") {
        return with_param(url, "namespace", format!("{prefix}-{}", run_id()));
    }
    if scheme(url) == "memory" && memory_hub_name(url).is_empty() {
        let query = url
            .split_once('?')
            .map_or(String::new(), |(_, q)| format!("?{q}"));
        return format!("memory://{prefix}-{}{query}", run_id());
    }
    url.to_owned()
}

/// The hub name of a `memory://NAME?...` URL (empty for a private hub).
pub fn memory_hub_name(url: &str) -> &str {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['?', '/']).next())
        .unwrap_or("")
}

/// Runs a blocking closure (such as a hook that stops a `redis-server`)
/// without stalling the other tasks of a multi-threaded runtime; on a
/// current-thread runtime it simply runs.
pub fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Closes every transport, returning the first error.
pub async fn close_all(transports: &[&Arc<dyn Transport>]) -> anyhow::Result<()> {
    let mut first = None;
    for t in transports {
        if let Err(e) = t.close().await {
            first.get_or_insert(
                anyhow::Error::from(e).context(format!("closing the {} transport", t.name())),
            );
        }
    }
    first.map_or(Ok(()), Err)
}

/// Locks a mutex, ignoring poisoning (a panicked task has already failed
/// the example).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `done` every 10 ms until it returns true; fails after `timeout`
/// with an error built by `status` (which should say what was seen so far).
pub async fn wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    status: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?}: {}", status());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Like [`wait_until`] with an async condition.
pub async fn wait_until_async<F, Fut>(
    timeout: Duration,
    mut done: F,
    what: &str,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !done().await {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Awaits `future` for at most `timeout`, failing with `what` in the error.
pub async fn within<T>(
    timeout: Duration,
    what: &str,
    future: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result,
        Err(_) => bail!("timed out after {timeout:?} while {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert!(is_redis("redis+streams://h:1"));
        assert!(is_redis("rediss+pubsub://h"));
        assert!(!is_redis("memory://"));
        assert_eq!(
            with_param("memory://", "retention", 5),
            "memory://?retention=5"
        );
        assert_eq!(
            with_param("redis+streams://h?a=1", "b", 2),
            "redis+streams://h?a=1&b=2"
        );
        assert!(has_param("redis+streams://h?namespace=x", "namespace"));
        assert!(!has_param("redis+streams://h?ns=x", "namespace"));
        assert_eq!(
            param("redis+streams://h?a=1&namespace=x", "namespace"),
            Some("x")
        );
        assert_eq!(param("redis+streams://h?ns=x", "namespace"), None);
        assert!(shared_url("memory://", "x").starts_with("memory://x-"));
        assert!(shared_url("memory://?retention=5", "x").ends_with("?retention=5"));
        assert_eq!(shared_url("memory://hub", "x"), "memory://hub");
        assert_eq!(memory_hub_name("memory://hub?retention=5"), "hub");
        assert_eq!(memory_hub_name("memory://?retention=5"), "");
        assert!(shared_url("redis+streams://h", "x").starts_with("redis+streams://h?namespace=x-"));
        assert_eq!(
            shared_url("redis+streams://h?namespace=n", "x"),
            "redis+streams://h?namespace=n"
        );
        assert_ne!(run_id(), run_id());
    }
}
