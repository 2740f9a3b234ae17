//! Removing idle consumers from a group.
//!
//! Consumers that left (or crashed and were taken over) stay in the group
//! until removed. Every member periodically runs a Lua script per stream
//! that reads `XINFO CONSUMERS` and `XGROUP DELCONSUMER`s every other
//! consumer with **0 pending entries** idle longer than
//! `consumer_idle_cleanup`. The check and the removal happen in one script,
//! so a consumer that just received entries is never removed (removing a
//! consumer drops its pending entries from the group). On close, a
//! subscriber removes its own consumer the same way when nothing is
//! pending for it.

use std::sync::LazyLock;

use super::keep::millis;
use super::{Group, is_nogroup};

/// A missing stream or group is nothing to clean up; any other failure of
/// `XINFO CONSUMERS` is returned as the script's error, never swallowed. A
/// denied command (Redis 7.0 says `ERR The user executing the script can't
/// run this command`, Valkey 8 `ERR ACL failure in script: …`) comes back
/// as `NOPERM …`.
///
/// KEYS: the stream. ARGV: group, minimum idle time in ms, the consumer to
/// remove (`''`: any), this consumer (never removed when `ARGV[3]` is `''`).
/// Returns the names removed.
const SCRIPT: &str = r"
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then
  local msg = type(consumers) == 'table' and consumers['err'] or tostring(consumers)
  if string.find(msg, 'NOGROUP', 1, true) or string.find(msg, 'no such key', 1, true) then
    return {}
  end
  local denied = string.find(msg, 'can\'t run this command', 1, true) or string.find(msg, 'ACL failure', 1, true)
  if denied and not string.find(msg, 'NOPERM', 1, true) then
    msg = 'NOPERM ' .. msg
  end
  return redis.error_reply(msg)
end
local min_idle = tonumber(ARGV[2])
local removed = {}
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  local wanted
  if ARGV[3] == '' then wanted = name ~= ARGV[4] else wanted = name == ARGV[3] end
  if wanted and pending == 0 and idle ~= nil and idle >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed[#removed + 1] = name
  end
end
return removed
";

static CLEANUP: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// Removes other consumers of the group that have nothing pending and were
/// idle longer than `consumer_idle_cleanup`, on every stream.
pub(crate) async fn run(g: &Group) {
    let min_idle = millis(g.inner.config.consumer_idle_cleanup);
    for stream in g.all_streams() {
        match remove(g, &stream.key, min_idle, "").await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(
                    topic = %stream.topic, group = %g.cfg.group, ?removed,
                    "redis-streams: removed idle consumers with nothing pending"
                );
            }
            Ok(_) => {}
            Err(e) if is_nogroup(&e) => {}
            Err(e) if switchyard_redis::denied::is_noperm(&e) => {
                let text = g.inner.denied.record("XINFO CONSUMERS", &e.to_string());
                if let Some(suppressed) = g.warn.check() {
                    tracing::warn!(topic = %stream.topic, group = %g.cfg.group, suppressed,
                        "redis-streams: permission denied, idle consumers are not removed: {text}");
                }
            }
            Err(e) => {
                if let Some(suppressed) = g.warn.check() {
                    tracing::warn!(topic = %stream.topic, error = %e, suppressed, "redis-streams: idle consumer cleanup failed");
                }
            }
        }
    }
}

/// On close: removes this consumer from every stream's group where nothing
/// is pending for it (entries still pending keep it, so it can resume).
pub(crate) async fn remove_self(g: &Group) {
    for stream in g.all_streams() {
        let r = remove(g, &stream.key, 0, &g.cfg.consumer).await;
        if let Err(e) = &r
            && switchyard_redis::denied::is_noperm(e)
        {
            let text = g.inner.denied.record("XINFO CONSUMERS", &e.to_string());
            tracing::warn!(topic = %stream.topic, group = %g.cfg.group,
                "redis-streams: permission denied, this consumer stays in the group after close: {text}");
        } else if let Err(e) = r {
            tracing::debug!(topic = %stream.topic, error = %e, "removing the consumer on close failed");
        }
    }
}

async fn remove(
    g: &Group,
    key: &str,
    min_idle: u64,
    only: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut conn = g.conn();
    CLEANUP
        .key(key)
        .arg(&g.cfg.group)
        .arg(min_idle)
        .arg(only)
        .arg(&g.cfg.consumer)
        .invoke_async(&mut conn)
        .await
}
