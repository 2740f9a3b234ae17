//! The scheme registry: which URL scheme opens which adapter.
//!
//! Every adapter switchyard knows is listed in [`ADAPTERS`], compiled in or
//! not, so that a URL for an adapter whose feature is off fails with
//! [`Error::FeatureNotEnabled`] (naming the feature to turn on) instead of a
//! vague "unknown scheme". Only the `connect` function of an entry depends on
//! the feature.
//!
//! Adding an adapter is a few lines: its feature and optional dependency in
//! `Cargo.toml`, and one entry here whose `connect` is
//! `connector!("feature", adapter_crate)`. The adapter crate exports
//! `SCHEMES: &[&str]` and `async fn connect(url: &str) -> Result<Arc<dyn Transport>>`;
//! a unit test checks that the entry's schemes equal the crate's `SCHEMES`.
//!
//! Adapters outside this workspace plug in at run time with
//! [`register_scheme`](crate::register_scheme) (module `registered`): a
//! process-wide table, consulted after the built-in one, that can never
//! shadow a built-in scheme.

use std::sync::Arc;

use futures::future::BoxFuture;
use switchyard_core::{Error, Result, Transport, redact_url, scrub_url_secret, url_secret};

use crate::registered::{registered, registered_schemes};

/// Opens a transport for a URL whose scheme belongs to the adapter.
pub(crate) type ConnectFn = for<'a> fn(&'a str) -> BoxFuture<'a, Result<Arc<dyn Transport>>>;

/// One adapter known to the facade.
pub(crate) struct Adapter {
    /// The Cargo feature of the `switchyard` crate that compiles it in.
    pub(crate) feature: &'static str,
    /// The URL schemes it serves (lowercase).
    pub(crate) schemes: &'static [&'static str],
    /// `Some` when the feature is compiled in.
    pub(crate) connect: Option<ConnectFn>,
}

/// `Some(<adapter crate>::connect)` when `$feature` is compiled in, else `None`.
macro_rules! connector {
    ($feature:literal, $krate:ident) => {{
        #[cfg(feature = $feature)]
        let connect: Option<ConnectFn> = Some(|url| Box::pin($krate::connect(url)));
        #[cfg(not(feature = $feature))]
        let connect: Option<ConnectFn> = None;
        connect
    }};
}

/// Every adapter switchyard knows, in the order errors list them.
pub(crate) static ADAPTERS: &[Adapter] = &[
    Adapter {
        feature: "memory",
        schemes: &["memory"],
        connect: connector!("memory", switchyard_memory),
    },
    Adapter {
        feature: "redis-streams",
        schemes: &[
            "redis+streams",
            "rediss+streams",
            "redis+streams+sentinel",
            "rediss+streams+sentinel",
            "redis+streams+cluster",
            "rediss+streams+cluster",
        ],
        connect: connector!("redis-streams", switchyard_redis_streams),
    },
    Adapter {
        feature: "redis-pubsub",
        schemes: &[
            "redis+pubsub",
            "rediss+pubsub",
            "redis+pubsub+sentinel",
            "rediss+pubsub+sentinel",
            "redis+pubsub+cluster",
            "rediss+pubsub+cluster",
        ],
        connect: connector!("redis-pubsub", switchyard_redis_pubsub),
    },
];

/// The URL schemes this build can open, for example `["memory"]`.
///
/// ```
/// # #[cfg(feature = "memory")]
/// assert!(switchyard::compiled_schemes().contains(&"memory"));
/// ```
pub fn compiled_schemes() -> Vec<&'static str> {
    ADAPTERS
        .iter()
        .filter(|a| a.connect.is_some())
        .flat_map(|a| a.schemes.iter().copied())
        .collect()
}

