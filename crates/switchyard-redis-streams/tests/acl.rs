//! Least-privilege ACL users: a user missing one command of the line in
//! `docs/security.md` gets a clear, non-retried error naming the command
//! (or, in a background task, a rate-limited warning), and `health()`
//! reports `permission denied: …` — nothing swallows `NOPERM`.
//!
//! Reproduction of the defect these guard: with a user lacking
//! `xinfo|consumers`, the idle-consumer cleanup script caught the denied
//! `XINFO CONSUMERS` with `pcall` and returned `{}`: idle consumers were
//! never removed, nothing was logged and `health()` stayed `Ok`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Health, Message, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{RedisServer, RespValue};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The longest a test waits for one event (the machine may be loaded).
const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "s3cret-acl-pw";

/// The Streams adapter's service line of `docs/security.md`.
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

/// Creates `user` with the service line for `ns`, without `missing`.
fn create_user(server: &RedisServer, user: &str, ns: &str, missing: Option<&str>) {
    let pw = format!(">{PASSWORD}");
    let keys = format!("~{ns}:*");
    let mut args = vec![
        "ACL",
        "SETUSER",
        user,
        "reset",
        "on",
        &pw,
        "resetkeys",
        "resetchannels",
        &keys,
    ];
    args.extend(
        SERVICE_COMMANDS
            .iter()
            .copied()
            .filter(|c| Some(&c[1..]) != missing),
    );
    assert!(server.cmd(&args).unwrap().is_ok());
    // Redis >= 7.2 and Valkey: redis-rs announces itself with CLIENT
    // SETINFO (docs/security.md); Redis 7.0 refuses the rule: fine.
    let _ = server.cmd(&["ACL", "SETUSER", user, "+client|setinfo"]);
}

async fn connect(server: &RedisServer, user: &str, ns: &str, extra: &str) -> Arc<dyn Transport> {
    let url = format!(
        "redis+streams://{user}:{PASSWORD}@{}?namespace={ns}&block=200ms&response_timeout=5s{extra}",
        server.addr()
    );
    Arc::new(
        RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
            .await
            .unwrap(),
    )
}

/// `ACL LOG` as object (command, key or channel) → how many times denied.
fn denials(server: &RedisServer) -> HashMap<String, i64> {
    let log = server.cmd(&["ACL", "LOG"]).unwrap();
    let mut out = HashMap::new();
    for entry in log.as_array().unwrap_or_default() {
        let fields = entry.as_array().unwrap_or_default();
        let get = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_str() == Some(name))
                .map(|kv| kv[1].clone())
        };
        let object = get("object")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let count = get("count").and_then(|v| v.as_int()).unwrap_or(0);
        *out.entry(object).or_insert(0) += count;
    }
    out
}

/// Polls `health()` until it is not `Ok`, within [`WAIT`].
async fn wait_unhealthy(t: &Arc<dyn Transport>) -> Health {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = t.health().await;
        if h != Health::Ok || Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reason(h: &Health) -> String {
    match h {
        Health::Ok => "ok".into(),
        Health::Degraded(r) | Health::Down(r) => r.clone(),
        other => format!("{other:?}"),
    }
}

fn consumers(server: &RedisServer, key: &str, group: &str) -> Vec<String> {
    let reply = server.cmd(&["XINFO", "CONSUMERS", key, group]).unwrap();
    reply
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let f = c.as_array()?;
            f.chunks(2)
                .find(|kv| kv[0].as_str() == Some("name"))
                .and_then(|kv| kv[1].as_str().map(str::to_owned))
        })
        .collect()
}

/// Makes the group with one idle consumer `ghost` holding nothing.
fn ghost(server: &RedisServer, key: &str) {
    let r: RespValue = server
        .cmd(&["XGROUP", "CREATE", key, "g", "$", "MKSTREAM"])
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    let r = server
        .cmd(&["XGROUP", "CREATECONSUMER", key, "g", "ghost"])
        .unwrap();
    assert_eq!(r.as_int(), Some(1));
}

