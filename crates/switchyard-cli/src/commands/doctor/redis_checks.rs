//! The checks of `switchyard doctor` for a Redis server: reachability and
//! latency, version, persistence, eviction policy, cluster mode and role,
//! ACL permissions ([`permissions`](super::permissions): every command the
//! adapter uses, on a scratch key or channel in the URL's namespace), TLS,
//! and the least-privilege ACL line for the namespace
//! ([`acl`](super::acl)).

use std::collections::HashMap;
use std::time::Instant;

use switchyard_redis::RedisConfig;
use switchyard_redis::redis::{self, aio::MultiplexedConnection};

use super::permissions::{pubsub_permissions, streams_permissions};
use super::{Check, Status, acl};
use crate::commands::redis_info;
use crate::commands::support::redis_conn;

/// Oldest Redis the Streams adapter works with: XAUTOCLAIM, `XADD ...
/// MINID` and exclusive ranges `(id` arrived in 6.2.
const STREAMS_MIN: (u32, u32) = (6, 2);
/// Oldest Redis the Pub/Sub backplane is tested with.
const PUBSUB_MIN: (u32, u32) = (5, 0);
/// PINGs timed for the latency figure.
const PINGS: usize = 5;

/// Runs every check; `streams` picks the Streams adapter's needs, else the
/// Pub/Sub backplane's. Only a bad URL is an `Err`; everything found on the
/// server is a [`Check`].
pub(super) async fn run(
    url: &str,
    streams: bool,
    patterns: &[String],
) -> anyhow::Result<Vec<Check>> {
    let cfg = redis_conn::config(url)?;
    let globs = pattern_globs(&cfg.namespace, patterns)?;
    if cfg.cluster.is_some() {
        return Ok(super::cluster_checks::run(&cfg, streams, &globs).await);
    }
    let mut checks = node_checks(&cfg, streams, &globs, None).await;
    checks.push(tls(&cfg));
    Ok(checks)
}

/// The checks of one server (or one cluster master, whose slots are
/// `slots`): every check but `tls`; the `acl` line last.
pub(super) async fn node_checks(
    cfg: &RedisConfig,
    streams: bool,
    globs: &[String],
    slots: Option<&[(u16, u16)]>,
) -> Vec<Check> {
    let acl_check = |setinfo: bool| {
        Check::new(
            "acl",
            Status::Ok,
            acl::line(&cfg.namespace, streams, globs, setinfo),
        )
    };
    let mut checks = Vec::new();
    let started = Instant::now();
    let mut conn = match redis_conn::open(cfg).await {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::new("reachable", Status::Fail, format!("{e:#}")));
            for name in [
                "server",
                "persistence",
                "eviction",
                "cluster",
                "permissions",
            ] {
                checks.push(Check::new(name, Status::Skip, "not reachable"));
            }
            checks.push(acl_check(false));
            return checks;
        }
    };
    let connect_ms = started.elapsed().as_secs_f64() * 1e3;
    checks.push(reachable(&mut conn, cfg, connect_ms).await);
    let server = redis_info::info(&mut conn, "server")
        .await
        .unwrap_or_default();
    checks.push(version(&server, streams));
    checks.push(persistence(&mut conn, streams).await);
    checks.push(eviction(&mut conn, streams).await);
    checks.push(cluster(&mut conn, &server, streams, slots.is_some()).await);
    checks.push(if streams {
        streams_permissions(&mut conn, cfg, slots).await
    } else {
        pubsub_permissions(&mut conn, cfg, globs).await
    });
    checks.push(acl_check(acl::knows_setinfo(
        server.get("redis_version").map(String::as_str),
        server.get("server_name").map(String::as_str),
    )));
    checks
}

/// The backplane's `PSUBSCRIBE` pattern of each `--pattern`.
fn pattern_globs(namespace: &str, patterns: &[String]) -> anyhow::Result<Vec<String>> {
    patterns
        .iter()
        .map(|p| {
            let pattern = switchyard::Pattern::new(p)
                .map_err(|e| anyhow::anyhow!("--pattern {p:?} is not a valid pattern: {e}"))?;
            Ok(pattern_channel(namespace, &pattern))
        })
        .collect()
}

#[cfg(feature = "redis-pubsub")]
fn pattern_channel(namespace: &str, pattern: &switchyard::Pattern) -> String {
    switchyard::redis_pubsub::pattern_channel(namespace, pattern)
}

/// Without the backplane, patterns only matter to the Streams adapter,
/// whose ACL line has no channels.
#[cfg(not(feature = "redis-pubsub"))]
fn pattern_channel(namespace: &str, pattern: &switchyard::Pattern) -> String {
    format!("{namespace}:{pattern}")
}

