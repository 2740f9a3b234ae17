//! The `permissions` check of `switchyard doctor`: runs every command the
//! adapter uses on a scratch key or channel in the URL's namespace (then
//! deletes it) and says which the ACL user may not run; the line that
//! grants exactly them is the `acl` check ([`acl`](super::acl)).

use std::time::Duration;

use switchyard_redis::redis::{self, aio::MultiplexedConnection};
use switchyard_redis::{RedisClient, RedisConfig};

use super::{Check, Status};

/// Classifies one probe's outcome: `None` when it worked.
fn denied(what: &str, r: redis::RedisResult<redis::Value>) -> Option<String> {
    let e = r.err()?;
    let text = e.to_string();
    if text.contains("NOPERM") || text.to_ascii_lowercase().contains("no permissions") {
        Some(format!("{what} (no permission)"))
    } else {
        Some(format!("{what} ({})", text.replace('\n', " ")))
    }
}

/// A scratch name unlikely to clash with anything; with `slots` (a
/// cluster master's slot ranges) one whose hash slot is among them, so the
/// commands run on that master.
fn scratch(cfg: &RedisConfig, slots: Option<&[(u16, u16)]>) -> String {
    let make = || {
        format!(
            "{}:{{switchyard-doctor-{}-{:08x}}}",
            cfg.namespace,
            std::process::id(),
            rand::random::<u32>()
        )
    };
    let Some(slots) = slots.filter(|s| !s.is_empty()) else {
        return make();
    };
    // A master of 1 of N slots needs about N tries; bounded anyway.
    let mut key = make();
    for _ in 0..200_000 {
        let slot = switchyard_redis::key_slot(key.as_bytes());
        if slots.iter().any(|&(a, b)| (a..=b).contains(&slot)) {
            break;
        }
        key = make();
    }
    key
}

/// Runs every command the Streams adapter uses on a scratch stream in the
/// namespace, then deletes it.
pub(super) async fn streams_permissions(
    conn: &mut MultiplexedConnection,
    cfg: &RedisConfig,
    slots: Option<&[(u16, u16)]>,
) -> Check {
    let key = scratch(cfg, slots);
    let mut problems = Vec::new();
    let xadd: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(&key)
        .arg("MAXLEN")
        .arg("~")
        .arg(10)
        .arg("*")
        .arg("v")
        .arg("doctor")
        .query_async(conn)
        .await;
    let id = match xadd {
        Ok(id) => id,
        Err(e) => {
            let why = denied("XADD", Err(e)).unwrap_or_default();
            return Check::new(
                "permissions",
                Status::Fail,
                format!(
                    "cannot write a stream under {}:*: {why}; give the user the line of the acl check below (docs/security.md)",
                    cfg.namespace
                ),
            );
        }
    };
    let probes: Vec<(&str, redis::Cmd)> = vec![
        ("XLEN", redis::cmd("XLEN").arg(&key).clone()),
        (
            "XRANGE",
            redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .clone(),
        ),
        (
            "XREVRANGE",
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .clone(),
        ),
        (
            "XREAD",
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&key)
                .arg("0")
                .clone(),
        ),
        (
            "XGROUP CREATE",
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg("g")
                .arg("0")
                .clone(),
        ),
        (
            "XINFO CONSUMERS",
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&key)
                .arg("g")
                .clone(),
        ),
        (
            "XINFO STREAM",
            redis::cmd("XINFO").arg("STREAM").arg(&key).clone(),
        ),
        (
            "XINFO GROUPS",
            redis::cmd("XINFO").arg("GROUPS").arg(&key).clone(),
        ),
        (
            "XREADGROUP",
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .clone(),
        ),
        (
            "XPENDING",
            redis::cmd("XPENDING").arg(&key).arg("g").clone(),
        ),
        (
            "XCLAIM",
            redis::cmd("XCLAIM")
                .arg(&key)
                .arg("g")
                .arg("c")
                .arg(0)
                .arg(&id)
                .arg("JUSTID")
                .clone(),
        ),
        (
            "XAUTOCLAIM",
            redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg("g")
                .arg("c")
                .arg(0)
                .arg("0-0")
                .arg("COUNT")
                .arg(1)
                .arg("JUSTID")
                .clone(),
        ),
        (
            "XACK",
            redis::cmd("XACK").arg(&key).arg("g").arg(&id).clone(),
        ),
        (
            "XGROUP DELCONSUMER",
            redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&key)
                .arg("g")
                .arg("c")
                .clone(),
        ),
        ("XDEL", redis::cmd("XDEL").arg(&key).arg(&id).clone()),
        (
            "XTRIM",
            redis::cmd("XTRIM").arg(&key).arg("MAXLEN").arg(0).clone(),
        ),
        (
            "SCAN",
            redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(format!("{}:{{*", cfg.namespace))
                .arg("COUNT")
                .arg(10)
                .arg("TYPE")
                .arg("stream")
                .clone(),
        ),
    ];
    let mut ops = Vec::new();
    for (what, cmd) in probes {
        if let Some(p) = denied(what, cmd.query_async(conn).await) {
            if OPS_ONLY.contains(&what) {
                ops.push(p);
            } else {
                problems.push(p);
            }
        }
    }
    // Dead letters and replays run Lua scripts (EVALSHA, SCRIPT LOAD).
    let script = redis::Script::new("return redis.call('XLEN', KEYS[1])");
    if let Some(p) = denied(
        "EVALSHA/SCRIPT LOAD",
        script.key(&key).invoke_async(conn).await,
    ) {
        problems.push(p);
    }
    let cleanup = denied("DEL", redis::cmd("DEL").arg(&key).query_async(conn).await);
    ops.extend(cleanup);
    verdict(
        problems,
        ops,
        &key,
        cfg,
        "XADD, XREAD(GROUP), XACK, XCLAIM, XAUTOCLAIM, XPENDING, XGROUP, XINFO, XDEL, XTRIM, SCAN, scripts",
    )
}

