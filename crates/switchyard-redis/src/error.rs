//! Mapping redis-rs errors onto switchyard's [`Error`], by what a retry
//! can fix (redis-rs's `retry_method()` is the model):
//!
//! | what happened | [`RetryMethod`] | switchyard error |
//! |---|---|---|
//! | `BUSY`, `TRYAGAIN`, `NOREPLICAS`, a timeout | [`WaitAndRetry`](RetryMethod::WaitAndRetry) | [`Error::Transient`] |
//! | I/O error, dropped or refused connection, `LOADING`, `MASTERDOWN` | [`Rediscover`](RetryMethod::Rediscover) | [`Error::Transient`] |
//! | `READONLY` (the server is a replica) | [`Rediscover`](RetryMethod::Rediscover) | [`Error::Backend`] naming the replica and the fix |
//! | `MOVED`, `ASK`, `CLUSTERDOWN`, `CROSSSLOT` | [`NotStandalone`](RetryMethod::NotStandalone) | [`Error::Backend`]: the server is a cluster node |
//! | anything else (`WRONGTYPE`, `NOPERM`, `NOGROUP`, ...) | [`NoRetry`](RetryMethod::NoRetry) | [`Error::Backend`] |
//!
//! "Rediscover" means: drop the connection and open a new one — with a
//! Sentinel URL that asks the sentinels for the primary again — never
//! "send the same command to the same node again". A `READONLY` reply is
//! not transient on its own: retrying on the replica fails forever, so
//! without Sentinel the caller hears at once that the URL names a replica.

use redis::RedisError;
use switchyard_core::Error;

/// Server error codes after which waiting and sending the same command to
/// the same server can succeed.
pub const TRANSIENT_CODES: &[&str] = &["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS"];

/// Server error codes meaning the connection must be replaced (the server
/// is a replica, still loading, or lost its primary): reconnect, and with
/// Sentinel ask the sentinels for the primary again.
pub const REDISCOVER_CODES: &[&str] = &["READONLY", "LOADING", "MASTERDOWN"];

/// Server error codes of a Redis Cluster node. Nothing routes around them
/// on a standalone connection, so they are never transient.
pub const CLUSTER_CODES: &[&str] = &["MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT"];

/// What a retry can fix, for one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryMethod {
    /// The same command on the same server fails again.
    NoRetry,
    /// Wait a little and send the same command again on the same connection.
    WaitAndRetry,
    /// Open a new connection (with Sentinel: to the primary the sentinels
    /// name now), then send the command again.
    Rediscover,
    /// The server is a Redis Cluster node: a standalone connection cannot
    /// follow the redirection. Not retryable.
    NotStandalone,
}

impl RetryMethod {
    /// Whether a retry (after waiting, or after reconnecting) can help.
    pub fn is_retryable(self) -> bool {
        matches!(self, RetryMethod::WaitAndRetry | RetryMethod::Rediscover)
    }
}

/// What a retry can fix after the server error reply with `code`.
pub fn retry_method_code(code: &str) -> RetryMethod {
    if CLUSTER_CODES.contains(&code) {
        RetryMethod::NotStandalone
    } else if REDISCOVER_CODES.contains(&code) {
        RetryMethod::Rediscover
    } else if TRANSIENT_CODES.contains(&code) {
        RetryMethod::WaitAndRetry
    } else {
        RetryMethod::NoRetry
    }
}

/// What a retry can fix after the redis-rs error `e`.
pub fn retry_method(e: &RedisError) -> RetryMethod {
    if let Some(code) = e.code() {
        return retry_method_code(code);
    }
    if e.is_timeout() {
        return RetryMethod::WaitAndRetry;
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return RetryMethod::Rediscover;
    }
    RetryMethod::NoRetry
}

/// Whether a redis-rs error is worth retrying: I/O problems, timeouts,
/// dropped connections and the codes in [`TRANSIENT_CODES`]. `READONLY`
/// and the cluster codes ([`CLUSTER_CODES`]) are not.
pub fn is_transient(e: &RedisError) -> bool {
    match e.code() {
        Some(code) => is_transient_code(code),
        None => retry_method(e).is_retryable(),
    }
}

/// Whether a server error code (the first word of an error reply) is
/// transient: in [`TRANSIENT_CODES`].
pub fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// The server error code of `e`, if it came from the server (`NOGROUP`, `BUSYGROUP`, ...).
pub fn code(e: &RedisError) -> Option<&str> {
    e.code()
}

/// Converts a redis-rs error from `operation` into a switchyard error,
/// transient or not. redis-rs error texts never contain passwords.
pub fn classify(operation: &str, e: &RedisError) -> Error {
    match e.code() {
        Some(code) => classify_reply(operation, &format!("{code} {}", e.detail().unwrap_or(""))),
        None if is_transient(e) => Error::Transient(format!("redis {operation}: {e}")),
        None => Error::Backend(format!("redis {operation}: {e}")),
    }
}

