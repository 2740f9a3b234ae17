//! The whole conformance suite as a least-privilege ACL user: every case
//! connects as a user created with exactly the backplane's line of
//! `docs/security.md`, for that case's namespace, in its "patterns of any
//! shape" form (`&*`: the suite's pattern case subscribes to a pattern
//! with a random part, which no literal `&<namespace>:<glob>` rule written
//! in advance can allow; `tests/acl.rs` proves the literal form). Any
//! command Redis denies during the run (`ACL LOG`) fails it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_conformance::libtest_mimic::Arguments;
use switchyard_conformance::{CaseInfo, Harness, Namespace, anyhow, async_trait};
use switchyard_core::{Capabilities, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard_testkit::{RedisServer, RespConnection};

/// Timeouts suited to a local test server.
const PARAMS: &str = "connect_timeout=2s&response_timeout=5s&probe_interval=500ms&probe_timeout=1s";
const PASSWORD: &str = "s3cret-acl-pw";

/// The backplane's commands in `docs/security.md` (keep both the same).
const COMMANDS: &[&str] = &[
    "-@all",
    "+ping",
    "+role",
    "+publish",
    "+subscribe",
    "+unsubscribe",
    "+psubscribe",
    "+punsubscribe",
    "+pubsub|numsub",
];

/// Creates `user` for `namespace`: no keys, channels `&<ns>:*` and, for
/// pattern subscriptions of any shape, `&*`.
fn create_user(addr: SocketAddr, user: &str, namespace: &str) -> anyhow::Result<()> {
    let mut args: Vec<String> = ["ACL", "SETUSER", user, "reset", "on"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(format!(">{PASSWORD}"));
    args.push("resetkeys".into());
    args.push("resetchannels".into());
    args.push(format!("&{namespace}:*"));
    args.push("&*".into());
    args.extend(COMMANDS.iter().map(|s| (*s).to_owned()));
    let mut conn = RespConnection::connect(addr)?;
    let reply = conn.command(&args)?;
    anyhow::ensure!(reply.is_ok(), "ACL SETUSER {user}: {reply:?}");
    // Redis >= 7.2 and Valkey: redis-rs announces itself with CLIENT
    // SETINFO (docs/security.md); Redis 7.0 refuses the rule: fine.
    let _ = conn.command(&["ACL", "SETUSER", user, "+client|setinfo"]);
    Ok(())
}

struct PubSubHarness {
    addr: SocketAddr,
    run: u32,
    counter: AtomicU64,
}

#[async_trait]
impl Harness for PubSubHarness {
    fn name(&self) -> &str {
        "redis-pubsub-acl"
    }

    fn capabilities(&self) -> Capabilities {
        switchyard_redis_pubsub::capabilities()
    }

    async fn namespace(&self, _case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("acl-{:08x}-{n}", self.run);
        let user = format!("svc-{n}");
        let addr = self.addr;
        let (u, ns) = (user.clone(), namespace.clone());
        tokio::task::spawn_blocking(move || create_user(addr, &u, &ns)).await??;
        Ok(Box::new(PubSubNamespace {
            url: format!("redis+pubsub://{user}:{PASSWORD}@{addr}?namespace={namespace}&{PARAMS}"),
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

// A `harness = false` binary reports a failed set-up on stderr, like libtest.
#[allow(clippy::print_stderr)]
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
    let harness = PubSubHarness {
        addr: server
            .as_ref()
            .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1)), RedisServer::addr),
        run: std::process::id()
            ^ (std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())),
        counter: AtomicU64::new(0),
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

/// Fails when Redis denied anything to the users (`ACL LOG`).
fn no_denials(server: &RedisServer) -> anyhow::Result<()> {
    let log = server.cmd(&["ACL", "LOG"])?;
    let entries = log.as_array().map_or(0, <[_]>::len);
    anyhow::ensure!(entries == 0, "redis denied {entries} command(s): {log:?}");
    Ok(())
}
