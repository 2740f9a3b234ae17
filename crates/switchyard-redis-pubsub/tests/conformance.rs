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
use switchyard_testkit::{
    ClusterGroup, ClusterOptions, RedisServer, SentinelGroup, SentinelOptions,
};

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
    // SWITCHYARD_TEST_SENTINEL=1: the backplane reaches its server through
    // Sentinel (`redis+pubsub+sentinel://`), a primary with a replica and
    // three sentinels.
    let group = if args.list || std::env::var_os("SWITCHYARD_TEST_SENTINEL").is_none() {
        None
    } else {
        match SentinelGroup::start(SentinelOptions::default()) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("conformance: could not start the sentinel group: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    // SWITCHYARD_TEST_CLUSTER=1: the backplane runs on a Redis Cluster (3
    // masters with a replica each, `redis+pubsub+cluster://`, sharded
    // pub/sub on partition channels).
    let cluster = if args.list || std::env::var_os("SWITCHYARD_TEST_CLUSTER").is_none() {
        None
    } else {
        match ClusterGroup::start(ClusterOptions::default()) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("conformance: could not start the cluster: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let shared_url = match (&group, &server) {
        _ if cluster.is_some() => format!(
            "redis+pubsub+cluster://{}",
            cluster
                .as_ref()
                .map(ClusterGroup::host_list)
                .unwrap_or_default()
        ),
        (Some(g), _) => {
            let sentinels: Vec<String> =
                g.sentinel_addrs().iter().map(ToString::to_string).collect();
            format!(
                "redis+pubsub+sentinel://{}/{}",
                sentinels.join(","),
                g.master_name()
            )
        }
        (None, Some(s)) => base_url(&s.url()),
        (None, None) => "redis+pubsub://127.0.0.1:1".to_owned(),
    };
    let harness = PubSubHarness {
        base_url: shared_url,
        run: std::process::id()
            ^ (std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())),
        counter: AtomicU64::new(0),
    };
    let code = switchyard_conformance::run_with_args(harness, args);
    drop(cluster);
    drop(group);
    drop(server);
    code
}
