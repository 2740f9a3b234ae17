//! Helpers shared by `pub`, `sub`, `topics`, `dlq` and `doctor`: opening
//! the transport, parsing values, payload rendering, progress bars and
//! Redis connections for inspection.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine as _;
use switchyard::{Start, Topic, TopicFilter, Transport, redact_url};

use crate::GlobalOpts;

/// The kind of backend a URL names, from its scheme alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `memory://`
    Memory,
    /// `redis+streams://`, `rediss+streams://`
    Streams,
    /// `redis+pubsub://`, `rediss+pubsub://`
    PubSub,
    /// Anything else (left to `switchyard::connect` to explain).
    Other,
}

impl Backend {
    /// The backend of `url`.
    pub(crate) fn of(url: &str) -> Backend {
        let scheme = url
            .trim()
            .split("://")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match scheme.as_str() {
            "memory" => Backend::Memory,
            "redis+streams"
            | "rediss+streams"
            | "redis+streams+sentinel"
            | "rediss+streams+sentinel"
            | "redis+streams+cluster"
            | "rediss+streams+cluster" => Backend::Streams,
            "redis+pubsub"
            | "rediss+pubsub"
            | "redis+pubsub+sentinel"
            | "rediss+pubsub+sentinel"
            | "redis+pubsub+cluster"
            | "rediss+pubsub+cluster" => Backend::PubSub,
            _ => Backend::Other,
        }
    }
}

/// Opens the transport of `--url`; the error names the URL without its
/// password.
pub(crate) async fn connect(global: &GlobalOpts) -> anyhow::Result<Arc<dyn Transport>> {
    let shown = redact_url(global.url.trim());
    switchyard::connect(global.url.trim())
        .await
        .map_err(|e| match e {
            // It names the URL already.
            switchyard::Error::InvalidUrl { .. } => anyhow!(e),
            e => anyhow!(e).context(format!("could not open {shown}")),
        })
}

/// Closes `transport`, bounded by a few seconds.
pub(crate) async fn close(transport: &Arc<dyn Transport>) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_secs(5), transport.close()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow!(e).context(format!(
            "could not close the {} transport",
            transport.name()
        ))),
        Err(_) => Err(anyhow!(
            "the {} transport did not close within 5s",
            transport.name()
        )),
    }
}

/// clap value parser: a topic name.
pub(crate) fn parse_topic(s: &str) -> Result<Topic, String> {
    Topic::new(s).map_err(|e| e.to_string())
}

/// clap value parser: a topic filter (exact topic, `a,b` list or pattern).
pub(crate) fn parse_filter(s: &str) -> Result<TopicFilter, String> {
    TopicFilter::parse(s).map_err(|e| e.to_string())
}

/// clap value parser: `earliest`, `latest` or a message id `MS-SEQ`.
pub(crate) fn parse_start(s: &str) -> Result<Start, String> {
    match s.to_ascii_lowercase().as_str() {
        "earliest" | "first" | "beginning" => Ok(Start::Earliest),
        "latest" | "new" | "now" => Ok(Start::Latest),
        _ => s
            .parse()
            .map(Start::After)
            .map_err(|_| format!("expected earliest, latest or a message id MS-SEQ, got {s:?}")),
    }
}

/// clap value parser: seconds, fractions allowed (`0.5`), more than zero.
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    if !v.is_finite() || v <= 0.0 || v > 31_536_000.0 {
        return Err(format!(
            "expected more than 0 and at most a year of seconds, got {s}"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A payload as it is printed in text output: the text itself when it is
/// UTF-8 without control characters, else `base64:` and its base64.
pub(crate) fn payload_for_line(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!("base64:{}", b64(payload)),
    }
}

/// Standard base64 with padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Adds `payload` (UTF-8 text) or `payload_b64` to a JSON object.
pub(crate) fn put_payload(obj: &mut serde_json::Map<String, serde_json::Value>, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(s) => obj.insert("payload".into(), s.into()),
        Err(_) => obj.insert("payload_b64".into(), b64(payload).into()),
    };
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(crate) struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    /// A bar of `len` steps (a spinner when `None`) labelled `what`.
    pub(crate) fn new(len: Option<u64>, what: &'static str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
        let template = if len.is_some() {
            "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}"
        } else {
            "{spinner} {msg} {human_pos} {per_sec}"
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(Some(bar))
    }

    /// Advances by `n`.
    pub(crate) fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Runs `f` with the bar hidden, so lines printed meanwhile stay clean.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Messages per second, 0 for an empty interval.
pub(crate) fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Direct Redis connections for the inspecting commands.
#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
pub(crate) mod redis_conn {
    use anyhow::anyhow;
    use switchyard_redis::redis::aio::MultiplexedConnection;
    use switchyard_redis::{RedisClient, RedisConfig};

    /// The Redis settings of a `redis+streams://` or `redis+pubsub://` URL
    /// (adapter-specific URL parameters are ignored here).
    pub(crate) fn config(url: &str) -> anyhow::Result<RedisConfig> {
        RedisConfig::from_url(url.trim()).map_err(|e| anyhow!(e))
    }

    /// One connection to the Redis of `config`, bounded by its connect
    /// timeout; commands are bounded by its response timeout.
    pub(crate) async fn open(config: &RedisConfig) -> anyhow::Result<MultiplexedConnection> {
        let client = RedisClient::new(config.clone()).map_err(|e| anyhow!(e))?;
        client
            .dedicated(Some(config.response_timeout))
            .await
            .map_err(|e| anyhow!(e))
    }

    /// A redis-rs error as one line naming the command; a `NOPERM` says
    /// `permission denied` and what to grant.
    pub(crate) fn failed(what: &str, e: &switchyard_redis::redis::RedisError) -> anyhow::Error {
        if switchyard_redis::denied::is_noperm(e) {
            return anyhow!(switchyard_redis::denied::permission_denied(
                what,
                &e.to_string()
            ));
        }
        anyhow!(switchyard_redis::classify(what, e))
    }
}
