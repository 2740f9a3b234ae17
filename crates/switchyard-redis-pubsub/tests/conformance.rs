//! The whole conformance suite against a real `redis-server`.
//!
//! One server (no persistence) is started for the whole test binary and
//! serves every case, each in a namespace (channel prefix) of its own.
//! Every `connect()` is a new transport: a new replica of the service.
//! Cases that need what the backplane does not offer (groups, replay,
//! persistence, ...) are skipped by the suite with their reason.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_conformance::libtest_mimic::Arguments;
use switchyard_conformance::{CaseInfo, Harness, Namespace, anyhow, async_trait};
use switchyard_core::{Capabilities, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard_testkit::RedisServer;

/// Timeouts suited to a local test server.
const PARAMS: &str = "connect_timeout=2s&response_timeout=5s&probe_interval=500ms&probe_timeout=1s";

struct PubSubHarness {
    base_url: String,
    run: u32,
    counter: AtomicU64,
}

#[async_trait]
impl Harness for PubSubHarness {
    fn name(&self) -> &str {
        "redis-pubsub"
    }

    fn capabilities(&self) -> Capabilities {
        switchyard_redis_pubsub::capabilities()
    }

    async fn namespace(&self, _case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(PubSubNamespace {
            url: format!(
                "{}?namespace=conf-{:08x}-{n}&{PARAMS}",
                self.base_url, self.run
            ),
        }))
    }
}

struct PubSubNamespace {
    url: String,
}

#[async_trait]
impl Namespace for PubSubNamespace {
    async fn connect(&self) -> anyhow::Result<Arc<dyn Transport>> {
        let config = PubSubConfig::from_url(&self.url)?;
        Ok(Arc::new(RedisPubSubTransport::connect(config).await?))
    }
}

/// `redis://127.0.0.1:PORT` → `redis+pubsub://127.0.0.1:PORT`.
fn base_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    format!("redis+pubsub://{}", rest.trim_end_matches('/'))
}

// A `harness = false` binary reports a failed set-up on stderr, like libtest.
#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let args = Arguments::from_args();
    // The shared server lives in `main`, so it is stopped when the run ends.
    let server = if args.list {
        None
    } else {
        match RedisServer::start() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("conformance: could not start redis-server: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let harness = PubSubHarness {
        base_url: server.as_ref().map_or_else(
            || "redis+pubsub://127.0.0.1:1".to_owned(),
            |s| base_url(&s.url()),
        ),
        run: std::process::id()
            ^ (std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())),
        counter: AtomicU64::new(0),
    };
    let code = switchyard_conformance::run_with_args(harness, args);
    drop(server);
    code
}
