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
    /// A TLS connection could not be set up although the server was
    /// reached: its certificate was refused (`kind` `unknown issuer`,
    /// `name mismatch`, `expired`, ...), it refused ours (`client
    /// certificate refused`), or the port does not speak TLS. Distinct
    /// from [`Error::Connect`] (unreachable) and not transient: a retry
    /// meets the same certificate; fix the trust or identity settings.
    #[error("TLS with {backend} at {addr} failed ({kind}): {reason}")]
    Tls {
        /// Backend kind, e.g. `redis`.
        backend: &'static str,
        /// Address tried (host:port), never with credentials.
        addr: String,
        /// Short, stable category: `unknown issuer`, `name mismatch`,
        /// `expired`, `not yet valid`, `client certificate refused`,
        /// `not a TLS port`, `handshake`.
        kind: &'static str,
        /// What happened and what to do.
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
        /// Comma-separated list of the schemes this build knows: compiled in,
        /// needing a feature (`(needs feature ...)`) and registered at run
        /// time (`(registered)`).
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
    /// A message breaks one of the message limits ([`Limits`](crate::Limits),
    /// or an adapter's lower payload bound) and was refused at publish:
    /// nothing of it (nothing of its batch) was sent. Not transient: make
    /// the message smaller, or carry large data out of band and publish a
    /// reference to it.
    #[error(
        "message refused: {what} is {actual}, allowed {min} to {max} ({limit}); nothing was sent: make it smaller or carry large data out of band"
    )]
    InvalidMessage {
        /// What was measured (`payload size in bytes`, `header count`, ...;
        /// for a batch, which message). Never contains a header value.
        what: String,
        /// The message's value.
        actual: usize,
        /// Smallest value allowed.
        min: usize,
        /// Largest value allowed.
        max: usize,
        /// The limit broken, e.g. `Limits::MAX_HEADER_BYTES`.
        limit: &'static str,
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

    /// Shorthand for an [`Error::InvalidUrl`]; the URL is redacted (see
    /// [`redact_url`]) and whatever the redaction hides is also scrubbed
    /// from `reason`, in case the reason quotes part of the URL.
    pub fn invalid_url(url: &str, reason: impl Into<String>) -> Self {
        Error::InvalidUrl {
            url: redact_url(url),
            reason: scrub_url_secret(&reason.into(), url),
        }
    }
}

/// Hides the credentials of a URL: `scheme://user:password@host` becomes
/// `scheme://user:***@host`.
///
/// It works on any string, whether it parses as a URL or not, so it is safe
/// to call on anything a user typed:
///
/// - everything between the scheme (`scheme://`, or `scheme:` when the `//`
///   is missing) and the **last** `@` of the string is hidden, so a password
///   with a raw `@`, `/`, `?` or `#` is hidden whole. Only a user name made
///   of ASCII letters, digits, `-`, `.`, `_`, `~` and `%`, right after
///   `scheme://` and followed by `:`, is kept; otherwise the whole part
///   before the `@` becomes `***`;
/// - without any `@`, a non-numeric "port" (`scheme://user:password` with
///   the host forgotten) is hidden up to the end of the string, unless the
///   scheme is a Sentinel or cluster form (`…+sentinel`, `…+cluster`) and
///   every entry of its host list is `host[:port]`
///   (`redis+streams+cluster://h1:7000,h2:7001`).
///
/// ```
/// use switchyard_core::redact_url;
/// assert_eq!(redact_url("redis://app:s3cret@db:6379/0"), "redis://app:***@db:6379/0");
/// assert_eq!(redact_url("redis://:s3cret@db"), "redis://:***@db");
/// assert_eq!(redact_url("redis://app:s3c#r/et@db"), "redis://app:***@db");
/// assert_eq!(redact_url("redis:app:s3cret@db"), "redis:***@db");
/// assert_eq!(redact_url("redis://app:s3cret"), "redis://app:***");
/// assert_eq!(redact_url("memory://"), "memory://");
/// assert_eq!(redact_url("redis+streams+cluster://h1:7000,h2:7001"), "redis+streams+cluster://h1:7000,h2:7001");
/// assert_eq!(redact_url("redis+streams+cluster://app:s3cret,h2:7001"), "redis+streams+cluster://app:***");
/// ```
pub fn redact_url(url: &str) -> String {
    match secret_span(url) {
        Some((from, to)) => format!("{}***{}", &url[..from], &url[to..]),
        None => url.to_owned(),
    }
}