/// Opens the transport a URL names. The scheme picks the adapter:
///
/// | URL | adapter | feature |
/// |---|---|---|
/// | `memory://` (a fresh hub), `memory://NAME` (a process-wide named hub) | in-process memory | `memory` (default) |
/// | `redis+streams://[user:password@]host[:port][/db]`, `rediss+streams://…` (TLS) | Redis Streams | `redis-streams` |
/// | `redis+pubsub://[user:password@]host[:port][/db]`, `rediss+pubsub://…` (TLS) | Redis Pub/Sub backplane | `redis-pubsub` |
/// | `redis+streams+sentinel://[user:password@]s1:26379[,s2:26379…]/master[/db]`, `redis+pubsub+sentinel://…`, `rediss+…+sentinel://…` | either Redis adapter, primary found through Sentinel | `redis-streams` / `redis-pubsub` |
/// | `redis+streams+cluster://[user:password@]h1:7000[,h2:7001…]`, `rediss+streams+cluster://…` | Redis Streams on a Redis Cluster | `redis-streams` |
/// | `redis+pubsub+cluster://[user:password@]h1:7000[,h2:7001…]`, `rediss+pubsub+cluster://…` | Redis Pub/Sub backplane on a Redis Cluster (sharded pub/sub) | `redis-pubsub` |
///
/// Any other scheme opens the adapter registered for it with
/// [`register_scheme`](crate::register_scheme) (built-in schemes are looked up first and cannot be
/// registered).
///
/// The transport comes wrapped in [`trace::Traced`](crate::trace::Traced):
/// OpenTelemetry-style messaging spans, which cost nothing while no tracing
/// subscriber listens (see `docs/observability.md`).
///
/// Errors, none of which ever contains the URL's password:
/// - [`Error::InvalidUrl`] when the text has no `scheme://` (or is empty);
/// - [`Error::UnknownScheme`] when no adapter has that scheme; it lists the
///   schemes this build supports, the ones a feature would add and the
///   registered ones;
/// - [`Error::FeatureNotEnabled`] when the adapter exists but its Cargo
///   feature is not compiled in;
/// - whatever the adapter reports when it cannot connect.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchyard::Result<()> {
/// let transport = switchyard::connect("memory://").await?;
/// assert_eq!(transport.name(), "memory");
///
/// let err = switchyard::connect("kafka://broker:9092").await.err().unwrap();
/// assert!(matches!(err, switchyard::Error::UnknownScheme { .. }));
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Transport>> {
    let url = url.trim();
    let scheme = parse_scheme(url)?;
    // Adapters see the scheme in lowercase (`MEMORY://x` is `memory://x`).
    let normalized = format!("{scheme}{}", &url[scheme.len()..]);
    let url = normalized.as_str();
    let opened = match ADAPTERS
        .iter()
        .find(|a| a.schemes.contains(&scheme.as_str()))
    {
        Some(adapter) => {
            let Some(open) = adapter.connect else {
                return Err(Error::FeatureNotEnabled(adapter.feature));
            };
            tracing::debug!(url = %redact_url(url), adapter = adapter.feature, "connecting");
            open(url).await
        }
        None => {
            let Some(constructor) = registered(&scheme) else {
                return Err(Error::UnknownScheme {
                    scheme,
                    known: known_schemes(),
                });
            };
            tracing::debug!(url = %redact_url(url), scheme = %scheme, "connecting (registered scheme)");
            constructor(url.to_owned()).await
        }
    };
    match opened {
        Ok(transport) => {
            tracing::debug!(url = %redact_url(url), adapter = transport.name(), "connected");
            Ok(switchyard_core::trace::traced(transport))
        }
        Err(e) => Err(scrub_password(e, url)),
    }
}

/// [`connect`]s to the URL in the `SWITCHYARD_URL` environment variable, or
/// to `memory://` when it is unset or empty.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchyard::Result<()> {
/// // With SWITCHYARD_URL unset this is the in-memory adapter.
/// let transport = switchyard::connect_from_env().await?;
/// # let _ = transport;
/// # Ok(()) }
/// ```
pub async fn connect_from_env() -> Result<Arc<dyn Transport>> {
    connect(&url_from_env()).await
}

/// The environment variable read by [`connect_from_env`], the CLI and the examples.
pub const URL_ENV: &str = "SWITCHYARD_URL";

/// The URL used when [`URL_ENV`] is unset.
pub const DEFAULT_URL: &str = "memory://";

/// The value of `SWITCHYARD_URL`, or [`DEFAULT_URL`] when it is unset or empty.
pub fn url_from_env() -> String {
    match std::env::var(URL_ENV) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => DEFAULT_URL.to_owned(),
    }
}

