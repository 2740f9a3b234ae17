//! The one error type of switchyard.

use std::time::Duration;

/// Result alias used across switchyard.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in switchyard.
///
/// Messages name what failed and, where it helps, what to do about it.
/// They never contain passwords: URLs are redacted before they are stored
/// in an error (see [`redact_url`]).
///
/// Use [`Error::is_transient`] to decide whether retrying the same call can
/// help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not reach the backend.
    #[error("could not connect to {backend} at {addr} within {timeout:?}: {reason}")]
    Connect {
        /// Backend kind, e.g. `redis`.
        backend: &'static str,
        /// Address tried (host:port), never with credentials.
        addr: String,
        /// The connect timeout that applied.
        timeout: Duration,
        /// Why it failed.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        operation: String,
        /// How long it was given.
        after: Duration,
    },
    /// The backend reported a failure that may go away (connection dropped,
    /// server loading, failover in progress, ...).
    #[error("transient backend error: {0}")]
    Transient(String),
    /// The backend reported a failure that a retry will not fix (wrong type,
    /// permission denied, unsupported command, ...).
    #[error("backend error: {0}")]
    Backend(String),
    /// The circuit breaker is open: the backend failed repeatedly and calls are
    /// refused for a while so it can recover.
    #[error(
        "circuit breaker open for {backend}: refusing work for {retry_in:?} after repeated failures"
    )]
    CircuitOpen {
        /// Backend kind.
        backend: &'static str,
        /// Time until the breaker lets a trial call through.
        retry_in: Duration,
    },
    /// A payload could not be encoded or decoded.
    #[error("codec error ({codec}): {reason}")]
    Codec {
        /// Codec name (`json`, `bincode`).
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A topic name or topic filter is not valid.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The rejected name (truncated when very long).
        topic: String,
        /// Which rule it broke.
        reason: String,
    },
    /// A configuration value is not valid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A connection URL is not valid. The URL is shown without its password.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL scheme is not known to this build.
    #[error("unknown url scheme {scheme:?}: this build supports {known}")]
    UnknownScheme {
        /// The scheme given.
        scheme: String,
        /// Comma-separated list of compiled-in schemes.
        known: String,
    },
    /// The adapter exists but its Cargo feature is not compiled in.
    #[error(
        "the {0:?} adapter is not compiled in: enable the `{0}` feature of the `switchyard` crate"
    )]
    FeatureNotEnabled(&'static str),
    /// The transport or subscriber was closed.
    #[error("closed: the transport or subscriber was closed")]
    Closed,
    /// The adapter does not support this operation.
    #[error("unsupported by the {adapter} adapter: {what}")]
    Unsupported {
        /// Adapter name.
        adapter: &'static str,
        /// What is not supported.
        what: String,
    },
    /// Messages from `origin` numbered `from..=to` were lost in transit
    /// (at-most-once backends report gaps instead of staying silent).
    ///
    /// This is an item in a subscriber's stream, not the end of it: the
    /// subscriber keeps receiving. React by resynchronising from a source of
    /// truth.
    #[error("lost messages {from}..={to} from origin {origin}")]
    Lost {
        /// The publishing instance whose messages were lost.
        origin: String,
        /// First lost sequence number.
        from: u64,
        /// Last lost sequence number.
        to: u64,
    },
    /// A delivery that could not be turned into a message (malformed entry).
    /// The adapter has already moved it aside; the subscriber keeps going.
    #[error("malformed message {id}: {reason}")]
    Malformed {
        /// Backend id of the entry.
        id: String,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed.
    ///
    /// True for connection failures, timeouts, transient backend errors and
    /// an open circuit breaker; false for bad input, bad configuration,
    /// closed transports and fatal backend errors.
    ///
    /// ```
    /// use switchyard_core::Error;
    /// assert!(Error::Transient("LOADING".into()).is_transient());
    /// assert!(!Error::Closed.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout { .. }
                | Error::Transient(_)
                | Error::CircuitOpen { .. }
        )
    }

    /// Shorthand for an [`Error::InvalidTopic`].
    pub fn invalid_topic(topic: &str, reason: impl Into<String>) -> Self {
        let mut shown: String = topic.chars().take(80).collect();
        if shown.len() < topic.len() {
            shown.push('…');
        }
        Error::InvalidTopic {
            topic: shown,
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidUrl`]; the URL is redacted.
    pub fn invalid_url(url: &str, reason: impl Into<String>) -> Self {
        Error::InvalidUrl {
            url: redact_url(url),
            reason: reason.into(),
        }
    }
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`.
///
/// Works on strings that do not parse as URLs too, so it is safe to call on
/// anything a user typed.
///
/// ```
/// use switchyard_core::redact_url;
/// assert_eq!(redact_url("redis://app:s3cret@db:6379/0"), "redis://app:***@db:6379/0");
/// assert_eq!(redact_url("redis://:s3cret@db"), "redis://:***@db");
/// assert_eq!(redact_url("memory://"), "memory://");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not `scheme://` (a typo such as `redis:/u:pw@h`): hide everything
        // from the first ':' to the last '@'.
        return match (url.find(':'), url.rfind('@')) {
            (Some(colon), Some(at)) if colon < at => {
                format!("{}:***{}", &url[..colon], &url[at..])
            }
            _ => url.to_owned(),
        };
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    // The userinfo ends at the last '@', searched in the whole rest and not
    // only in the authority: a password typed without percent-encoding may
    // hold '/', '?' or '#', which end the authority early. An '@' in a path
    // or query after a ':' hides more than the password, never less.
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let redacted_userinfo = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_owned(),
    };
    format!("{}{}{}", &url[..rest_start], redacted_userinfo, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(
            Error::Connect {
                backend: "redis",
                addr: "127.0.0.1:1".into(),
                timeout: Duration::from_secs(2),
                reason: "refused".into()
            }
            .is_transient()
        );
        assert!(
            Error::Timeout {
                operation: "x".into(),
                after: Duration::from_millis(1)
            }
            .is_transient()
        );
        assert!(
            Error::CircuitOpen {
                backend: "redis",
                retry_in: Duration::from_secs(1)
            }
            .is_transient()
        );
        assert!(!Error::Backend("WRONGTYPE".into()).is_transient());
        assert!(!Error::invalid_topic("a b", "space").is_transient());
        assert!(!Error::FeatureNotEnabled("redis-streams").is_transient());
        assert!(!Error::InvalidConfig("x".into()).is_transient());
    }

    #[test]
    fn connect_message_names_address_and_timeout() {
        let e = Error::Connect {
            backend: "redis",
            addr: "127.0.0.1:6390".into(),
            timeout: Duration::from_secs(2),
            reason: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "could not connect to redis at 127.0.0.1:6390 within 2s: connection refused"
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("redis://u:p@h:1/2?x=y"),
            "redis://u:***@h:1/2?x=y"
        );
        assert_eq!(redact_url("redis://u@h"), "redis://u@h");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://h/p@x"), "redis://h/p@x");
        assert_eq!(redact_url("redis://a:b:c@h"), "redis://a:***@h");
        // Unencoded '/', '?', '#' or '@' in a password (found by the
        // property test `raw_password_never_shows` of switchyard-redis:
        // `redis+streams://app:Zq7?@127.0.0.1:6379` failed to parse and its
        // error showed the password).
        for pw in ["Zq7?", "p/w", "p#w", "p@w", "p?a/b#c@d"] {
            let shown = redact_url(&format!("redis://u:{pw}@h:1/0"));
            assert_eq!(shown, "redis://u:***@h:1/0", "{pw}");
        }
        // No `://` (found by `password_never_shows` of redis-pubsub:
        // `redis+pubsub:/app:Zq7secret@127.0.0.1` was quoted whole).
        assert_eq!(redact_url("redis:/u:pw@h"), "redis:***@h");
        assert_eq!(redact_url("redis//u:pw@h"), "redis//u:***@h");
        assert_eq!(redact_url("u:pw@h"), "u:***@h");
        assert_eq!(redact_url("h:1@"), "h:***@");
        let e = Error::invalid_url("redis://u:hunter2@h:x", "bad port");
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn long_topics_are_truncated_in_errors() {
        let long = "a".repeat(1000);
        let e = Error::invalid_topic(&long, "too long");
        assert!(e.to_string().len() < 200);
    }
}
