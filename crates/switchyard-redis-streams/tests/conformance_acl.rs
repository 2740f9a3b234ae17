//! The whole conformance suite as a least-privilege ACL user: every case
//! connects as a user created with exactly the line `docs/security.md`
//! gives for the Streams adapter (all its features: exact topics,
//! patterns, groups, dead letters), for that case's namespace.
//!
//! Reproduction of what this guards: with the permissions `doctor` used to
//! suggest and docs/cli.md listed, the consumer-cleanup script's denied
//! `XINFO CONSUMERS` was swallowed; a line missing a command the adapter
//! sends fails a case here.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use switchyard_conformance::libtest_mimic::Arguments;
use switchyard_conformance::{CaseInfo, Harness, Namespace, Tuning, anyhow, async_trait};
use switchyard_core::{Capabilities, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{Persistence, RedisOptions, RedisServer, RespConnection};

/// Short timeouts suitable for tests.
const PARAMS: &str = "block=250ms&pattern_rescan=100ms&connect_timeout=2s&response_timeout=5s&breaker_cool_down=200ms";

/// The commands of the Streams adapter's service line in
/// `docs/security.md` (keep both the same).
const SERVICE_COMMANDS: &[&str] = &[
    "-@all",
    "+ping",
    "+role",
    "+xadd",
    "+xread",
    "+xrange",
    "+xrevrange",
    "+scan",
    "+xgroup|create",
    "+xreadgroup",
    "+xack",
    "+xpending",
    "+xclaim",
    "+xautoclaim",
    "+xinfo|consumers",
    "+xgroup|delconsumer",
    "+evalsha",
    "+script|load",
    "+client|id",
    "+client|unblock",
    "+xinfo|stream",
    "+xinfo|groups",
];

/// `ACL SETUSER <user> on ><password> resetkeys resetchannels ~<ns>:* <commands>`.
fn acl_setuser(user: &str, password: &str, namespace: &str) -> Vec<String> {
    let mut args: Vec<String> = ["ACL", "SETUSER", user, "reset", "on"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(format!(">{password}"));
    args.push("resetkeys".into());
    args.push("resetchannels".into());
    args.push(format!("~{namespace}:*"));
    args.extend(SERVICE_COMMANDS.iter().map(|s| (*s).to_owned()));
    args
}

/// Creates the case's user on the server at `addr`.
fn create_user(addr: SocketAddr, user: &str, namespace: &str) -> anyhow::Result<()> {
    let args = acl_setuser(user, PASSWORD, namespace);
    let mut conn = RespConnection::connect(addr)?;
    let reply = conn.command(&args)?;
    anyhow::ensure!(reply.is_ok(), "ACL SETUSER {user}: {reply:?}");
    // Redis >= 7.2 and Valkey: redis-rs announces itself with CLIENT
    // SETINFO (docs/security.md); Redis 7.0 has no such command and
    // refuses the rule, which is fine.
    let _ = conn.command(&["ACL", "SETUSER", user, "+client|setinfo"]);
    Ok(())
}

const PASSWORD: &str = "s3cret-acl-pw";

struct StreamsHarness {
    addr: SocketAddr,
    counter: AtomicU64,
    run: u32,
}

#[async_trait]
impl Harness for StreamsHarness {
    fn name(&self) -> &str {
        "redis-streams-acl"
    }

    fn capabilities(&self) -> Capabilities {
        switchyard_redis_streams::capabilities()
    }

    async fn namespace(&self, case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("acl-{:08x}-{n}", self.run);
        let user = format!("svc-{n}");
        if case.needs_restart {
            let server = tokio::task::spawn_blocking(|| {
                RedisServer::start_with(RedisOptions::default().persistence(Persistence::Aof))
            })
            .await??;
            let addr = server.addr();
            let (u, ns) = (user.clone(), namespace.clone());
            tokio::task::spawn_blocking(move || create_user(addr, &u, &ns)).await??;
            return Ok(Box::new(StreamsNamespace {
                url: url(addr, &user, &namespace),
                user,
                namespace,
                server: Some(Arc::new(Mutex::new(server))),
            }));
        }
        let addr = self.addr;
        let (u, ns) = (user.clone(), namespace.clone());
        tokio::task::spawn_blocking(move || create_user(addr, &u, &ns)).await??;
        Ok(Box::new(StreamsNamespace {
            url: url(addr, &user, &namespace),
            user,
            namespace,
            server: None,
        }))
    }

    fn tuning(&self) -> Tuning {
        Tuning::default()
    }
}

fn url(addr: SocketAddr, user: &str, namespace: &str) -> String {
    format!("redis+streams://{user}:{PASSWORD}@{addr}?namespace={namespace}&{PARAMS}")
}

struct StreamsNamespace {
    url: String,
    user: String,
    namespace: String,
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
        let (user, namespace) = (self.user.clone(), self.namespace.clone());
        // Users made with ACL SETUSER live in memory: make it again.
        tokio::task::spawn_blocking(move || {
            let mut s = server.lock();
            s.restart()?;
            create_user(s.addr(), &user, &namespace)
        })
        .await??;
        Ok(())
    }
}

#[allow(clippy::print_stderr)] // no tracing subscriber in a test main
fn main() -> ExitCode {
    let args = Arguments::from_args();
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
    let harness = StreamsHarness {
        addr: server
            .as_ref()
            .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1)), RedisServer::addr),
        counter: AtomicU64::new(0),
        run: rand_u32(),
    };
    let code = switchyard_conformance::run_with_args(harness, args);
    if let Some(s) = &server
        && let Err(denied) = no_denials(s)
    {
        eprintln!("conformance as an ACL user: {denied}");
        return ExitCode::FAILURE;
    }
    drop(server);
    code
}

/// Fails when Redis denied anything to the users (`ACL LOG`): a denial a
/// case did not notice (in a background task, say) still fails the run.
fn no_denials(server: &RedisServer) -> anyhow::Result<()> {
    let log = server.cmd(&["ACL", "LOG"])?;
    let entries = log.as_array().map_or(0, <[_]>::len);
    anyhow::ensure!(entries == 0, "redis denied {entries} command(s): {log:?}");
    Ok(())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}