/// RFC 3986 scheme syntax: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
pub(crate) fn valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The lowercase scheme of `url`, or `Error::InvalidUrl`.
fn parse_scheme(url: &str) -> Result<String> {
    if url.is_empty() {
        return Err(Error::invalid_url(
            url,
            "the url is empty: expected scheme://..., for example memory:// or redis+streams://127.0.0.1:6379",
        ));
    }
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(Error::invalid_url(
            url,
            "no scheme: expected scheme://..., for example memory:// or redis+streams://127.0.0.1:6379",
        ));
    };
    if !valid_scheme(scheme) {
        return Err(Error::invalid_url(
            url,
            "the scheme must start with a letter and contain only letters, digits, '+', '-' and '.'",
        ));
    }
    Ok(scheme.to_ascii_lowercase())
}

/// `memory, redis+streams (needs feature `redis-streams`), ..., myqueue (registered)`
fn known_schemes() -> String {
    let mut parts = Vec::new();
    for adapter in ADAPTERS {
        for scheme in adapter.schemes {
            parts.push(match adapter.connect {
                Some(_) => (*scheme).to_owned(),
                None => format!("{scheme} (needs feature `{}`)", adapter.feature),
            });
        }
    }
    parts.extend(
        registered_schemes()
            .into_iter()
            .map(|s| format!("{s} (registered)")),
    );
    parts.join(", ")
}