/// Converts the server's error reply `text` (its code first, as in
/// `READONLY You can't write against a read only replica.`) to `operation`
/// into a switchyard error, saying what to do where the code says it.
pub fn classify_reply(operation: &str, text: &str) -> Error {
    let text = text.trim_end();
    let code = text.split_whitespace().next().unwrap_or("");
    match retry_method_code(code) {
        RetryMethod::NotStandalone => Error::Backend(format!(
            "redis {operation}: {text}: the server is a Redis Cluster node, which switchyard does not support; point the URL at a standalone Redis or use the Sentinel URL form (redis+streams+sentinel://sentinel:26379/master-name)"
        )),
        _ if code == "READONLY" => Error::Backend(format!(
            "redis {operation}: {text}: connected to a replica (read-only); point the URL at the primary, or use the Sentinel URL form (redis+streams+sentinel://sentinel:26379/master-name) so the primary is found again after a failover"
        )),
        _ if is_transient_code(code) => Error::Transient(format!("redis {operation}: {text}")),
        _ => Error::Backend(format!("redis {operation}: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(text: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn codes() {
        for c in TRANSIENT_CODES {
            assert!(is_transient_code(c));
        }
        for c in [
            "WRONGTYPE",
            "NOGROUP",
            "BUSYGROUP",
            "ERR",
            "NOPERM",
            "NOSCRIPT",
            "MOVED",
            "ASK",
            "CLUSTERDOWN",
            "CROSSSLOT",
            "READONLY",
        ] {
            assert!(!is_transient_code(c), "{c}");
        }
        assert_eq!(retry_method_code("READONLY"), RetryMethod::Rediscover);
        assert_eq!(retry_method_code("LOADING"), RetryMethod::Rediscover);
        assert_eq!(retry_method_code("MASTERDOWN"), RetryMethod::Rediscover);
        assert_eq!(retry_method_code("BUSY"), RetryMethod::WaitAndRetry);
        assert_eq!(retry_method_code("TRYAGAIN"), RetryMethod::WaitAndRetry);
        assert_eq!(retry_method_code("NOREPLICAS"), RetryMethod::WaitAndRetry);
        assert_eq!(retry_method_code("MOVED"), RetryMethod::NotStandalone);
        assert_eq!(retry_method_code("ASK"), RetryMethod::NotStandalone);
        assert_eq!(retry_method_code("CLUSTERDOWN"), RetryMethod::NotStandalone);
        assert_eq!(retry_method_code("NOPERM"), RetryMethod::NoRetry);
        assert_eq!(retry_method_code("WRONGTYPE"), RetryMethod::NoRetry);
    }

    /// Before: MOVED, ASK, READONLY and CLUSTERDOWN were all transient, so
    /// a URL naming a cluster node or a replica retried until the circuit
    /// breaker opened (`redis XADD: READONLY You can't write against a read
    /// only replica.` as `transient backend error`), and nothing said why.
    #[test]
    fn cluster_and_replica_replies_are_not_transient_and_say_what_to_do() {
        for text in [
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "CLUSTERDOWN The cluster is down",
        ] {
            for e in [
                classify("XADD", &server_error(text)),
                classify_reply("XADD", text),
            ] {
                assert!(!e.is_transient(), "{text}: {e}");
                assert!(matches!(e, Error::Backend(_)), "{text}: {e}");
                assert!(e.to_string().contains("Redis Cluster node"), "{e}");
                assert!(e.to_string().contains(text), "{e}");
            }
            assert!(!is_transient(&server_error(text)), "{text}");
        }
        let text = "READONLY You can't write against a read only replica.";
        for e in [
            classify("XADD", &server_error(text)),
            classify_reply("XADD", text),
        ] {
            assert!(!e.is_transient(), "{e}");
            assert!(
                e.to_string().contains("connected to a replica (read-only)"),
                "{e}"
            );
            assert!(e.to_string().contains("sentinel"), "{e}");
        }
        assert_eq!(retry_method(&server_error(text)), RetryMethod::Rediscover);
    }

    #[test]
    fn loading_and_busy_stay_transient() {
        for text in [
            "LOADING Redis is loading the dataset in memory",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "BUSY Redis is busy running a script.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "NOREPLICAS Not enough good replicas to write.",
        ] {
            assert!(
                classify("XADD", &server_error(text)).is_transient(),
                "{text}"
            );
            assert!(classify_reply("XADD", text).is_transient(), "{text}");
        }
        let e = classify_reply("XADD", "WRONGTYPE Operation against a key");
        assert!(!e.is_transient());
    }

    #[test]
    fn io_errors_are_transient_and_mean_rediscover() {
        let e = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(is_transient(&e));
        assert_eq!(retry_method(&e), RetryMethod::Rediscover);
        assert!(classify("XADD", &e).is_transient());
    }
}
