//! The least-privilege `ACL SETUSER` line `doctor` suggests, per adapter,
//! for the URL's namespace: every command switchyard sends there (found by
//! recording a full workload with `MONITOR`, see docs/security.md), the
//! namespace's keys (Streams) or channels (Pub/Sub), nothing else.
//!
//! Keep these lists and docs/security.md the same.

use std::fmt::Write as _;

/// Commands of an application using the Streams adapter: publish, fan-out
/// and pattern subscriptions, replay, groups, dead letters.
pub(crate) const STREAMS_SERVICE: &[&str] = &[
    "ping",
    "role",
    "xadd",
    "xread",
    "xrange",
    "xrevrange",
    "scan",
    "xgroup|create",
    "xreadgroup",
    "xack",
    "xpending",
    "xclaim",
    "xautoclaim",
    "xinfo|consumers",
    "xgroup|delconsumer",
    "evalsha",
    "script|load",
    "client|id",
    "client|unblock",
    "xinfo|stream",
    "xinfo|groups",
];

/// What the CLI adds for the Streams adapter: `dlq` (`xlen`, `xdel`,
/// `xtrim`), `topics` (`xinfo|stream`, `xinfo|groups`) and `doctor`
/// (`info`; `del` removes its scratch stream).
pub(crate) const STREAMS_OPS: &[&str] = &["xlen", "xdel", "xtrim", "info", "del"];

/// Commands of an application using the Pub/Sub backplane.
pub(crate) const PUBSUB_SERVICE: &[&str] = &[
    "ping",
    "role",
    "publish",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "pubsub|numsub",
];

/// What `doctor` adds for the backplane (`info`).
pub(crate) const PUBSUB_OPS: &[&str] = &["info"];

/// The line for `namespace`: `streams` picks the adapter; `patterns` are
/// the backplane's `PSUBSCRIBE` patterns (see
/// `switchyard::redis_pubsub::pattern_channel`), each allowed by a rule of
/// exactly its text. `setinfo`: the server knows `CLIENT SETINFO` (Redis
/// 7.2 and later, Valkey), which redis-rs sends on every connection (its
/// reply is ignored, but a denial lands in `ACL LOG`); Redis 7.0 refuses a
/// rule naming it. `<user>` and `<password>` stay placeholders: the password is
/// never printed.
pub(crate) fn line(namespace: &str, streams: bool, patterns: &[String], setinfo: bool) -> String {
    let mut s = String::from("ACL SETUSER <user> reset on ><password> resetkeys resetchannels");
    let commands: Vec<&str> = if streams {
        let _ = write!(s, " ~{namespace}:*");
        STREAMS_SERVICE.iter().chain(STREAMS_OPS).copied().collect()
    } else {
        let _ = write!(s, " &{namespace}:*");
        for p in patterns {
            let _ = write!(s, " &{p}");
        }
        PUBSUB_SERVICE.iter().chain(PUBSUB_OPS).copied().collect()
    };
    s.push_str(" -@all");
    for c in commands {
        let _ = write!(s, " +{c}");
    }
    if setinfo {
        s.push_str(" +client|setinfo");
    }
    s
}

/// Whether a server of `version` (`INFO server`'s `redis_version`) and
/// `name` (`server_name`, `valkey` for Valkey) knows `CLIENT SETINFO`.
pub(crate) fn knows_setinfo(version: Option<&str>, name: Option<&str>) -> bool {
    if name == Some("valkey") {
        return true;
    }
    let mut parts = version.unwrap_or_default().split('.');
    let major: u32 = parts
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    let minor: u32 = parts
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    (major, minor) >= (7, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert!(!knows_setinfo(Some("7.0.15"), Some("redis")));
        assert!(knows_setinfo(Some("7.2.4"), None));
        assert!(knows_setinfo(Some("7.2.4"), Some("valkey")));
        assert!(!knows_setinfo(None, None));
        assert!(line("app", true, &[], true).ends_with("+del +client|setinfo"));
        let l = line("app", true, &[], false);
        assert!(
            l.starts_with(
                "ACL SETUSER <user> reset on ><password> resetkeys resetchannels ~app:* -@all +ping +role +xadd"
            ),
            "{l}"
        );
        assert!(l.ends_with("+info +del"), "{l}");
        assert!(!l.contains('&'), "{l}");
        let l = line("app", false, &["app:orders.*".to_owned()], false);
        assert_eq!(
            l,
            "ACL SETUSER <user> reset on ><password> resetkeys resetchannels &app:* &app:orders.* -@all +ping +role +publish +subscribe +unsubscribe +psubscribe +punsubscribe +pubsub|numsub +info"
        );
    }
}
