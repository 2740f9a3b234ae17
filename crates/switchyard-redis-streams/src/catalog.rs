//! `Transport::topics`: the streams of the namespace (`SCAN`, on every
//! master of a cluster) with `XINFO STREAM` and `XINFO GROUPS` of each, and
//! the `XPENDING` summary of each group with pending entries.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use switchyard_core::{GroupInfo, MessageId, Result, TopicFilter, TopicInfo};
use switchyard_redis::SharedConnection;

use crate::discovery::scan_everywhere;
use crate::keys;

/// Most streams one call looks at (a safety net for huge namespaces).
const MAX_TOPICS: usize = 100_000;

/// The topics of `namespace` matching `filter` (and the dead-letter
/// topics of those that match), sorted by name.
pub(crate) async fn topics(
    conn: &SharedConnection,
    namespace: &str,
    filter: &TopicFilter,
) -> Result<Vec<TopicInfo>> {
    let mut conn = conn.clone();
    let mut found = Vec::new();
    for key in scan_everywhere(&mut conn, &keys::scan_all(namespace)).await? {
        let Some(topic) = keys::topic_of_key(namespace, &key) else {
            continue;
        };
        let origin = topic.dead_letter_origin();
        if !(filter.matches(topic.as_str())
            || origin.as_ref().is_some_and(|o| filter.matches(o.as_str())))
        {
            continue;
        }
        if found.len() >= MAX_TOPICS {
            break;
        }
        if let Some(info) = info(&mut conn, &key, topic).await? {
            found.push(info);
        }
    }
    found.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    Ok(found)
}

/// `XINFO STREAM` and `XINFO GROUPS` of `key`; `None` when it vanished.
async fn info(
    conn: &mut SharedConnection,
    key: &str,
    topic: switchyard_core::Topic,
) -> Result<Option<TopicInfo>> {
    let stream: Value = match redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such key") => return Ok(None),
        Err(e) => return Err(failed("XINFO STREAM", &e)),
    };
    let stream = map(stream);
    let entry_id = |field: &str| match stream.get(field) {
        Some(Value::Array(parts)) => parts
            .first()
            .and_then(text)
            .and_then(|t| crate::wire::parse_id(&t)),
        _ => None,
    };
    let mut out = TopicInfo::new(topic, stream.get("length").and_then(int).unwrap_or(0));
    out.first_id = entry_id("first-entry");
    out.last_id = stream
        .get("last-generated-id")
        .and_then(text)
        .and_then(|t| crate::wire::parse_id(&t))
        .filter(|id| *id != MessageId::new(0, 0));
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| failed("XINFO GROUPS", &e))?;
    if let Value::Array(groups) = groups {
        for g in groups {
            let g = map(g);
            let mut info = GroupInfo::new(
                g.get("name").and_then(text).unwrap_or_default(),
                g.get("consumers").and_then(int).unwrap_or(0),
                g.get("pending").and_then(int).unwrap_or(0),
            );
            info.lag = g.get("lag").and_then(int);
            info.last_delivered = g
                .get("last-delivered-id")
                .and_then(text)
                .and_then(|t| crate::wire::parse_id(&t))
                .filter(|id| *id != MessageId::new(0, 0));
            if info.pending > 0 {
                info.oldest_pending_age = oldest_pending(conn, key, &info.name).await?;
            }
            out.groups.push(info);
        }
    }
    out.groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(out))
}

/// The age of `group`'s oldest pending entry, from its id's timestamp
/// (the `XPENDING key group` summary), by this process's clock.
async fn oldest_pending(
    conn: &mut SharedConnection,
    key: &str,
    group: &str,
) -> Result<Option<Duration>> {
    let summary: Value = match redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        // The stream or the group vanished since XINFO GROUPS.
        Err(e) if e.code() == Some("NOGROUP") => return Ok(None),
        Err(e) => return Err(failed("XPENDING", &e)),
    };
    let Value::Array(parts) = summary else {
        return Ok(None);
    };
    let Some(oldest) = parts
        .get(1)
        .and_then(text)
        .and_then(|t| crate::wire::parse_id(&t))
    else {
        return Ok(None);
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(Some(Duration::from_millis(
        now_ms.saturating_sub(oldest.ms),
    )))
}

/// `command`'s error; a `NOPERM` says `permission denied` and what to grant.
pub(crate) fn failed(command: &str, e: &redis::RedisError) -> switchyard_core::Error {
    if switchyard_redis::denied::is_noperm(e) {
        return switchyard_redis::denied::permission_denied(command, &e.to_string());
    }
    switchyard_redis::classify(command, e)
}

/// A flat `[field, value, ...]` reply (or a RESP3 map) as a map.
fn map(v: Value) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = text(&k) {
                    out.insert(k, v);
                }
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                if let Some(k) = text(&k) {
                    out.insert(k, v);
                }
            }
        }
        _ => {}
    }
    out
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}