/// A safety net under the adapters' own redaction: an error that would
/// show what [`redact_url`] hides in the URL (the password, as typed or
/// percent-decoded, whatever the URL's shape) gets it replaced with `***`.
fn scrub_password(error: Error, url: &str) -> Error {
    if url_secret(url).is_none() {
        return error;
    }
    let scrub = |s: String| scrub_url_secret(&s, url);
    let error = match error {
        Error::Connect {
            backend,
            addr,
            timeout,
            reason,
        } => Error::Connect {
            backend,
            addr: scrub(addr),
            timeout,
            reason: scrub(reason),
        },
        Error::Transient(s) => Error::Transient(scrub(s)),
        Error::Backend(s) => Error::Backend(scrub(s)),
        Error::InvalidConfig(s) => Error::InvalidConfig(scrub(s)),
        Error::InvalidUrl { url: shown, reason } => Error::InvalidUrl {
            url: scrub(shown),
            reason: scrub(reason),
        },
        Error::InvalidTopic { topic, reason } => Error::InvalidTopic {
            topic: scrub(topic),
            reason: scrub(reason),
        },
        Error::Timeout { operation, after } => Error::Timeout {
            operation: scrub(operation),
            after,
        },
        other => other,
    };
    let text = error.to_string();
    let debug = format!("{error:?}");
    if scrub(text.clone()) != text || scrub(debug.clone()) != debug {
        return Error::Backend(scrub(text));
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_scheme_belongs_to_one_adapter() {
        let mut all: Vec<&str> = ADAPTERS.iter().flat_map(|a| a.schemes.to_vec()).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a scheme is listed twice");
        for s in all {
            assert_eq!(s, s.to_ascii_lowercase());
        }
    }

    /// The table's schemes are the adapter crates' `SCHEMES`: one line per
    /// adapter, under its feature.
    #[test]
    fn table_matches_the_adapter_crates() {
        #[allow(unused)]
        let schemes = |feature: &str| {
            ADAPTERS
                .iter()
                .find(|a| a.feature == feature)
                .map(|a| a.schemes)
                .unwrap()
        };
        #[cfg(feature = "memory")]
        assert_eq!(schemes("memory"), switchyard_memory::SCHEMES);
        #[cfg(feature = "redis-streams")]
        assert_eq!(schemes("redis-streams"), switchyard_redis_streams::SCHEMES);
        #[cfg(feature = "redis-pubsub")]
        assert_eq!(schemes("redis-pubsub"), switchyard_redis_pubsub::SCHEMES);
        for adapter in ADAPTERS {
            assert_eq!(
                adapter.connect.is_some(),
                adapter
                    .schemes
                    .iter()
                    .all(|s| compiled_schemes().contains(s))
            );
        }
    }

    /// Issue 14: `connect("rediss+streams://…")` failed with "enable the
    /// `tls` feature of the `switchyard` crate" and the crate had no such
    /// feature. Every feature an error names exists in this crate.
    #[test]
    fn named_features_exist() {
        let manifest = include_str!("../Cargo.toml");
        let features = manifest
            .split("[features]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        let names = ADAPTERS
            .iter()
            .map(|a| a.feature)
            .chain(std::iter::once("tls"));
        for name in names {
            assert!(
                features.contains(&format!("\n{name} = [")),
                "feature {name:?} is named in errors but missing from [features]"
            );
        }
    }

    /// A TLS URL in a build without the `tls` feature names that feature.
    #[cfg(all(feature = "redis-streams", not(feature = "tls")))]
    #[test]
    fn tls_url_without_the_tls_feature() {
        let e = block_on(connect("rediss+streams://127.0.0.1:1"))
            .err()
            .unwrap();
        assert!(matches!(e, Error::FeatureNotEnabled("tls")), "{e}");
        assert!(
            e.to_string()
                .contains("enable the `tls` feature of the `switchyard` crate"),
            "{e}"
        );
    }

    #[test]
    fn adapters_without_their_feature() {
        // Whatever this build compiles in, every scheme of an adapter that is
        // not compiled in names its feature.
        for adapter in ADAPTERS.iter().filter(|a| a.connect.is_none()) {
            for scheme in adapter.schemes {
                let e = block_on(connect(&format!("{scheme}://127.0.0.1:1")))
                    .err()
                    .unwrap();
                assert!(
                    matches!(e, Error::FeatureNotEnabled(f) if f == adapter.feature),
                    "{scheme}: {e}"
                );
                let upper = format!("{}://h", scheme.to_ascii_uppercase());
                let e = block_on(connect(&upper)).err().unwrap();
                assert!(matches!(e, Error::FeatureNotEnabled(_)), "{upper}: {e}");
            }
        }
    }

    #[test]
    fn unknown_scheme_lists_what_is_known() {
        let e = block_on(connect("kafka://x")).err().unwrap();
        let Error::UnknownScheme { scheme, known } = &e else {
            panic!("{e}")
        };
        assert_eq!(scheme, "kafka");
        #[cfg(feature = "memory")]
        assert!(known.starts_with("memory, "), "{known}");
        for adapter in ADAPTERS {
            for scheme in adapter.schemes {
                let entry = match adapter.connect {
                    Some(_) => (*scheme).to_owned(),
                    None => format!("{scheme} (needs feature `{}`)", adapter.feature),
                };
                assert!(known.contains(&entry), "{entry} missing in {known}");
            }
        }
        assert!(e.to_string().contains("kafka"));
    }

    #[test]
    fn garbage_is_an_invalid_url() {
        for url in [
            "not a url",
            "",
            "   ",
            "://x",
            "1abc://x",
            "a b://x",
            "memory:",
        ] {
            let e = block_on(connect(url)).err().unwrap();
            assert!(matches!(e, Error::InvalidUrl { .. }), "{url:?}: {e}");
        }
    }

    #[test]
    fn passwords_never_show() {
        for url in [
            "redis+streams://user:hunter2@127.0.0.1:1",
            "redis+pubsub://:hunter2@127.0.0.1:1/0",
            "rediss+streams://user:hunter2@127.0.0.1:1",
            "kafka://user:hunter2@h",
            "bad scheme://user:hunter2@h",
        ] {
            let e = block_on(connect(url)).err().unwrap();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn scrubbing() {
        let url = "redis+streams://u:hunter2@h";
        let e = scrub_password(Error::Backend("auth hunter2 failed".into()), url);
        assert_eq!(e.to_string(), "backend error: auth *** failed");
        let e = scrub_password(
            Error::InvalidTopic {
                topic: "hunter2".into(),
                reason: "x".into(),
            },
            url,
        );
        assert!(!e.to_string().contains("hunter2"));
        assert!(scrub_password(Error::Transient("x".into()), url).is_transient());
        // A raw `#` in the password: the old scrubber cut the authority at
        // it and found no password to scrub.
        let url = "redis+streams://app:S3cret#x@127.0.0.1:7441";
        let e = scrub_password(Error::Backend("auth S3cret#x failed".into()), url);
        assert_eq!(e.to_string(), "backend error: auth *** failed");
        let url = "redis+streams://app:S3cret%23x@127.0.0.1:7441";
        let e = scrub_password(Error::Backend("auth S3cret#x failed".into()), url);
        assert_eq!(e.to_string(), "backend error: auth *** failed");
    }

    #[test]
    fn env_default() {
        // Only reads: the variable is not set in the test environment unless
        // a developer set it, in which case it must be non-empty.
        let url = url_from_env();
        assert!(!url.trim().is_empty());
    }
}
