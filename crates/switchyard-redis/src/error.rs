//! Mapping redis-rs errors onto switchyard's [`Error`].

use redis::RedisError;
use switchyard_core::Error;

/// Server error codes after which a retry can succeed.
pub const TRANSIENT_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "MASTERDOWN",
    "MOVED",
    "ASK",
    "READONLY",
    "CLUSTERDOWN",
    "NOREPLICAS",
];

/// Whether a redis-rs error is worth retrying: I/O problems, timeouts,
/// dropped connections and the server codes in [`TRANSIENT_CODES`].
pub fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    match e.code() {
        Some(code) => is_transient_code(code),
        None => false,
    }
}

/// Whether a server error code (the first word of an error reply) is transient.
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
    if is_transient(e) {
        Error::Transient(format!("redis {operation}: {e}"))
    } else {
        Error::Backend(format!("redis {operation}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert!(!is_transient_code(c), "{c}");
        }
    }

    #[test]
    fn io_errors_are_transient() {
        let e = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(is_transient(&e));
        assert!(classify("XADD", &e).is_transient());
    }
}