async fn reachable(conn: &mut MultiplexedConnection, cfg: &RedisConfig, connect_ms: f64) -> Check {
    let mut times = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let t = Instant::now();
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(conn).await;
        if let Err(e) = r {
            return Check::new(
                "reachable",
                Status::Fail,
                format!(
                    "connected to {}, but PING failed: {}",
                    cfg.addr(),
                    redis_conn::failed("PING", &e)
                ),
            );
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(PINGS / 2).copied().unwrap_or_default();
    let status = if median > 50.0 {
        Status::Warn
    } else {
        Status::Ok
    };
    let note = if status == Status::Warn {
        " (high for a message bus: is Redis far away or overloaded?)"
    } else {
        ""
    };
    Check::new(
        "reachable",
        status,
        format!(
            "{}: connected in {connect_ms:.1} ms, PING {median:.2} ms (median of {PINGS}){note}",
            cfg.addr()
        ),
    )
}

/// `7.2.4` as `(7, 2)`.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

fn version(server: &HashMap<String, String>, streams: bool) -> Check {
    let Some(v) = server.get("redis_version") else {
        return Check::new(
            "server",
            Status::Warn,
            "INFO server did not report redis_version (not permitted?): cannot check the version",
        );
    };
    let name = server
        .get("server_name")
        .map_or("Redis", |s| if s == "valkey" { "Valkey" } else { "Redis" });
    let (min, needs) = if streams {
        (STREAMS_MIN, "streams with XAUTOCLAIM and XADD MINID")
    } else {
        (PUBSUB_MIN, "Pub/Sub with PSUBSCRIBE")
    };
    match major_minor(v) {
        Some(have) if have >= min => Check::new(
            "server",
            Status::Ok,
            format!("{name} {v}: has {needs} (needs >= {}.{})", min.0, min.1),
        ),
        Some(_) => Check::new(
            "server",
            Status::Fail,
            format!(
                "{name} {v} is too old: the adapter needs {needs}, Redis >= {}.{}; upgrade the server",
                min.0, min.1
            ),
        ),
        None => Check::new(
            "server",
            Status::Warn,
            format!("unrecognised version {v:?}"),
        ),
    }
}

/// `CONFIG GET name`, `None` when not permitted or unknown.
async fn config_get(conn: &mut MultiplexedConnection, name: &str) -> Option<String> {
    let pairs: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .ok()?;
    pairs.get(1).cloned()
}

async fn persistence(conn: &mut MultiplexedConnection, streams: bool) -> Check {
    let info = redis_info::info(conn, "persistence")
        .await
        .unwrap_or_default();
    let aof = info.get("aof_enabled").map(String::as_str) == Some("1");
    let save = config_get(conn, "save").await;
    let fsync = config_get(conn, "appendfsync").await;
    let what = match (aof, save.as_deref()) {
        (true, _) => format!(
            "AOF on (appendfsync {})",
            fsync.as_deref().unwrap_or("unknown")
        ),
        (false, Some(s)) if !s.trim().is_empty() => format!("RDB snapshots only (save {s})"),
        (false, Some(_)) => "none (no AOF, no RDB snapshots)".to_owned(),
        (false, None) => "AOF off; RDB snapshots unknown (CONFIG GET not permitted)".to_owned(),
    };
    if !streams {
        return Check::new(
            "persistence",
            Status::Ok,
            format!("{what}; the backplane stores nothing, so it does not matter"),
        );
    }
    if aof {
        Check::new("persistence", Status::Ok, what)
    } else {
        Check::new(
            "persistence",
            Status::Warn,
            format!(
                "{what}: a Redis restart loses messages written since the last snapshot; set appendonly yes for durable streams"
            ),
        )
    }
}

async fn eviction(conn: &mut MultiplexedConnection, streams: bool) -> Check {
    let info = redis_info::info(conn, "memory").await.unwrap_or_default();
    let policy = match info.get("maxmemory_policy") {
        Some(p) => p.clone(),
        None => match config_get(conn, "maxmemory-policy").await {
            Some(p) => p,
            None => {
                return Check::new(
                    "eviction",
                    Status::Warn,
                    "maxmemory-policy unknown (INFO memory and CONFIG GET not permitted)",
                );
            }
        },
    };
    let maxmemory = info
        .get("maxmemory_human")
        .filter(|m| m.as_str() != "0B")
        .map_or_else(
            || "no maxmemory limit".to_owned(),
            |m| format!("maxmemory {m}"),
        );
    if !streams {
        return Check::new(
            "eviction",
            Status::Ok,
            format!("maxmemory-policy {policy}, {maxmemory}; the backplane keeps no keys"),
        );
    }
    if policy.starts_with("allkeys-") {
        Check::new(
            "eviction",
            Status::Warn,
            format!(
                "maxmemory-policy {policy} ({maxmemory}): under memory pressure Redis may evict whole streams and their messages silently; set maxmemory-policy noeviction (publishes then fail loudly when memory is full) and cap streams with maxlen"
            ),
        )
    } else if policy.starts_with("volatile-") {
        Check::new(
            "eviction",
            Status::Ok,
            format!(
                "maxmemory-policy {policy} ({maxmemory}): evicts only keys with a TTL; streams have none"
            ),
        )
    } else {
        Check::new(
            "eviction",
            Status::Ok,
            format!("maxmemory-policy {policy} ({maxmemory})"),
        )
    }
}

async fn cluster(
    conn: &mut MultiplexedConnection,
    server: &HashMap<String, String>,
    streams: bool,
    cluster_url: bool,
) -> Check {
    let replication = redis_info::info(conn, "replication")
        .await
        .unwrap_or_default();
    let role = replication
        .get("role")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let mode = server
        .get("redis_mode")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    if role == "slave" || role == "replica" {
        let primary = match (
            replication.get("master_host"),
            replication.get("master_port"),
        ) {
            (Some(h), Some(p)) => format!(" (its primary is {h}:{p})"),
            _ => String::new(),
        };
        return Check::new(
            "cluster",
            Status::Fail,
            format!("this server is a read-only replica{primary}: point --url at the primary"),
        );
    }
    match (mode.as_str(), streams) {
        ("cluster", _) if cluster_url => {
            Check::new("cluster", Status::Ok, format!("cluster node, role {role}"))
        }
        ("cluster", true) => Check::new(
            "cluster",
            Status::Fail,
            "cluster mode: this node serves only its own slots; use the cluster URL form (redis+streams+cluster://host:port[,host:port...])",
        ),
        ("cluster", false) => Check::new(
            "cluster",
            Status::Ok,
            "cluster mode: PUBLISH reaches every node's subscribers (each message crosses the cluster bus)",
        ),
        ("sentinel", _) => Check::new(
            "cluster",
            Status::Fail,
            "this is a Sentinel, not a data server: point --url at the primary it monitors",
        ),
        (m, _) => Check::new("cluster", Status::Ok, format!("{m}, role {role}")),
    }
}

pub(super) fn tls(cfg: &RedisConfig) -> Check {
    let loopback = matches!(cfg.host.as_str(), "localhost" | "::1" | "[::1]")
        || cfg
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match (cfg.tls, loopback) {
        (true, _) if cfg.tls_insecure => Check::new(
            "tls",
            Status::Warn,
            "on, but tls_insecure=true: the server's certificate is not checked; give its CA with tls_ca=/path/ca.pem instead",
        ),
        (true, _) => {
            let trust = match &cfg.tls_ca {
                Some(ca) => format!("CA {}", ca.display()),
                None => "the platform's root certificates".to_owned(),
            };
            let client = if cfg.tls_cert.is_some() {
                ", client certificate"
            } else {
                ""
            };
            Check::new(
                "tls",
                Status::Ok,
                format!("on (rediss://, trusting {trust}{client})"),
            )
        }
        (false, true) => Check::new("tls", Status::Ok, "off (fine on loopback)"),
        (false, false) => Check::new(
            "tls",
            Status::Warn,
            format!(
                "off: messages and the password cross the network to {} in clear text; use rediss+streams:// or rediss+pubsub://",
                cfg.host
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(major_minor("7.2.4"), Some((7, 2)));
        assert_eq!(major_minor("6"), Some((6, 0)));
        assert_eq!(major_minor("x"), None);
        let mut server = HashMap::new();
        server.insert("redis_version".to_owned(), "6.0.16".to_owned());
        assert_eq!(version(&server, true).status, Status::Fail);
        assert_eq!(version(&server, false).status, Status::Ok);
        server.insert("redis_version".to_owned(), "7.0.15".to_owned());
        assert_eq!(version(&server, true).status, Status::Ok);
    }

    #[test]
    fn tls_warns_off_loopback_only() {
        let local = RedisConfig::new("127.0.0.1", 6379);
        assert_eq!(tls(&local).status, Status::Ok);
        let remote = RedisConfig::new("redis.internal", 6379);
        assert_eq!(tls(&remote).status, Status::Warn);
        assert_eq!(tls(&remote.clone().with_tls(true)).status, Status::Ok);
        let private = remote.clone().with_tls(true).with_tls_ca("/etc/ca.pem");
        assert!(tls(&private).detail.contains("CA /etc/ca.pem"));
        let insecure = remote.with_tls(true).with_tls_insecure(true);
        assert_eq!(tls(&insecure).status, Status::Warn);
    }
}
