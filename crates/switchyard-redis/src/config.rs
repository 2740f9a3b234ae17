//! Connection settings parsed from a URL or built in code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::{Error, Result, redact_url};

use crate::parse::{check_shape, percent_decode};
pub use crate::parse::{parse_duration, validate_namespace};
use crate::range::{HOUR, MILLISECOND, MINUTE, Origin, check_count, check_duration};

/// A password that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The password itself; keep it out of logs and errors.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where and how to reach Redis, shared by both Redis adapters.
///
/// Parse it from a URL with [`RedisConfig::from_url`]:
///
/// ```text
/// redis+streams://[user[:password]@]host[:port][/db][?namespace=NS&connect_timeout=2s&response_timeout=5s&...]
/// rediss+streams://...   (TLS; likewise redis+pubsub:// and rediss+pubsub://)
/// redis+streams+sentinel://[user[:password]@]s1:26379[,s2:26379...]/master-name[/db][?sentinel_auth=same&...]
/// redis+streams+cluster://[user[:password]@]h1:7000[,h2:7001...][?...]
/// ```
///
/// (the Sentinel form, likewise `redis+pubsub+sentinel://` and the
/// `rediss+…+sentinel://` TLS variants: see [`crate::sentinel`]; the
/// cluster form, likewise `redis+pubsub+cluster://` and
/// `rediss+…+cluster://`: see [`crate::cluster`]),
///
/// or build it in code:
///
/// ```
/// use std::time::Duration;
/// use switchyard_redis::RedisConfig;
/// let cfg = RedisConfig::new("127.0.0.1", 6379)
///     .with_namespace("fleet-a")
///     .with_connect_timeout(Duration::from_secs(1));
/// assert_eq!(cfg.addr(), "127.0.0.1:6379");
/// ```
///
/// Query parameters not known here are kept in [`RedisConfig::params`] for
/// the adapter, which rejects the ones it does not know either.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Host name or IP address (not empty).
    pub host: String,
    /// TCP port: 1 to 65535 (default 6379).
    pub port: u16,
    /// Database number: 0 to 2147483647 (default 0; the URL path `/N`).
    pub db: i64,
    /// ACL user name.
    pub username: Option<String>,
    /// Password (for the ACL user, or `requirepass`).
    pub password: Option<Secret>,
    /// Use TLS.
    pub tls: bool,
    /// CA certificate(s) (PEM) to trust instead of the platform's roots
    /// (URL `tls_ca`; needs TLS). See [`crate::tls`].
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for servers that require one
    /// (`tls-auth-clients yes`; URL `tls_cert`, always with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of [`tls_cert`](Self::tls_cert) (URL `tls_key`).
    pub tls_key: Option<PathBuf>,
    /// DANGEROUS: accept any server certificate, unverified (URL
    /// `tls_insecure=true`; default false). A warning is logged at each
    /// connect. For throw-away tests only.
    pub tls_insecure: bool,
    /// Prefix of every key and channel (default `switchyard`).
    pub namespace: String,
    /// Bound on establishing a connection: 1 ms to 10 min (default 2 s;
    /// URL `connect_timeout`).
    pub connect_timeout: Duration,
    /// Bound on one command's reply on the shared connection: 1 ms to 1 h
    /// (default 5 s; URL `response_timeout`).
    pub response_timeout: Duration,
    /// Start-up retry: how long `connect` keeps trying while the server is
    /// not reachable yet (a transient error: refused, timed out, loading),
    /// with a backoff from 100 ms doubling up to
    /// [`connect_retry_max_delay`](Self::connect_retry_max_delay), logging
    /// each attempt. 0 (the default) tries once. 0 to 1 h (URL
    /// `connect_retry`). Credentials refused, a bad certificate or a bad
    /// setting fail at once.
    pub connect_retry: Duration,
    /// Longest pause between two start-up attempts: 10 ms to 1 min
    /// (default 5 s; URL `connect_retry_max_delay`).
    pub connect_retry_max_delay: Duration,
    /// Adapter-specific query parameters (the last occurrence of each: a
    /// parameter given again overrides, as it always has).
    pub params: BTreeMap<String, String>,
    /// The earlier occurrences of adapter-specific query parameters given
    /// more than once, in URL order (at most
    /// [`MAX_REPEATED_PARAMS`](Self::MAX_REPEATED_PARAMS)). An adapter takes
    /// a parameter that repeats rather than overrides (such as `retain`)
    /// with [`take_all`](Self::take_all).
    pub repeated_params: Vec<(String, String)>,
    /// Find the primary through Redis Sentinel (`None`: connect to
    /// `host:port`). With it, `host` and `port` are those of the first
    /// sentinel until a connection resolves the primary.
    pub sentinel: Option<crate::sentinel::SentinelConfig>,
    /// A Redis Cluster reached through these seed nodes (`None`: a single
    /// server). With it, `host` and `port` are those of the first seed and
    /// `db` must be 0.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl RedisConfig {
    /// Default TCP port.
    pub const DEFAULT_PORT: u16 = 6379;
    /// Default namespace.
    pub const DEFAULT_NAMESPACE: &'static str = "switchyard";
    /// Largest database number (Redis keeps the index in a C `int`).
    pub const MAX_DB: i64 = i32::MAX as i64;

    /// Checks every setting against its documented range; both Redis
    /// adapters run it (through their own `validate`), so a value means
    /// the same on both. Errors say the setting was set in code.
    pub fn validate(&self) -> Result<()> {
        self.validate_from(Origin::Builder)
    }

    /// [`validate`](Self::validate), naming `origin` in the error (the URL
    /// parameter, or "set in code").
    pub fn validate_from(&self, origin: Origin) -> Result<()> {
        if self.host.is_empty() {
            return Err(Error::InvalidConfig(
                "the redis host is empty: give a host name or IP address".into(),
            ));
        }
        validate_namespace(&self.namespace).map_err(Error::InvalidConfig)?;
        crate::tls::validate_settings(self, origin)?;
        if let Some(s) = &self.sentinel {
            s.validate()?;
        }
        if let Some(c) = &self.cluster {
            c.validate()?;
            if self.sentinel.is_some() {
                return Err(Error::InvalidConfig(
                    "a config cannot name both sentinels and a cluster: a Redis Cluster fails over by itself".into(),
                ));
            }
            if self.db != 0 {
                return Err(Error::InvalidConfig(format!(
                    "a Redis Cluster has only database 0, got db {}",
                    self.db
                )));
            }
        }
        self.check_ranges().map_err(|e| e.into_error(origin))
    }

    fn check_ranges(&self) -> std::result::Result<(), crate::range::OutOfRange> {
        check_count("port", self.port, 1, u16::MAX)?;
        check_count("db", self.db, 0, Self::MAX_DB)?;
        check_duration(
            "connect_timeout",
            self.connect_timeout,
            MILLISECOND,
            10 * MINUTE,
            "1ms to 10m",
        )?;
        check_duration(
            "response_timeout",
            self.response_timeout,
            MILLISECOND,
            HOUR,
            "1ms to 1h (60m)",
        )?;
        check_duration(
            "connect_retry",
            self.connect_retry,
            Duration::ZERO,
            HOUR,
            "0 (off) to 1h (60m)",
        )?;
        check_duration(
            "connect_retry_max_delay",
            self.connect_retry_max_delay,
            10 * MILLISECOND,
            MINUTE,
            "10ms to 1m",
        )
    }

    /// Settings for `host:port` with every other value at its default.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisConfig {
            host: host.into(),
            port,
            db: 0,
            username: None,
            password: None,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_insecure: false,
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            connect_retry: Duration::ZERO,
            connect_retry_max_delay: Duration::from_secs(5),
            params: BTreeMap::new(),
            repeated_params: Vec::new(),
            sentinel: None,
            cluster: None,
        }
    }

    /// Finds the primary through Sentinel (see [`crate::sentinel`]).
    pub fn with_sentinel(mut self, sentinel: crate::sentinel::SentinelConfig) -> Self {
        if let Some((host, port)) = sentinel.sentinels.first() {
            self.host = host.clone();
            self.port = *port;
        }
        self.sentinel = Some(sentinel);
        self
    }

    /// Reaches a Redis Cluster through `cluster`'s seed nodes (see
    /// [`crate::cluster`]).
    pub fn with_cluster(mut self, cluster: crate::cluster::ClusterConfig) -> Self {
        if let Some((host, port)) = cluster.seeds.first() {
            self.host = host.clone();
            self.port = *port;
        }
        self.cluster = Some(cluster);
        self
    }

    /// Sets the namespace (key and channel prefix).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Keeps trying to connect for up to `deadline` while the server is not
    /// reachable yet (see [`connect_retry`](Self::connect_retry)).
    pub fn with_connect_retry(mut self, deadline: Duration) -> Self {
        self.connect_retry = deadline;
        self
    }

    /// Sets the response timeout of the shared connection.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets ACL user and password.
    pub fn with_credentials(mut self, username: Option<String>, password: Option<String>) -> Self {
        self.username = username;
        self.password = password.map(Secret::new);
        self
    }

    /// Sets the database number.
    pub fn with_db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Turns TLS on or off.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts the CA certificate(s) in the PEM file at `path` instead of
    /// the platform's roots (needs TLS).
    pub fn with_tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// Presents the client certificate chain in the PEM file `cert`, with
    /// its private key in the PEM file `key` (needs TLS).
    pub fn with_tls_client_cert(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// DANGEROUS: `true` accepts any server certificate without checking
    /// it (see [`tls_insecure`](Self::tls_insecure)).
    pub fn with_tls_insecure(mut self, insecure: bool) -> Self {
        self.tls_insecure = insecure;
        self
    }

    /// `host:port`, for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A URL describing this config without the password.
    pub fn display_url(&self, scheme: &str) -> String {
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(_)) => ":***@".to_owned(),
            (None, None) => String::new(),
        };
        if let Some(c) = &self.cluster {
            return format!(
                "{scheme}+cluster://{user}{}?namespace={}",
                c.addrs(),
                self.namespace
            );
        }
        if let Some(s) = &self.sentinel {
            return format!(
                "{scheme}+sentinel://{user}{}/{}/{}?namespace={}",
                s.addrs(),
                s.master_name,
                self.db,
                self.namespace
            );
        }
        format!(
            "{scheme}://{user}{}/{}?namespace={}",
            self.addr(),
            self.db,
            self.namespace
        )
    }

    /// Parses a URL. The scheme must be `redis`, `rediss`, or one of those
    /// followed by `+streams` / `+pubsub`; a leading `rediss` turns TLS on.
    ///
    /// The user name and password must be percent-encoded where they hold
    /// `@`, `:`, `/`, `?`, `#` or `%`; a raw `/`, `?` or `#` before the
    /// last `@` is refused with a message saying so (without the password),
    /// and so is a URL without `//` after the scheme.
    pub fn from_url(input: &str) -> Result<Self> {
        check_shape(input)?;
        if let Some((plain, cluster)) = crate::cluster::split_url(input)? {
            let mut cfg = Self::from_url(&plain).map_err(|e| match e {
                Error::InvalidUrl { reason, .. } => Error::invalid_url(input, reason),
                other => other,
            })?;
            cfg.cluster = Some(cluster);
            cfg.validate_from(Origin::Url)?;
            return Ok(cfg);
        }
        if let Some((plain, sentinel)) = crate::sentinel::split_url(input)? {
            let mut cfg = Self::from_url(&plain).map_err(|e| match e {
                Error::InvalidUrl { reason, .. } => Error::invalid_url(input, reason),
                other => other,
            })?;
            let sentinel = match cfg.take_duration("sentinel_poll") {
                Ok(Some(every)) => sentinel.with_poll_interval(every),
                Ok(None) => sentinel,
                Err(e) => return Err(Error::invalid_url(input, e.to_string())),
            };
            if let Some(how) = cfg.take_param("sentinel_auth") {
                let sentinel = match how.as_str() {
                    "same" => sentinel.with_credentials(
                        cfg.username.clone(),
                        cfg.password.as_ref().map(|p| p.expose().to_owned()),
                    ),
                    "none" => sentinel,
                    other => {
                        return Err(Error::invalid_url(
                            input,
                            format!("sentinel_auth must be same or none, got {other:?}"),
                        ));
                    }
                };
                cfg.sentinel = Some(sentinel);
            } else {
                cfg.sentinel = Some(sentinel);
            }
            cfg.validate_from(Origin::Url)?;
            return Ok(cfg);
        }
        let url = url::Url::parse(input).map_err(|e| Error::invalid_url(input, e.to_string()))?;
        let scheme = url.scheme();
        let base = scheme.split('+').next().unwrap_or(scheme);
        let tls = match base {
            "redis" => false,
            "rediss" => true,
            _ => {
                return Err(Error::invalid_url(
                    input,
                    format!(
                        "scheme {scheme:?} is not a Redis scheme (redis+streams, rediss+streams, redis+pubsub, rediss+pubsub)"
                    ),
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(Error::invalid_url(input, "the URL has no host")),
        };
        let port = url.port().unwrap_or(Self::DEFAULT_PORT);
        let mut cfg = RedisConfig::new(host, port).with_tls(tls);
        let path = url.path().trim_matches('/');
        if !path.is_empty() {
            cfg.db = path
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=Self::MAX_DB).contains(d))
                .ok_or_else(|| {
                    Error::invalid_url(
                        input,
                        format!(
                            "the path must be a database number 0 to {}, got {path:?}",
                            Self::MAX_DB
                        ),
                    )
                })?;
        }
        if !url.username().is_empty() {
            cfg.username = Some(percent_decode(url.username()));
        }
        if let Some(p) = url.password() {
            cfg.password = Some(Secret::new(percent_decode(p)));
        }
        for (key, value) in url.query_pairs() {
            let (key, value) = (key.into_owned(), value.into_owned());
            match key.as_str() {
                "namespace" => {
                    validate_namespace(&value).map_err(|r| Error::invalid_url(input, r))?;
                    cfg.namespace = value;
                }
                "connect_timeout" => {
                    cfg.connect_timeout = parse_duration(&value)
                        .map_err(|r| Error::invalid_url(input, format!("connect_timeout: {r}")))?;
                }
                "response_timeout" => {
                    cfg.response_timeout = parse_duration(&value)
                        .map_err(|r| Error::invalid_url(input, format!("response_timeout: {r}")))?;
                }
                "connect_retry" => {
                    cfg.connect_retry = parse_duration(&value)
                        .map_err(|r| Error::invalid_url(input, format!("connect_retry: {r}")))?;
                }
                "connect_retry_max_delay" => {
                    cfg.connect_retry_max_delay = parse_duration(&value).map_err(|r| {
                        Error::invalid_url(input, format!("connect_retry_max_delay: {r}"))
                    })?;
                }
                "tls_ca" | "tls_cert" | "tls_key" | "tls_insecure" => {
                    crate::tls::take_url_param(&mut cfg, &key, &value)
                        .map_err(|r| Error::invalid_url(input, r))?;
                }
                _ => {
                    if let Some(earlier) = cfg.params.insert(key.clone(), value) {
                        if cfg.repeated_params.len() >= Self::MAX_REPEATED_PARAMS {
                            return Err(Error::invalid_url(
                                input,
                                format!(
                                    "more than {} repeated query parameters",
                                    Self::MAX_REPEATED_PARAMS
                                ),
                            ));
                        }
                        cfg.repeated_params.push((key, earlier));
                    }
                }
            }
        }
        cfg.validate_from(Origin::Url)?;
        Ok(cfg)
    }

    /// Removes and returns an adapter-specific parameter.
    pub fn take_param(&mut self, key: &str) -> Option<String> {
        self.params.remove(key)
    }

    /// Most earlier occurrences of repeated adapter parameters kept from
    /// one URL (beyond the last of each).
    pub const MAX_REPEATED_PARAMS: usize = 1024;

    /// Removes and returns every occurrence of a parameter that may be
    /// given more than once, in URL order.
    pub fn take_all(&mut self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = Vec::with_capacity(self.repeated_params.len());
        for (k, v) in self.repeated_params.drain(..) {
            if k == key {
                out.push(v);
            } else {
                rest.push((k, v));
            }
        }
        self.repeated_params = rest;
        out.extend(self.params.remove(key));
        out
    }

    /// Removes a parameter and parses it as a duration (`250ms`, `2s`, `1m`).
    pub fn take_duration(&mut self, key: &str) -> Result<Option<Duration>> {
        match self.params.remove(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v)
                .map(Some)
                .map_err(|r| Error::InvalidConfig(format!("url parameter {key}: {r}"))),
        }
    }

    /// Removes a parameter and parses it as an unsigned integer.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>> {
        match self.params.remove(key) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                Error::InvalidConfig(format!(
                    "url parameter {key}: expected an unsigned integer, got {v:?}"
                ))
            }),
        }
    }

    /// Fails when parameters are left that nobody took, naming them.
    pub fn reject_unknown_params(&self, known: &[&str]) -> Result<()> {
        if self.params.is_empty() {
            return Ok(());
        }
        let unknown: Vec<&str> = self.params.keys().map(String::as_str).collect();
        Err(Error::InvalidConfig(format!(
            "unknown url parameter(s) {}: known are namespace, connect_timeout, response_timeout, connect_retry, connect_retry_max_delay, tls_ca, tls_cert, tls_key, tls_insecure{}{}",
            unknown.join(", "),
            if known.is_empty() { "" } else { ", " },
            known.join(", ")
        )))
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.display_url(if self.tls {
            "rediss"
        } else {
            "redis"
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let c = RedisConfig::from_url(
            "rediss+streams://app:p%40ss@db.example:6380/3?namespace=fleet-a&connect_timeout=500ms&maxlen=1000",
        )
        .unwrap();
        assert_eq!(c.host, "db.example");
        assert_eq!(c.port, 6380);
        assert_eq!(c.db, 3);
        assert!(c.tls);
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(c.namespace, "fleet-a");
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.params.get("maxlen").map(String::as_str), Some("1000"));
        let shown = format!("{c:?} {c}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
    }

    #[test]
    fn defaults() {
        let c = RedisConfig::from_url("redis+pubsub://127.0.0.1").unwrap();
        assert_eq!(c.port, 6379);
        assert_eq!(c.db, 0);
        assert!(!c.tls);
        assert_eq!(c.namespace, "switchyard");
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        let c = RedisConfig::from_url("redis://[::1]:7000").unwrap();
        assert_eq!(c.addr(), "[::1]:7000");
    }

    #[test]
    fn rejects_bad_urls_without_leaking_passwords() {
        for bad in [
            "redis+streams://u:hunter2@h/notadb",
            "redis+streams://u:hunter2@h:1?namespace=a%20b",
            "redis+streams://u:hunter2@h:1?connect_timeout=soon",
            "http://u:hunter2@h",
            "redis+streams://u:hunter2@:1",
            "garbage",
        ] {
            let e = RedisConfig::from_url(bad).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(!text.contains("hunter2"), "{bad}: {text}");
            assert!(matches!(e, Error::InvalidUrl { .. }), "{bad}: {e}");
        }
    }

    /// `redis+streams://app:S3cretPW#x@127.0.0.1:7441` failed with
    /// `invalid url "redis+streams://app:S3cretPW#x@127.0.0.1:7441": invalid
    /// port number`: the `#` ended the authority, the redaction missed the
    /// `@`. Every ASCII punctuation character, raw or percent-encoded, in
    /// every shape: the password never shows; the percent-encoded one parses.
    #[test]
    fn passwords_with_punctuation_never_show() {
        for p in (0x21u8..0x7f)
            .map(char::from)
            .filter(char::is_ascii_punctuation)
        {
            let secret = format!("S3cretPW{p}x");
            let encoded: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
            for shape in [
                "redis+streams://app:{pw}@127.0.0.1:7441",
                "redis+streams://app:{pw}@127.0.0.1:7441/0?namespace=n&connect_timeout=0",
                "redis+pubsub://:{pw}@127.0.0.1/99999999999",
                "redis+streams:app:{pw}@127.0.0.1",
                "redis+streams:/app:{pw}@127.0.0.1",
                "redis+streams://app:{pw}",
                "redis+streams://app:{pw}/0",
                "http://app:{pw}@h",
            ] {
                for pw in [secret.as_str(), encoded.as_str()] {
                    let url = shape.replace("{pw}", pw);
                    let shown = match RedisConfig::from_url(&url) {
                        Ok(c) => format!("{c} {c:?}"),
                        Err(e) => format!("{e} {e:?}"),
                    };
                    assert!(!shown.contains("S3cretPW"), "{url}: {shown}");
                    assert!(!shown.contains(&encoded), "{url}: {shown}");
                }
            }
            let url = format!("redis+streams://app:{encoded}@127.0.0.1:7441");
            let c = RedisConfig::from_url(&url).unwrap();
            assert_eq!(c.password.as_ref().unwrap().expose(), secret);
            assert_eq!(c.port, 7441);
        }
        let e = RedisConfig::from_url("redis+streams://app:S3cretPW#x@127.0.0.1:7441").unwrap_err();
        assert!(e.to_string().contains("percent-encode"), "{e}");
        assert!(
            e.to_string()
                .contains("redis+streams://app:***@127.0.0.1:7441"),
            "{e}"
        );
    }

    /// Zero timeouts were accepted by redis-streams and refused by the
    /// backplane; now both run this one check.
    #[test]
    fn ranges() {
        for (url, needle) in [
            (
                "redis://h?connect_timeout=0",
                "connect_timeout must be 1ms to 10m, got 0ns (url parameter connect_timeout)",
            ),
            (
                "redis://h?response_timeout=0",
                "response_timeout must be 1ms to 1h",
            ),
            ("redis://h?connect_timeout=11m", "connect_timeout"),
            (
                "redis://h?response_timeout=18446744073709551615s",
                "response_timeout",
            ),
            (
                "redis://h?response_timeout=18446744073709551615m",
                "response_timeout",
            ),
            ("redis://h:0", "port must be 1 to 65535, got 0"),
        ] {
            let e = RedisConfig::from_url(url).unwrap_err();
            assert!(e.to_string().contains(needle), "{url}: {e}");
        }
        let e = RedisConfig::from_url("redis://h/2147483648").unwrap_err();
        assert!(e.to_string().contains("0 to 2147483647"), "{e}");
        let ok = RedisConfig::from_url(
            "redis://h:65535/2147483647?connect_timeout=10m&response_timeout=60m&namespace=n",
        )
        .unwrap();
        assert_eq!(ok.db, RedisConfig::MAX_DB);
        assert!(RedisConfig::from_url("redis://h?connect_timeout=1&response_timeout=1ms").is_ok());
        let e = RedisConfig::new("h", 1)
            .with_connect_timeout(Duration::MAX)
            .validate()
            .unwrap_err();
        assert!(e.to_string().ends_with("(set in code)"), "{e}");
        assert!(RedisConfig::new("", 1).validate().is_err());
        assert!(RedisConfig::new("h", 1).with_db(-1).validate().is_err());
        assert!(
            RedisConfig::new("h", 1)
                .with_namespace("a b")
                .validate()
                .is_err()
        );
        assert!(RedisConfig::new("h", 1).validate().is_ok());
    }

    #[test]
    fn cluster_urls() {
        let c = RedisConfig::from_url(
            "rediss+streams+cluster://app:hunter2@h1:7000,h2:7001?namespace=n&connect_timeout=1s",
        )
        .unwrap();
        assert!(c.tls);
        assert_eq!((c.host.as_str(), c.port), ("h1", 7000));
        assert_eq!(c.cluster.as_ref().unwrap().seeds.len(), 2);
        assert_eq!(c.namespace, "n");
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        let shown = c.display_url("rediss+streams");
        assert_eq!(
            shown,
            "rediss+streams+cluster://app:***@h1:7000,h2:7001?namespace=n"
        );
        let e = RedisConfig::new("h", 1)
            .with_db(2)
            .with_cluster(crate::ClusterConfig::new(vec![("h".into(), 1)]))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("only database 0"), "{e}");
        let e = RedisConfig::new("h", 1)
            .with_cluster(crate::ClusterConfig::new(vec![]))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("1 to 64 seed nodes"), "{e}");
    }

    #[test]
    fn sentinel_urls() {
        let c = RedisConfig::from_url(
            "redis+streams+sentinel://app:hunter2@10.0.0.1:26379,10.0.0.2:26380/mymaster/3?namespace=n&sentinel_poll=100ms&sentinel_auth=same&maxlen=5",
        )
        .unwrap();
        let s = c.sentinel.as_ref().unwrap();
        assert_eq!(
            s.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26379),
                ("10.0.0.2".to_owned(), 26380)
            ]
        );
        assert_eq!(s.master_name, "mymaster");
        assert_eq!(s.poll_interval, Duration::from_millis(100));
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert_eq!(c.db, 3);
        assert_eq!(c.namespace, "n");
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.params.get("maxlen").map(String::as_str), Some("5"));
        assert!(!c.params.contains_key("sentinel_poll"));
        let shown = format!("{c:?} {c}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            c.display_url("redis")
                .starts_with("redis+sentinel://app:***@10.0.0.1:26379,10.0.0.2:26380/mymaster/3"),
            "{}",
            c.display_url("redis")
        );

        let c = RedisConfig::from_url("rediss+pubsub+sentinel://s1/m").unwrap();
        assert!(c.tls);
        let s = c.sentinel.as_ref().unwrap();
        assert_eq!(s.sentinels, vec![("s1".to_owned(), 26379)]);
        assert!(s.username.is_none() && s.password.is_none());
        assert_eq!(s.poll_interval, crate::SentinelConfig::DEFAULT_POLL);

        for (bad, needle) in [
            ("redis+streams+sentinel://u:hunter2@s1:26379", "master name"),
            (
                "redis+streams+sentinel://u:hunter2@s1/m?sentinel_poll=1ms",
                "sentinel_poll must be 10ms to 1m",
            ),
            (
                "redis+streams+sentinel://u:hunter2@s1/m?sentinel_auth=yes",
                "sentinel_auth must be same or none",
            ),
            ("redis+streams+sentinel://u:hunter2@s1:0/m", "port"),
            (
                "redis+streams+sentinel://u:hunter2@s1/m/x",
                "database number",
            ),
        ] {
            let e = RedisConfig::from_url(bad).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains(needle), "{bad}: {text}");
            assert!(!text.contains("hunter2"), "{bad}: {text}");
        }
    }

    #[test]
    fn params() {
        let mut c = RedisConfig::from_url("redis+streams://h?maxlen=5&block=200ms&x=1").unwrap();
        assert_eq!(c.take_u64("maxlen").unwrap(), Some(5));
        assert_eq!(
            c.take_duration("block").unwrap(),
            Some(Duration::from_millis(200))
        );
        let e = c.reject_unknown_params(&["maxlen", "block"]).unwrap_err();
        assert!(e.to_string().contains('x'));
        c.take_param("x");
        assert!(c.reject_unknown_params(&[]).is_ok());
    }

    #[test]
    fn repeated_params() {
        let mut c = RedisConfig::from_url(
            "redis+streams://h?retain=a:maxlen=1&x=1&retain=*/b:0&retain=c%2B:age=1s",
        )
        .unwrap();
        assert_eq!(c.take_all("retain"), ["a:maxlen=1", "*/b:0", "c+:age=1s"]);
        assert!(c.take_all("retain").is_empty());
        assert_eq!(c.take_all("x"), ["1"]);
        assert!(c.reject_unknown_params(&[]).is_ok());
        // Any other parameter given again overrides, as before.
        let mut c = RedisConfig::from_url("redis+streams://h?maxlen=1&maxlen=2").unwrap();
        assert_eq!(c.take_u64("maxlen").unwrap(), Some(2));
        assert!(c.reject_unknown_params(&["maxlen"]).is_ok());
        let many = vec!["x=1"; RedisConfig::MAX_REPEATED_PARAMS + 2].join("&");
        let e = RedisConfig::from_url(&format!("redis+streams://h?{many}")).unwrap_err();
        assert!(e.to_string().contains("repeated query parameters"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("75").unwrap(), Duration::from_millis(75));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("").is_err());
    }
}