/// Probes of commands only the CLI needs (`dlq`, `topics`, `doctor`): the
/// adapter works without them.
const OPS_ONLY: &[&str] = &["XLEN", "XDEL", "XTRIM", "XINFO STREAM", "XINFO GROUPS"];

/// Publishes, subscribes and pattern-subscribes on a scratch channel in the
/// namespace, on a connection of its own.
pub(super) async fn pubsub_permissions(
    conn: &mut MultiplexedConnection,
    cfg: &RedisConfig,
    globs: &[String],
) -> Check {
    let channel = scratch(cfg, None);
    let mut problems = Vec::new();
    if let Some(p) = denied(
        "PUBLISH",
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("doctor")
            .query_async(conn)
            .await,
    ) {
        problems.push(p);
    }
    match RedisClient::new(cfg.clone()) {
        Err(e) => problems.push(format!("a subscribing connection ({e})")),
        Ok(client) => match client.pubsub().await {
            Err(e) => problems.push(format!("a subscribing connection ({e})")),
            Ok(mut sub) => {
                let bound = Duration::from_secs(5);
                let mut steps = vec![
                    (
                        "SUBSCRIBE".to_owned(),
                        tokio::time::timeout(bound, sub.subscribe(&channel)).await,
                    ),
                    (
                        "UNSUBSCRIBE".to_owned(),
                        tokio::time::timeout(bound, sub.unsubscribe(&channel)).await,
                    ),
                ];
                // Patterns are checked literally against the channel rules:
                // probe exactly the ones the service uses.
                for glob in globs {
                    steps.push((
                        format!("PSUBSCRIBE {glob}"),
                        tokio::time::timeout(bound, sub.psubscribe(glob)).await,
                    ));
                    steps.push((
                        format!("PUNSUBSCRIBE {glob}"),
                        tokio::time::timeout(bound, sub.punsubscribe(glob)).await,
                    ));
                }
                for (what, r) in steps {
                    let what = what.as_str();
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            problems.extend(denied(what, Err(e)));
                        }
                        Err(_) => problems.push(format!("{what} (no reply within 5s)")),
                    }
                }
            }
        },
    }
    let used = if globs.is_empty() {
        "PUBLISH, SUBSCRIBE, PING; pattern subscriptions not checked: pass --pattern for each pattern the service uses".to_owned()
    } else {
        format!("PUBLISH, SUBSCRIBE, PING, PSUBSCRIBE {}", globs.join(" "))
    };
    verdict(problems, Vec::new(), &channel, cfg, &used)
}

/// `problems`: commands the adapter needs and may not run (a failure);
/// `ops`: commands only the CLI needs (`dlq`, `topics`, `doctor`'s scratch
/// clean-up: a warning).
fn verdict(
    problems: Vec<String>,
    ops: Vec<String>,
    scratch: &str,
    cfg: &RedisConfig,
    used: &str,
) -> Check {
    let user = cfg.username.as_deref().unwrap_or("default");
    if !problems.is_empty() {
        return Check::new(
            "permissions",
            Status::Fail,
            format!(
                "user {user} cannot run: {}; give the user the line of the acl check below (docs/security.md)",
                problems.join(", "),
            ),
        );
    }
    let detail = format!("user {user} may run what the adapter uses ({used})");
    if ops.is_empty() {
        return Check::new("permissions", Status::Ok, detail);
    }
    Check::new(
        "permissions",
        Status::Warn,
        format!(
            "{detail}; but not what the CLI's dlq, topics and doctor use: {} (scratch key {scratch}); see the acl check below",
            ops.join(", ")
        ),
    )
}