/// The part of `url` that [`redact_url`] hides (the password, or the whole
/// user information), if any.
///
/// ```
/// use switchyard_core::url_secret;
/// assert_eq!(url_secret("redis://app:s3cret@db"), Some("s3cret"));
/// assert_eq!(url_secret("redis://db:6379"), None);
/// ```
pub fn url_secret(url: &str) -> Option<&str> {
    secret_span(url).map(|(from, to)| &url[from..to])
}

/// Replaces in `text` every occurrence of what [`redact_url`] hides in `url`
/// (as typed and percent-decoded) with `***`: a safety net for messages
/// that may quote parts of a URL.
///
/// ```
/// use switchyard_core::scrub_url_secret;
/// let url = "redis://app:p%40ss@db";
/// assert_eq!(scrub_url_secret("auth p@ss failed", url), "auth *** failed");
/// ```
pub fn scrub_url_secret(text: &str, url: &str) -> String {
    let Some(secret) = url_secret(url) else {
        return text.to_owned();
    };
    // The hidden part may run past the real password when the URL has more
    // `@`s (in a password or a path), or hold a user name the redaction
    // could not tell apart: scrub every candidate, longest first.
    // Cut-off prefixes shorter than 4 bytes are left alone: scrubbing
    // them would garble the message and hide next to nothing.
    let mut candidates: Vec<String> = secret
        .match_indices(['@', '/', '?', '#'])
        .map(|(i, _)| &secret[..i])
        .filter(|c| c.len() >= 4)
        .chain([secret])
        .flat_map(|c| [c, c.split_once(':').map_or("", |(_, pw)| pw)])
        .filter(|c| !c.is_empty())
        .flat_map(|c| [c.to_owned(), percent_decoded(c)])
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.len()));
    candidates
        .iter()
        .fold(text.to_owned(), |out, c| out.replace(c.as_str(), "***"))
}

/// Byte range of the credentials in `url` (see [`redact_url`]).
fn secret_span(url: &str) -> Option<(usize, usize)> {
    let start = scheme_prefix_len(url);
    let rest = &url[start..];
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        if userinfo.is_empty() {
            return None;
        }
        // Without the `//` what precedes the `:` may be the password itself;
        // so may it when nothing follows the `:` (`redis://S3cret:@h`, a
        // password typed where the user goes): then all of it is hidden.
        let from = match userinfo.find(':') {
            Some(colon)
                if url[..start].ends_with("//")
                    && colon + 1 < at
                    && userinfo[..colon].bytes().all(is_plain_user_byte) =>
            {
                colon + 1
            }
            _ => 0,
        };
        return Some((start + from, start + at));
    }
    // No `@`: a "port" that is not a number is most likely a password whose
    // host was forgotten (`redis://app:s3cret`). Hide it and all after it.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The host list of a Sentinel or cluster URL: nothing to hide when
    // every entry is `host`, `host:port` or `[v6]:port`.
    let scheme = url[..start]
        .trim_start()
        .trim_end_matches("//")
        .trim_end_matches(':');
    let lists_hosts = scheme.ends_with("+sentinel") || scheme.ends_with("+cluster");
    let authority = &rest[..authority_end];
    if lists_hosts && authority.contains(',') && authority.split(',').all(is_host_port) {
        return None;
    }
    // An IPv6 host is bracketed right at the start: `[::1]:6379`.
    let after_bracket = match rest.starts_with('[') {
        true => rest[..authority_end].find(']').map_or(0, |b| b + 1),
        false => 0,
    };
    let colon = after_bracket + rest[after_bracket..authority_end].find(':')?;
    let after = &rest[colon + 1..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    let is_port = digits > 0
        && after[digits..]
            .chars()
            .next()
            .is_none_or(|c| matches!(c, '/' | '?' | '#'));
    if after.is_empty() || is_port {
        return None;
    }
    Some((start + colon + 1, url.len()))
}

