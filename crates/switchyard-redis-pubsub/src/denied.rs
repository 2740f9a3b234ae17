//! The errors of a subscription Redis refused.

use switchyard_core::{Error, TopicFilter};

use crate::shared::Shared;

/// The error of a subscription Redis refused with `reply` (one of `names`).
pub(crate) fn refused_subscription(
    shared: &Shared,
    filter: &TopicFilter,
    names: &[String],
    reply: &str,
) -> Error {
    let cfg = &shared.config;
    let noperm = switchyard_redis::denied::is_noperm_text(reply);
    if shared.partitions.is_some() {
        let ns = &cfg.redis.namespace;
        let seeds = crate::cluster::seeds(shared);
        let what = if noperm { "permission denied: " } else { "" };
        return Error::Backend(format!(
            "{what}redis cluster at {seeds} refused SSUBSCRIBE {} for the subscription to {filter} ({reply}); on a cluster every subscription, patterns included, is an SSUBSCRIBE of partition channels `{ns}:{{p<k>/<n>:<i>}}`: allow them for the ACL user (ACL SETUSER <user> &{ns}:*) or all channels (&*); see docs/redis-pubsub.md, Redis Cluster",
            names.join(" ")
        ));
    }
    if noperm {
        return denied_subscription(&cfg.redis.addr(), filter, names, reply);
    }
    Error::Backend(format!(
        "redis at {} refused the subscription to {filter} ({reply}); allow the channel or pattern for the ACL user (ACL SETUSER <user> &<channel>) or subscribe to another one",
        cfg.redis.addr(),
    ))
}

/// The error of a subscription the ACL user may not make: names the
/// command, the channel or pattern and the exact rule to grant.
fn denied_subscription(addr: &str, filter: &TopicFilter, names: &[String], reply: &str) -> Error {
    let rules: Vec<String> = names.iter().map(|n| format!("&{n}")).collect();
    let (command, why) = if matches!(filter, TopicFilter::Pattern(_)) {
        (
            "PSUBSCRIBE",
            "Redis matches a pattern subscription literally against the user's channel rules, so `&<namespace>:*` does not allow it: allow exactly this pattern",
        )
    } else {
        ("SUBSCRIBE", "allow the channel")
    };
    Error::Backend(format!(
        "permission denied: redis at {addr} refused {command} {} for the subscription to {filter} ({reply}); {why} (ACL SETUSER <user> {}) or all channels (&*); see docs/security.md",
        names.join(" "),
        rules.join(" ")
    ))
}

/// The reply with which Redis refused one of `names` after refusal number
/// `after`, if it did.
pub(crate) fn refused(shared: &Shared, after: u64, names: &[String]) -> Option<String> {
    shared
        .refusals
        .lock()
        .iter()
        .filter(|r| r.number > after)
        .find(|r| r.names.iter().any(|n| names.contains(n)))
        .map(|r| r.reply.clone())
}
