//! The whole conformance suite against real `redis-server` processes over
//! TLS: TLS-only servers (no plain port) that require a client certificate,
//! with a private CA generated for the run, given to the adapter with the
//! `tls_ca`, `tls_cert` and `tls_key` URL parameters.
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
use switchyard_testkit::{Persistence, RedisOptions, RedisServer, TlsClientAuth, TlsOptions};

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
        "redis-streams-tls"
    }

    fn capabilities(&self) -> Capabilities {
        switchyard_redis_streams::capabilities()
    }

    async fn namespace(&self, case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("conf-{:08x}-{n}", self.run);
        if case.needs_restart {
            let server = tokio::task::spawn_blocking(|| {
                RedisServer::start_with(tls_options().persistence(Persistence::Aof))
            })
            .await??;
            let url = base_url(&server)?;
            return Ok(Box::new(StreamsNamespace {
                url: format!("{url}&namespace={namespace}&{PARAMS}"),
                server: Some(Arc::new(Mutex::new(server))),
            }));
        }
        Ok(Box::new(StreamsNamespace {
            url: format!("{}&namespace={namespace}&{PARAMS}", self.shared_url),
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

/// A TLS-only server that requires a client certificate.
fn tls_options() -> RedisOptions {
    RedisOptions::default().tls(
        TlsOptions::default()
            .client_auth(TlsClientAuth::Required)
            .tls_only(true),
    )
}

/// `rediss+streams://127.0.0.1:TLS_PORT?tls_ca=…&tls_cert=…&tls_key=…`
/// (more parameters follow with `&`).
fn base_url(server: &RedisServer) -> anyhow::Result<String> {
    let (Some(port), Some(ca), Some(client)) = (
        server.tls_port(),
        server.tls_ca_cert_path(),
        server.tls_client_paths(),
    ) else {
        anyhow::bail!("the test server was not started with TLS");
    };
    Ok(format!(
        "rediss+streams://127.0.0.1:{port}?tls_ca={}&tls_cert={}&tls_key={}",
        encode(ca),
        encode(&client.cert),
        encode(&client.key)
    ))
}

/// A path as a URL query value.
fn encode(path: &std::path::Path) -> String {
    path.to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[allow(clippy::print_stderr)] // no tracing subscriber in a test main
fn main() -> ExitCode {
    let args = Arguments::from_args();
    // The shared server lives in `main` so it is stopped when the run ends.
    let server = if args.list {
        None
    } else {
        match RedisServer::start_with(tls_options()) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("conformance: could not start redis-server: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let shared_url = match server.as_ref().map(base_url) {
        None => "rediss+streams://127.0.0.1:1?namespace=list".to_owned(),
        Some(Ok(url)) => url,
        Some(Err(e)) => {
            eprintln!("conformance: {e}");
            return ExitCode::FAILURE;
        }
    };
    let harness = StreamsHarness {
        shared_url,
        counter: AtomicU64::new(0),
        run: rand_u32(),
    };
    let code = switchyard_conformance::run_with_args(harness, args);
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
