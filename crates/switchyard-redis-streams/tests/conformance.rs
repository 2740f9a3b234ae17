//! The whole conformance suite against real `redis-server` processes.
//!
//! One shared server (no persistence) serves every case, each in its own
//! namespace (key prefix); a case that restarts the backend gets a server
//! of its own with AOF persistence, so the restart keeps the data and
//! disturbs no other case. Every `connect()` is a new transport.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use switchyard_conformance::libtest_mimic::Arguments;
use switchyard_conformance::{CaseInfo, Harness, Namespace, Tuning, anyhow, async_trait};
use switchyard_core::{Capabilities, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{
    ClusterGroup, ClusterOptions, Persistence, RedisOptions, RedisServer, SentinelGroup,
    SentinelOptions,
};

/// Short timeouts suitable for tests.
const PARAMS: &str = "block=250ms&pattern_rescan=100ms&connect_timeout=2s&response_timeout=5s&breaker_cool_down=200ms";

struct StreamsHarness {
    shared_url: String,
    counter: AtomicU64,
    run: u32,
}

#[async_trait]
impl Harness for StreamsHarness {
    fn name(&self) -> &str {
        "redis-streams"
    }

    fn capabilities(&self) -> Capabilities {
        switchyard_redis_streams::capabilities()
    }

    async fn namespace(&self, case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("conf-{:08x}-{n}", self.run);
        if case.needs_restart {
            let server = tokio::task::spawn_blocking(|| {
                RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof))
            })
            .await??;
            let url = base_url(&server.url());
            return Ok(Box::new(StreamsNamespace {
                url: format!("{url}?namespace={namespace}&{PARAMS}"),
                server: Some(Arc::new(Mutex::new(server))),
            }));
        }
        Ok(Box::new(StreamsNamespace {
            url: format!("{}?namespace={namespace}&{PARAMS}", self.shared_url),
            server: None,
        }))
    }

    fn tuning(&self) -> Tuning {
        Tuning::default()
    }
}

struct StreamsNamespace {
    url: String,
    /// A dedicated server for cases that restart it.
    server: Option<Arc<Mutex<RedisServer>>>,
}

#[async_trait]
impl Namespace for StreamsNamespace {
    async fn connect(&self) -> anyhow::Result<Arc<dyn Transport>> {
        let config = StreamsConfig::from_url(&self.url)?;
        Ok(Arc::new(RedisStreamsTransport::connect(config).await?))
    }

    fn takes_retention_rules(&self) -> bool {
        true
    }

    async fn connect_with_retention(
        &self,
        rules: &switchyard_core::RetentionRules,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        let mut config = StreamsConfig::from_url(&self.url)?;
        config.topic_retention = rules.clone();
        Ok(Arc::new(RedisStreamsTransport::connect(config).await?))
    }

    fn can_restart(&self) -> bool {
        self.server.is_some()
    }

    async fn restart_backend(&self) -> anyhow::Result<()> {
        let Some(server) = self.server.clone() else {
            anyhow::bail!("this namespace shares its server and cannot restart it");
        };
        tokio::task::spawn_blocking(move || server.lock().restart()).await??;
        Ok(())
    }
}

/// `redis://127.0.0.1:PORT` → `redis+streams://127.0.0.1:PORT`.
fn base_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    format!("redis+streams://{}", rest.trim_end_matches('/'))
}

#[allow(clippy::print_stderr)] // no tracing subscriber in a test main
fn main() -> ExitCode {
    let args = Arguments::from_args();
    // The shared server lives in `main` so it is stopped when the run ends.
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
    // SWITCHYARD_TEST_SENTINEL=1: the shared namespaces reach their server
    // through Sentinel (`redis+streams+sentinel://`), a primary with a
    // replica and three sentinels.
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
    // SWITCHYARD_TEST_CLUSTER=1: the shared namespaces live on a Redis
    // Cluster (3 masters with a replica each, `redis+streams+cluster://`);
    // the cases that restart their backend keep a single server of their
    // own.
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
            "redis+streams+cluster://{}",
            cluster
                .as_ref()
                .map(ClusterGroup::host_list)
                .unwrap_or_default()
        ),
        (Some(g), _) => {
            let sentinels: Vec<String> =
                g.sentinel_addrs().iter().map(ToString::to_string).collect();
            format!(
                "redis+streams+sentinel://{}/{}",
                sentinels.join(","),
                g.master_name()
            )
        }
        (None, Some(s)) => base_url(&s.url()),
        (None, None) => "redis+streams://127.0.0.1:1".to_owned(),
    };
    let harness = StreamsHarness {
        shared_url,
        counter: AtomicU64::new(0),
        run: rand_u32(),
    };
    let code = switchyard_conformance::run_with_args(harness, args);
    drop(cluster);
    drop(group);
    drop(server);
    code
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}