/// With the whole line, the cleanup removes the idle consumer; without
/// `xinfo|consumers` it cannot, and says so through `health()` and the
/// ACL log instead of swallowing the denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_denied_xinfo_is_reported_not_swallowed() -> TestResult {
    let server = RedisServer::start()?;
    let t = Topic::new("orders")?;
    for (user, missing) in [("full", None), ("noxinfo", Some("xinfo|consumers"))] {
        let ns = format!("acl-{user}");
        create_user(&server, user, &ns, missing);
        let key = keys::stream_key(&ns, &t);
        ghost(&server, &key);
        let bus = connect(&server, user, &ns, "&consumer_idle_cleanup=100ms").await;
        let mut sub = bus
            .subscribe(Subscription::new(t.clone()).group_member("g", "c1"))
            .await?;
        bus.publish(Message::new(t.clone(), "x")).await?;
        let d = tokio::time::timeout(WAIT, sub.recv()).await?.unwrap()?;
        d.ack().await?;
        if missing.is_none() {
            let deadline = Instant::now() + WAIT;
            while consumers(&server, &key, "g").contains(&"ghost".to_owned()) {
                assert!(
                    Instant::now() < deadline,
                    "the idle consumer was never removed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(consumers(&server, &key, "g"), ["c1"]);
            assert_eq!(bus.health().await, Health::Ok);
            assert!(denials(&server).is_empty(), "{:?}", denials(&server));
        } else {
            let h = wait_unhealthy(&bus).await;
            let r = reason(&h);
            assert!(
                r.starts_with("permission denied: redis refused XINFO CONSUMERS"),
                "{r}"
            );
            assert!(r.contains("+xinfo|consumers"), "{r}");
            assert_eq!(consumers(&server, &key, "g").len(), 2);
            assert!(
                denials(&server)
                    .get("xinfo|consumers")
                    .copied()
                    .unwrap_or(0)
                    >= 1
            );
        }
        sub.close().await?;
        bus.close().await?;
    }
    Ok(())
}

/// Without `xadd`, `publish` fails at once with a non-retried error naming
/// XADD; Redis saw exactly one attempt; `health()` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_xadd_fails_once_naming_the_command() -> TestResult {
    let server = RedisServer::start()?;
    create_user(&server, "noxadd", "acl", Some("xadd"));
    let bus = connect(&server, "noxadd", "acl", "").await;
    assert_eq!(bus.health().await, Health::Ok);
    let t = Topic::new("orders")?;
    let e = bus
        .publish(Message::new(t.clone(), "x"))
        .await
        .expect_err("XADD is not permitted");
    assert!(!e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("permission denied: redis refused XADD"),
        "{text}"
    );
    assert!(text.contains("+xadd"), "{text}");
    assert_eq!(denials(&server).get("xadd").copied(), Some(1));
    let r = reason(&bus.health().await);
    assert!(
        r.starts_with("permission denied: redis refused XADD"),
        "{r}"
    );
    // A batch is one more attempt, not a retry loop.
    let batch = vec![Message::new(t.clone(), "a"), Message::new(t, "b")];
    assert!(bus.publish_batch(batch).await.is_err());
    let n = denials(&server).get("xadd").copied().unwrap_or(0);
    assert!((2..=3).contains(&n), "{n} denied XADDs for 3 messages");
    bus.close().await?;
    Ok(())
}

/// Without `xadd`, `publish_queued` queues (the denial is not known yet)
/// and the ack resolves to the same `permission denied` error `publish`
/// gives, recorded for `health()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_queued_without_xadd_reaches_the_ack() -> TestResult {
    let server = RedisServer::start()?;
    create_user(&server, "noxadd", "aclq", Some("xadd"));
    let bus = connect(&server, "noxadd", "aclq", "").await;
    let t = Topic::new("orders")?;
    let ack = bus.publish_queued(Message::new(t, "x")).await?;
    let e = tokio::time::timeout(WAIT, ack)
        .await?
        .expect_err("XADD is not permitted");
    assert!(!e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("permission denied: redis refused XADD"),
        "{text}"
    );
    assert_eq!(denials(&server).get("xadd").copied(), Some(1));
    let r = reason(&bus.health().await);
    assert!(
        r.starts_with("permission denied: redis refused XADD"),
        "{r}"
    );
    bus.close().await?;
    Ok(())
}

/// Without `xautoclaim`, the claimer is denied once per `claim_interval`
/// round (a rate, not a tight loop), logs rate-limited and `health()`
/// names XAUTOCLAIM; delivery of new entries goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_without_xautoclaim_is_reported_at_its_own_pace() -> TestResult {
    let server = RedisServer::start()?;
    create_user(&server, "noclaim", "acl", Some("xautoclaim"));
    let bus = connect(&server, "noclaim", "acl", "&claim_interval=200ms").await;
    let t = Topic::new("orders")?;
    let started = Instant::now();
    let mut sub = bus
        .subscribe(Subscription::new(t.clone()).group_member("g", "c1"))
        .await?;
    let r = reason(&wait_unhealthy(&bus).await);
    assert!(
        r.starts_with("permission denied: redis refused XAUTOCLAIM"),
        "{r}"
    );
    bus.publish(Message::new(t, "still delivered")).await?;
    let d = tokio::time::timeout(WAIT, sub.recv()).await?.unwrap()?;
    assert_eq!(&d.payload()[..], b"still delivered");
    d.ack().await?;
    let n = denials(&server).get("xautoclaim").copied().unwrap_or(0);
    let rounds = started.elapsed().as_millis() / 200 + 2;
    assert!(
        n >= 1 && i64::try_from(rounds)? >= n,
        "{n} denials in {rounds} rounds"
    );
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

