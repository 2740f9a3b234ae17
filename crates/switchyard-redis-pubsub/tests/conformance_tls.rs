//! The whole conformance suite against a real `redis-server` over TLS: a
//! TLS-only server (no plain port) that requires a client certificate, with
//! a private CA generated for the run, given to the adapter with the
//! `tls_ca`, `tls_cert` and `tls_key` URL parameters.
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
use switchyard_testkit::{RedisOptions, RedisServer, TlsClientAuth, TlsOptions};

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
        "redis-pubsub-tls"
    }

    fn capabilities(&self) -> Capabilities {
        switchyard_redis_pubsub::capabilities()
    }

    async fn namespace(&self, _case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(PubSubNamespace {
            url: format!(
                "{}&namespace=conf-{:08x}-{n}&{PARAMS}",
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

/// `rediss+pubsub://127.0.0.1:TLS_PORT?tls_ca=…&tls_cert=…&tls_key=…`
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
        "rediss+pubsub://127.0.0.1:{port}?tls_ca={}&tls_cert={}&tls_key={}",
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

// A `harness = false` binary reports a failed set-up on stderr, like libtest.
#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let args = Arguments::from_args();
    // The shared server lives in `main`, so it is stopped when the run ends.
    let server = if args.list {
        None
    } else {
        match RedisServer::start_with(
            RedisOptions::default().tls(
                TlsOptions::default()
                    .client_auth(TlsClientAuth::Required)
                    .tls_only(true),
            ),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("conformance: could not start redis-server: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let base_url = match server.as_ref().map(base_url) {
        None => "rediss+pubsub://127.0.0.1:1?tls_insecure=false".to_owned(),
        Some(Ok(url)) => url,
        Some(Err(e)) => {
            eprintln!("conformance: {e}");
            return ExitCode::FAILURE;
        }
    };
    let harness = PubSubHarness {
        base_url,
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