/// Whether `part` reads as `host`, `host:port` or `[v6]:port` (a port of
/// digits only), so it holds no password.
fn is_host_port(part: &str) -> bool {
    let (host, port) = match part.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':').unwrap_or(rest)),
            None => return false,
        },
        None => match part.split_once(':') {
            Some((h, p)) => (h, p),
            None => (part, ""),
        },
    };
    !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// Length of `scheme://` (or of `scheme:` when the `//` is missing) at the
/// start of `url`, after any leading white space; 0 when it does not start
/// with a scheme.
fn scheme_prefix_len(url: &str) -> usize {
    let lead = url.len() - url.trim_start().len();
    let url = &url[lead..];
    let bytes = url.as_bytes();
    if !bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    let scheme_len = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(bytes.len());
    if bytes.get(scheme_len) != Some(&b':') {
        return 0;
    }
    if url[scheme_len + 1..].starts_with("//") {
        lead + scheme_len + 3
    } else {
        lead + scheme_len + 1
    }
}

/// A byte a user name may contain for `redact_url` to keep it.
fn is_plain_user_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
}

/// `%XX` sequences decoded (invalid ones kept as they are).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        // Certificate failures: a retry meets the same certificate.
        let tls = Error::Tls {
            backend: "redis",
            addr: "127.0.0.1:6390".into(),
            kind: "unknown issuer",
            reason: "the server certificate is not signed by a trusted CA".into(),
        };
        assert!(!tls.is_transient());
        assert_eq!(
            tls.to_string(),
            "TLS with redis at 127.0.0.1:6390 failed (unknown issuer): the server certificate is not signed by a trusted CA"
        );
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
        assert_eq!(redact_url("redis://u@h"), "redis://***@h");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url("redis://[::1]:6379"), "redis://[::1]:6379");
        // Found by `redaction_hides_any_password` (pw = "AS3cretPW:"): an
        // empty password after the `:` left `redis://AS3cretPW:@h` as it was.
        assert_eq!(redact_url("redis://u:@h"), "redis://***@h");
        assert_eq!(redact_url("redis://AS3cretPW:@h"), "redis://***@h");
        // An `@` after the authority still counts: over-hiding is safe.
        assert_eq!(redact_url("redis://h/p@x"), "redis://***@x");
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
        // No scheme (or what looks like a one-letter scheme): everything
        // before the last `@` after it is hidden.
        assert_eq!(redact_url("redis//u:pw@h"), "***@h");
        assert_eq!(redact_url("u:pw@h"), "u:***@h");
        assert_eq!(redact_url("h:1@"), "h:***@");
        let e = Error::invalid_url("redis://u:hunter2@h:x", "bad port");
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    /// Every ASCII punctuation character, for the password tests.
    fn punctuation() -> impl Iterator<Item = char> {
        (0x21u8..0x7f)
            .map(char::from)
            .filter(char::is_ascii_punctuation)
    }

    fn percent_encode(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    /// The URL shapes a password ends up in, well formed or not. The first
    /// used to print `redis+streams://app:S3cretPW#x@127.0.0.1:7441` whole:
    /// the `#` ended the authority before the `@` was seen.
    fn shapes(password: &str) -> Vec<String> {
        [
            "redis+streams://app:{pw}@127.0.0.1:7441",
            "redis+streams://app:{pw}@127.0.0.1:7441/0?namespace=n",
            "redis+streams://:{pw}@127.0.0.1",
            "rediss+pubsub://app:{pw}@[::1]:1/x@y",
            "redis+streams:app:{pw}@127.0.0.1:7441",
            "redis+streams:/app:{pw}@127.0.0.1",
            "redis+streams//app:{pw}@127.0.0.1",
            "app:{pw}@127.0.0.1",
            "  redis://app:{pw}@h",
            "redis://{pw}@h",
            "redis://app:{pw}",
            "redis://app:{pw}/0",
            "memory://app:{pw}@h?retention=1",
        ]
        .iter()
        .map(|shape| shape.replace("{pw}", password))
        .collect()
    }

    #[test]
    fn passwords_with_any_punctuation_never_show() {
        for p in punctuation() {
            let secret = format!("S3cretPW{p}x");
            for password in [secret.clone(), percent_encode(&secret)] {
                for url in shapes(&password) {
                    if url == format!("redis://{password}@h") && p == ':' && password == secret {
                        // `redis://S3cretPW:x@h` is user `S3cretPW`, password `x`.
                        assert_eq!(redact_url(&url), "redis://S3cretPW:***@h");
                        continue;
                    }
                    let shown = redact_url(&url);
                    for needle in [secret.as_str(), password.as_str(), "S3cretPW"] {
                        assert!(!shown.contains(needle), "{url} -> {shown}");
                    }
                    let e = Error::invalid_url(&url, format!("quoting {url} and {password}"));
                    let text = format!("{e} {e:?}");
                    assert!(!text.contains("S3cretPW"), "{url} -> {text}");
                }
            }
        }
    }

    #[test]
    fn scrubbing_quoted_secrets() {
        let url = "redis://app:p%40ss%2Fw@h";
        assert_eq!(url_secret(url), Some("p%40ss%2Fw"));
        assert_eq!(
            scrub_url_secret("a p@ss/w b p%40ss%2Fw", url),
            "a *** b ***"
        );
        assert_eq!(scrub_url_secret("nothing", "redis://h"), "nothing");
        assert_eq!(percent_decoded("%+1%zz%4"), "%+1%zz%4");
        assert_eq!(percent_decoded("a%20b"), "a b");
    }

    proptest::proptest! {
        /// Any password in any shape. Its start has no `:` (which splits
        /// user and password), no `@` and no leading digit: without a host,
        /// `redis://app:x@S3cret` and `redis://app:123/S3cret` are a host
        /// and a port plus a path to anyone. Raw `@`s are in the test above.: redaction never panics and never shows it.
        #[test]
        fn redaction_hides_any_password(pw in "[^:@0-9\u{0}][^:@\u{0}]{0,23}S3cretPW[ -~]{0,8}", shape in 0usize..13) {
            let urls = shapes(&pw);
            let url = &urls[shape % urls.len()];
            let shown = redact_url(url);
            if let Some((user, _)) = pw.split_once(':').filter(|_| *url == format!("redis://{pw}@h")) {
                // `redis://S3cretPW:x@h` is user `S3cretPW`, password `x`
                // (as in `passwords_with_any_punctuation_never_show`): the
                // password after the `:` is hidden, or all of it.
                let hidden = [format!("redis://{user}:***@h"), "redis://***@h".to_owned()];
                proptest::prop_assert!(hidden.contains(&shown), "{} -> {}", url, shown);
            } else {
                proptest::prop_assert!(!shown.contains("S3cretPW"), "{} -> {}", url, shown);
            }
        }

        /// Arbitrary text: never panics.
        #[test]
        fn redaction_never_panics(s in "\\PC{0,64}") {
            let _ = redact_url(&s);
            let _ = scrub_url_secret(&s, &s);
        }
    }

    #[test]
    fn long_topics_are_truncated_in_errors() {
        let long = "a".repeat(1000);
        let e = Error::invalid_topic(&long, "too long");
        assert!(e.to_string().len() < 200);
    }
}