/// Without `xreadgroup`, a group subscriber's reader is denied: `health()`
/// names XREADGROUP and the reader retries at its backoff's pace (so a
/// fixed ACL resumes it), not in a tight loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_read_without_xreadgroup_is_reported() -> TestResult {
    let server = RedisServer::start()?;
    create_user(&server, "noread", "acl", Some("xreadgroup"));
    let bus = connect(&server, "noread", "acl", "").await;
    let t = Topic::new("orders")?;
    let started = Instant::now();
    let sub = bus
        .subscribe(Subscription::new(t).group_member("g", "c1"))
        .await?;
    let r = reason(&wait_unhealthy(&bus).await);
    assert!(
        r.starts_with("permission denied: redis refused XREADGROUP"),
        "{r}"
    );
    assert!(r.contains("+xreadgroup"), "{r}");
    let n = denials(&server).get("xreadgroup").copied().unwrap_or(0);
    // A tight loop would be thousands per second; the backoff starts at
    // tens of milliseconds and doubles.
    let bound = started.elapsed().as_millis() / 10 + 5;
    assert!(
        n >= 1 && i64::try_from(bound)? >= n,
        "{n} denials within {:?}",
        started.elapsed()
    );
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

/// Without `xclaim`, the keep-alive script of a held delivery is denied
/// inside Lua (Redis 7.0: `ERR The user executing the script can't run
/// this command`): `health()` says so, naming what to grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_script_without_xclaim_is_reported() -> TestResult {
    let server = RedisServer::start()?;
    create_user(&server, "noclaim", "acl", Some("xclaim"));
    let bus = connect(&server, "noclaim", "acl", "").await;
    let t = Topic::new("orders")?;
    let mut sub = bus
        .subscribe(
            Subscription::new(t.clone())
                .group_member("g", "c1")
                .ack_timeout(Duration::from_millis(400)),
        )
        .await?;
    bus.publish(Message::new(t, "held")).await?;
    let held = tokio::time::timeout(WAIT, sub.recv()).await?.unwrap()?;
    let r = reason(&wait_unhealthy(&bus).await);
    assert!(
        r.starts_with("permission denied: redis refused the keep-alive script"),
        "{r}"
    );
    assert!(r.contains("+xclaim"), "{r}");
    drop(held);
    sub.close().await?;
    bus.close().await?;
    Ok(())
}

/// `INFO clients`' `blocked_clients`.
fn blocked_clients(server: &RedisServer) -> i64 {
    let info = server.cmd(&["INFO", "clients"]).unwrap();
    let text = info.as_str().map(str::to_owned).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(-1)
}

/// Closing a group member leaves no `XREADGROUP` of it blocked in Redis:
/// with `+client|id +client|unblock` the closer ends the read with `CLIENT
/// UNBLOCK`; without them it waits for the read's `block` time, and Redis
/// logs one refused `CLIENT ID` per transport (two members here).
///
/// Reproduction of the defect this guards: the closer waited for the
/// reader *task* only; its blocked read stayed in Redis and took the next
/// entry for the closed consumer, where it stayed pending until the ack
/// timeout (groups.rs `close_flushes_acks_and_removes_an_idle_consumer`
/// failed about 1 run in 5 under 3 CPU hogs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_member_leaves_no_blocked_read() -> TestResult {
    let server = RedisServer::start()?;
    let t = Topic::new("orders")?;
    for (user, missing) in [("full", None), ("noid", Some("client|id"))] {
        let ns = format!("close-{user}");
        create_user(&server, user, &ns, missing);
        let key = keys::stream_key(&ns, &t);
        let bus = connect(&server, user, &ns, "&block=2s").await;
        for member in ["c1", "c2"] {
            let sub = bus
                .subscribe(
                    Subscription::new(t.clone())
                        .group_member("g", member)
                        .ack_timeout(Duration::from_secs(600)),
                )
                .await?;
            let deadline = Instant::now() + WAIT;
            while blocked_clients(&server) < 1 {
                assert!(Instant::now() < deadline, "the reader never blocked");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sub.close().await?;
            assert_eq!(
                blocked_clients(&server),
                0,
                "{user}: a read is still blocked"
            );
        }
        // What is published now goes to the next member, not to a closed one.
        let mut sub = bus
            .subscribe(Subscription::new(t.clone()).group_member("g", "c3"))
            .await?;
        for n in 0..2 {
            bus.publish(Message::new(t.clone(), format!("m{n}")))
                .await?;
        }
        for _ in 0..2 {
            tokio::time::timeout(WAIT, sub.recv())
                .await?
                .unwrap()?
                .ack()
                .await?;
        }
        sub.close().await?;
        assert_eq!(consumers(&server, &key, "g"), Vec::<String>::new());
        let refused = denials(&server).get("client|id").copied().unwrap_or(0);
        assert_eq!(refused, i64::from(missing.is_some()), "{user}");
        assert_eq!(bus.health().await, Health::Ok, "{user}");
        bus.close().await?;
    }
    Ok(())
}
